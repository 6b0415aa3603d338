//! Prometheus metrics: a small hand-rolled registry and the middleware that feeds it.
//!
//! Owns: request counts by route/method/status, request-duration histograms by route,
//! the watched folder's counts, and rendering the text exposition format. Must not: label by raw path (ids would make
//! every story its own series); routes are the matched templates like `/v1/stories/{id}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Upper bounds of the duration buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    /// Observations at or below each bound of `BUCKETS` (cumulative, as exposed).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    requests: BTreeMap<(String, &'static str, u16), u64>,
    durations: BTreeMap<String, Histogram>,
}

/// Request metrics; gauges are read from the state when rendering.
#[derive(Default)]
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
}

/// Route label for requests no route matched (one series, not one per path).
const UNMATCHED: &str = "unmatched";

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    fn observe(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut r = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *r.requests
            .entry((route.to_owned(), method, status))
            .or_default() += 1;
        let h = r.durations.entry(route.to_owned()).or_default();
        for (bucket, bound) in h.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The text exposition format, with the gauges given by the caller.
    pub(crate) fn render(
        &self,
        queue_depth: usize,
        stories: usize,
        encoder: Option<&crate::embed::DeviceInfo>,
        watch: Option<&crate::service::WatchSnapshot>,
    ) -> String {
        let r = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP storydex_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE storydex_http_requests_total counter");
        for ((route, method, status), n) in &r.requests {
            let _ = writeln!(
                out,
                "storydex_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP storydex_http_request_duration_seconds Time to answer HTTP requests."
        );
        let _ = writeln!(
            out,
            "# TYPE storydex_http_request_duration_seconds histogram"
        );
        for (route, h) in &r.durations {
            let route = escape(route);
            for (n, bound) in h.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "storydex_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "storydex_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "storydex_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "storydex_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP storydex_embed_queue_depth Embedding jobs waiting for the model."
        );
        let _ = writeln!(out, "# TYPE storydex_embed_queue_depth gauge");
        let _ = writeln!(out, "storydex_embed_queue_depth {queue_depth}");
        let _ = writeln!(out, "# HELP storydex_stories_indexed Stories in the store.");
        let _ = writeln!(out, "# TYPE storydex_stories_indexed gauge");
        let _ = writeln!(out, "storydex_stories_indexed {stories}");
        if let Some(info) = encoder {
            let _ = writeln!(
                out,
                "# HELP storydex_encoder_info Where the model runs (always 1; the labels say it)."
            );
            let _ = writeln!(out, "# TYPE storydex_encoder_info gauge");
            let _ = writeln!(
                out,
                "storydex_encoder_info{{device=\"{}\",precision=\"{}\",engine=\"{}\"}} 1",
                escape(&info.device),
                escape(&info.precision),
                escape(&info.engine)
            );
            let _ = writeln!(
                out,
                "# HELP storydex_encoder_batch_tokens Padded tokens per forward pass (0: one window at a time)."
            );
            let _ = writeln!(out, "# TYPE storydex_encoder_batch_tokens gauge");
            let _ = writeln!(out, "storydex_encoder_batch_tokens {}", info.batch_tokens);
        }
        if let Some(w) = watch {
            let _ = writeln!(
                out,
                "# HELP storydex_watch_files_total Files from the watched folder: ingested, failed to parse, deleted."
            );
            let _ = writeln!(out, "# TYPE storydex_watch_files_total counter");
            for (result, n) in [
                ("ingested", w.ingested),
                ("failed", w.failed),
                ("deleted", w.removed),
            ] {
                let _ = writeln!(out, "storydex_watch_files_total{{result=\"{result}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP storydex_watch_failing_files Watched files whose last ingest failed."
            );
            let _ = writeln!(out, "# TYPE storydex_watch_failing_files gauge");
            let _ = writeln!(out, "storydex_watch_failing_files {}", w.failing.len());
            if let Some(at) = w.last_scan {
                let _ = writeln!(
                    out,
                    "# HELP storydex_watch_last_scan_timestamp_seconds When the store was last brought up to date with the watched folder."
                );
                let _ = writeln!(
                    out,
                    "# TYPE storydex_watch_last_scan_timestamp_seconds gauge"
                );
                let _ = writeln!(
                    out,
                    "storydex_watch_last_scan_timestamp_seconds {}",
                    at.unix_timestamp()
                );
            }
        }
        out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts and times every request under its route template.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics().observe(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_keyed_by_route_template() {
        let m = Metrics::default();
        m.observe("/v1/stories/{id}", "GET", 200, Duration::from_millis(3));
        m.observe("/v1/stories/{id}", "GET", 404, Duration::from_millis(200));
        let info = crate::embed::DeviceInfo {
            device: "cuda:0".to_owned(),
            precision: "f16".to_owned(),
            engine: "candle-transformers".to_owned(),
            batch_tokens: 16384,
        };
        let text = m.render(2, 134, Some(&info), None);
        assert!(text.contains(
            "storydex_encoder_info{device=\"cuda:0\",precision=\"f16\",engine=\"candle-transformers\"} 1"
        ));
        assert!(text.contains("storydex_encoder_batch_tokens 16384"));
        assert!(text.contains(
            "storydex_http_requests_total{route=\"/v1/stories/{id}\",method=\"GET\",status=\"404\"} 1"
        ));
        assert!(text.contains(
            "storydex_http_request_duration_seconds_bucket{route=\"/v1/stories/{id}\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "storydex_http_request_duration_seconds_bucket{route=\"/v1/stories/{id}\",le=\"0.25\"} 2"
        ));
        assert!(text.contains("storydex_embed_queue_depth 2"));
        assert!(text.contains("storydex_stories_indexed 134"));
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
