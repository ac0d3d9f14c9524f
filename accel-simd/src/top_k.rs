//! The `k` largest elements of each row (the order of `torch.topk`: NaN above everything, then
//! by value, ties to the lower index), exactly as the Reference picks them.
//!
//! One pass per row keeps the best `k` so far sorted in the output row itself (no scratch
//! memory): the first `k` elements are inserted by binary search; after that an element can
//! only enter when it is strictly above the current `k`-th value or NaN (a later index loses
//! every tie), so a vector comparison against that threshold skips whole vectors, and only the
//! vectors holding a candidate are walked element by element (a threshold prefilter, as in
//! selection by "filter then insert"; O(n) vector compares plus O(k log k) per insertion).
//! f16/bf16 rows are widened block by block for the comparisons (exact); the values written
//! are the input elements themselves. Rows whose last axis is not unit-stride (in `x`,
//! `values` or `indices`) go to the Reference kernel.

use half::{bf16, f16};
use seqcore::{Backend, DType, Element, Error, Real, Reference, Result, View, ViewMut, check};

use crate::elementwise::{as_t, as_t_mut, head, span, span_mut};
use crate::lanes::{Lanes, Vector, widen};
use crate::math::VMath;
use crate::softmax::ROW_BLOCK;

/// `e` ranks strictly below `a` by value (NaN above everything; NaNs equal).
#[inline(always)]
fn below<A: Lanes>(e: A, a: A) -> bool {
    if a.is_nan() {
        !e.is_nan()
    } else {
        !e.is_nan() && e < a
    }
}

/// The best `k` so far, sorted, in the output row.
struct Best<'a, E> {
    vals: &'a mut [E],
    idx: &'a mut [u32],
    len: usize,
}

impl<E: Element> Best<'_, E>
where
    E::Acc: Lanes,
{
    /// Inserts element `j` (value `v`, widened `a`) after every kept element that ranks at or
    /// above it (those have lower indices), dropping the last one when full.
    fn insert(&mut self, v: E, a: E::Acc, j: u32) {
        let k = self.vals.len();
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.vals.get(mid).map_or(a, |e| e.to_acc());
            if below(e, a) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let end = if self.len < k { self.len } else { k - 1 };
        if lo > end {
            return;
        }
        self.vals.copy_within(lo..end, lo + 1);
        self.idx.copy_within(lo..end, lo + 1);
        if let (Some(d), Some(i)) = (self.vals.get_mut(lo), self.idx.get_mut(lo)) {
            *d = v;
            *i = j;
        }
        self.len = (self.len + 1).min(k);
    }

    /// The `k`-th kept value, once `k` are kept.
    fn threshold(&self) -> Option<E::Acc> {
        if self.len == self.vals.len() {
            self.vals.last().map(|v| v.to_acc())
        } else {
            None
        }
    }
}

/// Feeds one block of the row (`xt` the elements, `xa` the same widened, `base` the index of
/// the first) into `best`; false once nothing later can enter (the threshold is NaN).
fn feed<E: Element>(best: &mut Best<'_, E>, xt: &[E], xa: &[E::Acc], base: usize) -> bool
where
    E::Acc: Lanes,
{
    let l = <E::Acc as Lanes>::LANES;
    let n = xa.len();
    let mut j = 0;
    while j < n {
        match best.threshold() {
            None => {
                // Filling: every element enters.
                if let (Some(&v), Some(&a)) = (xt.get(j), xa.get(j)) {
                    best.insert(v, a, u32::try_from(base + j).unwrap_or(u32::MAX));
                }
                j += 1;
            }
            Some(t) if t.is_nan() => return false,
            Some(t) => {
                let end = (j + l).min(n);
                let chunk = xa.get(j..end).unwrap_or(&[]);
                let v = <E::Acc as Lanes>::V::load_or(chunk, <E::Acc as Real>::neg_infinity());
                let hit = v.v_gt(<E::Acc as Lanes>::V::splat(t)).v_or(v.v_nan());
                if hit.v_any() {
                    for (o, &a) in chunk.iter().enumerate() {
                        let t = best.threshold().unwrap_or(t);
                        if below(t, a) {
                            if let Some(&v) = xt.get(j + o) {
                                best.insert(v, a, u32::try_from(base + j + o).unwrap_or(u32::MAX));
                            }
                        }
                    }
                }
                j = end;
            }
        }
    }
    true
}

/// One row of a float type whose accumulation type is itself (f32, f64).
fn row_acc<E: Element<Acc = E> + Lanes>(x: &[E], vals: &mut [E], idx: &mut [u32]) {
    let mut best = Best { vals, idx, len: 0 };
    feed(&mut best, x, x, 0);
}

/// One f16/bf16 row, widened block by block for the comparisons.
fn row_half<H: Element<Acc = f32>>(x: &[H], vals: &mut [H], idx: &mut [u32]) {
    let mut best = Best { vals, idx, len: 0 };
    let mut buf = [0f32; ROW_BLOCK];
    for (b, c) in x.chunks(ROW_BLOCK).enumerate() {
        let a = head(&mut buf, c.len());
        widen::<H>(c, a);
        if !feed(&mut best, c, a, b * ROW_BLOCK) {
            break;
        }
    }
}

/// One row of `T`; false when `T` is not handled here.
fn row<T: Element>(x: &[T], vals: &mut [T], idx: &mut [u32]) -> bool {
    macro_rules! go {
        ($u:ty, $f:expr) => {
            match (as_t::<T, $u>(x), as_t_mut::<T, $u>(vals)) {
                (Some(x), Some(v)) => {
                    $f(x, v, idx);
                    true
                }
                _ => false,
            }
        };
    }
    match T::DTYPE {
        DType::F32 => go!(f32, row_acc::<f32>),
        DType::F64 => go!(f64, row_acc::<f64>),
        DType::F16 => go!(f16, row_half::<f16>),
        DType::BF16 => go!(bf16, row_half::<bf16>),
        _ => false,
    }
}

pub(crate) fn top_k<T: Element>(
    k: usize,
    x: View<'_, Reference, T>,
    mut values: ViewMut<'_, Reference, T>,
    mut indices: ViewMut<'_, Reference, u32>,
) -> Result<()> {
    let n = check::top_k(x.layout(), values.layout(), indices.layout(), k)?;
    if values.layout().numel() == 0 {
        return Ok(());
    }
    let (xrows, _, xs) = x.layout().split_last();
    let (vrows, _, vs) = values.layout().split_last();
    let (irows, _, is) = indices.layout().split_last();
    let fast = (xs == 1 || n <= 1)
        && (vs == 1 || k <= 1)
        && (is == 1 || k <= 1)
        && matches!(T::DTYPE, DType::F32 | DType::F64 | DType::F16 | DType::BF16);
    if !fast {
        return Reference.top_k(k, x, values, indices);
    }
    let xm = x.mem();
    let (vm, im) = (values.mem_mut(), indices.mem_mut());
    let oob = |end: usize, len: usize| Error::OutOfBounds {
        arg: "view",
        end,
        len,
    };
    for ((xo, vo), io) in xrows.offsets().zip(vrows.offsets()).zip(irows.offsets()) {
        let xr = span(xm, xo, n).ok_or(oob(xo + n, xm.len()))?;
        let vlen = vm.len();
        let vr = span_mut(vm, vo, k).ok_or(oob(vo + k, vlen))?;
        let ilen = im.len();
        let ir = span_mut(im, io, k).ok_or(oob(io + k, ilen))?;
        // Cannot be false: the element type was matched above.
        let _ = row(xr, vr, ir);
    }
    Ok(())
}
