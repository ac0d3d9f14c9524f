//! The convolution mode of a state-space model (S4 eq. 4-5): a causal convolution of each channel
//! with its kernel plus the skip term,
//!
//! `y[t, h] = sum_{s <= t} k[h, t - s] u[s, h] + D[h] u[t, h]` (`D` in the accumulation type),
//!
//! computed by FFT (`n = 2^m >= 2L - 1`, zero padding, truncation to `L`) or directly (O(L^2), the
//! check). The FFT path packs two real signals into one complex transform (`z = k + i u`, split by
//! conjugate symmetry) and two channels' products into one inverse, so a channel costs one and a
//! half complex FFTs of length `n`: the real-FFT economy without a separate real transform. Exact
//! power-of-two scalings match the norms of the two signals sharing a transform, so the error of
//! each stays relative to its own norm.

use super::fft::{fft_pow2, twiddles};
use super::{addr, at, put};
use crate::check;
use crate::element::{Element, Real};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::reference::Reference;
use crate::view::{View, ViewMut};

/// The FFT length for a convolution of `l` tokens: the smallest power of two `>= 2l - 1`.
///
/// # Errors
/// [`Error::Overflow`] naming `l`.
pub fn fft_len(l: usize) -> Result<usize> {
    l.checked_mul(2)
        .and_then(|x| x.saturating_sub(1).max(1).checked_next_power_of_two())
        .ok_or(Error::Overflow { arg: "l" })
}

/// Elements of the accumulation type the FFT convolution needs as workspace for `l` tokens:
/// `5n` (twiddles `n`, two interleaved buffers of `2n`), `n` from [`fft_len`]; 0 for `l = 0`.
///
/// # Errors
/// [`Error::Overflow`] naming `l`.
pub fn workspace_len(l: usize) -> Result<usize> {
    if l == 0 {
        return Ok(0);
    }
    fft_len(l)?
        .checked_mul(5)
        .ok_or(Error::Overflow { arg: "l" })
}

/// Checks the operands of a convolution: `k [H, L]`, `u [L, H]`, `d [H]`, `y [L, H]`; returns
/// `(h, l)`.
///
/// # Errors
/// [`Error::Rank`] / [`Error::Shape`] naming the operand at fault (`k` sets `H` and `L`).
pub fn check_conv(
    k: &Layout,
    u: &Layout,
    d: Option<&Layout>,
    y: &Layout,
) -> Result<(usize, usize)> {
    let [h, l] = *k.shape() else {
        return Err(Error::Rank {
            arg: "k",
            got: k.rank(),
            min: 2,
            max: 2,
        });
    };
    check::shape("u", u, &[l, h])?;
    if let Some(d) = d {
        check::shape("d", d, &[h])?;
    }
    check::shape("y", y, &[l, h])?;
    Ok((h, l))
}

fn skip<T: Element>(d: Option<&View<'_, Reference, T::Acc>>, hh: usize) -> Result<T::Acc> {
    match d {
        Some(d) => Ok(at(d.mem(), addr(d.layout(), [hh]))?),
        None => Ok(T::Acc::zero()),
    }
}

/// Direct causal convolution (O(L^2) per channel, summed in the accumulation type from `s = 0`
/// up): the definition the FFT path is checked against.
///
/// # Errors
/// As [`check_conv`].
pub fn conv_direct<T: Element>(
    k: View<'_, Reference, T>,
    u: View<'_, Reference, T>,
    d: Option<View<'_, Reference, T::Acc>>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    let (h, l) = check_conv(
        k.layout(),
        u.layout(),
        d.as_ref().map(View::layout),
        y.layout(),
    )?;
    let (kl, ul, yl) = (*k.layout(), *u.layout(), *y.layout());
    let ym = y.mem_mut();
    for hh in 0..h {
        let dh = skip::<T>(d.as_ref(), hh)?;
        for t in 0..l {
            let mut acc = T::Acc::zero();
            for s in 0..=t {
                acc += at(k.mem(), addr(&kl, [hh, t - s]))?.to_acc()
                    * at(u.mem(), addr(&ul, [s, hh]))?.to_acc();
            }
            let ut = at(u.mem(), addr(&ul, [t, hh]))?.to_acc();
            put(ym, addr(&yl, [t, hh]), T::from_acc(acc + dh * ut))?;
        }
    }
    Ok(())
}

/// The power of two nearest `sqrt(num/den)` (exponent clamped to +-60, so it is exact in f32), or
/// 1 when either is 0 or not finite.
fn pow2_ratio(num: f64, den: f64) -> f64 {
    if !(num > 0.0 && den > 0.0 && num.is_finite() && den.is_finite()) {
        return 1.0;
    }
    let (_, en) = libm::frexp(num);
    let (_, ed) = libm::frexp(den);
    libm::ldexp(1.0, ((en - ed) / 2).clamp(-60, 60))
}

