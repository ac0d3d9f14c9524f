//! Fast Fourier transforms over interleaved complex slices `[re0, im0, re1, im1, ..]`, in the
//! accumulation type `R`, without allocation.
//!
//! - [`fft_pow2`]: iterative radix-2 Cooley-Tukey (decimation in time, bit-reversed input order)
//!   for power-of-two lengths, with a twiddle table made once by [`twiddles`].
//! - [`dft`]: any length, through Bluestein's chirp-z identity `jk = (j^2 + k^2 - (k-j)^2)/2`,
//!   which turns a DFT of length `n` into a circular convolution of power-of-two length
//!   `m >= 2n - 1` (three radix-2 FFTs).
//!
//! Sign convention as NumPy's `fft`: forward `X_k = sum_j x_j e^{-2 pi i jk/n}`, inverse with
//! `e^{+2 pi i jk/n}` and **no** `1/n` factor (the caller scales). Twiddles are computed in f64 and
//! rounded once to `R`.

use crate::element::Real;
use crate::error::{Error, Result};

fn param(arg: &'static str, reason: &'static str) -> Error {
    Error::Param { arg, reason }
}

/// The twiddle table of a power-of-two length `n`: `tw[j] = e^{-2 pi i j/n}` for `j < n/2`,
/// interleaved into `out` (length `n`, i.e. `n/2` complex values).
///
/// # Errors
/// [`Error::Param`] naming `n` when it is not a power of two; [`Error::Shape`] naming `twiddles`
/// when `out.len() != n`.
pub fn twiddles<R: Real>(n: usize, out: &mut [R]) -> Result<()> {
    if !n.is_power_of_two() {
        return Err(param("n", "FFT length must be a power of two"));
    }
    if out.len() != n {
        return Err(Error::Shape {
            arg: "twiddles",
            axis: 0,
            got: out.len(),
            expected: n,
            shape: crate::Dims::new(&[out.len()]),
        });
    }
    #[allow(clippy::cast_precision_loss)] // n < 2^53 for any slice that fits in memory
    let step = -2.0 * core::f64::consts::PI / n as f64;
    for (j, w) in out.chunks_exact_mut(2).enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let (s, c) = libm::sincos(step * j as f64);
        if let [re, im] = w {
            *re = R::lit(c);
            *im = R::lit(s);
        }
    }
    Ok(())
}

/// In-place FFT of `data` (interleaved, `n = data.len()/2` a power of two) with the table of
/// [`twiddles`] for the same `n`. `inverse` flips the sign of the exponent (no `1/n`).
///
/// # Errors
/// [`Error::Param`] naming `data` when its length is odd or `n` not a power of two,
/// [`Error::Shape`] naming `twiddles` when the table does not have length `n`.
pub fn fft_pow2<R: Real>(data: &mut [R], tw: &[R], inverse: bool) -> Result<()> {
    let n = data.len() / 2;
    if data.len() % 2 != 0 || !(n.is_power_of_two() || n == 0) {
        return Err(param("data", "FFT length must be a power of two"));
    }
    if n <= 1 {
        return Ok(());
    }
    if tw.len() != n {
        return Err(Error::Shape {
            arg: "twiddles",
            axis: 0,
            got: tw.len(),
            expected: n,
            shape: crate::Dims::new(&[tw.len()]),
        });
    }
    // Bit-reversal permutation.
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            // Both below n: 2i+1 < 2n = data.len().
            data.swap(2 * i, 2 * j);
            data.swap(2 * i + 1, 2 * j + 1);
        }
    }
    // Butterflies: blocks of `2 * half` complex values, twiddle stride `n / (2 * half)`.
    let mut half = 1usize;
    while half < n {
        let stride = n / (2 * half);
        for block in data.chunks_exact_mut(4 * half) {
            let (lo, hi) = block.split_at_mut(2 * half);
            for ((a, b), w) in lo
                .chunks_exact_mut(2)
                .zip(hi.chunks_exact_mut(2))
                .zip(tw.chunks_exact(2).step_by(stride))
            {
                if let ([ar, ai], [br, bi], [wr, wi]) = (a, b, w) {
                    let wi = if inverse { -*wi } else { *wi };
                    let tr = *br * *wr - *bi * wi;
                    let ti = *br * wi + *bi * *wr;
                    let (xr, xi) = (*ar, *ai);
                    *ar = xr + tr;
                    *ai = xi + ti;
                    *br = xr - tr;
                    *bi = xi - ti;
                }
            }
        }
        half *= 2;
    }
    Ok(())
}

