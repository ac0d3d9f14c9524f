//! The tolerance table: how far a backend running in element type `T` may be from the f64
//! reference, per element and per tensor. Every bound is a rounding-error bound derived from the
//! computation (Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 3-4), never a number
//! found by trying.
//!
//! Notation: `u` is the unit round-off of `T` (the output's storage rounding), `ua` that of its
//! accumulation type, `n` the reduction length, `floor` the absolute floor of `T` (below).
//!
//! | kernel | per-element bound `\|a - b\| <=` | anchor |
//! | --- | --- | --- |
//! | `unary` | `floor + (2u + 4 ua k(x)) \|b\|` (`+ 2 ua \|c\|` for `add_scalar(c)`, whose constant is rounded to `Acc`), `k = 1`, GELU `1 + x^2`, GELU-tanh `1 + x^2 + \|x\|^3/8` (their condition numbers) | PyTorch `assert_close` f32 `rtol 1.3e-6` ≈ 11u; ours is ≈ 6u for `k = 1` |
//! | `relu`, `abs`, `neg`, `max`, `min` reductions, `cast`, `top_k` | exact | ggml's exact classes |
//! | `binary` | `floor + (2u + 4 ua) \|b\|` | one rounding in `Acc`, one on store |
//! | `softmax` | `floor + (2u + ua (8 sqrt n + 2\|d_j\| + 2 mask_j)) \|b\|`, `d_j = z_j - max` | A2 of the numerics notes: `4 sqrt(n) eps` |
//! | `log_softmax` | `floor + ua (8 sqrt n + 2\|d_j\| + 2\|ln s\| + 2 mask_j) + 2u \|b\|` | same |
//! | `gemm` | `floor + (2k + 4) ua \|alpha\| (\|A\|\|B\|)_ij + 4 ua \|beta c_ij\| + 2u \|b\|` | `gamma_k` bound of a dot product |
//! | `reduce` sum / mean | `floor + (n + 3) ua sum\|x\| (/ n) + 2u \|b\|` | `gamma_n` |
//! | `reduce` logsumexp | `floor + ua (2n + 4 + 2\|max\| + 2w) + 2u \|b\|`, `w` the softmax-weighted mean of `\|d_j\|` | |
//! | `reduce` l2norm | `floor + (2u + (n + 6) ua) \|b\|` | |
//!
//! Here `mask_j = |x_j| + |mask_j| + |max|` when an additive mask is present (the rounding of
//! `x + mask`), else 0.
//!
//! `floor` is the smallest positive normal of `T` for f64, f32 and bf16 (so a backend may flush
//! subnormal results to zero, as GPUs do), and `2^-24`, the spacing of f16's subnormals, for f16
//! (whose subnormals are ordinary f32 values during the computation, so nothing may flush them).
//!
//! Per tensor, the normalised error `sum((a-b)^2)/sum(b^2)` is reported, and must stay below a
//! ceiling per type taken from ggml's `test-backend-ops` limits: 1e-6 for f32 (its softmax limit),
//! 5e-5 for f16 (its fused f16 limit), 5e-3 for bf16, and 1e-20 for f64 (by analogy, a relative RMS
//! error of 1e-10). The per-element bounds are the tight criterion; the ceiling is a backstop for
//! kernels whose per-element bounds are wide by nature (log-softmax beside huge logits).
//!
//! Inputs whose partial sums overflow the accumulation type are outside every backend's contract
//! (the result then depends on the summation order), so the case generators keep sums in range;
//! single huge values (1e4, 3e38) are still generated wherever a kernel must cope with them.
//!
use seqcore::{DType, Element, Unary};

use crate::compare::Bound;

/// Unit round-off of `T`.
pub fn u<T: Element>() -> f64 {
    T::DTYPE.unit_roundoff()
}

/// Unit round-off of `T`'s accumulation type.
pub fn ua<T: Element>() -> f64 {
    T::DTYPE.accumulator().unit_roundoff()
}

/// The absolute floor of `T` (see the module docs).
pub fn floor<T: Element>() -> f64 {
    match T::DTYPE {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 5.960_464_477_539_063e-8, // 2^-24
        _ => f64::from(f32::MIN_POSITIVE),      // 2^-126, also bf16's smallest normal
    }
}

/// The normalised-error ceiling of `T` (see the module docs).
pub fn nmse_max<T: Element>() -> f64 {
    match T::DTYPE {
        DType::F64 => 1e-20,
        DType::F32 => 1e-6,
        DType::F16 => 5e-5,
        _ => 5e-3,
    }
}

