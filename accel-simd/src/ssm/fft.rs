//! Radix-4 FFTs (with one radix-2 stage when the length is an odd power of two) over "structure
//! of arrays" complex data: `W = A::LANES` independent signals (one per lane, e.g. `W` channels),
//! point `j` of every signal in the vectors `re[j W..(j + 1) W]` and `im[j W..(j + 1) W]`, so every
//! butterfly is `W` butterflies in vertical vector operations with broadcast twiddles, and no
//! shuffles.
//!
//! - [`dif`]: the forward transform `X_f = sum_j x_j e^{-2 pi i jf/m}`, decimation in frequency
//!   (Gentleman & Sande 1966): natural order in, bit-reversed order out;
//! - [`dit_inverse`]: the inverse (exponent `+`, no `1/m`), decimation in time (Cooley & Tukey
//!   1965): bit-reversed order in, natural order out.
//!
//! Each radix-4 pass is two radix-2 stages fused (the "radix-2^2" butterfly: the two stages'
//! twiddles `w^j` and `w^{j+q} = -i w^j` merged, three complex products per four points, one read
//! and one write of each point instead of two), so the output order is the radix-2 one:
//! bit-reversed. Used back to back (forward, a pointwise product in bit-reversed order, inverse)
//! they need no bit-reversal pass. Passes whose butterflies span more than [`BLOCK_BYTES`] run
//! over the whole array; the others run block by block, each block staying in L1 for all its
//! passes. A forward transform whose upper half is zero (zero padding) skips reading it in its
//! first pass; an inverse whose upper half of outputs is not needed skips computing it in its
//! last pass.
//!
//! Twiddles come from one table `tw[i] = e^{-2 pi i i/(2m)}`, `i < m` (the table of the real
//! transform of length `2m` built on these, [`twiddles`]); a pass of quarter-span `q` uses
//! `w^j = tw[j m/(2q)]`, `w^{2j}` and `w^{3j}` (`tw[i + m] = -tw[i]` beyond the table).

use crate::lanes::{Lanes, Vector};

/// Bytes of one block of points (both parts) processed through all its local passes at once.
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

/// Broadcast twiddle `w^i = e^{-2 pi i i/(2m)}` for `i < 2m` from the table of `m` (`tw[i + m] =
/// -tw[i]`).
#[inline(always)]
fn tw<A: Lanes>(twr: &[A], twi: &[A], i: usize) -> (A::V, A::V) {
    let m = twr.len();
    let (i, neg) = if i < m { (i, false) } else { (i - m, true) };
    let (r, im) = (
        twr.get(i).copied().unwrap_or(A::zero()),
        twi.get(i).copied().unwrap_or(A::zero()),
    );
    if neg {
        (A::V::splat(-r), A::V::splat(-im))
    } else {
        (A::V::splat(r), A::V::splat(im))
    }
}

/// `(ar + i ai)(cr + i ci)`.
#[inline(always)]
fn cmul<A: Lanes>((ar, ai): (A::V, A::V), (cr, ci): (A::V, A::V)) -> (A::V, A::V) {
    (ar.mul_add(cr, -(ai * ci)), ar.mul_add(ci, ai * cr))
}

/// `(ar + i ai) conj(cr + i ci)`.
#[inline(always)]
fn cmul_conj<A: Lanes>((ar, ai): (A::V, A::V), (cr, ci): (A::V, A::V)) -> (A::V, A::V) {
    (ar.mul_add(cr, ai * ci), ai.mul_add(cr, -(ar * ci)))
}

/// The four quarters `[x0, x1, x2, x3]` of one group of `4q` points (`q W` values each) of one part.
type Quarters<'a, A> = [&'a mut [A]; 4];

fn quarters<A>(b: &mut [A], qw: usize) -> Quarters<'_, A> {
    let (a, rest) = b.split_at_mut(qw.min(b.len()));
    let (b1, rest) = rest.split_at_mut(qw.min(rest.len()));
    let (c, d) = rest.split_at_mut(qw.min(rest.len()));
    [a, b1, c, d]
}

