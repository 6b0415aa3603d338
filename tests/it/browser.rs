//! The editors' web page in a real browser: a real-model server over the sample corpus,
//! started here in-process on `127.0.0.1:0` with a write key, driven by Debian's
//! headless Chromium through `tests/browser/run.mjs` (Node + playwright-core).
//!
//! The server runs in this test binary because the test profile is optimised: the
//! encoder's kernels in a plain debug `storydex serve` would take minutes over the
//! sample. The browser script asserts on what the pages show and writes screenshots of
//! every page at 1280x800 and 390x844 to `target/browser-screenshots/`.
//!
//! It fails, saying what to install, when the model, Chromium, Node or the script's
//! packages are missing: `scripts/test` installs all of them on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use storydex::embed::Encoder;
use storydex::server::{AppState, ServeSettings};
use storydex::service::{Service, Tuning};
use storydex::store::Store;

use crate::helpers::{real_encoder, real_model_dir, sample_dir, ATLAS_STORY, SAMPLE_REPEATS};

const KEY: &str = "browser-test-write-key";
/// The Atlas story's repeat in the next digest.
const ATLAS_REPEAT: &str = "d20260107-0000-03";
/// Longer than the script needs by far (about a minute), short enough not to hang CI.
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `node`, the script and Chromium, or a panic that says how to get what is missing.
fn browser_tools() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.is_file(),
        "{} is missing: install Debian's chromium (`apt-get install -y chromium`; \
         scripts/test does it)",
        chromium.display()
    );
    let script = repo().join("tests/browser/run.mjs");
    let playwright = repo().join("tests/browser/node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: run `npm ci` in tests/browser (scripts/test does it)",
        playwright.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js 20 or later (`apt-get install -y nodejs npm`)"
    );
    (chromium, script)
}

/// `target/browser-screenshots/` (next to `target/tmp/`, wherever the target dir is).
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("browser-screenshots")
}

/// Runs the browser script against `base`; its output if it passed, a panic with that
/// output if it failed or outlived [`BROWSER_DEADLINE`].
fn run_browser(script: &Path, chromium: &Path, base: &str, fixture: &Path, logs: &Path) {
    let out_path = logs.join("browser.log");
    let out = std::fs::File::create(&out_path).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut child = Command::new("node")
        .arg(script)
        .arg(base)
        .env("STORYDEX_BROWSER_FIXTURE", fixture)
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > BROWSER_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(status) if status.success() => println!("{log}"),
        Some(status) => panic!("the browser tests failed ({status}):\n{log}"),
        None => panic!(
            "the browser tests ran longer than {BROWSER_DEADLINE:?} and were stopped:\n{log}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_finds_checks_and_publishes_stories_in_a_real_browser() {
    real_model_dir();
    let (chromium, script) = browser_tools();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");
    let encoder = real_encoder();
    let tuning = Tuning::from_spec(encoder.spec());

    // The whole sample, embedded with the real model; then what the script expects to
    // see, read from the store rather than copied by hand.
    let (store, fixture) = {
        let encoder = Arc::clone(&encoder);
        tokio::task::spawn_blocking(move || {
            let store = Arc::new(
                Store::open(&data, encoder.model_id(), encoder.dimension()).expect("store"),
            );
            let service = Service::new(Arc::clone(&store), encoder, tuning);
            let report = service
                .ingest_paths(&[sample_dir()], &AtomicBool::new(false), &mut |_| {})
                .expect("ingest the sample");
            assert!(report.failed.is_empty(), "{:?}", report.failed);
            let story = |id: &str| service.story(id).expect("sample story");
            let atlas = story(ATLAS_STORY);
            let repeat = story(ATLAS_REPEAT);
            let repeats: Vec<_> = SAMPLE_REPEATS
                .iter()
                .map(|(original, again)| {
                    let original = story(original);
                    json!({
                        "draft_title": story(again).headline,
                        "original_title": original.headline,
                        "original_digest": original.digest_title,
                    })
                })
                .collect();
            let digest_001 = std::fs::read_to_string(sample_dir().join("001_f9894c49d7f708a5.txt"))
                .expect("digest 001");
            let fixture = json!({
                "key": KEY,
                "screenshots": screenshot_dir(),
                "atlas": {
                    "id": atlas.id,
                    "title": atlas.headline,
                    "url": atlas.url,
                    "digest": atlas.digest_title,
                    "repeat_title": repeat.headline,
                    "repeat_digest": repeat.digest_title,
                },
                // Digest 001 with every link pointed elsewhere: its repeats must be found
                // by their text, not by a shared link.
                "draft": digest_001.replace("https://x.com/", "https://example.org/"),
                "repeats": repeats,
            });
            (store, fixture)
        })
        .await
        .expect("ingest task")
    };
    let fixture_path = dir.path().join("fixture.json");
    std::fs::write(&fixture_path, fixture.to_string()).expect("write fixture");

    let state = AppState::new(&ServeSettings {
        api_key: Some(KEY.to_owned()),
        ..ServeSettings::default()
    });
    state.set_ready(store, encoder, tuning).expect("set ready");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(storydex::server::serve(listener, state, async move {
        let _ = stopped.await;
    }));

    let logs = dir.path().to_owned();
    let browser = tokio::task::spawn_blocking(move || {
        run_browser(&script, &chromium, &base, &fixture_path, &logs)
    })
    .await;
    if let Err(e) = browser {
        // The script's output is in the panic message: show it as it is.
        std::panic::resume_unwind(e.into_panic());
    }

    let _ = stop.send(());
    server.await.expect("server task").expect("server");
}
