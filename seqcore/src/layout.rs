//! Layouts: an offset, a shape and strides (in elements) over a buffer.
//!
//! Cutting a view (one head, one token, one chunk, a transpose by strides, a broadcast by a zero
//! stride) is arithmetic on a [`Layout`] alone, so it works the same on every backend. Every
//! constructor checks its arithmetic: a layout whose addresses would overflow `usize` is an
//! [`Error::Overflow`], never a wrap-around.

use crate::error::{Dims, Error, Result};

/// The most axes a layout can have.
pub const MAX_RANK: usize = 6;

/// Offset, shape and strides of a view, in elements. Row-major by convention: the last axis is
/// the innermost.
///
/// The extent of the addresses a layout reaches (its [`Layout::end`]) is computed once, with
/// checked arithmetic, when it is made; the operations that cut it can only shrink it.
///
/// An empty layout (an extent of 0) addresses nothing, so any offset and strides would pass that
/// check; it is stored as offset 0 with zero strides instead, whatever it was made with, so that
/// a kernel that computes the start of a row before it learns the row is empty cannot overflow.
/// Empty layouts are contiguous and non-overlapping.
///
/// ```
/// use seqcore::Layout;
/// let l = Layout::new(usize::MAX, &[2, 0, 3], &[usize::MAX, 1, 7])?;
/// assert_eq!((l.offset(), l.strides()), (0, &[0, 0, 0][..]));
/// assert!(l.is_contiguous());
/// # Ok::<(), seqcore::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    offset: usize,
    rank: usize,
    shape: [usize; MAX_RANK],
    strides: [usize; MAX_RANK],
}

impl core::fmt::Debug for Layout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Layout")
            .field("offset", &self.offset)
            .field("shape", &self.shape())
            .field("strides", &self.strides())
            .finish()
    }
}

impl Layout {
    /// A row-major, densely packed layout at offset 0.
    ///
    /// # Errors
    /// [`Error::Rank`] for more than [`MAX_RANK`] axes, [`Error::Overflow`] when the element count
    /// overflows `usize`.
    pub fn contiguous(shape: &[usize]) -> Result<Layout> {
        Layout::contiguous_at(0, shape)
    }

    /// A row-major, densely packed layout starting at `offset`.
    ///
    /// # Errors
    /// As [`Layout::contiguous`].
    pub fn contiguous_at(offset: usize, shape: &[usize]) -> Result<Layout> {
        let rank = check_rank("shape", shape.len())?;
        let mut strides = [0usize; MAX_RANK];
        let mut step = 1usize;
        for (s, &n) in strides.iter_mut().zip(shape).rev() {
            *s = step;
            step = step
                .checked_mul(n)
                .ok_or(Error::Overflow { arg: "shape" })?;
        }
        Layout::new(offset, shape, strides.get(..rank).unwrap_or(&[]))
    }

    /// A layout with explicit strides (in elements). Strides may be zero (broadcast) or in any
    /// order (transposes); writable views additionally require that no two indices share an
    /// address (checked by [`crate::ViewMut`]).
    ///
    /// # Errors
    /// [`Error::Rank`] when `shape` and `strides` differ in length or exceed [`MAX_RANK`];
    /// [`Error::Overflow`] when the last address overflows `usize`.
    pub fn new(offset: usize, shape: &[usize], strides: &[usize]) -> Result<Layout> {
        let rank = check_rank("shape", shape.len())?;
        if strides.len() != rank {
            return Err(Error::Rank {
                arg: "strides",
                got: strides.len(),
                min: rank,
                max: rank,
            });
        }
        let mut l = Layout {
            offset,
            rank,
            shape: [0; MAX_RANK],
            strides: [0; MAX_RANK],
        };
        for (i, (&n, &s)) in shape.iter().zip(strides).enumerate() {
            if let (Some(a), Some(b)) = (l.shape.get_mut(i), l.strides.get_mut(i)) {
                *a = n;
                *b = s;
            }
        }
        l.checked_end()?;
        Ok(l.canonical())
    }

