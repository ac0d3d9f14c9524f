"""Golden vectors for `relative_attention` (Music Transformer, causal, per-head E^r), `shaw_attention`
(Shaw et al. eq. (3)-(5), clipped key and value embeddings shared by the heads) and
`t5_relative_bucket` (transformers' `T5Attention._relative_position_bucket`).

Attention outputs come from an explicit O(L^2 D) float64 evaluation in NumPy: the relative
embeddings are gathered per (i, j) pair into an [L, L, D] tensor (what the skew avoids), the
logits formed, a two-pass softmax taken.
"""
import math

import numpy as np
import torch
import transformers
from transformers.models.t5.modeling_t5 import T5Attention

from common import DTYPES, U, U_ACC, case, ftensor, rng_for, round_to, round_up_2sig, store_expected, tensor, write_cases

SEED = 0x5EC0_0004
CASES = []


def attend(q, k, v, ak_ij, av_ij, causal, scale):
    """q, k [L, H, D], v [L, H, Dv]; ak_ij [H, L, L, D], av_ij [H, L, L, Dv] or None."""
    L, H, D = q.shape
    o = np.zeros((L, H, v.shape[2]))
    for h in range(H):
        e = (np.einsum("id,jd->ij", q[:, h], k[:, h]) + np.einsum("id,ijd->ij", q[:, h], ak_ij[h])) * scale
        if causal:
            e = np.where(np.tril(np.ones((L, L), dtype=bool)), e, -np.inf)
        p = np.exp(e - e.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        vals = v[:, h][None, :, :] + (av_ij[h] if av_ij is not None else 0.0)
        o[:, h] = np.einsum("ij,ijd->id", p, vals)
    return o


def tol(dtype, q, k, ak, v, av, L, D, scale):
    m = lambda a: float(np.abs(a).max()) if a is not None and a.size else 0.0
    de = (D + 4) * U_ACC[dtype] * scale * D * m(q) * (m(k) + m(ak))
    vm = m(v) + m(av)
    return round_up_2sig((2 * de + (L + 8) * U_ACC[dtype]) * vm + 1e-300), 2 * U[dtype]


def music(dtype, L, H, D, scale=None):
    cid = f"relative_attention/music/{dtype}-L{L}-H{H}-D{D}" + ("-scaled" if scale else "")
    rng = rng_for(SEED, cid)
    q, k, v = (round_to(dtype, rng.standard_normal((L, H, D))) for _ in range(3))
    er = round_to(dtype, rng.standard_normal((H, L, D)) * 0.5)
    s = scale if scale else 1 / math.sqrt(D)
    # a^K_ij = E^r[L - 1 - (i - j)] for j <= i (the causal mask hides the rest).
    ak = np.zeros((H, L, L, D))
    for i in range(L):
        for j in range(i + 1):
            ak[:, i, j] = er[:, L - 1 - (i - j)]
    o = attend(q, k, v, ak, None, True, s)
    atol, rtol = tol(dtype, q, k, er, v, None, L, D, s)
    params = {"causal": True}
    if scale:
        params["scale"] = scale
    CASES.append(case(cid, "relative_attention", "explicit O(L^2 D) float64 evaluation (NumPy) of Music "
                      "Transformer's relative logits", dtype, params,
                      {"q": ftensor(q), "k": ftensor(k), "v": ftensor(v), "er": ftensor(er)},
                      {"o": {"shape": list(o.shape), "data": store_expected(o, dtype)}}, atol, rtol))


def shaw(dtype, L, H, D, clip, causal, with_av=True):
    cid = f"shaw_attention/{dtype}-L{L}-H{H}-D{D}-k{clip}" + ("-causal" if causal else "") + ("" if with_av else "-noav")
    rng = rng_for(SEED, cid)
    q, k, v = (round_to(dtype, rng.standard_normal((L, H, D))) for _ in range(3))
    akt = round_to(dtype, rng.standard_normal((2 * clip + 1, D)) * 0.5)
    avt = round_to(dtype, rng.standard_normal((2 * clip + 1, D)) * 0.5) if with_av else None
    idx = np.clip(np.arange(L)[None, :] - np.arange(L)[:, None], -clip, clip) + clip  # [i, j]
    ak = np.broadcast_to(akt[idx][None], (H, L, L, D))
    av = np.broadcast_to(avt[idx][None], (H, L, L, D)) if with_av else None
    s = 1 / math.sqrt(D)
    o = attend(q, k, v, ak, av, causal, s)
    atol, rtol = tol(dtype, q, k, akt, v, avt, L, D, s)
    inputs = {"q": ftensor(q), "k": ftensor(k), "v": ftensor(v), "ak": ftensor(akt)}
    if with_av:
        inputs["av"] = ftensor(avt)
    CASES.append(case(cid, "shaw_attention", "explicit O(L^2 D) float64 evaluation (NumPy) of Shaw et al. "
                      "eq. (3)-(5)", dtype, {"clip": clip, "causal": causal}, inputs,
                      {"o": {"shape": list(o.shape), "data": store_expected(o, dtype)}}, atol, rtol))


def t5(bidirectional, num_buckets, max_distance, lo, hi):
    rp = torch.arange(lo, hi, dtype=torch.long)
    b = T5Attention._relative_position_bucket(rp, bidirectional=bidirectional, num_buckets=num_buckets,
                                              max_distance=max_distance)
    cid = f"t5_relative_bucket/{'bi' if bidirectional else 'causal'}-n{num_buckets}-d{max_distance}"
    CASES.append(case(cid, "t5_relative_bucket", f"transformers {transformers.__version__} "
                      "T5Attention._relative_position_bucket", "f32",
                      {"bidirectional": bidirectional, "num_buckets": num_buckets, "max_distance": max_distance},
                      {"relative_position": tensor([len(rp)], [int(x) for x in rp])},
                      {"bucket": tensor([len(b)], [int(x) for x in b])}, 0.0, 0.0))


for dt in DTYPES:
    music(dt, 6, 2, 4)
    music(dt, 12, 2, 8)
    shaw(dt, 7, 2, 4, 2, False)
    shaw(dt, 9, 2, 8, 3, True)
music("f32", 1, 1, 4)
music("f32", 33, 1, 4)
music("f32", 9, 2, 8, scale=0.5)
shaw("f32", 5, 1, 4, 0, False)
shaw("f32", 12, 3, 4, 20, False, with_av=False)
for bi in (True, False):
    for n, d in ((32, 128), (16, 64), (8, 20), (64, 1000)):
        t5(bi, n, d, -1100, 1101)

if __name__ == "__main__":
    write_cases("relative_attention.json", CASES)
