//! The recurrent (streaming) mode of a diagonal complex state-space model: S4 eq. 3 with the
//! state matrix diagonal (S4D), N complex modes standing for a conjugate-symmetric real system of
//! 2N states:
//!
//! `x_t[h, n] = Abar[h, n] x_{t-1}[h, n] + Bbar[h, n] u_t[h]`,
//! `y_t[h] = 2 Re(sum_n C[h, n] x_t[h, n]) + D[h] u_t[h]`.
//!
//! The state lives in caller memory in the accumulation type and is updated in place; one step per
//! token, no allocation.

use super::{addr, at, put};
use crate::check;
use crate::element::{Element, Real};
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::view::{View, ViewMut};

/// Checks the operands of a diagonal scan; returns `(h, n, l)`.
///
/// # Errors
/// [`Error::Rank`] / [`Error::Shape`] naming the operand at fault: `abar [H, N, 2]` sets `H` and
/// `N`; `bbar`, `c`, `state` must match it, `d` must be `[H]`, `u` and `y` `[L, H]`.
pub fn check_scan(
    abar: &crate::Layout,
    bbar: &crate::Layout,
    c: &crate::Layout,
    d: &crate::Layout,
    u: &crate::Layout,
    state: &crate::Layout,
    y: Option<&crate::Layout>,
) -> Result<(usize, usize, usize)> {
    let (h, n) = match *abar.shape() {
        [h, n, 2] => (h, n),
        [_, _, k] => {
            return Err(Error::Shape {
                arg: "abar",
                axis: 2,
                got: k,
                expected: 2,
                shape: abar.dims(),
            });
        }
        _ => {
            return Err(Error::Rank {
                arg: "abar",
                got: abar.rank(),
                min: 3,
                max: 3,
            });
        }
    };
    check::shape("bbar", bbar, &[h, n, 2])?;
    check::shape("c", c, &[h, n, 2])?;
    check::shape("state", state, &[h, n, 2])?;
    check::shape("d", d, &[h])?;
    let l = match *u.shape() {
        [l, _] => l,
        _ => {
            return Err(Error::Rank {
                arg: "u",
                got: u.rank(),
                min: 2,
                max: 2,
            });
        }
    };
    check::shape("u", u, &[l, h])?;
    if let Some(y) = y {
        check::shape("y", y, &[l, h])?;
    }
    Ok((h, n, l))
}

/// Runs the scan over the `L` tokens of `u [L, H]`, updating `state [H, N, 2]` in place and
/// writing `y [L, H]` when given (without `y`, only the state advances: how a chunked run carries
/// its state). See the module docs for the recurrence.
///
/// # Errors
/// As [`check_scan`].
#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
pub fn scan<T: Element>(
    abar: View<'_, Reference, T::Acc>,
    bbar: View<'_, Reference, T::Acc>,
    c: View<'_, Reference, T::Acc>,
    d: View<'_, Reference, T::Acc>,
    u: View<'_, Reference, T>,
    mut state: ViewMut<'_, Reference, T::Acc>,
    mut y: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    let (h, n, l) = check_scan(
        abar.layout(),
        bbar.layout(),
        c.layout(),
        d.layout(),
        u.layout(),
        state.layout(),
        y.as_ref().map(ViewMut::layout),
    )?;
    let (al, bl, cl, dl, ul) = (
        *abar.layout(),
        *bbar.layout(),
        *c.layout(),
        *d.layout(),
        *u.layout(),
    );
    let sl = *state.layout();
    let (am, bm, cm, dm, um) = (abar.mem(), bbar.mem(), c.mem(), d.mem(), u.mem());
    let sm = state.mem_mut();
    let two = T::Acc::lit(2.0);
    // Contiguous parameters and state (the usual case): walk them as slices of `[re, im]` pairs.
    let hn2 = 2 * h * n;
    let dense = |l: &crate::Layout| l.is_contiguous();
    if dense(&al) && dense(&bl) && dense(&cl) && dense(&sl) && n > 0 {
        let a_s = am.get(al.offset()..al.offset() + hn2);
        let b_s = bm.get(bl.offset()..bl.offset() + hn2);
        let c_s = cm.get(cl.offset()..cl.offset() + hn2);
        let s_off = sl.offset();
        if let (Some(a_s), Some(b_s), Some(c_s), Some(s_s)) =
            (a_s, b_s, c_s, sm.get_mut(s_off..s_off + hn2))
        {
            for t in 0..l {
                for (hh, (((ah, bh), ch), xh)) in a_s
                    .chunks_exact(2 * n)
                    .zip(b_s.chunks_exact(2 * n))
                    .zip(c_s.chunks_exact(2 * n))
                    .zip(s_s.chunks_exact_mut(2 * n))
                    .enumerate()
                {
                    let ut = at(um, addr(&ul, [t, hh]))?.to_acc();
                    let mut acc = T::Acc::zero();
                    for (((a, b), c), x) in ah
                        .chunks_exact(2)
                        .zip(bh.chunks_exact(2))
                        .zip(ch.chunks_exact(2))
                        .zip(xh.chunks_exact_mut(2))
                    {
                        if let ([ar, ai], [br, bi], [cr, ci], [xr, xi]) = (a, b, c, x) {
                            let nr = *ar * *xr - *ai * *xi + *br * ut;
                            let ni = *ar * *xi + *ai * *xr + *bi * ut;
                            *xr = nr;
                            *xi = ni;
                            acc += *cr * nr - *ci * ni;
                        }
                    }
                    if let Some(yv) = y.as_mut() {
                        let yl = *yv.layout();
                        let out = two * acc + at(dm, addr(&dl, [hh]))? * ut;
                        put(yv.mem_mut(), addr(&yl, [t, hh]), T::from_acc(out))?;
                    }
                }
            }
            return Ok(());
        }
    }
    for t in 0..l {
        for hh in 0..h {
            let ut = at(um, addr(&ul, [t, hh]))?.to_acc();
            let mut acc = T::Acc::zero();
            for nn in 0..n {
                let ar = at(am, addr(&al, [hh, nn, 0]))?;
                let ai = at(am, addr(&al, [hh, nn, 1]))?;
                let br = at(bm, addr(&bl, [hh, nn, 0]))?;
                let bi = at(bm, addr(&bl, [hh, nn, 1]))?;
                let (pr, pi) = (addr(&sl, [hh, nn, 0]), addr(&sl, [hh, nn, 1]));
                let xr = at(sm, pr)?;
                let xi = at(sm, pi)?;
                let nr = ar * xr - ai * xi + br * ut;
                let ni = ar * xi + ai * xr + bi * ut;
                put(sm, pr, nr)?;
                put(sm, pi, ni)?;
                if y.is_some() {
                    let cr = at(cm, addr(&cl, [hh, nn, 0]))?;
                    let ci = at(cm, addr(&cl, [hh, nn, 1]))?;
                    acc += cr * nr - ci * ni;
                }
            }
            if let Some(yv) = y.as_mut() {
                let yl = *yv.layout();
                let out = two * acc + at(dm, addr(&dl, [hh]))? * ut;
                put(yv.mem_mut(), addr(&yl, [t, hh]), T::from_acc(out))?;
            }
        }
    }
    Ok(())
}
