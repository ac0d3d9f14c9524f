//! Reductions over the last axis on the build's vectors, with the Reference's semantics
//! (`seqcore::Reduce`): any NaN in a row gives NaN; `max`/`min` are exact (IEEE 754-2019
//! `maximum`/`minimum`, `+0` above `-0`; `-inf`/`+inf` for an empty row); `logsumexp` is
//! `m + ln sum e^(x - m)` (`m` when infinite); `l2norm` scales by the largest magnitude first
//! (LAPACK `nrm2`'s idea).
//!
//! Sums are lane-parallel (one partial sum per lane, folded pairwise at the end): a different
//! order from the Reference's sequential sum, inside the same `gamma_n` bound (Higham 2002,
//! §4.2: the error bound of any summation order is `gamma_{n-1} sum |x|`; pairwise folding of
//! the lanes only shortens the longest chain). f16/bf16 rows are widened block by block into
//! a stack buffer (two passes for the ops that need the row's max first). Rows whose last
//! axis is not unit-stride go to the Reference kernel.

use half::{bf16, f16};
use seqcore::{Backend, DType, Element, Reduce, Reference, Result, View, ViewMut, check};

use crate::elementwise::{as_t, head, span};
use crate::lanes::{Lanes, Vector, widen};
use crate::math::{self, VMath};
use crate::softmax::ROW_BLOCK;

/// Pass 1 accumulators: max, min (NaN lanes skipped), largest magnitude, NaN mask.
struct Stats<A: Lanes> {
    max: A::V,
    min: A::V,
    abs: A::V,
    nan: A::V,
}

impl<A: Lanes> Stats<A> {
    fn new() -> Self {
        Stats {
            max: A::V::splat(A::neg_infinity()),
            min: A::V::splat(A::infinity()),
            abs: A::V::splat(A::zero()),
            nan: A::V::splat(A::zero()).v_nan(),
        }
    }

    #[inline(always)]
    fn add(&mut self, v: A::V) {
        self.max = self.max.max(v);
        self.min = self.min.min(v);
        self.abs = self.abs.max(v.v_abs());
        self.nan = self.nan.v_or(v.v_nan());
    }

    fn block(&mut self, x: &[A]) {
        let mut c = x.chunks_exact(A::LANES);
        for v in &mut c {
            self.add(A::V::load_or(v, A::zero()));
        }
        let r = c.remainder();
        if !r.is_empty() {
            // The missing lanes repeat an element: neutral for max, min, |x| and NaN.
            let fill = r.first().copied().unwrap_or(A::zero());
            self.add(A::V::load_or(r, fill));
        }
    }
}

/// `sum f(x)` over a block into the lane accumulators; `f(fill)` must be 0.
#[inline(always)]
fn sum_block<A: Lanes>(x: &[A], acc: &mut [A::V; 2], fill: A, f: impl Fn(A::V) -> A::V) {
    let l = A::LANES;
    let mut c = x.chunks_exact(2 * l);
    for v in &mut c {
        let (a, b) = v.split_at(l);
        acc[0] = acc[0] + f(A::V::load_or(a, fill));
        acc[1] = acc[1] + f(A::V::load_or(b, fill));
    }
    for v in c.remainder().chunks(l) {
        acc[0] = acc[0] + f(A::V::load_or(v, fill));
    }
}

/// Folds the lanes of a max/min accumulator (NaN excluded already).
fn fold<A: Lanes>(v: A::V, pick: impl Fn(A, A) -> bool, init: A) -> A {
    v.lanes()
        .iter()
        .fold(init, |a, &b| if pick(b, a) { b } else { a })
}

/// A row given as blocks of the accumulation type: calls its argument on each block in order.
type Blocks<'a, A> = dyn Fn(&mut dyn FnMut(&[A])) + 'a;

