"""State-space model golden vectors -> ../ssm.json  (mechanisms s4d_kernel, s4_kernel, ssm_conv)

Independent of seq-ssm:
- s4d_kernel: each complex mode a (with b, c) is written as a real 2x2 system
  A = [[Re a, -Im a], [Im a, Re a]], B = [Re b, Im b]^T, and discretised by
  scipy.signal.cont2discrete (method 'zoh' or 'bilinear'); the kernel is
  k[l] = sum over modes of 2 Re(c (Ad^l Bd)) with the *continuous* c, as the format says (SciPy's
  bilinear also returns a modified output map Cd, Dd, which S4 does not use).
- s4_kernel: the dense N x N complex system A = diag(lambda) - p p^*, discretised densely in NumPy
  (bilinear: numpy.linalg.solve; zoh: scipy.linalg.expm(dt A) and Bbar = A^{-1}(Abar - I) b by
  numpy.linalg.solve), and k[l] = 2 Re(c^T Abar^l Bbar) by repeated products: the state-spaces
  reference formulas (SSMKernelDense, "for testing") written out in NumPy.
- ssm_conv: scipy.signal.lfilter(k, [1], u) per channel (a causal FIR filter), plus d u; checked
  against numpy.convolve.

Inputs are drawn, rounded to the case's dtype and stored rounded; expected values are computed in
float64 from the stored inputs. Tolerances are derived per case (see tol_* below), never tuned.
"""
import math
import os
import sys

import numpy as np
import scipy
import scipy.linalg
import scipy.signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (U, U_ACC, case, ftensor, rng_for, round_to, round_up_2sig,  # noqa: E402
                    store_expected, write_cases)

SEED = 20241104
CASES = []
SRC_S4D = f"scipy {scipy.__version__} signal.cont2discrete per mode (real 2x2 form), float64"
SRC_S4 = (f"numpy {np.__version__} / scipy {scipy.__version__}: dense A = diag(lambda) - p p^*, "
          "bilinear by linalg.solve, zoh by linalg.expm, powers of Abar, float64")
SRC_CONV = f"scipy {scipy.__version__} signal.lfilter(k, [1], u) + d u, float64"


def cplx(rng, shape, scale=1.0):
    return (rng.normal(0, scale, shape) + 1j * rng.normal(0, scale, shape))


def as_ri(z):
    z = np.asarray(z)
    return np.stack([z.real, z.imag], axis=-1)


def from_ri(x):
    return x[..., 0] + 1j * x[..., 1]


def s4d_expected(method, log_dt, a, b, c, L):
    H, N = a.shape
    k = np.zeros((H, L))
    for h in range(H):
        dt = math.exp(log_dt[h])
        for n in range(N):
            ar, ai = a[h, n].real, a[h, n].imag
            A = np.array([[ar, -ai], [ai, ar]])
            B = np.array([[b[h, n].real], [b[h, n].imag]])
            C = np.zeros((1, 2))
            Ad, Bd, _, _, _ = scipy.signal.cont2discrete((A, B, C, np.zeros((1, 1))), dt, method=method)
            x = Bd[:, 0].copy()
            for l in range(L):
                xc = x[0] + 1j * x[1]
                k[h, l] += 2.0 * (c[h, n] * xc).real
                x = Ad @ x
    return k


def tol_s4d(dtype, log_dt, a, b, c, L, method):
    """The model is discretised in f64 (a handful of roundings, <= 4 u relative in ln Abar and
    C Bbar) and its parameters are held in the accumulation type (one more rounding each), which
    moves a term 2 Re(w z^l) by at most 2|w||z|^l 4 (1 + l |ln z|) u_acc; forming z^l by at most
    64 products between exact restarts and summing adds 2|w||z|^l (2 * 64 + 4) u_acc. Twice the
    sum over the modes is the absolute part. The output is stored in dtype: 2u relative."""
    H, N = a.shape
    atol = 0.0
    for h in range(H):
        dt = math.exp(log_dt[h])
        tot = 0.0
        for n in range(N):
            if method == "zoh":
                z = np.exp(dt * a[h, n])
                bb = (z - 1) / a[h, n] * b[h, n]
            else:
                z = (1 + dt * a[h, n] / 2) / (1 - dt * a[h, n] / 2)
                bb = dt * b[h, n] / (1 - dt * a[h, n] / 2)
            w = abs(c[h, n] * bb)
            lz = abs(np.log(z))
            ls = np.arange(max(L, 1))
            tot += 2 * w * np.max(np.abs(z) ** ls * (4 * (1 + ls * lz) + 2 * 64 + 4))
        atol = max(atol, 2 * tot * U_ACC[dtype])
    return round_up_2sig(max(atol, 1e-300)), round_up_2sig(2 * U[dtype])


