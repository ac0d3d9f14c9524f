//! HiPPO ("HiPPO: Recurrent Memory with Optimal Polynomial Projections", Gu, Dao, Ermon, Rudra &
//! Re 2020): the transition matrices `(A, B)` of the online function approximation
//! `x'(t) = A x(t) + B f(t)` (LegT, LagT, FouT) or `x'(t) = (A x(t) + B f(t))/t` (LegS), in the
//! sign and scale conventions of the official state-spaces code, and the normal-plus-low-rank form
//! of LegS that S4 uses (S4 section 3.1, Theorem 1):
//!
//! `A = V Lambda V^* - P P^T`, `P_n = sqrt(n + 1/2)`, `Lambda = -1/2 + i omega` (the normal part
//! `A + P P^T` is `-I/2` plus a skew-symmetric matrix).
//!
//! Dense matrices are row-major `n x n` f64 in caller memory; nothing allocates.

use seqcore::{Error, Result};

use crate::complex::Complex;

/// A HiPPO measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Scaled Legendre (uniform weight on the whole history `[0, t]`):
    /// `A_nk = -sqrt(2n+1) sqrt(2k+1)` for `n > k`, `-(n+1)` for `n = k`, 0 above;
    /// `B_n = sqrt(2n+1)` (HiPPO eq. 7, Theorem 2).
    LegS,
    /// Translated Legendre (uniform weight on a sliding window), halved for timescale as in the
    /// official code: `A_nk = -sqrt(2n+1) sqrt(2k+1)/2 * ((-1)^(n-k) if n < k else 1)`,
    /// `B_n = sqrt(2n+1)/2`.
    LegT,
    /// Translated Laguerre (exponentially decaying weight): `A = I/2 - tril(1)` (`-1/2` on the
    /// diagonal, `-1` below), `B_n = 1`.
    LagT,
    /// Translated Fourier: `A = pi (-diag(d, 1) + diag(d, -1)) - B B^T` with
    /// `d = [0, 1, 0, 2, 0, 3, ..][1..]`, `B = [1, sqrt 2, 0, sqrt 2, 0, ..]` on even indices.
    FouT,
}

fn shape_err(arg: &'static str, got: usize, expected: usize) -> Error {
    Error::Shape {
        arg,
        axis: 0,
        got,
        expected,
        shape: seqcore::Dims::new(&[got]),
    }
}

fn sq(n: usize) -> Result<usize> {
    n.checked_mul(n).ok_or(Error::Overflow { arg: "n" })
}

/// Writes the transition matrices of `measure` for `n` coefficients: `a` (`n x n`, row-major) and
/// `b` (`n`).
///
/// # Errors
/// [`Error::Shape`] naming `a` or `b` when their lengths are not `n^2` and `n`.
pub fn transition(measure: Measure, n: usize, a: &mut [f64], b: &mut [f64]) -> Result<()> {
    if a.len() != sq(n)? {
        return Err(shape_err("a", a.len(), sq(n)?));
    }
    if b.len() != n {
        return Err(shape_err("b", b.len(), n));
    }
    #[allow(clippy::cast_precision_loss)] // n far below 2^53
    let r = |i: usize| libm::sqrt(2.0 * i as f64 + 1.0);
    a.fill(0.0);
    match measure {
        Measure::LegS => {
            for (i, row) in a.chunks_exact_mut(n.max(1)).enumerate() {
                for (j, v) in row.iter_mut().enumerate().take(i + 1) {
                    #[allow(clippy::cast_precision_loss)]
                    let diag = -(i as f64 + 1.0);
                    *v = if i == j { diag } else { -r(i) * r(j) };
                }
            }
            for (i, v) in b.iter_mut().enumerate() {
                *v = r(i);
            }
        }
        Measure::LegT => {
            for (i, row) in a.chunks_exact_mut(n.max(1)).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    let sign = if i < j && (j - i) % 2 == 1 { -1.0 } else { 1.0 };
                    *v = -0.5 * r(i) * r(j) * sign;
                }
            }
            for (i, v) in b.iter_mut().enumerate() {
                *v = 0.5 * r(i);
            }
        }
        Measure::LagT => {
            for (i, row) in a.chunks_exact_mut(n.max(1)).enumerate() {
                for (j, v) in row.iter_mut().enumerate().take(i + 1) {
                    *v = if i == j { -0.5 } else { -1.0 };
                }
            }
            b.fill(1.0);
        }
        Measure::FouT => {
            for (i, v) in b.iter_mut().enumerate() {
                *v = if i == 0 {
                    1.0
                } else if i % 2 == 0 {
                    core::f64::consts::SQRT_2
                } else {
                    0.0
                };
            }
            // d[k] (k = 0..n-1) = [0, 1, 0, 2, 0, 3, ..][k + 1]: frequency (k + 2)/2 at odd k + 1.
            #[allow(clippy::cast_precision_loss)]
            let d = |k: usize| {
                if (k + 1) % 2 == 1 {
                    ((k + 2) / 2) as f64
                } else {
                    0.0
                }
            };
            for (i, row) in a.chunks_exact_mut(n.max(1)).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    let bi = b.get(i).copied().unwrap_or(0.0);
                    let bj = b.get(j).copied().unwrap_or(0.0);
                    let mut x = -bi * bj;
                    if j == i + 1 {
                        x -= core::f64::consts::PI * d(i);
                    }
                    if i == j + 1 {
                        x += core::f64::consts::PI * d(j);
                    }
                    *v = x;
                }
            }
        }
    }
    Ok(())
}

