//! [`Reference`], the scalar backend: always available, no_std, no allocation, written for
//! clarity. Run at f64 it is the oracle every other backend and element type is measured against.
//!
//! Each kernel walks its views' layouts element by element, computes in the accumulation type
//! (f32 for f16/bf16/f32, f64 for f64) in a fixed order without fused multiply-adds, and rounds
//! once on store. Results are deterministic for a given input.

mod elementwise;
mod gemm;
mod reduce;
mod softmax;
mod top_k;

use crate::backend::Backend;
use crate::element::{Element, Scalar};
use crate::error::{Error, Result};
use crate::op::{Binary, Reduce, SoftmaxKind, Unary};
use crate::view::{View, ViewMut};

/// The scalar reference backend. Its memory is a host slice.
///
/// ```
/// use seqcore::{Backend, Reference, SoftmaxKind};
///
/// let b = Reference;
/// let x = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY];
/// let mut y = [0.0f32; 6];
/// b.softmax(SoftmaxKind::Softmax, b.view(&x, &[2, 3])?, None, b.view_mut(&mut y, &[2, 3])?)?;
/// let s: f32 = y[..3].iter().sum();
/// assert!((s - 1.0).abs() < 1e-6);
/// assert_eq!(&y[3..], &[0.0, 0.0, 0.0]); // a fully masked row gives zeros
/// # Ok::<(), seqcore::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reference;

/// Reads element `i`; an out-of-range address is an error rather than a panic (it cannot happen
/// for views that passed construction, whose layouts were checked against their memory).
fn at<T: Copy>(s: &[T], i: usize) -> Result<T> {
    s.get(i).copied().ok_or(Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len: s.len(),
    })
}

/// Writes element `i` (see [`at`]).
fn put<T>(s: &mut [T], i: usize, v: T) -> Result<()> {
    let len = s.len();
    let slot = s.get_mut(i).ok_or(Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len,
    })?;
    *slot = v;
    Ok(())
}

/// Host to host: both directions of a host backend's transfers (`Backend::write` and
/// `Backend::read` of every backend whose memory is a slice).
///
/// # Errors
/// [`Error::Shape`] naming `dst` when the lengths differ.
pub fn host_copy<T: Copy>(src: &[T], dst: &mut [T]) -> Result<()> {
    if src.len() != dst.len() {
        return Err(Error::Shape {
            arg: "dst",
            axis: 0,
            got: dst.len(),
            expected: src.len(),
            shape: crate::Dims::new(&[dst.len()]),
        });
    }
    dst.copy_from_slice(src);
    Ok(())
}

impl Backend for Reference {
    type Mem<T: Scalar> = [T];

    fn name(&self) -> &'static str {
        "reference"
    }

    fn mem_len<T: Scalar>(mem: &[T]) -> usize {
        mem.len()
    }

    fn write<T: Scalar>(&self, src: &[T], dst: &mut [T]) -> Result<()> {
        host_copy(src, dst)
    }

    fn read<T: Scalar>(&self, src: &[T], dst: &mut [T]) -> Result<()> {
        host_copy(src, dst)
    }

    fn host<T: Scalar>(mem: &[T]) -> Option<&[T]> {
        Some(mem)
    }

    fn host_mut<T: Scalar>(mem: &mut [T]) -> Option<&mut [T]> {
        Some(mem)
    }

    fn gemm<T: Element>(
        &self,
        alpha: f64,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        beta: f64,
        c: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        gemm::gemm(alpha, a, b, beta, c)
    }

    fn softmax<T: Element>(
        &self,
        kind: SoftmaxKind,
        x: View<'_, Self, T>,
        mask: Option<View<'_, Self, T>>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        softmax::softmax(kind, x, mask, y)
    }

    fn unary<T: Element>(
        &self,
        op: Unary,
        x: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        elementwise::unary(op, x, y)
    }

    fn binary<T: Element>(
        &self,
        op: Binary,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        elementwise::binary(op, a, b, y)
    }

    fn reduce<T: Element>(
        &self,
        op: Reduce,
        x: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        reduce::reduce(op, x, y)
    }

    fn cast<S: Element, D: Element>(
        &self,
        x: View<'_, Self, S>,
        y: ViewMut<'_, Self, D>,
    ) -> Result<()> {
        elementwise::cast(x, y)
    }

    fn top_k<T: Element>(
        &self,
        k: usize,
        x: View<'_, Self, T>,
        values: ViewMut<'_, Self, T>,
        indices: ViewMut<'_, Self, u32>,
    ) -> Result<()> {
        top_k::top_k(k, x, values, indices)
    }
}

#[cfg(feature = "alloc")]
impl crate::backend::Allocate for Reference {
    type Buffer<T: Scalar> = alloc::vec::Vec<T>;

    fn alloc<T: Scalar>(&self, len: usize) -> Result<alloc::vec::Vec<T>> {
        let mut v = alloc::vec::Vec::new();
        let bytes = len.saturating_mul(size_of::<T>());
        v.try_reserve_exact(len)
            .map_err(|_| Error::OutOfMemory { bytes })?;
        v.resize(len, T::default());
        Ok(v)
    }
}
