//! Scratch memory, asked for and not taken: each decoder says how much it needs
//! ([`WorkspaceLen`]) and runs on the caller's buffers ([`Workspace`]), static or from the heap.

use seqcore::{Error, Result};

/// How much scratch a decoder configuration needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceLen {
    /// `f32` elements.
    pub f32s: usize,
    /// `u32` elements.
    pub u32s: usize,
}

/// The caller's scratch memory.
#[derive(Debug)]
pub struct Workspace<'a> {
    /// Float scratch (logits, scores).
    pub f32s: &'a mut [f32],
    /// Integer scratch (tokens, indices).
    pub u32s: &'a mut [u32],
}

impl<'a> Workspace<'a> {
    /// Scratch made of two caller buffers.
    pub fn new(f32s: &'a mut [f32], u32s: &'a mut [u32]) -> Self {
        Self { f32s, u32s }
    }
}

/// Cuts `n` elements off the front of `buf`.
pub(crate) fn take<'a, T>(
    buf: &mut &'a mut [T],
    n: usize,
    arg: &'static str,
) -> Result<&'a mut [T]> {
    let b = core::mem::take(buf);
    if n > b.len() {
        return Err(Error::Capacity {
            arg,
            needed: n,
            capacity: b.len(),
        });
    }
    let (head, tail) = b.split_at_mut(n);
    *buf = tail;
    Ok(head)
}

/// `a * b` or an overflow error naming `arg`.
pub(crate) fn mul(a: usize, b: usize, arg: &'static str) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::Overflow { arg })
}

/// `a + b` or an overflow error naming `arg`.
pub(crate) fn add(a: usize, b: usize, arg: &'static str) -> Result<usize> {
    a.checked_add(b).ok_or(Error::Overflow { arg })
}

/// A token index as `u32`.
pub(crate) fn tok(i: usize) -> Result<u32> {
    u32::try_from(i).map_err(|_| Error::Overflow { arg: "vocab" })
}

/// Owned scratch for the `alloc` API.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default)]
pub struct WorkspaceBuf {
    f32s: alloc::vec::Vec<f32>,
    u32s: alloc::vec::Vec<u32>,
}

#[cfg(feature = "alloc")]
impl WorkspaceBuf {
    /// Scratch of the given size, zeroed.
    pub fn new(len: WorkspaceLen) -> Self {
        Self {
            f32s: alloc::vec![0.0; len.f32s],
            u32s: alloc::vec![0; len.u32s],
        }
    }

    /// Scratch of the given size, zeroed, or [`Error::OutOfMemory`] when it cannot be had (the
    /// `generate` methods use this: a huge configuration is an `Err`, not an abort).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`].
    pub fn try_new(len: WorkspaceLen) -> Result<Self> {
        Ok(Self {
            f32s: try_vec(len.f32s, 0.0)?,
            u32s: try_vec(len.u32s, 0)?,
        })
    }

    /// The scratch as a [`Workspace`].
    pub fn workspace(&mut self) -> Workspace<'_> {
        Workspace::new(&mut self.f32s, &mut self.u32s)
    }
}

/// `vec![x; n]`, or [`Error::OutOfMemory`] instead of an abort.
#[cfg(feature = "alloc")]
pub(crate) fn try_vec<T: Clone>(n: usize, x: T) -> Result<alloc::vec::Vec<T>> {
    let mut v = alloc::vec::Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        bytes: n.saturating_mul(size_of::<T>()),
    })?;
    v.resize(n, x);
    Ok(v)
}
