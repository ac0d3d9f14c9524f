"""top_k golden vectors -> ../top_k.json

The k largest entries of each row of x [R, C], largest first; ties go to the lower index; NaN
counts as larger than +inf (as torch.topk); -0.0 and +0.0 are equal (IEEE comparison), so they tie
and the lower index comes first. Computed with numpy.lexsort on (is-NaN, value, -index) of the
dtype-rounded inputs; values and indices must match exactly.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DTYPES, case, enc_list, ftensor, rng_for, round_to, tensor, write_cases  # noqa: E402

SEED = 20240605
NAN, INF = math.nan, math.inf
SOURCE = (f"numpy {np.__version__} lexsort on (NaN first, value descending, index ascending), "
          "float64")


def top_k(x, k):
    R, C = x.shape
    vals = np.zeros((R, k))
    idx = np.zeros((R, k), dtype=np.int64)
    for r in range(R):
        row = x[r]
        isnan = np.isnan(row)
        v = np.where(isnan, 0.0, row) + 0.0  # + 0.0 turns -0.0 into +0.0: they compare equal
        i = np.arange(C)
        # lexsort: the last key is the primary one; all keys ascending
        order = np.lexsort((i, -v, ~isnan))
        order = order[:k]
        vals[r] = row[order]
        idx[r] = order
    return vals, idx


def rows(rng, C):
    """Rows: ordinary values; many ties; -inf entries and ties; NaN, +inf, -inf together;
    signed zeros."""
    x = np.empty((5, C))
    x[0] = rng.normal(0.0, 2.0, C)
    x[1] = rng.integers(0, 3, C).astype(float)              # many equal values
    x[2] = rng.integers(-2, 2, C).astype(float)
    x[2, rng.random(C) < 0.4] = -INF
    x[3] = rng.normal(0.0, 2.0, C)
    m = rng.random(C)
    x[3, m < 0.2] = NAN
    x[3, (m >= 0.2) & (m < 0.35)] = INF
    x[3, (m >= 0.35) & (m < 0.5)] = -INF
    if C >= 3:  # at least one of each
        x[3, rng.permutation(C)[:3]] = [NAN, INF, -INF]
    x[4] = np.where(rng.random(C) < 0.5, 0.0, -0.0)         # +0.0 and -0.0 tie
    x[4, rng.random(C) < 0.3] = -1.0
    if C == 1:
        x = np.array([[rng.normal()], [NAN], [-INF], [INF], [-0.0]])
    return x


CASES = []
for dt in DTYPES:
    for C in (1, 2, 7, 16, 33):
        for k in sorted({1, 2, 5, C}):
            if k > C:
                continue
            cid = f"top_k/{dt}/R5-C{C}-k{k}"
            x = round_to(dt, rows(rng_for(SEED, f"{dt}/C{C}"), C))
            vals, idx = top_k(x, k)
            R = x.shape[0]
            CASES.append(case(
                cid, "top_k", SOURCE, dt, {"k": k}, {"x": ftensor(x)},
                {"values": tensor([R, k], enc_list(vals)),
                 "indices": tensor([R, k], [int(v) for v in idx.ravel()])},
                0.0, 0.0,
                "Rows: ordinary values; many ties; -inf entries; NaN, +inf and -inf together "
                "(NaN ranks above +inf); +0.0 and -0.0 (equal: ties go to the lower index)."))
    # a row of only NaN and a row of only -inf: ties throughout, order by index
    x = round_to(dt, np.array([[NAN] * 7, [-INF] * 7, [INF, NAN, INF, -INF, NAN, 1.0, INF]]))
    vals, idx = top_k(x, 5)
    CASES.append(case(
        f"top_k/{dt}/R3-C7-k5-nonfinite", "top_k", SOURCE, dt, {"k": 5}, {"x": ftensor(x)},
        {"values": tensor([3, 5], enc_list(vals)),
         "indices": tensor([3, 5], [int(v) for v in idx.ravel()])},
        0.0, 0.0, "Rows of only NaN and only -inf (all tied: indices ascending), and NaN above +inf."))

if __name__ == "__main__":
    write_cases("top_k.json", CASES)
