//! Linear (matrix) memories on any [`Backend`]: linear attention, decayed linear attention,
//! DeltaNet and Gated DeltaNet, in recurrent and chunkwise-parallel form.
//!
//! The state of head `h` is a matrix `S [Dv, Dk]`, kept by the caller in the backend's
//! accumulation type (`state [H, Dv, Dk]`). Each call reads the state as it is and leaves it as it
//! ends, so a stream continues by calling again: a decode step is a call with `L = 1`, and it
//! allocates nothing.

use seqcore::portable::linear_memory::{
    FeatureMap, LinearMemorySpec, MemoryDims, MemoryInputs, MemoryRule, check_dims,
};
use seqcore::{Backend, Element, Error, Result, ViewMut};

/// Which of the two equal computations runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// Token by token ([`Backend::linear_memory_recurrent`]).
    Recurrent,
    /// Chunks of `chunk` tokens ([`Backend::linear_memory_chunkwise`]); needs a workspace of
    /// [`LinearMemory::workspace_len`] elements.
    Chunkwise {
        /// Tokens per chunk (at least 1; the last chunk may be shorter).
        chunk: usize,
    },
}

/// Which per-token gates a preset reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gates {
    /// Neither `beta` nor `log_decay` (linear attention).
    None,
    /// `log_decay [L, H]` only (decayed linear attention).
    Decay,
    /// `beta [L, H]` only (DeltaNet).
    Beta,
    /// Both (Gated DeltaNet).
    BetaAndDecay,
}

/// A linear memory: write rule, feature map, the gates it reads, and the form it runs in.
///
/// ```
/// use seq_memory::linear::{Form, LinearMemory};
/// use seq_memory::FeatureMap;
/// use seqcore::{Backend, Reference};
/// use seqcore::portable::linear_memory::MemoryInputs;
///
/// // Causal linear attention on one head, L = 3, Dk = Dv = 2.
/// let b = Reference;
/// let q = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
/// let k = [1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0];
/// let v = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let mut state = [0.0f32; 4];
/// let mut o = [0.0f32; 6];
/// let m = LinearMemory::linear_attention(FeatureMap::Identity);
/// let x = MemoryInputs {
///     q: b.view(&q, &[3, 1, 2])?,
///     k: b.view(&k, &[3, 1, 2])?,
///     v: b.view(&v, &[3, 1, 2])?,
///     beta: None,
///     log_decay: None,
/// };
/// m.forward(&b, x, b.view_mut(&mut state, &[1, 2, 2])?, Some(b.view_mut(&mut o, &[3, 1, 2])?), None)?;
/// // o_2 = (q_2.k_0) v_0 + (q_2.k_1) v_1 + (q_2.k_2) v_2
/// assert_eq!(&o[4..], &[1.0 + 3.0 + 5.0, 2.0 + 4.0 + 6.0]);
/// # Ok::<(), seqcore::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearMemory {
    /// Write rule and feature map.
    pub spec: LinearMemorySpec,
    /// The gates the preset requires (checked by [`LinearMemory::forward`]).
    pub gates: Gates,
    /// Recurrent or chunkwise.
    pub form: Form,
}

impl LinearMemory {
    /// Causal linear attention (Katharopoulos et al. 2020, "Transformers are RNNs", Eq. 4-6,
    /// without the normaliser; `elu+1` is their Eq. 7): `S_t = S_{t-1} + v_t phi(k_t)^T`,
    /// `o_t = S_t phi(q_t)`.
    pub const fn linear_attention(feature_map: FeatureMap) -> Self {
        LinearMemory {
            spec: LinearMemorySpec {
                rule: MemoryRule::Additive,
                feature_map,
            },
            gates: Gates::None,
            form: Form::Recurrent,
        }
    }

    /// Decayed linear attention, a scalar decay per token and head: `S_t = exp(g_t) S_{t-1} +
    /// v_t k_t^T` (RetNet, Sun et al. 2023, Eq. 1-4, with `g_t = ln gamma_h`, see
    /// [`retnet_log_decay`]; LASP-2's decayed form, Eq. 1; data-dependent `g_t` as in GLA with
    /// scalar gates / Mamba-2).
    pub const fn decayed_linear_attention() -> Self {
        LinearMemory {
            spec: LinearMemorySpec {
                rule: MemoryRule::Additive,
                feature_map: FeatureMap::Identity,
            },
            gates: Gates::Decay,
            form: Form::Recurrent,
        }
    }

    /// DeltaNet (Schlag et al. 2021; Yang et al. 2024, "Parallelizing Linear Transformers with the
    /// Delta Rule over Sequence Length", Eq. 1): `S_t = S_{t-1}(I - beta_t k_t k_t^T) +
    /// beta_t v_t k_t^T`. Keys are expected L2-normalised (as the paper's model does).
    pub const fn delta_net() -> Self {
        LinearMemory {
            spec: LinearMemorySpec {
                rule: MemoryRule::Delta,
                feature_map: FeatureMap::Identity,
            },
            gates: Gates::Beta,
            form: Form::Recurrent,
        }
    }

