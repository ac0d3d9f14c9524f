//! Radix-2 FFTs over "structure of arrays" complex data: `W = A::LANES` independent signals
//! (one per lane, e.g. `W` channels), point `j` of every signal in the vectors
//! `re[j W..(j + 1) W]` and `im[j W..(j + 1) W]`, so every butterfly is `W` butterflies in vertical
//! vector operations with a broadcast twiddle, and no shuffles.
//!
//! - [`dif`]: the forward transform `X_f = sum_j x_j e^{-2 pi i jf/m}`, decimation in frequency
//!   (Gentleman & Sande 1966): natural order in, bit-reversed order out;
//! - [`dit_inverse`]: the inverse (exponent `+`, no `1/m`), decimation in time (Cooley & Tukey
//!   1965): bit-reversed order in, natural order out.
//!
//! Used back to back (forward, a pointwise product in bit-reversed order, inverse) they need no
//! bit-reversal pass. Stages whose butterflies span more than [`BLOCK_BYTES`] run over the whole
//! array; the others run block by block, each block staying in L1 for all its stages.
//! Twiddles come from one table `tw[i] = e^{-2 pi i i/(2m)}`, `i < m` (the table of the real
//! transform of length `2m` built on these, [`twiddles`]); stage `s` (half-span) uses
//! `tw[j m/s]`.

use crate::lanes::{Lanes, Vector};

/// Bytes of one block of points (both parts) processed through all its local stages at once.
const BLOCK_BYTES: usize = 16 * 1024;

/// `tw[i] = e^{-2 pi i i/n}` for `i < n/2`, split into `re` and `im` (each `n/2` long),
/// computed in f64 (`libm::sincos`) and rounded once, as the portable kernel's table (the upper
/// half by the exact mirror `tw[n/2 - i] = -conj(tw[i])`).
pub(crate) fn twiddles<A: Lanes>(n: usize, re: &mut [A], im: &mut [A]) {
    #[allow(clippy::cast_precision_loss)] // n < 2^53
    let step = -2.0 * core::f64::consts::PI / n as f64;
    let m = re.len().min(im.len());
    // `tw[m - j] = (-re tw[j], im tw[j])` (the angle mirrored about -pi/2): half the sincos calls.
    let half = m / 2;
    for (j, (r, i)) in re.iter_mut().zip(im.iter_mut()).enumerate().take(half + 1) {
        #[allow(clippy::cast_precision_loss)]
        let (s, c) = libm::sincos(step * j as f64);
        *r = A::lit(c);
        *i = A::lit(s);
    }
    for j in half + 1..m {
        if let (Some(&r), Some(&i)) = (re.get(m - j), im.get(m - j)) {
            if let (Some(dr), Some(di)) = (re.get_mut(j), im.get_mut(j)) {
                *dr = -r;
                *di = i;
            }
        }
    }
}

#[inline(always)]
fn ld<A: Lanes>(s: &[A]) -> A::V {
    A::V::load_or(s, A::zero())
}

/// Points per cache block for this vector width.
fn block_points<A: Lanes>() -> usize {
    (BLOCK_BYTES / (2 * A::LANES * size_of::<A>())).max(2)
}

/// One decimation-in-frequency stage of half-span `s` over `re`/`im` (a whole number of blocks of
/// `2s` points): `x' = x + y`, `y' = (x - y) w^j`.
#[inline]
fn dif_stage<A: Lanes>(re: &mut [A], im: &mut [A], s: usize, step: usize, twr: &[A], twi: &[A]) {
    let w = A::LANES;
    for (br, bi) in re
        .chunks_exact_mut(2 * s * w)
        .zip(im.chunks_exact_mut(2 * s * w))
    {
        let (xr, yr) = br.split_at_mut(s * w);
        let (xi, yi) = bi.split_at_mut(s * w);
        let tw = twr.iter().step_by(step).zip(twi.iter().step_by(step));
        for ((((xr, yr), xi), yi), (&cr, &ci)) in xr
            .chunks_exact_mut(w)
            .zip(yr.chunks_exact_mut(w))
            .zip(xi.chunks_exact_mut(w))
            .zip(yi.chunks_exact_mut(w))
            .zip(tw)
        {
            let (ar, ai, br, bi) = (ld(xr), ld(xi), ld(yr), ld(yi));
            (ar + br).store(xr);
            (ai + bi).store(xi);
            let (dr, di) = (ar - br, ai - bi);
            let (cr, ci) = (A::V::splat(cr), A::V::splat(ci));
            dr.mul_add(cr, -(di * ci)).store(yr);
            dr.mul_add(ci, di * cr).store(yi);
        }
    }
}

