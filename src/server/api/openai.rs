//! The OpenAI-compatible routes: `POST /v1/embeddings` and `GET /v1/models`, so RAG
//! frameworks and scripts that speak OpenAI's embeddings API use storydex's model.
//!
//! Owns: reading OpenAI's request shape (a string or an array of strings, `model`,
//! `encoding_format`, `dimensions`) plus `input_type` (`query` or `passage`, as Cohere,
//! Voyage and NVIDIA NIM name it), and writing OpenAI's response shape. Must not: embed
//! on the async runtime (the state's queue does).
//!
//! Decisions: e5 embeds queries and passages with different prefixes, so `input_type`
//! says which (default `passage`, what a RAG framework indexes). A passage longer than
//! the model's 512 tokens is cut into windows and gets the normalised mean of their
//! vectors, the vector storydex keeps for a story; a query is cut at 512 tokens, as
//! storydex's own searches are. At most [`MAX_INPUTS`] texts per request. Other fields
//! of OpenAI's request (`user`) are ignored.

// utoipa's `#[utoipa::path]` emits a `pub struct __path_<handler>` for each handler.
#![allow(unreachable_pub)]

use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::AppJson;
use super::ErrorBody;
use crate::domain::{ErrorCode, Invalid};
use crate::embed::Role;
use crate::server::{AppState, RequestError};

/// Texts one request may embed.
pub const MAX_INPUTS: usize = 256;

