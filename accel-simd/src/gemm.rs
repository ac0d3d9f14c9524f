//! `c = alpha * a @ b + beta * c` (BLAS `gemm`).
//!
//! Stub: the scalar reference until the packed, register-blocked kernel lands.

use seqcore::{Backend, Element, Reference, Result, View, ViewMut};

pub(crate) fn gemm<T: Element>(
    alpha: f64,
    a: View<'_, Reference, T>,
    b: View<'_, Reference, T>,
    beta: f64,
    c: ViewMut<'_, Reference, T>,
) -> Result<()> {
    Reference.gemm(alpha, a, b, beta, c)
}
