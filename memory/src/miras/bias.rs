//! Attentional biases: the inner objective `l(M; k, v)` of a Miras memory (Miras §5.1) and its
//! gradient with respect to the memory's output `y = M(k)`, written out analytically.

use seqcore::{Error, Real, Result};

/// The inner objective, as a function of the memory's output `y = M(k)` and the value `v`
/// (`e = y - v`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum AttentionalBias {
    /// `l = -<y, v>` (Miras §3, the bias of linear attention); `dl/dy = -v`.
    DotProduct,
    /// `l = ||e||_2^2 / 2` (DeltaNet; Titans Eq. 12 without its factor 2, which the learning rate
    /// absorbs); `dl/dy = e`.
    L2,
    /// `l = ||e||_p^p` (Miras Eq. 10); `dl/dy = p sign(e) |e|^(p-1)` (Eq. 11). `p >= 1`.
    Lp {
        /// The exponent `p >= 1`.
        p: f64,
    },
    /// Yaad's Huber mixture (Miras Eq. 16 / 26): `dl/dy = e` when `||e||_2 <= delta`, else
    /// `delta sign(e)` (the L1 step scaled by `delta`). `delta > 0`.
    Huber {
        /// The threshold `delta > 0`.
        delta: f64,
    },
}

/// `|x|^y` for `x` of any sign and `y >= 0`, exact for the small integer exponents.
pub(crate) fn pow_abs<R: Real>(x: R, y: f64) -> R {
    let a = x.abs();
    if y == 0.0 {
        R::one()
    } else if y == 1.0 {
        a
    } else if y == 2.0 {
        a * a
    } else if y == 3.0 {
        a * a * a
    } else if a == R::zero() {
        R::zero()
    } else {
        (R::lit(y) * a.ln()).exp()
    }
}

fn sign<R: Real>(x: R) -> R {
    if x > R::zero() {
        R::one()
    } else if x < R::zero() {
        -R::one()
    } else {
        R::zero()
    }
}

impl AttentionalBias {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::Param`] naming `p` (below 1, or not finite) or `delta` (not positive, or NaN).
    pub fn validate(&self) -> Result<()> {
        match *self {
            AttentionalBias::Lp { p } if !(p >= 1.0 && p.is_finite()) => Err(Error::Param {
                arg: "p",
                reason: "must be finite and at least 1",
            }),
            AttentionalBias::Huber { delta } if delta.is_nan() || delta <= 0.0 => {
                Err(Error::Param {
                    arg: "delta",
                    reason: "must be positive",
                })
            }
            _ => Ok(()),
        }
    }

    /// The objective `l(y; v)` (for checks by finite differences).
    pub fn loss<R: Real>(&self, y: &[R], v: &[R]) -> R {
        let mut s = R::zero();
        match *self {
            AttentionalBias::DotProduct => {
                for (&a, &b) in y.iter().zip(v) {
                    s += -(a * b);
                }
            }
            AttentionalBias::L2 => {
                for (&a, &b) in y.iter().zip(v) {
                    s += (a - b) * (a - b);
                }
                s *= R::lit(0.5);
            }
            AttentionalBias::Lp { p } => {
                for (&a, &b) in y.iter().zip(v) {
                    s += pow_abs(a - b, p);
                }
            }
            AttentionalBias::Huber { delta } => {
                let d = R::lit(delta);
                let mut n2 = R::zero();
                for (&a, &b) in y.iter().zip(v) {
                    n2 += (a - b) * (a - b);
                }
                if n2.sqrt() <= d {
                    s = n2 * R::lit(0.5);
                } else {
                    for (&a, &b) in y.iter().zip(v) {
                        s += d * (a - b).abs();
                    }
                }
            }
        }
        s
    }

    /// Replaces `y` (the memory's output) by `dl/dy`.
    pub fn grad_output<R: Real>(&self, y: &mut [R], v: &[R]) {
        match *self {
            AttentionalBias::DotProduct => {
                for (a, &b) in y.iter_mut().zip(v) {
                    *a = -b;
                }
            }
            AttentionalBias::L2 => {
                for (a, &b) in y.iter_mut().zip(v) {
                    *a = *a - b;
                }
            }
            AttentionalBias::Lp { p } => {
                let pr = R::lit(p);
                for (a, &b) in y.iter_mut().zip(v) {
                    let e = *a - b;
                    *a = pr * sign(e) * pow_abs(e, p - 1.0);
                }
            }
            AttentionalBias::Huber { delta } => {
                let d = R::lit(delta);
                let mut n2 = R::zero();
                for (&a, &b) in y.iter().zip(v) {
                    n2 += (a - b) * (a - b);
                }
                let small = n2.sqrt() <= d;
                for (a, &b) in y.iter_mut().zip(v) {
                    let e = *a - b;
                    *a = if small { e } else { d * sign(e) };
                }
            }
        }
    }
}
