//! S4 with a diagonal-plus-low-rank state matrix ("Efficiently Modeling Long Sequences with
//! Structured State Spaces", Gu, Goel & Re 2022): `A = diag(lambda) - p p^*` per channel, N complex
//! states, output `k_l = 2 Re(c^T Abar^l Bbar)` (the conjugate-pair halving of the official code).
//!
//! - [`kernel_cauchy`]: the paper's algorithm (section 3.3, Algorithm 1) for the bilinear
//!   discretisation: the truncated generating function at the `L` roots of unity,
//!   `Khat(w) = ct^T (I - Abar w)^{-1} Bbar` with `ct = (I - Abar^L)^T c` (Lemma C.2), reduced to
//!   Cauchy sums `sum_n u_n v_n/(g - lambda_n)` by the Woodbury identity (Lemma C.3), then an
//!   inverse DFT of length `L`. O(N L) plus the DFT.
//! - [`kernel_dense`]: the plain definition, `Abar` built densely (bilinear: a linear solve; ZOH:
//!   the matrix exponential of the block matrix `[[dt A, dt b], [0, 0]]`, whose top-right block is
//!   `Bbar`) and the kernel as powers of `Abar`. O(N^2 L): the check of the fast path, and the ZOH
//!   kernel (whose generating function has no Cauchy form).
//!
//! Everything is f64, on caller workspace, without allocation.

use seqcore::portable::ssm::fft;
use seqcore::{Error, Result};

use crate::complex::Complex;
use crate::discretization::Discretization;

fn shape_err(arg: &'static str, got: usize, expected: usize) -> Error {
    Error::Shape {
        arg,
        axis: 0,
        got,
        expected,
        shape: seqcore::Dims::new(&[got]),
    }
}

fn param(arg: &'static str, reason: &'static str) -> Error {
    Error::Param { arg, reason }
}

/// One channel of a DPLR state-space model: `A = diag(lambda) - p p^*`, input `b`, output `c`,
/// each of `N` complex entries.
#[derive(Clone, Copy, Debug)]
pub struct Dplr<'a> {
    /// Diagonal part `lambda` (`Re < 0`).
    pub lambda: &'a [Complex],
    /// Rank-1 factor `p`.
    pub p: &'a [Complex],
    /// Input vector `b`.
    pub b: &'a [Complex],
    /// Output vector `c`.
    pub c: &'a [Complex],
}

impl Dplr<'_> {
    /// `N`, after checking that every vector has it and every entry is finite, and that
    /// `Re(lambda) < 0`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `p`, `b` or `c`; [`Error::Param`] naming the non-finite vector or
    /// `lambda` with `Re >= 0`.
    pub fn check(&self) -> Result<usize> {
        let n = self.lambda.len();
        for (arg, v) in [("p", self.p), ("b", self.b), ("c", self.c)] {
            if v.len() != n {
                return Err(shape_err(arg, v.len(), n));
            }
        }
        for (arg, v) in [
            ("lambda", self.lambda),
            ("p", self.p),
            ("b", self.b),
            ("c", self.c),
        ] {
            if !v.iter().all(|z| z.is_finite()) {
                return Err(param(arg, "must be finite"));
            }
        }
        if self.lambda.iter().any(|z| z.re >= 0.0) {
            return Err(param("lambda", "Re(lambda) >= 0 is an unstable mode"));
        }
        Ok(n)
    }
}

fn check_dt(dt: f64) -> Result<f64> {
    if dt.is_finite() && dt > 0.0 {
        Ok(dt)
    } else {
        Err(param("dt", "must be finite and positive"))
    }
}

/// Workspace of [`kernel_cauchy`] for `n` states and length `l`: `(complex, f64)` element counts,
/// `3n` complex values and `2l + ` [`fft::dft_workspace_len`]`(l)` f64 values.
///
/// # Errors
/// [`Error::Overflow`] naming `n` or `l`.
pub fn cauchy_workspace_len(n: usize, l: usize) -> Result<(usize, usize)> {
    let c = n.checked_mul(3).ok_or(Error::Overflow { arg: "n" })?;
    let f = l
        .checked_mul(2)
        .and_then(|x| x.checked_add(fft::dft_workspace_len(l).ok()?))
        .ok_or(Error::Overflow { arg: "l" })?;
    Ok((c, f))
}

