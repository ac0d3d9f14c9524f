//! The convolution mode of a state-space model (S4 eq. 4-5), `y = k * u + D u` per channel, by
//! real FFTs of length `n = 2m >= 2L - 1` on `W = A::LANES` channels at once (one channel per
//! lane, [`super::fft`]).
//!
//! Each real signal `x` of length `n` (zero padded) is transformed as the complex signal
//! `z_j = x_{2j} + i x_{2j+1}` of length `m` and split (the standard real-FFT identity):
//! `X_f = E_f + w^f O_f`, `X_{m-f} = conj(E_f - w^f O_f)` with `E_f = (Z_f + conj Z_{m-f})/2`,
//! `O_f = (Z_f - conj Z_{m-f})/(2i)`, `w = e^{-2 pi i/n}`. The product `Y = K U` is folded back
//! into a length-`m` spectrum, `Z'_f = A + Q`, `Z'_{m-f} = conj(A - Q)` with
//! `A = Y_f + conj Y_{m-f}`, `Q = i conj(w^f) (Y_f - conj Y_{m-f})`, whose inverse is
//! `n (y_{2j} + i y_{2j+1})`. Per channel: three complex FFTs of length `m = n/2` (one and a half
//! of length `n`, as the portable kernel), and each signal is transformed on its own, so the error
//! of each transform stays relative to its own norm (no scaling is needed, unlike the portable
//! kernel's two-signals-in-one packing). The forward transforms never read their zero padding
//! (points `m/2..m`), the inverse never computes the points past `m/2` (past `L`), and the rows of
//! `u` and `y` (`[L, H]`: a group of `W` channels reads `W` values of each row, rows `H` apart)
//! are prefetched [`AHEAD`] rows ahead: without it the hardware prefetchers, which stop at page
//! boundaries, left about half the time to these strided accesses (H = 256, L = 4096).
//!
//! NaN policy: a NaN or infinity in a channel's `k` or `u` spreads over that channel's outputs
//! (every output of a transform depends on every input), never into another channel (each lane is
//! its own channel); the other channels' results are unchanged.

use seqcore::portable::ssm::conv::{check_conv, check_workspace, conv_fft, fft_len};
use seqcore::{DType, Element, Error, Reference, Result, View, ViewMut};

use super::fft::{dif, dit_inverse, twiddles};
use crate::lanes::{F32_LANES, Lanes, Vector, narrow, widen};
use crate::linear_memory::{acc_as, oob};

/// The FFT length for `l` tokens: [`fft_len`], at least 4 (so the half-length transform has two
/// points).
fn length(l: usize) -> Result<usize> {
    Ok(fft_len(l)?.max(4))
}

/// Accumulation-type workspace elements: `n` twiddles and two buffers of `n` points of
/// `F32_LANES` lanes (`n (1 + 2 F32_LANES)`, the f32 width bounding the f64 one); 0 for `l = 0`.
///
/// # Errors
/// [`Error::Overflow`] naming `l`.
pub(crate) fn workspace_len(h: usize, l: usize) -> Result<usize> {
    let _ = h;
    if l == 0 {
        return Ok(0);
    }
    length(l)?
        .checked_mul(1 + 2 * F32_LANES)
        .ok_or(Error::Overflow { arg: "l" })
}

/// `y = k * u + D u` (see the module docs); checks and errors as the portable kernel's
/// (`seqcore::portable::ssm::conv::conv_fft`), with this backend's [`workspace_len`].
pub(crate) fn conv<T: Element>(
    k: View<'_, Reference, T>,
    u: View<'_, Reference, T>,
    d: Option<View<'_, Reference, T::Acc>>,
    mut y: ViewMut<'_, Reference, T>,
    mut workspace: ViewMut<'_, Reference, T::Acc>,
) -> Result<()> {
    let (h, l) = check_conv(
        k.layout(),
        u.layout(),
        d.as_ref().map(View::layout),
        y.layout(),
    )?;
    let need = workspace_len(h, l)?;
    check_workspace(workspace.layout(), need)?;
    if l == 0 || h == 0 {
        return Ok(());
    }
    match <T::Acc as Element>::DTYPE {
        DType::F32 => conv_lanes::<T, f32>(k, u, d, y, workspace, h, l, need),
        DType::F64 => conv_lanes::<T, f64>(k, u, d, y, workspace, h, l, need),
        _ => conv_fft::<T>(k, u, d, y.reborrow(), workspace.reborrow()),
    }
}

