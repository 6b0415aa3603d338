//! Two processes on one store, through the real binary: while `storydex serve` runs on
//! a folder, `storydex ingest` on the same folder fails at once naming the server, a
//! reader (`storydex search`) still works, and once the server stops the ingest goes
//! through.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{real_model_dir, sample_dir};

fn storydex(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storydex"));
    cmd.env("STORYDEX_DATA", data)
        .env("STORYDEX_MODEL_DIR", real_model_dir())
        .env("STORYDEX_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running storydex")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits until the server holds the writer lock (its lock file names it). Polls; the
/// deadline only stops a broken server from hanging the test.
fn wait_for_lock(data: &Path, server: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let lock = data.join("storydex.lock");
    loop {
        if let Ok(record) = std::fs::read_to_string(&lock) {
            if record.contains(&format!("pid {}", server.id())) {
                return;
            }
        }
        if let Some(status) = server.try_wait().expect("polling the server") {
            panic!("the server exited before taking the lock: {status}");
        }
        assert!(Instant::now() < deadline, "the server never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ingest_next_to_a_running_server_fails_at_once_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");
    let digest = sample_dir().join("002_942afda76c0f7909.txt");
    let first = run(storydex(&data).arg("ingest").arg(&digest));
    assert!(first.status.success(), "{}", text(&first.stderr));

    let mut server = storydex(&data)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting storydex serve");
    wait_for_lock(&data, &mut server);

    let second = run(storydex(&data)
        .arg("ingest")
        .arg(sample_dir().join("004_e093e21e046dee1d.txt")));
    let stderr = text(&second.stderr);
    assert!(!second.status.success(), "a second writer must fail");
    assert!(
        stderr.contains(&format!("pid {}, storydex serve", server.id())),
        "{stderr}"
    );
    assert!(stderr.contains("POST /v1/digests"), "{stderr}");

    // Readers take no lock.
    let search = run(storydex(&data).args(["search", "--json", "-k", "1", "OpenAI"]));
    assert!(search.status.success(), "{}", text(&search.stderr));
    let hits: serde_json::Value = serde_json::from_slice(&search.stdout).expect("search JSON");
    assert_eq!(hits["hits"].as_array().map(Vec::len), Some(1), "{hits}");

    // SIGTERM: the server saves its index and releases the lock.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = server.wait().expect("waiting for the server");
    assert!(status.success(), "the server stopped with {status}");

    let third = run(storydex(&data)
        .args(["ingest", "--json"])
        .arg(sample_dir().join("004_e093e21e046dee1d.txt")));
    assert!(third.status.success(), "{}", text(&third.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&third.stdout).expect("JSON");
    assert_eq!(summary["new"], 7, "{summary}");
}