    /// `self`, or offset 0 and zero strides when it has no element (see the type's docs).
    fn canonical(mut self) -> Layout {
        if self.numel() == 0 {
            self.offset = 0;
            self.strides = [0; MAX_RANK];
        }
        self
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Extents, outermost first.
    pub fn shape(&self) -> &[usize] {
        self.shape.get(..self.rank).unwrap_or(&[])
    }

    /// Strides in elements, outermost first.
    pub fn strides(&self) -> &[usize] {
        self.strides.get(..self.rank).unwrap_or(&[])
    }

    /// Offset of element `[0, 0, ...]`, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The shape as an error-friendly value.
    pub fn dims(&self) -> Dims {
        Dims::new(self.shape())
    }

    /// Number of elements (1 for rank 0). Cannot overflow: checked when the layout was made.
    pub fn numel(&self) -> usize {
        self.shape()
            .iter()
            .fold(1usize, |a, &n| a.saturating_mul(n))
    }

    /// One past the last address the layout reaches, or 0 when it has no element.
    pub fn end(&self) -> usize {
        // Checked at construction; every cut only shrinks it.
        self.checked_end().unwrap_or(usize::MAX)
    }

    fn checked_end(&self) -> Result<usize> {
        let ovf = Error::Overflow { arg: "layout" };
        if self.numel() == 0 && self.shape().contains(&0) {
            return Ok(0);
        }
        let mut last = self.offset;
        for (&n, &s) in self.shape().iter().zip(self.strides()) {
            let reach = (n - 1).checked_mul(s).ok_or(ovf)?;
            last = last.checked_add(reach).ok_or(ovf)?;
        }
        // Elements counts must fit as well (numel saturates otherwise).
        self.shape()
            .iter()
            .try_fold(1usize, |a, &n| a.checked_mul(n))
            .ok_or(ovf)?;
        last.checked_add(1).ok_or(ovf)
    }

    /// True when the elements are densely packed in row-major order (size-1 axes may have any
    /// stride; an empty layout is contiguous).
    pub fn is_contiguous(&self) -> bool {
        if self.numel() == 0 {
            return true;
        }
        let mut step = 1usize;
        for (&n, &s) in self.shape().iter().zip(self.strides()).rev() {
            if n != 1 && s != step {
                return false;
            }
            step = step.saturating_mul(n);
        }
        true
    }

    /// True when no two indices share an address: axes sorted by stride, each stride passes
    /// everything the smaller-strided axes reach. Empty layouts never overlap.
    pub fn is_non_overlapping(&self) -> bool {
        if self.numel() == 0 {
            return true;
        }
        let mut axes = [(0usize, 0usize); MAX_RANK];
        let mut k = 0;
        for (&n, &s) in self.shape().iter().zip(self.strides()) {
            if n > 1 {
                if let Some(slot) = axes.get_mut(k) {
                    *slot = (s, n);
                    k += 1;
                }
            }
        }
        let axes = axes.get_mut(..k).unwrap_or(&mut []);
        axes.sort_unstable();
        let mut reach = 0usize; // largest address offset reached by the axes so far
        for &(s, n) in axes.iter() {
            if s <= reach {
                return false;
            }
            reach = reach.saturating_add((n - 1).saturating_mul(s));
        }
        true
    }

    fn axis(&self, arg: &'static str, axis: usize) -> Result<usize> {
        if axis < self.rank {
            Ok(axis)
        } else {
            Err(Error::Axis {
                arg,
                axis,
                rank: self.rank,
            })
        }
    }

    /// Extent of `axis`.
    ///
    /// # Errors
    /// [`Error::Axis`] when `axis >= rank`.
    pub fn extent(&self, axis: usize) -> Result<usize> {
        let a = self.axis("axis", axis)?;
        self.shape.get(a).copied().ok_or(Error::Axis {
            arg: "axis",
            axis,
            rank: self.rank,
        })
    }

    /// Fixes `axis` at `index` and drops it (one head, one token).
    ///
    /// # Errors
    /// [`Error::Axis`] for a bad axis, [`Error::Index`] when `index` is past the extent.
    pub fn select(&self, axis: usize, index: usize) -> Result<Layout> {
        let l = self.narrow(axis, index, 1)?;
        l.remove_axis(axis)
    }

    /// Keeps `len` entries of `axis` starting at `start` (a chunk).
    ///
    /// # Errors
    /// [`Error::Axis`] for a bad axis, [`Error::Index`] when `start + len` is past the extent.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Layout> {
        let a = self.axis("axis", axis)?;
        let n = self.extent(a)?;
        // Saturating: a range past usize::MAX is past the extent too (an `Index` error, as
        // documented, not an `Overflow`).
        let end = start.saturating_add(len);
        if end > n {
            return Err(Error::Index {
                arg: "start",
                end,
                len: n,
            });
        }
        let mut l = *self;
        let s = self.strides.get(a).copied().unwrap_or(0);
        if len > 0 {
            // start < n here, and start*s <= (n-1)*s, which was checked at construction.
            l.offset = l.offset.saturating_add(start.saturating_mul(s));
        }
        if let Some(e) = l.shape.get_mut(a) {
            *e = len;
        }
        Ok(l.canonical())
    }

