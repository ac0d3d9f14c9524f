//! Elementwise maps (`unary`, `binary`) and casts, on the build's vectors.
//!
//! Contiguous operands are walked as one flat slice (f16/bf16 widened to f32 through a stack
//! block of [`BLOCK`] elements and rounded once on store); `binary` also takes rows whose last
//! axis is unit-stride (or broadcast, stride 0) under any outer layout. Other layouts go to the
//! Reference kernel, after the same checks.
//!
//! Each map is the formula of [`seqcore::Unary::apply`] / [`seqcore::Binary::apply`] on vectors:
//! `exp`/`ln` are [`crate::math`]'s (1 ULP), sigmoid, SiLU, GELU-tanh, softplus and ELU+1 are
//! built from them; `tanh` and GELU's `erfc` are `libm` per lane (not vectorised yet).

use half::{bf16, f16};
use seqcore::{
    Backend, Binary, DType, Element, Real, Reference, Result, Unary, View, ViewMut, check,
};

use crate::lanes::{Lanes, Vector, narrow, widen};
use crate::math::{self, VMath};

/// Elements per stack block when f16/bf16 data is widened to f32.
pub(crate) const BLOCK: usize = 256;

/// The `n` elements of `mem` from `o` (empty for `n = 0`, whatever `o`: an empty view may
/// start past the end of its buffer).
pub(crate) fn span<T>(mem: &[T], o: usize, n: usize) -> Option<&[T]> {
    if n == 0 {
        Some(&[])
    } else {
        mem.get(o..o.checked_add(n)?)
    }
}

/// The writable `n` elements of `mem` from `o` (see [`span`]).
pub(crate) fn span_mut<T>(mem: &mut [T], o: usize, n: usize) -> Option<&mut [T]> {
    if n == 0 {
        Some(&mut [])
    } else {
        mem.get_mut(o..o.checked_add(n)?)
    }
}

/// The contiguous elements of a view, when its layout is dense row-major.
pub(crate) fn flat<'a, T: Element>(v: &View<'a, Reference, T>) -> Option<&'a [T]> {
    let l = v.layout();
    if !l.is_contiguous() {
        return None;
    }
    span(v.mem(), l.offset(), l.numel())
}

/// The contiguous elements of a writable view (see [`flat`]).
pub(crate) fn flat_mut<'a, T: Element>(
    v: &'a mut ViewMut<'_, Reference, T>,
) -> Option<&'a mut [T]> {
    let (mem, l) = v.parts();
    if !l.is_contiguous() {
        return None;
    }
    span_mut(mem, l.offset(), l.numel())
}

/// The first `n` elements of a block (all of it when shorter).
#[inline(always)]
pub(crate) fn head<A>(s: &mut [A], n: usize) -> &mut [A] {
    let n = n.min(s.len());
    s.get_mut(..n).unwrap_or(&mut [])
}

/// `s` as a slice of `U` (same size and alignment: the concrete type behind a generic one).
pub(crate) fn as_t<T: Element, U: bytemuck::Pod>(s: &[T]) -> Option<&[U]> {
    bytemuck::try_cast_slice(s).ok()
}

/// `s` as a mutable slice of `U` (see [`as_t`]).
pub(crate) fn as_t_mut<T: Element, U: bytemuck::Pod>(s: &mut [T]) -> Option<&mut [U]> {
    bytemuck::try_cast_slice_mut(s).ok()
}

/// `y = f(x)` over equal-length slices of the accumulation type, a vector at a time.
#[inline(always)]
fn map_acc<A: Lanes>(x: &[A], y: &mut [A], f: impl Fn(A::V) -> A::V) {
    let l = A::LANES;
    let mut xc = x.chunks_exact(l);
    let mut yc = y.chunks_exact_mut(l);
    for (xv, yv) in (&mut xc).zip(&mut yc) {
        f(A::V::load_or(xv, A::zero())).store(yv);
    }
    let (xr, yr) = (xc.remainder(), yc.into_remainder());
    if !xr.is_empty() {
        f(A::V::load_or(xr, A::one())).store(yr);
    }
}

/// `y = f(x)` over f16/bf16 slices: widened block by block into f32, rounded once on store.
#[inline(always)]
fn map_half<H: Element<Acc = f32>>(
    x: &[H],
    y: &mut [H],
    f: impl Fn(<f32 as Lanes>::V) -> <f32 as Lanes>::V,
) {
    let mut a = [0f32; BLOCK];
    let mut b = [0f32; BLOCK];
    for (xb, yb) in x.chunks(BLOCK).zip(y.chunks_mut(BLOCK)) {
        let n = xb.len();
        let (a, b) = (head(&mut a, n), head(&mut b, n));
        widen::<H>(xb, a);
        map_acc::<f32>(a, b, &f);
        narrow::<H>(b, yb);
    }
}