/// Strides `[s0, s1]` and offset of a rank-2 view.
fn strides2(l: &seqcore::Layout) -> (usize, usize, usize) {
    let s = l.strides();
    (
        l.offset(),
        s.first().copied().unwrap_or(0),
        s.get(1).copied().unwrap_or(0),
    )
}

/// Row `t` of `u [L, H]`, channels `h0..h0 + lanes`, widened into `out` (zero beyond `lanes`).
#[inline]
fn load_u<T: Element, A: Lanes>(
    um: &[T],
    (off, s0, s1): (usize, usize, usize),
    t: usize,
    h0: usize,
    out: &mut [A],
) -> Result<()> {
    let lanes = out.len();
    let start = off + t * s0 + h0 * s1;
    match (s1 == 1 || lanes <= 1, um.get(start..start + lanes)) {
        (true, Some(src)) => {
            let d = bytemuck::try_cast_slice_mut::<A, T::Acc>(out).map_err(|_| oob(0, 0))?;
            widen::<T>(src, d);
        }
        _ => {
            for (w, x) in out.iter_mut().enumerate() {
                let i = start + w * s1;
                *x = acc_as::<T, A>(um.get(i).ok_or(oob(um.len(), i))?.to_acc());
            }
        }
    }
    Ok(())
}

/// Rows ahead of the one read or written that [`prefetch`] asks for: the rows of `u` and `y`
/// (`[L, H]`) a group of channels touches are `H` elements apart, a page apart every few rows,
/// where the hardware prefetchers stop.
const AHEAD: usize = 16;

