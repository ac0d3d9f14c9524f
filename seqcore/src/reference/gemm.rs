//! `c = alpha * a @ b + beta * c`, one dot product at a time.

use super::{Reference, at, put};
use crate::check;
use crate::element::{Element, Real};
use crate::error::Result;
use crate::layout::Layout;
use crate::view::{View, ViewMut};
pub(super) fn gemm<T: Element>(
    alpha: f64,
    a: View<'_, Reference, T>,
    b: View<'_, Reference, T>,
    beta: f64,
    mut c: ViewMut<'_, Reference, T>,
) -> Result<()> {
    let alpha = check::finite_in::<T::Acc>("alpha", alpha)?;
    let beta_f = check::finite("beta", beta)?;
    let beta = check::finite_in::<T::Acc>("beta", beta_f)?;
    let d = check::gemm(a.layout(), b.layout(), c.layout())?;
    if c.layout().numel() == 0 {
        // Nothing to write (the loops would still walk `batch x m` empty rows, however many).
        return Ok(());
    }
    // Treat rank-2 operands as one batch.
    let (la, lb) = (batched(a.layout())?, batched(b.layout())?);
    let (cm, lc) = c.parts();
    let lc = batched(lc)?;
    let (am, bm) = (a.mem(), b.mem());
    for p in 0..d.batch {
        let (ap, bp, cp) = (la.select(0, p)?, lb.select(0, p)?, lc.select(0, p)?);
        for i in 0..d.m {
            let (ai, ci) = (ap.select(0, i)?, cp.select(0, i)?);
            for j in 0..d.n {
                let bj = bp.select(1, j)?;
                let mut acc = T::Acc::zero();
                for (ka, kb) in ai.offsets().zip(bj.offsets()) {
                    acc += at(am, ka)?.to_acc() * at(bm, kb)?.to_acc();
                }
                let o = ci.select(0, j)?.offset();
                let mut out = alpha * acc;
                if beta_f != 0.0 {
                    out += beta * at(cm, o)?.to_acc();
                }
                put(cm, o, T::from_acc(out))?;
            }
        }
    }
    Ok(())
}

/// A rank-2 operand as a batch of one.
fn batched(l: &Layout) -> Result<Layout> {
    if l.rank() == 2 {
        l.unsqueeze(0)
    } else {
        Ok(*l)
    }
}