def add_s4d(dtype, method, H, N, L, init="lin", tag="", log_dt_fix=None, re_fix=None):
    cid = f"s4d_kernel/{method}/{dtype}/H{H}-N{N}-L{L}" + (f"-{tag}" if tag else "")
    rng = rng_for(SEED, cid)
    if log_dt_fix is None:
        log_dt = rng.uniform(math.log(1e-3), math.log(1e-1), H)
    else:
        log_dt = np.full(H, log_dt_fix)
    n = np.arange(N)
    if init == "lin":
        im = math.pi * n
    else:  # S4D-Inv, N real states = 2 * modes
        big = 2 * N
        im = big / math.pi * (big / (2 * n + 1) - 1)
    a = np.tile(-0.5 + 1j * im, (H, 1))
    if re_fix is not None:
        a = a.real * 0 + re_fix + 1j * a.imag
    b = cplx(rng, (H, N), 1.0)
    c = cplx(rng, (H, N), 1.0 / math.sqrt(N))
    log_dt = round_to(dtype, log_dt)
    a = from_ri(round_to(dtype, as_ri(a)))
    b = from_ri(round_to(dtype, as_ri(b)))
    c = from_ri(round_to(dtype, as_ri(c)))
    k = s4d_expected(method, log_dt, a, b, c, L)
    atol, rtol = tol_s4d(dtype, log_dt, a, b, c, L, method)
    CASES.append(case(cid, "s4d_kernel", SRC_S4D.replace("per mode", f"(method='{method}') per mode"), dtype,
                      {"discretization": method, "length": L},
                      {"log_dt": ftensor(log_dt), "a": ftensor(as_ri(a)), "b": ftensor(as_ri(b)),
                       "c": ftensor(as_ri(c))},
                      {"k": {"shape": [H, L], "data": store_expected(k, dtype)}}, atol, rtol))


def s4_expected(method, log_dt, lam, p, b, c, L):
    H, N = lam.shape
    k = np.zeros((H, L))
    for h in range(H):
        dt = math.exp(log_dt[h])
        A = np.diag(lam[h]) - np.outer(p[h], p[h].conj())
        I = np.eye(N)
        if method == "bilinear":
            M = I - dt / 2 * A
            Ab = np.linalg.solve(M, I + dt / 2 * A)
            Bb = np.linalg.solve(M, dt * b[h])
        else:
            Ab = scipy.linalg.expm(dt * A)
            Bb = np.linalg.solve(A, (Ab - I) @ b[h])
        x = Bb.copy()
        for l in range(L):
            k[h, l] = 2.0 * (c[h] @ x).real
            x = Ab @ x
    return k


def add_s4(dtype, method, H, N, L):
    cid = f"s4_kernel/{method}/{dtype}/H{H}-N{N}-L{L}"
    rng = rng_for(SEED, cid)
    log_dt = round_to(dtype, rng.uniform(math.log(1e-3), math.log(1e-1), H))
    lam = np.tile(-0.5 + 1j * math.pi * np.arange(N), (H, 1))
    p = cplx(rng, (H, N), 0.5)
    b = cplx(rng, (H, N), 1.0)
    c = cplx(rng, (H, N), 1.0 / math.sqrt(N))
    lam, p, b, c = (from_ri(round_to(dtype, as_ri(z))) for z in (lam, p, b, c))
    k = s4_expected(method, log_dt, lam, p, b, c, L)
    # Our S4 kernel is computed in f64 from the rounded inputs and rounded once to dtype: 2u
    # relative, plus an absolute part for f64 rounding in an O(N L) computation of a kernel whose
    # terms reach sum_n 2|c_n||Bbar_n| (conditioning of I - Abar^L included, factor 1e3).
    scale = 2 * float(np.sum(np.abs(c) * np.abs(b))) + 1e-300
    atol = round_up_2sig(1e3 * (N + L) * U["f64"] * scale + (U[dtype] * np.max(np.abs(k)) if dtype == "f64" else 0))
    CASES.append(case(cid, "s4_kernel", SRC_S4, dtype, {"discretization": method, "length": L},
                      {"log_dt": ftensor(log_dt), "lambda": ftensor(as_ri(lam)), "p": ftensor(as_ri(p)),
                       "b": ftensor(as_ri(b)), "c": ftensor(as_ri(c))},
                      {"k": {"shape": [H, L], "data": store_expected(k, dtype)}}, atol,
                      round_up_2sig(2 * U[dtype])))


