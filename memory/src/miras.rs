//! The Miras design space (Behrouz et al. 2025, "It's All Connected: A Journey Through
//! Test-Time Memorization, Attentional Bias, Retention, and Online Optimization", §3): a memory is
//! the product of four choices, each a type here.
//!
//! - [`Architecture`]: a matrix `W [Dv, Dk]` (`M(x) = W x`), or a two-layer MLP with a residual,
//!   `M(x) = x + W1 gelu(W0 x)` (Titans §3.1, Miras §5.3; the LayerNorm of Moneta's MLP is left
//!   out, see the README).
//! - [`AttentionalBias`], the inner objective `l(M; k, v)` (Miras §5.1): dot product
//!   `-<M(k), v>`, L2 `||M(k) - v||^2 / 2`, Lp `||M(k) - v||_p^p` (Eq. 10), Huber (Eq. 13-16,
//!   Yaad's Eq. 26 mixture).
//! - [`Retention`], how the past is kept (Miras §5.2): none, a forget (keep) gate `alpha_t`,
//!   weight decay, elastic net (soft-thresholding), Lq normalisation (Moneta, Eq. 24) and KL
//!   retention (Memora, Eq. 21/27: a softmax of the logits).
//! - [`LearningRule`], the optimiser of the inner objective: one step of gradient descent
//!   (Miras Eq. 5), gradient descent with momentum (Titans Eq. 9-10, 13-14: "surprise"), and the
//!   delta rule's closed form (the step taken at the retained state, Gated DeltaNet Eq. 10).
//!
//! Gradients are analytic (module [`bias`] for the objectives, [`architecture`] for the MLP's
//! two-layer backward). [`Miras::recurrent`] runs token by token; [`Miras::chunkwise`] takes every
//! token's gradient at the chunk-start parameters (Titans Eq. 16, Miras Eq. 28) and reads each
//! token after its own update; at chunk size 1 the two are the same computation.
//!
//! These memories run on host memory in the accumulation type (`f32` or `f64`): one head per
//! call, `q, k [L, Dk]`, `v [L, Dv]` row-major, and per-token gates ([`Gates`]).

pub mod architecture;
pub mod bias;
pub mod retention;

pub use architecture::Architecture;
pub use bias::AttentionalBias;
pub use retention::Retention;

use seqcore::{Error, Real, Result};

/// The optimiser of the inner objective.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum LearningRule {
    /// `P_t = ret(P_{t-1}) - eta_t grad l(P_{t-1})` (Miras Eq. 5, with retention).
    GradientDescent,
    /// Titans Eq. 13-14: `S_t = theta_t S_{t-1} - eta_t grad l(P_{t-1})`,
    /// `P_t = ret(P_{t-1}) + S_t` (`theta_t`, the past-surprise decay, is [`Gates::momentum`]).
    Momentum,
    /// The delta rule's closed form: retention first, then the step at the retained state,
    /// `P_t = P' - eta_t grad l(P')` with `P' = ret(P_{t-1})` (Gated DeltaNet Eq. 10 for the L2
    /// bias on a matrix).
    DeltaClosedForm,
}

/// The four choices of a Miras memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Miras {
    /// The memory's function class.
    pub architecture: Architecture,
    /// The inner objective.
    pub bias: AttentionalBias,
    /// The retention gate.
    pub retention: Retention,
    /// The optimiser.
    pub rule: LearningRule,
}

/// Per-token gates of one head, `[L]` each.
#[derive(Clone, Copy, Debug)]
pub struct Gates<'a, R> {
    /// Learning rate `eta_t >= 0` (DeltaNet's `beta_t`, Titans' `theta_t`).
    pub lr: &'a [R],
    /// Keep factor `alpha_t` in `[0, 1]` for [`Retention::ForgetGate`] and the Lq / KL
    /// retentions (Titans' forget gate is `1 - alpha_t`); `None` keeps everything (1).
    pub keep: Option<&'a [R]>,
    /// Momentum decay `theta_t` in `[0, 1]` for [`LearningRule::Momentum`]; `None` is 0.
    pub momentum: Option<&'a [R]>,
}

fn param(arg: &'static str, reason: &'static str) -> Error {
    Error::Param { arg, reason }
}

fn len_err(arg: &'static str, got: usize, expected: usize) -> Error {
    Error::Shape {
        arg,
        axis: 0,
        got,
        expected,
        shape: seqcore::Dims::new(&[got]),
    }
}

