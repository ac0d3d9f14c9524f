//! Elementwise maps (`unary`, `binary`) and casts.
//!
//! Stub: the scalar reference until the vectorised kernels land.

use seqcore::{Backend, Binary, Element, Reference, Result, Unary, View, ViewMut};

pub(crate) fn unary<T: Element>(
    op: Unary,
    x: View<'_, Reference, T>,
    y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    Reference.unary(op, x, y)
}

pub(crate) fn binary<T: Element>(
    op: Binary,
    a: View<'_, Reference, T>,
    b: View<'_, Reference, T>,
    y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    Reference.binary(op, a, b, y)
}

pub(crate) fn cast<S: Element, D: Element>(
    x: View<'_, Reference, S>,
    y: ViewMut<'_, Reference, D>,
) -> Result<()> {
    Reference.cast(x, y)
}
