//! proptest strategies for kernel cases: extents that break tiling and lane widths, layouts that
//! are strided, offset, padded or transposed in memory, and values that reach every corner of the
//! element types.

use proptest::prelude::*;
use seqcore::Layout;

use crate::harness::Tensor;

/// Extents that matter: 0, 1, primes, and one either side of the lane widths 8 and 16.
pub const DIMS: [usize; 14] = [0, 1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 33];

/// An extent from [`DIMS`], or any up to `max`.
pub fn dim(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => proptest::sample::select(DIMS.iter().copied().filter(|&d| d <= max).collect::<Vec<_>>()),
        1 => 0..=max,
    ]
}

/// A non-zero extent (for axes that may not be empty).
pub fn dim_nonzero(max: usize) -> impl Strategy<Value = usize> {
    dim(max).prop_map(|d| d.max(1))
}

/// Which special values a tensor may hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Specials {
    /// `-inf` (masks).
    pub neg_inf: bool,
    /// `+inf`.
    pub pos_inf: bool,
    /// NaN.
    pub nan: bool,
    /// Magnitudes up to 1e4 (and 3e38 where the type holds them: rounding takes care of the rest).
    pub huge: bool,
}

/// One value: mostly of magnitude about `scale`, sometimes zero, tiny, subnormal or special.
pub fn value(scale: f64, sp: Specials) -> BoxedStrategy<f64> {
    let normal = (-1.0f64..1.0).prop_map(move |v| v * scale * 2.0);
    let log_uniform = (-20i32..15, any::<bool>(), 1.0f64..2.0)
        .prop_map(|(e, neg, m)| if neg { -m } else { m } * 2f64.powi(e));
    let mut s = prop_oneof![
        12 => normal.boxed(),
        3 => log_uniform.boxed(),
        1 => prop_oneof![Just(0.0), Just(-0.0), Just(1e-30), Just(-3e-39), Just(1e-7)].boxed(),
    ]
    .boxed();
    if sp.huge {
        s = prop_oneof![8 => s, 1 => prop_oneof![Just(1e4), Just(-1e4), Just(9.5e3), Just(3e38), Just(-3e38)]]
            .boxed();
    }
    if sp.neg_inf {
        s = prop_oneof![8 => s, 1 => Just(f64::NEG_INFINITY)].boxed();
    }
    if sp.pos_inf {
        s = prop_oneof![12 => s, 1 => Just(f64::INFINITY)].boxed();
    }
    if sp.nan {
        s = prop_oneof![16 => s, 1 => Just(f64::NAN)].boxed();
    }
    s
}

/// How a tensor sits in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Densely packed from address 0.
    Contiguous,
    /// Densely packed after a gap.
    Offset(usize),
    /// Rows (the last axis) padded to a longer stride.
    Padded(usize),
    /// The last two axes stored transposed (column-major), seen through swapped strides.
    Transposed,
}

/// Any [`Storage`].
pub fn storage() -> impl Strategy<Value = Storage> {
    prop_oneof![
        3 => Just(Storage::Contiguous),
        1 => (1usize..8).prop_map(Storage::Offset),
        1 => (1usize..5).prop_map(Storage::Padded),
        1 => Just(Storage::Transposed),
    ]
}

/// The layout of `shape` stored as `st`, and its buffer length (`None` for shapes no layout
/// holds, such as more than `MAX_RANK` axes).
pub fn layout(shape: &[usize], st: Storage) -> Option<(Layout, usize)> {
    let r = shape.len();
    let made = match st {
        Storage::Contiguous => Layout::contiguous(shape),
        Storage::Offset(o) => Layout::contiguous_at(o, shape),
        Storage::Padded(p) if r >= 1 => {
            // Allocate with a longer last axis, then narrow it back.
            let mut wide = shape.to_vec();
            let last = wide.get_mut(r - 1)?;
            let n = *last;
            *last += p;
            Layout::contiguous(&wide).and_then(|l| l.narrow(r - 1, 0, n))
        }
        Storage::Transposed if r >= 2 => {
            let mut swapped = shape.to_vec();
            swapped.swap(r - 2, r - 1);
            Layout::contiguous(&swapped).and_then(|l| l.transpose(r - 2, r - 1))
        }
        Storage::Padded(_) | Storage::Transposed => Layout::contiguous(shape),
    };
    let l = made.ok()?;
    // A padded or offset layout needs its whole buffer, even past the last element reached.
    let len = match st {
        Storage::Padded(p) => l.end() + p,
        _ => l.end(),
    };
    Some((l, len))
}

/// A tensor of `shape` with values from `value(scale, sp)` in any storage.
pub fn tensor(shape: Vec<usize>, scale: f64, sp: Specials) -> impl Strategy<Value = Tensor> {
    let n: usize = shape.iter().product();
    (proptest::collection::vec(value(scale, sp), n), storage()).prop_filter_map(
        "shape has a layout",
        move |(values, st)| {
            let (l, len) = layout(&shape, st)?;
            Tensor::with_layout(l, len, values).ok()
        },
    )
}
