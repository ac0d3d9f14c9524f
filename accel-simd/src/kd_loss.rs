//! Distillation losses with their gradients (Hinton et al. 2015; GKD, Agarwal et al. 2024;
//! DistiLLM, Ko et al. 2024) and cross-entropy with label smoothing (Szegedy et al. 2016), on the
//! build's vectors.
//!
//! The same computation as seqcore's portable kernels (`seqcore::portable::kd_loss`, whose docs
//! give every divergence, its gradient and the edge-case policy), row by row over contiguous rows:
//!
//! 1. both rows' maxima, then both log-sum-exps `z = m + ln sum exp(x / T - m)` (two passes over a
//!    row that stays in L2, one exponential per element; the online form of Milakov & Gimelshein
//!    2018 would need two); a row whose maximum is `+inf` takes the portable online form so that
//!    its NaNs land where the reference's do;
//! 2. the divergence, each term `(phi_i, g_i)` of seqcore's table evaluated lane-wise with
//!    [`math::exp`] / [`math::ln`], `0 ln 0 = 0` and the `q = 0` skips as selects;
//! 3. the gradient `c/T q_j (g_j - sum_i q_i g_i)` (forward KL: `c/T (q_j - p_j)`, written in
//!    pass 2 since it needs no row total).
//!
//! f16 / bf16 rows are widened to f32 block by block into stack buffers (no heap) and the gradient
//! rounded once at the store. Tails are padded with `-inf` logits, which give `p = q = 0` and so
//! contribute nothing. Layouts whose last axis is not contiguous take the portable kernel; the
//! arguments are checked first by the portable kernel's own checks (`check_kd`, `check_sparse`,
//! `check_ce`), so both answer the same `Err`.

use seqcore::portable::kd_loss::{
    CeConfig, CeRows, KdConfig, KdReduction, KdRows, Kind, Probs, SparseBuckets, SparseRows,
    check_ce, check_kd, check_sparse, count_kept, factors, get, next_kept, row_weight,
    smoothing_share, sparse_buckets, sparse_top_grad,
};
use seqcore::{
    Backend, DType, Element, Error, Layout, Offsets, Real, Reference, Result, View, ViewMut, bf16,
    f16,
};

use crate::lanes::{Lanes, Vector, narrow, widen};
use crate::math;

/// Elements widened per block for f16 / bf16 rows.
const BLOCK: usize = 512;

/// `v` as a view of `U` when `U` is `T` (same dtype tag; bytemuck checks size and alignment).
fn recast<'a, T: Element, U: Element>(v: View<'a, Reference, T>) -> Option<View<'a, Reference, U>> {
    if T::DTYPE != U::DTYPE {
        return None;
    }
    let mem: &[U] = bytemuck::try_cast_slice(v.mem()).ok()?;
    View::new(mem, *v.layout()).ok()
}

/// [`recast`] for a writable view.
fn recast_mut<'a, T: Element, U: Element>(
    v: ViewMut<'a, Reference, T>,
) -> Option<ViewMut<'a, Reference, U>> {
    if T::DTYPE != U::DTYPE {
        return None;
    }
    let (mem, layout) = v.into_parts();
    let mem: &mut [U] = bytemuck::try_cast_slice_mut(mem).ok()?;
    ViewMut::new(mem, layout).ok()
}

/// Recasts an optional view; `Err(())` when it cannot.
fn recast_opt<'a, T: Element, U: Element>(
    v: Option<View<'a, Reference, T>>,
) -> core::result::Result<Option<View<'a, Reference, U>>, ()> {
    match v {
        Some(v) => recast(v).map(Some).ok_or(()),
        None => Ok(None),
    }
}

/// Recasts an optional writable view; `Err(())` when it cannot.
fn recast_opt_mut<'a, T: Element, U: Element>(
    v: Option<ViewMut<'a, Reference, T>>,
) -> core::result::Result<Option<ViewMut<'a, Reference, U>>, ()> {
    match v {
        Some(v) => recast_mut(v).map(Some).ok_or(()),
        None => Ok(None),
    }
}

/// Dispatches a generic call on `T::DTYPE` to the concrete element type `$u` (whose accumulation
/// type has vectors), or runs `$fallback` for an element type this crate does not know.
macro_rules! dispatch {
    ($t:ty, $body:ident, $fallback:expr) => {
        match <$t>::DTYPE {
            DType::F32 => $body!(f32),
            DType::F64 => $body!(f64),
            DType::F16 => $body!(f16),
            DType::BF16 => $body!(bf16),
            #[allow(unreachable_patterns)] // DType is non-exhaustive upstream
            _ => $fallback,
        }
    };
}