/// `y = (I - h M)^{-1} x` for `M = diag(lambda) - u v^T` (Woodbury):
/// `y = D x - h (D u)(v^T D x)/(1 + h v^T D u)`, `D = diag(1/(1 - h lambda))`.
fn solve_dplr(h: f64, lambda: &[Complex], u: &[Complex], v: &[Complex], x: &mut [Complex]) {
    let d = |l: Complex| (Complex::ONE - l.scale(h)).recip();
    let (mut vdx, mut vdu) = (Complex::ZERO, Complex::ZERO);
    for (((&l, &ui), &vi), &xi) in lambda.iter().zip(u).zip(v).zip(x.iter()) {
        let di = d(l);
        vdx += vi * di * xi;
        vdu += vi * di * ui;
    }
    let f = vdx.scale(h) / (Complex::ONE + vdu.scale(h));
    for ((xi, &l), &ui) in x.iter_mut().zip(lambda).zip(u) {
        let di = d(l);
        *xi = di * *xi - di * ui * f;
    }
}

/// `x <- (I + h M) x` for `M = diag(lambda) - u v^T`.
fn mul_dplr(h: f64, lambda: &[Complex], u: &[Complex], v: &[Complex], x: &mut [Complex]) {
    let vx = v
        .iter()
        .zip(x.iter())
        .fold(Complex::ZERO, |a, (&vi, &xi)| a + vi * xi);
    for ((xi, &l), &ui) in x.iter_mut().zip(lambda).zip(u) {
        *xi = *xi + (l * *xi - ui * vx).scale(h);
    }
}

/// The bilinear S4 kernel `k [L]` of one channel by the Cauchy kernel and the Woodbury
/// correction (see the module docs). `ws_c` and `ws_f` as [`cauchy_workspace_len`] asks.
///
/// At the root `w = -1` (even `L`) the factor `2/(1 + w)` of the paper is folded into the
/// resolvent, `[(1 - w)/dt I - (1 + w)/2 A]^{-1}`, which has no singularity there.
///
/// # Errors
/// As [`Dplr::check`]; [`Error::Param`] naming `dt`; [`Error::Shape`] naming `ws_c` or `ws_f`
/// when too short.
pub fn kernel_cauchy(
    dt: f64,
    m: &Dplr<'_>,
    k: &mut [f64],
    ws_c: &mut [Complex],
    ws_f: &mut [f64],
) -> Result<()> {
    let n = m.check()?;
    let dt = check_dt(dt)?;
    let l = k.len();
    let (nc, nf) = cauchy_workspace_len(n, l)?;
    let wc_len = ws_c.len();
    let wf_len = ws_f.len();
    let ws_c = ws_c.get_mut(..nc).ok_or(shape_err("ws_c", wc_len, nc))?;
    let ws_f = ws_f.get_mut(..nf).ok_or(shape_err("ws_f", wf_len, nf))?;
    if l == 0 {
        return Ok(());
    }
    let (ct, rest) = ws_c.split_at_mut(n);
    let (pc, _) = rest.split_at_mut(n);
    for (q, &p) in pc.iter_mut().zip(m.p) {
        *q = p.conj();
    }
    let h = 0.5 * dt;
    // ct = c - (Abar^T)^L c, Abar^T = (I + h A^T)(I - h A^T)^{-1}, A^T = diag(lambda) - conj(p) p^T.
    ct.copy_from_slice(m.c);
    for _ in 0..l {
        solve_dplr(h, m.lambda, pc, m.p, ct);
        mul_dplr(h, m.lambda, pc, m.p, ct);
    }
    for (t, &c) in ct.iter_mut().zip(m.c) {
        *t = c - *t;
    }
    // Khat at w_j = e^{-2 pi i j/L}: ct^T M^{-1} b with M = alpha I - beta A = alpha I - beta
    // diag(lambda) + beta p p^*, alpha = (1 - w)/dt, beta = (1 + w)/2.
    let (khat, dws) = ws_f.split_at_mut(2 * l);
    #[allow(clippy::cast_precision_loss)] // l < 2^53
    let lf = l as f64;
    for (j, out) in khat.chunks_exact_mut(2).enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let (s, co) = libm::sincos(-2.0 * core::f64::consts::PI * j as f64 / lf);
        let w = Complex::new(co, s);
        let alpha = (Complex::ONE - w).scale(1.0 / dt);
        let beta = (Complex::ONE + w).scale(0.5);
        let (mut k00, mut k01, mut k10, mut k11) =
            (Complex::ZERO, Complex::ZERO, Complex::ZERO, Complex::ZERO);
        for ((((&lam, &p), &q), &b), &c) in m
            .lambda
            .iter()
            .zip(m.p)
            .zip(pc.iter())
            .zip(m.b)
            .zip(ct.iter())
        {
            let r = (alpha - beta * lam).recip();
            k00 += c * r * b;
            k01 += c * r * p;
            k10 += q * r * b;
            k11 += q * r * p;
        }
        let v = k00 - beta * k01 * k10 / (Complex::ONE + beta * k11);
        if let [re, im] = out {
            *re = v.re;
            *im = v.im;
        }
    }
    fft::dft(khat, true, dws)?;
    for (kv, z) in k.iter_mut().zip(khat.chunks_exact(2)) {
        *kv = 2.0 * z.first().copied().unwrap_or(f64::NAN) / lf;
    }
    Ok(())
}