/// One radix-4 decimation-in-frequency pass of quarter-span `q` over `re`/`im` (a whole number of
/// groups of `4q` points), the radix-2 stages of half-spans `2q` and `q` fused:
/// `t0 = x0 + x2`, `t1 = x1 + x3`, `t2 = x0 - x2`, `t3 = x1 - x3`, then
/// `y0 = t0 + t1`, `y1 = (t0 - t1) w^{2j}`, `y2 = (t2 - i t3) w^j`, `y3 = (t2 + i t3) w^{3j}`
/// (`w = e^{-2 pi i/(4q)}`). With `upper_zero`, `x2 = x3 = 0` is assumed (not read).
#[inline]
fn dif4<A: Lanes>(re: &mut [A], im: &mut [A], q: usize, upper_zero: bool, twr: &[A], twi: &[A]) {
    let w = A::LANES;
    let m = twr.len();
    let step = m / (2 * q);
    for (br, bi) in re
        .chunks_exact_mut(4 * q * w)
        .zip(im.chunks_exact_mut(4 * q * w))
    {
        let [r0, r1, r2, r3] = quarters(br, q * w);
        let [i0, i1, i2, i3] = quarters(bi, q * w);
        let rows = r0
            .chunks_exact_mut(w)
            .zip(r1.chunks_exact_mut(w))
            .zip(r2.chunks_exact_mut(w))
            .zip(r3.chunks_exact_mut(w))
            .zip(
                i0.chunks_exact_mut(w)
                    .zip(i1.chunks_exact_mut(w))
                    .zip(i2.chunks_exact_mut(w))
                    .zip(i3.chunks_exact_mut(w)),
            );
        for (j, ((((r0, r1), r2), r3), (((i0, i1), i2), i3))) in rows.enumerate() {
            let (x0, x1) = ((ld(r0), ld(i0)), (ld(r1), ld(i1)));
            let (t0, t1, t2, t3) = if upper_zero {
                (x0, x1, x0, x1)
            } else {
                let (x2, x3) = ((ld(r2), ld(i2)), (ld(r3), ld(i3)));
                (
                    (x0.0 + x2.0, x0.1 + x2.1),
                    (x1.0 + x3.0, x1.1 + x3.1),
                    (x0.0 - x2.0, x0.1 - x2.1),
                    (x1.0 - x3.0, x1.1 - x3.1),
                )
            };
            (t0.0 + t1.0).store(r0);
            (t0.1 + t1.1).store(i0);
            let y1 = cmul::<A>((t0.0 - t1.0, t0.1 - t1.1), tw(twr, twi, 2 * j * step));
            y1.0.store(r1);
            y1.1.store(i1);
            // t2 -/+ i t3 = (t2r +/- t3i, t2i -/+ t3r)
            let y2 = cmul::<A>((t2.0 + t3.1, t2.1 - t3.0), tw(twr, twi, j * step));
            y2.0.store(r2);
            y2.1.store(i2);
            let y3 = cmul::<A>((t2.0 - t3.1, t2.1 + t3.0), tw(twr, twi, 3 * j * step));
            y3.0.store(r3);
            y3.1.store(i3);
        }
    }
}

/// One radix-4 decimation-in-time inverse pass of quarter-span `q`, the radix-2 stages of
/// half-spans `q` and `2q` fused (`c = conj w`): `p1 = x1 c^{2j}`, `p2 = x2 c^j`, `p3 = x3 c^{3j}`,
/// `b0 = x0 + p1`, `b1 = x0 - p1`, then `y0 = b0 + (p2 + p3)`, `y2 = b0 - (p2 + p3)`,
/// `y1 = b1 + i (p2 - p3)`, `y3 = b1 - i (p2 - p3)`. With `lower_only`, `y2` and `y3` are not
/// computed (their points are left as they were).
#[inline]
fn dit4<A: Lanes>(re: &mut [A], im: &mut [A], q: usize, lower_only: bool, twr: &[A], twi: &[A]) {
    let w = A::LANES;
    let m = twr.len();
    let step = m / (2 * q);
    for (br, bi) in re
        .chunks_exact_mut(4 * q * w)
        .zip(im.chunks_exact_mut(4 * q * w))
    {
        let [r0, r1, r2, r3] = quarters(br, q * w);
        let [i0, i1, i2, i3] = quarters(bi, q * w);
        let rows = r0
            .chunks_exact_mut(w)
            .zip(r1.chunks_exact_mut(w))
            .zip(r2.chunks_exact_mut(w))
            .zip(r3.chunks_exact_mut(w))
            .zip(
                i0.chunks_exact_mut(w)
                    .zip(i1.chunks_exact_mut(w))
                    .zip(i2.chunks_exact_mut(w))
                    .zip(i3.chunks_exact_mut(w)),
            );
        for (j, ((((r0, r1), r2), r3), (((i0, i1), i2), i3))) in rows.enumerate() {
            let x0 = (ld(r0), ld(i0));
            let p1 = cmul_conj::<A>((ld(r1), ld(i1)), tw(twr, twi, 2 * j * step));
            let p2 = cmul_conj::<A>((ld(r2), ld(i2)), tw(twr, twi, j * step));
            let p3 = cmul_conj::<A>((ld(r3), ld(i3)), tw(twr, twi, 3 * j * step));
            let (b0, b1) = ((x0.0 + p1.0, x0.1 + p1.1), (x0.0 - p1.0, x0.1 - p1.1));
            let (s, d) = ((p2.0 + p3.0, p2.1 + p3.1), (p2.0 - p3.0, p2.1 - p3.1));
            // i d = (-di, dr)
            (b0.0 + s.0).store(r0);
            (b0.1 + s.1).store(i0);
            (b1.0 - d.1).store(r1);
            (b1.1 + d.0).store(i1);
            if !lower_only {
                (b0.0 - s.0).store(r2);
                (b0.1 - s.1).store(i2);
                (b1.0 + d.1).store(r3);
                (b1.1 - d.0).store(i3);
            }
        }
    }
}