impl Miras {
    /// Linear attention as a Miras memory: matrix, dot-product bias, no retention, one step of
    /// gradient descent (Miras Table 1: `W_t = W_{t-1} + eta_t v_t k_t^T`).
    pub const fn linear_attention() -> Self {
        Miras {
            architecture: Architecture::Matrix,
            bias: AttentionalBias::DotProduct,
            retention: Retention::None,
            rule: LearningRule::GradientDescent,
        }
    }

    /// Decayed linear attention: dot-product bias with a forget gate (RetNet, Mamba-2).
    pub const fn decayed_linear_attention() -> Self {
        Miras {
            retention: Retention::ForgetGate,
            ..Miras::linear_attention()
        }
    }

    /// DeltaNet: matrix, L2 bias, no retention, gradient descent with `eta_t = beta_t`.
    pub const fn delta_net() -> Self {
        Miras {
            architecture: Architecture::Matrix,
            bias: AttentionalBias::L2,
            retention: Retention::None,
            rule: LearningRule::GradientDescent,
        }
    }

    /// Gated DeltaNet: matrix, L2 bias, forget gate, the step at the decayed state.
    pub const fn gated_delta_net() -> Self {
        Miras {
            retention: Retention::ForgetGate,
            rule: LearningRule::DeltaClosedForm,
            ..Miras::delta_net()
        }
    }

    /// Titans' long-term memory (Behrouz, Zhong & Mirrokni 2025, §3.1, Eq. 12-14): MLP memory, L2
    /// bias, forget gate (weight decay), gradient descent with momentum.
    pub const fn titans(hidden: usize) -> Self {
        Miras {
            architecture: Architecture::Mlp { hidden },
            bias: AttentionalBias::L2,
            retention: Retention::ForgetGate,
            rule: LearningRule::Momentum,
        }
    }

    /// Moneta (Miras §5.3, Eq. 24-25): MLP memory, Lp bias (`p = 3` in the paper's experiments),
    /// Lq normalisation (`q = 4`), gradient descent.
    pub const fn moneta(hidden: usize, p: f64, q: f64) -> Self {
        Miras {
            architecture: Architecture::Mlp { hidden },
            bias: AttentionalBias::Lp { p },
            retention: Retention::Lq { q },
            rule: LearningRule::GradientDescent,
        }
    }

    /// Yaad (Miras §5.3, Eq. 26): MLP memory, Huber bias (the Eq. 16 mixture with threshold
    /// `delta`), forget gate, gradient descent.
    pub const fn yaad(hidden: usize, delta: f64) -> Self {
        Miras {
            architecture: Architecture::Mlp { hidden },
            bias: AttentionalBias::Huber { delta },
            retention: Retention::ForgetGate,
            rule: LearningRule::GradientDescent,
        }
    }

    /// Memora (Miras §5.3, Eq. 27): MLP memory, L2 bias, KL retention (each weight matrix's rows
    /// are `scale * softmax` of logits), gradient descent.
    pub const fn memora(hidden: usize, scale: f64) -> Self {
        Miras {
            architecture: Architecture::Mlp { hidden },
            bias: AttentionalBias::L2,
            retention: Retention::Kl { scale },
            rule: LearningRule::GradientDescent,
        }
    }

    /// Checks the four choices.
    ///
    /// # Errors
    /// [`Error::Param`] naming `p` (`p < 1` or not finite), `delta` (Huber `delta <= 0` or NaN),
    /// `q` (`q < 2` or not finite), `lambda` (negative or not finite), `scale` (KL scale `<= 0`),
    /// `hidden` (0).
    pub fn validate(&self) -> Result<()> {
        self.architecture.validate()?;
        self.bias.validate()?;
        self.retention.validate()
    }

    /// The number of memory parameters for `dk` key and `dv` value features.
    ///
    /// # Errors
    /// [`Error::Param`] as [`Miras::validate`], [`Error::Shape`] naming `dv` when an MLP's
    /// residual needs `dv == dk`; [`Error::Overflow`].
    pub fn params_len(&self, dk: usize, dv: usize) -> Result<usize> {
        self.validate()?;
        self.architecture.params_len(dk, dv)
    }

    /// The state's length: the parameters `P`, then the momentum `S` (same length), then the
    /// retention's own state (Moneta's `A`, Memora's logits `Z`; same length).
    ///
    /// # Errors
    /// As [`Miras::params_len`].
    pub fn state_len(&self, dk: usize, dv: usize) -> Result<usize> {
        self.params_len(dk, dv)?
            .checked_mul(3)
            .ok_or(Error::Overflow { arg: "dk" })
    }

