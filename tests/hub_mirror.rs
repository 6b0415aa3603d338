//! The hf-hub download path (`ModelFiles::from_hub`) against a Hub mirror on loopback.
//!
//! The mirror is a few lines of `std::net`: it serves `/{repo}/resolve/{revision}/{file}`
//! from a local folder the way hf-hub 0.4's sync client needs it (a `Range: bytes=0-0`
//! probe answered with `ETag`, `X-Repo-Commit` and `Content-Range: bytes 0-0/SIZE`, then
//! one ranged GET of the body). hf-hub reads `HF_ENDPOINT` and `HF_HOME` from the
//! environment, which is process-wide: this is its own test binary, and its tests take
//! [`ENV`] so they never see each other's variables.
//!
//! The mirror serves the real model folder, so like the other real-model tests this one
//! fails (naming `scripts/fetch-model`) when `models/multilingual-e5-small/` is absent.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use storydex::embed::{CandleEncoder, EmbedError, Encoder, ModelFiles, ModelSource, ModelSpec};

/// Held by each test for its whole run: they set `HF_ENDPOINT` and `HF_HOME`.
static ENV: Mutex<()> = Mutex::new(());

/// The commit every file of the mirror claims to come from.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn real_model_dir() -> PathBuf {
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

/// One request as the mirror saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    file: String,
    range: Option<String>,
    status: u16,
}

/// A Hub mirror on `127.0.0.1:<free port>` serving one repo at one revision from `root`.
struct Mirror {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mirror {
    fn start(root: &Path, repo: &str, revision: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mirror");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let prefix = format!("/{repo}/resolve/{revision}/");
        let (root, log) = (root.to_owned(), Arc::clone(&seen));
        // Detached: it lives as long as the test process, like a real mirror would.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, prefix, log) = (root.clone(), prefix.clone(), Arc::clone(&log));
                std::thread::spawn(move || {
                    // A client that hangs up mid-body is its business, not the mirror's.
                    let _ = serve(stream, &root, &prefix, &log);
                });
            }
        });
        Self { endpoint, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers one request and closes the connection.
fn serve(
    mut stream: TcpStream,
    root: &Path,
    prefix: &str,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_owned());
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let file = path.strip_prefix(prefix).unwrap_or("").to_owned();
    let local = root.join(&file);
    let plain_name = !file.is_empty() && !file.contains(['/', '\\']) && file != "..";
    let record = |status| {
        log.lock().unwrap().push(Seen {
            file: file.clone(),
            range: range.clone(),
            status,
        })
    };
    if !request_line.starts_with("GET ") || !plain_name || !local.is_file() {
        record(404);
        let body = "Entry not found";
        return write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nX-Error-Code: EntryNotFound\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
    }
    let size = std::fs::metadata(&local)?.len();
    // `bytes=START-` or `bytes=START-END` (inclusive); anything else means the whole file.
    let (start, end) = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(s, e)| {
            let start: u64 = s.parse().ok()?;
            let end = if e.is_empty() {
                size - 1
            } else {
                e.parse::<u64>().ok()?.min(size - 1)
            };
            (start <= end).then_some((start, end))
        })
        .unwrap_or((0, size - 1));
    let status = if range.is_some() { 206 } else { 200 };
    record(status);
    let reason = if status == 206 {
        "Partial Content"
    } else {
        "OK"
    };
    // The Hub sends the file's sha256 as the etag of large files; name and size are
    // unique enough for one mirror, and hf-hub only uses the etag as a blob file name.
    let etag = format!("{}-{size}", file.replace('.', "-"));
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\
         ETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nAccept-Ranges: bytes\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        end - start + 1
    )?;
    let mut body = File::open(&local)?;
    body.seek(SeekFrom::Start(start))?;
    std::io::copy(&mut body.take(end - start + 1), &mut stream)?;
    stream.flush()
}

