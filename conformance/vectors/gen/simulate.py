"""Tolerance sanity check: run plausible implementations in the working precision (f32 arithmetic
for f16/bf16/f32 cases, f64 for f64 cases; sequential accumulation; output rounded to the dtype)
against every case, and expect all to pass; then run known-bad variants (f16 accumulation, NaN
dropped by max, unscaled sum of squares, ...) and expect each to fail somewhere.

    python3 conformance/vectors/gen/simulate.py
"""
import glob
import json
import math
import os
import sys

import numpy as np
import scipy.special

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import VECTORS_DIR, round_to  # noqa: E402

NAN, INF = math.nan, math.inf


def arr(t):
    return np.array([{"inf": INF, "-inf": -INF, "nan": NAN}.get(v, v) if isinstance(v, str) else v
                     for v in t["data"]], dtype=np.float64).reshape(t["shape"])


def wt(dt):
    return np.float64 if dt == "f64" else np.float32


def passes(got, exp, atol, rtol):
    got, exp = np.asarray(got, np.float64).ravel(), np.asarray(exp, np.float64).ravel()
    if got.shape != exp.shape:
        return False
    with np.errstate(invalid="ignore"):
        return _passes(got, exp, atol, rtol)


def _passes(got, exp, atol, rtol):
    ok = np.where(np.isnan(exp), np.isnan(got),
                  np.where(np.isinf(exp), got == exp,
                           np.isfinite(got) & (np.abs(got - exp) <= atol + rtol * np.abs(exp))))
    return bool(ok.all())


def seqsum(x, t, axis=-1):
    """Sequential (left-to-right) sum in type t."""
    x = np.asarray(x, t)
    if x.shape[axis] == 0:
        return np.zeros(x.shape[:-1], t)
    return np.cumsum(x, axis=axis, dtype=t)[..., -1]


# ---- implementations; `bug` selects a known-bad variant ----

def softmax(x, dt, log, bug=None):
    t = wt(dt)
    x = x.astype(t)
    acc = np.float16 if bug == "f16acc" else t
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        for r, row in enumerate(x):
            if np.isnan(row).any() or np.isposinf(row).any():
                out[r] = NAN
                continue
            if bug == "mask1e30":
                row = np.where(row < -1e29, -INF, row)  # treats huge negatives as masked
            if np.isneginf(row).all():
                out[r] = -INF if log else 0.0
                continue
            m = row.max()
            e = np.exp(row - m).astype(acc)
            s = t(seqsum(e, acc))
            out[r] = (row - m) - np.log(s) if log else np.exp(row - m) / s
    return out


def gemm(a, b, c, alpha, beta, dt, bug=None):
    t = np.float16 if bug == "f16acc" else wt(dt)
    a, b = a.astype(t), b.astype(t)
    B, M, K = a.shape
    acc = np.zeros((B, M, b.shape[2]), t)
    with np.errstate(all="ignore"):
        for k in range(K):
            acc = (acc + a[:, :, k, None] * b[:, None, k, :]).astype(t)
        out = t(alpha) * acc
        if beta != 0 or (bug == "readc" and c is not None):
            out = out + t(beta) * c.astype(t)
    return out


def unary(op, x, dt, bug=None):
    t = wt(dt)
    x = x.astype(t)
    one, half = t(1), t(0.5)
    with np.errstate(all="ignore"):
        def sig(v):
            e = np.exp(-np.abs(v))
            return np.where(v >= 0, one / (one + e), e / (one + e))
        if op == "exp":
            return np.exp(x)
        if op == "log":
            return np.log(x)
        if op == "sigmoid":
            return sig(x)
        if op == "silu":
            return np.where(np.isneginf(x), -0.0, x * sig(x))
        if op == "gelu":
            if bug == "naive":
                return half * x * (one + scipy.special.erf(x * t(1 / math.sqrt(2)))).astype(t)
            return np.where(np.isneginf(x), -0.0,
                            half * x * scipy.special.erfc(-x * t(1 / math.sqrt(2))).astype(t))
        if op == "gelu_tanh":
            w = t(math.sqrt(2 / math.pi)) * (x + t(0.044715) * x * x * x)
            if bug == "naive":
                return half * x * (one + np.tanh(w))
            return np.where(np.isneginf(x), -0.0, x * sig(t(2) * w))
        if op == "softplus":
            if bug == "naive":
                return np.log(one + np.exp(x))
            return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
        if op == "elu1":
            return np.where(x > 0, x + one, np.exp(np.minimum(x, 0)))
        if op == "tanh":
            return np.tanh(x)
        if op == "relu":
            return np.fmax(x, t(0)) if bug == "fmax" else np.maximum(x, t(0))
        if op == "sqrt":
            return np.sqrt(x)
        if op == "recip":
            return one / x
        if op == "square":
            return x * x
        if op == "abs":
            return np.abs(x)
        if op == "neg":
            return -x
    raise ValueError(op)


