//! Rotary position embedding (RoPE; Su et al. 2021, RoFormer eq. (34)).
//!
//! Per token, the `(cos, sin)` of every pair are formed once, in f64 from the integer position and
//! rounded to the accumulation type, exactly as [`seqcore::portable::rope::cos_sin`] does, into a
//! stack table of [`PAIRS`] pairs at a time; every head of the token then rotates its pairs with
//! vectors over the pair index (the [`RopeLayout::Half`] layout, whose two halves are contiguous),
//! or with a scalar loop over the row for the [`RopeLayout::Interleaved`] layout. The rotation is
//! `y_a = x_a c - x_b s`, `y_b = x_b c + x_a s` with separate roundings (no fused multiply-add),
//! the portable kernel's arithmetic, so results are identical to it. Layouts whose feature axis is
//! strided take the portable kernel.

use seqcore::portable::rope::{RopeLayout, RopePositions, check_rope, cos_sin};
use seqcore::{Backend, DType, Element, Error, Real, Reference, Result, View, ViewMut};

use crate::attention::{cast, conv, conv_mut, unit_rows};
use crate::lanes::{Lanes, Vector};

/// Pairs whose `(cos, sin)` are tabulated at once.
const PAIRS: usize = 64;

pub(crate) fn rope<T: Element>(
    layout: RopeLayout,
    inv_freq: &[f64],
    attention_factor: f64,
    positions: RopePositions<'_, Reference>,
    x: Option<View<'_, Reference, T>>,
    y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    const OP: &str = "rope";
    macro_rules! go {
        ($u:ty) => {
            run::<$u>(
                layout,
                inv_freq,
                attention_factor,
                positions,
                x.map(|v| conv(v, OP)).transpose()?,
                conv_mut(y, OP)?,
            )
        };
    }
    match T::DTYPE {
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
        DType::F16 => go!(half::f16),
        DType::BF16 => go!(half::bf16),
        _ => Reference.rope(layout, inv_freq, attention_factor, positions, x, y),
    }
}

fn oob(arg: &'static str, end: usize, len: usize) -> Error {
    Error::OutOfBounds { arg, end, len }
}