/// One decimation-in-time inverse stage of half-span `s`: `t = y conj(w^j)`, `x' = x + t`,
/// `y' = x - t`.
#[inline]
fn dit_stage<A: Lanes>(re: &mut [A], im: &mut [A], s: usize, step: usize, twr: &[A], twi: &[A]) {
    let w = A::LANES;
    for (br, bi) in re
        .chunks_exact_mut(2 * s * w)
        .zip(im.chunks_exact_mut(2 * s * w))
    {
        let (xr, yr) = br.split_at_mut(s * w);
        let (xi, yi) = bi.split_at_mut(s * w);
        let tw = twr.iter().step_by(step).zip(twi.iter().step_by(step));
        for ((((xr, yr), xi), yi), (&cr, &ci)) in xr
            .chunks_exact_mut(w)
            .zip(yr.chunks_exact_mut(w))
            .zip(xi.chunks_exact_mut(w))
            .zip(yi.chunks_exact_mut(w))
            .zip(tw)
        {
            let (ar, ai, br, bi) = (ld(xr), ld(xi), ld(yr), ld(yi));
            let (cr, ci) = (A::V::splat(cr), A::V::splat(ci));
            // (br + i bi)(cr - i ci)
            let tr = br.mul_add(cr, bi * ci);
            let ti = bi.mul_add(cr, -(br * ci));
            (ar + tr).store(xr);
            (ai + ti).store(xi);
            (ar - tr).store(yr);
            (ai - ti).store(yi);
        }
    }
}

/// Forward FFT of the `W` signals of length `m = re.len() / W` (a power of two), natural order in,
/// bit-reversed out. `twr`/`twi` as [`twiddles`] for length `2m`.
pub(crate) fn dif<A: Lanes>(re: &mut [A], im: &mut [A], twr: &[A], twi: &[A]) {
    let w = A::LANES;
    let m = re.len() / w;
    let b = block_points::<A>().min(m);
    let mut s = m / 2;
    while s >= 1 && 2 * s > b {
        dif_stage(re, im, s, m / s, twr, twi);
        s /= 2;
    }
    if s >= 1 {
        for (br, bi) in re.chunks_exact_mut(b * w).zip(im.chunks_exact_mut(b * w)) {
            let mut s = s;
            while s >= 1 {
                dif_stage(br, bi, s, m / s, twr, twi);
                s /= 2;
            }
        }
    }
}

/// Inverse FFT (exponent `+`, no `1/m`) of the `W` signals, bit-reversed order in, natural out.
pub(crate) fn dit_inverse<A: Lanes>(re: &mut [A], im: &mut [A], twr: &[A], twi: &[A]) {
    let w = A::LANES;
    let m = re.len() / w;
    let b = block_points::<A>().min(m);
    if m < 2 {
        return;
    }
    for (br, bi) in re.chunks_exact_mut(b * w).zip(im.chunks_exact_mut(b * w)) {
        let mut s = 1;
        while 2 * s <= b {
            dit_stage(br, bi, s, m / s, twr, twi);
            s *= 2;
        }
    }
    let mut s = b;
    while s < m {
        dit_stage(re, im, s, m / s, twr, twi);
        s *= 2;
    }
}