/// Workspace of [`kernel_dense`] for `n` states: `4 (n + 1)^2 + 2 (n + 1)` complex values.
///
/// # Errors
/// [`Error::Overflow`] naming `n`.
pub fn dense_workspace_len(n: usize) -> Result<usize> {
    let m = n.checked_add(1).ok_or(Error::Overflow { arg: "n" })?;
    m.checked_mul(m)
        .and_then(|x| x.checked_mul(4))
        .and_then(|x| x.checked_add(2 * m))
        .ok_or(Error::Overflow { arg: "n" })
}

#[allow(clippy::indexing_slicing)] // i, j < m and every matrix holds m * m values (checked by the caller)
fn matmul(m: usize, a: &[Complex], b: &[Complex], out: &mut [Complex]) {
    for i in 0..m {
        for j in 0..m {
            let mut s = Complex::ZERO;
            for k in 0..m {
                s += a[i * m + k] * b[k * m + j];
            }
            out[i * m + j] = s;
        }
    }
}

/// `a <- a^{-1}` by Gauss-Jordan elimination with partial pivoting (`inv` is scratch).
#[allow(clippy::indexing_slicing)] // indices below m; both matrices hold m * m values
fn invert(m: usize, a: &mut [Complex], inv: &mut [Complex]) -> Result<()> {
    inv.fill(Complex::ZERO);
    for i in 0..m {
        inv[i * m + i] = Complex::ONE;
    }
    for col in 0..m {
        let piv = (col..m)
            .max_by(|&x, &y| a[x * m + col].abs().total_cmp(&a[y * m + col].abs()))
            .unwrap_or(col);
        if a[piv * m + col].abs() == 0.0 {
            return Err(param("dt", "I - dt/2 A is singular"));
        }
        for j in 0..m {
            a.swap(col * m + j, piv * m + j);
            inv.swap(col * m + j, piv * m + j);
        }
        let d = a[col * m + col].recip();
        for j in 0..m {
            a[col * m + j] *= d;
            inv[col * m + j] *= d;
        }
        for r in 0..m {
            if r != col {
                let f = a[r * m + col];
                if f != Complex::ZERO {
                    for j in 0..m {
                        let (x, y) = (a[col * m + j], inv[col * m + j]);
                        a[r * m + j] -= f * x;
                        inv[r * m + j] -= f * y;
                    }
                }
            }
        }
    }
    a.copy_from_slice(inv);
    Ok(())
}