fn run<T: Element>(
    layout: RopeLayout,
    inv_freq: &[f64],
    attention_factor: f64,
    positions: RopePositions<'_, Reference>,
    x: Option<View<'_, Reference, T>>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()>
where
    T::Acc: Lanes,
{
    let pairs = check_rope::<Reference, T>(
        inv_freq,
        attention_factor,
        &positions,
        x.as_ref().map(View::layout),
        y.layout(),
    )?;
    let fast_layout = matches!(layout, RopeLayout::Half | RopeLayout::Interleaved);
    if !fast_layout || !unit_rows(y.layout()) || x.as_ref().is_some_and(|v| !unit_rows(v.layout()))
    {
        return seqcore::portable::rope::rope(layout, inv_freq, attention_factor, positions, x, y);
    }
    let yl = *y.layout();
    let [batch, heads, len, dim] = <[usize; 4]>::try_from(yl.shape()).map_err(|_| Error::Rank {
        arg: "y",
        got: yl.rank(),
        min: 4,
        max: 4,
    })?;
    let [ysb, ysh, ysl, _] = strides(yl.strides(), "y")?;
    let (xl, xm) = match &x {
        Some(v) => (*v.layout(), Some(v.mem())),
        None => (yl, None),
    };
    let [xsb, xsh, xsl, _] = strides(xl.strides(), "x")?;
    let ym = y.mem_mut();
    let mut cs = [<T::Acc as Real>::zero(); PAIRS];
    let mut sn = [<T::Acc as Real>::zero(); PAIRS];
    for b in 0..batch {
        for l in 0..len {
            let pos = match &positions {
                RopePositions::Offset(start) => {
                    // Checked by `check_rope` not to overflow.
                    start.saturating_add(u64::try_from(l).unwrap_or(u64::MAX))
                }
                RopePositions::Ids(p) => {
                    let pl = p.layout();
                    let o = match *pl.strides() {
                        [s0] => pl.offset() + l * s0,
                        [s0, s1] => pl.offset() + b * s0 + l * s1,
                        _ => return Err(oob("positions", 0, 0)),
                    };
                    u64::from(
                        *p.mem()
                            .get(o)
                            .ok_or_else(|| oob("positions", o + 1, p.mem().len()))?,
                    )
                }
                _ => return Err(oob("positions", 0, 0)),
            };
            let xbase = xl.offset() + b * xsb + l * xsl;
            let ybase = yl.offset() + b * ysb + l * ysl;
            let mut p0 = 0;
            while p0 < pairs {
                let np = (pairs - p0).min(PAIRS);
                let freqs = inv_freq.get(p0..p0 + np).unwrap_or(&[]);
                for ((c, s), &f) in cs.iter_mut().zip(sn.iter_mut()).zip(freqs) {
                    let (cf, sf) = cos_sin(pos, f, attention_factor);
                    *c = <T::Acc as Real>::lit(cf);
                    *s = <T::Acc as Real>::lit(sf);
                }
                let (c, s) = (cs.get(..np).unwrap_or(&[]), sn.get(..np).unwrap_or(&[]));
                for h in 0..heads {
                    let xo = xbase + h * xsh;
                    let yo = ybase + h * ysh;
                    match xm {
                        Some(xm) => {
                            let xr = xm
                                .get(xo..xo + dim)
                                .ok_or_else(|| oob("x", xo + dim, xm.len()))?;
                            let len_y = ym.len();
                            let yr = ym
                                .get_mut(yo..yo + dim)
                                .ok_or_else(|| oob("y", yo + dim, len_y))?;
                            rotate::<T>(layout, pairs, p0, c, s, xr, yr);
                        }
                        None => {
                            let len_y = ym.len();
                            let yr = ym
                                .get_mut(yo..yo + dim)
                                .ok_or_else(|| oob("y", yo + dim, len_y))?;
                            rotate_in_place::<T>(layout, pairs, p0, c, s, yr);
                        }
                    }
                }
                p0 += np;
            }
            // Pass-through features (partial rotary), copied only when out of place.
            if let (Some(xm), true) = (xm, dim > 2 * pairs) {
                for h in 0..heads {
                    let (xo, yo) = (xbase + h * xsh, ybase + h * ysh);
                    let xr = xm
                        .get(xo..xo + dim)
                        .ok_or_else(|| oob("x", xo + dim, xm.len()))?;
                    let len_y = ym.len();
                    let yr = ym
                        .get_mut(yo..yo + dim)
                        .ok_or_else(|| oob("y", yo + dim, len_y))?;
                    for (d, v) in yr.iter_mut().zip(xr).skip(2 * pairs) {
                        *d = *v;
                    }
                }
            }
        }
    }
    Ok(())
}

fn strides(s: &[usize], arg: &'static str) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(s).map_err(|_| Error::Rank {
        arg,
        got: s.len(),
        min: 4,
        max: 4,
    })
}

/// The features of pairs `p0 .. p0 + c.len()` of one row: `(a, b)` slices for the half layout.
#[inline(always)]
fn halves<X>(row: &[X], pairs: usize, p0: usize, np: usize) -> Option<(&[X], &[X])> {
    Some((row.get(p0..p0 + np)?, row.get(pairs + p0..pairs + p0 + np)?))
}

/// `(ya, yb) = (xa c - xb s, xb c + xa s)` on vectors of the accumulation type.
#[inline(always)]
fn rot<A: Lanes>(xa: A::V, xb: A::V, c: A::V, s: A::V) -> (A::V, A::V) {
    (xa * c - xb * s, xb * c + xa * s)
}

/// Rotates pairs `p0 ..` of `x` into `y` (rows of the same length).
fn rotate<T: Element>(
    layout: RopeLayout,
    pairs: usize,
    p0: usize,
    c: &[T::Acc],
    s: &[T::Acc],
    x: &[T],
    y: &mut [T],
) where
    T::Acc: Lanes,
{
    let np = c.len();
    match (layout, same::<T>(x)) {
        (RopeLayout::Half, Some(xa_all)) => {
            let Some((xa, xb)) = halves(xa_all, pairs, p0, np) else {
                return;
            };
            let Some(ya_all) = same_mut::<T>(y) else {
                return;
            };
            let (ya, yb) = ya_all.split_at_mut(pairs.min(ya_all.len()));
            let (Some(ya), Some(yb)) = (ya.get_mut(p0..p0 + np), yb.get_mut(p0..p0 + np)) else {
                return;
            };
            let n = <T::Acc as Lanes>::LANES;
            let zero = <T::Acc as Real>::zero();
            let mut i = 0;
            while i < np {
                let v =
                    |s: &[T::Acc]| <T::Acc as Lanes>::V::load_or(s.get(i..).unwrap_or(&[]), zero);
                let (ra, rb) = rot::<T::Acc>(v(xa), v(xb), v(c), v(s));
                ra.store(ya.get_mut(i..).unwrap_or(&mut []));
                rb.store(yb.get_mut(i..).unwrap_or(&mut []));
                i += n;
            }
        }
        _ => scalar::<T>(layout, pairs, p0, c, s, |i| x.get(i).copied(), y),
    }
}