/// f64 elements of workspace [`nplr_legs`] needs for `n` coefficients: `3 n^2 + 3 n`.
///
/// # Errors
/// [`Error::Overflow`] naming `n`.
pub fn nplr_workspace_len(n: usize) -> Result<usize> {
    sq(n)?
        .checked_mul(3)
        .and_then(|x| x.checked_add(n.checked_mul(3)?))
        .ok_or(Error::Overflow { arg: "n" })
}

/// Eigen-decomposition of a symmetric `n x n` matrix `m` (row-major, destroyed: its diagonal ends
/// up holding the eigenvalues) by cyclic Jacobi rotations; the eigenvectors go to the columns of
/// `q`.
#[allow(clippy::indexing_slicing)] // p, q, k < n and both matrices hold n * n values
fn jacobi(n: usize, m: &mut [f64], q: &mut [f64]) {
    q.fill(0.0);
    for i in 0..n {
        q[i * n + i] = 1.0;
    }
    let total: f64 = m.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..n {
            for r in p + 1..n {
                off += m[p * n + r] * m[p * n + r];
            }
        }
        if off <= 1e-32 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for r in p + 1..n {
                let apr = m[p * n + r];
                if apr == 0.0 {
                    continue;
                }
                let theta = (m[r * n + r] - m[p * n + p]) / (2.0 * apr);
                let t =
                    libm::copysign(1.0, theta) / (theta.abs() + libm::sqrt(theta * theta + 1.0));
                let c = 1.0 / libm::sqrt(t * t + 1.0);
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkr) = (m[k * n + p], m[k * n + r]);
                    m[k * n + p] = c * mkp - s * mkr;
                    m[k * n + r] = s * mkp + c * mkr;
                }
                for k in 0..n {
                    let (mpk, mrk) = (m[p * n + k], m[r * n + k]);
                    m[p * n + k] = c * mpk - s * mrk;
                    m[r * n + k] = s * mpk + c * mrk;
                }
                for k in 0..n {
                    let (qkp, qkr) = (q[k * n + p], q[k * n + r]);
                    q[k * n + p] = c * qkp - s * qkr;
                    q[k * n + r] = s * qkp + c * qkr;
                }
            }
        }
    }
}

/// The normal-plus-low-rank form of HiPPO-LegS with `n` (even) coefficients, keeping one mode of
/// each conjugate pair (the official code's halving, with the `+i omega` member):
/// `lambda [n/2]` (`-1/2 + i omega`, `omega` descending), `p = V^* P [n/2]`, `b = V^* B [n/2]`,
/// and `v [n, n/2]` (row-major), so that `A = 2 Re(V diag(lambda) V^*) - P P^T`.
///
/// The skew-symmetric part `K = A + P P^T + I/2` is diagonalised through the symmetric
/// `K^T K = V_r diag(omega^2) V_r^T` (Jacobi): for each pair, `u` an eigenvector and
/// `w = K u/omega`, `(u - i w)/sqrt 2` is the eigenvector of `K` for `+i omega`.
///
/// # Errors
/// [`Error::Param`] naming `n` when it is odd or 0; [`Error::Shape`] naming an output or `ws` of
/// the wrong length.
#[allow(clippy::indexing_slicing)] // all indices below n (or n/2), matrices of n * n values
pub fn nplr_legs(
    n: usize,
    lambda: &mut [Complex],
    p: &mut [Complex],
    b: &mut [Complex],
    v: &mut [Complex],
    ws: &mut [f64],
) -> Result<()> {
    if n == 0 || n % 2 != 0 {
        return Err(Error::Param {
            arg: "n",
            reason: "the NPLR form needs an even, positive n",
        });
    }
    let half = n / 2;
    for (arg, len) in [("lambda", lambda.len()), ("p", p.len()), ("b", b.len())] {
        if len != half {
            return Err(shape_err(arg, len, half));
        }
    }
    if v.len() != n * half {
        return Err(shape_err("v", v.len(), n * half));
    }
    let need = nplr_workspace_len(n)?;
    if ws.len() < need {
        return Err(shape_err("ws", ws.len(), need));
    }
    let nn = n * n;
    let (k, rest) = ws.split_at_mut(nn);
    let (m, rest) = rest.split_at_mut(nn);
    let (q, rest) = rest.split_at_mut(nn);
    let (bv, rest) = rest.split_at_mut(n);
    let (pv, rest) = rest.split_at_mut(n);
    let (tmp, _) = rest.split_at_mut(n);
    transition(Measure::LegS, n, k, bv)?;
    #[allow(clippy::cast_precision_loss)]
    for (i, x) in pv.iter_mut().enumerate() {
        *x = libm::sqrt(i as f64 + 0.5);
    }
    // K = A + P P^T + I/2 (skew-symmetric).
    for i in 0..n {
        for j in 0..n {
            k[i * n + j] += pv[i] * pv[j];
        }
        k[i * n + i] += 0.5;
    }
    // M = K^T K.
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] = (0..n).map(|r| k[r * n + i] * k[r * n + j]).sum();
        }
    }
    jacobi(n, m, q);
    // Eigenvalues (the diagonal) in descending order: pairs (2j, 2j + 1) share omega^2.
    // Selection sort of the diagonal, moving q's columns along (no allocation).
    for i in 0..n {
        let best = (i..n)
            .max_by(|&x, &y| m[x * n + x].total_cmp(&m[y * n + y]))
            .unwrap_or(i);
        if best != i {
            m.swap(i * n + i, best * n + best);
            for r in 0..n {
                q.swap(r * n + i, r * n + best);
            }
        }
    }
    for j in 0..half {
        let col = 2 * j;
        let omega = libm::sqrt(m[col * n + col].max(0.0));
        // u = column `col` of q; w = K u / omega.
        for i in 0..n {
            tmp[i] = if omega > 0.0 {
                (0..n).map(|r| k[i * n + r] * q[r * n + col]).sum::<f64>() / omega
            } else {
                0.0
            };
        }
        let s = core::f64::consts::FRAC_1_SQRT_2;
        let (mut pj, mut bj) = (Complex::ZERO, Complex::ZERO);
        for i in 0..n {
            let e = Complex::new(q[i * n + col] * s, -tmp[i] * s);
            v[i * half + j] = e;
            pj += e.conj().scale(pv[i]);
            bj += e.conj().scale(bv[i]);
        }
        lambda[j] = Complex::new(-0.5, omega);
        p[j] = pj;
        b[j] = bj;
    }
    Ok(())
}