/// Runs the map `$f` (a closure generic in the accumulation type, given as a macro so each op is
/// monomorphised) over flat slices of `T`; false when `T` is not one of the four float types.
macro_rules! dispatch1 {
    ($T:ty, $x:expr, $y:expr, |$v:ident: $A:ident| $body:expr) => {{
        let (x, y) = ($x, $y);
        match <$T>::DTYPE {
            DType::F32 => match (as_t::<$T, f32>(x), as_t_mut::<$T, f32>(y)) {
                (Some(x), Some(y)) => {
                    #[allow(dead_code)]
                    type $A = f32;
                    map_acc::<f32>(x, y, |$v| $body);
                    true
                }
                _ => false,
            },
            DType::F64 => match (as_t::<$T, f64>(x), as_t_mut::<$T, f64>(y)) {
                (Some(x), Some(y)) => {
                    #[allow(dead_code)]
                    type $A = f64;
                    map_acc::<f64>(x, y, |$v| $body);
                    true
                }
                _ => false,
            },
            DType::F16 => match (as_t::<$T, f16>(x), as_t_mut::<$T, f16>(y)) {
                (Some(x), Some(y)) => {
                    #[allow(dead_code)]
                    type $A = f32;
                    map_half::<f16>(x, y, |$v| $body);
                    true
                }
                _ => false,
            },
            DType::BF16 => match (as_t::<$T, bf16>(x), as_t_mut::<$T, bf16>(y)) {
                (Some(x), Some(y)) => {
                    #[allow(dead_code)]
                    type $A = f32;
                    map_half::<bf16>(x, y, |$v| $body);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }};
}

/// `x` where `x` is not `-inf`, else `+0` (the value SiLU and the GELUs take at `-inf`).
#[inline(always)]
fn zero_at_neg_inf<A: Lanes>(x: A::V, v: A::V) -> A::V {
    x.v_eq(A::V::splat(A::neg_infinity()))
        .v_select(A::V::splat(A::zero()), v)
}

/// The maps on flat slices; false when the element type is not handled here.
fn unary_flat<T: Element>(op: Unary, x: &[T], y: &mut [T]) -> bool {
    match op {
        Unary::Exp => dispatch1!(T, x, y, |v: A| math::exp::<A>(v)),
        Unary::Log => dispatch1!(T, x, y, |v: A| math::ln::<A>(v)),
        Unary::Sigmoid => dispatch1!(T, x, y, |v: A| math::sigmoid::<A>(v)),
        Unary::Silu => dispatch1!(T, x, y, |v: A| zero_at_neg_inf::<A>(
            v,
            v * math::sigmoid::<A>(v)
        )),
        Unary::Gelu => dispatch1!(T, x, y, |v: A| {
            let t = -v * <A as Lanes>::V::splat(A::lit(core::f64::consts::FRAC_1_SQRT_2));
            let g = <A as Lanes>::V::splat(A::lit(0.5)) * v * math::erfc::<A>(t);
            zero_at_neg_inf::<A>(v, g)
        }),
        Unary::GeluTanh => dispatch1!(T, x, y, |v: A| {
            let c = <A as Lanes>::V::splat(A::lit(0.797_884_560_802_865_4));
            let k = <A as Lanes>::V::splat(A::lit(0.044_715));
            let z = c * (v + k * v * v * v);
            zero_at_neg_inf::<A>(v, v * math::sigmoid::<A>(z + z))
        }),
        Unary::Softplus => dispatch1!(T, x, y, |v: A| {
            let zero = <A as Lanes>::V::splat(A::zero());
            let pos = v.v_gt(zero).v_select(v, zero);
            pos + math::ln_1p::<A>(math::exp::<A>(-v.v_abs()))
        }),
        Unary::Elu1 => dispatch1!(T, x, y, |v: A| {
            let zero = <A as Lanes>::V::splat(A::zero());
            let one = <A as Lanes>::V::splat(A::one());
            v.v_gt(zero).v_select(v + one, math::exp::<A>(v))
        }),
        Unary::Tanh => dispatch1!(T, x, y, |v: A| v.map(<A as Real>::tanh)),
        Unary::Relu => dispatch1!(T, x, y, |v: A| {
            let zero = <A as Lanes>::V::splat(A::zero());
            v.v_gt(zero).v_or(v.v_nan()).v_select(v, zero)
        }),
        Unary::Sqrt => dispatch1!(T, x, y, |v: A| v.v_sqrt()),
        Unary::Recip => dispatch1!(T, x, y, |v: A| <A as Lanes>::V::splat(A::one()) / v),
        Unary::Square => dispatch1!(T, x, y, |v: A| v * v),
        Unary::Abs => dispatch1!(T, x, y, |v: A| v.v_abs()),
        Unary::Neg => dispatch1!(T, x, y, |v: A| -v),
        Unary::Scale(c) => dispatch1!(T, x, y, |v: A| v * <A as Lanes>::V::splat(A::lit(c))),
        Unary::AddScalar(c) => {
            dispatch1!(T, x, y, |v: A| v + <A as Lanes>::V::splat(A::lit(c)))
        }
        _ => false,
    }
}

pub(crate) fn unary<T: Element>(
    op: Unary,
    x: View<'_, Reference, T>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    // The Reference's checks, in its order.
    let op = op.validate::<T::Acc>()?;
    check::shape("y", y.layout(), x.shape())?;
    if let (Some(xs), Some(ys)) = (flat(&x), flat_mut(&mut y)) {
        if xs.len() == ys.len() && unary_flat(op, xs, ys) {
            return Ok(());
        }
    }
    Reference.unary(op, x, y)
}

// ---- binary ----

/// IEEE 754-2019 `maximum` on vectors: NaN if either is, `+0` above `-0` (as
/// `seqcore::op::maximum`).
#[inline(always)]
fn vmaximum<A: Lanes>(a: A::V, b: A::V) -> A::V {
    let pick_a = a.v_gt(b).v_or(a.v_eq(b).v_and(b.v_sign()));
    let r = pick_a.v_select(a, b);
    a.v_nan().v_or(b.v_nan()).v_select(A::V::splat(A::nan()), r)
}

/// IEEE 754-2019 `minimum` on vectors: NaN if either is, `-0` below `+0`.
#[inline(always)]
fn vminimum<A: Lanes>(a: A::V, b: A::V) -> A::V {
    let pick_a = a.v_lt(b).v_or(a.v_eq(b).v_and(a.v_sign()));
    let r = pick_a.v_select(a, b);
    a.v_nan().v_or(b.v_nan()).v_select(A::V::splat(A::nan()), r)
}

/// One operand of a binary row: unit-stride elements, or one element broadcast (stride 0).
#[derive(Clone, Copy)]
enum Operand<'a, A> {
    Row(&'a [A]),
    Splat(A),
}

impl<A: Lanes> Operand<'_, A> {
    #[inline(always)]
    fn load(&self, j: usize, n: usize) -> A::V {
        match self {
            Operand::Row(s) => A::V::load_or(s.get(j..j + n).unwrap_or(&[]), A::one()),
            Operand::Splat(v) => A::V::splat(*v),
        }
    }
}

/// `y = f(a, b)` over one row of `n` elements in the accumulation type.
#[inline(always)]
fn zip_acc<A: Lanes>(
    a: Operand<'_, A>,
    b: Operand<'_, A>,
    y: &mut [A],
    f: impl Fn(A::V, A::V) -> A::V,
) {
    let l = A::LANES;
    let n = y.len();
    let mut j = 0;
    for yv in y.chunks_mut(l) {
        let m = yv.len();
        f(a.load(j, m), b.load(j, m)).store(yv);
        j += m;
    }
    debug_assert_eq!(j, n);
}

/// A binary row operand in the element type.
#[derive(Clone, Copy)]
enum Src<'a, T> {
    Row(&'a [T]),
    Splat(T),
}

/// `y = f(a, b)` for one row of element type `H` (f16/bf16) through f32 blocks.
fn zip_half<H: Element<Acc = f32>>(
    a: Src<'_, H>,
    b: Src<'_, H>,
    y: &mut [H],
    f: impl Fn(<f32 as Lanes>::V, <f32 as Lanes>::V) -> <f32 as Lanes>::V,
) {
    let (mut ab, mut bb, mut yb) = ([0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
    let mut j = 0;
    for ys in y.chunks_mut(BLOCK) {
        let n = ys.len();
        let op = |s: Src<'_, H>, buf: &mut [f32; BLOCK]| match s {
            Src::Row(r) => {
                widen::<H>(r.get(j..j + n).unwrap_or(&[]), head(buf, n));
                None
            }
            Src::Splat(v) => Some(v.to_acc()),
        };
        let (sa, sb) = (op(a, &mut ab), op(b, &mut bb));
        let oa = sa.map_or(Operand::Row(ab.get(..n).unwrap_or(&[])), Operand::Splat);
        let ob = sb.map_or(Operand::Row(bb.get(..n).unwrap_or(&[])), Operand::Splat);
        zip_acc::<f32>(oa, ob, head(&mut yb, n), &f);
        narrow::<H>(yb.get(..n).unwrap_or(&[]), ys);
        j += n;
    }
}

fn src_as<T: Element, U: bytemuck::Pod>(s: Src<'_, T>) -> Option<Src<'_, U>> {
    Some(match s {
        Src::Row(r) => Src::Row(as_t::<T, U>(r)?),
        Src::Splat(v) => Src::Splat(*as_t::<T, U>(core::slice::from_ref(&v))?.first()?),
    })
}

fn acc_operand<A: Lanes>(s: Src<'_, A>) -> Operand<'_, A> {
    match s {
        Src::Row(r) => Operand::Row(r),
        Src::Splat(v) => Operand::Splat(v),
    }
}

macro_rules! dispatch2 {
    ($T:ty, $a:expr, $b:expr, $y:expr, |$u:ident, $v:ident : $A:ident| $body:expr) => {{
        let (a, b, y) = ($a, $b, $y);
        match <$T>::DTYPE {
            DType::F32 => match (
                src_as::<$T, f32>(a),
                src_as::<$T, f32>(b),
                as_t_mut::<$T, f32>(y),
            ) {
                (Some(a), Some(b), Some(y)) => {
                    #[allow(dead_code)]
                    type $A = f32;
                    zip_acc::<f32>(acc_operand(a), acc_operand(b), y, |$u, $v| $body);
                    true
                }
                _ => false,
            },
            DType::F64 => match (
                src_as::<$T, f64>(a),
                src_as::<$T, f64>(b),
                as_t_mut::<$T, f64>(y),
            ) {
                (Some(a), Some(b), Some(y)) => {
                    #[allow(dead_code)]
                    type $A = f64;
                    zip_acc::<f64>(acc_operand(a), acc_operand(b), y, |$u, $v| $body);
                    true
                }
                _ => false,
            },
            DType::F16 => match (
                src_as::<$T, f16>(a),
                src_as::<$T, f16>(b),
                as_t_mut::<$T, f16>(y),
            ) {
                (Some(a), Some(b), Some(y)) => {
                    #[allow(dead_code)]
                    type $A = f32;
                    zip_half::<f16>(a, b, y, |$u, $v| $body);
                    true
                }
                _ => false,
            },
            DType::BF16 => match (
                src_as::<$T, bf16>(a),
                src_as::<$T, bf16>(b),
                as_t_mut::<$T, bf16>(y),
            ) {
                (Some(a), Some(b), Some(y)) => {
                    #[allow(dead_code)]
                    type $A = f32;
                    zip_half::<bf16>(a, b, y, |$u, $v| $body);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }};
}

/// One row of a binary map; false when the element type is not handled here.
fn binary_row<T: Element>(op: Binary, a: Src<'_, T>, b: Src<'_, T>, y: &mut [T]) -> bool {
    match op {
        Binary::Add => dispatch2!(T, a, b, y, |p, q: A| p + q),
        Binary::Sub => dispatch2!(T, a, b, y, |p, q: A| p - q),
        Binary::Mul => dispatch2!(T, a, b, y, |p, q: A| p * q),
        Binary::Div => dispatch2!(T, a, b, y, |p, q: A| p / q),
        Binary::Max => dispatch2!(T, a, b, y, |p, q: A| vmaximum::<A>(p, q)),
        Binary::Min => dispatch2!(T, a, b, y, |p, q: A| vminimum::<A>(p, q)),
        _ => false,
    }
}

/// A row operand of `v` at row offset `o`: its last axis unit-stride or broadcast.
fn src<'a, T: Element>(mem: &'a [T], o: usize, n: usize, stride: usize) -> Option<Src<'a, T>> {
    if stride == 0 && n > 1 {
        Some(Src::Splat(*mem.get(o)?))
    } else if stride == 1 || n <= 1 {
        Some(Src::Row(span(mem, o, n)?))
    } else {
        None
    }
}

pub(crate) fn binary<T: Element>(
    op: Binary,
    a: View<'_, Reference, T>,
    b: View<'_, Reference, T>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    check::shape("b", b.layout(), a.shape())?;
    check::shape("y", y.layout(), a.shape())?;
    // Everything contiguous: one flat row.
    if let (Some(asl), Some(bsl)) = (flat(&a), flat(&b)) {
        if let Some(ys) = flat_mut(&mut y) {
            if binary_row(op, Src::Row(asl), Src::Row(bsl), ys) {
                return Ok(());
            }
        }
    }
    // Rows whose last axis is unit-stride (y) and unit-stride or broadcast (a, b).
    let (arows, n, sa) = a.layout().split_last();
    let (brows, _, sb) = b.layout().split_last();
    let (yrows, _, sy) = y.layout().split_last();
    let handled = (n <= 1 || (sy == 1 && sa <= 1 && sb <= 1))
        && matches!(T::DTYPE, DType::F32 | DType::F64 | DType::F16 | DType::BF16);
    if handled && y.layout().is_non_overlapping() {
        let (am, bm) = (a.mem(), b.mem());
        let ym = y.mem_mut();
        for ((ao, bo), yo) in arows.offsets().zip(brows.offsets()).zip(yrows.offsets()) {
            let (Some(ra), Some(rb)) = (src(am, ao, n, sa), src(bm, bo, n, sb)) else {
                return Err(seqcore::Error::OutOfBounds {
                    arg: "view",
                    end: ao.max(bo).saturating_add(n),
                    len: am.len().min(bm.len()),
                });
            };
            let ylen = ym.len();
            let Some(ry) = span_mut(ym, yo, n) else {
                return Err(seqcore::Error::OutOfBounds {
                    arg: "view",
                    end: yo.saturating_add(n),
                    len: ylen,
                });
            };
            binary_row(op, ra, rb, ry);
        }
        return Ok(());
    }
    Reference.binary(op, a, b, y)
}

// ---- cast ----

/// `dst = D::from_f64(src.to_f64())` (the Reference's definition: one rounding), on flat
/// slices; vectorised where the element types allow: exact widenings, f32 → f16/bf16 (one
/// rounding from a value that f32 holds exactly), f64 → f32 (`cvtpd2ps`). f64 → f16/bf16 goes
/// through seqcore's round-to-odd `from_f64`, element by element, never through a rounded f32.
fn cast_flat<S: Element, D: Element>(x: &[S], y: &mut [D]) -> bool {
    let exact_in_f32 = matches!(S::DTYPE, DType::F32 | DType::F16 | DType::BF16);
    if S::DTYPE == D::DTYPE {
        if let Some(xs) = as_t::<S, u8>(x) {
            if let Some(ys) = as_t_mut::<D, u8>(y) {
                if xs.len() == ys.len() {
                    ys.copy_from_slice(xs);
                    return true;
                }
            }
        }
        return false;
    }
    if exact_in_f32 {
        // S -> f32 exactly, then f32 -> D with D's single rounding (or exact widening to f64).
        let mut buf = [0f32; BLOCK];
        for (xb, yb) in x.chunks(BLOCK).zip(y.chunks_mut(BLOCK)) {
            let b = head(&mut buf, xb.len());
            match S::DTYPE {
                DType::F32 => match as_t::<S, f32>(xb) {
                    Some(s) => b.copy_from_slice(s),
                    None => return false,
                },
                DType::F16 => match as_t::<S, f16>(xb) {
                    Some(s) => widen::<f16>(s, b),
                    None => return false,
                },
                _ => match as_t::<S, bf16>(xb) {
                    Some(s) => widen::<bf16>(s, b),
                    None => return false,
                },
            }
            match D::DTYPE {
                DType::F32 => match as_t_mut::<D, f32>(yb) {
                    Some(d) => d.copy_from_slice(b),
                    None => return false,
                },
                DType::F64 => match as_t_mut::<D, f64>(yb) {
                    Some(d) => {
                        for (d, s) in d.iter_mut().zip(b.iter()) {
                            *d = f64::from(*s);
                        }
                    }
                    None => return false,
                },
                DType::F16 => match as_t_mut::<D, f16>(yb) {
                    Some(d) => narrow::<f16>(b, d),
                    None => return false,
                },
                DType::BF16 => match as_t_mut::<D, bf16>(yb) {
                    Some(d) => narrow::<bf16>(b, d),
                    None => return false,
                },
                _ => return false,
            }
        }
        return true;
    }
    // From f64: every destination rounds once through its own `from_f64`.
    for (d, s) in y.iter_mut().zip(x) {
        *d = D::from_f64(s.to_f64());
    }
    true
}

pub(crate) fn cast<S: Element, D: Element>(
    x: View<'_, Reference, S>,
    mut y: ViewMut<'_, Reference, D>,
) -> Result<()> {
    check::shape("y", y.layout(), x.shape())?;
    if let (Some(xs), Some(ys)) = (flat(&x), flat_mut(&mut y)) {
        if xs.len() == ys.len() && cast_flat(xs, ys) {
            return Ok(());
        }
    }
    Reference.cast(x, y)
}