/// `POST /v1/embeddings` (OpenAI's shape, plus `input_type`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// A string or an array of 1 to 256 strings, none empty. Token-id arrays are not
    /// accepted.
    #[schema(value_type = Object, example = json!(["英伟达发布Rubin平台", "Atlas humanoid robot"]))]
    pub input: Value,
    /// The model: its Hub name (`intfloat/multilingual-e5-small`), its short name, or
    /// the id `/health` reports. `GET /v1/models` lists it.
    #[schema(example = "intfloat/multilingual-e5-small")]
    pub model: String,
    /// `float` (default) or `base64` (little-endian f32, as OpenAI sends it).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Must equal the model's dimension (384) when given; storydex does not shorten
    /// vectors.
    #[serde(default)]
    pub dimensions: Option<u64>,
    /// `passage` (default: text to be searched) or `query` (text to search with).
    #[serde(default)]
    pub input_type: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    pub index: usize,
    /// Unit-length vector: an array of numbers, or a base64 string of little-endian f32.
    #[schema(value_type = Object)]
    pub embedding: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens the model read: prefix and `<s>`/`</s>` included, every window of a long
    /// passage counted (overlaps too).
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelsResponse {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ModelEntry>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelEntry {
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Always 0 (OpenAI's creation time has no meaning here).
    pub created: u64,
    pub owned_by: String,
}

fn invalid(code: ErrorCode, message: impl Into<String>) -> RequestError {
    RequestError::Invalid(Invalid::new(code, message))
}

/// The texts of `input`, each checked.
fn texts(input: Value) -> Result<Vec<String>, RequestError> {
    let texts = match input {
        Value::String(s) => vec![s],
        Value::Array(items) => {
            if items.is_empty() {
                return Err(invalid(
                    ErrorCode::InvalidInput,
                    "input is an empty array; send a string or 1 to 256 strings",
                ));
            }
            if items.len() > MAX_INPUTS {
                return Err(invalid(
                    ErrorCode::TooManyInputs,
                    format!(
                        "input has {} texts; send at most {MAX_INPUTS} per request",
                        items.len()
                    ),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s),
                    Value::Number(_) | Value::Array(_) => Err(invalid(
                        ErrorCode::InvalidInput,
                        format!("input[{i}] is token ids; storydex takes text: send strings"),
                    )),
                    other => Err(invalid(
                        ErrorCode::InvalidInput,
                        format!("input[{i}] is {other}; every input must be a string"),
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        other => {
            return Err(invalid(
                ErrorCode::InvalidInput,
                format!("input is {other}; send a string or an array of strings"),
            ))
        }
    };
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(invalid(
            ErrorCode::InvalidInput,
            format!("input[{i}] is empty or blank; every input needs some text"),
        ));
    }
    Ok(texts)
}

/// The names a request may call the model by.
fn model_names(model_id: &str) -> (String, Vec<String>) {
    let repo = model_id.split('@').next().unwrap_or(model_id).to_owned();
    let short = repo.rsplit('/').next().unwrap_or(&repo).to_owned();
    (repo.clone(), vec![repo, short, model_id.to_owned()])
}

/// Embeddings of texts (OpenAI-compatible)
#[utoipa::path(
    post, path = "/v1/embeddings", tag = "openai",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, body = EmbeddingsResponse),
        (status = 400, description = "invalid_input, too_many_inputs, invalid_dimensions, invalid_encoding_format, invalid_input_type or invalid_json", body = ErrorBody),
        (status = 404, description = "model_not_found", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: not application/json", body = ErrorBody),
        (status = 503, description = "overloaded or not_ready", body = ErrorBody),
    )
)]
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    AppJson(request): AppJson<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, RequestError> {
    let service = state.service().ok_or(RequestError::NotReady)?;
    let (name, accepted) = model_names(service.model_id());
    if !accepted.contains(&request.model) {
        return Err(invalid(
            ErrorCode::ModelNotFound,
            format!(
                "model {:?} is not served here; use {name:?} (GET /v1/models lists it)",
                request.model
            ),
        ));
    }
    let dimension = service.encoder().dimension();
    if let Some(d) = request.dimensions {
        if d != dimension as u64 {
            return Err(invalid(
                ErrorCode::InvalidDimensions,
                format!("dimensions must be {dimension} (the model's) or left out, got {d}"),
            ));
        }
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(invalid(
                ErrorCode::InvalidEncodingFormat,
                format!("encoding_format must be \"float\" or \"base64\", got {other:?}"),
            ))
        }
    };
    let role = match request.input_type.as_deref() {
        None | Some("passage") | Some("document") => Role::Passage,
        Some("query") => Role::Query,
        Some(other) => {
            return Err(invalid(
                ErrorCode::InvalidInputType,
                format!("input_type must be \"query\" or \"passage\", got {other:?}"),
            ))
        }
    };
    let texts = texts(request.input)?;
    let embedded = state.embed_texts(texts, role).await?;
    let tokens = embedded.iter().map(|(_, t)| t).sum();
    let data = embedded
        .into_iter()
        .enumerate()
        .map(|(index, (vector, _))| EmbeddingData {
            object: "embedding".to_owned(),
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(vector)
            },
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list".to_owned(),
        data,
        model: name,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// The model this server embeds with (OpenAI-compatible)
#[utoipa::path(
    get, path = "/v1/models", tag = "openai",
    responses(
        (status = 200, body = ModelsResponse),
        (status = 503, description = "not_ready", body = ErrorBody),
    )
)]
pub(crate) async fn models(
    State(state): State<AppState>,
) -> Result<Json<ModelsResponse>, RequestError> {
    let service = state.service().ok_or(RequestError::NotReady)?;
    let (name, _) = model_names(service.model_id());
    Ok(Json(ModelsResponse {
        object: "list".to_owned(),
        data: vec![ModelEntry {
            id: name,
            object: "model".to_owned(),
            created: 0,
            owned_by: "storydex".to_owned(),
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_a_string_or_strings_and_never_empty_or_token_ids() {
        assert_eq!(texts(Value::from("a")).unwrap(), ["a"]);
        assert_eq!(texts(serde_json::json!(["a", "b"])).unwrap(), ["a", "b"]);
        let code = |v: Value| texts(v).unwrap_err().code();
        assert_eq!(code(serde_json::json!([])), ErrorCode::InvalidInput);
        assert_eq!(code(serde_json::json!(["a", " "])), ErrorCode::InvalidInput);
        assert_eq!(code(serde_json::json!([[1, 2]])), ErrorCode::InvalidInput);
        assert_eq!(code(serde_json::json!(3)), ErrorCode::InvalidInput);
        let many: Vec<&str> = vec!["x"; MAX_INPUTS + 1];
        assert_eq!(code(serde_json::json!(many)), ErrorCode::TooManyInputs);
    }

    #[test]
    fn the_model_answers_to_its_hub_name_short_name_and_id() {
        let (name, accepted) = model_names("intfloat/multilingual-e5-small@384");
        assert_eq!(name, "intfloat/multilingual-e5-small");
        for n in ["intfloat/multilingual-e5-small", "multilingual-e5-small"] {
            assert!(accepted.iter().any(|a| a == n), "{n}");
        }
    }
}
