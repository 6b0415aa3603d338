//! Every machine-readable error code a client can see, with its HTTP status.
//!
//! Owns: the one table of codes (as meilisearch's `make_error_codes!`): a code is written
//! here once and used by name everywhere else, so no two places can spell it differently.
//! Must not: depend on anything else in the crate; the statuses are plain numbers, and the
//! server turns them into its HTTP type.

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $status:literal;)*) => {
        /// A stable error code, sent as `error.code` in every failed response.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as clients see it: `invalid_k`, `not_found`, ...
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status a response with this code gets.
            pub fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    /// `k` is not a whole number from 1 to 100.
    InvalidK = "invalid_k", 400;
    /// `since` or `until` is not a `YYYY-MM-DD` date.
    InvalidDate = "invalid_date", 400;
    /// `since` is after `until`.
    InvalidDateRange = "invalid_date_range", 400;
    /// The query is blank, or has nothing the model can read.
    EmptyQuery = "empty_query", 400;
    /// The query is longer than 2,000 characters.
    QueryTooLong = "query_too_long", 400;
    /// The search mode is not `hybrid`, `vector` or `lexical`.
    InvalidMode = "invalid_mode", 400;
    /// `min_score` is not a number from 0 to 1.
    InvalidMinScore = "invalid_min_score", 400;
    /// The page's draft form was sent empty.
    EmptyDraft = "empty_draft", 400;
    /// The file picked in the page's draft form is not UTF-8 text.
    InvalidFile = "invalid_file", 400;
    /// The JSON body does not parse or has the wrong shape.
    InvalidJson = "invalid_json", 400;
    /// The query string (or a form) does not parse.
    InvalidQueryString = "invalid_query_string", 400;
    /// A path parameter does not parse.
    InvalidPath = "invalid_path", 400;
    /// `input` of `POST /v1/embeddings` is not a non-empty string or array of strings.
    InvalidInput = "invalid_input", 400;
    /// More texts in one `POST /v1/embeddings` than the limit.
    TooManyInputs = "too_many_inputs", 400;
    /// `dimensions` other than the model's.
    InvalidDimensions = "invalid_dimensions", 400;
    /// `encoding_format` other than `float` or `base64`.
    InvalidEncodingFormat = "invalid_encoding_format", 400;
    /// `input_type` other than `query` or `passage`.
    InvalidInputType = "invalid_input_type", 400;
    /// A write without the right bearer key.
    Unauthorized = "unauthorized", 401;
    /// A write this server does not take (no key on a public address, another site).
    Forbidden = "forbidden", 403;
    /// No story or digest with that id.
    NotFound = "not_found", 404;
    /// `model` names a model this server does not hold.
    ModelNotFound = "model_not_found", 404;
    /// `POST /v1/admin/backup` on a server started without `--backup-dir`.
    BackupsOff = "backups_off", 409;
    /// No such route.
    RouteNotFound = "route_not_found", 404;
    /// The route exists, not with this method.
    MethodNotAllowed = "method_not_allowed", 405;
    /// The body is larger than `--max-body`.
    PayloadTooLarge = "payload_too_large", 413;
    /// The body's `Content-Type` is not what the route reads.
    UnsupportedMediaType = "unsupported_media_type", 415;
    /// The posted digest does not parse; the message names the line.
    InvalidDigest = "invalid_digest", 422;
    /// Something broke on the server; its log has the cause.
    Internal = "internal", 500;
    /// The embedding queue is full.
    Overloaded = "overloaded", 503;
    /// The server is still loading the model and the index.
    NotReady = "not_ready", 503;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_snake_case_with_a_client_or_server_status() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(code
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!((400..600).contains(&code.http_status()), "{code}");
        }
    }
}
