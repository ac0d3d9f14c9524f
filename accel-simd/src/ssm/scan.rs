//! The recurrent mode of a diagonal complex state-space model (S4 eq. 3 with a diagonal state
//! matrix, S4D): `x_t = Abar x_{t-1} + Bbar u_t`, `y_t = 2 Re(sum_n C x_t) + D u_t`, vectorised
//! over the `N` modes of a channel.
//!
//! Channels are independent, so each channel runs all its tokens in turn (the portable kernel
//! runs token by token; the numbers are the same up to the summation order over `N`). The
//! channel's interleaved `[re, im]` parameters and state are split once into real and imaginary
//! stack buffers of at most [`MAX_MODES`] modes, so the update is vertical vector arithmetic; the
//! last `N mod LANES` modes are scalar (a zero-padded lane would meet an infinite `u` as a NaN).
//! Non-contiguous parameters or state, no channels or modes (empty views may sit at any offset),
//! more modes, or fewer than [`MIN_TOKENS`] tokens take the portable kernel.

use seqcore::portable::ssm::scan::check_scan;
use seqcore::{Backend, DType, Element, Reference, Result, View, ViewMut};

use crate::lanes::{Lanes, Vector};
use crate::linear_memory::{acc_as, as_acc, oob};

/// Modes per channel held in the stack buffers.
pub(crate) const MAX_MODES: usize = 256;

/// Tokens from which splitting a channel's parameters pays for itself: shorter calls (a
/// streaming step) take the portable kernel, whose dense path walks the interleaved pairs
/// directly (measured: a one-token step over H = 256, N = 64 was 1.5x slower split).
pub(crate) const MIN_TOKENS: usize = 8;

/// The scan (see the module docs); checks and errors as the portable kernel's.
#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
pub(crate) fn scan<T: Element>(
    abar: View<'_, Reference, T::Acc>,
    bbar: View<'_, Reference, T::Acc>,
    c: View<'_, Reference, T::Acc>,
    d: View<'_, Reference, T::Acc>,
    u: View<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    y: Option<ViewMut<'_, Reference, T>>,
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
    let dense = abar.layout().is_contiguous()
        && bbar.layout().is_contiguous()
        && c.layout().is_contiguous()
        && state.layout().is_contiguous()
        && h > 0
        && n > 0
        && n <= MAX_MODES
        && l >= MIN_TOKENS;
    match <T::Acc as Element>::DTYPE {
        DType::F32 if dense => scan_lanes::<T, f32>(abar, bbar, c, d, u, state, y, (h, n, l)),
        DType::F64 if dense => scan_lanes::<T, f64>(abar, bbar, c, d, u, state, y, (h, n, l)),
        _ => Reference.ssm_scan::<T>(abar, bbar, c, d, u, state, y),
    }
}

/// The contiguous `[H, N, 2]` elements of a view, as `A`.
fn dense<'a, T: Element, A: Lanes>(v: &View<'a, Reference, T::Acc>, len: usize) -> Result<&'a [A]> {
    let off = v.layout().offset();
    let s = v
        .mem()
        .get(off..off + len)
        .ok_or(oob(v.mem().len(), off + len))?;
    bytemuck::try_cast_slice::<T::Acc, A>(s).map_err(|_| oob(0, 0))
}

