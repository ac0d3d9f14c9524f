//! The merge of two partial attention results over disjoint key sets (Milakov & Gimelshein 2018,
//! "Online normalizer calculation for softmax", eq. 4; the combine step of flash-decoding and
//! ring attention):
//!
//! ```text
//! m = max(lse_a, lse_b),  e_x = exp(lse_x - m),  z = e_a + e_b,
//! o = (e_a / z) o_a + (e_b / z) o_b,  lse = m + ln z
//! ```
//!
//! The weights of `LANES` rows are formed in one vector: one [`math::exp`] per row pair (the
//! larger side's `exp(0) = 1` is not computed), `lse = m + ln_1p(e)` ([`math::ln_1p`], which
//! keeps the digits `ln(1 + e)` would round off). The rows of `Dv` values are then combined a
//! vector at a time in the accumulation type; f16/bf16 rows are widened into stack blocks of
//! [`BLOCK`] f32 values and rounded once on store. The edge-case policy is the portable
//! kernel's (`seqcore::portable::attention::merge`): a side with `lse = -inf` has weight 0 and
//! is not read (0 * NaN would leak a hidden side); both `-inf` give zeros and `-inf`; NaN in
//! either `lse`, or `+inf` (the portable kernel's `inf - inf`), gives NaN weights, NaN outputs
//! and a NaN `lse`. Layouts whose feature axis is not unit-stride (in `o_a`, `o_b` or `o`) take
//! the portable kernel.

use half::{bf16, f16};
use seqcore::{Backend, DType, Element, Error, Layout, Reference, Result, View, ViewMut, check};

use crate::elementwise::{as_t, as_t_mut, head, span, span_mut};
use crate::lanes::{F32_LANES, Lanes, Vector, narrow, widen};
use crate::math::{self, VMath};

/// f32 elements of each stack block an f16/bf16 row is widened into.
const BLOCK: usize = 256;

/// The widest vector of the build (f32 lanes), the size of the per-group row arrays.
const MAX_LANES: usize = F32_LANES;

/// The weights `(w_a, w_b)` and merged `lse` of `LANES` rows from their `lse_a`, `lse_b`.
#[inline(always)]
fn weights<A: Lanes>(xa: A::V, xb: A::V) -> (A::V, A::V, A::V) {
    let zero = A::V::splat(A::zero());
    let one = A::V::splat(A::one());
    let ninf = A::V::splat(A::neg_infinity());
    let gt = xa.v_gt(xb);
    let hi = gt.v_select(xa, xb);
    let lo = gt.v_select(xb, xa);
    // NaN where hi = -inf (both sides empty) or hi = +inf: replaced below.
    let e = math::exp::<A>(lo - hi);
    let z = one + e;
    let (w_hi, w_lo) = (one / z, e / z);
    let lse = hi + math::ln_1p::<A>(e);
    let wa = gt.v_select(w_hi, w_lo);
    let wb = gt.v_select(w_lo, w_hi);
    let empty = hi.v_eq(ninf);
    let (wa, wb, lse) = (
        empty.v_select(zero, wa),
        empty.v_select(zero, wb),
        empty.v_select(ninf, lse),
    );
    let nan = A::V::splat(A::nan());
    let bad = xa
        .v_nan()
        .v_or(xb.v_nan())
        .v_or(hi.v_eq(A::V::splat(A::infinity())));
    (
        bad.v_select(nan, wa),
        bad.v_select(nan, wb),
        bad.v_select(nan, lse),
    )
}

/// `y = wa a + wb b` over equal-length rows of the accumulation type; a side of weight 0 is not
/// read.
#[inline(always)]
fn row_acc<A: Lanes>(wa: A, wb: A, a: &[A], b: &[A], y: &mut [A]) {
    let l = A::LANES;
    let (va, vb) = (A::V::splat(wa), A::V::splat(wb));
    let zero = A::zero();
    let (ra, rb) = (wa != zero, wb != zero);
    match (ra, rb) {
        (true, true) => {
            for ((ca, cb), cy) in a.chunks(l).zip(b.chunks(l)).zip(y.chunks_mut(l)) {
                let x = A::V::load_or(ca, zero) * va;
                A::V::load_or(cb, zero).mul_add(vb, x).store(cy);
            }
        }
        (true, false) => {
            for (ca, cy) in a.chunks(l).zip(y.chunks_mut(l)) {
                (A::V::load_or(ca, zero) * va).store(cy);
            }
        }
        (false, true) => {
            for (cb, cy) in b.chunks(l).zip(y.chunks_mut(l)) {
                (A::V::load_or(cb, zero) * vb).store(cy);
            }
        }
        (false, false) => y.fill(zero),
    }
}

