//! Portable bodies of the state-space kernels of `seq-ssm` (S4, "Efficiently Modeling Long
//! Sequences with Structured State Spaces", Gu, Goel & Re 2022; S4D, "On the Parameterization and
//! Initialization of Diagonal State Space Models", Gu et al. 2022):
//!
//! - [`fft`]: radix-2 and Bluestein FFTs over interleaved complex slices (no allocation; twiddles
//!   and scratch come from the caller);
//! - [`scan`]: the recurrent mode of a diagonal complex SSM, `x_t = Abar x_{t-1} + Bbar u_t`,
//!   `y_t = 2 Re(C x_t) + D u_t` (S4 eq. 3 with N/2 conjugate-paired modes);
//! - [`conv`]: the convolution mode `y = k * u + D u` (S4 eq. 4-5), by FFT of length `2^m >= 2L`,
//!   and the direct O(L^2) sum it is checked against;
//! - [`vandermonde`]: the S4D kernel `k_l = 2 Re(sum_n w_n z_n^l)` (S4D eq. 6, a Vandermonde
//!   matrix-vector product).
//!
//! Complex numbers are stored interleaved, `[re, im]`, as a last axis of size 2 (the convention of
//! the vector format and of `torch.view_as_real`).

pub mod conv;
pub mod fft;
pub mod scan;
pub mod vandermonde;

use crate::error::{Error, Result};
use crate::layout::Layout;

/// Address of element `ix` of `l` (rank must equal `ix.len()`; the caller checked the shape).
fn addr<const K: usize>(l: &Layout, ix: [usize; K]) -> usize {
    l.strides()
        .iter()
        .zip(ix)
        .fold(l.offset(), |a, (&s, i)| a.wrapping_add(s.wrapping_mul(i)))
}

/// Reads element `i` of a host slice (an error, not a panic, past its end).
fn at<T: Copy>(s: &[T], i: usize) -> Result<T> {
    s.get(i).copied().ok_or(Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len: s.len(),
    })
}

/// Writes element `i` of a host slice (see [`at`]).
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
