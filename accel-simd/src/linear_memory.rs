//! Linear-memory updates: linear attention, RetNet decay, DeltaNet and Gated DeltaNet, recurrent
//! and chunkwise (WY form).
//!
//! Stub: the portable kernels until the vectorised ones land.

use seqcore::portable::linear_memory::{LinearMemorySpec, MemoryInputs};
use seqcore::{Backend, Element, Reference, Result, ViewMut};

pub(crate) fn recurrent<T: Element>(
    spec: LinearMemorySpec,
    inputs: MemoryInputs<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    o: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    Reference.linear_memory_recurrent(spec, inputs, state, o)
}

pub(crate) fn chunkwise_workspace_len(chunk: usize, dk: usize, dv: usize) -> Result<usize> {
    Reference.linear_memory_chunkwise_workspace_len(chunk, dk, dv)
}

pub(crate) fn chunkwise<T: Element>(
    spec: LinearMemorySpec,
    chunk: usize,
    inputs: MemoryInputs<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    o: Option<ViewMut<'_, Reference, T>>,
    workspace: ViewMut<'_, Reference, T::Acc>,
) -> Result<()> {
    Reference.linear_memory_chunkwise(spec, chunk, inputs, state, o, workspace)
}
