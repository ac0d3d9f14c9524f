"""linear_attention / delta_rule golden vectors -> ../memory.json

Needs transformers >= 4.57 (for the Qwen3-Next gated delta rule): run it with a virtual
environment, e.g. `python3 -m venv --system-site-packages VENV && VENV/bin/pip install
'transformers>=4.57,<5' && VENV/bin/python memory.py`.

Expected values:
- linear_attention: torch.einsum with a lower-triangular mask, float64:
  o = ((phi(Q) phi(K)^T) * tril) V, per head (phi = identity or elu(x) + 1).
- delta_rule: transformers' `torch_recurrent_gated_delta_rule` (models/qwen3_next), the
  reference recurrence of Qwen3-Next's Gated DeltaNet layer, with g = 0 for the plain rule.
  That function scales q by 1/sqrt(Dk) and casts everything to float32; the format has no
  scale, so q is passed multiplied by sqrt(Dk) (exact for the powers of four used as Dk here),
  and the function runs in float64: inside its module the name `torch` is bound to a proxy whose
  `float32` is `torch.float64` (nothing else changes). Every case is cross-checked against
  transformers' chunked form (`torch_chunk_gated_delta_rule`, chunk 64, same float64 treatment)
  (to 1e-6 relative: that function rounds its decay mask to float32 with `.float()`) and against a
  plain NumPy loop of the format's formula (to 1e-10 relative); the generator stops otherwise.

Tolerances (atol, rtol) per dtype follow the examples of the shared vector folder (f32: 1e-5,
1e-4) and PyTorch's assert_close defaults widened to the output rounding of 16-bit types.
"""
import math
import os
import sys
import types

import numpy as np
import torch
import transformers
from transformers.models.qwen3_next import modeling_qwen3_next as qn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import case, ftensor, rng_for, round_to, store_expected, write_cases  # noqa: E402

SEED = 20251127
CHUNK_TOL = 1e-6
TOL = {"f64": (1e-12, 1e-10), "f32": (1e-5, 1e-4), "f16": (2e-3, 4e-3), "bf16": (1.6e-2, 3.2e-2)}

# transformers' reference functions in float64 (see the module docstring).
_proxy = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
_proxy.float32 = torch.float64
qn.torch = _proxy
torch.set_default_dtype(torch.float64)

SRC_LIN = f"torch {torch.__version__} einsum with a lower-triangular mask, float64"
SRC_DELTA = (f"transformers {transformers.__version__} qwen3_next torch_recurrent_gated_delta_rule, "
             "run in float64; checked against torch_chunk_gated_delta_rule and a NumPy loop")


def elu1(x):
    return torch.nn.functional.elu(x) + 1.0


def linear_attention(q, k, v, fmap):
    q, k, v = (torch.tensor(a, dtype=torch.float64) for a in (q, k, v))
    if fmap == "elu1":
        q, k = elu1(q), elu1(k)
    L = q.shape[0]
    scores = torch.einsum("thd,shd->hts", q, k)
    mask = torch.tril(torch.ones(L, L, dtype=torch.float64))
    return torch.einsum("hts,shv->thv", scores * mask, v).numpy()


def delta_transformers(q, k, v, beta, g):
    L, H, Dk = q.shape
    t = lambda a: torch.tensor(a, dtype=torch.float64).unsqueeze(0)  # noqa: E731
    qs = t(q) * math.sqrt(Dk)
    o, s = qn.torch_recurrent_gated_delta_rule(qs, t(k), t(v), t(g), t(beta), None, True)
    oc, sc = qn.torch_chunk_gated_delta_rule(qs, t(k), t(v), t(g), t(beta), chunk_size=64,
                                             initial_state=None, output_final_state=True)
    assert o.dtype == torch.float64
    o, oc = o[0].numpy(), oc[0].numpy()
    scale = max(1.0, float(np.abs(o).max(initial=0.0)))
    # The chunked form rounds its decay mask to float32 (`.float()`), whatever the dtype.
    if not np.allclose(o, oc, rtol=0, atol=CHUNK_TOL * scale):
        raise SystemExit(f"transformers recurrent and chunked forms differ: {np.abs(o - oc).max()}")
    return o


def delta_numpy(q, k, v, beta, g):
    L, H, Dk = q.shape
    Dv = v.shape[2]
    o = np.zeros((L, H, Dv))
    for h in range(H):
        S = np.zeros((Dv, Dk))
        for t in range(L):
            a = math.exp(g[t, h])
            kt = k[t, h]
            S = a * S @ (np.eye(Dk) - beta[t, h] * np.outer(kt, kt)) + beta[t, h] * np.outer(v[t, h], kt)
            o[t, h] = S @ q[t, h]
    return o


