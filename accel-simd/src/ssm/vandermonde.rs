//! The S4D convolution kernel as a Vandermonde product (Gu et al. 2022, "On the Parameterization
//! and Initialization of Diagonal State Space Models", eq. 6):
//! `k[h, l] = 2 Re(sum_n w[h, n] v[h, n] z[h, n]^l)`, `z = exp(log_z)`, vectorised over `l`.
//!
//! A lane vector holds the powers `z^(l0 + i)`, `i < LANES`, of consecutive positions, stepped
//! by one complex multiplication by `z^LANES`; every [`STEPS`] steps it is re-anchored from an
//! exact `exp(l0 log z)` (f64 `libm`, as the portable kernel's restart) times the small powers
//! `z^i` (formed in f64), so the relative error of a power stays near `STEPS + 4` roundings of
//! the accumulation type whatever `l` (the conformance bound allows `2 * 64 + 4`, the portable
//! kernel's restart interval). The sum over `n` is accumulated per position in the
//! accumulation type in a stack block of [`BLOCK`] positions (no heap), `2 w v` formed in f64
//! and rounded once; f16/bf16 outputs are rounded once from f32. The portable kernel computes
//! everything in f64: f32 results here carry f32 roundings, inside the same bound.
//!
//! Outputs whose `l` axis is not unit-stride take the portable kernel. An unstable `z`
//! (`|z| > 1`) whose powers overflow the accumulation type where f64 does not may give NaN or
//! inf where the portable kernel's f64 sum is finite before its final rounding.

use seqcore::portable::ssm::vandermonde::check_vandermonde;
use seqcore::{Backend, DType, Element, Layout, Reference, Result, View, ViewMut, check};

use crate::lanes::{Lanes, Vector, narrow};
use crate::linear_memory::oob;

/// Power steps (of `LANES` positions each) between exact re-anchors.
pub(crate) const STEPS: usize = 16;

/// Positions per stack block of sums (a multiple of `STEPS * LANES` at every level).
pub(crate) const BLOCK: usize = 1024;

/// `exp(re + i im)` in f64.
fn cexp(re: f64, im: f64) -> (f64, f64) {
    let m = libm::exp(re);
    let (s, c) = libm::sincos(im);
    (m * c, m * s)
}

/// Element `[i0, i1, i2]` of a rank-3 view, as f64.
fn rd<T: Element>(v: &View<'_, Reference, T>, ix: [usize; 3]) -> Result<f64> {
    let l: &Layout = v.layout();
    let mut at = l.offset();
    for (i, s) in ix.iter().zip(l.strides()) {
        at += i * s;
    }
    let m = v.mem();
    Ok(m.get(at).ok_or(oob(m.len(), at))?.to_f64())
}

/// The kernel (see the module docs); checks and errors as the portable kernel's.
pub(crate) fn vandermonde<T: Element>(
    log_z: View<'_, Reference, T::Acc>,
    w: View<'_, Reference, T::Acc>,
    v: Option<View<'_, Reference, T::Acc>>,
    k: ViewMut<'_, Reference, T>,
) -> Result<()> {
    // The portable kernel's checks, in its order.
    let (h, n, l) = check_vandermonde(log_z.layout(), w.layout(), k.layout())?;
    if let Some(v) = &v {
        check::shape("v", v.layout(), &[h, n, 2])?;
    }
    let unit = k.layout().strides().get(1).is_some_and(|&s| s == 1) || l <= 1;
    match <T::Acc as Element>::DTYPE {
        DType::F32 if unit => lanes::<T, f32>(&log_z, &w, v.as_ref(), k, (h, n, l)),
        DType::F64 if unit => lanes::<T, f64>(&log_z, &w, v.as_ref(), k, (h, n, l)),
        _ => Reference.ssm_vandermonde::<T>(log_z, w, v, k),
    }
}

