"""softmax / log_softmax golden vectors -> ../softmax.json

Expected values: scipy.special.softmax / scipy.special.log_softmax (axis=-1) in float64 on the
dtype-rounded inputs. Rows the format fixes by convention are set explicitly (a note says so where
SciPy differs): a row of only -inf gives zeros (softmax) / -inf (log_softmax); a row holding NaN or
+inf gives NaN everywhere (as PyTorch).
"""
import math
import os
import sys

import numpy as np
import scipy
import scipy.special

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DTYPES, case, ftensor, rng_for, round_to, store_expected, write_cases  # noqa: E402

SEED = 20240601
MECHS = ("softmax", "log_softmax")
SOURCE = {
    "softmax": f"scipy {scipy.__version__} special.softmax(axis=-1), float64",
    "log_softmax": f"scipy {scipy.__version__} special.log_softmax(axis=-1), float64",
}
# (atol, rtol): output rounding to the dtype plus accumulation of C terms in u_acc.
TOL = {
    "softmax": {"f64": (1e-12, 1e-12), "f32": (1e-6, 1e-5), "f16": (1e-5, 2e-3), "bf16": (1e-5, 1.6e-2)},
    "log_softmax": {"f64": (1e-12, 1e-12), "f32": (1e-5, 1e-5), "f16": (2e-3, 2e-3), "bf16": (1.6e-2, 1.6e-2)},
}

NAN, INF = math.nan, math.inf


def reference(mech, x):
    """Expected values for rows of x (float64), and a note on rows set by convention."""
    R, C = x.shape
    with np.errstate(all="ignore"):
        f = scipy.special.softmax if mech == "softmax" else scipy.special.log_softmax
        y = f(x, axis=-1) if C > 0 else np.zeros((R, 0))
    out = y.copy()
    changed = []
    for r in range(R):
        row = x[r]
        if np.isnan(row).any() or np.isposinf(row).any():
            out[r] = NAN
            what = "NaN or +inf"
        elif np.isneginf(row).all():
            out[r] = 0.0 if mech == "softmax" else -INF
            what = "only -inf"
        else:
            continue
        same = np.array_equal(np.isnan(out[r]), np.isnan(y[r])) and np.array_equal(
            np.nan_to_num(out[r], nan=0.0), np.nan_to_num(y[r], nan=0.0))
        if not same:
            changed.append((r, what))
    note = None
    if changed:
        parts = [f"row {r} ({what})" for r, what in changed]
        note = ("SciPy's result differs from the format's convention for " + ", ".join(parts)
                + "; those rows are set by the convention: a row of only -inf gives "
                + ("zeros" if mech == "softmax" else "-inf")
                + ", a row holding NaN or +inf gives NaN everywhere (as PyTorch).")
    return out, note


CASES = []


def add(mech, dtype, x, tag="", note=None):
    x = round_to(dtype, np.asarray(x, dtype=np.float64))
    R, C = x.shape
    cid = f"{mech}/{dtype}/R{R}-C{C}" + (f"-{tag}" if tag else "")
    y, conv_note = reference(mech, x)
    notes = [n for n in (note, conv_note) if n]
    atol, rtol = TOL[mech][dtype]
    CASES.append(case(cid, mech, SOURCE[mech], dtype, {}, {"x": ftensor(x)},
                      {"y": {"shape": [R, C], "data": store_expected(y, dtype)}},
                      atol, rtol, " ".join(notes) if notes else None))


def both(dtype, make, tag="", note=None):
    """The same rounded input for softmax and log_softmax (draws depend on the id without the
    mechanism, so both mechanisms see the same x)."""
    x = make(rng_for(SEED, f"{dtype}/{tag}"))
    for mech in MECHS:
        add(mech, dtype, x, tag, note)


# Row lengths per dtype: every C in f32, a spread in the others (long rows in f16/bf16 come from
# the 4096-logit cases below; the 400 KB budget leaves no room for more).
SIZES = {
    "f32": [1, 2, 7, 8, 9, 15, 16, 17, 33, 127, 129, 1023],
    "f64": [1, 2, 8, 9, 16, 33, 129],
    "f16": [1, 7, 15, 17, 33, 127],
    "bf16": [1, 8, 9, 16, 17, 129],
}


def random_rows(C, scale=3.0):
    R = 3 if C <= 33 else 1

    def make(rng):
        x = rng.normal(0.0, scale, size=(R, C))
        if C >= 2:
            # row 0 (and the last of several) partly masked with -inf, at least one finite
            for r in sorted({0, R - 1} if R > 1 else {0}):
                m = rng.random(C) < 0.3
                m[rng.integers(C)] = False
                x[r, m] = -INF
        return x
    return make


