"""Golden vectors for `rope`: Hugging Face transformers' `ROPE_INIT_FUNCTIONS` (every scaling) for
the frequency table and the attention factor, `apply_rotary_pos_emb` (rotate-half) or Meta's
complex formulation (interleaved) for the rotation, in float64.

Tables: `freq_dtype` "f32" (default) is transformers' own float32 table; "f64" runs the same
transformers functions with `torch.float`/`torch.float32` patched to float64 while they run. Angles
are formed in float64 from the integer position (exact for a float32 table below 2^29); from
position 2^20 on, cos and sin come from mpmath (50 digits) of the exact product.
"""
import contextlib
import math
from types import SimpleNamespace

import mpmath
import numpy as np
import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from common import DTYPES, U, U_ACC, case, ftensor, rng_for, round_to, round_up_2sig, store_expected, tensor, write_cases

SEED = 0x5EC0_0003
SRC = f"transformers {transformers.__version__}"
CASES = []
mpmath.mp.dps = 50


@contextlib.contextmanager
def float64_tables():
    saved = (torch.float, torch.float32)
    torch.float = torch.float64
    torch.float32 = torch.float64
    try:
        yield
    finally:
        torch.float, torch.float32 = saved


def hf_table(theta, rd, scaling, max_pos, seq_len, freq_dtype):
    """(inv_freq as float64 numpy, attention factor) from transformers."""
    rs = None
    kind = "default"
    base = theta
    if scaling:
        kind = scaling["type"]
        rs = {"rope_type": kind}
        for k, v in scaling.items():
            if k == "type" or k == "seq_len":
                continue
            if k == "original_max_position":
                rs["original_max_position_embeddings"] = v
            elif k == "max_position":
                continue
            else:
                rs[k] = v
        if kind == "ntk":  # fixed NTK-aware (alpha): the default table on a changed base
            base = theta * scaling["factor"] ** (rd / (rd - 2))
            kind, rs = "default", None
    cfg = SimpleNamespace(rope_theta=base, head_dim=rd, hidden_size=rd, num_attention_heads=1,
                          partial_rotary_factor=1.0, max_position_embeddings=max_pos, rope_scaling=rs)
    if kind == "longrope" and scaling.get("original_max_position") is not None:
        cfg.original_max_position_embeddings = scaling["original_max_position"]
        del rs["original_max_position_embeddings"]
    sl = seq_len
    if kind == "dynamic" and freq_dtype == "f32":
        sl = torch.tensor(seq_len)  # as at inference: max(position_ids) + 1, a tensor
    ctx = float64_tables() if freq_dtype == "f64" else contextlib.nullcontext()
    with ctx:
        inv, af = ROPE_INIT_FUNCTIONS[kind](cfg, "cpu", sl)
    return inv.double().numpy(), float(af)


def cos_sin(pos, inv, af):
    ang = np.outer(pos.astype(np.float64), inv)
    c, s = np.cos(ang), np.sin(ang)
    for li, p in enumerate(pos):
        if p >= 2 ** 20:
            for i, th in enumerate(inv):
                a = mpmath.mpf(int(p)) * mpmath.mpf(float(th))
                c[li, i], s[li, i] = float(mpmath.cos(a)), float(mpmath.sin(a))
    return c * af, s * af