def add_conv(dtype, H, L, tag=""):
    cid = f"ssm_conv/{dtype}/H{H}-L{L}" + (f"-{tag}" if tag else "")
    rng = rng_for(SEED, cid)
    decay = np.exp(-np.arange(L) / max(L / 4, 1))
    k = round_to(dtype, rng.normal(0, 1, (H, L)) * decay / math.sqrt(max(L, 1) / 8 + 1))
    u = round_to(dtype, rng.normal(0, 1, (L, H)))
    d = round_to(dtype, rng.normal(0, 1, H))
    y = np.zeros((L, H))
    for h in range(H):
        if L:
            y[:, h] = scipy.signal.lfilter(k[h], [1.0], u[:, h]) + d[h] * u[:, h]
            alt = np.convolve(u[:, h], k[h])[:L] + d[h] * u[:, h]
            assert np.allclose(alt, y[:, h], rtol=1e-12, atol=1e-12)
    # FFT convolution error, normwise (Higham, ch. 24): |e| <= c log2(n) u_acc ||k_h|| ||u_h||,
    # c = 6 (three transforms and the product), n the FFT length; plus the skip term's rounding
    # and the store: 2u relative.
    n = 1 << max(0, (2 * L - 1)).bit_length() if L > 0 else 1
    atol = 0.0
    for h in range(H):
        atol = max(atol, 6 * max(math.log2(n), 1) * U_ACC[dtype]
                   * float(np.linalg.norm(k[h]) * np.linalg.norm(u[:, h]))
                   + 2 * U_ACC[dtype] * abs(d[h]) * float(np.max(np.abs(u[:, h]), initial=0)))
    atol = round_up_2sig(max(atol, 2.0 ** -24))
    CASES.append(case(cid, "ssm_conv", SRC_CONV, dtype, {},
                      {"k": ftensor(k), "u": ftensor(u), "d": ftensor(d)},
                      {"y": {"shape": [L, H], "data": store_expected(y, dtype)}},
                      atol, round_up_2sig(2 * U[dtype])))


for dt in ("f32", "f64", "f16", "bf16"):
    for method in ("zoh", "bilinear"):
        sizes = [(1, 1, 1), (2, 4, 16), (3, 8, 64)]
        if dt in ("f32", "f64"):
            sizes += [(1, 16, 257)]
        if dt == "f32":
            sizes += [(1, 32, 500)]
        for (H, N, L) in sizes:
            add_s4d(dt, method, H, N, L)
    add_s4d(dt, "zoh", 2, 8, 100, init="inv", tag="inv")
for method in ("zoh", "bilinear"):
    add_s4d("f32", method, 2, 4, 0, tag="empty")
    add_s4d("f32", method, 1, 4, 300, tag="re-1e-9", re_fix=-1e-9)
    add_s4d("f64", method, 1, 4, 300, tag="re-1e-9", re_fix=-1e-9)
    add_s4d("f32", method, 2, 4, 64, tag="dt1e-6", log_dt_fix=math.log(1e-6))
    add_s4d("f32", method, 2, 4, 64, tag="dt10", log_dt_fix=math.log(10.0))
    add_s4d("f64", method, 2, 4, 64, tag="dt10", log_dt_fix=math.log(10.0))

for dt in ("f32", "f64"):
    for (H, N, L) in [(1, 2, 1), (2, 4, 32), (2, 8, 100), (1, 16, 256)]:
        add_s4("f32" if dt == "f32" else "f64", "bilinear", H, N, L)
    for (H, N, L) in [(1, 6, 40), (2, 4, 63)]:
        add_s4(dt, "zoh", H, N, L)

for dt in ("f32", "f64", "f16", "bf16"):
    for (H, L) in [(1, 1), (2, 9), (2, 33), (1, 100)]:
        add_conv(dt, H, L)
add_conv("f32", 2, 257)
add_conv("f32", 1, 251, tag="prime")
add_conv("f32", 2, 0, tag="empty")

write_cases("ssm.json", CASES)
