//! Portable bodies of the fused kernels: plain scalar code over host views, run by the provided
//! methods of [`Backend`] on any backend whose memory is on the host ([`Backend::host`]).
//!
//! A backend with memory elsewhere (a GPU) overrides each fused kernel it supports; for the others
//! the provided method answers [`Error::Unsupported`] rather than a wrong result. Each submodule
//! names the paper and equation of its kernel.

use crate::backend::Backend;
use crate::element::Scalar;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::view::{View, ViewMut};

/// `v` as a view over its host slice, or [`Error::Unsupported`] naming `op` when `B`'s memory is
/// not on the host.
///
/// # Errors
/// [`Error::Unsupported`] as above; layout errors cannot happen (the layout was checked against
/// the same memory when `v` was made).
pub fn host_view<'a, B: Backend + ?Sized, T: Scalar>(
    backend: &B,
    op: &'static str,
    v: View<'a, B, T>,
) -> Result<View<'a, Reference, T>> {
    let mem = B::host(v.mem()).ok_or(Error::Unsupported {
        op,
        backend: backend.name(),
    })?;
    View::new(mem, *v.layout())
}

/// `v` as a writable view over its host slice (see [`host_view`]).
///
/// # Errors
/// As [`host_view`].
pub fn host_view_mut<'a, B: Backend + ?Sized, T: Scalar>(
    backend: &B,
    op: &'static str,
    v: ViewMut<'a, B, T>,
) -> Result<ViewMut<'a, Reference, T>> {
    let name = backend.name();
    let (mem, layout) = v.into_parts();
    let mem = B::host_mut(mem).ok_or(Error::Unsupported { op, backend: name })?;
    ViewMut::new(mem, layout)
}

// Kernel submodules (one per fused kernel family) are declared below.

pub mod attention;