/// The power-of-two length Bluestein's algorithm uses for a DFT of length `n`: the smallest
/// `m >= 2n - 1` (1 for `n <= 1`).
///
/// # Errors
/// [`Error::Overflow`] naming `n` when `m` does not fit in `usize`.
pub fn bluestein_len(n: usize) -> Result<usize> {
    n.checked_mul(2)
        .and_then(|x| x.saturating_sub(1).checked_next_power_of_two())
        .ok_or(Error::Overflow { arg: "n" })
}

/// Elements of `R` that [`dft`] needs as workspace for length `n`: `5m + 2n` with `m` from
/// [`bluestein_len`] (twiddles `m`, chirp `2n`, two buffers of `2m`).
///
/// # Errors
/// [`Error::Overflow`] naming `n`.
pub fn dft_workspace_len(n: usize) -> Result<usize> {
    let m = bluestein_len(n)?;
    m.checked_mul(5)
        .and_then(|x| x.checked_add(n.checked_mul(2)?))
        .ok_or(Error::Overflow { arg: "n" })
}

/// In-place DFT of any length `n = data.len()/2` (Bluestein, see the module docs). `inverse`
/// flips the sign of the exponent (no `1/n`).
///
/// # Errors
/// [`Error::Param`] naming `data` when its length is odd; [`Error::Shape`] naming `workspace` when
/// it is shorter than [`dft_workspace_len`].
pub fn dft<R: Real>(data: &mut [R], inverse: bool, workspace: &mut [R]) -> Result<()> {
    if data.len() % 2 != 0 {
        return Err(param("data", "interleaved complex data has even length"));
    }
    let n = data.len() / 2;
    if n <= 1 {
        return Ok(());
    }
    let m = bluestein_len(n)?;
    let need = dft_workspace_len(n)?;
    let Some(ws) = workspace.get_mut(..need) else {
        return Err(Error::Shape {
            arg: "workspace",
            axis: 0,
            got: workspace.len(),
            expected: need,
            shape: crate::Dims::new(&[workspace.len()]),
        });
    };
    let (tw, rest) = ws.split_at_mut(m);
    let (chirp, rest) = rest.split_at_mut(2 * n);
    let (a, b) = rest.split_at_mut(2 * m);
    twiddles(m, tw)?;
    // chirp_j = e^{-s pi i j^2 / n} (s = +1 forward, -1 inverse); j^2 mod 2n keeps the angle exact.
    let sign = if inverse { 1.0 } else { -1.0 };
    let two_n = 2 * n as u128;
    for (j, c) in chirp.chunks_exact_mut(2).enumerate() {
        let jj = (j as u128 * j as u128) % two_n;
        #[allow(clippy::cast_precision_loss)] // jj < 2n < 2^53
        let (s, co) = libm::sincos(sign * core::f64::consts::PI * jj as f64 / n as f64);
        if let [re, im] = c {
            *re = R::lit(co);
            *im = R::lit(s);
        }
    }
    // a_j = x_j chirp_j (zero padded); b = conj(chirp) at j and m - j.
    a.fill(R::zero());
    b.fill(R::zero());
    for ((x, c), ab) in data
        .chunks_exact(2)
        .zip(chirp.chunks_exact(2))
        .zip(a.chunks_exact_mut(2))
    {
        if let ([xr, xi], [cr, ci], [ar, ai]) = (x, c, ab) {
            *ar = *xr * *cr - *xi * *ci;
            *ai = *xr * *ci + *xi * *cr;
        }
    }
    for (j, c) in chirp.chunks_exact(2).enumerate() {
        if let [cr, ci] = c {
            for k in [j, (m - j) % m] {
                if let Some([br, bi]) = b.get_mut(2 * k..2 * k + 2) {
                    *br = *cr;
                    *bi = -*ci;
                }
            }
        }
    }
    fft_pow2(a, tw, false)?;
    fft_pow2(b, tw, false)?;
    for (x, y) in a.chunks_exact_mut(2).zip(b.chunks_exact(2)) {
        if let ([ar, ai], [br, bi]) = (x, y) {
            let (r, i) = (*ar * *br - *ai * *bi, *ar * *bi + *ai * *br);
            *ar = r;
            *ai = i;
        }
    }
    fft_pow2(a, tw, true)?;
    #[allow(clippy::cast_precision_loss)]
    let inv_m = R::lit(1.0 / m as f64);
    for ((x, ab), c) in data
        .chunks_exact_mut(2)
        .zip(a.chunks_exact(2))
        .zip(chirp.chunks_exact(2))
    {
        if let ([xr, xi], [ar, ai], [cr, ci]) = (x, ab, c) {
            let (r, i) = (*ar * inv_m, *ai * inv_m);
            *xr = r * *cr - i * *ci;
            *xi = r * *ci + i * *cr;
        }
    }
    Ok(())
}