/// Points hf-hub at `endpoint` with an empty cache in `home`, with no proxy in the way.
fn use_hub(endpoint: &str, home: &Path) {
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        std::env::remove_var(proxy);
    }
    std::env::set_var("HF_ENDPOINT", endpoint);
    std::env::set_var("HF_HOME", home);
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        BufReader::with_capacity(1 << 20, File::open(a).unwrap()),
        BufReader::with_capacity(1 << 20, File::open(b).unwrap()),
    );
    loop {
        let (x, y) = (a.fill_buf().unwrap(), b.fill_buf().unwrap());
        let n = x.len().min(y.len());
        if n == 0 {
            return x.is_empty() && y.is_empty();
        }
        if x[..n] != y[..n] {
            return false;
        }
        a.consume(n);
        b.consume(n);
    }
}

#[test]
fn model_downloads_from_a_hub_mirror_into_hf_home_and_embeds_like_the_local_folder() {
    let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let model_dir = real_model_dir();
    let spec = ModelSpec::default_model();
    let mirror = Mirror::start(&model_dir, &spec.hub_repo, &spec.revision);
    let home = tempfile::tempdir().unwrap();
    use_hub(&mirror.endpoint, home.path());

    let files = ModelFiles::from_hub(&spec, false).expect("download from the mirror");
    assert_eq!(
        files.source,
        ModelSource::Hub {
            repo: spec.hub_repo.clone(),
            revision: spec.revision.clone(),
        }
    );
    let snapshot = home
        .path()
        .join("hub/models--intfloat--multilingual-e5-small/snapshots")
        .join(COMMIT);
    for (got, name) in [
        (&files.config, "config.json"),
        (&files.tokenizer, "tokenizer.json"),
        (&files.weights, "model.safetensors"),
    ] {
        assert_eq!(*got, snapshot.join(name));
        assert!(
            same_bytes(got, &model_dir.join(name)),
            "{name} differs from the mirror's copy"
        );
        // A size probe, then the body: nothing else.
        let requests: Vec<Option<String>> = mirror
            .seen()
            .into_iter()
            .filter(|s| s.file == name)
            .map(|s| s.range)
            .collect();
        assert_eq!(
            requests,
            [Some("bytes=0-0".to_owned()), Some("bytes=0-".to_owned())],
            "{name}"
        );
    }

    // A second call is served from the cache, without asking the mirror.
    let before = mirror.seen().len();
    let again = ModelFiles::from_hub(&spec, false).expect("files from the cache");
    assert_eq!(again, files);
    assert_eq!(mirror.seen().len(), before);

    let hub = CandleEncoder::load(spec.clone(), &files).expect("load the downloaded model");
    let local = CandleEncoder::load(spec, &ModelFiles::from_dir(&model_dir).unwrap())
        .expect("load the local folder");
    assert_eq!(hub.model_id(), local.model_id());
    for text in [
        "Boston Dynamics Atlas robot in car factories",
        "英伟达 Rubin 芯片",
    ] {
        assert_eq!(
            hub.embed_query(text).unwrap(),
            local.embed_query(text).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn file_missing_on_the_mirror_is_a_download_error_naming_it_and_the_offline_way() {
    let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let spec = ModelSpec::default_model();
    let partial = tempfile::tempdir().unwrap();
    std::fs::write(partial.path().join("config.json"), "{}").unwrap();
    let mirror = Mirror::start(partial.path(), &spec.hub_repo, &spec.revision);
    let home = tempfile::tempdir().unwrap();
    use_hub(&mirror.endpoint, home.path());

    let err = ModelFiles::from_hub(&spec, false).expect_err("tokenizer.json is not there");
    assert!(
        matches!(&err, EmbedError::Download { file, .. } if file == "tokenizer.json"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&spec.hub_repo), "{message}");
    assert!(message.contains("scripts/fetch-model"), "{message}");
    assert!(mirror
        .seen()
        .iter()
        .any(|s| s.file == "tokenizer.json" && s.status == 404));
}
