"""PyTorch peer for scripts/gpu-check: a BERT of multilingual-e5-small's shape (random
weights) embedding the same windows as `storydex model check-device`, batched the same
way (longest first, padded batches of at most BATCH_TOKENS tokens), in f16 and bf16.

    python3 scripts/gpu_peer_torch.py [WINDOWS] [BATCH_TOKENS]

Prints one JSON object. Needs torch with CUDA; nothing else.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

H, LAYERS, HEADS, FF, VOCAB, POSITIONS = 384, 12, 12, 1536, 250037, 512


def lengths(n):
    # The same formula as storydex's device_check::throughput_lengths.
    return [32 + (i * 7919) % 481 for i in range(n)]


def batches(lens, budget):
    order = sorted(range(len(lens)), key=lambda i: -lens[i])
    out, i = [], 0
    while i < len(order):
        longest, count = 0, 0
        for j in order[i:]:
            longest = max(longest, lens[j])
            if count > 0 and (count + 1) * longest > budget:
                break
            count += 1
        out.append(order[i:i + count])
        i += count
    return out


class Bert(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.words = torch.nn.Embedding(VOCAB, H)
        self.positions = torch.nn.Embedding(POSITIONS, H)
        self.norm = torch.nn.LayerNorm(H, eps=1e-12)
        self.layers = torch.nn.ModuleList()
        for _ in range(LAYERS):
            self.layers.append(torch.nn.ModuleDict({
                "qkv": torch.nn.Linear(H, 3 * H),
                "out": torch.nn.Linear(H, H),
                "norm1": torch.nn.LayerNorm(H, eps=1e-12),
                "up": torch.nn.Linear(H, FF),
                "down": torch.nn.Linear(FF, H),
                "norm2": torch.nn.LayerNorm(H, eps=1e-12),
            }))

    def forward(self, ids, mask):
        n, length = ids.shape
        x = self.norm(self.words(ids) + self.positions.weight[:length])
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            q, k, v = layer["qkv"](x).view(n, length, 3, HEADS, H // HEADS).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            context = context.transpose(1, 2).reshape(n, length, H)
            x = layer["norm1"](x + layer["out"](context))
            x = layer["norm2"](x + layer["down"](F.gelu(layer["up"](x))))
        pooled = (x.float() * mask[:, :, None]).sum(1)
        return F.normalize(pooled, dim=-1)


def main():
    windows = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    budget = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
    device = torch.device("cuda")
    lens = lengths(windows)
    gen = torch.Generator().manual_seed(7)
    seqs = [torch.randint(5, VOCAB, (n,), generator=gen) for n in lens]
    plan = []
    for batch in batches(lens, budget):
        longest = max(lens[i] for i in batch)
        ids = torch.ones(len(batch), longest, dtype=torch.long)
        mask = torch.zeros(len(batch), longest)
        for row, i in enumerate(batch):
            ids[row, :lens[i]] = seqs[i]
            mask[row, :lens[i]] = 1.0
        plan.append((ids.to(device), mask.to(device)))
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "throughput": []}
    for dtype in (torch.float16, torch.bfloat16):
        model = Bert().to(device=device, dtype=dtype).eval()
        with torch.inference_mode():
            def once():
                for ids, mask in plan:
                    model(ids, mask).cpu()
            once()
            best = float("inf")
            for _ in range(3):
                torch.cuda.synchronize()
                started = time.perf_counter()
                once()
                torch.cuda.synchronize()
                best = min(best, time.perf_counter() - started)
        report["throughput"].append({
            "precision": str(dtype).replace("torch.", "").replace("float16", "f16").replace("bf16", "bf16"),
            "windows": windows, "tokens": sum(lens), "batch_tokens": budget,
            "seconds": best, "tokens_per_second": sum(lens) / best,
        })
    print(json.dumps(report))


if __name__ == "__main__":
    main()