    /// Workspace elements for [`Miras::chunkwise`] with `chunk` tokens per chunk ([`Miras::recurrent`]
    /// needs it for `chunk = 1`).
    ///
    /// # Errors
    /// [`Error::Param`] naming `chunk` when it is 0; as [`Miras::params_len`].
    pub fn workspace_len(&self, chunk: usize, dk: usize, dv: usize) -> Result<usize> {
        if chunk == 0 {
            return Err(param("chunk", "must be at least 1"));
        }
        let p = self.params_len(dk, dv)?;
        let scratch = self.architecture.scratch_len(dk, dv)?;
        chunk
            .checked_mul(p)
            .and_then(|g| g.checked_add(scratch))
            .ok_or(Error::Overflow { arg: "chunk" })
    }

    /// Initialises `state` (length [`Miras::state_len`]) from the parameters `p0`: momentum 0, and
    /// the retention's own state such that the parameters it gives are `p0` (Moneta:
    /// `A_0 = p0 * ||p0||_q^{q-2}` per weight matrix, notes §8.6; Memora: `Z_0 = ln(p0 / scale)`,
    /// which needs `p0 > 0` with rows summing to `scale`, or it answers an error).
    ///
    /// # Errors
    /// Shape errors naming `p0` or `state`; [`Error::Param`] naming `p0` for Memora parameters
    /// that are not positive.
    pub fn init<R: Real>(&self, dk: usize, dv: usize, p0: &[R], state: &mut [R]) -> Result<()> {
        let p = self.params_len(dk, dv)?;
        if p0.len() != p {
            return Err(len_err("p0", p0.len(), p));
        }
        if state.len() != 3 * p {
            return Err(len_err("state", state.len(), 3 * p));
        }
        let (params, rest) = state.split_at_mut(p);
        let (mom, aux) = rest.split_at_mut(p);
        params.copy_from_slice(p0);
        mom.iter_mut().for_each(|m| *m = R::zero());
        aux.copy_from_slice(p0);
        for (rows, cols, off) in self.architecture.blocks(dk, dv) {
            let n = rows * cols;
            let block = aux
                .get_mut(off..off + n)
                .ok_or(Error::Overflow { arg: "state" })?;
            self.retention.init_aux(block, cols)?;
        }
        self.retention.sync(self.architecture, dk, dv, params, aux)
    }

    #[allow(clippy::too_many_arguments)] // the sequence, its gates, state, output and scratch
    fn check_run<R: Real>(
        &self,
        dk: usize,
        dv: usize,
        q: &[R],
        k: &[R],
        v: &[R],
        gates: &Gates<'_, R>,
        state: &[R],
        o: &[R],
    ) -> Result<usize> {
        let p = self.params_len(dk, dv)?;
        if dk == 0 {
            return Err(param("dk", "must be at least 1"));
        }
        let l = k.len() / dk;
        if k.len() != l * dk {
            return Err(len_err("k", k.len(), l * dk));
        }
        if q.len() != l * dk {
            return Err(len_err("q", q.len(), l * dk));
        }
        if v.len() != l * dv {
            return Err(len_err("v", v.len(), l * dv));
        }
        if o.len() != l * dv {
            return Err(len_err("o", o.len(), l * dv));
        }
        if state.len() != 3 * p {
            return Err(len_err("state", state.len(), 3 * p));
        }
        if gates.lr.len() != l {
            return Err(len_err("lr", gates.lr.len(), l));
        }
        if gates.lr.iter().any(|&x| !(x >= R::zero() && x.is_finite())) {
            return Err(param("lr", "must be finite and non-negative"));
        }
        for (arg, g) in [("keep", gates.keep), ("momentum", gates.momentum)] {
            if let Some(g) = g {
                if g.len() != l {
                    return Err(len_err(arg, g.len(), l));
                }
                if g.iter().any(|&x| !(x >= R::zero() && x <= R::one())) {
                    return Err(param(arg, "must lie in [0, 1]"));
                }
            }
        }
        Ok(l)
    }

    /// Token by token: for each token the gradient at the current parameters, the update, then
    /// the read `o_t = M_t(q_t)` (post-update, as DeltaNet and Miras §2). `state` (length
    /// [`Miras::state_len`], made by [`Miras::init`]) is read and left as it ends; `workspace`
    /// needs [`Miras::workspace_len`] with `chunk = 1`. Nothing allocates.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the slice whose length is wrong; [`Error::Param`] naming `lr`
    /// (NaN or negative), `keep` or `momentum` (outside `[0, 1]`), or a choice of
    /// [`Miras::validate`]; [`Error::Capacity`] naming `workspace`.
    #[allow(clippy::too_many_arguments)] // the sequence, its gates, state, output and scratch
    pub fn recurrent<R: Real>(
        &self,
        dk: usize,
        dv: usize,
        q: &[R],
        k: &[R],
        v: &[R],
        gates: Gates<'_, R>,
        state: &mut [R],
        o: &mut [R],
        workspace: &mut [R],
    ) -> Result<()> {
        self.chunkwise(1, dk, dv, q, k, v, gates, state, o, workspace)
    }