/// In place: `y` is read, then written, pair by pair.
fn rotate_in_place<T: Element>(
    layout: RopeLayout,
    pairs: usize,
    p0: usize,
    c: &[T::Acc],
    s: &[T::Acc],
    y: &mut [T],
) where
    T::Acc: Lanes,
{
    let np = c.len();
    if let (RopeLayout::Half, Some(yy)) = (layout, same_mut::<T>(y)) {
        let (ya, yb) = yy.split_at_mut(pairs.min(yy.len()));
        let (Some(ya), Some(yb)) = (ya.get_mut(p0..p0 + np), yb.get_mut(p0..p0 + np)) else {
            return;
        };
        let n = <T::Acc as Lanes>::LANES;
        let zero = <T::Acc as Real>::zero();
        let mut i = 0;
        while i < np {
            let v = |s: &[T::Acc]| <T::Acc as Lanes>::V::load_or(s.get(i..).unwrap_or(&[]), zero);
            let (ra, rb) = rot::<T::Acc>(v(ya), v(yb), v(c), v(s));
            ra.store(ya.get_mut(i..).unwrap_or(&mut []));
            rb.store(yb.get_mut(i..).unwrap_or(&mut []));
            i += n;
        }
        return;
    }
    let mut tmp = [T::default(); 2 * PAIRS];
    // Read the pairs first (each pair reads only its own two features, so element-wise is safe).
    let (a_step, b_off) = offsets(layout, pairs);
    for (t, i) in (p0..p0 + np).enumerate() {
        let (ia, ib) = (i * a_step, i * a_step + b_off);
        if let (Some(&xa), Some(&xb)) = (y.get(ia), y.get(ib)) {
            if let Some(d) = tmp.get_mut(2 * t..2 * t + 2) {
                d.copy_from_slice(&[xa, xb]);
            }
        }
    }
    for (t, i) in (p0..p0 + np).enumerate() {
        let (ia, ib) = (i * a_step, i * a_step + b_off);
        let (Some(&xa), Some(&xb), Some(&cc), Some(&ss)) =
            (tmp.get(2 * t), tmp.get(2 * t + 1), c.get(t), s.get(t))
        else {
            continue;
        };
        let (xa, xb) = (xa.to_acc(), xb.to_acc());
        if let Some(d) = y.get_mut(ia) {
            *d = T::from_acc(xa * cc - xb * ss);
        }
        if let Some(d) = y.get_mut(ib) {
            *d = T::from_acc(xb * cc + xa * ss);
        }
    }
}

fn offsets(layout: RopeLayout, pairs: usize) -> (usize, usize) {
    match layout {
        RopeLayout::Interleaved => (2, 1),
        _ => (1, pairs),
    }
}

/// The portable arithmetic on one row (f16/bf16, the interleaved layout).
fn scalar<T: Element>(
    layout: RopeLayout,
    pairs: usize,
    p0: usize,
    c: &[T::Acc],
    s: &[T::Acc],
    x: impl Fn(usize) -> Option<T>,
    y: &mut [T],
) {
    let (a_step, b_off) = offsets(layout, pairs);
    for ((i, &cc), &ss) in (p0..).zip(c).zip(s) {
        let (ia, ib) = (i * a_step, i * a_step + b_off);
        let (Some(xa), Some(xb)) = (x(ia), x(ib)) else {
            continue;
        };
        let (xa, xb) = (xa.to_acc(), xb.to_acc());
        if let Some(d) = y.get_mut(ia) {
            *d = T::from_acc(xa * cc - xb * ss);
        }
        if let Some(d) = y.get_mut(ib) {
            *d = T::from_acc(xb * cc + xa * ss);
        }
    }
}

/// `s` as the accumulation type when `T` is it.
fn same<T: Element>(s: &[T]) -> Option<&[T::Acc]> {
    if T::DTYPE == <T::Acc as Element>::DTYPE {
        cast(s, "rope").ok()
    } else {
        None
    }
}

fn same_mut<T: Element>(s: &mut [T]) -> Option<&mut [T::Acc]> {
    if T::DTYPE == <T::Acc as Element>::DTYPE {
        bytemuck::try_cast_slice_mut(s).ok()
    } else {
        None
    }
}
