//! Row helpers over flat buffers (checked: a bad index is an `Err`, never a panic).

use seqcore::{Error, Result};

fn oob(arg: &'static str, end: usize, len: usize) -> Error {
    Error::Index { arg, end, len }
}

/// Row `i` of width `w` of `buf`.
pub(crate) fn row<T>(buf: &[T], i: usize, w: usize) -> Result<&[T]> {
    let start = i.checked_mul(w).ok_or(Error::Overflow { arg: "row" })?;
    buf.get(start..start + w)
        .ok_or_else(|| oob("row", start + w, buf.len()))
}

/// Row `i` of width `w` of `buf`, writable.
pub(crate) fn row_mut<T>(buf: &mut [T], i: usize, w: usize) -> Result<&mut [T]> {
    let start = i.checked_mul(w).ok_or(Error::Overflow { arg: "row" })?;
    let len = buf.len();
    buf.get_mut(start..start + w)
        .ok_or_else(|| oob("row", start + w, len))
}

/// `buf[i]`, or an index error.
pub(crate) fn at<T: Copy>(buf: &[T], i: usize) -> Result<T> {
    buf.get(i)
        .copied()
        .ok_or_else(|| oob("index", i + 1, buf.len()))
}

/// `&mut buf[i]`, or an index error.
pub(crate) fn at_mut<T>(buf: &mut [T], i: usize) -> Result<&mut T> {
    let len = buf.len();
    buf.get_mut(i).ok_or_else(|| oob("index", i + 1, len))
}

/// `u32` as an index.
pub(crate) fn ix(i: u32) -> Result<usize> {
    usize::try_from(i).map_err(|_| Error::Overflow { arg: "index" })
}
