//! The arrows between modules point one way: nothing below the service names anything
//! above it, and the JSON API and the pages never name each other. Read from the source,
//! so a new `use` that points back fails here instead of in a review.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of the `.rs` files under `src/<part>` (a folder or a file without `.rs`) that
/// contain any of `names`.
fn mentions(part: &str, names: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let dir = src.join(part);
    if dir.is_dir() {
        sources(&dir, &mut files);
    } else {
        files.push(src.join(format!("{part}.rs")));
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if names.iter().any(|name| line.contains(name)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn nothing_below_the_service_names_the_layers_above_it() {
    let above = [
        "crate::service",
        "crate::server",
        "crate::cli",
        "crate::api",
        "crate::eval",
    ];
    for part in [
        "corpus",
        "embed",
        "import",
        "store",
        "cluster",
        "lexical",
        "vector",
        "tuning",
        "domain",
        "error_code",
    ] {
        let found = mentions(part, &above);
        assert!(found.is_empty(), "{part} reaches up:\n{}", found.join("\n"));
    }
}

#[test]
fn the_service_knows_no_transport() {
    let found = mentions(
        "service",
        &["crate::server", "crate::cli", "crate::api", "axum"],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_model_manifest_reads_its_knobs_from_below_the_service() {
    let found = mentions("embed", &["crate::service", "crate::store"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_json_api_and_the_pages_never_name_each_other() {
    let found = mentions("server/api", &["pages::", "server::pages"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
    let found = mentions("server/pages", &["api::", "server::api", "crate::api"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}