    /// Chunkwise: within each chunk of `chunk` tokens, every token's gradient is taken at the
    /// parameters of the chunk start (Titans Eq. 16, Miras Eq. 28: what makes the gradients of a
    /// chunk one batched computation); the updates and reads then run token by token with those
    /// frozen gradients. Equal to [`Miras::recurrent`] at `chunk = 1` (it is the same
    /// computation); for larger chunks it is a different model, as in the papers (the chunk size is
    /// part of the model's definition), except for memories whose gradient does not depend on the
    /// parameters (the dot-product bias on a matrix).
    ///
    /// # Errors
    /// As [`Miras::recurrent`]; [`Error::Param`] naming `chunk` when it is 0.
    #[allow(clippy::too_many_arguments)] // the sequence, its gates, state, output and scratch
    pub fn chunkwise<R: Real>(
        &self,
        chunk: usize,
        dk: usize,
        dv: usize,
        q: &[R],
        k: &[R],
        v: &[R],
        gates: Gates<'_, R>,
        state: &mut [R],
        o: &mut [R],
        workspace: &mut [R],
    ) -> Result<()> {
        let need = self.workspace_len(chunk, dk, dv)?;
        let l = self.check_run(dk, dv, q, k, v, &gates, state, o)?;
        if workspace.len() < need {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: need,
                capacity: workspace.len(),
            });
        }
        let p = self.params_len(dk, dv)?;
        let (grads, scratch) = workspace.split_at_mut(chunk * p);
        let (params, rest) = state.split_at_mut(p);
        let (mom, aux) = rest.split_at_mut(p);
        let arch = self.architecture;
        let mut c0 = 0;
        while c0 < l {
            let n = chunk.min(l - c0);
            let closed = self.rule == LearningRule::DeltaClosedForm;
            // Gradients at the chunk-start parameters (for the closed form: at the retained
            // parameters, which needs the token's own keep factor: computed per token below).
            if !closed {
                for (i, g) in grads.chunks_mut(p).take(n).enumerate() {
                    let t = c0 + i;
                    let (kt, vt) = (row(k, t, dk)?, row(v, t, dv)?);
                    arch.gradient(&self.bias, dk, dv, params, kt, vt, g, scratch)?;
                }
            }
            for i in 0..n {
                let t = c0 + i;
                let lr = gates.lr.get(t).copied().unwrap_or(R::zero());
                let keep = gates
                    .keep
                    .and_then(|g| g.get(t).copied())
                    .unwrap_or(R::one());
                let theta = gates
                    .momentum
                    .and_then(|g| g.get(t).copied())
                    .unwrap_or(R::zero());
                let g = grads
                    .get_mut(i * p..(i + 1) * p)
                    .ok_or(Error::Overflow { arg: "workspace" })?;
                if closed {
                    // Retention first, then the exact step at the retained parameters.
                    self.retention.retain(arch, dk, dv, keep, params, aux)?;
                    let (kt, vt) = (row(k, t, dk)?, row(v, t, dv)?);
                    arch.gradient(&self.bias, dk, dv, params, kt, vt, g, scratch)?;
                    for gi in g.iter_mut() {
                        *gi = -(lr * *gi);
                    }
                    self.retention
                        .update(arch, dk, dv, R::one(), g, params, aux)?;
                } else {
                    let step: &[R] = match self.rule {
                        LearningRule::Momentum => {
                            for (m, &gi) in mom.iter_mut().zip(g.iter()) {
                                *m = theta * *m - lr * gi;
                            }
                            mom
                        }
                        _ => {
                            for gi in g.iter_mut() {
                                *gi = -(lr * *gi);
                            }
                            g
                        }
                    };
                    self.retention
                        .update(arch, dk, dv, keep, step, params, aux)?;
                }
                let (qt, ot) = (row(q, t, dk)?, row_mut(o, t, dv)?);
                arch.forward(dk, dv, params, qt, ot, scratch)?;
            }
            c0 += n;
        }
        Ok(())
    }
}

fn row<R>(x: &[R], t: usize, d: usize) -> Result<&[R]> {
    x.get(t * d..(t + 1) * d)
        .ok_or(Error::Overflow { arg: "row" })
}

fn row_mut<R>(x: &mut [R], t: usize, d: usize) -> Result<&mut [R]> {
    x.get_mut(t * d..(t + 1) * d)
        .ok_or(Error::Overflow { arg: "row" })
}