def add(tag, dtype, L, H, D, theta, layout, pos, rd=None, scaling=None, freq_dtype="f32", note=None):
    rd = rd or D
    cid = f"rope/{layout}/{tag}/{dtype}-L{L}-H{H}-D{D}"
    rng = rng_for(SEED, cid)
    x = round_to(dtype, rng.standard_normal((L, H, D)))
    pos = np.asarray(pos, dtype=np.int64)
    sc = dict(scaling) if scaling else None
    max_pos = (sc or {}).get("max_position", 2048)
    if sc and sc["type"] == "yarn" and "max_position" not in sc:
        max_pos = sc.get("original_max_position", 2048)
    seq_len = (sc or {}).get("seq_len", int(pos.max()) + 1 if len(pos) else 0)
    inv, af = hf_table(theta, rd, sc, max_pos, seq_len, freq_dtype)
    c, s = cos_sin(pos, inv, af)
    y = x.copy()
    xr = x[:, :, :rd]
    if layout == "half":
        cos = torch.from_numpy(np.concatenate([c, c], -1))[None]  # [1, L, rd]
        sin = torch.from_numpy(np.concatenate([s, s], -1))[None]
        q = torch.from_numpy(xr).permute(1, 0, 2)[None]  # [1, H, L, rd]
        qe, _ = apply_rotary_pos_emb(q, q, cos, sin)
        y[:, :, :rd] = qe[0].permute(1, 0, 2).numpy()
    else:
        xc = torch.view_as_complex(torch.from_numpy(np.ascontiguousarray(xr)).reshape(L, H, rd // 2, 2))
        f = torch.complex(torch.from_numpy(c), torch.from_numpy(s))[:, None, :]
        y[:, :, :rd] = torch.view_as_real(xc * f).reshape(L, H, rd).numpy()
    m = float(np.abs(x).max()) if x.size else 0.0
    pmax = float(pos.max()) if len(pos) else 0.0
    angle = pmax * float(inv.max()) * 2.0 ** -52 if freq_dtype == "f64" else 0.0
    atol = round_up_2sig((8 * U_ACC[dtype] + angle) * abs(af) * 2 * m + 1e-300)
    params = {"theta": theta, "layout": layout}
    if rd != D:
        params["rotary_dim"] = rd
    if sc:
        params["scaling"] = sc
    if freq_dtype != "f32":
        params["freq_dtype"] = freq_dtype
    src = f"{SRC} ROPE_INIT_FUNCTIONS['{(sc or {}).get('type', 'default')}'] + " + (
        "apply_rotary_pos_emb" if layout == "half" else "complex (Meta) formulation") + ", float64"
    CASES.append(case(cid, "rope", src, dtype, params,
                      {"x": ftensor(x), "positions": tensor(pos.shape, [int(p) for p in pos])},
                      {"y": {"shape": list(y.shape), "data": store_expected(y, dtype)}},
                      atol, 2 * U[dtype], note))


for dt in DTYPES:
    for lay in ("half", "interleaved"):
        add("plain", dt, 9, 2, 8, 10000.0, lay, range(9))
        if dt == "f32":
            add("theta5e5", dt, 5, 2, 64, 500000.0, lay, range(3, 8))
        add("partial", dt, 6, 2, 24, 10000.0, lay, range(5, 11), rd=16)
        add("far-f64", dt, 6, 1, 16, 10000.0, lay, [255, 2048, 65504, 2 ** 20, 2 ** 24 - 1, 2 ** 24],
            freq_dtype="f64", note="positions up to 2^24, f64 table: angles must not be formed in f32")
    add("far-f32", dt, 4, 1, 16, 10000.0, "half", [2 ** 20, 2 ** 20 + 1, 3000001, 2 ** 24 + 1],
        note="positions up to 2^24 with transformers' float32 table; cos/sin from mpmath")

pos = [0, 37, 111, 222, 333, 369]
for dt in ("f32", "f16", "bf16"):
    add("linear", dt, 6, 1, 16, 10000.0, "half", pos, scaling={"type": "linear", "factor": 4.0})
    add("ntk", dt, 6, 1, 16, 10000.0, "half", pos, scaling={"type": "ntk", "factor": 2.0})
    add("llama3", dt, 6, 1, 16, 10000.0, "half", pos,
        scaling={"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position": 64})
for lay in ("half", "interleaved"):
    add("dynamic", "f32", 6, 1, 16, 10000.0, lay, pos,
        scaling={"type": "dynamic", "factor": 2.0, "max_position": 64}, freq_dtype="f64",
        note="seq_len = max(position) + 1 = 370 > max_position: the base grows; f64 table, as "
             "transformers' float32 tensor path goes through torch's vectorised pow, which is not "
             "correctly rounded (1 ulp off in some entries)")
    add("dynamic-within", "f32", 6, 2, 32, 10000.0, lay, range(6),
        scaling={"type": "dynamic", "factor": 2.0, "max_position": 64})
    add("yarn-extended", "f32", 6, 1, 16, 10000.0, lay, pos,
        scaling={"type": "yarn", "factor": 8.0, "original_max_position": 64, "max_position": 512,
                 "beta_fast": 32.0, "beta_slow": 1.0},
        note="max_position / original = 8: attention factor 0.1 ln 8 + 1")
    add("yarn-factor", "f32", 6, 1, 16, 10000.0, lay, pos,
        scaling={"type": "yarn", "factor": 4.0, "max_position": 256})
    add("yarn-mscale", "f32", 6, 1, 16, 10000.0, lay, pos,
        scaling={"type": "yarn", "factor": 40.0, "original_max_position": 64, "max_position": 2560,
                 "mscale": 0.707, "mscale_all_dim": 0.707, "beta_fast": 32.0, "beta_slow": 1.0})
    add("yarn-notrunc", "f32", 6, 1, 16, 10000.0, lay, pos,
        scaling={"type": "yarn", "factor": 16.0, "original_max_position": 64, "max_position": 1024,
                 "truncate": False, "beta_fast": 24.0, "beta_slow": 2.0})
    add("yarn-degenerate", "f32", 6, 1, 16, 10000.0, lay, pos,
        scaling={"type": "yarn", "factor": 8.0, "original_max_position": 64, "beta_fast": 32.0,
                 "beta_slow": 1.0},
        note="no max_position: max_position_embeddings = original, so transformers' factor is 1")
    sf = [1.0, 1.1, 1.3, 1.7, 2.5, 4.0, 6.0, 9.0]
    lf = [f * 1.5 for f in sf]
    add("longrope-short", "f32", 6, 1, 16, 10000.0, lay, pos,
        scaling={"type": "longrope", "short_factor": sf, "long_factor": lf, "original_max_position": 512,
                 "max_position": 4096})
    add("longrope-long", "f32", 6, 1, 16, 10000.0, lay, [p + 600 for p in pos],
        scaling={"type": "longrope", "short_factor": sf, "long_factor": lf, "original_max_position": 512,
                 "max_position": 4096})
    add("longrope-factor", "f32", 6, 1, 16, 10000.0, lay, pos,
        scaling={"type": "longrope", "short_factor": sf, "long_factor": lf, "factor": 8.0,
                 "max_position": 4096})
add("f64-table", "f64", 6, 1, 16, 10000.0, "half", pos, freq_dtype="f64",
    scaling={"type": "yarn", "factor": 8.0, "original_max_position": 64, "max_position": 512})
add("empty", "f32", 0, 2, 8, 10000.0, "half", [])
add("one", "f32", 1, 1, 2, 10000.0, "interleaved", [5])

if __name__ == "__main__":
    write_cases("rope.json", CASES)