/// Hints that `s[i]` will be accessed soon (`prefetcht0`; nothing when `i` is out of bounds or
/// off x86-64). Measured on the H = 256, L = 4096 case: the strided rows of `u` and `y` were
/// about half the time without it.
#[inline(always)]
fn prefetch<T>(s: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = s.get(i) {
        // SAFETY: `prefetcht0` only hints the cache and never faults (the address is in bounds
        // anyway); SSE, which has it, is part of the x86-64 baseline.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                core::ptr::from_ref(x).cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (s, i);
}

#[allow(clippy::too_many_arguments)] // the kernel's operands and its checked extents
#[allow(clippy::too_many_lines)] // one pass: load, transform, multiply, inverse, store
fn conv_lanes<T: Element, A: Lanes>(
    k: View<'_, Reference, T>,
    u: View<'_, Reference, T>,
    d: Option<View<'_, Reference, T::Acc>>,
    mut y: ViewMut<'_, Reference, T>,
    mut workspace: ViewMut<'_, Reference, T::Acc>,
    h: usize,
    l: usize,
    need: usize,
) -> Result<()> {
    let w = A::LANES;
    let n = length(l)?;
    let m = n / 2;
    let bits = m.trailing_zeros();
    let off = workspace.layout().offset();
    let wmem =
        bytemuck::try_cast_slice_mut::<T::Acc, A>(workspace.mem_mut()).map_err(|_| oob(0, 0))?;
    let wlen = wmem.len();
    let ws = wmem.get_mut(off..off + need).ok_or(oob(wlen, off + need))?;
    let (twr, rest) = ws.split_at_mut(m);
    let (twi, rest) = rest.split_at_mut(m);
    let (kre, rest) = rest.split_at_mut(m * w);
    let (kim, rest) = rest.split_at_mut(m * w);
    let (ure, rest) = rest.split_at_mut(m * w);
    let uim = rest.get_mut(..m * w).ok_or(oob(0, m * w))?;
    twiddles::<A>(n, twr, twi);
    let (twr, twi) = (&*twr, &*twi);
    let (kl, ul) = (strides2(k.layout()), strides2(u.layout()));
    let (km, um) = (k.mem(), u.mem());
    let yl = strides2(y.layout());
    // Points holding data: `ceil(l / 2)`; the rest is zero padding.
    let data = l.div_ceil(2);
    #[allow(clippy::cast_precision_loss)] // n < 2^53
    let inv_n = A::V::splat(A::lit(1.0 / n as f64));
    let half = A::V::splat(A::lit(0.5));
    let zero = A::zero();
    let mut ubuf = [zero; 16];
    let mut ybuf = [zero; 16];
    let mut dbuf = [zero; 16];
    let rev = |f: usize| f.reverse_bits() >> (usize::BITS - bits);
    for h0 in (0..h).step_by(w) {
        let lanes = w.min(h - h0);
        // Load: k (transposed, lane by lane) and u (row by row) as z_j = x_2j + i x_2j+1.
        // Zero the padding up to `m/2` (the forward transforms do not read points `m/2..m`).
        for buf in [&mut *kre, &mut *kim, &mut *ure, &mut *uim] {
            buf.get_mut(data.saturating_sub(1) * w..(m / 2) * w)
                .unwrap_or(&mut [])
                .fill(zero);
        }
        let (koff, ks0, ks1) = kl;
        for lane in 0..w {
            if lane >= lanes {
                for j in 0..data {
                    if let (Some(r), Some(i)) =
                        (kre.get_mut(j * w + lane), kim.get_mut(j * w + lane))
                    {
                        *r = zero;
                        *i = zero;
                    }
                }
                continue;
            }
            let base = koff + (h0 + lane) * ks0;
            match (ks1 == 1 || l <= 1, km.get(base..base + l)) {
                (true, Some(row)) => {
                    // A contiguous row: pairs (x_2j, x_2j+1) into lane `lane` of point j.
                    let mut pairs = row.chunks_exact(2);
                    for ((p, r), i) in (&mut pairs)
                        .zip(kre.chunks_exact_mut(w))
                        .zip(kim.chunks_exact_mut(w))
                    {
                        if let ([a, b], Some(rs), Some(is)) = (p, r.get_mut(lane), i.get_mut(lane))
                        {
                            *rs = acc_as::<T, A>(a.to_acc());
                            *is = acc_as::<T, A>(b.to_acc());
                        }
                    }
                    if let ([a], Some(rs)) = (pairs.remainder(), kre.get_mut((l / 2) * w + lane)) {
                        *rs = acc_as::<T, A>(a.to_acc());
                    }
                }
                _ => {
                    for t in 0..l {
                        let i = base + t * ks1;
                        let x = acc_as::<T, A>(km.get(i).ok_or(oob(km.len(), i))?.to_acc());
                        let dst = if t % 2 == 0 { &mut *kre } else { &mut *kim };
                        if let Some(s) = dst.get_mut((t / 2) * w + lane) {
                            *s = x;
                        }
                    }
                }
            }
        }
        let ub = ubuf.get_mut(..lanes).ok_or(oob(16, lanes))?;
        for t in 0..l {
            prefetch(um, ul.0 + (t + AHEAD) * ul.1 + h0 * ul.2);
            load_u::<T, A>(um, ul, t, h0, ub)?;
            let dst = if t % 2 == 0 { &mut *ure } else { &mut *uim };
            if let Some(s) = dst.get_mut((t / 2) * w..(t / 2 + 1) * w) {
                A::V::load_or(ub, zero).store(s);
            }
        }
        dif(kre, kim, twr, twi, true);
        dif(ure, uim, twr, twi, true);
        // Split, multiply, fold back (bit-reversed positions), pairs (f, m - f).
        for f in 0..=m / 2 {
            let g = (m - f) % m;
            let (pf, pg) = (rev(f), rev(g));
            let pt = |re: &[A], im: &[A], p: usize| -> (A::V, A::V) {
                let r = re.get(p * w..(p + 1) * w).unwrap_or(&[]);
                let i = im.get(p * w..(p + 1) * w).unwrap_or(&[]);
                (A::V::load_or(r, zero), A::V::load_or(i, zero))
            };
            let (cr, ci) = (
                A::V::splat(twr.get(f).copied().unwrap_or(zero)),
                A::V::splat(twi.get(f).copied().unwrap_or(zero)),
            );
            // X_f and X_g of one signal.
            let split = |(zfr, zfi): (A::V, A::V), (zgr, zgi): (A::V, A::V)| {
                let (er, ei) = ((zfr + zgr) * half, (zfi - zgi) * half);
                // O = (Zf - conj Zg) / 2i = -i/2 (dr + i di) = (di, -dr)/2
                let (or, oi) = ((zfi + zgi) * half, (zgr - zfr) * half);
                let (pr, pi) = (or.mul_add(cr, -(oi * ci)), or.mul_add(ci, oi * cr));
                ((er + pr, ei + pi), (er - pr, pi - ei))
            };
            let (kf, kg) = split(pt(kre, kim, pf), pt(kre, kim, pg));
            let (uf, ug) = split(pt(ure, uim, pf), pt(ure, uim, pg));
            let mul = |(ar, ai): (A::V, A::V), (br, bi): (A::V, A::V)| {
                (ar.mul_add(br, -(ai * bi)), ar.mul_add(bi, ai * br))
            };
            let (yfr, yfi) = mul(kf, uf);
            let (ygr, ygi) = mul(kg, ug);
            // A = Yf + conj Yg, B = Yf - conj Yg, Q = i conj(w^f) B.
            let (ar_, ai_) = (yfr + ygr, yfi - ygi);
            let (br_, bi_) = (yfr - ygr, yfi + ygi);
            // conj(w) B = (cr br + ci bi, cr bi - ci br); times i: (-(cr bi - ci br), cr br + ci bi)
            let (qr, qi) = (ci.mul_add(br_, -(cr * bi_)), cr.mul_add(br_, ci * bi_));
            let put = |re: &mut [A], im: &mut [A], p: usize, (vr, vi): (A::V, A::V)| {
                if let (Some(r), Some(i)) = (
                    re.get_mut(p * w..(p + 1) * w),
                    im.get_mut(p * w..(p + 1) * w),
                ) {
                    vr.store(r);
                    vi.store(i);
                }
            };
            put(kre, kim, pf, (ar_ + qr, ai_ + qi));
            if f != 0 && g != f {
                put(kre, kim, pg, (ar_ - qr, qi - ai_));
            }
        }
        // Only points `..data <= m/2` are stored.
        dit_inverse(kre, kim, twr, twi, true);
        // Store y = z / n + D u.
        let db = dbuf.get_mut(..lanes).ok_or(oob(16, lanes))?;
        for (lane, x) in db.iter_mut().enumerate() {
            *x = match &d {
                Some(dv) => {
                    let (doff, ds) = (
                        dv.layout().offset(),
                        dv.layout().strides().first().copied().unwrap_or(0),
                    );
                    let i = doff + (h0 + lane) * ds;
                    acc_as::<T, A>(*dv.mem().get(i).ok_or(oob(dv.mem().len(), i))?)
                }
                None => zero,
            };
        }
        let dvec = A::V::load_or(db, zero);
        let yb = ybuf.get_mut(..lanes).ok_or(oob(16, lanes))?;
        let (yoff, ys0, ys1) = yl;
        let ym = y.mem_mut();
        let ylen = ym.len();
        for t in 0..l {
            prefetch(um, ul.0 + (t + AHEAD) * ul.1 + h0 * ul.2);
            prefetch(ym, yoff + (t + AHEAD) * ys0 + h0 * ys1);
            load_u::<T, A>(um, ul, t, h0, ub)?;
            let src = if t % 2 == 0 { &*kre } else { &*kim };
            let z = A::V::load_or(src.get((t / 2) * w..(t / 2 + 1) * w).unwrap_or(&[]), zero);
            let v = dvec.mul_add(A::V::load_or(ub, zero), z * inv_n);
            v.store(yb);
            let start = yoff + t * ys0 + h0 * ys1;
            let ya = bytemuck::try_cast_slice::<A, T::Acc>(yb).map_err(|_| oob(0, 0))?;
            if ys1 == 1 || lanes <= 1 {
                let dst = ym
                    .get_mut(start..start + lanes)
                    .ok_or(oob(ylen, start + lanes))?;
                narrow::<T>(ya, dst);
            } else {
                for (lane, &x) in ya.iter().enumerate() {
                    let i = start + lane * ys1;
                    *ym.get_mut(i).ok_or(oob(ylen, i))? = T::from_acc(x);
                }
            }
        }
    }
    Ok(())
}
