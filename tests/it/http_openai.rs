//! The OpenAI-compatible routes over HTTP (fake encoder): shapes, encodings, and the
//! errors an OpenAI client reads.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

const MODEL: &str = "fake-hash-384";

async fn post(app: &crate::helpers::TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .expect("POST /v1/embeddings")
}

#[tokio::test]
async fn embeddings_come_back_in_order_as_unit_vectors_with_their_tokens_counted() {
    let app = spawn_app().await;
    let texts = ["Boston Dynamics shows the new Atlas", "英伟达发布Rubin平台"];
    let response = post(&app, json!({"model": MODEL, "input": texts})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], MODEL);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let v: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
        assert_eq!(v.len(), 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    // Each text alone gets the vector it got in the array.
    let alone: Value = post(&app, json!({"model": MODEL, "input": texts[1]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(alone["data"][0]["embedding"], data[1]["embedding"]);
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 0);
    assert_eq!(body["usage"]["total_tokens"], tokens);
}

#[tokio::test]
async fn base64_is_the_float_vector_as_little_endian_f32_and_queries_have_their_lane() {
    let app = spawn_app().await;
    for input_type in ["query", "passage"] {
        let request = |format: &str| {
            json!({"model": MODEL, "input": "Atlas humanoid", "encoding_format": format,
                   "input_type": input_type, "dimensions": 384})
        };
        let float: Value = post(&app, request("float")).await.json().await.unwrap();
        let encoded: Value = post(&app, request("base64")).await.json().await.unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let float: Vec<f32> =
            serde_json::from_value(float["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(decoded, float, "{input_type}");
    }
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_errors_that_say_what_to_fix() {
    let app = spawn_app().await;
    let too_many: Vec<String> = (0..257).map(|i| format!("text {i}")).collect();
    let cases = [
        (
            json!({"model": MODEL, "input": too_many}),
            400,
            "too_many_inputs",
            "256",
        ),
        (
            json!({"model": "text-embedding-3-small", "input": "x"}),
            404,
            "model_not_found",
            MODEL,
        ),
        (
            json!({"model": MODEL, "input": "x", "dimensions": 128}),
            400,
            "invalid_dimensions",
            "384",
        ),
        (
            json!({"model": MODEL, "input": "x", "encoding_format": "int8"}),
            400,
            "invalid_encoding_format",
            "base64",
        ),
        (
            json!({"model": MODEL, "input": "x", "input_type": "document_query"}),
            400,
            "invalid_input_type",
            "query",
        ),
        (
            json!({"model": MODEL, "input": []}),
            400,
            "invalid_input",
            "empty array",
        ),
        (
            json!({"model": MODEL, "input": ["ok", ""]}),
            400,
            "invalid_input",
            "input[1]",
        ),
        (
            json!({"model": MODEL, "input": [[101, 2023]]}),
            400,
            "invalid_input",
            "token ids",
        ),
        (json!({"input": "x"}), 400, "invalid_json", "model"),
    ];
    for (body, status, code, hint) in cases {
        let response = post(&app, body.clone()).await;
        let text = response.text().await.unwrap();
        let error: Value = serde_json::from_str(&text).expect("a JSON error");
        assert_eq!(error["error"]["code"], code, "{body}: {text}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(hint),
            "{body}: {text}"
        );
        let kind = if status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(error["error"]["type"], kind, "{text}");
        // And the status, through the shared check.
        assert_error(post(&app, body).await, status, code).await;
    }
}

#[tokio::test]
async fn models_lists_the_one_model() {
    let app = spawn_app().await;
    let body = app.get_json("/v1/models").await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], MODEL);
    assert_eq!(body["data"][0]["object"], "model");
}