/// One f16/bf16 row through f32 stack blocks (widened once, rounded once).
#[inline(always)]
fn row_half<H: Element<Acc = f32>>(wa: f32, wb: f32, a: &[H], b: &[H], y: &mut [H]) {
    let mut ab = [0f32; BLOCK];
    let mut bb = [0f32; BLOCK];
    let mut yb = [0f32; BLOCK];
    for ((ca, cb), cy) in a
        .chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .zip(y.chunks_mut(BLOCK))
    {
        let n = cy.len();
        // Only the sides that are read are widened (row_acc reads none of the other).
        if wa != 0.0 {
            widen::<H>(ca, head(&mut ab, n));
        }
        if wb != 0.0 {
            widen::<H>(cb, head(&mut bb, n));
        }
        let (sa, sb) = (ab.get(..n).unwrap_or(&[]), bb.get(..n).unwrap_or(&[]));
        row_acc::<f32>(wa, wb, sa, sb, head(&mut yb, n));
        narrow::<H>(yb.get(..n).unwrap_or(&[]), cy);
    }
}

/// The row layouts of one merge: `(o_a rows, o_b rows, o rows, lse_a, lse_b, lse)`, `Dv`.
struct Plan {
    oa: Layout,
    ob: Layout,
    o: Layout,
    la: Layout,
    lb: Layout,
    lse: Option<Layout>,
    dv: usize,
}

fn oob(end: usize, len: usize) -> Error {
    Error::OutOfBounds {
        arg: "view",
        end,
        len,
    }
}

/// The merge over concrete slices: `E` the element type, `A` its accumulation type, `row` the
/// per-row combine.
#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
fn run<E, A: Lanes>(
    p: &Plan,
    oa: &[E],
    la: &[A],
    ob: &[E],
    lb: &[A],
    o: &mut [E],
    mut lse: Option<&mut [A]>,
    row: impl Fn(A, A, &[E], &[E], &mut [E]),
) -> Result<()> {
    let dv = p.dv;
    let mut rows =
        p.oa.offsets()
            .zip(p.ob.offsets())
            .zip(p.o.offsets())
            .zip(p.la.offsets().zip(p.lb.offsets()));
    let mut lse_offs = p.lse.map(|l| l.offsets());
    let ninf = A::neg_infinity();
    loop {
        // Gather up to LANES rows: their offsets and lse values.
        let mut offs = [(0usize, 0usize, 0usize); MAX_LANES];
        let mut xa = [ninf; MAX_LANES];
        let mut xb = [ninf; MAX_LANES];
        let mut cnt = 0;
        for ((slot, (sa, sb)), r) in offs
            .iter_mut()
            .zip(xa.iter_mut().zip(xb.iter_mut()))
            .take(A::LANES)
            .zip(&mut rows)
        {
            let (((ra, rb), ro), (pa, pb)) = r;
            *slot = (ra, rb, ro);
            *sa = *la.get(pa).ok_or(oob(pa + 1, la.len()))?;
            *sb = *lb.get(pb).ok_or(oob(pb + 1, lb.len()))?;
            cnt += 1;
        }
        if cnt == 0 {
            return Ok(());
        }
        let (wa, wb, ls) = weights::<A>(A::V::load_or(&xa, ninf), A::V::load_or(&xb, ninf));
        let nan = A::nan();
        for (i, &(ra, rb, ro)) in offs.iter().take(cnt).enumerate() {
            let wa = wa.lanes().get(i).copied().unwrap_or(nan);
            let wb = wb.lanes().get(i).copied().unwrap_or(nan);
            let ls = ls.lanes().get(i).copied().unwrap_or(nan);
            let sa = span(oa, ra, dv).ok_or(oob(ra + dv, oa.len()))?;
            let sb = span(ob, rb, dv).ok_or(oob(rb + dv, ob.len()))?;
            let olen = o.len();
            let so = span_mut(o, ro, dv).ok_or(oob(ro + dv, olen))?;
            row(wa, wb, sa, sb, so);
            if let (Some(lm), Some(it)) = (lse.as_mut(), lse_offs.as_mut()) {
                let i = it.next().unwrap_or(usize::MAX);
                let len = lm.len();
                let slot = lm.get_mut(i).ok_or(Error::OutOfBounds {
                    arg: "lse",
                    end: i.saturating_add(1),
                    len,
                })?;
                *slot = ls;
            }
        }
    }
}

