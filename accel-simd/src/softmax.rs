//! Softmax and log-softmax over the last axis, with an optional additive mask, on the build's
//! vectors: the Reference's three passes (max with NaN detection, `sum exp(z - max)`, then
//! `exp(z - max) / sum` or `z - max - ln sum`), with `z = x + mask`, each pass a vector at a
//! time, the sum lane-parallel (a different order from the Reference's, inside the same
//! `8 sqrt(n)` bound) and `exp`/`ln` from [`crate::math`] (1 ULP).
//!
//! f32/f64 rows are read in place (softmax keeps `e^(z - max)` in `y` between the second and
//! third pass, so each element's `exp` runs once). f16/bf16 rows are widened into a stack block of
//! [`ROW_BLOCK`] f32 values; a longer row takes the three passes block by block, widening again
//! in each (no heap, whatever the row length). Rows whose last axis is not unit-stride (in `x`,
//! `mask` or `y`) go to the Reference kernel. The semantics are the Reference's: a row holding
//! NaN (or `+inf`, through `inf - inf`) is NaN, a fully masked row (every `z = -inf`) gives 0
//! (softmax) or `-inf` (log-softmax).

use half::{bf16, f16};
use seqcore::{Backend, DType, Element, Reference, Result, SoftmaxKind, View, ViewMut, check};

use crate::elementwise::{as_t, as_t_mut, head, span, span_mut};
use crate::lanes::{Lanes, Vector, narrow, widen};
use crate::math::{self, VMath};

/// f32 elements of the stack block an f16/bf16 row is widened into (two such blocks: 8 KiB).
pub(crate) const ROW_BLOCK: usize = 1024;

/// Calls `f(j, z)` for every vector of `z = x + m` starting at element `j`; the lanes past the
/// end of the row are `-inf` (which every pass ignores).
#[inline(always)]
fn each_z<A: Lanes>(x: &[A], m: Option<&[A]>, mut f: impl FnMut(usize, A::V)) {
    let l = A::LANES;
    let n = x.len();
    let full = n - n % l;
    match m {
        None => {
            for (i, c) in x.chunks_exact(l).enumerate() {
                f(i * l, A::V::load_or(c, A::neg_infinity()));
            }
        }
        Some(m) => {
            for (i, (c, d)) in x.chunks_exact(l).zip(m.chunks_exact(l)).enumerate() {
                f(
                    i * l,
                    A::V::load_or(c, A::neg_infinity()) + A::V::load_or(d, A::zero()),
                );
            }
        }
    }
    if full < n {
        let mut z = A::V::load_or(x.get(full..).unwrap_or(&[]), A::neg_infinity());
        if let Some(m) = m {
            z = z + A::V::load_or(m.get(full..).unwrap_or(&[]), A::zero());
        }
        f(full, z);
    }
}

/// The part of `y` a vector starting at `j` writes.
#[inline(always)]
fn at<A>(y: &mut [A], j: usize) -> &mut [A] {
    y.get_mut(j..).unwrap_or(&mut [])
}

/// Pass 1 over a row or block: running lane-wise max (NaN lanes skipped) and NaN mask.
#[inline(always)]
fn scan<A: Lanes>(x: &[A], m: Option<&[A]>, mx: &mut A::V, nan: &mut A::V) {
    each_z::<A>(x, m, |_, z| {
        *mx = mx.max(z);
        *nan = nan.v_or(z.v_nan());
    });
}

/// The row's max and whether it holds NaN, from the lane accumulators.
#[inline(always)]
fn fold<A: Lanes>(mx: A::V, nan: A::V) -> (A, bool) {
    let m = mx
        .lanes()
        .iter()
        .fold(A::neg_infinity(), |a, &b| if b > a { b } else { a });
    (m, nan.v_any())
}

/// Pass 2: `sum exp(z - max)` accumulated into `acc`; `e` receives each `exp(z - max)` when
/// given.
#[inline(always)]
fn exp_sum<A: Lanes>(x: &[A], m: Option<&[A]>, max: A, acc: &mut A::V, e: Option<&mut [A]>) {
    let vm = A::V::splat(max);
    match e {
        Some(e) => each_z::<A>(x, m, |j, z| {
            let v = math::exp::<A>(z - vm);
            *acc = *acc + v;
            v.store(at(e, j));
        }),
        None => each_z::<A>(x, m, |_, z| *acc = *acc + math::exp::<A>(z - vm)),
    }
}

