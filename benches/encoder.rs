//! Embedding latency with the real model (`models/multilingual-e5-small/`): a short
//! query, and a passage of about 250 tokens cut from the sample corpus. Reported per
//! call and as tokens per second. Without the model folder it prints how to get it and
//! measures nothing (the tests, not the benches, insist on the model).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use storydex::embed::{CandleEncoder, Encoder, ModelFiles, ModelSpec};

const QUERY: &str = "Boston Dynamics Atlas robot in car factories";
const PASSAGE_TOKENS: usize = 250;

fn load() -> Option<CandleEncoder> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/multilingual-e5-small");
    let files = match ModelFiles::from_dir(&dir) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("encoder bench skipped: {e}");
            return None;
        }
    };
    Some(CandleEncoder::load(ModelSpec::default_model(), &files).expect("load the model"))
}

/// The first stories of a sample digest, cut to about `tokens` tokens.
fn passage(encoder: &CandleEncoder, tokens: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/001_f9894c49d7f708a5.txt");
    let text = std::fs::read_to_string(path).expect("read the sample digest");
    let body = text.splitn(3, "---").nth(2).unwrap_or(&text).trim();
    let chars: Vec<char> = body.chars().collect();
    let (mut lo, mut hi) = (1, chars.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let candidate: String = chars[..mid].iter().collect();
        if encoder.count_tokens(&candidate).expect("count tokens") < tokens {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    chars[..lo].iter().collect()
}

fn encoder(c: &mut Criterion) {
    let Some(encoder) = load() else { return };
    let passage = passage(&encoder, PASSAGE_TOKENS);

    let mut group = c.benchmark_group("encoder");
    group.sample_size(20);
    let query_tokens = encoder.count_tokens(QUERY).expect("count tokens");
    group.throughput(Throughput::Elements(query_tokens as u64));
    group.bench_function(format!("query_{query_tokens}_tokens"), |b| {
        b.iter(|| encoder.embed_query(QUERY).expect("embed"))
    });
    let windows = encoder.embed_passages(&[&passage]).expect("embed");
    assert_eq!(windows[0].len(), 1, "the passage must fit one window");
    let passage_tokens = windows[0][0].tokens;
    group.throughput(Throughput::Elements(passage_tokens as u64));
    group.bench_function(format!("passage_{passage_tokens}_tokens"), |b| {
        b.iter(|| encoder.embed_passages(&[&passage]).expect("embed"))
    });
    group.finish();
}

criterion_group!(benches, encoder);
criterion_main!(benches);