/// Distillation loss and gradient (seqcore's `kd_loss`), vectorised over each row.
pub(crate) fn kd_loss<T: Element>(
    cfg: &KdConfig,
    teacher: View<'_, Reference, T>,
    student: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, u8>>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    macro_rules! go {
        ($u:ty) => {
            match (
                recast::<T, $u>(teacher),
                recast::<T, $u>(student),
                recast_mut::<T, $u>(loss),
                recast_opt_mut::<T, $u>(grad),
            ) {
                (Some(t), Some(s), Some(l), Ok(g)) => dense::<$u>(cfg, t, s, mask, l, g),
                // Unreachable: the tag matched, so the casts hold.
                _ => Err(Error::Unsupported {
                    op: "kd_loss",
                    backend: "simd",
                }),
            }
        };
    }
    dispatch!(
        T,
        go,
        Reference.kd_loss(cfg, teacher, student, mask, loss, grad)
    )
}

/// Sparse-teacher distillation (seqcore's `kd_loss_sparse`), the student's row passes vectorised.
#[allow(clippy::too_many_arguments)] // the kernel's operands
pub(crate) fn kd_loss_sparse<T: Element>(
    cfg: &KdConfig,
    values: View<'_, Reference, T>,
    indices: View<'_, Reference, u32>,
    tail: Option<View<'_, Reference, T>>,
    student: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, u8>>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    macro_rules! go {
        ($u:ty) => {
            match (
                recast::<T, $u>(values),
                recast_opt::<T, $u>(tail),
                recast::<T, $u>(student),
                recast_mut::<T, $u>(loss),
                recast_opt_mut::<T, $u>(grad),
            ) {
                (Some(vv), Ok(tv), Some(s), Some(l), Ok(g)) => {
                    sparse::<$u>(cfg, vv, indices, tv, s, mask, l, g)
                }
                _ => Err(Error::Unsupported {
                    op: "kd_loss_sparse",
                    backend: "simd",
                }),
            }
        };
    }
    dispatch!(
        T,
        go,
        Reference.kd_loss_sparse(cfg, values, indices, tail, student, mask, loss, grad)
    )
}

/// Cross-entropy with label smoothing (seqcore's `cross_entropy`), vectorised over each row.
pub(crate) fn cross_entropy<T: Element>(
    cfg: &CeConfig,
    logits: View<'_, Reference, T>,
    targets: View<'_, Reference, i32>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    macro_rules! go {
        ($u:ty) => {
            match (
                recast::<T, $u>(logits),
                recast_mut::<T, $u>(loss),
                recast_opt_mut::<T, $u>(grad),
            ) {
                (Some(x), Some(l), Ok(g)) => ce::<$u>(cfg, x, targets, l, g),
                _ => Err(Error::Unsupported {
                    op: "cross_entropy",
                    backend: "simd",
                }),
            }
        };
    }
    dispatch!(
        T,
        go,
        Reference.cross_entropy(cfg, logits, targets, loss, grad)
    )
}

// ---------------------------------------------------------------------------------------------
// Checks and bookkeeping, as the portable kernel's.

/// The contiguous row `[o, o + len)` of a host slice.
fn row<'m, T>(mem: &'m [T], o: usize, len: usize, arg: &'static str) -> Result<&'m [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    let end = o.saturating_add(len);
    mem.get(o..end).ok_or(Error::OutOfBounds {
        arg,
        end,
        len: mem.len(),
    })
}

/// [`row`], writable.
fn row_mut<'m, T>(
    mem: &'m mut [T],
    o: usize,
    len: usize,
    arg: &'static str,
) -> Result<&'m mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    let end = o.saturating_add(len);
    let n = mem.len();
    mem.get_mut(o..end)
        .ok_or(Error::OutOfBounds { arg, end, len: n })
}

/// The writable outputs, walked row by row: the loss (per row, or summed) and the gradient rows.
struct Outputs<'a, 'b, T: Element> {
    loss: ViewMut<'a, Reference, T>,
    loss_rows: Option<Offsets>,
    grad: Option<(ViewMut<'b, Reference, T>, Offsets)>,
    total: T::Acc,
}

impl<'a, 'b, T: Element> Outputs<'a, 'b, T> {
    fn new(
        reduction: KdReduction,
        loss: ViewMut<'a, Reference, T>,
        grad: Option<ViewMut<'b, Reference, T>>,
    ) -> Self {
        let loss_rows = (reduction == KdReduction::None).then(|| loss.layout().offsets());
        let grad = grad.map(|g| {
            let (rows, _, _) = g.layout().split_last();
            (g, rows.offsets())
        });
        Outputs {
            loss,
            loss_rows,
            grad,
            total: T::Acc::zero(),
        }
    }

    /// Records the next row's loss (already weighted).
    fn loss(&mut self, l: T::Acc) -> Result<()> {
        match self.loss_rows.as_mut() {
            Some(it) => {
                if let Some(o) = it.next() {
                    let (mem, _) = self.loss.parts();
                    let len = mem.len();
                    *mem.get_mut(o).ok_or(Error::OutOfBounds {
                        arg: "loss",
                        end: o.saturating_add(1),
                        len,
                    })? = T::from_acc(l);
                }
            }
            None => self.total += l,
        }
        Ok(())
    }

