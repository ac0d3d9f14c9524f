//! Softmax and log-softmax over rows, with max subtraction (two passes over the row, then one to
//! write).

use super::{Reference, at, put};
use crate::check;
use crate::element::{Element, Real};
use crate::error::Result;
use crate::op::SoftmaxKind;
use crate::view::{View, ViewMut};

pub(super) fn softmax<T: Element>(
    kind: SoftmaxKind,
    x: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, T>>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    check::shape("y", y.layout(), x.shape())?;
    if let Some(m) = &mask {
        check::shape("mask", m.layout(), x.shape())?;
    }
    if y.layout().numel() == 0 {
        // Nothing to write; rows of length 0 would still be walked one by one, however many.
        return Ok(());
    }
    let (xrows, n, xs) = x.layout().split_last();
    let (yrows, _, ys) = y.layout().split_last();
    let mrows = mask.as_ref().map(|m| m.layout().split_last());
    let (xm, ym) = (x.mem(), y.mem_mut());
    let mut mrow_offsets = mrows.map(|(l, _, s)| (l.offsets(), s));
    for (xo, yo) in xrows.offsets().zip(yrows.offsets()) {
        let mo = match mrow_offsets.as_mut() {
            Some((it, s)) => it.next().map(|o| (o, *s)),
            None => None,
        };
        // z_j = x_j + mask_j, in the accumulation type.
        let z = |j: usize| -> Result<T::Acc> {
            let v = at(xm, xo + j * xs)?.to_acc();
            match (mo, &mask) {
                (Some((o, s)), Some(m)) => Ok(v + at(m.mem(), o + j * s)?.to_acc()),
                _ => Ok(v),
            }
        };
        let mut max = T::Acc::neg_infinity();
        let mut nan = false;
        for j in 0..n {
            let v = z(j)?;
            nan |= v.is_nan();
            if v > max {
                max = v;
            }
        }
        let mut sum = T::Acc::zero();
        if !nan && max != T::Acc::neg_infinity() {
            for j in 0..n {
                sum += (z(j)? - max).exp();
            }
        }
        let log_sum = sum.ln();
        for j in 0..n {
            let out = if nan {
                T::Acc::nan()
            } else if max == T::Acc::neg_infinity() {
                // Fully masked (or empty) row: softmax 0, log-softmax -inf.
                match kind {
                    SoftmaxKind::Softmax => T::Acc::zero(),
                    SoftmaxKind::LogSoftmax => T::Acc::neg_infinity(),
                }
            } else {
                let d = z(j)? - max;
                match kind {
                    SoftmaxKind::Softmax => d.exp() / sum,
                    SoftmaxKind::LogSoftmax => d - log_sum,
                }
            };
            put(ym, yo + j * ys, T::from_acc(out))?;
        }
    }
    Ok(())
}
