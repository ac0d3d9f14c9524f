//! Memory architectures: the function class of a Miras memory (Miras §3; Titans §3.1), its
//! forward pass, and the gradient of an attentional bias with respect to its parameters.

use seqcore::{Error, Real, Result};

use super::bias::AttentionalBias;

/// The memory's function class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Architecture {
    /// `M(x) = W x`, `W [Dv, Dk]` (a linear memory; Titans with `L_M = 1`).
    Matrix,
    /// `M(x) = x + W1 gelu(W0 x)`, `W0 [hidden, Dk]`, `W1 [Dv, hidden]`, `Dv = Dk` (Titans'
    /// deep memory with `L_M = 2`, with the residual of Miras §5.3; parameters stored `W0` then
    /// `W1`, row-major).
    Mlp {
        /// Hidden features (Miras uses 4x the width).
        hidden: usize,
    },
}

/// `gelu(x) = x Phi(x)` (exact, with `erfc`).
fn gelu<R: Real>(x: R) -> R {
    R::lit(0.5) * x * (-x * R::lit(core::f64::consts::FRAC_1_SQRT_2)).erfc()
}

/// `gelu'(x) = Phi(x) + x phi(x)`.
fn gelu_prime<R: Real>(x: R) -> R {
    let cdf = R::lit(0.5) * (-x * R::lit(core::f64::consts::FRAC_1_SQRT_2)).erfc();
    let pdf = (-(x * x) * R::lit(0.5)).exp() * R::lit(0.398_942_280_401_432_7);
    cdf + x * pdf
}

fn oob() -> Error {
    Error::Overflow { arg: "params" }
}

