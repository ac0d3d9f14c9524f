"""unary golden vectors -> ../unary.json

Each finite input is evaluated with mpmath at 50 significant digits and rounded once to float64
(round-to-nearest). Non-finite inputs, zeros and out-of-domain inputs follow IEEE 754 / C99 libm
(NaN in -> NaN out; log and sqrt of a negative -> NaN; log(+-0) -> -inf; recip(+-0) -> +-inf;
sqrt(-0) -> -0). At -inf, silu, gelu and gelu_tanh give their limit, -0 (PyTorch's formulas give
NaN there; see the notes).
"""
import math
import os
import sys

import mpmath
import numpy as np
from mpmath import mp
from mpmath.libmp import to_float

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (DTYPES, U, U_ACC, case, enc_list, ftensor, near_overflow, rng_for,  # noqa: E402
                    round_to, round_up_2sig, store_expected, write_cases)

SEED = 20240603
mp.dps = 50
SOURCE = f"mpmath {mpmath.__version__}, 50 digits, rounded to float64"

OPS = ["exp", "log", "sigmoid", "silu", "gelu", "gelu_tanh", "softplus", "elu1", "tanh", "relu",
       "sqrt", "recip", "square", "abs", "neg"]

# (atol, rtol) per dtype: output rounding to the dtype plus a few roundings in the working
# precision; atol covers results that are subnormal (or flushed to zero) in the dtype.
TOL = {"f64": (1e-300, 1e-14), "f32": (2e-38, 1e-6), "f16": (6e-8, 2e-3), "bf16": (2e-38, 1.6e-2)}

NAN, INF = math.nan, math.inf
SQRT2 = mp.sqrt(2)
GELU_C = mp.sqrt(2 / mp.pi)
GELU_A = mp.mpf("0.044715")


def f64(v):
    return to_float(v._mpf_, rnd="n")  # round to nearest (mpmath's default to_float truncates)


def mp_finite(op, x):
    """op at a finite nonzero float x, to float64."""
    if abs(x) > 1e3 and op in BIG:
        # |x| > 1000: e^-|x| < 1e-434, far below float64 resolution of these results (and of the
        # smallest subnormal), so the asymptotic form is the correctly rounded value.
        return BIG[op](x)
    X = mp.mpf(x)
    if op == "exp":
        return f64(mp.exp(X))
    if op == "log":
        return f64(mp.log(X)) if x > 0 else NAN
    if op == "sigmoid":
        return f64(1 / (1 + mp.exp(-X)))
    if op == "silu":
        return f64(X / (1 + mp.exp(-X)))
    if op == "gelu":
        # x/2 * (1 + erf(x/sqrt2)) == x/2 * erfc(-x/sqrt2), without cancellation for x << 0
        return f64(X / 2 * mp.erfc(-X / SQRT2))
    if op == "gelu_tanh":
        # x/2 * (1 + tanh(w)) == x * sigmoid(2w), w = sqrt(2/pi) (x + 0.044715 x^3)
        w = GELU_C * (X + GELU_A * X ** 3)
        return f64(X / (1 + mp.exp(-2 * w)))
    if op == "softplus":
        return f64(mp.log1p(mp.exp(X)))
    if op == "elu1":
        return f64(X + 1) if x > 0 else f64(mp.exp(X))
    if op == "tanh":
        return f64(mp.tanh(X))
    if op == "relu":
        return x if x > 0 else 0.0
    if op == "sqrt":
        return f64(mp.sqrt(X)) if x > 0 else NAN
    if op == "recip":
        return f64(1 / X)
    if op == "square":
        return f64(X * X)
    if op == "abs":
        return abs(x)
    if op == "neg":
        return -x
    raise ValueError(op)


# Asymptotic forms for |x| > 1000 (mpmath's erfc cannot take arguments like 1e200/sqrt2).
BIG = {
    "exp": lambda x: INF if x > 0 else 0.0,
    "sigmoid": lambda x: 1.0 if x > 0 else 0.0,
    "silu": lambda x: x if x > 0 else -0.0,
    "gelu": lambda x: x if x > 0 else -0.0,
    "gelu_tanh": lambda x: x if x > 0 else -0.0,
    "softplus": lambda x: x if x > 0 else 0.0,
    "elu1": lambda x: x + 1.0 if x > 0 else 0.0,
    "tanh": lambda x: 1.0 if x > 0 else -1.0,
}


