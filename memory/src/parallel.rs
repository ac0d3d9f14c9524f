//! Chunk states and their merge, for sequence parallelism (LASP-2, Sun et al. 2025, §3: each
//! device computes its chunk's memory state, the states are all-gathered and combined by a
//! prefix, and each device finishes its chunk from the combined state).
//!
//! Every linear memory of [`crate::linear`] maps the state at a chunk's start to the state at its
//! end by an affine map `S_end = S_start M + D` (per head; `S [Dv, Dk]`, `M [Dk, Dk]`):
//!
//! - `D` is the chunk's state from a zero start;
//! - `M` is the product of the per-token transitions, `M = prod_t a_t (I - beta_t k_t k_t^T)` for
//!   the delta rule, `M = (prod_t a_t) I` for the additive rule (LASP-2's decay factor).
//!
//! Both come from the memory's own kernel ([`chunk_state`]): `D` by running the chunk on a zero
//! state, `M` by running it on the identity with zero values (the write of a zero value leaves the
//! transition alone). Two consecutive chunks compose as `(M1, D1) then (M2, D2) = (M1 M2,
//! D1 M2 + D2)` ([`combine`]), an associative operation, so any prefix scan (sequential, tree,
//! or the all-gather of LASP-2) gives every chunk its starting state ([`advance`]). The crate
//! never moves the states between machines: a collective-communication library does.

use seqcore::portable::linear_memory::MemoryInputs;
use seqcore::{Backend, Element, Error, Result, View, ViewMut};

use crate::linear::LinearMemory;

/// The affine map of one chunk: writes `D` into `state` (which must hold zeros) and `M` into
/// `transition` (which must hold the identity per head). `zero` is a one-element view holding 0
/// in `T` (backend memory has no constants): it stands for the zero values.
/// `workspace` as [`LinearMemory::forward`] with `dv = max(Dv, Dk)`.
///
/// # Errors
/// As [`LinearMemory::forward`]; shape errors naming `transition` (`[H, Dk, Dk]`) or `zero`.
pub fn chunk_state<B: Backend + ?Sized, T: Element>(
    b: &B,
    memory: &LinearMemory,
    x: MemoryInputs<'_, B, T>,
    zero: View<'_, B, T>,
    state: ViewMut<'_, B, T::Acc>,
    transition: ViewMut<'_, B, T::Acc>,
    mut workspace: Option<ViewMut<'_, B, T::Acc>>,
) -> Result<()> {
    memory.forward(b, x, state, None, workspace.as_mut().map(ViewMut::reborrow))?;
    if zero.layout().numel() != 1 {
        return Err(Error::Param {
            arg: "zero",
            reason: "must be a view of one element (holding 0)",
        });
    }
    let shape = x.k.shape();
    let zeros = zero.map_layout(|l| l.reshape(&[]))?.expand(shape)?;
    let xm = MemoryInputs { v: zeros, ..x };
    memory.forward(b, xm, transition, None, workspace)
}

/// Composes two consecutive chunks: `(M1, D1)` then `(M2, D2)` gives `(M1 M2, D1 M2 + D2)`.
/// `later_d` holds `D2` and is overwritten with `D1 M2 + D2`; `m_out` receives `M1 M2`.
/// Shapes: `M [H, Dk, Dk]`, `D [H, Dv, Dk]`, in the accumulation type.
///
/// # Errors
/// Shape errors from the matrix products.
pub fn combine<B: Backend + ?Sized, R: Element>(
    b: &B,
    earlier_m: View<'_, B, R>,
    earlier_d: View<'_, B, R>,
    later_m: View<'_, B, R>,
    later_d: ViewMut<'_, B, R>,
    m_out: ViewMut<'_, B, R>,
) -> Result<()> {
    b.gemm(1.0, earlier_m, later_m, 0.0, m_out)?;
    b.gemm(1.0, earlier_d, later_m, 1.0, later_d)
}

/// The state at a chunk's end from the state at its start: `d <- start M + d` (`d` holds the
/// chunk's `D` and receives `S_end`).
///
/// # Errors
/// Shape errors from the matrix product.
pub fn advance<B: Backend + ?Sized, R: Element>(
    b: &B,
    start: View<'_, B, R>,
    m: View<'_, B, R>,
    d: ViewMut<'_, B, R>,
) -> Result<()> {
    b.gemm(1.0, start, m, 1.0, d)
}
