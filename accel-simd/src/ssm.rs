//! Diagonal state-space kernels (S4D; Gu et al. 2022): the recurrent scan, the FFT convolution
//! and the Vandermonde kernel.
//!
//! - [`conv`]: the FFT convolution, real FFTs on `LANES` channels at once ([`fft`]);
//! - [`scan`]: the recurrent mode, vectorised over the modes of a channel;
//! - [`vandermonde`]: the S4D Vandermonde kernel, vectorised over positions.

mod conv;
mod fft;
mod scan;
mod vandermonde;

use seqcore::{Element, Reference, Result, View, ViewMut};

#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
pub(crate) fn scan<T: Element>(
    abar: View<'_, Reference, T::Acc>,
    bbar: View<'_, Reference, T::Acc>,
    c: View<'_, Reference, T::Acc>,
    d: View<'_, Reference, T::Acc>,
    u: View<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    y: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    scan::scan::<T>(abar, bbar, c, d, u, state, y)
}

pub(crate) fn conv_workspace_len(h: usize, l: usize) -> Result<usize> {
    conv::workspace_len(h, l)
}

pub(crate) fn conv<T: Element>(
    k: View<'_, Reference, T>,
    u: View<'_, Reference, T>,
    d: Option<View<'_, Reference, T::Acc>>,
    y: ViewMut<'_, Reference, T>,
    workspace: ViewMut<'_, Reference, T::Acc>,
) -> Result<()> {
    conv::conv::<T>(k, u, d, y, workspace)
}

pub(crate) fn vandermonde<T: Element>(
    log_z: View<'_, Reference, T::Acc>,
    w: View<'_, Reference, T::Acc>,
    v: Option<View<'_, Reference, T::Acc>>,
    k: ViewMut<'_, Reference, T>,
) -> Result<()> {
    vandermonde::vandermonde::<T>(log_z, w, v, k)
}
