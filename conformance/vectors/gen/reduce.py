"""reduce golden vectors -> ../reduce.json

Reductions over the last axis of x [R, C], computed on the dtype-rounded inputs:
  sum, mean       math.fsum (exact sum rounded once to float64); mean = fsum / C
  max, min        numpy max/min in float64 (exact)
  logsumexp       scipy.special.logsumexp in float64 (cross-checked with mpmath at 50 digits)
  l2norm          sqrt(math.fsum(x*x)) for f16/bf16/f32 (squares exact in float64),
                  math.hypot(*row) for f64 (both cross-checked with mpmath at 50 digits)
Conventions (applied explicitly): an empty row gives sum 0, mean NaN, max -inf, min +inf,
logsumexp -inf, l2norm 0; a NaN anywhere in a row gives NaN (also next to an infinity: Python's
hypot(inf, nan) is inf, but here NaN wins).
"""
import math
import os
import platform
import sys

import mpmath
import numpy as np
import scipy
import scipy.special
from mpmath import mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (DTYPES, U, U_ACC, case, ftensor, rng_for, round_to, round_up_2sig,  # noqa: E402
                    store_expected, write_cases)

SEED = 20240604
mp.dps = 50
NAN, INF = math.nan, math.inf
OPS = ["sum", "mean", "max", "min", "logsumexp", "l2norm"]
PY = f"Python {platform.python_version()}"


def source(op, dt):
    if op in ("sum", "mean"):
        return f"{PY} math.fsum (exact, rounded once to float64)" + (" / C" if op == "mean" else "")
    if op in ("max", "min"):
        return f"numpy {np.__version__} {op}, float64"
    if op == "logsumexp":
        return f"scipy {scipy.__version__} special.logsumexp, float64 (checked with mpmath {mpmath.__version__})"
    if dt == "f64":
        return f"{PY} math.hypot, float64 (checked with mpmath {mpmath.__version__})"
    return f"{PY} math.sqrt(math.fsum(x*x)) (squares exact), float64 (checked with mpmath {mpmath.__version__})"


def mp_check(op, row, y):
    """Cross-check logsumexp and l2norm of a finite row with mpmath."""
    if op == "logsumexp":
        ref = mp.log(mp.fsum(mp.exp(mp.mpf(v)) for v in row))
    else:
        ref = mp.sqrt(mp.fsum(mp.mpf(v) ** 2 for v in row))
    ref = float(ref)
    assert abs(ref - y) <= 8 * U["f64"] * max(abs(ref), 1e-300) + 1e-300, (op, ref, y)


def reduce_row(op, row):
    """(value, convention_applied_note_or_None) for one row (float64 values)."""
    C = len(row)
    if C == 0:
        return {"sum": 0.0, "mean": NAN, "max": -INF, "min": INF, "logsumexp": -INF, "l2norm": 0.0}[op], \
            "empty row: the convention's identity value"
    if any(math.isnan(v) for v in row):
        return NAN, None
    pos = any(v == INF for v in row)
    neg = any(v == -INF for v in row)
    if op in ("sum", "mean"):
        if pos and neg:
            return NAN, None
        if pos or neg:
            return (INF if pos else -INF), None
        s = math.fsum(row)
        return (s if op == "sum" else s / C), None
    if op == "max":
        return float(np.max(np.array(row))), None
    if op == "min":
        return float(np.min(np.array(row))), None
    if op == "logsumexp":
        with np.errstate(all="ignore"):
            y = float(scipy.special.logsumexp(np.array(row)))
        if not (pos or neg):
            mp_check(op, row, y)
        return y, None
    if op == "l2norm":
        if pos or neg:
            return INF, None
        y = math.hypot(*row)
        return y, None
    raise ValueError(op)


def l2norm_fsum(row):
    return math.sqrt(math.fsum(v * v for v in row))


def tolerance(op, dt, x):
    if op in ("max", "min"):
        return 0.0, 0.0
    R, C = x.shape
    fin = np.where(np.isfinite(x), x, 0.0)
    u_acc = U_ACC[dt]
    if op == "logsumexp":
        atol = 2 * C * u_acc * (np.abs(fin).max(initial=0.0) + 1)
    elif op == "mean":
        # the error of the sum, divided by C
        atol = 2 * C * u_acc * np.abs(fin).sum(axis=1).max(initial=0.0) / max(C, 1)
    else:
        atol = 2 * C * u_acc * np.abs(fin).sum(axis=1).max(initial=0.0)
    return max(round_up_2sig(atol), 1e-30), 2 * U[dt]


CASES = []


