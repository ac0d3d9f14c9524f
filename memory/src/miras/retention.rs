//! Retention gates: how a Miras memory keeps its past (Miras §5.2), applied with the step of the
//! learning rule, per weight matrix.

use seqcore::{Error, Real, Result};

use super::architecture::Architecture;
use super::bias::pow_abs;

/// The retention of a Miras memory. `keep` below is the per-token keep factor `alpha_t`
/// ([`super::Gates::keep`], 1 when absent); `d` is the learning rule's step (`-eta_t grad`, or
/// the momentum `S_t`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Retention {
    /// `P_t = P_{t-1} + d` (the keep gate is ignored).
    None,
    /// `P_t = alpha_t P_{t-1} + d` (Miras' decoupled local retention; Titans Eq. 13 with
    /// `alpha_t = 1 - forget_t`; Gated DeltaNet, RetNet).
    ForgetGate,
    /// L2 (weight decay): `P_t = alpha_t (1 - lambda) P_{t-1} + d`, `lambda` in `[0, 1]` (the
    /// global retention `||W||^2` of Miras §3, in closed form).
    WeightDecay {
        /// The decay per token.
        lambda: f64,
    },
    /// Elastic net: `P_t = soft(alpha_t P_{t-1} + d, lambda)`, soft-thresholding
    /// `sign(x) max(|x| - lambda, 0)` (the proximal step of an L1 retention, Miras §5.2).
    ElasticNet {
        /// The L1 threshold `lambda >= 0`.
        lambda: f64,
    },
    /// Lq normalisation (Moneta, Miras Eq. 24): `A_t = alpha_t A_{t-1} + d`,
    /// `W_t = A_t / max(||A_t||_q^(q-2), eps)` with the entrywise q-norm of each weight matrix,
    /// `eps = 1e-12` (guarding `A = 0`). `q >= 2`.
    Lq {
        /// The exponent `q >= 2`.
        q: f64,
    },
    /// KL retention (Memora, Miras Eq. 27, in the logit form of the notes §5): `Z_t = alpha_t
    /// Z_{t-1} + d`, each row of each weight matrix `W_t = scale * softmax(Z_t)`.
    Kl {
        /// The row sum `c > 0`.
        scale: f64,
    },
}

const EPS: f64 = 1e-12;

