//! Discretisation of a diagonal continuous-time mode `x' = a x + b u` with step `dt` (S4 eq. 3,
//! S4D section 3):
//!
//! - zero-order hold: `Abar = e^{dt a}`, `Bbar = (e^{dt a} - 1)/a b = dt (e^{dt a} - 1)/(dt a) b`,
//!   computed with a complex `expm1` so that a mode with `Re(a) -> 0` (and `dt a -> 0`) keeps its
//!   digits;
//! - bilinear (Tustin): `Abar = (1 + dt a/2)/(1 - dt a/2)`, `Bbar = dt b/(1 - dt a/2)`.
//!
//! A mode with `Re(a) >= 0` grows without bound: it is an error unless the caller opts in with
//! [`Stability::AllowUnstable`].

use seqcore::{Error, Result};

use crate::complex::Complex;

/// How continuous parameters become discrete ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Discretization {
    /// Zero-order hold (S4D's default).
    Zoh,
    /// Bilinear / Tustin (the S4 paper's).
    Bilinear,
}

impl Discretization {
    /// Parses `"zoh"` or `"bilinear"` (the vector format's names).
    pub fn from_name(name: &str) -> Option<Discretization> {
        match name {
            "zoh" => Some(Discretization::Zoh),
            "bilinear" => Some(Discretization::Bilinear),
            _ => None,
        }
    }
}

/// Whether modes with `Re(a) >= 0` are accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Stability {
    /// `Re(a) < 0` for every mode, else [`Error::Param`] naming `a` (the default).
    #[default]
    Strict,
    /// Accept any finite `a` (the kernel may grow; a bilinear pole `1 - dt a/2 = 0` is still an
    /// error).
    AllowUnstable,
}

/// One discretised mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiscreteMode {
    /// `Abar`.
    pub abar: Complex,
    /// `Bbar`.
    pub bbar: Complex,
    /// `ln Abar` (principal branch): `dt a` for ZOH; kept so that powers `Abar^l = e^{l ln Abar}`
    /// need no repeated products.
    pub log_abar: Complex,
}

/// `dt` from `log_dt` (the parameterisation of the official code: `dt = exp(log_dt)`).
///
/// # Errors
/// [`Error::Param`] naming `log_dt` when it is not finite or `dt` underflows to 0 or overflows.
pub fn dt_from_log(log_dt: f64) -> Result<f64> {
    let dt = libm::exp(log_dt);
    if !(log_dt.is_finite() && dt > 0.0 && dt.is_finite()) {
        return Err(Error::Param {
            arg: "log_dt",
            reason: "must be finite, with exp(log_dt) a positive finite step",
        });
    }
    Ok(dt)
}

/// Discretises the mode `(a, b)` with step `dt` (see the module docs).
///
/// # Errors
/// [`Error::Param`] naming `dt` (not finite or not positive), `a` (not finite, or `Re(a) >= 0`
/// under [`Stability::Strict`]; a bilinear pole), or `b` (not finite).
pub fn discretize(
    method: Discretization,
    dt: f64,
    a: Complex,
    b: Complex,
    stability: Stability,
) -> Result<DiscreteMode> {
    if !(dt.is_finite() && dt > 0.0) {
        return Err(Error::Param {
            arg: "dt",
            reason: "must be finite and positive",
        });
    }
    if !a.is_finite() {
        return Err(Error::Param {
            arg: "a",
            reason: "must be finite",
        });
    }
    if !b.is_finite() {
        return Err(Error::Param {
            arg: "b",
            reason: "must be finite",
        });
    }
    if stability == Stability::Strict && a.re >= 0.0 {
        return Err(Error::Param {
            arg: "a",
            reason: "Re(a) >= 0 is an unstable mode (opt in with Stability::AllowUnstable)",
        });
    }
    let dta = a.scale(dt);
    let mode = match method {
        Discretization::Zoh => {
            let abar = dta.exp();
            // (e^{dt a} - 1)/(dt a), 1 at dt a = 0.
            let phi = if dta == Complex::ZERO {
                Complex::ONE
            } else {
                dta.exp_m1() / dta
            };
            DiscreteMode {
                abar,
                bbar: phi * b.scale(dt),
                log_abar: dta,
            }
        }
        Discretization::Bilinear => {
            let half = dta.scale(0.5);
            let den = Complex::ONE - half;
            if den == Complex::ZERO {
                return Err(Error::Param {
                    arg: "a",
                    reason: "bilinear pole: 1 - dt a/2 = 0",
                });
            }
            let abar = (Complex::ONE + half) / den;
            // ln|Abar| = ln(|1 + x|^2/|1 - x|^2)/2 = ln1p(4 Re x/|1 - x|^2)/2, exact as Re x -> 0.
            let log_abs = 0.5 * libm::log1p(4.0 * half.re / den.norm_sqr());
            DiscreteMode {
                abar,
                bbar: b.scale(dt) / den,
                log_abar: Complex::new(log_abs, libm::atan2(abar.im, abar.re)),
            }
        }
    };
    if !(mode.abar.is_finite() && mode.bbar.is_finite() && mode.log_abar.is_finite()) {
        return Err(Error::Param {
            arg: "dt",
            reason: "discretised mode overflows",
        });
    }
    Ok(mode)
}