CASES = []


def lin_case(dt, fmap, L, H, Dk, Dv, tag=""):
    cid = f"linear_attention/{fmap}/{dt}/L{L}-H{H}-Dk{Dk}-Dv{Dv}" + (f"-{tag}" if tag else "")
    rng = rng_for(SEED, cid)
    q = round_to(dt, rng.normal(0, 0.5, (L, H, Dk)))
    k = round_to(dt, rng.normal(0, 0.5, (L, H, Dk)))
    v = round_to(dt, rng.normal(0, 1.0, (L, H, Dv)))
    o = linear_attention(q, k, v, fmap)
    # Outputs grow with L (sums of L terms): the absolute tolerance scales with the output size.
    atol, rtol = TOL[dt]
    atol = atol * max(1.0, float(np.abs(o).max(initial=0.0)))
    CASES.append(case(cid, "linear_attention", SRC_LIN, dt, {"feature_map": fmap},
                      {"q": ftensor(q), "k": ftensor(k), "v": ftensor(v)},
                      {"o": {"shape": list(o.shape), "data": store_expected(o, dt)}}, atol, rtol))


def delta_case(dt, gated, L, H, Dk, Dv, g_fixed=None, tag=""):
    kind = "gated" if gated else "plain"
    cid = f"delta_rule/{kind}/{dt}/L{L}-H{H}-Dk{Dk}-Dv{Dv}" + (f"-{tag}" if tag else "")
    rng = rng_for(SEED, cid)
    q = round_to(dt, rng.normal(0, 1.0 / math.sqrt(Dk), (L, H, Dk)))
    k = rng.normal(0, 1.0, (L, H, Dk))
    k = round_to(dt, k / np.linalg.norm(k, axis=-1, keepdims=True))
    v = round_to(dt, rng.normal(0, 1.0, (L, H, Dv)))
    beta = round_to(dt, rng.uniform(0.05, 1.0, (L, H)))
    if gated:
        g = np.full((L, H), g_fixed) if g_fixed is not None else rng.uniform(-1.0, 0.0, (L, H))
        g = round_to(dt, g)
    else:
        g = np.zeros((L, H))
    o = delta_transformers(q, k, v, beta, g)
    o_np = delta_numpy(q, k, v, beta, g)
    scale = max(1.0, float(np.abs(o).max(initial=0.0)))
    if not np.allclose(o, o_np, rtol=0, atol=1e-10 * scale):
        raise SystemExit(f"{cid}: transformers and the NumPy loop differ")
    atol, rtol = TOL[dt]
    inputs = {"q": ftensor(q), "k": ftensor(k), "v": ftensor(v), "beta": ftensor(beta)}
    params = {}
    if gated:
        inputs["g"] = ftensor(g)
        params["gated"] = True
    note = "k rows are unit-norm before rounding to the dtype (so only nearly unit-norm after)"
    CASES.append(case(cid, "delta_rule", SRC_DELTA, dt, params, inputs,
                      {"o": {"shape": list(o.shape), "data": store_expected(o, dt)}}, atol, rtol,
                      note))


for dt in ("f64", "f32", "f16", "bf16"):
    for fmap in ("identity", "elu1"):
        lin_case(dt, fmap, 1, 1, 4, 4)
        lin_case(dt, fmap, 9, 2, 4, 6)
    lin_case(dt, "identity", 0, 2, 4, 4)
    for gated in (False, True):
        delta_case(dt, gated, 1, 1, 4, 4)
        delta_case(dt, gated, 17, 2, 8, 4)

for fmap in ("identity", "elu1"):
    lin_case("f32", fmap, 67, 1, 4, 2)
    lin_case("f64", fmap, 33, 2, 4, 4)
delta_case("f32", False, 65, 1, 4, 4)
delta_case("f32", True, 66, 1, 4, 4)
delta_case("f64", True, 40, 1, 4, 4)
# Gate extremes (numerics notes, edge case 18): log-decay 0, -1e-4 and -20 at every token.
for gv, tag in ((0.0, "g0"), (-1e-4, "g-1e-4"), (-20.0, "g-20")):
    delta_case("f32", True, 40, 1, 4, 4, gv, tag)
    delta_case("f64", True, 9, 1, 4, 4, gv, tag)

write_cases("memory.json", CASES)