/// Pass 3 from `z`: `y = exp(z - max) * inv` (softmax) or `(z - max) - lse` (log-softmax).
#[inline(always)]
fn write<A: Lanes>(kind: SoftmaxKind, x: &[A], m: Option<&[A]>, max: A, s: A, y: &mut [A]) {
    let vm = A::V::splat(max);
    let vs = A::V::splat(s);
    match kind {
        SoftmaxKind::Softmax => each_z::<A>(x, m, |j, z| {
            (math::exp::<A>(z - vm) * vs).store(at(y, j));
        }),
        _ => each_z::<A>(x, m, |j, z| ((z - vm) - vs).store(at(y, j))),
    }
}

/// Fills `y` with the output of a NaN row or a fully masked row.
fn fill<A: Lanes>(kind: SoftmaxKind, nan: bool, y: &mut [A]) {
    let v = if nan {
        A::nan()
    } else {
        match kind {
            SoftmaxKind::Softmax => A::zero(),
            _ => A::neg_infinity(),
        }
    };
    y.fill(v);
}

/// `ln` of one value through the vector function (the same 1 ULP everywhere).
fn ln1<A: Lanes>(s: A) -> A {
    math::ln::<A>(A::V::splat(s))
        .lanes()
        .first()
        .copied()
        .unwrap_or(A::nan())
}

/// The scale pass-3 takes: `1 / sum` (softmax) or `ln sum` (log-softmax).
fn scale<A: Lanes>(kind: SoftmaxKind, sum: A) -> A {
    match kind {
        SoftmaxKind::Softmax => A::one() / sum,
        _ => ln1(sum),
    }
}

/// One row in the accumulation type, read in place: `x`, `m` and `y` of equal length.
fn row_acc<A: Lanes>(kind: SoftmaxKind, x: &[A], m: Option<&[A]>, y: &mut [A]) {
    let ninf = A::V::splat(A::neg_infinity());
    let (mut mx, mut nan) = (ninf, A::V::splat(A::zero()).v_nan());
    scan::<A>(x, m, &mut mx, &mut nan);
    let (max, has_nan) = fold::<A>(mx, nan);
    if has_nan || max == A::neg_infinity() {
        fill(kind, has_nan, y);
        return;
    }
    let mut acc = A::V::splat(A::zero());
    match kind {
        SoftmaxKind::Softmax => {
            exp_sum::<A>(x, m, max, &mut acc, Some(y));
            let inv = A::V::splat(scale(kind, acc.reduce_add()));
            for c in y.chunks_mut(A::LANES) {
                (A::V::load_or(c, A::zero()) * inv).store(c);
            }
        }
        _ => {
            exp_sum::<A>(x, m, max, &mut acc, None);
            write::<A>(kind, x, m, max, scale(kind, acc.reduce_add()), y);
        }
    }
}

/// One f16/bf16 row through f32 stack blocks.
fn row_half<H: Element<Acc = f32>>(kind: SoftmaxKind, x: &[H], m: Option<&[H]>, y: &mut [H]) {
    let mut zb = [0f32; ROW_BLOCK];
    let mut mb = [0f32; ROW_BLOCK];
    let n = x.len();
    // Widens block `k` of x (and the mask) into `zb` / `mb`; returns its length.
    let load = |k: usize, zb: &mut [f32; ROW_BLOCK], mb: &mut [f32; ROW_BLOCK]| -> usize {
        let j = k * ROW_BLOCK;
        let len = ROW_BLOCK.min(n - j);
        widen::<H>(x.get(j..j + len).unwrap_or(&[]), head(zb, len));
        if let Some(m) = m {
            widen::<H>(m.get(j..j + len).unwrap_or(&[]), head(mb, len));
        }
        len
    };
    let blocks = n.div_ceil(ROW_BLOCK);
    if blocks <= 1 {
        let len = load(0, &mut zb, &mut mb);
        let mm = m.map(|_| mb.get(..len).unwrap_or(&[]));
        let mut yb = [0f32; ROW_BLOCK];
        row_acc::<f32>(kind, zb.get(..len).unwrap_or(&[]), mm, head(&mut yb, len));
        narrow::<H>(yb.get(..len).unwrap_or(&[]), y);
        return;
    }
    let ninf = <f32 as Lanes>::V::splat(f32::NEG_INFINITY);
    let (mut mx, mut nan) = (ninf, <f32 as Lanes>::V::splat(0.0).v_nan());
    for k in 0..blocks {
        let len = load(k, &mut zb, &mut mb);
        let mm = m.map(|_| mb.get(..len).unwrap_or(&[]));
        scan::<f32>(zb.get(..len).unwrap_or(&[]), mm, &mut mx, &mut nan);
    }
    let (max, has_nan) = fold::<f32>(mx, nan);
    if has_nan || max == f32::NEG_INFINITY {
        let v = H::from_acc(if has_nan {
            f32::NAN
        } else if kind == SoftmaxKind::Softmax {
            0.0
        } else {
            f32::NEG_INFINITY
        });
        y.fill(v);
        return;
    }
    let mut acc = <f32 as Lanes>::V::splat(0.0);
    for k in 0..blocks {
        let len = load(k, &mut zb, &mut mb);
        let mm = m.map(|_| mb.get(..len).unwrap_or(&[]));
        exp_sum::<f32>(zb.get(..len).unwrap_or(&[]), mm, max, &mut acc, None);
    }
    let s = scale(kind, acc.reduce_add());
    let mut yb = [0f32; ROW_BLOCK];
    for k in 0..blocks {
        let len = load(k, &mut zb, &mut mb);
        let mm = m.map(|_| mb.get(..len).unwrap_or(&[]));
        write::<f32>(
            kind,
            zb.get(..len).unwrap_or(&[]),
            mm,
            max,
            s,
            head(&mut yb, len),
        );
        let j = k * ROW_BLOCK;
        narrow::<H>(
            yb.get(..len).unwrap_or(&[]),
            y.get_mut(j..j + len).unwrap_or(&mut []),
        );
    }
}

