#!/usr/bin/env python3
"""Golden values for seq-attention's structure modules, from PyTorch (float64, CPU):

- Set Transformer blocks (Lee et al. 2019, eq. 6-11) in the paper's form,
  H = LayerNorm(X + MHA(X, Y, Y)), MAB = LayerNorm(H + relu(Linear(H))), built from
  torch.nn.MultiheadAttention(batch_first=True), nn.LayerNorm (eps 1e-5) and nn.Linear;
  SAB, ISAB (3 inducing points), PMA (2 seeds);
- Read-Process-Write (Vinyals et al. 2016, eq. 3-7) with torch.nn.LSTMCell(2d, d) fed
  q*_{t-1}, dot-product content attention (PyTorch Geometric's Set2Set loop), a Linear read;
- pointer attention (Vinyals et al. 2015, eq. 3) with a key-padding / already-pointed mask;
- ACT halting exactly as tensor2tensor's ut_function / should_continue, with the step
  state' = tanh(state A^T + c), p = sigmoid(state w + b0).

Writes attention/tests/data/structure.txt: per tensor one line `name d0 d1 ...` then one line
of values (repr, `-inf` allowed). Run from the repository root:
    python3 conformance/vectors/gen/set_encoder.py
"""
import math
import os

import torch

torch.manual_seed(20260127)
torch.set_default_dtype(torch.float64)
OUT = os.path.join("attention", "tests", "data", "structure.txt")
lines = []


def put(name, t):
    t = torch.as_tensor(t, dtype=torch.float64).detach()
    lines.append(" ".join([name] + [str(s) for s in t.shape]))
    lines.append(" ".join(repr(float(v)) for v in t.reshape(-1).tolist()))


def rnd(*shape, scale=1.0):
    return torch.randn(*shape) * scale


# ---- Set Transformer -------------------------------------------------------------------
D, HEADS = 8, 2


def make_mab(prefix):
    mha = torch.nn.MultiheadAttention(D, HEADS, batch_first=True)
    with torch.no_grad():
        # Non-trivial biases (PyTorch initialises them to zero).
        mha.in_proj_bias.copy_(rnd(3 * D, scale=0.1))
        mha.out_proj.bias.copy_(rnd(D, scale=0.1))
    ln0, ln1 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
    with torch.no_grad():
        for ln in (ln0, ln1):
            ln.weight.copy_(1.0 + rnd(D, scale=0.2))
            ln.bias.copy_(rnd(D, scale=0.2))
    ff = torch.nn.Linear(D, D)
    put(prefix + ".in_proj_weight", mha.in_proj_weight)
    put(prefix + ".in_proj_bias", mha.in_proj_bias)
    put(prefix + ".out_proj.weight", mha.out_proj.weight)
    put(prefix + ".out_proj.bias", mha.out_proj.bias)
    put(prefix + ".ln0.weight", ln0.weight)
    put(prefix + ".ln0.bias", ln0.bias)
    put(prefix + ".ln1.weight", ln1.weight)
    put(prefix + ".ln1.bias", ln1.bias)
    put(prefix + ".ff.weight", ff.weight)
    put(prefix + ".ff.bias", ff.bias)

    def mab(x, y):
        a = mha(x[None], y[None], y[None], need_weights=False)[0][0]
        h = ln0(x + a)
        return ln1(h + torch.relu(ff(h)))

    return mab


with torch.no_grad():
    mab = make_mab("mab")
    x = rnd(5, D)
    y = rnd(4, D)
    put("mab.x", x)
    put("mab.y", y)
    put("mab.out", mab(x, y))
    put("sab.out", mab(x, x))

    isab0, isab1 = make_mab("isab0"), make_mab("isab1")
    inducing = rnd(3, D)
    put("isab.inducing", inducing)
    put("isab.out", isab1(x, isab0(inducing, x)))

    pmab = make_mab("pma")
    seeds = rnd(2, D)
    pff = torch.nn.Linear(D, D)
    put("pma.seeds", seeds)
    put("pma.rff.weight", pff.weight)
    put("pma.rff.bias", pff.bias)
    put("pma.out", pmab(seeds, torch.relu(pff(x))))

