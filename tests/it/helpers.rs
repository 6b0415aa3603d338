//! `spawn_app`: a server over a temporary store holding `data/sample/`, with the fake
//! encoder, on a free loopback port. `real_model_files`/`real_encoder`: the real model
//! for the tests that need it (they fail, never skip, when it is missing).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use storydex::embed::fake::FakeEncoder;
use storydex::embed::{CandleEncoder, ModelFiles, ModelSpec};
use storydex::server::{AppState, ServeSettings};
use storydex::service::Service;
use storydex::store::Store;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Stories in `data/sample/` (4 digests and 1 archive).
pub(crate) const SAMPLE_STORIES: usize = 134;

/// The sample's story about the new Atlas robot, and its digest.
pub(crate) const ATLAS_STORY: &str = "d20260106-1200-05";
pub(crate) const ATLAS_DIGEST: &str = "d20260106-1200";
/// The stories digest 001 (2026-01-07 00:00) repeats from digest 000 (2026-01-06 12:00),
/// as (000 story, 001 story), read off the two files by hand.
pub(crate) const SAMPLE_REPEATS: [(&str, &str); 7] = [
    ("d20260106-1200-02", "d20260107-0000-09"),
    ("d20260106-1200-04", "d20260107-0000-02"),
    ("d20260106-1200-05", "d20260107-0000-03"),
    ("d20260106-1200-06", "d20260107-0000-04"),
    ("d20260106-1200-07", "d20260107-0000-07"),
    ("d20260106-1200-08", "d20260107-0000-05"),
    ("d20260106-1200-10", "d20260107-0000-06"),
];

pub(crate) const ATLAS_TITLE: &str = "Boston Dynamics推出新款Atlas人形机器人进入企业生产";

pub(crate) struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) encoder: Arc<FakeEncoder>,
    pub(crate) state: AppState,
    pub(crate) server: Option<JoinHandle<std::io::Result<()>>>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: TempDir,
}

pub(crate) struct AppOptions {
    pub(crate) settings: ServeSettings,
    /// Load the store and mark the server ready before returning.
    pub(crate) ready: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            settings: ServeSettings::default(),
            ready: true,
        }
    }
}

pub(crate) fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample")
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// A ready app over the sample with these settings.
pub(crate) async fn spawn_app_with_settings(settings: ServeSettings) -> TestApp {
    spawn_app_with(AppOptions {
        settings,
        ready: true,
    })
    .await
}

/// A ready app whose embedding queue holds one job and whose model calls each take
/// `delay`: a handful of concurrent searches fills it.
pub(crate) async fn spawn_app_with_a_slow_queue_of_one(delay: std::time::Duration) -> TestApp {
    let app = spawn_app_with_settings(ServeSettings {
        queue: 1,
        ..ServeSettings::default()
    })
    .await;
    app.encoder.set_delay(delay);
    app
}

pub(crate) async fn spawn_app_with(options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let encoder = Arc::new(FakeEncoder::default());
    let state = AppState::new(&options.settings);
    if options.ready {
        let data = dir.path().to_owned();
        let fake = Arc::clone(&encoder);
        let store = tokio::task::spawn_blocking(move || {
            let store = Arc::new(Store::open(&data, "fake-hash-384", 384).expect("open store"));
            let service = Service::new(Arc::clone(&store), fake, 0.9);
            let report = service
                .ingest_paths(&[sample_dir()], &AtomicBool::new(false), &mut |_| {})
                .expect("ingest the sample");
            assert!(
                report.failed.is_empty(),
                "sample failed: {:?}",
                report.failed
            );
            store
        })
        .await
        .expect("ingest task");
        state
            .set_ready(store, encoder.clone(), 0.9)
            .expect("set ready");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(storydex::server::serve(
        listener,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    TestApp {
        base,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        encoder,
        state,
        server: Some(server),
        shutdown: Some(tx),
        _dir: dir,
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// GET that must answer 200 with JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    pub(crate) async fn search(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/search"))
            .json(&body)
            .send()
            .await
            .expect("POST /v1/search")
    }

    pub(crate) async fn post_digest(&self, markdown: &str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/digests"))
            .header("content-type", "text/markdown; charset=utf-8")
            .body(markdown.to_owned())
            .send()
            .await
            .expect("POST /v1/digests")
    }

    /// Asks the server to stop; the returned handle completes once it has.
    pub(crate) fn shut_down(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server still running")
    }
}

/// Asserts an error response: its status, that it is JSON, and its `error.code`.
/// Returns the `error.message`.
pub(crate) async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> String {
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.text().await.expect("body");
    assert_eq!(got, status, "expected {status} {code}, got {got}: {body}");
    assert!(
        content_type.starts_with("application/json"),
        "error is not JSON ({content_type}): {body}"
    );
    let body: Value = serde_json::from_str(&body).expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"]
        .as_str()
        .expect("error.message is a string")
        .to_owned()
}

/// A digest in the sample's format, published at `date` (RFC 3339), with `items` stories
/// whose headlines and summaries contain `marker`.
pub(crate) fn make_digest(date: &str, marker: &str, items: usize) -> String {
    let mut out = format!(
        "---\ntitle: \"test digest {marker}\"\ndate: {date}\ncategories: [\"Test\"]\n---\n\n"
    );
    for i in 1..=items {
        out.push_str(&format!(
            "{i}.  [{marker} story number {i} about zyxwv quokka](https://example.com/{marker}/{i})\n\n    \
             The {marker} report {i} describes how the quokka team shipped release {i}.\n\n"
        ));
    }
    out
}

/// The real model's folder, `models/multilingual-e5-small/`. Panics with the way to get
/// it when it is missing: a test that needs the model must fail, not pass by skipping.
pub(crate) fn real_model_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/multilingual-e5-small");
    let weights = dir.join("model.safetensors");
    assert!(
        weights.is_file(),
        "{} is missing: run `scripts/fetch-model` to build the model folder \
         (CI runs it before the tests)",
        weights.display()
    );
    dir
}

/// The real model's files (see [`real_model_dir`]).
pub(crate) fn real_model_files() -> ModelFiles {
    ModelFiles::from_dir(&real_model_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// The real encoder, loaded once per test binary and shared.
pub(crate) fn real_encoder() -> Arc<CandleEncoder> {
    static ENCODER: OnceLock<Arc<CandleEncoder>> = OnceLock::new();
    ENCODER
        .get_or_init(|| {
            let encoder = CandleEncoder::load(ModelSpec::default_model(), &real_model_files())
                .unwrap_or_else(|e| panic!("loading the real model: {e}"));
            Arc::new(encoder)
        })
        .clone()
}