    /// Reorders the axes: axis `i` of the result is axis `order[i]` of `self`.
    ///
    /// # Errors
    /// [`Error::Rank`] when `order` does not have `rank` entries, [`Error::Param`] when it is
    /// not a permutation of `0..rank`.
    pub fn permute(&self, order: &[usize]) -> Result<Layout> {
        let bad = Error::Param {
            arg: "order",
            reason: "must be a permutation of 0..rank",
        };
        if order.len() != self.rank {
            return Err(Error::Rank {
                arg: "order",
                got: order.len(),
                min: self.rank,
                max: self.rank,
            });
        }
        let mut seen = [false; MAX_RANK];
        let mut l = *self;
        for (i, &src) in order.iter().enumerate() {
            let flag = seen.get_mut(src).filter(|_| src < self.rank).ok_or(bad)?;
            if *flag {
                return Err(bad);
            }
            *flag = true;
            if let (Some(n), Some(s)) = (l.shape.get_mut(i), l.strides.get_mut(i)) {
                *n = self.shape.get(src).copied().unwrap_or(0);
                *s = self.strides.get(src).copied().unwrap_or(0);
            }
        }
        Ok(l)
    }

    /// Swaps two axes (a transpose by strides; no data moves).
    ///
    /// # Errors
    /// [`Error::Axis`] for a bad axis.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Layout> {
        let a = self.axis("a", a)?;
        let b = self.axis("b", b)?;
        let mut l = *self;
        l.shape.swap(a, b);
        l.strides.swap(a, b);
        Ok(l)
    }

    /// Inserts an axis of extent 1 before `axis` (`axis == rank` appends).
    ///
    /// # Errors
    /// [`Error::Axis`] when `axis > rank`, [`Error::Rank`] at [`MAX_RANK`].
    #[allow(clippy::indexing_slicing)] // indices below rank <= MAX_RANK, the arrays' length
    pub fn unsqueeze(&self, axis: usize) -> Result<Layout> {
        if axis > self.rank {
            return Err(Error::Axis {
                arg: "axis",
                axis,
                rank: self.rank,
            });
        }
        check_rank("shape", self.rank + 1)?;
        let mut l = *self;
        l.rank += 1;
        for i in (axis + 1..l.rank).rev() {
            l.shape[i] = l.shape[i - 1];
            l.strides[i] = l.strides[i - 1];
        }
        l.shape[axis] = 1;
        l.strides[axis] = 0;
        Ok(l)
    }

    #[allow(clippy::indexing_slicing)] // indices below rank <= MAX_RANK, the arrays' length
    fn remove_axis(&self, axis: usize) -> Result<Layout> {
        let a = self.axis("axis", axis)?;
        let mut l = *self;
        for i in a..l.rank - 1 {
            l.shape[i] = l.shape[i + 1];
            l.strides[i] = l.strides[i + 1];
        }
        l.rank -= 1;
        l.shape[l.rank] = 0;
        l.strides[l.rank] = 0;
        Ok(l)
    }

    /// Broadcasts to `shape` as PyTorch's `expand`: new axes are added in front, and axes of
    /// extent 1 grow with stride 0. Only readable views may be broadcast.
    ///
    /// # Errors
    /// [`Error::Rank`] when `shape` has fewer axes, [`Error::Shape`] when an extent is neither
    /// equal nor 1.
    pub fn expand(&self, shape: &[usize]) -> Result<Layout> {
        let rank = check_rank("shape", shape.len())?;
        if rank < self.rank {
            return Err(Error::Rank {
                arg: "shape",
                got: rank,
                min: self.rank,
                max: MAX_RANK,
            });
        }
        let lead = rank - self.rank;
        let mut strides = [0usize; MAX_RANK];
        for (i, (&want, s)) in shape.iter().zip(strides.iter_mut()).enumerate().skip(lead) {
            let have = self.shape.get(i - lead).copied().unwrap_or(1);
            if have == want {
                *s = self.strides.get(i - lead).copied().unwrap_or(0);
            } else if have != 1 {
                return Err(Error::Shape {
                    arg: "shape",
                    axis: i,
                    got: want,
                    expected: have,
                    shape: self.dims(),
                });
            }
        }
        Layout::new(self.offset, shape, strides.get(..rank).unwrap_or(&[]))
    }

    /// Gives a contiguous layout a new shape with the same number of elements.
    ///
    /// # Errors
    /// [`Error::Param`] when the layout is not contiguous, [`Error::Shape`] when the element
    /// counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Layout> {
        if !self.is_contiguous() {
            return Err(Error::Param {
                arg: "layout",
                reason: "must be contiguous to reshape",
            });
        }
        let l = Layout::contiguous_at(self.offset, shape)?;
        if l.numel() != self.numel() {
            return Err(Error::Shape {
                arg: "shape",
                axis: 0,
                got: l.numel(),
                expected: self.numel(),
                shape: l.dims(),
            });
        }
        Ok(l)
    }

    /// Splits off the last axis: `(rows, len, stride)`, where `rows` addresses the first element
    /// of every row. A rank-0 layout is one row of one element.
    #[allow(clippy::indexing_slicing)] // indices below rank <= MAX_RANK, the arrays' length
    pub fn split_last(&self) -> (Layout, usize, usize) {
        if self.rank == 0 {
            return (*self, 1, 0);
        }
        let mut rows = *self;
        rows.rank -= 1;
        let len = rows.shape[rows.rank];
        let stride = rows.strides[rows.rank];
        rows.shape[rows.rank] = 0;
        rows.strides[rows.rank] = 0;
        (rows, len, stride)
    }

    /// The address of every element, in row-major order of the indices.
    pub fn offsets(&self) -> Offsets {
        Offsets {
            layout: *self,
            index: [0; MAX_RANK],
            left: self.numel(),
            next: self.offset,
        }
    }
}

fn check_rank(arg: &'static str, rank: usize) -> Result<usize> {
    if rank > MAX_RANK {
        Err(Error::Rank {
            arg,
            got: rank,
            min: 0,
            max: MAX_RANK,
        })
    } else {
        Ok(rank)
    }
}

/// Iterator over the addresses of a [`Layout`], in row-major index order.
#[derive(Clone, Debug)]
pub struct Offsets {
    layout: Layout,
    index: [usize; MAX_RANK],
    left: usize,
    next: usize,
}

impl Iterator for Offsets {
    type Item = usize;

    #[allow(clippy::indexing_slicing)] // indices below rank <= MAX_RANK, the arrays' length
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let out = self.next;
        // Advance the odometer. Addresses stay below `end()`, which was checked not to overflow.
        for ax in (0..self.layout.rank).rev() {
            let (i, n, s) = (
                &mut self.index[ax],
                self.layout.shape[ax],
                self.layout.strides[ax],
            );
            *i += 1;
            if *i < n {
                self.next = self.next.wrapping_add(s);
                break;
            }
            *i = 0;
            self.next = self.next.wrapping_sub((n - 1).wrapping_mul(s));
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Offsets {}