    /// The next gradient row (contiguous, `v` long), `None` without a gradient.
    fn grad_row(&mut self, v: usize) -> Result<Option<&mut [T]>> {
        match self.grad.as_mut() {
            Some((g, it)) => match it.next() {
                Some(o) => row_mut(g.mem_mut(), o, v, "grad").map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// A row that contributes nothing: loss 0, gradient 0.
    fn nothing(&mut self, v: usize) -> Result<()> {
        self.loss(T::Acc::zero())?;
        if let Some(g) = self.grad_row(v)? {
            g.fill(T::from_acc(T::Acc::zero()));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        if self.loss_rows.is_none() {
            let o = self.loss.layout().offset();
            let (mem, _) = self.loss.parts();
            let len = mem.len();
            *mem.get_mut(o).ok_or(Error::OutOfBounds {
                arg: "loss",
                end: o.saturating_add(1),
                len,
            })? = T::from_acc(self.total);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Row passes on the build's vectors.

/// `x` as a slice of its accumulation type when it is one (f32 rows, f64 rows).
fn as_acc<T: Element>(x: &[T]) -> Option<&[T::Acc]> {
    if matches!(T::DTYPE, DType::F32 | DType::F64) && size_of::<T>() == size_of::<T::Acc>() {
        bytemuck::try_cast_slice(x).ok()
    } else {
        None
    }
}

/// [`as_acc`], writable.
fn as_acc_mut<T: Element>(x: &mut [T]) -> Option<&mut [T::Acc]> {
    if matches!(T::DTYPE, DType::F32 | DType::F64) && size_of::<T>() == size_of::<T::Acc>() {
        bytemuck::try_cast_slice_mut(x).ok()
    } else {
        None
    }
}

/// Calls `f` on the vectors of `a` (tail lanes `fill`).
#[inline(always)]
fn each1<A: Lanes>(a: &[A], fill: A, mut f: impl FnMut(A::V)) {
    let mut ca = a.chunks_exact(A::LANES);
    for x in &mut ca {
        f(A::V::load_or(x, fill));
    }
    let r = ca.remainder();
    if !r.is_empty() {
        f(A::V::load_or(r, fill));
    }
}

/// Calls `f` on the vectors of `a` and `b` (equal lengths; tail lanes `fill`).
#[inline(always)]
fn each2<A: Lanes>(a: &[A], b: &[A], fill: A, mut f: impl FnMut(A::V, A::V)) {
    let mut ca = a.chunks_exact(A::LANES);
    let mut cb = b.chunks_exact(A::LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        f(A::V::load_or(x, fill), A::V::load_or(y, fill));
    }
    let (ra, rb) = (ca.remainder(), cb.remainder());
    if !ra.is_empty() {
        f(A::V::load_or(ra, fill), A::V::load_or(rb, fill));
    }
}

/// Stores `f` of the vectors of `a` and `b` into `o` (equal lengths; tail lanes `fill`).
#[inline(always)]
fn map2<A: Lanes>(a: &[A], b: &[A], o: &mut [A], fill: A, mut f: impl FnMut(A::V, A::V) -> A::V) {
    let mut ca = a.chunks_exact(A::LANES);
    let mut cb = b.chunks_exact(A::LANES);
    let mut co = o.chunks_exact_mut(A::LANES);
    for ((x, y), z) in (&mut ca).zip(&mut cb).zip(&mut co) {
        f(A::V::load_or(x, fill), A::V::load_or(y, fill)).store(z);
    }
    let (ra, rb, ro) = (ca.remainder(), cb.remainder(), co.into_remainder());
    if !ra.is_empty() {
        f(A::V::load_or(ra, fill), A::V::load_or(rb, fill)).store(ro);
    }
}

/// Runs `f` over two rows of `T` (equal lengths) as slices of `T::Acc`: at once for f32 / f64,
/// block by block through stack buffers for f16 / bf16.
#[inline(always)]
fn blocks2<T: Element>(x: &[T], y: &[T], mut f: impl FnMut(&[T::Acc], &[T::Acc]))
where
    T::Acc: Lanes,
{
    if let (Some(a), Some(b)) = (as_acc::<T>(x), as_acc::<T>(y)) {
        f(a, b);
        return;
    }
    let mut ba = [T::Acc::zero(); BLOCK];
    let mut bb = [T::Acc::zero(); BLOCK];
    for (cx, cy) in x.chunks(BLOCK).zip(y.chunks(BLOCK)) {
        let n = cx.len().min(cy.len());
        let (wa, wb) = (
            ba.get_mut(..n).unwrap_or(&mut []),
            bb.get_mut(..n).unwrap_or(&mut []),
        );
        widen::<T>(cx, wa);
        widen::<T>(cy, wb);
        f(wa, wb);
    }
}

/// Runs `f` over one row of `T` as slices of `T::Acc` (see [`blocks2`]).
#[inline(always)]
fn blocks1<T: Element>(x: &[T], mut f: impl FnMut(&[T::Acc]))
where
    T::Acc: Lanes,
{
    if let Some(a) = as_acc::<T>(x) {
        f(a);
        return;
    }
    let mut ba = [T::Acc::zero(); BLOCK];
    for cx in x.chunks(BLOCK) {
        let wa = ba.get_mut(..cx.len()).unwrap_or(&mut []);
        widen::<T>(cx, wa);
        f(wa);
    }
}

/// Writes `out[j] = f(x[j], y[j])` lane-wise over rows of `T` (equal lengths), rounding once
/// to `T`; tail lanes read `fill`.
#[inline(always)]
fn write2<T: Element>(
    x: &[T],
    y: &[T],
    out: &mut [T],
    fill: T::Acc,
    mut f: impl FnMut(<T::Acc as Lanes>::V, <T::Acc as Lanes>::V) -> <T::Acc as Lanes>::V,
) where
    T::Acc: Lanes,
{
    if let (Some(a), Some(b)) = (as_acc::<T>(x), as_acc::<T>(y)) {
        if let Some(o) = as_acc_mut::<T>(out) {
            map2::<T::Acc>(a, b, o, fill, f);
            return;
        }
    }
    let mut ba = [T::Acc::zero(); BLOCK];
    let mut bb = [T::Acc::zero(); BLOCK];
    let mut bo = [T::Acc::zero(); BLOCK];
    for ((cx, cy), co) in x
        .chunks(BLOCK)
        .zip(y.chunks(BLOCK))
        .zip(out.chunks_mut(BLOCK))
    {
        let n = cx.len().min(cy.len()).min(co.len());
        let wa = ba.get_mut(..n).unwrap_or(&mut []);
        let wb = bb.get_mut(..n).unwrap_or(&mut []);
        let wo = bo.get_mut(..n).unwrap_or(&mut []);
        widen::<T>(cx, wa);
        widen::<T>(cy, wb);
        map2::<T::Acc>(wa, wb, wo, fill, &mut f);
        narrow::<T>(wo, co);
    }
}

/// Writes `out[j] = f(x[j])` lane-wise (see [`write2`]).
#[inline(always)]
fn write1<T: Element>(
    x: &[T],
    out: &mut [T],
    fill: T::Acc,
    mut f: impl FnMut(<T::Acc as Lanes>::V) -> <T::Acc as Lanes>::V,
) where
    T::Acc: Lanes,
{
    write2::<T>(x, x, out, fill, |a, _| f(a));
}

/// The portable online log-sum-exp of `x / t` (for rows whose maximum is `+inf`, where the
/// order of the updates decides which elements turn NaN).
fn lse_online<A: Real>(xs: impl Iterator<Item = A>, t: A) -> A {
    let (mut m, mut l) = (A::neg_infinity(), A::zero());
    for x in xs {
        let x = x / t;
        if x > m {
            l = l * (m - x).exp() + A::one();
            m = x;
        } else if x != A::neg_infinity() {
            l += (x - m).exp();
        }
    }
    if m == A::neg_infinity() {
        m
    } else {
        m + l.ln()
    }
}

/// `ln sum_i exp(x_i / t)` of one row (`t > 0`; divided, not multiplied by `1 / t`, and
/// rounded before the maximum is taken off, as the portable kernel does, so that the largest
/// element's `x / t - z` is exactly 0 where the portable kernel's is): `-inf` when no element is finite (NaN too are
/// skipped by the maximum, as the portable form skips them before any finite element), NaN when
/// a NaN meets a finite element.
fn lse_row<T: Element>(x: &[T], t: T::Acc) -> T::Acc
where
    T::Acc: Lanes,
{
    lse_rows::<T>(x, x, t).0
}

/// [`lse_row`] of two rows of equal length at once.
fn lse_rows<T: Element>(x: &[T], y: &[T], t: T::Acc) -> (T::Acc, T::Acc)
where
    T::Acc: Lanes,
{
    type V<A> = <A as Lanes>::V;
    let ninf = T::Acc::neg_infinity();
    let (mut mx, mut my) = (V::<T::Acc>::splat(ninf), V::<T::Acc>::splat(ninf));
    blocks2::<T>(x, y, |a, b| {
        each2::<T::Acc>(a, b, ninf, |u, w| {
            mx = mx.max(u);
            my = my.max(w);
        });
    });
    let hmax = |v: V<T::Acc>| {
        v.lanes()
            .iter()
            .copied()
            .fold(ninf, |m, e| if e > m { e } else { m })
    };
    let (mx, my) = (hmax(mx) / t, hmax(my) / t);
    let finite = |m: T::Acc| m.is_finite();
    if !(finite(mx) && finite(my)) {
        // -inf: no distribution; +inf: the portable order of updates (rare, exact replica).
        let lx = if mx == ninf {
            ninf
        } else {
            lse_online(x.iter().map(|e| e.to_acc()), t)
        };
        let ly = if my == ninf {
            ninf
        } else {
            lse_online(y.iter().map(|e| e.to_acc()), t)
        };
        if finite(mx) {
            return (lse_finite::<T>(x, t, mx), ly);
        }
        if finite(my) {
            return (lx, lse_finite::<T>(y, t, my));
        }
        return (lx, ly);
    }
    let (vt, nx, ny) = (
        V::<T::Acc>::splat(t),
        V::<T::Acc>::splat(-mx),
        V::<T::Acc>::splat(-my),
    );
    let zero = V::<T::Acc>::splat(T::Acc::zero());
    let (mut sx, mut sy) = (zero, zero);
    blocks2::<T>(x, y, |a, b| {
        each2::<T::Acc>(a, b, ninf, |u, w| {
            sx = sx + math::exp::<T::Acc>(u / vt + nx);
            sy = sy + math::exp::<T::Acc>(w / vt + ny);
        });
    });
    (mx + sx.reduce_add().ln(), my + sy.reduce_add().ln())
}

/// `m + ln sum exp(x_i / t - m)` of one row whose scaled maximum `m` is finite.
fn lse_finite<T: Element>(x: &[T], t: T::Acc, m: T::Acc) -> T::Acc
where
    T::Acc: Lanes,
{
    type V<A> = <A as Lanes>::V;
    let (vt, nm) = (V::<T::Acc>::splat(t), V::<T::Acc>::splat(-m));
    let mut sum = V::<T::Acc>::splat(T::Acc::zero());
    blocks1::<T>(x, |a| {
        each1::<T::Acc>(a, T::Acc::neg_infinity(), |u| {
            sum = sum + math::exp::<T::Acc>(u / vt + nm);
        });
    });
    m + sum.reduce_add().ln()
}

// ---------------------------------------------------------------------------------------------
// The divergences, lane-wise.

/// `x (lx - ly)`, 0 where `x = 0` (`0 ln 0 = 0` whatever `ly`).
#[inline(always)]
fn xlog<A: Lanes>(x: A::V, lx: A::V, ly: A::V) -> A::V {
    let zero = A::V::splat(A::zero());
    x.select_eq(zero, zero, x * (lx - ly))
}

/// The lane-wise term `(phi, g)` of a divergence, as [`Kind::term`].
trait Term<A: Lanes>: Copy {
    /// Whether `g` is `-p / q` (forward KL: the gradient is `q - p`, no row total).
    const FWD: bool = false;
    fn term(self, p: A::V, q: A::V, lp: A::V, lq: A::V) -> (A::V, A::V);
}

#[derive(Clone, Copy)]
struct Fwd;
#[derive(Clone, Copy)]
struct Rev;
#[derive(Clone, Copy)]
struct Jsd<A>(A);
#[derive(Clone, Copy)]
struct Tv;
#[derive(Clone, Copy)]
struct SkewF<A>(A);
#[derive(Clone, Copy)]
struct SkewR<A>(A);

impl<A: Lanes> Term<A> for Fwd {
    const FWD: bool = true;
    #[inline(always)]
    fn term(self, p: A::V, q: A::V, lp: A::V, lq: A::V) -> (A::V, A::V) {
        let zero = A::V::splat(A::zero());
        (xlog::<A>(p, lp, lq), p.select_eq(zero, zero, -p / q))
    }
}

impl<A: Lanes> Term<A> for Rev {
    #[inline(always)]
    fn term(self, p: A::V, q: A::V, lp: A::V, lq: A::V) -> (A::V, A::V) {
        let _ = p;
        (xlog::<A>(q, lq, lp), lq - lp + A::V::splat(A::one()))
    }
}

impl<A: Lanes> Term<A> for Jsd<A> {
    #[inline(always)]
    fn term(self, p: A::V, q: A::V, lp: A::V, lq: A::V) -> (A::V, A::V) {
        let (b, ob) = (A::V::splat(self.0), A::V::splat(A::one() - self.0));
        let m = b * p + ob * q;
        let lm = math::ln::<A>(m);
        let phi = b * xlog::<A>(p, lp, lm) + ob * xlog::<A>(q, lq, lm);
        (phi, ob * (lq - lm))
    }
}

impl<A: Lanes> Term<A> for Tv {
    #[inline(always)]
    fn term(self, p: A::V, q: A::V, _lp: A::V, _lq: A::V) -> (A::V, A::V) {
        let zero = A::V::splat(A::zero());
        let half = A::V::splat(A::lit(0.5));
        let d = q - p;
        let s = d.select_gt(zero, half, zero.select_gt(d, -half, zero));
        (d.abs() * half, s)
    }
}

impl<A: Lanes> Term<A> for SkewF<A> {
    #[inline(always)]
    fn term(self, p: A::V, q: A::V, lp: A::V, _lq: A::V) -> (A::V, A::V) {
        let zero = A::V::splat(A::zero());
        let (a, oa) = (A::V::splat(self.0), A::V::splat(A::one() - self.0));
        let m = a * p + oa * q;
        let g = p.select_eq(zero, zero, -oa * p / m);
        (xlog::<A>(p, lp, math::ln::<A>(m)), g)
    }
}

impl<A: Lanes> Term<A> for SkewR<A> {
    #[inline(always)]
    fn term(self, p: A::V, q: A::V, _lp: A::V, lq: A::V) -> (A::V, A::V) {
        let zero = A::V::splat(A::zero());
        let (a, oa) = (A::V::splat(self.0), A::V::splat(A::one() - self.0));
        let m = a * q + oa * p;
        let lm = math::ln::<A>(m);
        let g = q.select_eq(zero, zero, lq - lm + A::V::splat(A::one()) - a * q / m);
        (xlog::<A>(q, lq, lm), g)
    }
}

// ---------------------------------------------------------------------------------------------
// Dense distillation.

fn dense<T: Element>(
    cfg: &KdConfig,
    teacher: View<'_, Reference, T>,
    student: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, u8>>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()>
where
    T::Acc: Lanes,
{
    let KdRows {
        teacher: trows,
        student: srows,
        len: v,
        teacher_stride: ts,
        student_stride: ss,
    } = check_kd::<T::Acc>(
        cfg,
        teacher.layout(),
        student.layout(),
        mask.as_ref().map(View::layout),
        loss.layout(),
        grad.as_ref().map(ViewMut::layout),
    )?;
    let gs = grad.as_ref().map_or(1, |g| g.layout().split_last().2);
    if v > 1 && (ts != 1 || ss != 1 || gs != 1) {
        return Reference.kd_loss(cfg, teacher, student, mask, loss, grad);
    }
    let kind = Kind::<T::Acc>::of(cfg.divergence);
    let d = Dense {
        trows,
        srows,
        v,
        tm: teacher.mem(),
        sm: student.mem(),
        mask: mask.as_ref(),
    };
    let mut out = Outputs::new(cfg.reduction, loss, grad);
    let w = row_weight::<T::Acc>(cfg.reduction, count_kept(mask.as_ref(), &trows));
    match kind {
        Kind::Fwd => d.run(cfg, w, Fwd, &mut out)?,
        Kind::Rev => d.run(cfg, w, Rev, &mut out)?,
        Kind::Jsd(b) => d.run(cfg, w, Jsd(b), &mut out)?,
        Kind::Tv => d.run(cfg, w, Tv, &mut out)?,
        Kind::SkewF(a) => d.run(cfg, w, SkewF(a), &mut out)?,
        Kind::SkewR(a) => d.run(cfg, w, SkewR(a), &mut out)?,
    }
    out.finish()
}

/// The rows of a dense call.
struct Dense<'a, 'm, T> {
    trows: Layout,
    srows: Layout,
    v: usize,
    tm: &'a [T],
    sm: &'a [T],
    mask: Option<&'m View<'a, Reference, u8>>,
}

impl<T: Element> Dense<'_, '_, T>
where
    T::Acc: Lanes,
{
    /// Every row with the divergence `k`.
    fn run<K: Term<T::Acc>>(
        &self,
        cfg: &KdConfig,
        w: T::Acc,
        k: K,
        out: &mut Outputs<'_, '_, T>,
    ) -> Result<()> {
        type V<A> = <A as Lanes>::V;
        let (inv_t, t, f) = factors::<T::Acc>(cfg);
        let v = self.v;
        let zero = T::Acc::zero();
        let ninf = T::Acc::neg_infinity();
        let vz = V::<T::Acc>::splat(zero);
        let mut moffs = self.mask.map(|m| m.layout().offsets());
        let wants_grad = out.grad.is_some();
        for (to, so) in self.trows.offsets().zip(self.srows.offsets()) {
            if !next_kept(&mut moffs, self.mask) {
                out.nothing(v)?;
                continue;
            }
            let tr = row(self.tm, to, v, "teacher")?;
            let sr = row(self.sm, so, v, "student")?;
            let (zt, zs) = lse_rows::<T>(tr, sr, t);
            if zt == ninf || zs == ninf {
                out.nothing(v)?;
                continue;
            }
            let (vt, nzt, nzs) = (
                V::<T::Acc>::splat(t),
                V::<T::Acc>::splat(-zt),
                V::<T::Acc>::splat(-zs),
            );
            let probs = |a: V<T::Acc>, b: V<T::Acc>| {
                let (lp, lq) = (a / vt + nzt, b / vt + nzs);
                (math::exp::<T::Acc>(lp), lp, math::exp::<T::Acc>(lq), lq)
            };
            let c = f * w;
            let cg = V::<T::Acc>::splat(c * inv_t);
            let mut l = vz;
            if K::FWD && wants_grad {
                // One pass: the loss and the gradient c/T (q - p), which needs no row total.
                if let Some(g) = out.grad_row(v)? {
                    write2::<T>(tr, sr, g, ninf, |a, b| {
                        let (p, lp, q, lq) = probs(a, b);
                        l = l + k.term(p, q, lp, lq).0;
                        cg * (q - p)
                    });
                }
                out.loss(c * l.reduce_add())?;
                continue;
            }
            // Pass 2: the loss and sum_i q_i g_i.
            let mut gq = vz;
            blocks2::<T>(tr, sr, |a, b| {
                each2::<T::Acc>(a, b, ninf, |a, b| {
                    let (p, lp, q, lq) = probs(a, b);
                    let (phi, g) = k.term(p, q, lp, lq);
                    l = l + phi;
                    if wants_grad {
                        gq = gq + q.select_eq(vz, vz, q * g);
                    }
                });
            });
            out.loss(c * l.reduce_add())?;
            // Pass 3: the gradient c/T q_j (g_j - sum_i q_i g_i).
            if let Some(g) = out.grad_row(v)? {
                let gq = V::<T::Acc>::splat(gq.reduce_add());
                write2::<T>(tr, sr, g, ninf, |a, b| {
                    let (p, lp, q, lq) = probs(a, b);
                    let gj = k.term(p, q, lp, lq).1;
                    q.select_eq(vz, vz, cg * q * (gj - gq))
                });
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Sparse-teacher distillation.

#[allow(clippy::too_many_arguments)] // the kernel's operands
#[allow(clippy::too_many_lines)] // checks, validation and the row loop, in the portable order
fn sparse<T: Element>(
    cfg: &KdConfig,
    values: View<'_, Reference, T>,
    indices: View<'_, Reference, u32>,
    tail: Option<View<'_, Reference, T>>,
    student: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, u8>>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()>
where
    T::Acc: Lanes,
{
    type V<A> = <A as Lanes>::V;
    let SparseRows {
        values: vrows,
        k,
        values_stride: vs,
        indices: irows,
        indices_stride: is,
        student: srows,
        len: v,
        student_stride: ss,
    } = check_sparse(
        cfg,
        values.layout(),
        &indices,
        tail.as_ref(),
        student.layout(),
        mask.as_ref(),
        loss.layout(),
        grad.as_ref().map(ViewMut::layout),
    )?;
    let gs = grad.as_ref().map_or(1, |g| g.layout().split_last().2);
    if v > 1 && (ss != 1 || gs != 1) {
        return Reference.kd_loss_sparse(cfg, values, indices, tail, student, mask, loss, grad);
    }
    let kind = Kind::<T::Acc>::of(cfg.divergence);
    let (inv_t, t, f) = factors::<T::Acc>(cfg);
    let w = row_weight::<T::Acc>(cfg.reduction, count_kept(mask.as_ref(), &vrows));
    let mut out = Outputs::new(cfg.reduction, loss, grad);
    let mut moffs = mask.as_ref().map(|m| m.layout().offsets());
    let mut toffs = tail.as_ref().map(|t| t.layout().offsets());
    let (vm, im, sm) = (values.mem(), indices.mem(), student.mem());
    let zero = T::Acc::zero();
    let one = T::Acc::one();
    let ninf = T::Acc::neg_infinity();
    for ((vo, io), so) in vrows.offsets().zip(irows.offsets()).zip(srows.offsets()) {
        let tail_off = toffs.as_mut().and_then(Iterator::next);
        if !next_kept(&mut moffs, mask.as_ref()) {
            out.nothing(v)?;
            continue;
        }
        let r = match (tail_off, &tail) {
            (Some(o), Some(tv)) if k < v => get(tv.mem(), o, "tail")?.to_acc(),
            _ => zero,
        };
        // The teacher's k logits: few, scalar, in the portable order.
        let mut vals = (0..k).map(|a| get(vm, vo + a * vs, "values").map(Element::to_acc));
        let mut err = None;
        let zk = lse_online(
            core::iter::from_fn(|| match vals.next()? {
                Ok(x) => Some(x / t),
                Err(e) => {
                    err = Some(e);
                    None
                }
            }),
            one,
        );
        if let Some(e) = err {
            return Err(e);
        }
        let sr = row(sm, so, v, "student")?;
        let zs = lse_row::<T>(sr, t);
        if zk == ninf || zs == ninf {
            out.nothing(v)?;
            continue;
        }
        let l1r = (one - r).ln();
        let bucket = |a: usize| -> Result<Probs<T::Acc>> {
            let x = get(vm, vo + a * vs, "values")?.to_acc() / t;
            let i = usize::try_from(get(im, io + a * is, "indices")?).unwrap_or(usize::MAX);
            let y = get(sm, so.wrapping_add(i), "student")?.to_acc() / t;
            let (lp, lq) = (l1r + x - zk, y - zs);
            Ok((lp.exp(), lp, lq.exp(), lq))
        };
        let SparseBuckets {
            loss: l,
            gq,
            qt,
            g_t,
        } = sparse_buckets(kind, k, v, r, bucket)?;
        let c = f * w;
        out.loss(c * l)?;
        let cg = c * inv_t;
        let fwd = matches!(kind, Kind::Fwd);
        if let Some(g) = out.grad_row(v)? {
            // Every position as a tail token (vectorised), then the top-k positions overwritten.
            let coef = if qt == zero {
                zero
            } else if fwd {
                cg * (one - r / qt)
            } else {
                cg * (g_t - gq)
            };
            let (vt, nzs, vc, vz) = (
                V::<T::Acc>::splat(t),
                V::<T::Acc>::splat(-zs),
                V::<T::Acc>::splat(coef),
                V::<T::Acc>::splat(zero),
            );
            write1::<T>(sr, g, ninf, |y| {
                let q = math::exp::<T::Acc>(y / vt + nzs);
                q.select_eq(vz, vz, vc * q)
            });
            for a in 0..k {
                let (p, lp, q, lq) = bucket(a)?;
                let i = usize::try_from(get(im, io + a * is, "indices")?).unwrap_or(usize::MAX);
                let val = sparse_top_grad(kind, cg, gq, (p, lp, q, lq));
                let glen = g.len();
                *g.get_mut(i).ok_or(Error::OutOfBounds {
                    arg: "grad",
                    end: i.saturating_add(1),
                    len: glen,
                })? = T::from_acc(val);
            }
        }
    }
    out.finish()
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy.

fn ce<T: Element>(
    cfg: &CeConfig,
    logits: View<'_, Reference, T>,
    targets: View<'_, Reference, i32>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()>
where
    T::Acc: Lanes,
{
    type V<A> = <A as Lanes>::V;
    let CeRows {
        logits: xrows,
        len: v,
        logits_stride: xs,
        kept,
    } = check_ce::<T::Acc>(
        cfg,
        logits.layout(),
        &targets,
        loss.layout(),
        grad.as_ref().map(ViewMut::layout),
    )?;
    let eps = cfg.label_smoothing;
    let gs = grad.as_ref().map_or(1, |g| g.layout().split_last().2);
    if v > 1 && (xs != 1 || gs != 1) {
        return Reference.cross_entropy(cfg, logits, targets, loss, grad);
    }
    let w = row_weight::<T::Acc>(cfg.reduction, kept);
    let c = w * T::Acc::lit(cfg.scale);
    let (e, one, zero) = (T::Acc::lit(eps), T::Acc::one(), T::Acc::zero());
    let e_v = smoothing_share::<T::Acc>(cfg, v);
    let mut out = Outputs::new(cfg.reduction, loss, grad);
    let xm = logits.mem();
    let ninf = T::Acc::neg_infinity();
    for (xo, yo) in xrows.offsets().zip(targets.layout().offsets()) {
        let y = get(targets.mem(), yo, "targets")?;
        let Ok(yi) = usize::try_from(y) else {
            out.nothing(v)?;
            continue;
        };
        if y == cfg.ignore_index {
            out.nothing(v)?;
            continue;
        }
        let xr = row(xm, xo, v, "logits")?;
        let z = lse_row::<T>(xr, one);
        let xy = get(xr, yi, "logits")?.to_acc();
        let mut l = -(one - e) * (xy - z);
        if e != zero {
            let mut sum = V::<T::Acc>::splat(zero);
            blocks1::<T>(xr, |a| each1::<T::Acc>(a, zero, |u| sum = sum + u));
            l += -(e_v * sum.reduce_add() - e * z);
        }
        out.loss(c * l)?;
        if let Some(g) = out.grad_row(v)? {
            let (nz, vc, ve) = (
                V::<T::Acc>::splat(-z),
                V::<T::Acc>::splat(c),
                V::<T::Acc>::splat(e_v),
            );
            write1::<T>(xr, g, ninf, |x| vc * (math::exp::<T::Acc>(x + nz) - ve));
            let q = (xy - z).exp();
            let glen = g.len();
            *g.get_mut(yi).ok_or(Error::OutOfBounds {
                arg: "grad",
                end: yi.saturating_add(1),
                len: glen,
            })? = T::from_acc(c * (q - (one - e + e_v)));
        }
    }
    out.finish()
}