/// One row, given as blocks of the accumulation type (`blocks(f)` calls `f` on each in order).
fn row<A: Lanes>(op: Reduce, n: usize, blocks: &Blocks<'_, A>) -> A {
    let mut st = Stats::<A>::new();
    blocks(&mut |b| st.block(b));
    if st.nan.v_any() {
        return A::nan();
    }
    let zero = A::zero();
    let mut acc = [A::V::splat(zero); 2];
    let total = |acc: [A::V; 2]| (acc[0] + acc[1]).reduce_add();
    match op {
        Reduce::Sum | Reduce::Mean => {
            blocks(&mut |b| sum_block::<A>(b, &mut acc, zero, |v| v));
            let s = total(acc);
            if op == Reduce::Mean {
                s / A::lit(n as f64)
            } else {
                s
            }
        }
        Reduce::Max | Reduce::Min => {
            let is_max = op == Reduce::Max;
            let m = if is_max {
                fold::<A>(st.max, |b, a| b > a, A::neg_infinity())
            } else {
                fold::<A>(st.min, |b, a| b < a, A::infinity())
            };
            if m == zero {
                // The sign of a zero result: +0 above -0 (max), -0 below +0 (min).
                let mut plus = false;
                let mut minus = false;
                blocks(&mut |b| {
                    for &v in b {
                        if v == zero {
                            if v.is_sign_negative() {
                                minus = true;
                            } else {
                                plus = true;
                            }
                        }
                    }
                });
                let neg = if is_max { !plus } else { minus };
                if neg { -zero } else { zero }
            } else {
                m
            }
        }
        Reduce::LogSumExp => {
            let m = fold::<A>(st.max, |b, a| b > a, A::neg_infinity());
            if m.is_infinite() {
                return m;
            }
            let vm = A::V::splat(m);
            blocks(&mut |b| {
                sum_block::<A>(b, &mut acc, A::neg_infinity(), |v| math::exp::<A>(v - vm));
            });
            let l = math::ln::<A>(A::V::splat(total(acc)));
            m + l.lanes().first().copied().unwrap_or(A::nan())
        }
        Reduce::L2Norm => {
            let ma = fold::<A>(st.abs, |b, a| b > a, zero);
            if ma == zero || ma.is_infinite() {
                return ma;
            }
            let vm = A::V::splat(ma);
            blocks(&mut |b| {
                sum_block::<A>(b, &mut acc, zero, |v| {
                    let t = v / vm;
                    t * t
                });
            });
            let s = A::V::splat(total(acc)).v_sqrt();
            ma * s.lanes().first().copied().unwrap_or(A::nan())
        }
        _ => A::nan(),
    }
}

/// One f16/bf16 row, widened block by block.
fn row_half<H: Element<Acc = f32>>(op: Reduce, x: &[H]) -> f32 {
    let blocks = |f: &mut dyn FnMut(&[f32])| {
        let mut buf = [0f32; ROW_BLOCK];
        for c in x.chunks(ROW_BLOCK) {
            let b = head(&mut buf, c.len());
            widen::<H>(c, b);
            f(b);
        }
    };
    row::<f32>(op, x.len(), &blocks)
}

/// One row of `T` reduced and rounded to `T`; `None` when `T` is not handled here.
fn row_t<T: Element>(op: Reduce, x: &[T]) -> Option<T> {
    let n = x.len();
    Some(match T::DTYPE {
        DType::F32 => {
            let x = as_t::<T, f32>(x)?;
            T::from_f64(f64::from(row::<f32>(op, n, &|f| f(x))))
        }
        DType::F64 => {
            let x = as_t::<T, f64>(x)?;
            T::from_f64(row::<f64>(op, n, &|f| f(x)))
        }
        DType::F16 => T::from_f64(f64::from(row_half::<f16>(op, as_t::<T, f16>(x)?))),
        DType::BF16 => T::from_f64(f64::from(row_half::<bf16>(op, as_t::<T, bf16>(x)?))),
        _ => return None,
    })
}

pub(crate) fn reduce<T: Element>(
    op: Reduce,
    x: View<'_, Reference, T>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    let n = check::rows(x.layout(), "y", y.layout(), None)?;
    let (xrows, _, xs) = x.layout().split_last();
    let known = matches!(T::DTYPE, DType::F32 | DType::F64 | DType::F16 | DType::BF16);
    let known_op = matches!(
        op,
        Reduce::Sum | Reduce::Mean | Reduce::Max | Reduce::Min | Reduce::LogSumExp | Reduce::L2Norm
    );
    if !(known && known_op && (xs == 1 || n <= 1)) {
        return Reference.reduce(op, x, y);
    }
    let xm = x.mem();
    let (ym, yl) = y.parts();
    for (xo, yo) in xrows.offsets().zip(yl.offsets()) {
        let xr = span(xm, xo, n).ok_or(seqcore::Error::OutOfBounds {
            arg: "view",
            end: xo + n,
            len: xm.len(),
        })?;
        let ylen = ym.len();
        let slot = ym.get_mut(yo).ok_or(seqcore::Error::OutOfBounds {
            arg: "view",
            end: yo + 1,
            len: ylen,
        })?;
        if let Some(v) = row_t(op, xr) {
            *slot = v;
        }
    }
    Ok(())
}
