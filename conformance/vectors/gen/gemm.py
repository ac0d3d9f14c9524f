"""gemm golden vectors -> ../gemm.json

c = alpha * a @ b + beta * c over a batch, computed exactly (Python fractions.Fraction on the
dtype-rounded inputs) and rounded once to float64; cross-checked against numpy.matmul in float64.
When beta is 0, c is not read (as in BLAS): a NaN or infinity in c does not reach the result.
"""
import math
import os
import platform
import sys
from fractions import Fraction

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (DTYPES, U, U_ACC, case, ftensor, rng_for, round_to, round_up_2sig,  # noqa: E402
                    store_expected, write_cases)

SEED = 20240602
SOURCE = (f"Python {platform.python_version()} fractions.Fraction exact, rounded once to float64 "
          f"(cross-checked with numpy {np.__version__} matmul, float64)")


def exact_gemm(a, b, c, alpha, beta):
    B, M, K = a.shape
    N = b.shape[2]
    out = np.zeros((B, M, N))
    fa = [[[Fraction(float(v)) for v in row] for row in mat] for mat in a]
    fb = [[[Fraction(float(b[bi, k, j])) for k in range(K)] for j in range(N)] for bi in range(B)]
    al, be = Fraction(alpha), Fraction(beta)
    for bi in range(B):
        for i in range(M):
            for j in range(N):
                s = sum((x * y for x, y in zip(fa[bi][i], fb[bi][j])), Fraction(0))
                v = al * s
                if beta != 0:
                    v += be * Fraction(float(c[bi, i, j]))
                out[bi, i, j] = float(v)  # Fraction -> float rounds to nearest
    return out


def tolerance(dtype, a, b, c, alpha, beta):
    K = a.shape[2]
    u_acc = U_ACC[dtype]
    if a.size and b.size and K:
        s = np.einsum("bik,bkj->bij", np.abs(a), np.abs(b)).max()
    else:
        s = 0.0
    atol = 2 * K * u_acc * abs(alpha) * s
    if beta != 0 and c is not None and c.size:
        atol += 2 * u_acc * abs(beta) * np.abs(c).max()
    atol = max(round_up_2sig(atol), 1e-30)
    return atol, 2 * U[dtype]


def fmt(v):
    return f"{v:g}"


CASES = []


def add(dtype, B, M, K, N, alpha=1.0, beta=0.0, with_c=None, tag="", make=None, note=None,
        explicit=False):
    with_c = (beta != 0) if with_c is None else with_c
    cid = f"gemm/{dtype}/B{B}-M{M}-K{K}-N{N}"
    if alpha != 1:
        cid += f"-alpha{fmt(alpha)}"
    if beta != 0 or with_c:
        cid += f"-beta{fmt(beta)}"
    if tag:
        cid += f"-{tag}"
    rng = rng_for(SEED, cid)
    if make is None:
        a = rng.normal(size=(B, M, K))
        b = rng.normal(size=(B, K, N))
        c = rng.normal(size=(B, M, N)) if with_c else None
    else:
        a, b, c = make(rng)
    a, b = round_to(dtype, a), round_to(dtype, b)
    c = round_to(dtype, c) if c is not None else None
    y = exact_gemm(a, b, c, alpha, beta)
    # cross-check: float64 matmul within the float64 error bound
    with np.errstate(all="ignore"):
        chk = alpha * np.matmul(a, b) + (beta * c if beta != 0 else 0.0)
        bound = (2 * K + 4) * U["f64"] * (abs(alpha) * np.matmul(np.abs(a), np.abs(b))
                                          + (abs(beta) * np.abs(c) if beta != 0 else 0.0))
    assert np.all(np.abs(chk - y) <= bound + 1e-300), cid
    params = {}
    if alpha != 1 or explicit:
        params["alpha"] = alpha
    if beta != 0 or with_c or explicit:
        params["beta"] = beta
    inputs = {"a": ftensor(a), "b": ftensor(b)}
    if c is not None:
        inputs["c"] = ftensor(c)
    atol, rtol = tolerance(dtype, a, b, c, alpha, beta)
    CASES.append(case(cid, "gemm", SOURCE, dtype, params, inputs,
                      {"c": {"shape": [B, M, N], "data": store_expected(y, dtype)}},
                      atol, rtol, note))


# (B, M, K, N): sizes from {0, 1, 2, 7, 8, 9, 16, 17, 33}, B from {1, 3}. Small shapes for every
# dtype, larger ones spread over the dtypes (the 400 KB budget does not hold them all four times).
COMMON = [(1, 1, 1, 1), (1, 2, 2, 2), (1, 7, 9, 8), (3, 7, 1, 9), (1, 1, 33, 1), (3, 2, 7, 2)]
LARGER = {
    "f32": [(1, 9, 17, 7), (3, 8, 16, 2), (1, 17, 33, 2), (1, 2, 9, 33)],
    "f64": [(1, 16, 8, 9), (3, 2, 17, 8), (1, 8, 33, 8), (1, 33, 7, 2)],
    "f16": [(1, 9, 16, 17), (3, 8, 9, 2), (1, 33, 7, 2), (1, 2, 33, 16)],
    "bf16": [(1, 16, 17, 9), (3, 2, 8, 7), (1, 8, 33, 8), (1, 33, 2, 9)],
}
# (alpha, beta) in rotation; beta != 0 comes with c.
AB = [(1.0, 0.0), (0.5, 0.0), (1.0, 1.0), (1.0, -0.25), (0.5, 1.0), (0.5, -0.25)]