impl Retention {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::Param`] naming `lambda` (outside `[0, 1]` for weight decay, negative for the
    /// elastic net, or not finite), `q` (below 2 or not finite), `scale` (not positive or not
    /// finite).
    pub fn validate(&self) -> Result<()> {
        let bad = |arg, reason| Err(Error::Param { arg, reason });
        match *self {
            Retention::WeightDecay { lambda } if !(0.0..=1.0).contains(&lambda) => {
                bad("lambda", "must lie in [0, 1]")
            }
            Retention::ElasticNet { lambda } if !(lambda >= 0.0 && lambda.is_finite()) => {
                bad("lambda", "must be finite and non-negative")
            }
            Retention::Lq { q } if !(q >= 2.0 && q.is_finite()) => {
                bad("q", "must be finite and at least 2")
            }
            Retention::Kl { scale } if !(scale > 0.0 && scale.is_finite()) => {
                bad("scale", "must be finite and positive")
            }
            _ => Ok(()),
        }
    }

    fn has_aux(&self) -> bool {
        matches!(self, Retention::Lq { .. } | Retention::Kl { .. })
    }

    /// The parameters of one weight matrix from its retention state (Lq: `A / ||A||^(q-2)`; KL:
    /// `scale * softmax` of each row); `cols` is the row length.
    fn project<R: Real>(&self, aux: &[R], params: &mut [R], cols: usize) {
        match *self {
            Retention::Lq { q } => {
                let denom = if q == 2.0 {
                    R::one()
                } else {
                    let mut s = R::zero();
                    for &a in aux {
                        s += pow_abs(a, q);
                    }
                    let norm = pow_abs(s, 1.0 / q);
                    let d = pow_abs(norm, q - 2.0);
                    if d > R::lit(EPS) { d } else { R::lit(EPS) }
                };
                for (p, &a) in params.iter_mut().zip(aux) {
                    *p = a / denom;
                }
            }
            Retention::Kl { scale } => {
                for (pr, zr) in params.chunks_mut(cols.max(1)).zip(aux.chunks(cols.max(1))) {
                    let m = zr.iter().copied().fold(
                        R::neg_infinity(),
                        |a, b| {
                            if b > a { b } else { a }
                        },
                    );
                    let mut s = R::zero();
                    for (p, &z) in pr.iter_mut().zip(zr) {
                        *p = (z - m).exp();
                        s += *p;
                    }
                    for p in pr.iter_mut() {
                        *p = R::lit(scale) * *p / s;
                    }
                }
            }
            _ => params.copy_from_slice(aux),
        }
    }

    /// Sets the retention state of one weight matrix (`aux`, holding `P_0` on entry) so that it
    /// gives `P_0` back (see [`super::Miras::init`]).
    pub(crate) fn init_aux<R: Real>(&self, aux: &mut [R], _cols: usize) -> Result<()> {
        match *self {
            Retention::Lq { q } if q != 2.0 && q != 3.0 => {
                let mut s = R::zero();
                for &a in aux.iter() {
                    s += pow_abs(a, q);
                }
                let norm = pow_abs(s, 1.0 / q);
                if norm > R::zero() {
                    // phi(c W) = W for c = ||W||^((q-2)/(3-q)).
                    let c = (R::lit((q - 2.0) / (3.0 - q)) * norm.ln()).exp();
                    aux.iter_mut().for_each(|a| *a *= c);
                }
                Ok(())
            }
            Retention::Kl { scale } => {
                for a in aux.iter_mut() {
                    if a.is_nan() || *a <= R::zero() {
                        return Err(Error::Param {
                            arg: "p0",
                            reason: "must be positive for the KL retention",
                        });
                    }
                    *a = (*a / R::lit(scale)).ln();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Recomputes every weight matrix's parameters from the retention state (after
    /// [`Retention::init_aux`]).
    pub(crate) fn sync<R: Real>(
        &self,
        arch: Architecture,
        dk: usize,
        dv: usize,
        params: &mut [R],
        aux: &[R],
    ) -> Result<()> {
        if !self.has_aux() {
            return Ok(());
        }
        for (rows, cols, off) in arch.blocks(dk, dv) {
            let r = off..off + rows * cols;
            let (p, a) = (
                params
                    .get_mut(r.clone())
                    .ok_or(Error::Overflow { arg: "state" })?,
                aux.get(r).ok_or(Error::Overflow { arg: "state" })?,
            );
            self.project(a, p, cols);
        }
        Ok(())
    }

    /// The keep gate alone: `P <- alpha P` (through the retention state for Lq and KL).
    ///
    /// # Errors
    /// [`Error::Overflow`] when a slice is shorter than the shapes say.
    pub(crate) fn retain<R: Real>(
        &self,
        arch: Architecture,
        dk: usize,
        dv: usize,
        keep: R,
        params: &mut [R],
        aux: &mut [R],
    ) -> Result<()> {
        match *self {
            Retention::None => Ok(()),
            Retention::Lq { .. } | Retention::Kl { .. } => {
                aux.iter_mut().for_each(|a| *a = keep * *a);
                self.sync(arch, dk, dv, params, aux)
            }
            _ => {
                params.iter_mut().for_each(|p| *p = keep * *p);
                Ok(())
            }
        }
    }

    /// `P_t = Ret(P_{t-1}) + d` as the variant says.
    ///
    /// # Errors
    /// [`Error::Overflow`] when a slice is shorter than the shapes say.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update<R: Real>(
        &self,
        arch: Architecture,
        dk: usize,
        dv: usize,
        keep: R,
        d: &[R],
        params: &mut [R],
        aux: &mut [R],
    ) -> Result<()> {
        match *self {
            Retention::None => {
                for (p, &x) in params.iter_mut().zip(d) {
                    *p += x;
                }
                Ok(())
            }
            Retention::ForgetGate => {
                for (p, &x) in params.iter_mut().zip(d) {
                    *p = keep * *p + x;
                }
                Ok(())
            }
            Retention::WeightDecay { lambda } => {
                let f = keep * (R::one() - R::lit(lambda));
                for (p, &x) in params.iter_mut().zip(d) {
                    *p = f * *p + x;
                }
                Ok(())
            }
            Retention::ElasticNet { lambda } => {
                let l = R::lit(lambda);
                for (p, &x) in params.iter_mut().zip(d) {
                    let y = keep * *p + x;
                    let m = y.abs() - l;
                    *p = if m > R::zero() {
                        if y < R::zero() { -m } else { m }
                    } else {
                        R::zero()
                    };
                }
                Ok(())
            }
            Retention::Lq { .. } | Retention::Kl { .. } => {
                for (a, &x) in aux.iter_mut().zip(d) {
                    *a = keep * *a + x;
                }
                self.sync(arch, dk, dv, params, aux)
            }
        }
    }
}