def reduce(op, x, dt, bug=None):
    t = wt(dt)
    x = x.astype(t)
    R, C = x.shape
    out = np.empty(R, t)
    with np.errstate(all="ignore"):
        for r, row in enumerate(x):
            if op == "sum":
                out[r] = seqsum(row, np.float16 if bug == "f16acc" else t)
            elif op == "mean":
                out[r] = seqsum(row, t) / t(C) if C else NAN
            elif op == "max":
                out[r] = (np.fmax.reduce(row) if bug == "fmax" else row.max()) if C else -INF
            elif op == "min":
                out[r] = row.min() if C else INF
            elif op == "logsumexp":
                if C == 0:
                    out[r] = -INF
                    continue
                m = row.max()
                if np.isnan(m) or np.isinf(m):
                    out[r] = m
                    continue
                if bug == "noshift":
                    out[r] = np.log(seqsum(np.exp(row), t))
                else:
                    out[r] = m + np.log(seqsum(np.exp(row - m), t))
            elif op == "l2norm":
                if np.isnan(row).any():
                    out[r] = NAN
                    continue
                if bug == "noscale":
                    out[r] = np.sqrt(seqsum(row * row, t))
                    continue
                m = np.abs(row).max() if C else t(0)
                if m == 0 or np.isinf(m):
                    out[r] = m
                    continue
                out[r] = m * np.sqrt(seqsum((row / m) ** 2, t))
    return out


def top_k(x, k, bug=None):
    R, C = x.shape
    vals, idx = np.zeros((R, k)), np.zeros((R, k), np.int64)
    for r in range(R):
        row = x[r]
        if bug == "nanlow":
            key = lambda i: (1, 0.0, i) if math.isnan(row[i]) else (0, -row[i], i)  # noqa: E731
        else:
            key = lambda i: (0, 0.0, i) if math.isnan(row[i]) else (1, -row[i], i)  # noqa: E731
        o = sorted(range(C), key=key)[:k]
        vals[r], idx[r] = row[o], o
    return vals, idx


def run(c, bug=None):
    dt, p, ins = c["dtype"], c["params"], {k: arr(v) for k, v in c["inputs"].items()}
    tol = c["tolerance"]
    m = c["mechanism"]
    if m in ("softmax", "log_softmax"):
        got = {"y": softmax(ins["x"], dt, m == "log_softmax", bug)}
    elif m == "gemm":
        got = {"c": gemm(ins["a"], ins["b"], ins.get("c"), p.get("alpha", 1.0), p.get("beta", 0.0), dt, bug)}
    elif m == "unary":
        got = {"y": unary(p["op"], ins["x"], dt, bug)}
    elif m == "reduce":
        got = {"y": reduce(p["op"], ins["x"], dt, bug)}
    elif m == "top_k":
        v, i = top_k(ins["x"], p["k"], bug)
        got = {"values": v, "indices": i}
    else:
        raise ValueError(m)
    ok = True
    for name, g in got.items():
        g = round_to(dt, np.asarray(g, np.float64))  # output stored in the dtype
        ok &= passes(g, arr(c["expected"][name]), tol["atol"], tol["rtol"])
    return ok


def main():
    cases = []
    for path in sorted(glob.glob(os.path.join(VECTORS_DIR, "*.json"))):
        cases += json.load(open(path))
    failed = [c["id"] for c in cases if not run(c)]
    print(f"reference implementations: {len(cases) - len(failed)}/{len(cases)} cases pass")
    for f in failed:
        print("  FAIL", f)
    BUGS = [
        ("softmax f16 accumulator", lambda c: c["mechanism"] == "softmax", "f16acc"),
        ("log_softmax -1e30 treated as masked", lambda c: c["mechanism"] == "log_softmax", "mask1e30"),
        ("gemm f16 accumulator", lambda c: c["mechanism"] == "gemm" and c["dtype"] == "f16", "f16acc"),
        ("gemm reads c when beta = 0", lambda c: c["mechanism"] == "gemm", "readc"),
        ("relu via fmax (drops NaN)", lambda c: c["params"].get("op") == "relu", "fmax"),
        ("naive gelu 0.5x(1+erf)", lambda c: c["params"].get("op") == "gelu", "naive"),
        ("naive gelu_tanh 0.5x(1+tanh)", lambda c: c["params"].get("op") == "gelu_tanh", "naive"),
        ("naive softplus log(1+e^x)", lambda c: c["params"].get("op") == "softplus", "naive"),
        ("sum with f16 accumulator", lambda c: c["mechanism"] == "reduce" and c["params"]["op"] == "sum"
         and c["dtype"] == "f16", "f16acc"),
        ("max via fmax (drops NaN)", lambda c: c["mechanism"] == "reduce" and c["params"]["op"] == "max", "fmax"),
        ("logsumexp without max shift", lambda c: c["mechanism"] == "reduce" and c["params"]["op"] == "logsumexp", "noshift"),
        ("l2norm without scaling", lambda c: c["mechanism"] == "reduce" and c["params"]["op"] == "l2norm", "noscale"),
        ("top_k with NaN smallest", lambda c: c["mechanism"] == "top_k", "nanlow"),
    ]
    status = 0 if not failed else 1
    for name, sel, bug in BUGS:
        caught = [c["id"] for c in cases if sel(c) and not run(c, bug)]
        show = [i for i in caught if any(t in i for t in ("equal4096", "mag300", "far", "cnan", "huge",
                                                           "tiny", "pm1e4", "special", "tail"))] or caught
        print(f"bad variant '{name}': caught by {len(caught)} case(s)"
              + (f", e.g. {', '.join(show[:5])}" if caught else " -- NOT CAUGHT"))
        if not caught:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
