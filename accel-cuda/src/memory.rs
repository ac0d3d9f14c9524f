//! The fused kernels of linear associative memories (seqcore::portable::linear_memory) on the GPU.
//!
//! Linear attention (Katharopoulos et al. 2020, Eq. 4-6), decayed linear attention (RetNet, Sun
//! et al. 2023, Eq. 1-4), DeltaNet (Schlag et al. 2021; Yang et al. 2024, Eq. 1) and Gated
//! DeltaNet (Yang, Kautz & Hatamizadeh 2025, Eq. 10): see `kernels/memory.cu` for the
//! recurrence as the kernel computes it.

use seqcore::portable::linear_memory::{
    FeatureMap, LinearMemorySpec, MemoryInputs, MemoryRule, check_chunkwise,
};
use seqcore::{Element, Error, Layout, Result, View, ViewMut};

use crate::error::BACKEND;
use crate::launch::{self, Lay, i, lay};
use crate::{CudaBackend, kname};

/// The `flags` of `linear_memory_k` for `spec`: bit 0 the delta rule, bit 1 the elu+1 feature
/// map. A rule or feature map added to seqcore later is `Unsupported` here until the kernel
/// learns it (never computed as another one).
fn spec_flags(op: &'static str, spec: LinearMemorySpec) -> Result<i32> {
    let unsupported = Error::Unsupported {
        op,
        backend: BACKEND,
    };
    let rule = match spec.rule {
        MemoryRule::Additive => 0,
        MemoryRule::Delta => 1,
        _ => return Err(unsupported),
    };
    let phi = match spec.feature_map {
        FeatureMap::Identity => 0,
        FeatureMap::Elu1 => 2,
        _ => return Err(unsupported),
    };
    Ok(rule | phi)
}

/// An optional input's address and layout (0 and an empty `Lay` when absent).
fn opt_in<T: Element>(b: &CudaBackend, x: Option<&View<'_, CudaBackend, T>>) -> Result<(u64, Lay)> {
    match x {
        Some(x) => Ok((x.mem().ptr(&b.stream), lay(x.layout())?)),
        None => Ok((0, Lay::default())),
    }
}

impl CudaBackend {
    /// [`seqcore::Backend::linear_memory_recurrent`] on the GPU (`linear_memory_*` of
    /// `kernels/memory.cu`): one warp per (head, state row), tokens in order, the state row read
    /// and written in place in the accumulation type.
    ///
    /// `check_dims` runs first (the reference's shape errors), then the spec is mapped
    /// (`Unsupported` for a rule or feature map the kernel does not know).
    pub(crate) fn linear_memory_recurrent_impl<T: Element>(
        &self,
        op: &'static str,
        spec: LinearMemorySpec,
        x: MemoryInputs<'_, Self, T>,
        mut state: ViewMut<'_, Self, T::Acc>,
        mut o: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        let d = x.dims(state.layout(), o.as_ref().map(ViewMut::layout))?;
        let mut flags = spec_flags(op, spec)?;
        // Nothing observable to compute: no token, no state row, or (Dk = 0) a state with no
        // element and no output to write zeros into.
        if d.len == 0 || d.heads == 0 || d.dv == 0 || (d.dk == 0 && o.is_none()) {
            return Ok(());
        }
        let pairs = d
            .heads
            .checked_mul(d.dv)
            .ok_or(Error::Overflow { arg: "state" })?;
        let s = &self.stream;
        let (qp, lq) = (x.q.mem().ptr(s), lay(x.q.layout())?);
        let (kp, lk) = (x.k.mem().ptr(s), lay(x.k.layout())?);
        let (vp, lv) = (x.v.mem().ptr(s), lay(x.v.layout())?);
        let (bp, lb) = opt_in(self, x.beta.as_ref())?;
        let (gp, lg) = opt_in(self, x.log_decay.as_ref())?;
        if x.beta.is_some() {
            flags |= 4;
        }
        if x.log_decay.is_some() {
            flags |= 8;
        }
        let ls = lay(state.layout())?;
        let sp = state.parts().0.ptr(s);
        let (op_, lo) = match &mut o {
            Some(o) => {
                let lo = lay(o.layout())?;
                flags |= 16;
                (o.parts().0.ptr(s), lo)
            }
            None => (0u64, Lay::default()),
        };
        let (len, heads, dk, dv) = (i(d.len)?, i(d.heads)?, i(d.dk)?, i(d.dv)?);
        self.launch(
            &kname("linear_memory", T::NAME),
            launch::elementwise(pairs.saturating_mul(32)),
            [
                &qp, &lq, &kp, &lk, &vp, &lv, &bp, &lb, &gp, &lg, &sp, &ls, &op_, &lo, &len,
                &heads, &dk, &dv, &flags,
            ],
        )
    }

    /// [`seqcore::Backend::linear_memory_chunkwise`] on the GPU: the checks of the portable
    /// chunkwise form, in its order ([`check_chunkwise`]: `chunk` 0 is a `Param` error, then the
    /// shapes, then a `workspace` that is not contiguous rank 1 or holds fewer than
    /// `chunkwise_workspace_len` elements), then **the recurrent kernel** on the same inputs.
    ///
    /// This is not a chunked algorithm: the trait defines the chunkwise form as the same
    /// function as the recurrence up to rounding, and the recurrence is that function with the
    /// reference's own arithmetic (no exponentials of cumulative log-decay differences, no
    /// triangular solve), one warp per state row. The chunk size does not change the result and
    /// the workspace is checked but neither read nor written; its required length stays the
    /// portable one, so callers size it the same on every backend.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn linear_memory_chunkwise_impl<T: Element>(
        &self,
        spec: LinearMemorySpec,
        chunk: usize,
        x: MemoryInputs<'_, Self, T>,
        state: ViewMut<'_, Self, T::Acc>,
        o: Option<ViewMut<'_, Self, T>>,
        workspace: &Layout,
    ) -> Result<()> {
        check_chunkwise(
            chunk,
            &x,
            state.layout(),
            o.as_ref().map(ViewMut::layout),
            workspace,
        )?;
        self.linear_memory_recurrent_impl("linear_memory_chunkwise", spec, x, state, o)
    }
}