/// The radix-2 stage of half-span 1 (twiddle 1) of either direction: `x' = x + y`, `y' = x - y`.
#[inline]
fn radix2_last<A: Lanes>(re: &mut [A], im: &mut [A]) {
    let w = A::LANES;
    for (br, bi) in re.chunks_exact_mut(2 * w).zip(im.chunks_exact_mut(2 * w)) {
        let (xr, yr) = br.split_at_mut(w);
        let (xi, yi) = bi.split_at_mut(w);
        let (ar, ai, cr, ci) = (ld(xr), ld(xi), ld(yr), ld(yi));
        (ar + cr).store(xr);
        (ai + ci).store(xi);
        (ar - cr).store(yr);
        (ai - ci).store(yi);
    }
}

/// Forward FFT of the `W` signals of length `m = re.len() / W` (a power of two), natural order in,
/// bit-reversed out. `twr`/`twi` as [`twiddles`] for length `2m` (`m` entries each). With
/// `upper_zero`, points `m/2..m` are taken as zero whatever they hold (zero padding).
pub(crate) fn dif<A: Lanes>(re: &mut [A], im: &mut [A], twr: &[A], twi: &[A], upper_zero: bool) {
    let w = A::LANES;
    let m = re.len() / w;
    if m < 2 {
        return;
    }
    if m < 4 && upper_zero {
        // No radix-4 pass to skip the zeros in: write them.
        for b in [&mut *re, &mut *im] {
            b.get_mut(m / 2 * w..).unwrap_or(&mut []).fill(A::zero());
        }
    }
    let b = block_points::<A>().min(m);
    // Quarter-spans m/4, m/16, ... down to 1 (log2 m even) or 2 (odd, then a radix-2 stage).
    let mut q = m / 4;
    let mut first = true;
    while q >= 1 && 4 * q > b {
        dif4(re, im, q, first && upper_zero, twr, twi);
        first = false;
        q /= 4;
    }
    let odd = m.trailing_zeros() % 2 == 1;
    for (br, bi) in re.chunks_exact_mut(b * w).zip(im.chunks_exact_mut(b * w)) {
        let (mut q, mut first) = (q, first);
        while q >= 1 {
            dif4(br, bi, q, first && upper_zero, twr, twi);
            first = false;
            q /= 4;
        }
        if odd {
            radix2_last(br, bi);
        }
    }
}

/// Inverse FFT (exponent `+`, no `1/m`) of the `W` signals, bit-reversed order in, natural out.
/// With `lower_only`, only points `0..m/2` of the output are computed (the others hold garbage).
pub(crate) fn dit_inverse<A: Lanes>(
    re: &mut [A],
    im: &mut [A],
    twr: &[A],
    twi: &[A],
    lower_only: bool,
) {
    let w = A::LANES;
    let m = re.len() / w;
    if m < 2 {
        return;
    }
    let odd = m.trailing_zeros() % 2 == 1;
    let b = block_points::<A>().min(m);
    let q0 = if odd { 2 } else { 1 };
    for (br, bi) in re.chunks_exact_mut(b * w).zip(im.chunks_exact_mut(b * w)) {
        if odd {
            radix2_last(br, bi);
        }
        let mut q = q0;
        while 4 * q <= b {
            dit4(br, bi, q, lower_only && 4 * q == m, twr, twi);
            q *= 4;
        }
    }
    let mut q = q0;
    while 4 * q <= b {
        q *= 4;
    }
    while 4 * q <= m {
        dit4(re, im, q, lower_only && 4 * q == m, twr, twi);
        q *= 4;
    }
}
