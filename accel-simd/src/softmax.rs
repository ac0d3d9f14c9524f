//! Softmax and log-softmax over the last axis.
//!
//! Stub: the scalar reference until the vectorised kernel lands.

use seqcore::{Backend, Element, Reference, Result, SoftmaxKind, View, ViewMut};

pub(crate) fn softmax<T: Element>(
    kind: SoftmaxKind,
    x: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, T>>,
    y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    Reference.softmax(kind, x, mask, y)
}