/// Splits interleaved `[re, im]` pairs into `re` and `im`.
fn split<A: Copy>(src: &[A], re: &mut [A], im: &mut [A]) {
    for ((p, r), i) in src.chunks_exact(2).zip(re.iter_mut()).zip(im.iter_mut()) {
        if let [a, b] = p {
            *r = *a;
            *i = *b;
        }
    }
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
fn scan_lanes<T: Element, A: Lanes>(
    abar: View<'_, Reference, T::Acc>,
    bbar: View<'_, Reference, T::Acc>,
    c: View<'_, Reference, T::Acc>,
    d: View<'_, Reference, T::Acc>,
    u: View<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    mut y: Option<ViewMut<'_, Reference, T>>,
    (h, n, l): (usize, usize, usize),
) -> Result<()> {
    let hn2 = 2 * h * n;
    let (am, bm, cm) = (
        dense::<T, A>(&abar, hn2)?,
        dense::<T, A>(&bbar, hn2)?,
        dense::<T, A>(&c, hn2)?,
    );
    let (smem, sl) = state.into_parts();
    let soff = sl.offset();
    let smem = smem.get_mut(soff..soff + hn2).ok_or(oob(0, soff + hn2))?;
    let sm = bytemuck::try_cast_slice_mut::<T::Acc, A>(smem).map_err(|_| oob(0, 0))?;
    let (uoff, us0, us1) = {
        let s = u.layout().strides();
        (
            u.layout().offset(),
            s.first().copied().unwrap_or(0),
            s.get(1).copied().unwrap_or(0),
        )
    };
    let um = u.mem();
    let (doff, ds) = (
        d.layout().offset(),
        d.layout().strides().first().copied().unwrap_or(0),
    );
    let w = A::LANES;
    let nv = n - n % w;
    let zero = A::zero();
    let mut bufs = [[zero; MAX_MODES]; 8];
    let [ar, ai, br, bi, cr, ci, xr, xi] = &mut bufs;
    let two = A::lit(2.0);
    for hh in 0..h {
        let range = 2 * hh * n..2 * (hh + 1) * n;
        let (ah, bh, ch) = (
            am.get(range.clone()).ok_or(oob(hn2, range.end))?,
            bm.get(range.clone()).ok_or(oob(hn2, range.end))?,
            cm.get(range.clone()).ok_or(oob(hn2, range.end))?,
        );
        split(ah, ar, ai);
        split(bh, br, bi);
        split(ch, cr, ci);
        let xh = sm.get_mut(range.clone()).ok_or(oob(hn2, range.end))?;
        split(xh, xr, xi);
        let di = doff + hh * ds;
        let dh: A = acc_as::<T, A>(*d.mem().get(di).ok_or(oob(d.mem().len(), di))?);
        for t in 0..l {
            let ui = uoff + t * us0 + hh * us1;
            let ut: A = acc_as::<T, A>(um.get(ui).ok_or(oob(um.len(), ui))?.to_acc());
            let uv = A::V::splat(ut);
            let mut acc = A::V::splat(zero);
            let vecs = ar
                .get(..nv)
                .unwrap_or(&[])
                .chunks_exact(w)
                .zip(ai.chunks_exact(w))
                .zip(br.chunks_exact(w).zip(bi.chunks_exact(w)))
                .zip(cr.chunks_exact(w).zip(ci.chunks_exact(w)))
                .zip(xr.chunks_exact_mut(w).zip(xi.chunks_exact_mut(w)));
            for ((((a_r, a_i), (b_r, b_i)), (c_r, c_i)), (x_r, x_i)) in vecs {
                let ld = |s: &[A]| A::V::load_or(s, zero);
                let (pr, pi) = (ld(x_r), ld(x_i));
                let (a_r, a_i) = (ld(a_r), ld(a_i));
                let nr = a_r.mul_add(pr, ld(b_r).mul_add(uv, -(a_i * pi)));
                let ni = a_r.mul_add(pi, ld(b_i).mul_add(uv, a_i * pr));
                nr.store(x_r);
                ni.store(x_i);
                acc = ld(c_r).mul_add(nr, acc);
                acc = (-ld(c_i)).mul_add(ni, acc);
            }
            let mut s = acc.reduce_add();
            for j in nv..n {
                let g = |s: &[A]| s.get(j).copied().unwrap_or(zero);
                let (a_r, a_i, b_r, b_i) = (g(ar), g(ai), g(br), g(bi));
                let (x_r, x_i) = (g(xr), g(xi));
                let nr = a_r * x_r - a_i * x_i + b_r * ut;
                let ni = a_r * x_i + a_i * x_r + b_i * ut;
                if let Some(p) = xr.get_mut(j) {
                    *p = nr;
                }
                if let Some(p) = xi.get_mut(j) {
                    *p = ni;
                }
                s += g(cr) * nr - g(ci) * ni;
            }
            if let Some(yv) = y.as_mut() {
                let yl = *yv.layout();
                let st = yl.strides();
                let yi = yl.offset()
                    + t * st.first().copied().unwrap_or(0)
                    + hh * st.get(1).copied().unwrap_or(0);
                let ym = yv.mem_mut();
                let ylen = ym.len();
                *ym.get_mut(yi).ok_or(oob(ylen, yi))? =
                    T::from_acc(as_acc::<T, A>(two * s + dh * ut));
            }
        }
        for ((p, r), i) in xh.chunks_exact_mut(2).zip(xr.iter()).zip(xi.iter()) {
            if let [a, b] = p {
                *a = *r;
                *b = *i;
            }
        }
    }
    Ok(())
}
