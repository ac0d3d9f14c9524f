"""kd_loss_sparse golden vectors -> ../kd_loss_sparse.json

A teacher that kept only its top-k logits (`values`, at vocabulary positions `indices`) and
optionally its tail mass `tail` (the probability outside the top k at the loss temperature). The
teacher's distribution over k + 1 buckets is P_i = (1 - r) softmax(values / T)_i and P_tail = r
(r = 0 without `tail`); the student's is its top-k probabilities Q_i = softmax(student / T)[idx_i]
and Q_tail = 1 - sum Q_i (no tail bucket at all when k = V). The divergence of kd_loss (as in
kd_loss.py, JSD as TRL) is taken between the bucket distributions; the loss is T^2 times the mean
over the kept rows; `grad` = d loss / d student, by PyTorch autograd in float64.
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DTYPES, case, ftensor, rng_for, round_to, store_expected, tensor, write_cases  # noqa: E402
from kd_loss import TOL, rows_loss  # noqa: E402

SEED = 20261128
KINDS = ("forward_kl", "reverse_kl", "jsd", "total_variation", "skew_forward_kl", "skew_reverse_kl")


def sparse(kind, vals, idx, tail, s, temp, param, mask):
    st = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    n, v = s.shape
    k = vals.shape[1]
    lq_full = torch.log_softmax(st / temp, -1)
    ix = torch.tensor(idx, dtype=torch.int64)
    lq_k = torch.gather(lq_full, 1, ix)
    r = torch.tensor(tail if tail is not None else np.zeros(n), dtype=torch.float64)
    lp_k = torch.log_softmax(torch.tensor(vals, dtype=torch.float64) / temp, -1) + torch.log1p(-r)[:, None]
    if k < v:
        q_tail = 1.0 - lq_k.exp().sum(-1)
        lq = torch.cat([lq_k, torch.log(q_tail)[:, None]], 1)
        lp = torch.cat([lp_k, torch.log(r)[:, None]], 1)
    else:
        lq, lp = lq_k, lp_k
    rows = rows_loss(kind, lp, lq, param)
    m = torch.tensor(mask, dtype=torch.float64)
    loss = temp * temp * (rows * m).sum() / max(float(m.sum()), 1.0)
    loss.backward()
    return float(loss.detach()), st.grad.numpy().copy()


def main():
    cases = []
    for dtype in DTYPES:
        for kind in KINDS:
            for variant in ("tail", "no_tail", "k_eq_v", "masked"):
                if variant == "no_tail" and kind not in ("forward_kl", "jsd", "total_variation", "skew_forward_kl"):
                    continue  # reverse-type divergences are +inf without a tail mass
                cid = f"kd_loss_sparse/{kind}/{variant}/{dtype}"
                rng = rng_for(SEED, cid)
                n, v = 3, int(rng.choice([5, 9, 17]))
                k = v if variant == "k_eq_v" else int(rng.integers(1, v))
                temp = float(rng.choice([0.5, 1.0, 2.0]))
                param = 0.3 if kind in ("jsd", "skew_forward_kl", "skew_reverse_kl") else None
                t = round_to(dtype, rng.normal(0, 2.0, (n, v)))
                s = round_to(dtype, rng.normal(0, 2.0, (n, v)))
                order = np.argsort(-t, axis=1, kind="stable")[:, :k]
                vals = np.take_along_axis(t, order, 1)
                p_full = torch.softmax(torch.tensor(t) / temp, -1).numpy()
                tail = None
                if variant in ("tail", "masked"):
                    tail = round_to(dtype, np.clip(1.0 - np.take_along_axis(p_full, order, 1).sum(1), 0.0, 1.0))
                mask = [1, 0, 1] if variant == "masked" else [1, 1, 1]
                loss, grad = sparse(kind, vals, order, tail, s, temp, param, mask)
                params = {"kind": kind, "temperature": temp}
                if kind == "jsd":
                    params["beta"] = param
                if kind.startswith("skew"):
                    params["alpha"] = param
                inputs = {"values": ftensor(vals), "indices": tensor([n, k], [int(i) for i in order.ravel()]),
                          "student": ftensor(s)}
                if tail is not None:
                    inputs["tail"] = ftensor(tail)
                if variant == "masked":
                    inputs["mask"] = tensor([n], mask)
                atol, rtol = TOL[dtype]
                cases.append(case(cid, "kd_loss_sparse", f"torch {torch.__version__} autograd, float64", dtype, params,
                                  inputs, {"loss": {"shape": [], "data": store_expected([loss], dtype)},
                                           "grad": {"shape": [n, v], "data": store_expected(grad, dtype)}},
                                  atol * max(1.0, temp * temp), rtol,
                                  "teacher top-k (+ tail bucket); student collapsed onto the same buckets"))
    write_cases("kd_loss_sparse.json", cases)


if __name__ == "__main__":
    main()