/// True for maps whose result every backend must reproduce exactly.
pub fn unary_is_exact(op: Unary) -> bool {
    matches!(op, Unary::Relu | Unary::Abs | Unary::Neg)
}

/// Per-element bound of `unary` at input `x`.
pub fn unary<T: Element>(op: Unary, x: f64) -> Bound {
    if unary_is_exact(op) {
        return Bound::EXACT;
    }
    let k = match op {
        Unary::Gelu => 1.0 + x * x,
        Unary::GeluTanh => 1.0 + x * x + x.abs().powi(3) / 8.0,
        _ => 1.0,
    };
    // `AddScalar(c)` rounds `c` to the accumulation type (as PyTorch does with a Python scalar):
    // an absolute error of up to `ua |c|` that cancellation can leave as the whole result.
    let constant = match op {
        Unary::AddScalar(c) => 2.0 * ua::<T>() * c.abs(),
        _ => 0.0,
    };
    Bound {
        atol: floor::<T>() + constant,
        rtol: 2.0 * u::<T>() + 4.0 * ua::<T>() * k,
    }
}

/// Per-element bound of `binary`.
pub fn binary<T: Element>() -> Bound {
    Bound {
        atol: floor::<T>(),
        rtol: 2.0 * u::<T>() + 4.0 * ua::<T>(),
    }
}

/// Per-element bound of softmax / log-softmax for one element: `d` is `z_j - max`, `log_sum` is
/// `ln sum exp(z - max)`, `mask_term` as in the module docs.
pub fn softmax<T: Element>(log: bool, n: usize, d: f64, log_sum: f64, mask_term: f64) -> Bound {
    let base = 8.0 * (n as f64).sqrt() + 2.0 * d.abs() + 2.0 * mask_term;
    if log {
        Bound {
            atol: floor::<T>() + ua::<T>() * (base + 2.0 * log_sum.abs()),
            rtol: 2.0 * u::<T>(),
        }
    } else {
        Bound {
            atol: floor::<T>(),
            rtol: 2.0 * u::<T>() + ua::<T>() * base,
        }
    }
}

/// Per-element bound of `gemm`: `abs_dot = sum_k |a_ik| |b_kj|`, `beta_c = |beta c_ij|`.
pub fn gemm<T: Element>(k: usize, alpha: f64, abs_dot: f64, beta_c: f64) -> Bound {
    let ua = ua::<T>();
    Bound {
        atol: floor::<T>()
            + (2.0 * k as f64 + 4.0) * ua * alpha.abs() * abs_dot
            + 4.0 * ua * beta_c,
        rtol: 2.0 * u::<T>(),
    }
}

/// Per-element bound of a reduction over the row `x` (f64 values as the backend saw them).
pub fn reduce<T: Element>(op: seqcore::Reduce, x: &[f64]) -> Bound {
    use seqcore::Reduce;
    let (ua, u, n) = (ua::<T>(), u::<T>(), x.len() as f64);
    let abs_sum: f64 = x.iter().map(|v| v.abs()).sum();
    if op.is_exact() {
        return Bound::EXACT;
    }
    match op {
        Reduce::Sum => Bound {
            atol: floor::<T>() + (n + 3.0) * ua * abs_sum,
            rtol: 2.0 * u,
        },
        Reduce::Mean => Bound {
            atol: floor::<T>() + (n + 3.0) * ua * abs_sum / n.max(1.0),
            rtol: 2.0 * u,
        },
        Reduce::LogSumExp => {
            let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let (mut s, mut w) = (0.0, 0.0);
            if m.is_finite() {
                for &v in x {
                    let e = (v - m).exp();
                    if e > 0.0 {
                        s += e;
                        w += e * (v - m).abs();
                    }
                }
            }
            let w = if s > 0.0 { w / s } else { 0.0 };
            Bound {
                atol: floor::<T>() + ua * (2.0 * n + 4.0 + 2.0 * m.abs().min(f64::MAX) + 2.0 * w),
                rtol: 2.0 * u,
            }
        }
        Reduce::L2Norm => Bound {
            atol: floor::<T>(),
            rtol: 2.0 * u + (n + 6.0) * ua,
        },
        // A reduction seqcore adds later is held to exact equality until its bound is derived
        // here: it fails loudly rather than passing under a guessed tolerance.
        _ => Bound::EXACT,
    }
}
