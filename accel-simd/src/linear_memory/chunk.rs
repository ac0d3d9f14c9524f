//! The chunkwise (WY-form) linear-memory kernel.
//!
//! Not vectorised yet: the portable kernel (`seqcore::portable::linear_memory::chunkwise`).

use seqcore::portable::linear_memory::{LinearMemorySpec, MemoryInputs};
use seqcore::{Backend, Element, Reference, Result, ViewMut};

/// The chunkwise form: the portable kernel.
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