/// The convolution's workspace check: a contiguous rank-1 view of at least `need` elements.
///
/// # Errors
/// [`Error::Param`] naming `workspace` when it is not contiguous and rank 1, [`Error::Shape`]
/// naming it when it is shorter than `need`.
pub fn check_workspace(workspace: &Layout, need: usize) -> Result<()> {
    if workspace.rank() != 1 || (workspace.numel() > 1 && workspace.strides() != [1]) {
        return Err(Error::Param {
            arg: "workspace",
            reason: "must be a contiguous rank-1 view",
        });
    }
    if workspace.numel() < need {
        return Err(Error::Shape {
            arg: "workspace",
            axis: 0,
            got: workspace.numel(),
            expected: need,
            shape: workspace.dims(),
        });
    }
    Ok(())
}

/// Causal convolution by FFT (see the module docs), using `workspace` (contiguous, at least
/// [`workspace_len`] elements of the accumulation type).
///
/// # Errors
/// As [`check_conv`]; [`Error::Shape`] naming `workspace` when it is too short,
/// [`Error::Param`] naming it when it is not contiguous.
pub fn conv_fft<T: Element>(
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
    let need = workspace_len(l)?;
    let wl = *workspace.layout();
    check_workspace(&wl, need)?;
    if l == 0 || h == 0 {
        return Ok(());
    }
    let n = fft_len(l)?;
    let ws = workspace
        .mem_mut()
        .get_mut(wl.offset()..wl.offset().saturating_add(need))
        .ok_or(Error::OutOfBounds {
            arg: "workspace",
            end: wl.offset().saturating_add(need),
            len: 0,
        })?;
    let (tw, rest) = ws.split_at_mut(n);
    let (za, zb) = rest.split_at_mut(2 * n);
    twiddles(n, tw)?;
    let (kl, ul, yl) = (*k.layout(), *u.layout(), *y.layout());
    let half = T::Acc::lit(0.5);
    let mut h0 = 0;
    while h0 < h {
        let pair = [h0, h0 + 1];
        // Per channel, the power of two its output was scaled by (undone at the end).
        let mut scale = [1.0f64; 2];
        // Forward: z = alpha k + i u per channel, transformed, turned into Y = K U in place, then
        // scaled to unit norm. The powers of two alpha (matching ||alpha k|| to ||u||) and the
        // output scale keep one signal's rounding errors from swamping a much smaller partner
        // in the shared transform; they are exact.
        for ((&hh, z), sc) in pair.iter().zip([&mut *za, &mut *zb]).zip(scale.iter_mut()) {
            z.fill(T::Acc::zero());
            if hh >= h {
                continue;
            }
            let (mut kn, mut un) = (0.0f64, 0.0f64);
            for (t, c) in z.chunks_exact_mut(2).take(l).enumerate() {
                if let [re, im] = c {
                    *re = at(k.mem(), addr(&kl, [hh, t]))?.to_acc();
                    *im = at(u.mem(), addr(&ul, [t, hh]))?.to_acc();
                    kn += re.to_f64() * re.to_f64();
                    un += im.to_f64() * im.to_f64();
                }
            }
            let alpha = pow2_ratio(un, kn);
            if alpha != 1.0 {
                let a = T::Acc::lit(alpha);
                for re in z.iter_mut().step_by(2) {
                    *re *= a;
                }
            }
            fft_pow2(z, tw, false)?;
            let mut yn = 0.0f64;
            for f in 0..=n / 2 {
                let g = (n - f) % n;
                let (a, b) = (at(z, 2 * f)?, at(z, 2 * f + 1)?);
                let (c, dd) = (at(z, 2 * g)?, at(z, 2 * g + 1)?);
                let (kr, ki) = ((a + c) * half, (b - dd) * half);
                let (ur, ui) = ((b + dd) * half, (c - a) * half);
                let (yr, yi) = (kr * ur - ki * ui, kr * ui + ki * ur);
                put(z, 2 * f, yr)?;
                put(z, 2 * f + 1, yi)?;
                put(z, 2 * g, yr)?;
                put(z, 2 * g + 1, -yi)?;
                yn += yr.to_f64() * yr.to_f64() + yi.to_f64() * yi.to_f64();
            }
            let gamma = pow2_ratio(1.0, yn);
            if gamma != 1.0 {
                let gm = T::Acc::lit(gamma);
                for v in z.iter_mut() {
                    *v *= gm;
                }
            }
            *sc = alpha * gamma;
        }
        // Inverse of Y1 + i Y2: the real part is channel h0, the imaginary part channel h0 + 1.
        for (a, b) in za.chunks_exact_mut(2).zip(zb.chunks_exact(2)) {
            if let ([ar, ai], [br, bi]) = (a, b) {
                let (r, i) = (*ar - *bi, *ai + *br);
                *ar = r;
                *ai = i;
            }
        }
        fft_pow2(za, tw, true)?;
        for (j, &hh) in pair.iter().enumerate() {
            if hh >= h {
                continue;
            }
            let dh = skip::<T>(d.as_ref(), hh)?;
            // 1/(n alpha gamma): a power of two.
            #[allow(clippy::cast_precision_loss)] // n < 2^53
            let unscale = T::Acc::lit(1.0 / (n as f64 * scale.get(j).copied().unwrap_or(1.0)));
            for t in 0..l {
                let v = at(za, 2 * t + j)? * unscale;
                let ut = at(u.mem(), addr(&ul, [t, hh]))?.to_acc();
                put(y.mem_mut(), addr(&yl, [t, hh]), T::from_acc(v + dh * ut))?;
            }
        }
        h0 += 2;
    }
    Ok(())
}
