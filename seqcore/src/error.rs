//! The one error type of the seq family.

use core::fmt;

use crate::layout::MAX_RANK;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// A shape, kept by value inside an [`Error`] (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dims {
    rank: u8,
    dims: [usize; MAX_RANK],
}

impl Dims {
    /// The shape `dims`; axes past [`MAX_RANK`] are dropped (shapes that long are rejected with
    /// [`Error::Rank`] before one is ever recorded).
    pub fn new(dims: &[usize]) -> Self {
        let mut d = Dims::default();
        for (slot, &x) in d.dims.iter_mut().zip(dims) {
            *slot = x;
            d.rank += 1;
        }
        d
    }

    /// The extents, outermost first.
    pub fn as_slice(&self) -> &[usize] {
        self.dims.get(..usize::from(self.rank)).unwrap_or(&[])
    }
}

impl fmt::Debug for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

/// Everything that can go wrong in a seq crate. Small, `Copy`, allocation-free; every message
/// names the argument at fault and, for shape errors, the shapes involved.
///
/// Bad input is always one of these, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An extent differs from what the other arguments imply.
    Shape {
        /// The argument at fault.
        arg: &'static str,
        /// The first axis that differs.
        axis: usize,
        /// The extent found on that axis.
        got: usize,
        /// The extent the other arguments imply.
        expected: usize,
        /// The whole shape of `arg`.
        shape: Dims,
    },
    /// An argument has the wrong number of axes.
    Rank {
        /// The argument at fault.
        arg: &'static str,
        /// Its number of axes.
        got: usize,
        /// The smallest number accepted.
        min: usize,
        /// The largest number accepted.
        max: usize,
    },
    /// A view would reach memory outside its buffer.
    OutOfBounds {
        /// The argument at fault.
        arg: &'static str,
        /// One past the last element the layout reaches.
        end: usize,
        /// Elements in the buffer.
        len: usize,
    },
    /// Size or offset arithmetic overflowed `usize`.
    Overflow {
        /// The argument at fault.
        arg: &'static str,
    },
    /// A writable view may address some element twice (a zero or too small stride). The check is
    /// the usual sufficient one (axes sorted by stride, each stride past the reach of the smaller
    /// ones, as PyTorch's `is_non_overlapping_and_dense`), so it also refuses a few interleaved
    /// layouts that happen not to collide, such as shape `[2, 3]` with strides `[3, 2]`.
    Overlap {
        /// The argument at fault.
        arg: &'static str,
        /// Its shape.
        shape: Dims,
    },
    /// An axis number is not below the rank.
    Axis {
        /// The argument at fault.
        arg: &'static str,
        /// The axis asked for.
        axis: usize,
        /// The rank of the layout.
        rank: usize,
    },
    /// An index or range reaches past an extent.
    Index {
        /// The argument at fault.
        arg: &'static str,
        /// One past the last index asked for.
        end: usize,
        /// The extent.
        len: usize,
    },
    /// A parameter is invalid (NaN, infinite, zero where it must not be, out of range).
    Param {
        /// The parameter at fault.
        arg: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// A fixed capacity would be exceeded.
    Capacity {
        /// What is full.
        arg: &'static str,
        /// Elements needed.
        needed: usize,
        /// Elements available.
        capacity: usize,
    },
    /// Memory could not be obtained.
    OutOfMemory {
        /// Bytes asked for.
        bytes: usize,
    },
    /// The backend lacks this optional capability (it never answers with a wrong result instead).
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The backend.
        backend: &'static str,
    },
    /// The backend cannot run on this machine (no driver, no device, missing CPU features).
    Unavailable {
        /// The backend.
        backend: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Shape {
                arg,
                axis,
                got,
                expected,
                shape,
            } => write!(
                f,
                "`{arg}` has shape {shape}: axis {axis} is {got}, expected {expected}"
            ),
            Error::Rank { arg, got, min, max } if min == max => {
                write!(f, "`{arg}` has {got} axes, expected {min}")
            }
            Error::Rank { arg, got, min, max } => {
                write!(f, "`{arg}` has {got} axes, expected {min} to {max}")
            }
            Error::OutOfBounds { arg, end, len } => write!(
                f,
                "`{arg}` reaches element {end} of a buffer of {len} elements"
            ),
            Error::Overflow { arg } => write!(f, "`{arg}`: size arithmetic overflows usize"),
            Error::Overlap { arg, shape } => write!(
                f,
                "`{arg}` (shape {shape}) is written but its strides address some element twice"
            ),
            Error::Axis { arg, axis, rank } => {
                write!(f, "`{arg}`: axis {axis} does not exist in rank {rank}")
            }
            Error::Index { arg, end, len } => {
                write!(
                    f,
                    "`{arg}`: index range ends at {end}, past the extent {len}"
                )
            }
            Error::Param { arg, reason } => write!(f, "`{arg}` {reason}"),
            Error::Capacity {
                arg,
                needed,
                capacity,
            } => write!(
                f,
                "`{arg}` needs {needed} elements but holds at most {capacity}"
            ),
            Error::OutOfMemory { bytes } => write!(f, "could not allocate {bytes} bytes"),
            Error::Unsupported { op, backend } => {
                write!(f, "backend `{backend}` does not support `{op}`")
            }
            Error::Unavailable { backend, reason } => {
                write!(f, "backend `{backend}` is unavailable: {reason}")
            }
        }
    }
}

impl core::error::Error for Error {}
