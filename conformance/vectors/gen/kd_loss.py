"""kd_loss and cross_entropy golden vectors -> ../kd_loss.json

Expected values: PyTorch autograd in float64 on the dtype-rounded inputs, from the definitions
(torch.log_softmax, torch.special.xlogy, torch.nn.functional.cross_entropy with label_smoothing);
the generalised JSD is written as TRL's `generalized_jsd_loss` (mixture m = beta p + (1 - beta) q,
beta = 0 / 1 special-cased to forward / reverse KL). When TRL imports, its own
`GKDTrainer.generalized_jsd_loss` (reduction "none", no T^2) is run on every jsd case and must
agree to 1e-12.

kd_loss: per row D(p, q) with p = softmax(teacher / T), q = softmax(student / T); the loss is
T^2 * the mean over the rows the optional `mask` keeps (0 when none is kept); `grad` is
d loss / d student.
cross_entropy: torch cross_entropy(logits, targets, ignore_index=-100,
label_smoothing=eps, reduction="mean") (0 when every target is ignored); `grad` = d loss / d logits.
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DTYPES, case, ftensor, rng_for, round_to, store_expected, tensor, write_cases  # noqa: E402

SEED = 20261127
KINDS = ("forward_kl", "reverse_kl", "jsd", "total_variation", "skew_forward_kl", "skew_reverse_kl")
TEMPS = (0.5, 1.0, 2.0, 4.0)
# (atol, rtol): outputs rounded once to the dtype; f16/bf16 computed in f32.
TOL = {"f64": (1e-12, 1e-10), "f32": (1e-5, 1e-4), "f16": (2e-3, 4e-3), "bf16": (1.6e-2, 3.2e-2)}

try:  # optional cross-check against TRL's own function (moved to trl.experimental in 1.x)
    try:
        from trl.experimental.gkd.gkd_trainer import GKDTrainer  # noqa: E402
    except ImportError:
        from trl.trainer.gkd_trainer import GKDTrainer  # noqa: E402
    import trl

    TRL_JSD = GKDTrainer.generalized_jsd_loss
    TRL = f", checked against trl {trl.__version__} generalized_jsd_loss"
except Exception:  # noqa: BLE001
    TRL_JSD = None
    TRL = ""

try:  # optional cross-check of the forward-KL gradient against torchtune (which computes the
    # cross-entropy -sum p ln q in float32, without temperature: same gradient as KL(p || q))
    import torchtune
    from torchtune.modules.loss import ForwardKLLoss

    TUNE = f", gradient checked against torchtune {torchtune.__version__} ForwardKLLoss (T = 1, f32)"
except Exception:  # noqa: BLE001
    ForwardKLLoss = None
    TUNE = ""

SOURCE = f"torch {torch.__version__} autograd, float64"


def kl_rows(la, lb):
    """sum_i a_i (ln a_i - ln b_i) per row, from log-probabilities; 0 ln 0 = 0, also for a
    probability that underflows (its term and gradient are 0, not 0 * inf)."""
    a = la.exp()
    zero = torch.zeros_like(a)
    return (torch.where(a > 0, a * la, zero) - torch.where(a > 0, a * lb, zero)).sum(-1)


def log_mix(w, la, lb):
    """ln(w a + (1 - w) b) from log-probabilities, as TRL (a logsumexp: finite while either is)."""
    w = torch.tensor(w, dtype=torch.float64)
    return torch.logsumexp(torch.stack([la + torch.log(w), lb + torch.log(1 - w)]), dim=0)


def rows_loss(kind, lp, lq, param):
    p, q = lp.exp(), lq.exp()
    if kind == "forward_kl" or (kind == "jsd" and param == 0.0) or (kind == "skew_forward_kl" and param == 0.0):
        return kl_rows(lp, lq)
    if kind == "reverse_kl" or (kind == "jsd" and param == 1.0) or (kind == "skew_reverse_kl" and param == 0.0):
        return kl_rows(lq, lp)
    if kind == "jsd":
        lm = log_mix(param, lp, lq)
        return param * kl_rows(lp, lm) + (1 - param) * kl_rows(lq, lm)
    if kind == "total_variation":
        return 0.5 * (p - q).abs().sum(-1)
    if kind == "skew_forward_kl":
        return kl_rows(lp, log_mix(param, lp, lq))
    if kind == "skew_reverse_kl":
        return kl_rows(lq, log_mix(param, lq, lp))
    raise ValueError(kind)


def kd(kind, t, s, temp, param, mask):
    tt = torch.tensor(t, dtype=torch.float64)
    st = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    lp = torch.log_softmax(tt / temp, -1)
    lq = torch.log_softmax(st / temp, -1)
    rows = rows_loss(kind, lp, lq, param)
    checked_trl = False
    if kind == "jsd" and TRL_JSD is not None and np.isfinite(t).all():
        theirs = TRL_JSD(st.detach(), tt, beta=param, temperature=temp, reduction="none").sum(-1)
        checked_trl = True
        if not torch.allclose(theirs, rows.detach(), atol=1e-12, rtol=1e-12):
            raise SystemExit(f"TRL disagrees: {theirs} vs {rows}")
    m = torch.tensor(mask, dtype=torch.float64)
    tune = False
    if kind == "forward_kl" and temp == 1.0 and ForwardKLLoss is not None and np.isfinite(t).all():
        st32 = torch.tensor(s, dtype=torch.float32, requires_grad=True)
        labels = torch.tensor([0 if x else -100 for x in mask])
        ForwardKLLoss()(st32, torch.tensor(t, dtype=torch.float32), labels).backward()
        tune_grad = st32.grad.double()
        tune = True
    kept = float(m.sum())
    loss = temp * temp * (rows * m).sum() / max(kept, 1.0)
    loss.backward()
    if tune and not torch.allclose(tune_grad, st.grad, atol=1e-6, rtol=1e-4):
        raise SystemExit(f"torchtune disagrees: {tune_grad} vs {st.grad}")
    return float(loss.detach()), st.grad.numpy().copy(), (tune, checked_trl)


def ce(logits, targets, eps):
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(targets, dtype=torch.int64)
    if (y == -100).all():
        loss = (x * 0).sum()  # torch gives NaN (0/0); the format's convention is 0
    else:
        loss = torch.nn.functional.cross_entropy(x, y, ignore_index=-100, label_smoothing=eps)
    loss.backward()
    return float(loss.detach()), x.grad.numpy().copy()


def kd_case(cases, cid, dtype, kind, temp, param, t, s, mask=None, note=None):
    t, s = round_to(dtype, t), round_to(dtype, s)
    n = t.shape[0]
    full = mask is None
    mask = np.ones(n) if full else np.asarray(mask, dtype=np.float64)
    loss, grad, tune = kd(kind, t, s, temp, param, mask)
    params = {"kind": kind, "temperature": temp}
    if kind == "jsd":
        params["beta"] = param
    if kind.startswith("skew"):
        params["alpha"] = param
    inputs = {"teacher": ftensor(t), "student": ftensor(s)}
    if not full:
        inputs["mask"] = tensor([n], [int(v) for v in mask])
    atol, rtol = TOL[dtype]
    # The loss is a sum of T^2-scaled terms: its absolute error grows with T^2.
    atol = atol * max(1.0, temp * temp)
    src = SOURCE + (TRL if tune[1] else "") + (TUNE if tune[0] else "")
    cases.append(case(cid, "kd_loss", src, dtype, params, inputs,
                      {"loss": {"shape": [], "data": store_expected([loss], dtype)},
                       "grad": {"shape": list(grad.shape), "data": store_expected(grad, dtype)}},
                      atol, rtol, note))


def main():
    cases = []
    for dtype in DTYPES:
        for kind in KINDS:
            for temp in TEMPS:
                cid = f"kd_loss/{kind}/T{temp}/{dtype}"
                rng = rng_for(SEED, cid)
                n, v = int(rng.integers(1, 5)), int(rng.choice([1, 2, 7, 8, 9, 17]))
                if temp == 1.0 and dtype == "f32":
                    n, v = 2, 33
                t = rng.normal(0, 2.0, (n, v))
                s = rng.normal(0, 2.0, (n, v))
                param = float(rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])) if kind in ("jsd", "skew_forward_kl", "skew_reverse_kl") else None
                if kind == "jsd" and temp == 2.0:
                    param = 0.5
                kd_case(cases, cid, dtype, kind, temp, param, t, s)
            # Masked rows (padding), a fully masked batch, teacher zeros (0 ln 0), V = 129.
            rng = rng_for(SEED, f"kd_loss/{kind}/extra/{dtype}")
            param = 0.3 if kind in ("jsd", "skew_forward_kl", "skew_reverse_kl") else None
            t, s = rng.normal(0, 2.0, (4, 17)), rng.normal(0, 2.0, (4, 17))
            kd_case(cases, f"kd_loss/{kind}/masked/{dtype}", dtype, kind, 1.5, param, t, s,
                    mask=[1, 0, 1, 0], note="rows with mask 0 are padding: not counted, zero gradient")
            kd_case(cases, f"kd_loss/{kind}/all_masked/{dtype}", dtype, kind, 1.0, param, t[:2, :5],
                    s[:2, :5], mask=[0, 0], note="no row kept: loss 0 (not 0/0), zero gradient")
            if kind not in ("reverse_kl", "skew_reverse_kl") and not (kind == "jsd" and param == 1.0):
                tz = t[:3, :9].copy()
                tz[:, ::3] = -math.inf
                kd_case(cases, f"kd_loss/{kind}/teacher_zeros/{dtype}", dtype, kind, 1.0, param, tz,
                        s[:3, :9], note="teacher logits -inf: probability 0, 0 ln 0 = 0")
        # Low temperature in half precision: logits near the format's maximum.
        for kind in KINDS:
            rng = rng_for(SEED, f"kd_loss/{kind}/lowT/{dtype}")
            big = 6e4 if dtype == "f16" else 3e4
            t = rng.uniform(-big, big, (2, 7))
            s = rng.uniform(-big, big, (2, 7))
            t[1] = rng.normal(0, 0.2, 7)
            s[1] = rng.normal(0, 0.2, 7)
            param = 0.5 if kind in ("jsd", "skew_forward_kl", "skew_reverse_kl") else None
            kd_case(cases, f"kd_loss/{kind}/T0.05/{dtype}", dtype, kind, 0.05, param, t, s,
                    note="temperature 0.05, logits up to the f16 range: must stay finite")
        # Sequence-level cross-entropy with label smoothing.
        for eps in (0.0, 0.1, 0.5):
            cid = f"cross_entropy/eps{eps}/{dtype}"
            rng = rng_for(SEED, cid)
            n, v = 5, int(rng.choice([3, 8, 17, 33]))
            x = round_to(dtype, rng.normal(0, 3.0, (n, v)))
            y = [int(rng.integers(0, v)) for _ in range(n)]
            y[2] = -100
            loss, grad = ce(x, y, eps)
            atol, rtol = TOL[dtype]
            cases.append(case(cid, "cross_entropy", f"torch {torch.__version__} cross_entropy autograd, float64",
                              dtype, {"label_smoothing": eps, "ignore_index": -100},
                              {"logits": ftensor(x), "targets": tensor([n], y)},
                              {"loss": {"shape": [], "data": store_expected([loss], dtype)},
                               "grad": {"shape": [n, v], "data": store_expected(grad, dtype)}},
                              atol, rtol, "target -100 is ignored"))
        x = round_to(dtype, np.zeros((2, 4)))
        loss, grad = ce(x, [-100, -100], 0.1)
        cases.append(case(f"cross_entropy/all_ignored/{dtype}", "cross_entropy",
                          f"torch {torch.__version__} autograd, float64", dtype,
                          {"label_smoothing": 0.1, "ignore_index": -100},
                          {"logits": ftensor(x), "targets": tensor([2], [-100, -100])},
                          {"loss": {"shape": [], "data": store_expected([loss], dtype)},
                           "grad": {"shape": [2, 4], "data": store_expected(grad, dtype)}},
                          *TOL[dtype], "every target ignored: loss 0 by the format's convention (torch: NaN)"))
    write_cases("kd_loss.json", cases)
    print(len(cases), "cases;", "TRL cross-check on;" if TRL_JSD else "TRL not importable;",
          "torchtune cross-check on" if ForwardKLLoss else "torchtune not importable")


if __name__ == "__main__":
    main()