/// `a <- e^a` by scaling and squaring with a degree-24 Taylor polynomial (`t1`, `t2` scratch).
#[allow(clippy::indexing_slicing)] // indices below m; every matrix holds m * m values
fn expm(m: usize, a: &mut [Complex], t1: &mut [Complex], t2: &mut [Complex]) {
    let norm = (0..m)
        .map(|j| (0..m).map(|i| a[i * m + j].abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let mut s = 0u32;
    while norm / f64::from(1u32 << s.min(30)) > 0.25 && s < 60 {
        s += 1;
    }
    let scale = libm::ldexp(1.0, -i32::try_from(s).unwrap_or(60));
    for v in a.iter_mut() {
        *v = v.scale(scale);
    }
    // Horner: e^a ~ I + a/1 (I + a/2 (I + ... a/24)).
    t1.fill(Complex::ZERO);
    for i in 0..m {
        t1[i * m + i] = Complex::ONE;
    }
    for k in (1..=24u32).rev() {
        matmul(m, a, t1, t2);
        for v in t2.iter_mut() {
            *v = v.scale(1.0 / f64::from(k));
        }
        for i in 0..m {
            t2[i * m + i] += Complex::ONE;
        }
        t1.copy_from_slice(t2);
    }
    for _ in 0..s {
        matmul(m, t1, t1, t2);
        t1.copy_from_slice(t2);
    }
    a.copy_from_slice(t1);
}

/// The S4 kernel `k [L]` of one channel by its definition: `Abar` and `Bbar` built densely, then
/// `k_l = 2 Re(c^T Abar^l Bbar)` by repeated products (see the module docs). `ws` as
/// [`dense_workspace_len`] asks.
///
/// # Errors
/// As [`Dplr::check`]; [`Error::Param`] naming `dt`; [`Error::Shape`] naming `ws`.
#[allow(clippy::indexing_slicing)] // indices below m = n + 1; every matrix holds m * m values
pub fn kernel_dense(
    method: Discretization,
    dt: f64,
    model: &Dplr<'_>,
    k: &mut [f64],
    ws: &mut [Complex],
) -> Result<()> {
    let n = model.check()?;
    let dt = check_dt(dt)?;
    let need = dense_workspace_len(n)?;
    let wl = ws.len();
    let ws = ws.get_mut(..need).ok_or(shape_err("ws", wl, need))?;
    let m = n + 1;
    let (a, rest) = ws.split_at_mut(m * m);
    let (t1, rest) = rest.split_at_mut(m * m);
    let (t2, rest) = rest.split_at_mut(m * m);
    let (_t3, rest) = rest.split_at_mut(m * m);
    let (v, w) = rest.split_at_mut(m);
    // a = dt A (n x n, inside an m x m frame).
    a.fill(Complex::ZERO);
    for i in 0..n {
        for j in 0..n {
            let mut x = -(model.p[i] * model.p[j].conj());
            if i == j {
                x += model.lambda[i];
            }
            a[i * m + j] = x.scale(dt);
        }
    }
    match method {
        Discretization::Zoh => {
            // exp([[dt A, dt b], [0, 0]]) = [[Abar, Bbar], [0, 1]].
            for i in 0..n {
                a[i * m + n] = model.b[i].scale(dt);
            }
            expm(m, a, t1, t2);
            for i in 0..n {
                v[i] = a[i * m + n];
            }
        }
        Discretization::Bilinear => {
            // Abar = (I - dt/2 A)^{-1} (I + dt/2 A), Bbar = (I - dt/2 A)^{-1} dt b.
            for i in 0..m {
                for j in 0..m {
                    let id = if i == j { Complex::ONE } else { Complex::ZERO };
                    t1[i * m + j] = id - a[i * m + j].scale(0.5);
                    t2[i * m + j] = id + a[i * m + j].scale(0.5);
                }
            }
            invert(m, t1, a)?;
            matmul(m, t1, t2, a);
            for i in 0..n {
                v[i] = (0..n).fold(Complex::ZERO, |s, j| {
                    s + t1[i * m + j] * model.b[j].scale(dt)
                });
            }
        }
    }
    v[n] = Complex::ZERO;
    for kl in k.iter_mut() {
        let y = (0..n).fold(Complex::ZERO, |s, i| s + model.c[i] * v[i]);
        *kl = 2.0 * y.re;
        for i in 0..n {
            w[i] = (0..n).fold(Complex::ZERO, |s, j| s + a[i * m + j] * v[j]);
        }
        v.copy_from_slice(w);
    }
    Ok(())
}