/// The merge on the SIMD path; false when the element type is not one of the four float types
/// (nothing written then).
#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
fn dispatch<T: Element>(
    p: &Plan,
    oa: &[T],
    la: &[T::Acc],
    ob: &[T],
    lb: &[T::Acc],
    o: &mut [T],
    lse: Option<&mut [T::Acc]>,
) -> Result<bool> {
    macro_rules! go {
        ($e:ty, $a:ty, $row:expr) => {{
            let lse: Option<&mut [$a]> = match lse {
                Some(l) => match as_t_mut::<T::Acc, $a>(l) {
                    Some(l) => Some(l),
                    None => return Ok(false),
                },
                None => None,
            };
            match (
                as_t::<T, $e>(oa),
                as_t::<T::Acc, $a>(la),
                as_t::<T, $e>(ob),
                as_t::<T::Acc, $a>(lb),
                as_t_mut::<T, $e>(o),
            ) {
                (Some(oa), Some(la), Some(ob), Some(lb), Some(o)) => {
                    run::<$e, $a>(p, oa, la, ob, lb, o, lse, $row)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }};
    }
    match T::DTYPE {
        DType::F32 => go!(f32, f32, row_acc::<f32>),
        DType::F64 => go!(f64, f64, row_acc::<f64>),
        DType::F16 => go!(f16, f32, row_half::<f16>),
        DType::BF16 => go!(bf16, f32, row_half::<bf16>),
        _ => Ok(false),
    }
}

/// Merges two partial attention results (see the module docs): `o_a`, `o_b`, `o` `[.., Dv]`,
/// `lse_a`, `lse_b`, `lse` `[..]`.
///
/// # Errors
/// The Reference's shape errors, from the same checks in the same order.
pub(crate) fn merge<T: Element>(
    o_a: View<'_, Reference, T>,
    lse_a: View<'_, Reference, T::Acc>,
    o_b: View<'_, Reference, T>,
    lse_b: View<'_, Reference, T::Acc>,
    mut o: ViewMut<'_, Reference, T>,
    mut lse: Option<ViewMut<'_, Reference, T::Acc>>,
) -> Result<()> {
    check::attention_merge(
        o_a.layout(),
        lse_a.layout(),
        o_b.layout(),
        lse_b.layout(),
        o.layout(),
        lse.as_ref().map(ViewMut::layout),
    )?;
    let (oa_rows, dv, sa) = o_a.layout().split_last();
    let (ob_rows, _, sb) = o_b.layout().split_last();
    let (o_rows, _, so) = o.layout().split_last();
    let unit = |s: usize| s == 1 || dv <= 1;
    if unit(sa) && unit(sb) && unit(so) {
        let p = Plan {
            oa: oa_rows,
            ob: ob_rows,
            o: o_rows,
            la: *lse_a.layout(),
            lb: *lse_b.layout(),
            lse: lse.as_ref().map(|l| *l.layout()),
            dv,
        };
        let lm = lse.as_mut().map(|l| l.mem_mut());
        if dispatch::<T>(
            &p,
            o_a.mem(),
            lse_a.mem(),
            o_b.mem(),
            lse_b.mem(),
            o.mem_mut(),
            lm,
        )? {
            return Ok(());
        }
    }
    // The portable kernel.
    Reference.attention_merge(o_a, lse_a, o_b, lse_b, o, lse)
}
