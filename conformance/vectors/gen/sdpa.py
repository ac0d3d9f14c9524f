"""sdpa golden vectors -> ../sdpa.json

Expected values: torch.nn.functional.scaled_dot_product_attention in float64 on the dtype-rounded
inputs, with `enable_gqa=True` for grouped/multi-query heads and an explicit boolean (or float,
with a bias) `attn_mask` holding the format's masks: causal bottom-right aligned (query i sits at
key position i' = i + Lk - Lq, as with a KV cache), a sliding window (a key is seen when
0 <= i' - j < window), and a key mask. Cases with a soft cap (Gemma 2's `cap * tanh(s / cap)`,
applied to the scaled logits before the bias and the masks) are computed with explicit torch ops:
repeat_interleave of the KV heads (Hugging Face's repeat_kv), matmul, tanh, masked softmax, matmul.

A query row that sees no key gives zeros (the format's convention, as flash-attention); where
PyTorch's math path gives NaN for such a row, the row is set to zeros and the case's note says so.

Layouts are token-major as the format says: q [Lq, Hq, D], k [Lk, Hkv, D], v [Lk, Hkv, Dv],
o [Lq, Hq, Dv]; key_mask [Lk] (1 seen, 0 hidden); bias [Hq, Lq, Lk].
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DTYPES, case, ftensor, rng_for, round_to, store_expected, tensor, write_cases  # noqa: E402

SEED = 20241127
SOURCE = f"torch {torch.__version__} nn.functional.scaled_dot_product_attention(enable_gqa=True), float64"
SOURCE_EXPLICIT = f"torch {torch.__version__} explicit matmul / tanh / masked softmax / matmul, float64"

# (atol, rtol): the output is stored in the dtype (2u relative), computed with an f32 (f64)
# accumulator; atol covers outputs near zero after cancellation over Lk terms.
TOL = {"f64": (1e-12, 1e-12), "f32": (1e-5, 1e-4), "f16": (1e-4, 2e-3), "bf16": (1e-3, 1.6e-2)}


def visible(lq, lk, causal, window, key_mask):
    """Boolean [Lq, Lk]: key j seen by query i (bottom-right alignment)."""
    m = np.ones((lq, lk), dtype=bool)
    for i in range(lq):
        ip = i + lk - lq
        for j in range(lk):
            if causal and j > ip:
                m[i, j] = False
            if window is not None and ip - j >= window:
                m[i, j] = False
            if key_mask is not None and key_mask[j] == 0:
                m[i, j] = False
    return m


def attention(q, k, v, causal, scale, window, key_mask, bias, softcap):
    """q [Lq, Hq, D], k [Lk, Hkv, D], v [Lk, Hkv, Dv] float64 numpy -> o [Lq, Hq, Dv], note."""
    lq, hq, d = q.shape
    lk, hkv, dv = v.shape
    tq = torch.from_numpy(q).permute(1, 0, 2).unsqueeze(0)
    tk = torch.from_numpy(k).permute(1, 0, 2).unsqueeze(0)
    tv = torch.from_numpy(v).permute(1, 0, 2).unsqueeze(0)
    vis = visible(lq, lk, causal or window is not None, window, key_mask)
    sc = scale if scale is not None else 1.0 / math.sqrt(d)
    if softcap is None:
        if bias is None:
            mask = torch.from_numpy(vis)
        else:
            mask = torch.from_numpy(np.where(vis[None], bias, -np.inf))
        o = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask, scale=sc, enable_gqa=True)
        source = SOURCE
    else:
        rep = hq // hkv
        kk = tk.repeat_interleave(rep, dim=1)
        vv = tv.repeat_interleave(rep, dim=1)
        s = (tq @ kk.transpose(-1, -2)) * sc
        s = softcap * torch.tanh(s / softcap)
        if bias is not None:
            s = s + torch.from_numpy(bias)[None]
        s = s.masked_fill(~torch.from_numpy(vis), -math.inf)
        o = torch.softmax(s, dim=-1) @ vv
        source = SOURCE_EXPLICIT
    o = o[0].permute(1, 0, 2).numpy().copy()  # [Lq, Hq, Dv]
    note = None
    empty = ~vis.any(axis=1)
    if empty.any():
        rows = [int(i) for i in np.nonzero(empty)[0]]
        was_nan = bool(np.isnan(o[empty]).any())
        o[empty] = 0.0
        note = (f"query rows {rows} see no key: set to zeros by the format's convention"
                + (" (PyTorch's math path gives NaN there)" if was_nan else " (PyTorch gives zeros too)"))
    assert not np.isnan(o).any()
    return o, note, source


def make(cid, dtype, lq, lk, hq, hkv, d, dv, causal=True, scale=None, window=None, key_mask=None,
         bias=False, softcap=None, amp=1.0, qkv=None):
    rng = rng_for(SEED, cid)
    if qkv is None:
        q = round_to(dtype, rng.standard_normal((lq, hq, d)) * amp)
        k = round_to(dtype, rng.standard_normal((lk, hkv, d)) * amp)
        v = round_to(dtype, rng.standard_normal((lk, hkv, dv)))
    else:
        q, k, v = (round_to(dtype, np.asarray(x, dtype=np.float64)) for x in qkv)
    b = round_to(dtype, rng.standard_normal((hq, lq, lk))) if bias else None
    o, note, source = attention(q, k, v, causal, scale, window, key_mask, b, softcap)
    params = {"causal": bool(causal)}
    if scale is not None:
        params["scale"] = float(scale)
    if window is not None:
        params["window"] = int(window)
    if softcap is not None:
        params["softcap"] = float(softcap)
    inputs = {"q": ftensor(q), "k": ftensor(k), "v": ftensor(v)}
    if key_mask is not None:
        inputs["key_mask"] = tensor([lk], [int(x) for x in key_mask])
    if b is not None:
        inputs["bias"] = ftensor(b)
    atol, rtol = TOL[dtype]
    return case(cid, "sdpa", source, dtype, params, inputs,
                {"o": tensor(o.shape, store_expected(o, dtype))}, atol, rtol, note)


def main():
    cases = []
    for dt in DTYPES:
        p = f"sdpa/{dt}"
        full = dt == "f32"  # every shape in f32; the other dtypes get the smaller ones
        # Causal self-attention, MHA / GQA / MQA, lengths around the kernel tile (64).
        shapes = [(1, 2, 2, 8), (7, 4, 2, 4), (17, 2, 1, 4)]
        if full:
            shapes += [(7, 4, 4, 8), (64, 2, 1, 4), (65, 1, 1, 4)]
        for (l, hq, hkv, d) in shapes:
            cases.append(make(f"{p}/causal/L{l}-Hq{hq}-Hkv{hkv}-D{d}", dt, l, l, hq, hkv, d, d))
        # Decoding: fewer queries than keys (bottom-right), Dv != D.
        cases.append(make(f"{p}/causal/Lq1-Lk40-Hq2-Hkv1", dt, 1, 40, 2, 1, 4, 4))
        if full:
            cases.append(make(f"{p}/causal/Lq5-Lk13-Hq4-Hkv2-Dv6", dt, 5, 13, 4, 2, 8, 6))
        # More queries than keys: the first rows see nothing.
        cases.append(make(f"{p}/causal/Lq6-Lk3-empty-rows", dt, 6, 3, 2, 1, 4, 4))
        # Bidirectional with key padding (cross-attention shape: Lq != Lk), one fully padded.
        cases.append(make(f"{p}/full/Lq9-Lk11-keymask", dt, 9, 11, 2, 1, 4, 4, causal=False,
                          key_mask=[1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1]))
        cases.append(make(f"{p}/full/Lq3-Lk4-all-padded", dt, 3, 4, 2, 2, 4, 4, causal=False,
                          key_mask=[0, 0, 0, 0]))
        # Sliding window: square, a chunk of queries, window 1, with a key mask.
        cases.append(make(f"{p}/window/L20-w6-Hq2-Hkv1", dt, 20, 20, 2, 1, 4, 4, window=6))
        cases.append(make(f"{p}/window/L9-w1", dt, 9, 9, 2, 2, 4, 4, window=1))
        if full:
            cases.append(make(f"{p}/window/Lq4-Lk30-w5", dt, 4, 30, 4, 2, 4, 4, window=5))
            cases.append(make(f"{p}/window/L12-w4-keymask", dt, 12, 12, 2, 1, 4, 4, window=4,
                              key_mask=[1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1]))
        # Explicit scale; additive bias; soft cap (with and without bias).
        cases.append(make(f"{p}/scale/L8-s0.3", dt, 8, 8, 2, 2, 4, 4, causal=False, scale=0.3))
        cases.append(make(f"{p}/bias/Lq5-Lk7", dt, 5, 7, 2, 1, 4, 4, bias=True))
        cases.append(make(f"{p}/softcap/L9-cap5", dt, 9, 9, 2, 1, 4, 4, softcap=5.0, amp=3.0))
        cases.append(make(f"{p}/softcap/Lq3-Lk8-cap2-bias-full", dt, 3, 8, 2, 1, 4, 4, causal=False,
                          softcap=2.0, bias=True, amp=2.0))
        # Logits near 1e4 (scale 1): separated by at least 20, so the answer is well conditioned.
        rng = rng_for(SEED, f"{p}/huge")
        lq = lk = 6
        q = np.zeros((lq, 2, 8))
        k = np.zeros((lk, 2, 8))
        for j in range(lk):
            k[j, :, j % 8] = 100.0 - 0.25 * j
        for i in range(lq):
            q[i, :, i % 8] = 100.0
        v = rng.standard_normal((lk, 2, 8))
        cases.append(make(f"{p}/huge-logits", dt, lq, lk, 2, 2, 8, 8, scale=1.0, qkv=(q, k, v)))
    # f16 inputs whose q . k overflows f16 (|q . k| = 16 * 200^2 = 640000 > 65504): an f32
    # accumulator is required.
    q = np.full((2, 1, 16), 200.0)
    q[1] = -3.0
    k = np.stack([np.full((1, 16), 200.0), np.full((1, 16), -200.0), np.full((1, 16), 199.0)])
    v = np.array([[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]])
    cases.append(make("sdpa/f16/qk-overflows-f16", "f16", 2, 3, 1, 1, 16, 2, causal=False, qkv=(q, k, v)))
    write_cases("sdpa.json", cases)


if __name__ == "__main__":
    main()