    /// Gated DeltaNet (Yang, Kautz & Hatamizadeh 2025, Eq. 10): `S_t = S_{t-1}(alpha_t (I -
    /// beta_t k_t k_t^T)) + beta_t v_t k_t^T` with `alpha_t = exp(g_t)`.
    pub const fn gated_delta_net() -> Self {
        LinearMemory {
            spec: LinearMemorySpec {
                rule: MemoryRule::Delta,
                feature_map: FeatureMap::Identity,
            },
            gates: Gates::BetaAndDecay,
            form: Form::Recurrent,
        }
    }

    /// The same memory, run chunkwise with `chunk` tokens per chunk.
    pub const fn chunkwise(self, chunk: usize) -> Self {
        LinearMemory {
            form: Form::Chunkwise { chunk },
            ..self
        }
    }

    /// The same memory, run token by token.
    pub const fn recurrent(self) -> Self {
        LinearMemory {
            form: Form::Recurrent,
            ..self
        }
    }

    /// Accumulation-type workspace elements [`LinearMemory::forward`] needs for `dk` key and `dv`
    /// value features per head (0 for the recurrent form).
    ///
    /// # Errors
    /// [`Error::Param`] naming `chunk` when it is 0.
    pub fn workspace_len<B: Backend + ?Sized>(&self, b: &B, dk: usize, dv: usize) -> Result<usize> {
        match self.form {
            Form::Recurrent => Ok(0),
            Form::Chunkwise { chunk } => b.linear_memory_chunkwise_workspace_len(chunk, dk, dv),
        }
    }

    /// Checks the inputs against the preset: shapes, and exactly the gates it reads.
    ///
    /// # Errors
    /// Shape errors naming the argument; [`Error::Param`] naming `beta` or `log_decay` when the
    /// preset needs it and it is absent, or does not read it and it is given.
    pub fn check<B: Backend + ?Sized, T: Element>(
        &self,
        x: &MemoryInputs<'_, B, T>,
        state: &seqcore::Layout,
        o: Option<&seqcore::Layout>,
    ) -> Result<MemoryDims> {
        let (want_beta, want_decay) = match self.gates {
            Gates::None => (false, false),
            Gates::Decay => (false, true),
            Gates::Beta => (true, false),
            Gates::BetaAndDecay => (true, true),
        };
        let gate = |arg: &'static str, want: bool, have: bool| match (want, have) {
            (true, false) => Err(Error::Param {
                arg,
                reason: "is required by this memory",
            }),
            (false, true) => Err(Error::Param {
                arg,
                reason: "is not read by this memory",
            }),
            _ => Ok(()),
        };
        gate("beta", want_beta, x.beta.is_some())?;
        gate("log_decay", want_decay, x.log_decay.is_some())?;
        if let Form::Chunkwise { chunk: 0 } = self.form {
            return Err(Error::Param {
                arg: "chunk",
                reason: "must be at least 1",
            });
        }
        check_dims(
            x.q.layout(),
            x.k.layout(),
            x.v.layout(),
            x.beta.as_ref().map(seqcore::View::layout),
            x.log_decay.as_ref().map(seqcore::View::layout),
            state,
            o,
        )
    }

    /// Runs `L` tokens: reads and updates `state [H, Dv, Dk]`, writes `o [L, H, Dv]` when given.
    /// The chunkwise form needs `workspace` (rank 1, [`LinearMemory::workspace_len`] elements).
    ///
    /// # Errors
    /// As [`LinearMemory::check`]; [`Error::Param`] naming `workspace` when the chunkwise form
    /// gets none; the kernel's errors.
    pub fn forward<B: Backend + ?Sized, T: Element>(
        &self,
        b: &B,
        x: MemoryInputs<'_, B, T>,
        state: ViewMut<'_, B, T::Acc>,
        o: Option<ViewMut<'_, B, T>>,
        workspace: Option<ViewMut<'_, B, T::Acc>>,
    ) -> Result<()> {
        self.check(&x, state.layout(), o.as_ref().map(ViewMut::layout))?;
        match self.form {
            Form::Recurrent => b.linear_memory_recurrent(self.spec, x, state, o),
            Form::Chunkwise { chunk } => {
                let ws = workspace.ok_or(Error::Param {
                    arg: "workspace",
                    reason: "is required by the chunkwise form",
                })?;
                b.linear_memory_chunkwise(self.spec, chunk, x, state, o, ws)
            }
        }
    }
}

/// RetNet's fixed per-head decays as log-decays: `g_h = ln(1 - 2^(-5-h))` (Sun et al. 2023,
/// §2.2, "gamma = 1 - 2^(-5 - arange(0, h))"), written to `out [H]` in f64.
///
/// # Errors
/// Never for heads below 2^31 (kept fallible for a uniform API).
pub fn retnet_log_decay(out: &mut [f64]) -> Result<()> {
    for (h, g) in out.iter_mut().enumerate() {
        let e = i32::try_from(h)
            .ok()
            .and_then(|h| h.checked_add(5))
            .ok_or(Error::Overflow { arg: "out" })?;
        let mut p = 1.0f64;
        for _ in 0..e {
            p *= 0.5;
        }
        *g = seqcore::Real::ln_1p(-p);
    }
    Ok(())
}