def add(op, dt, x, tag="", note=None):
    x = round_to(dt, np.asarray(x, dtype=np.float64).reshape(np.shape(x)))
    R, C = x.shape
    cid = f"reduce/{op}/{dt}/R{R}-C{C}" + (f"-{tag}" if tag else "")
    ys, conv = [], None
    for row in x:
        row = [float(v) for v in row]
        y, c = reduce_row(op, row)
        if op == "l2norm" and dt != "f64" and all(math.isfinite(v) for v in row):
            y2 = l2norm_fsum(row)  # exact sum of exact squares, one sqrt
            if C:
                mp_check(op, row, y2)
            y = y2
        elif op == "l2norm" and C and all(math.isfinite(v) for v in row):
            mp_check(op, row, y)
        conv = conv or c
        ys.append(y)
    notes = [n for n in (note, conv) if n]
    atol, rtol = tolerance(op, dt, x)
    CASES.append(case(cid, "reduce", source(op, dt), dt, {"op": op}, {"x": ftensor(x)},
                      {"y": {"shape": [R], "data": store_expected(np.array(ys), dt)}},
                      atol, rtol, " ".join(notes) if notes else None))


def draw(rng, R, C, scale=2.0, offset=0.0):
    return offset + rng.normal(0.0, scale, size=(R, C))


def special_rows(rng):
    C = 7
    x = draw(rng, 6, C)
    x[0, 2] = NAN                      # a NaN
    x[1, :] = -INF                     # only -inf
    x[2, 4] = INF                      # a +inf
    x[3, [1, 5]] = -INF                # some -inf
    x[4, 0] = INF; x[4, 3] = NAN       # NaN next to +inf: NaN
    x[5, :] = -1.75                    # all equal
    return x


# Long rows (C = 1023), spread over ops and dtypes (400 KB budget).
LONG = {
    "sum": ["f32", "f64", "f16", "bf16"], "mean": ["f32", "f16"], "max": ["f16"], "min": ["bf16"],
    "logsumexp": ["f32", "bf16"], "l2norm": ["f32", "f16"],
}

for op in OPS:
    for dt in DTYPES:
        base = f"{op}/{dt}"
        for C in (0, 1, 7, 8, 9, 17):
            R = 3 if C <= 9 else 2
            add(op, dt, draw(rng_for(SEED, f"{base}/{C}"), R, C))
        if dt in LONG[op]:
            # a positive offset makes the sum large: an f16/bf16 accumulator would lose it
            off = 1.5 if op in ("sum", "mean", "l2norm") else 0.0
            add(op, dt, draw(rng_for(SEED, f"{base}/1023"), 1, 1023, 1.0, off))
        add(op, dt, special_rows(rng_for(SEED, f"{base}/special")), "special",
            note="Rows: a NaN; only -inf; a +inf; some -inf; NaN next to +inf; all equal.")

# logsumexp with logits near +-1e4 (exp overflows without the max shift; all dtypes).
for dt in DTYPES:
    rng = rng_for(SEED, f"logsumexp/{dt}/pm1e4")
    x = np.empty((3, 8))
    x[0] = 1e4 + rng.normal(0, 4, 8)
    x[1] = -1e4 + rng.normal(0, 4, 8)
    x[2] = np.where(rng.random(8) < 0.5, 1e4, -1e4) + rng.normal(0, 4, 8)
    add("logsumexp", dt, x, "pm1e4", note="Logits near +-1e4: exp overflows unless the maximum is subtracted first.")

# l2norm of huge values: the exact norm is finite but a plain sum of squares overflows the
# accumulator (f32 for f32/bf16 at 1e30; f64 at 1e200), so the implementation must scale.
# f16 entries near 1e4: the squares overflow f16 (not f32). And tiny values whose squares
# underflow (not f64: the 1e-30 floor on atol makes that test empty there).
HUGE = {"f32": 1e30, "bf16": 1e30, "f64": 1e200, "f16": 1e4}
TINYV = {"f32": 1e-25, "bf16": 1e-25, "f16": 3e-4}
for dt in DTYPES:
    rng = rng_for(SEED, f"l2norm/{dt}/huge")
    x = HUGE[dt] * rng.normal(0, 1, size=(2, 7))
    x[1, 3] = HUGE[dt] * 3  # one large entry
    if dt == "f16":
        x = np.clip(x, -6e4, 6e4)
    if dt == "f16":
        why = ("the squares overflow f16 (not f32): square and accumulate in f32 or wider, or "
               "scale.")
    else:
        why = ("the norm is finite but a plain sum of squares overflows the "
               f"{'f64' if dt == 'f64' else 'f32'} accumulator: the implementation must scale.")
    add("l2norm", dt, x, "huge", note=f"Entries near {HUGE[dt]:g}: {why}")
    if dt in TINYV:
        rng = rng_for(SEED, f"l2norm/{dt}/tiny")
        x = TINYV[dt] * rng.normal(0, 1, size=(2, 7))
        add("l2norm", dt, x, "tiny",
            note=f"Entries near {TINYV[dt]:g}: squares underflow in "
                 f"{'f16' if dt == 'f16' else 'f32'}; the implementation must scale (or "
                 "accumulate wider).")

if __name__ == "__main__":
    write_cases("reduce.json", CASES)