# Values at +inf, -inf, +0, -0 (C99 / IEEE 754; limits where the formula would give 0 * inf).
SPECIAL = {
    #            +inf   -inf    +0.0          -0.0
    "exp":       (INF,  0.0,    1.0,          1.0),
    "log":       (INF,  NAN,    -INF,         -INF),
    "sigmoid":   (1.0,  0.0,    0.5,          0.5),
    "silu":      (INF,  -0.0,   0.0,          -0.0),
    "gelu":      (INF,  -0.0,   0.0,          -0.0),
    "gelu_tanh": (INF,  -0.0,   0.0,          -0.0),
    "softplus":  (INF,  0.0,    math.log(2),  math.log(2)),
    "elu1":      (INF,  0.0,    1.0,          1.0),
    "tanh":      (1.0,  -1.0,   0.0,          -0.0),
    "relu":      (INF,  0.0,    0.0,          0.0),
    "sqrt":      (INF,  NAN,    0.0,          -0.0),
    "recip":     (0.0,  -0.0,   INF,          -INF),
    "square":    (INF,  INF,    0.0,          0.0),
    "abs":       (INF,  INF,    0.0,          0.0),
    "neg":       (-INF, INF,    -0.0,         0.0),
}


def reference(op, x):
    if math.isnan(x):
        return NAN
    if math.isinf(x):
        return SPECIAL[op][0 if x > 0 else 1]
    if x == 0:
        return SPECIAL[op][2 if math.copysign(1.0, x) > 0 else 3]
    return mp_finite(op, x)


# Inputs. A dense grid over [-20, 20] (step 1/8 on [-8, 8], 1/2 outside), random points in
# [-20, 20], signed zeros, +-1e-30 (not f16: it rounds to 0 there), +-100, +-1e4 (f32/f64), large
# values, subnormals, a few extra positive values, infinities and NaN.
GRID = sorted(set(np.arange(-20.0, -8.0, 0.5)) | set(np.arange(-8.0, 8.0001, 0.125))
              | set(np.arange(8.5, 20.0001, 0.5)))
SUBNORMALS = {
    "f64": [5e-324, -5e-324, 1e-310, -2.5e-309],
    "f32": [1.401298464324817e-45, -1.401298464324817e-45, 1e-40, -5e-39],
    "f16": [2.0 ** -24, -(2.0 ** -24), 1e-6, -3e-5],
    "bf16": [2.0 ** -133, -(2.0 ** -133), 1e-40, -5e-39],
}
LARGE = {
    "f64": [1e4, -1e4, 1e20, -1e20, 1e200, -1e200],
    "f32": [1e4, -1e4, 1e20, -1e20],
    "f16": [300.0, -300.0, 6e4, -6e4],
    "bf16": [1e20, -1e20, 1.5e19],
}
EXTRA_POS = [1e-3, 0.01, 0.1, 0.3, 1000.0]
# Values where the result is near or past the largest finite value of a narrow dtype.
OVERFLOW = {
    "f16": {"exp": [11.0, 11.05, 12.0, 15.0], "square": [250.0, 255.0, 256.0, 260.0],
            "elu1": [1e4], "softplus": [12.0, 1e4], "relu": [6e4], "silu": [6e4],
            "gelu": [6e4], "gelu_tanh": [6e4], "recip": [2.0 ** -24, 1e-5]},
    "bf16": {"exp": [88.0, 88.5, 89.0], "square": [1.5e19, 2e19], "recip": [1e-39, 2.0 ** -133]},
    "f32": {"exp": [88.0, 88.5, 89.0], "square": [1.5e19, 2e19]},
    "f64": {"exp": [709.0, 710.0], "square": [1e154, 2e154]},
}


def inputs_for(op, dt):
    rng = rng_for(SEED, f"{op}/{dt}")
    xs = list(GRID) + list(rng.uniform(-20, 20, 32))
    xs += [0.0, -0.0, 100.0, -100.0]
    if dt != "f16":
        xs += [1e-30, -1e-30]
    xs += SUBNORMALS[dt] + LARGE[dt] + EXTRA_POS + OVERFLOW.get(dt, {}).get(op, [])
    xs += [INF, -INF, NAN]
    r = round_to(dt, np.array(xs))
    # unique values (keeping -0.0 apart from 0.0), in the listed order
    seen, out = set(), []
    for v in r:
        key = "nan" if math.isnan(v) else (v, math.copysign(1.0, v))
        if key not in seen:
            seen.add(key)
            out.append(float(v))
    return out