for di, dt in enumerate(DTYPES):
    for si, (B, M, K, N) in enumerate(COMMON + LARGER[dt]):
        alpha, beta = AB[(si + di) % len(AB)]
        add(dt, B, M, K, N, alpha, beta)
    # K = 0: the product is empty (zero); with beta the result is beta * c.
    add(dt, 3, 7, 0, 8, note="K = 0: a @ b is zero.")
    add(dt, 1, 9, 0, 2, 0.5, 1.0, note="K = 0: the result is beta * c.")
    add(dt, 3, 2, 0, 16, 1.0, -0.25, note="K = 0: the result is beta * c.")
    # M = 0 and N = 0: empty results.
    add(dt, 1, 0, 7, 9, note="M = 0: the result is empty.")
    add(dt, 3, 0, 8, 2, 0.5, 1.0, note="M = 0: the result is empty.")
    add(dt, 1, 8, 9, 0, note="N = 0: the result is empty.")
    # beta = 0 with c given, c holding NaN and infinities: c is not read.
    def nan_c(rng, B=3, M=7, K=8, N=2):
        a = rng.normal(size=(B, M, K))
        b = rng.normal(size=(B, K, N))
        c = rng.normal(size=(B, M, N))
        c[rng.random(c.shape) < 0.3] = math.nan
        c[0, 0, 0] = math.inf
        c[1, 2, 1] = -math.inf
        c[2, 1, 0] = math.nan
        return a, b, c
    add(dt, 3, 7, 8, 2, 1.0, 0.0, with_c=True, tag="cnan", make=nan_c, explicit=True,
        note="beta is 0, so c is not read (as in BLAS): its NaN and infinities do not reach the "
             "result; 0 * NaN must not be computed.")
    add(dt, 1, 2, 2, 2, 1.0, 0.0, explicit=True, tag="explicit",
        note="alpha 1 and beta 0 given explicitly (the defaults), no c.")


# Magnitude-300 cases in f16 (and bf16): every product a_ik * b_kj is 6.8e4 to 1.2e5, above the f16
# maximum 65504, but products cancel in pairs (a[:, 2t+1] == a[:, 2t], b[2t+1, :] = -b[2t, :] + d,
# |d| <= 8), so the exact result stays far below 65504. Accumulating (or forming products) in f16
# overflows or loses everything; in f32 the result is finite and accurate.
def mag300(K):
    def make(rng, B=1, M=7, N=9):
        a = np.empty((B, M, K))
        b = np.empty((B, K, N))
        pa = rng.uniform(260, 350, size=(B, M, (K + 1) // 2)) * rng.choice([-1, 1], size=(B, M, (K + 1) // 2))
        pb = rng.uniform(260, 350, size=(B, (K + 1) // 2, N)) * rng.choice([-1, 1], size=(B, (K + 1) // 2, N))
        d = rng.uniform(-8, 8, size=(B, (K + 1) // 2, N))
        for t in range(K // 2):
            a[:, :, 2 * t] = pa[:, :, t]
            a[:, :, 2 * t + 1] = pa[:, :, t]
            b[:, 2 * t, :] = pb[:, t, :]
            b[:, 2 * t + 1, :] = -pb[:, t, :] + d[:, t, :]
        if K % 2:
            a[:, :, K - 1] = pa[:, :, -1]
            b[:, K - 1, :] = d[:, -1, :]  # a small last factor: product <= 350 * 8
        return a, b, None
    return make


def add_mag300(dt, K, alpha):
    n0 = len(CASES)
    add(dt, 1, 7, K, 9, alpha, 0.0, tag="mag300", make=mag300(K),
        note="Entries of magnitude 260-350: every product exceeds 65504, products cancel in pairs "
             "so |c| stays below 65504; products and sums must be formed in f32 or wider.")
    c = CASES[n0]
    a = np.array(c["inputs"]["a"]["data"], dtype=float).reshape(c["inputs"]["a"]["shape"])
    b = np.array(c["inputs"]["b"]["data"], dtype=float).reshape(c["inputs"]["b"]["shape"])
    y = np.array(c["expected"]["c"]["data"], dtype=float)
    assert np.all(np.abs(y) < 65504 / 2), c["id"]
    assert np.abs(a[0, :, 0:1] * b[0, 0:1, :]).min() > 65504, c["id"]


for K in (16, 17, 33):
    add_mag300("f16", K, 1.0)
add_mag300("f16", 8, 0.5)
add_mag300("bf16", 16, 1.0)

if __name__ == "__main__":
    write_cases("gemm.json", CASES)
