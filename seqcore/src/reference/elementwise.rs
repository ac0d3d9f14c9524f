//! Elementwise kernels: unary and binary maps, casts.

use super::{Reference, at, put};
use crate::check;
use crate::element::Element;
use crate::error::Result;
use crate::op::{Binary, Unary};
use crate::view::{View, ViewMut};

pub(super) fn unary<T: Element>(
    op: Unary,
    x: View<'_, Reference, T>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    let op = op.validate::<T::Acc>()?;
    check::shape("y", y.layout(), x.shape())?;
    let (ym, yl) = y.parts();
    for (xo, yo) in x.layout().offsets().zip(yl.offsets()) {
        put(ym, yo, T::from_acc(op.apply(at(x.mem(), xo)?.to_acc())))?;
    }
    Ok(())
}

pub(super) fn binary<T: Element>(
    op: Binary,
    a: View<'_, Reference, T>,
    b: View<'_, Reference, T>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    check::shape("b", b.layout(), a.shape())?;
    check::shape("y", y.layout(), a.shape())?;
    let (ym, yl) = y.parts();
    let offsets = a
        .layout()
        .offsets()
        .zip(b.layout().offsets())
        .zip(yl.offsets());
    for ((ao, bo), yo) in offsets {
        let v = op.apply(at(a.mem(), ao)?.to_acc(), at(b.mem(), bo)?.to_acc());
        put(ym, yo, T::from_acc(v))?;
    }
    Ok(())
}

pub(super) fn cast<S: Element, D: Element>(
    x: View<'_, Reference, S>,
    mut y: ViewMut<'_, Reference, D>,
) -> Result<()> {
    check::shape("y", y.layout(), x.shape())?;
    let (ym, yl) = y.parts();
    for (xo, yo) in x.layout().offsets().zip(yl.offsets()) {
        // Every element type widens to f64 exactly; `from_f64` rounds once.
        put(ym, yo, D::from_f64(at(x.mem(), xo)?.to_f64()))?;
    }
    Ok(())
}