for dt in DTYPES:
    for C in SIZES[dt]:
        R = 3 if C <= 33 else 1
        # tag keeps ids unique and names the shape: "<mech>/<dtype>/R3-C7"
        x = random_rows(C)(rng_for(SEED, f"{dt}/R{R}-C{C}"))
        for mech in MECHS:
            add(mech, dt, x)


# Special rows: entirely -inf, a NaN, a +inf, some -inf, all equal.
def special(rng):
    C = 7
    x = rng.normal(0.0, 2.0, size=(6, C))
    x[0, :] = -INF                          # only -inf
    x[1, 3] = NAN                           # a NaN
    x[2, 5] = INF                           # a +inf
    x[3, [0, 2, 6]] = -INF                  # some -inf
    x[4, :] = 1.25                          # all equal
    x[5, [1, 4]] = -INF; x[5, 2] = INF      # +inf together with -inf
    return x


# C = 1: a single finite logit, a single -inf, a single NaN, a single +inf.
def single(rng):
    return np.array([[rng.normal()], [-INF], [NAN], [INF], [-3.5]])


# Logits near +1e4, near -1e4, and both in one row (all dtypes).
def large_1e4(rng):
    C = 8
    x = np.empty((3, C))
    x[0] = 1e4 + rng.normal(0.0, 4.0, C)
    x[1] = -1e4 + rng.normal(0.0, 4.0, C)
    x[2] = np.where(rng.random(C) < 0.5, 1e4, -1e4) + rng.normal(0.0, 4.0, C)
    return x


# Logits near +-1.5e38 (f32/f64): ties at the maximum, a row of equal -1.5e38 (uniform, not
# masked), and huge values next to ordinary ones.
def large_1e38(rng):
    x = np.array([
        [1.5e38, -1.5e38, 1.5e38, 0.0, -1.5e38, 1.0, 1.5e38, -2.0],
        [-1.5e38] * 8,
        [-1.5e38, 3.0, -1.5e38, -1.0, 2.5, -1.5e38, 0.5, 1.5],
    ])
    return x


# Valid logits far below the others: -1e30 (f32/f64/bf16) or -6e4 (f16, the largest f16
# magnitude used here). They are not masked: log_softmax is finite there, and a row of only such
# values is uniform.
def far_below(far):
    def make(rng):
        C = 9
        x = rng.normal(0.0, 2.0, size=(3, C))
        x[0, [1, 3, 4, 8]] = far
        x[1, :] = far
        x[2, [0, 2, 5]] = far
        x[2, [1, 6]] = -INF
        return x
    return make


# Rows of equal values: uniform.
def equal(rng):
    return np.array([[2.5] * 16, [-7.0] * 16])


# Differences that are subnormal in the dtype.
TINY = {"f64": 5e-324, "f32": 1.401298464324817e-45, "f16": 2.0 ** -24, "bf16": 2.0 ** -133}


def subnormal(dt):
    def make(rng):
        t = TINY[dt]
        k = rng.integers(0, 50, size=(2, 8)).astype(np.float64)
        x = k * t
        x[1] -= 20 * t  # negative subnormals too
        return x
    return make


for dt in DTYPES:
    both(dt, special, "special")
    both(dt, single, "single")
    both(dt, large_1e4, "pm1e4")
    if dt in ("f32", "f64"):
        both(dt, large_1e38, "pm1.5e38")
    far = -6e4 if dt == "f16" else -1e30
    both(dt, far_below(far), "far",
         note=f"{far:g} is a valid logit (not a mask): softmax is 0 there, log_softmax finite; "
              f"the row of only {far:g} is uniform.")
    both(dt, equal, "equal")
    both(dt, subnormal(dt), "subnormal",
         note="Logits are small multiples of the dtype's least subnormal: probabilities are 1/C "
              "to within the tolerance (flushing subnormals to zero also passes).")


# A long row of 4096 equal logits in f16 and bf16: each probability is exactly 1/4096. An f16 or
# bf16 accumulator of the exponentials stalls (2048 + 1 == 2048 in f16) and fails.
for dt, v in (("f16", 3.0), ("bf16", 2.0)):
    x = np.full((1, 4096), v)
    add("softmax", dt, x, "equal4096",
        note="4096 equal logits: each probability is 1/4096 exactly; the sum of exponentials "
             "must be accumulated in f32 or wider.")

if __name__ == "__main__":
    write_cases("softmax.json", CASES)