impl Architecture {
    /// Checks the architecture.
    ///
    /// # Errors
    /// [`Error::Param`] naming `hidden` when it is 0.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Architecture::Mlp { hidden: 0 } => Err(Error::Param {
                arg: "hidden",
                reason: "must be at least 1",
            }),
            _ => Ok(()),
        }
    }

    /// Parameters for `dk` key and `dv` value features.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `dv` when the MLP's residual needs `dv == dk`;
    /// [`Error::Overflow`].
    pub fn params_len(&self, dk: usize, dv: usize) -> Result<usize> {
        let ov = Error::Overflow { arg: "dk" };
        match *self {
            Architecture::Matrix => dv.checked_mul(dk).ok_or(ov),
            Architecture::Mlp { hidden } => {
                if dv != dk {
                    return Err(Error::Shape {
                        arg: "dv",
                        axis: 0,
                        got: dv,
                        expected: dk,
                        shape: seqcore::Dims::new(&[dv]),
                    });
                }
                hidden
                    .checked_mul(dk)
                    .and_then(|a| a.checked_mul(2))
                    .ok_or(ov)
            }
        }
    }

    /// Scratch elements of a forward and a gradient: `dv + 3 hidden`.
    ///
    /// # Errors
    /// [`Error::Overflow`].
    pub fn scratch_len(&self, _dk: usize, dv: usize) -> Result<usize> {
        let h = match *self {
            Architecture::Matrix => 0,
            Architecture::Mlp { hidden } => hidden,
        };
        h.checked_mul(3)
            .and_then(|x| x.checked_add(dv))
            .ok_or(Error::Overflow { arg: "hidden" })
    }

    /// The weight matrices as `(rows, cols, offset)` into the parameters.
    pub fn blocks(&self, dk: usize, dv: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let (b, n) = match *self {
            Architecture::Matrix => ([(dv, dk, 0), (0, 0, 0)], 1),
            Architecture::Mlp { hidden } => ([(hidden, dk, 0), (dv, hidden, hidden * dk)], 2),
        };
        b.into_iter().take(n)
    }

    /// `out = M(x)`; `scratch` as [`Architecture::scratch_len`].
    ///
    /// # Errors
    /// [`Error::Overflow`] when a slice is shorter than the shapes say (checked by the callers).
    pub fn forward<R: Real>(
        &self,
        dk: usize,
        dv: usize,
        params: &[R],
        x: &[R],
        out: &mut [R],
        scratch: &mut [R],
    ) -> Result<()> {
        match *self {
            Architecture::Matrix => {
                for (i, o) in out.iter_mut().enumerate().take(dv) {
                    let w = params.get(i * dk..(i + 1) * dk).ok_or_else(oob)?;
                    *o = dot(w, x);
                }
                Ok(())
            }
            Architecture::Mlp { hidden } => {
                let (z, rest) = scratch.split_at_mut(hidden.min(scratch.len()));
                let a = rest.get_mut(..hidden).ok_or_else(oob)?;
                let (w0, w1) = params.split_at(hidden * dk);
                for (j, (zj, aj)) in z.iter_mut().zip(a.iter_mut()).enumerate() {
                    *zj = dot(w0.get(j * dk..(j + 1) * dk).ok_or_else(oob)?, x);
                    *aj = gelu(*zj);
                }
                for (i, o) in out.iter_mut().enumerate().take(dv) {
                    let w = w1.get(i * hidden..(i + 1) * hidden).ok_or_else(oob)?;
                    *o = x.get(i).copied().ok_or_else(oob)? + dot(w, a);
                }
                Ok(())
            }
        }
    }

    /// `grad = d l(M(k); v) / d params` (the MLP's two-layer backward written out: with
    /// `z = W0 k`, `a = gelu(z)`, `g = dl/dy`: `dW1 = g a^T`, `dW0 = ((W1^T g) * gelu'(z)) k^T`).
    ///
    /// # Errors
    /// [`Error::Overflow`] when a slice is shorter than the shapes say (checked by the callers).
    #[allow(clippy::too_many_arguments)]
    pub fn gradient<R: Real>(
        &self,
        bias: &AttentionalBias,
        dk: usize,
        dv: usize,
        params: &[R],
        k: &[R],
        v: &[R],
        grad: &mut [R],
        scratch: &mut [R],
    ) -> Result<()> {
        let (y, rest) = scratch.split_at_mut(dv.min(scratch.len()));
        self.forward(dk, dv, params, k, y, rest)?;
        bias.grad_output(y, v);
        match *self {
            Architecture::Matrix => {
                for (i, &gi) in y.iter().enumerate() {
                    let row = grad.get_mut(i * dk..(i + 1) * dk).ok_or_else(oob)?;
                    for (w, &kj) in row.iter_mut().zip(k) {
                        *w = gi * kj;
                    }
                }
                Ok(())
            }
            Architecture::Mlp { hidden } => {
                let (z, rest) = rest.split_at_mut(hidden.min(rest.len()));
                let (a, gh) = rest.split_at_mut(hidden.min(rest.len()));
                let w1 = params.get(hidden * dk..).ok_or_else(oob)?;
                let (g0, g1) = grad.split_at_mut(hidden * dk);
                // dW1 = g a^T, and gh = W1^T g.
                gh.iter_mut().for_each(|x| *x = R::zero());
                for (i, &gi) in y.iter().enumerate() {
                    let g1r = g1.get_mut(i * hidden..(i + 1) * hidden).ok_or_else(oob)?;
                    let w1r = w1.get(i * hidden..(i + 1) * hidden).ok_or_else(oob)?;
                    for ((gw, &aj), (h, &w)) in
                        g1r.iter_mut().zip(a.iter()).zip(gh.iter_mut().zip(w1r))
                    {
                        *gw = gi * aj;
                        *h += w * gi;
                    }
                }
                // dW0 = (gh * gelu'(z)) k^T.
                for (j, (&zj, &hj)) in z.iter().zip(gh.iter()).enumerate() {
                    let gz = hj * gelu_prime(zj);
                    let g0r = g0.get_mut(j * dk..(j + 1) * dk).ok_or_else(oob)?;
                    for (w, &kk) in g0r.iter_mut().zip(k) {
                        *w = gz * kk;
                    }
                }
                Ok(())
            }
        }
    }
}

fn dot<R: Real>(a: &[R], b: &[R]) -> R {
    let mut s = R::zero();
    for (&x, &y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}