/// One step of the HiPPO-LegS online projection (HiPPO eq. 7, `x' = (A x + B f)/t`), discretised
/// by the bilinear rule with unit step at time `t = k + 1` as in the official code:
/// `x <- (I - A/(2t))^{-1} ((I + A/(2t)) x + B f/t)`. `a` is LegS's lower-triangular matrix (from
/// [`transition`]), so the solve is a forward substitution; `tmp` holds `n` values of scratch.
/// After `L` steps, `x` holds the Legendre coefficients of the history on `[0, L]`, sample `k`
/// standing at time `k + 1`, i.e. at `2 (k + 1)/L - 1` on `[-1, 1]` ([`legendre_eval`]
/// reconstructs it).
///
/// # Errors
/// [`Error::Shape`] naming `a`, `b` or `tmp`; [`Error::Param`] naming `f` when it is not finite.
#[allow(clippy::indexing_slicing)] // i, j < n; a holds n * n values, the others n (checked)
pub fn legs_step(
    a: &[f64],
    b: &[f64],
    k: usize,
    x: &mut [f64],
    f: f64,
    tmp: &mut [f64],
) -> Result<()> {
    let n = x.len();
    if a.len() != sq(n)? {
        return Err(shape_err("a", a.len(), sq(n)?));
    }
    if b.len() != n {
        return Err(shape_err("b", b.len(), n));
    }
    if tmp.len() != n {
        return Err(shape_err("tmp", tmp.len(), n));
    }
    if !f.is_finite() {
        return Err(Error::Param {
            arg: "f",
            reason: "must be finite",
        });
    }
    #[allow(clippy::cast_precision_loss)]
    let t = (k as f64) + 1.0;
    let h = 0.5 / t;
    for i in 0..n {
        let ax: f64 = (0..=i).map(|j| a[i * n + j] * x[j]).sum();
        tmp[i] = x[i] + h * ax + b[i] * f / t;
    }
    for i in 0..n {
        let s: f64 = (0..i).map(|j| -h * a[i * n + j] * x[j]).sum();
        x[i] = (tmp[i] - s) / (1.0 - h * a[i * n + i]);
    }
    Ok(())
}

/// `sum_n c_n sqrt(2n + 1) P_n(x)`: the function whose LegS coefficients are `c`, at
/// `x in [-1, 1]` (Legendre polynomials by their three-term recurrence).
pub fn legendre_eval(c: &[f64], x: f64) -> f64 {
    let (mut p0, mut p1) = (1.0, x);
    let mut s = 0.0;
    for (n, &cn) in c.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let nf = n as f64;
        let pn = if n == 0 { p0 } else { p1 };
        s += cn * libm::sqrt(2.0 * nf + 1.0) * pn;
        if n >= 1 {
            let p2 = ((2.0 * nf + 1.0) * x * p1 - nf * p0) / (nf + 1.0);
            p0 = p1;
            p1 = p2;
        }
    }
    s
}
