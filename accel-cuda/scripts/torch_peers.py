#!/usr/bin/env python3
"""PyTorch's peers of the seq CUDA kernels, timed on the same GPU in the same run, and the
comparison table against the seq numbers (`seq-perf.json`, written by `examples/perf.rs`).

- bandwidth: a large device-to-device copy (`y.copy_(x)`, bytes read + written);
- softmax / RoPE / GELU / sum as fractions of that bandwidth (and next to torch's own; RoPE's
  peer is Hugging Face's `apply_rotary_pos_emb` with precomputed cos/sin tables);
- gemm as a fraction of cuBLAS (torch.matmul; TF32 off, so f32 is true f32);
- causal attention forward vs torch.nn.functional.scaled_dot_product_attention
  (B = 1, H = 16, D = 64 and 128, L = 1024 .. 16384, bf16 and f16; target: within 1.5x).

usage: torch_peers.py [seq-perf.json]
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DT = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}


def timed(fn, min_s=0.2):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    one = max(start.elapsed_time(end) / 1e3, 1e-6)
    reps = int(min(max(min_s / one, 3), 1000))
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


def main():
    seq = []
    if len(sys.argv) > 1:
        try:
            with open(sys.argv[1]) as f:
                seq = json.load(f)
        except (OSError, ValueError) as e:
            print(f"(no seq numbers: {e})")
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")

    n = 1 << 28  # 1 GiB of f32
    x = torch.empty(n, dtype=torch.float32, device=dev)
    y = torch.empty_like(x)
    s = timed(lambda: y.copy_(x))
    bw = 2 * n * 4 / s / 1e9
    del x, y
    print(f"bandwidth (1 GiB device-to-device copy, read + write): {bw:.0f} GB/s")

    peers = {}
    for dt in ("f32", "bf16", "f16"):
        a = torch.randn(4096, 8192, dtype=DT[dt], device=dev)
        s = timed(lambda: torch.softmax(a, -1))
        peers[("softmax", dt)] = 2 * a.numel() * a.element_size() / s / 1e9
    for dt in ("f32", "bf16"):
        # Hugging Face's apply_rotary_pos_emb (rotate-half) with the cos/sin tables precomputed,
        # as a Llama layer runs it: H32 L8192 D128, positions 0..L.
        H, L, D = 32, 8192, 128
        q = torch.randn(1, H, L, D, dtype=DT[dt], device=dev)
        inv = 1.0 / (10000 ** (torch.arange(0, D, 2, device=dev, dtype=torch.float32) / D))
        ang = torch.outer(torch.arange(L, device=dev, dtype=torch.float32), inv)
        emb = torch.cat((ang, ang), -1)
        cos, sin = emb.cos().to(DT[dt]), emb.sin().to(DT[dt])

        def rot(x):
            return torch.cat((-x[..., D // 2:], x[..., : D // 2]), -1)

        s = timed(lambda: q * cos + rot(q) * sin)
        peers[("rope", dt)] = 2 * q.numel() * q.element_size() / s / 1e9
        del q
    for dt in ("f32", "bf16"):
        a = torch.randn(1 << 26, dtype=DT[dt], device=dev)
        s = timed(lambda: F.gelu(a))
        peers[("unary_gelu", dt)] = 2 * a.numel() * a.element_size() / s / 1e9
    a = torch.randn(4096, 8192, device=dev)
    s = timed(lambda: a.sum(-1))
    peers[("reduce_sum", "f32")] = a.numel() * 4 / s / 1e9
    for dt, m in (("f32", 4096), ("f16", 4096), ("bf16", 4096), ("f64", 2048)):
        a = torch.randn(m, m, dtype=DT[dt], device=dev)
        b = torch.randn(m, m, dtype=DT[dt], device=dev)
        s = timed(lambda: a @ b)
        peers[("gemm", dt)] = 2 * m**3 / s / 1e9
    for dt in ("bf16", "f16"):
        for d in (64, 128):
            for L in (1024, 2048, 4096, 8192, 16384):
                q = torch.randn(1, 16, L, d, dtype=DT[dt], device=dev)
                k = torch.randn_like(q)
                v = torch.randn_like(q)
                s = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), 0.1)
                peers[("attention", dt, f"B1 H16 L{L} D{d} causal")] = s

    print()
    print(f"{'kernel':<12} {'dtype':<5} {'size':>24} {'seq':>12} {'torch':>12} {'seq/torch':>9} {'seq % bw':>8}")
    seen = set()
    for c in seq:
        k = c["kernel"]
        # attention_rw: the same call with the weights rounded to the element type (FlashAttention's precision)
        att = k.startswith("attention")
        key = ("attention", c["dtype"], c["size"]) if att else (k, c["dtype"])
        seen.add(key)
        if att:
            t = peers.get(key)
            ratio = f"{c['seconds'] / t:.2f}x t" if t else "-"
            print(f"{k:<12} {c['dtype']:<5} {c['size']:>24} {c['seconds']*1e3:>9.3f} ms "
                  f"{(t or 0)*1e3:>9.3f} ms {ratio:>9} {'':>8}")
            continue
        t = peers.get(key)
        frac = f"{100 * c['rate'] / bw:.0f}%" if c["unit"] == "GB/s" else "-"
        ratio = f"{c['rate'] / t:.2f}" if t else "-"
        unit = "GB/s" if c["unit"] == "GB/s" else "GF/s"
        print(f"{k:<12} {c['dtype']:<5} {c['size']:>24} {c['rate']:>7.0f} {unit} {(t or 0):>7.0f} {unit} "
              f"{ratio:>9} {frac:>8}")
    for key, t in peers.items():
        if key not in seen:
            if key[0] == "attention":
                print(f"{key[0]:<12} {key[1]:<5} {key[2]:>24} {'-':>12} {t*1e3:>9.3f} ms {'-':>9}")
            else:
                print(f"{key[0]:<12} {key[1]:<5} {'':>24} {'-':>12} {t:>7.0f} rate {'-':>9}")
    print("\nseq/torch: rate ratio (higher is better); for attention, time ratio (lower is better, target <= 1.5x);")
    print("attention_rw: the weights rounded to the element type before P V, as FlashAttention and SDPA")


if __name__ == "__main__":
    main()
