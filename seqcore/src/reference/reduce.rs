//! Reductions over the last axis.

use super::{Reference, at, put};
use crate::check;
use crate::element::{Element, Real};
use crate::error::Result;
use crate::op::{Reduce, maximum, minimum};
use crate::view::{View, ViewMut};

pub(super) fn reduce<T: Element>(
    op: Reduce,
    x: View<'_, Reference, T>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    let n = check::rows(x.layout(), "y", y.layout(), None)?;
    let (xrows, _, xs) = x.layout().split_last();
    let (ym, yl) = y.parts();
    let xm = x.mem();
    for (xo, yo) in xrows.offsets().zip(yl.offsets()) {
        let elem = |j: usize| -> Result<T::Acc> { Ok(at(xm, xo + j * xs)?.to_acc()) };
        let v = row::<T::Acc>(op, n, elem)?;
        put(ym, yo, T::from_acc(v))?;
    }
    Ok(())
}

/// One row's reduction, in the accumulation type.
fn row<R: Real>(op: Reduce, n: usize, x: impl Fn(usize) -> Result<R>) -> Result<R> {
    let mut nan = false;
    let (mut max, mut min, mut max_abs) = (R::neg_infinity(), R::infinity(), R::zero());
    for j in 0..n {
        let v = x(j)?;
        nan |= v.is_nan();
        if !v.is_nan() {
            max = maximum(max, v);
            min = minimum(min, v);
        }
        if v.abs() > max_abs {
            max_abs = v.abs();
        }
    }
    if nan {
        return Ok(R::nan());
    }
    let sum = |f: &dyn Fn(R) -> R| -> Result<R> {
        let mut s = R::zero();
        for j in 0..n {
            s += f(x(j)?);
        }
        Ok(s)
    };
    Ok(match op {
        Reduce::Sum => sum(&|v| v)?,
        Reduce::Mean => sum(&|v| v)? / R::lit(n as f64),
        Reduce::Max => max,
        Reduce::Min => min,
        Reduce::LogSumExp if max.is_infinite() => max,
        Reduce::LogSumExp => max + sum(&|v| (v - max).exp())?.ln(),
        Reduce::L2Norm if max_abs == R::zero() || max_abs.is_infinite() => max_abs,
        Reduce::L2Norm => {
            let s = sum(&|v| {
                let t = v / max_abs;
                t * t
            })?;
            max_abs * s.sqrt()
        }
    })
}
