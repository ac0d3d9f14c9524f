//! The `k` largest elements of each row.
//!
//! Stub: the scalar reference until the vectorised kernel lands.

use seqcore::{Backend, Element, Reference, Result, View, ViewMut};

pub(crate) fn top_k<T: Element>(
    k: usize,
    x: View<'_, Reference, T>,
    values: ViewMut<'_, Reference, T>,
    indices: ViewMut<'_, Reference, u32>,
) -> Result<()> {
    Reference.top_k(k, x, values, indices)
}
