//! The S4D convolution kernel as a Vandermonde product (S4D, "On the Parameterization and
//! Initialization of Diagonal State Space Models", eq. 6; S4 eq. 5 for a diagonal state matrix):
//!
//! `k[h, l] = 2 Re(sum_n w[h, n] z[h, n]^l)`, `z = exp(log_z)`,
//!
//! where for a discretised diagonal SSM `w = C Bbar` and `z = Abar` (ZOH: `log_z = dt A`).
//! Taking `log_z` rather than `Abar` keeps a decay rate near 0 exact when the parameters are
//! stored in f32 (`1 - |Abar|` would lose its digits). Powers are formed in f64 by repeated
//! multiplication, restarted from `exp(l log_z)` every [`RESTART`] steps, so the relative error of
//! `z^l` stays near `RESTART` f64 roundings for every `l`; the sum is f64 too, rounded once on store.

use super::{addr, at, put};
use crate::check;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::view::{View, ViewMut};

/// Steps between exact restarts of the power recurrence.
pub const RESTART: usize = 64;

/// Checks `log_z [H, N, 2]`, `w [H, N, 2]`, `k [H, L]`; returns `(h, n, l)`.
///
/// # Errors
/// [`Error::Rank`] / [`Error::Shape`] naming the operand at fault (`log_z` sets `H` and `N`).
pub fn check_vandermonde(
    log_z: &crate::Layout,
    w: &crate::Layout,
    k: &crate::Layout,
) -> Result<(usize, usize, usize)> {
    let [h, n, two] = *log_z.shape() else {
        return Err(Error::Rank {
            arg: "log_z",
            got: log_z.rank(),
            min: 3,
            max: 3,
        });
    };
    if two != 2 {
        return Err(Error::Shape {
            arg: "log_z",
            axis: 2,
            got: two,
            expected: 2,
            shape: log_z.dims(),
        });
    }
    check::shape("w", w, &[h, n, 2])?;
    let [kh, l] = *k.shape() else {
        return Err(Error::Rank {
            arg: "k",
            got: k.rank(),
            min: 2,
            max: 2,
        });
    };
    check::shape("k", k, &[h, l])?;
    let _ = kh;
    Ok((h, n, l))
}

fn cexp(re: f64, im: f64) -> (f64, f64) {
    let m = libm::exp(re);
    let (s, c) = libm::sincos(im);
    (m * c, m * s)
}

/// Writes `k[h, l] = 2 Re(sum_n w v z^l)` (see the module docs), `v [H, N, 2]` an optional
/// second weight (complex, multiplied into `w`): the state `x_0` when the kernel is the response
/// of a chunk to the state it starts from, `2 Re(sum_n C Abar x_0 Abar^l)`.
///
/// # Errors
/// As [`check_vandermonde`]; a shape error naming `v`.
pub fn vandermonde<T: Element>(
    log_z: View<'_, Reference, T::Acc>,
    w: View<'_, Reference, T::Acc>,
    v: Option<View<'_, Reference, T::Acc>>,
    mut k: ViewMut<'_, Reference, T>,
) -> Result<()> {
    let (h, n, l) = check_vandermonde(log_z.layout(), w.layout(), k.layout())?;
    if let Some(v) = &v {
        check::shape("v", v.layout(), &[h, n, 2])?;
    }
    let (zl, wl, kl) = (*log_z.layout(), *w.layout(), *k.layout());
    let km = k.mem_mut();
    for hh in 0..h {
        for l0 in (0..l).step_by(RESTART) {
            let len = RESTART.min(l - l0);
            let mut acc = [0.0f64; RESTART];
            for nn in 0..n {
                let lr = at(log_z.mem(), addr(&zl, [hh, nn, 0]))?.to_f64();
                let li = at(log_z.mem(), addr(&zl, [hh, nn, 1]))?.to_f64();
                let wr = at(w.mem(), addr(&wl, [hh, nn, 0]))?.to_f64();
                let wi = at(w.mem(), addr(&wl, [hh, nn, 1]))?.to_f64();
                let (wr, wi) = match &v {
                    Some(v) => {
                        let vl = v.layout();
                        let vr = at(v.mem(), addr(vl, [hh, nn, 0]))?.to_f64();
                        let vi = at(v.mem(), addr(vl, [hh, nn, 1]))?.to_f64();
                        (wr * vr - wi * vi, wr * vi + wi * vr)
                    }
                    None => (wr, wi),
                };
                let (zr, zi) = cexp(lr, li);
                #[allow(clippy::cast_precision_loss)] // l0 < 2^53
                let (mut pr, mut pi) = cexp(lr * l0 as f64, li * l0 as f64);
                for a in acc.iter_mut().take(len) {
                    *a += wr * pr - wi * pi;
                    let r = pr * zr - pi * zi;
                    pi = pr * zi + pi * zr;
                    pr = r;
                }
            }
            for (j, a) in acc.iter().take(len).enumerate() {
                put(km, addr(&kl, [hh, l0 + j]), T::from_f64(2.0 * a))?;
            }
        }
    }
    Ok(())
}