/// The vector kernel in accumulation type `A` (`= T::Acc`), `k` unit-stride along `l`.
#[allow(clippy::cast_precision_loss)] // positions < 2^53
fn lanes<T: Element, A: Lanes>(
    log_z: &View<'_, Reference, T::Acc>,
    w: &View<'_, Reference, T::Acc>,
    v: Option<&View<'_, Reference, T::Acc>>,
    mut k: ViewMut<'_, Reference, T>,
    (h, n, l): (usize, usize, usize),
) -> Result<()> {
    let lanes = A::LANES;
    let span = STEPS * lanes;
    let zero = A::zero();
    let (km, kl) = k.parts();
    let (koff, ks0) = (kl.offset(), kl.strides().first().copied().unwrap_or(0));
    let mut acc = [zero; BLOCK];
    // The small powers z^i, i < LANES (at most 16 lanes).
    let mut pw_r = [zero; 16];
    let mut pw_i = [zero; 16];
    for hh in 0..h {
        for b0 in (0..l).step_by(BLOCK) {
            let blen = BLOCK.min(l - b0);
            acc.fill(zero);
            for nn in 0..n {
                let lr = rd(log_z, [hh, nn, 0])?;
                let li = rd(log_z, [hh, nn, 1])?;
                let (mut wr, mut wi) = (rd(w, [hh, nn, 0])?, rd(w, [hh, nn, 1])?);
                if let Some(v) = v {
                    let (vr, vi) = (rd(v, [hh, nn, 0])?, rd(v, [hh, nn, 1])?);
                    (wr, wi) = (wr * vr - wi * vi, wr * vi + wi * vr);
                }
                let (wr, nwi) = (
                    A::V::splat(A::lit(2.0 * wr)),
                    A::V::splat(A::lit(-2.0 * wi)),
                );
                // z^i by repeated multiplication in f64 (i < 16: a few f64 roundings).
                let z = cexp(lr, li);
                let mut p = (1.0, 0.0);
                for (r, i) in pw_r.iter_mut().zip(pw_i.iter_mut()).take(lanes) {
                    *r = A::lit(p.0);
                    *i = A::lit(p.1);
                    p = (p.0 * z.0 - p.1 * z.1, p.0 * z.1 + p.1 * z.0);
                }
                let lf = lanes as f64;
                let zs = cexp(lf * lr, lf * li);
                let (zsr, zsi) = (A::V::splat(A::lit(zs.0)), A::V::splat(A::lit(zs.1)));
                let (pwr, pwi) = (A::V::load_or(&pw_r, zero), A::V::load_or(&pw_i, zero));
                for (ci, chunk) in acc
                    .get_mut(..blen.next_multiple_of(lanes))
                    .unwrap_or(&mut [])
                    .chunks_mut(span)
                    .enumerate()
                {
                    let l0 = (b0 + ci * span) as f64;
                    let a = cexp(l0 * lr, l0 * li);
                    let (ar, ai) = (A::V::splat(A::lit(a.0)), A::V::splat(A::lit(a.1)));
                    let mut pr = ar * pwr - ai * pwi;
                    let mut pi = ar.mul_add(pwi, ai * pwr);
                    for c in chunk.chunks_exact_mut(lanes) {
                        let s = A::V::load_or(c, zero);
                        pr.mul_add(wr, pi.mul_add(nwi, s)).store(c);
                        let r = pr * zsr - pi * zsi;
                        pi = pr.mul_add(zsi, pi * zsr);
                        pr = r;
                    }
                }
            }
            let row = koff + hh * ks0 + b0;
            let len = km.len();
            let out = km.get_mut(row..row + blen).ok_or(oob(len, row + blen))?;
            let src = acc.get(..blen).unwrap_or(&[]);
            let src: &[T::Acc] = bytemuck::try_cast_slice(src).map_err(|_| oob(0, 0))?;
            narrow::<T>(src, out);
        }
    }
    Ok(())
}
