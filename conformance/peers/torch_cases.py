#!/usr/bin/env python3
"""The issue-8 peers table's cases in PyTorch (CPU) and numpy/OpenBLAS, f32.

Prints one JSON object per line: {"peer": "torch"|"numpy", "case": ..., "threads": n, "ms": median}.
Threads: torch.set_num_threads(n); numpy's OpenBLAS reads OPENBLAS_NUM_THREADS at import, so
run.sh starts this script once per thread count with that variable set.

Usage: torch_cases.py THREADS [FILTER]
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
FILTER = sys.argv[2] if len(sys.argv) > 2 else ""
BUDGET = float(os.environ.get("PEERS_BUDGET_S", "1.0"))
torch.set_num_threads(THREADS)
torch.manual_seed(0)


def median_ms(f):
    """Median milliseconds per call: a warm-up of a tenth of the budget, then the budget (3 calls
    at least), as seq-conformance's perf mode times a row."""
    f()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < BUDGET / 10:
        f()
    s = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < BUDGET or len(s) < 3:
        t = time.perf_counter()
        f()
        s.append((time.perf_counter() - t) * 1e3)
    s.sort()
    return s[len(s) // 2]


def emit(peer, case, f):
    if FILTER not in case:
        return
    print(json.dumps({"peer": peer, "case": case, "threads": THREADS, "ms": median_ms(f)}), flush=True)


def main():
    for n in (1024, 2048):
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        emit("torch", f"gemm {n}^3", lambda: torch.mm(a, b))
        an, bn = a.numpy(), b.numpy()
        emit("numpy", f"gemm {n}^3", lambda: an @ bn)
    for l in (512, 2048):
        q, k, v = (torch.randn(1, 8, l, 64) for _ in range(3))
        emit("torch", f"sdpa causal H=8 D=64 L={l}",
             lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    # RoPE on (L=2048, H=8, D=64), the rotate-half form of HF transformers' apply_rotary_pos_emb.
    l, h, d = 2048, 8, 64
    x = torch.randn(1, h, l, d)
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    ang = torch.outer(torch.arange(l).float(), inv)
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def rope():
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin
    emit("torch", "rope L=2048 H=8 D=64", rope)
    s = torch.randn(8, 2048, 2048)
    emit("torch", "softmax 8x2048x2048", lambda: torch.softmax(s, dim=-1))
    # S4D convolution as the S4/S4D reference code does it: rfft of u and k at 2L, product, irfft.
    hh, ll = 256, 4096
    u = torch.randn(hh, ll)
    kk = torch.randn(hh, ll)
    dd = torch.randn(hh, 1)

    def conv():
        kf = torch.fft.rfft(kk, n=2 * ll)
        uf = torch.fft.rfft(u, n=2 * ll)
        return torch.fft.irfft(uf * kf, n=2 * ll)[..., :ll] + u * dd
    emit("torch", "s4d fft conv H=256 L=4096", conv)
    # Linear-memory recurrent update, one token, Dk = Dv = 128 (gated delta rule step):
    # S <- a S + b (v - a S k) k^T, o = S q.
    dk = dv = 128
    S = torch.randn(dv, dk) * 0.01
    kq = torch.nn.functional.normalize(torch.randn(dk), dim=0)
    qv = torch.randn(dk)
    vv = torch.randn(dv)
    alpha, beta = 0.9, 0.5

    def step():
        Sa = alpha * S
        Sa.add_(torch.outer(beta * (vv - Sa @ kq), kq))
        return Sa @ qv
    emit("torch", "recurrent Dk=Dv=128", step)
    # KD loss + gradient: forward KL at T = 2 with T^2, batchmean, forward + autograd.
    N, V, T = 4096, 32000, 2.0
    tl = torch.randn(N, V)
    sl = torch.randn(N, V, requires_grad=True)

    def kd():
        if sl.grad is not None:
            sl.grad = None
        loss = F.kl_div(F.log_softmax(sl / T, dim=-1), F.log_softmax(tl / T, dim=-1),
                        reduction="batchmean", log_target=True) * (T * T)
        loss.backward()
    emit("torch", "kd loss+grad N=4096 V=32000", kd)


if __name__ == "__main__":
    main()