# ---- Read-Process-Write ----------------------------------------------------------------
DIN, DM, STEPS, NSET = 3, 4, 3, 6
with torch.no_grad():
    read = torch.nn.Linear(DIN, DM)
    lstm = torch.nn.LSTMCell(2 * DM, DM)
    xs = rnd(NSET, DIN)
    put("rpw.read.weight", read.weight)
    put("rpw.read.bias", read.bias)
    put("rpw.weight_ih", lstm.weight_ih)
    put("rpw.weight_hh", lstm.weight_hh)
    put("rpw.bias_ih", lstm.bias_ih)
    put("rpw.bias_hh", lstm.bias_hh)
    put("rpw.x", xs)
    m = read(xs)
    h = torch.zeros(1, DM)
    c = torch.zeros(1, DM)
    qstar = torch.zeros(1, 2 * DM)
    for _ in range(STEPS):
        h, c = lstm(qstar, (h, c))
        e = (m * h).sum(-1)
        a = torch.softmax(e, dim=0)
        r = (a[:, None] * m).sum(0, keepdim=True)
        qstar = torch.cat([h, r], dim=-1)
    put("rpw.out", qstar[0])

# ---- Pointer attention -----------------------------------------------------------------
H, DE, DD, NIN, NQ = 6, 4, 5, 7, 3
with torch.no_grad():
    w1, w2, v = rnd(H, DE, scale=0.5), rnd(H, DD, scale=0.5), rnd(H)
    e, dq = rnd(NIN, DE), rnd(NQ, DD)
    mask = torch.zeros(NQ, NIN)
    mask[0, 6] = -math.inf  # padding
    mask[1, 2] = -math.inf  # already pointed at
    mask[1, 6] = -math.inf
    mask[2, :6] = -math.inf  # one position left
    u = torch.tanh((e @ w1.T)[None, :, :] + (dq @ w2.T)[:, None, :]) @ v
    put("ptr.w1", w1)
    put("ptr.w2", w2)
    put("ptr.v", v)
    put("ptr.e", e)
    put("ptr.d", dq)
    put("ptr.mask", mask)
    put("ptr.u", u)
    put("ptr.out", torch.log_softmax(u + mask, dim=-1))

# ---- ACT (tensor2tensor semantics) -----------------------------------------------------
P, DA, MAX_STEPS, THRESHOLD = 6, 3, 5, 1.0 - 0.01
with torch.no_grad():
    amat, cvec = rnd(DA, DA, scale=0.8), rnd(DA, scale=0.3)
    wp = rnd(DA)
    s0 = rnd(P, DA)
    bias = torch.tensor([-1.5])
    put("act.a", amat)
    put("act.c", cvec)
    put("act.wp", wp)
    put("act.bp", bias)
    put("act.state", s0)
    state = s0
    hp = torch.zeros(P)
    rem = torch.zeros(P)
    nup = torch.zeros(P)
    prev = torch.zeros(P, DA)
    steps = 0
    while bool(((hp < THRESHOLD) & (nup < MAX_STEPS)).any()):
        p = torch.sigmoid(state @ wp + bias)
        running = (hp < 1.0).double()
        new_halted = (hp + p * running > THRESHOLD).double() * running
        running = (hp + p * running <= THRESHOLD).double() * running
        hp = hp + p * running
        rem = rem + new_halted * (1 - hp)
        hp = hp + new_halted * rem
        nup = nup + running + new_halted
        w = (p * running + new_halted * rem)[:, None]
        state = torch.tanh(state @ amat.T + cvec)
        prev = state * w + prev * (1 - w)
        steps += 1
    put("act.out", prev)
    put("act.halting", hp)
    put("act.remainders", rem)
    put("act.updates", nup)
    put("act.steps", torch.tensor([float(steps)]))
    put("act.ponder", torch.tensor([float((nup + rem).mean())]))

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    f.write("# generated by conformance/vectors/gen/set_encoder.py (torch %s)\n" % torch.__version__)
    f.write("\n".join(lines) + "\n")
print("wrote", OUT, len(lines) // 2, "tensors")
