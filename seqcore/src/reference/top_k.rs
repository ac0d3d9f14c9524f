//! Top-k by repeated selection: O(n k) per row and no scratch memory.

use core::cmp::Ordering;

use super::{Reference, at, put};
use crate::check;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::view::{View, ViewMut};

/// The order of `torch.topk`: NaN above everything, then by value, ties to the lower index.
/// `Greater` means "comes first".
fn rank<T: Element>(a: (T, usize), b: (T, usize)) -> Ordering {
    let (an, bn) = (a.0.to_f64().is_nan(), b.0.to_f64().is_nan());
    let by_value = match (an, bn) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal),
    };
    by_value.then(b.1.cmp(&a.1))
}

pub(super) fn top_k<T: Element>(
    k: usize,
    x: View<'_, Reference, T>,
    mut values: ViewMut<'_, Reference, T>,
    mut indices: ViewMut<'_, Reference, u32>,
) -> Result<()> {
    let n = check::top_k(x.layout(), values.layout(), indices.layout(), k)?;
    if values.layout().numel() == 0 {
        // Nothing to write (k = 0 or no rows); do not walk the rows of `x` for nothing.
        return Ok(());
    }
    let (xrows, _, xs) = x.layout().split_last();
    let (vrows, _, vs) = values.layout().split_last();
    let (irows, _, is) = indices.layout().split_last();
    let (vm, im) = (values.mem_mut(), indices.mem_mut());
    let xm = x.mem();
    for ((xo, vo), io) in xrows.offsets().zip(vrows.offsets()).zip(irows.offsets()) {
        let mut prev: Option<(T, usize)> = None;
        for r in 0..k {
            // The best element ranked strictly after the previous pick.
            let mut best: Option<(T, usize)> = None;
            for j in 0..n {
                let cand = (at(xm, xo + j * xs)?, j);
                let after_prev = prev.is_none_or(|p| rank(cand, p) == Ordering::Less);
                if after_prev && best.is_none_or(|b| rank(cand, b) == Ordering::Greater) {
                    best = Some(cand);
                }
            }
            let (v, j) = best.ok_or(Error::Param {
                arg: "k",
                reason: "must not exceed the row length",
            })?;
            put(vm, vo + r * vs, v)?;
            put(im, io + r * is, u32::try_from(j).unwrap_or(u32::MAX))?;
            prev = Some((v, j));
        }
    }
    Ok(())
}
