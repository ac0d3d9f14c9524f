"""Shared helpers for the golden-vector generators (format "seq-vectors/1").

Inputs are drawn, rounded to the case's dtype, and stored rounded; expected values are computed
from the rounded inputs in float64 (or better) by an independent library and stored unrounded,
except that a value whose rounding to the dtype overflows is stored as "inf"/"-inf" (the output
is stored in that dtype).
"""
import json
import math
import os
import zlib

import numpy as np

FORMAT = "seq-vectors/1"
DTYPES = ("f32", "f64", "f16", "bf16")

# Unit roundoff of each dtype, and of the accumulator an implementation is assumed to use
# (f32 for f16/bf16/f32, f64 for f64).
U = {"f64": 2.0 ** -53, "f32": 2.0 ** -24, "f16": 2.0 ** -11, "bf16": 2.0 ** -8}
U_ACC = {"f64": U["f64"], "f32": U["f32"], "f16": U["f32"], "bf16": U["f32"]}

# Largest finite value, and the threshold from which round-to-nearest gives infinity
# (max + half an ulp of max).
FMAX = {
    "f64": float(np.finfo(np.float64).max),
    "f32": float(np.finfo(np.float32).max),
    "f16": 65504.0,
    "bf16": (2.0 - 2.0 ** -7) * 2.0 ** 127,
}
OVERFLOW_AT = {
    "f64": math.inf,
    "f32": (2.0 - 2.0 ** -24) * 2.0 ** 127,
    "f16": 65520.0,
    "bf16": (2.0 - 2.0 ** -8) * 2.0 ** 127,
}

VECTORS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rng_for(base_seed, case_id):
    """A generator seeded by the file's seed and the case id: adding or removing a case does
    not change the draws of the others."""
    return np.random.default_rng([base_seed, zlib.crc32(case_id.encode("utf-8"))])


def round_bf16(x):
    """Round to bfloat16: first to float32 (numpy, nearest-even), then round-to-nearest-even on
    the float32 bits, keeping the top 16 bits. NaN becomes the canonical quiet NaN; infinities
    stay; finite values past the largest bfloat16 become infinities. Returns float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.asarray(x, dtype=np.float64).astype(np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    lsb = (bits >> np.uint64(16)) & np.uint64(1)
    rounded = ((bits + np.uint64(0x7FFF) + lsb) >> np.uint64(16)) << np.uint64(16)
    rounded = np.where(np.isnan(f), np.uint64(0x7FC00000), rounded)
    out = (rounded & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32)
    return out.astype(np.float64)


def round_to(dtype, x):
    """Round values to `dtype`; returns a float64 array holding the rounded values."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == "f64":
            return x.copy()
        if dtype == "f32":
            return x.astype(np.float32).astype(np.float64)
        if dtype == "f16":
            return x.astype(np.float16).astype(np.float64)
        if dtype == "bf16":
            return round_bf16(x)
    raise ValueError(dtype)


def enc(v):
    """One float for JSON: a Python float, or "inf", "-inf", "nan"."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def enc_list(values):
    return [enc(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def store_expected(values, dtype):
    """Expected values as stored: unrounded float64, except that a finite value whose rounding
    to `dtype` overflows becomes an infinity of its sign."""
    v = np.asarray(values, dtype=np.float64)
    r = round_to(dtype, v)
    v = np.where(np.isfinite(v) & np.isinf(r), r, v)
    return enc_list(v)


def near_overflow(y, dtype, rel):
    """True where |y| is within a relative band `rel` of the value from which rounding to `dtype`
    overflows: there an implementation within tolerance may give either a finite value or
    infinity, so such points are left out."""
    b = OVERFLOW_AT[dtype]
    if math.isinf(b):
        return np.zeros(np.shape(y), dtype=bool)
    a = np.abs(np.asarray(y, dtype=np.float64))
    return np.isfinite(a) & (a >= b * (1 - rel)) & (a <= b * (1 + rel))


def tensor(shape, data):
    return {"shape": [int(s) for s in shape], "data": data}


def ftensor(values):
    """A float tensor from a numpy array (shape and data)."""
    a = np.asarray(values, dtype=np.float64)
    return tensor(a.shape, enc_list(a))


def case(case_id, mechanism, source, dtype, params, inputs, expected, atol, rtol, note=None):
    c = {
        "format": FORMAT,
        "id": case_id,
        "mechanism": mechanism,
        "source": source,
        "dtype": dtype,
        "params": params,
        "inputs": inputs,
        "expected": expected,
        "tolerance": {"atol": float(atol), "rtol": float(rtol)},
    }
    if note:
        c["note"] = note
    return c


def round_up_2sig(x):
    """Round a positive tolerance up to two significant digits (keeps the JSON short; only ever
    loosens a bound)."""
    if x <= 0 or not math.isfinite(x):
        return x
    e = math.floor(math.log10(x)) - 1
    m = math.ceil(x / 10.0 ** e - 1e-9)
    y = float(f"{m}e{e}")
    while y < x:  # guard against decimal conversion rounding down
        m += 1
        y = float(f"{m}e{e}")
    return y


def write_cases(filename, cases):
    ids = [c["id"] for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SystemExit(f"duplicate ids: {sorted(dup)}")
    path = os.path.join(VECTORS_DIR, filename)
    lines = [json.dumps(c, allow_nan=False, separators=(",", ":")) for c in cases]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n" + ",\n".join(lines) + "\n]\n")
    size = os.path.getsize(path)
    print(f"wrote {path}: {len(cases)} cases, {size} bytes")
    if size >= 400_000:
        raise SystemExit(f"{filename} is {size} bytes, over the 400 KB budget")
    return path