/// One row of element type `T`; false when `T` is not one of the four float types.
fn row<T: Element>(kind: SoftmaxKind, x: &[T], m: Option<&[T]>, y: &mut [T]) -> bool {
    macro_rules! go {
        ($u:ty, $f:expr) => {{
            let mm = match m {
                Some(m) => match as_t::<T, $u>(m) {
                    Some(m) => Some(m),
                    None => return false,
                },
                None => None,
            };
            match (as_t::<T, $u>(x), as_t_mut::<T, $u>(y)) {
                (Some(x), Some(y)) => {
                    $f(kind, x, mm, y);
                    true
                }
                _ => false,
            }
        }};
    }
    match T::DTYPE {
        DType::F32 => go!(f32, row_acc::<f32>),
        DType::F64 => go!(f64, row_acc::<f64>),
        DType::F16 => go!(f16, row_half::<f16>),
        DType::BF16 => go!(bf16, row_half::<bf16>),
        _ => false,
    }
}

pub(crate) fn softmax<T: Element>(
    kind: SoftmaxKind,
    x: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, T>>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    // The Reference's checks, in its order.
    check::shape("y", y.layout(), x.shape())?;
    if let Some(m) = &mask {
        check::shape("mask", m.layout(), x.shape())?;
    }
    if y.layout().numel() == 0 {
        return Ok(());
    }
    let (xrows, n, xs) = x.layout().split_last();
    let (yrows, _, ys) = y.layout().split_last();
    let mrows = mask.as_ref().map(|m| m.layout().split_last());
    let unit = |s: usize| s == 1 || n <= 1;
    let fast = unit(xs)
        && unit(ys)
        && mrows.as_ref().is_none_or(|(_, _, s)| unit(*s))
        && matches!(T::DTYPE, DType::F32 | DType::F64 | DType::F16 | DType::BF16);
    if !fast {
        return Reference.softmax(kind, x, mask, y);
    }
    let xm = x.mem();
    let mm = mask.as_ref().map(|m| m.mem());
    let ym = y.mem_mut();
    let mut moffs = mrows.map(|(l, _, _)| l.offsets());
    let oob = |end: usize, len: usize| seqcore::Error::OutOfBounds {
        arg: "view",
        end,
        len,
    };
    for (xo, yo) in xrows.offsets().zip(yrows.offsets()) {
        let xr = span(xm, xo, n).ok_or(oob(xo + n, xm.len()))?;
        let mr = match (moffs.as_mut(), mm) {
            (Some(it), Some(mm)) => {
                let mo = it.next().unwrap_or(0);
                Some(span(mm, mo, n).ok_or(oob(mo + n, mm.len()))?)
            }
            _ => None,
        };
        let ylen = ym.len();
        let yr = span_mut(ym, yo, n).ok_or(oob(yo + n, ylen))?;
        // Cannot be false: the element type was matched above.
        let _ = row(kind, xr, mr, yr);
    }
    Ok(())
}