# gelu and gelu_tanh: their argument (x/sqrt2, or w = sqrt(2/pi)(x + 0.044715 x^3)) is rounded in
# the working precision before erfc / exp, and the result's relative sensitivity to the argument is
# S(x) = |w d/dw log f| (about x^2 for gelu, |2w| for gelu_tanh, for x << 0). The bound on the
# relative error is then k * u_acc * S(x) + the output rounding, with k the roundings in forming the
# argument (2 for gelu, 7 for gelu_tanh). Points where that exceeds the listed rtol go into a
# separate "tail" case whose rtol is that bound (doubled), so the main case keeps the listed rtol.
ARG_ROUNDINGS = {"gelu": 2, "gelu_tanh": 7}


def sensitivity(op, x):
    if abs(x) > 1e3:
        return 0.0  # the result is x or 0 to far beyond float64 resolution
    X = mp.mpf(x)
    if op == "gelu":
        w = -X / SQRT2
        # d/dw log erfc(w) = -2/sqrt(pi) exp(-w^2) / erfc(w)
        return float(abs(w * 2 / mp.sqrt(mp.pi) * mp.exp(-w * w) / mp.erfc(w)))
    w2 = 2 * GELU_C * (X + GELU_A * X ** 3)
    return float(abs(w2 * (1 - 1 / (1 + mp.exp(-w2)))))


def arg_bound(op, dt, x):
    return 2 * ARG_ROUNDINGS[op] * U_ACC[dt] * sensitivity(op, x) + U[dt]


CASES = []
EXCLUDED = []


def add(op, dt, xs, ys, atol, rtol, tag="", note=None):
    cid = f"unary/{op}/{dt}" + (f"/{tag}" if tag else "")
    notes = []
    if op in ("silu", "gelu", "gelu_tanh") and any(math.isinf(x) and x < 0 for x in xs):
        notes.append(f"{op}(-inf) is its limit, -0 (PyTorch's formula x * (...) gives NaN there).")
    if note:
        notes.append(note)
    CASES.append(case(cid, "unary", SOURCE, dt, {"op": op}, {"x": ftensor(np.array(xs))},
                      {"y": {"shape": [len(ys)], "data": store_expected(np.array(ys), dt)}},
                      atol, rtol, " ".join(notes) if notes else None))


for op in OPS:
    for dt in DTYPES:
        atol, rtol = TOL[dt]
        xs, ys = [], []
        for x in inputs_for(op, dt):
            y = reference(op, x)
            # leave out points whose result sits at the dtype's overflow threshold (finite or
            # infinite within the tolerance)
            if near_overflow(y, dt, 4 * rtol):
                EXCLUDED.append((op, dt, x, y))
                continue
            xs.append(x)
            ys.append(y)
        if op in ARG_ROUNDINGS:
            core = [(x, y) for x, y in zip(xs, ys)
                    if not (math.isfinite(x) and abs(y) > atol and arg_bound(op, dt, x) > rtol)]
            tail = [(x, y) for x, y in zip(xs, ys)
                    if math.isfinite(x) and abs(y) > atol and arg_bound(op, dt, x) > rtol]
            if tail:
                t_rtol = round_up_2sig(2 * max(arg_bound(op, dt, x) for x, _ in tail))
                add(op, dt, [x for x, _ in core], [y for _, y in core], atol, rtol)
                lo, hi = min(x for x, _ in tail), max(x for x, _ in tail)
                add(op, dt, [x for x, _ in tail], [y for _, y in tail], atol, t_rtol, "tail",
                    note=f"Inputs in [{lo:g}, {hi:g}], where rounding {op}'s inner argument in the "
                         "working precision is amplified by the function's sensitivity; rtol is "
                         f"2 * ({ARG_ROUNDINGS[op]} * u_acc * max sensitivity + u).")
                continue
        add(op, dt, xs, ys, atol, rtol)

if __name__ == "__main__":
    for op, dt, x, y in EXCLUDED:
        print(f"  left out near the overflow threshold: {op} {dt} x={x!r} y={y!r}")
    write_cases("unary.json", CASES)
