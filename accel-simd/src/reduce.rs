//! Reductions over the last axis.
//!
//! Stub: the scalar reference until the vectorised kernel lands.

use seqcore::{Backend, Element, Reduce, Reference, Result, View, ViewMut};

pub(crate) fn reduce<T: Element>(
    op: Reduce,
    x: View<'_, Reference, T>,
    y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    Reference.reduce(op, x, y)
}
