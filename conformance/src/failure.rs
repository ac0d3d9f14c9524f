//! Why a case failed, in one line.

use core::fmt;

use crate::compare::{Agreement, Bound};

/// Why a case failed. Every variant prints as one line naming the output and the element.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Failure {
    /// The case could not be set up (a malformed vector file, an impossible shape).
    Setup(String),
    /// The kernel answered `Err` on valid input.
    Kernel(seqcore::Error),
    /// The kernel accepted input it must reject, or rejected it with another error than the
    /// reference.
    Rejection {
        /// The call.
        call: &'static str,
        /// What the reference answered (`None`: `Ok`).
        expected: Option<String>,
        /// What the backend answered (`None`: `Ok`).
        got: Option<String>,
    },
    /// Memory outside the output view changed (`addr` counts from the view's buffer start; negative
    /// in the leading guard).
    Guard {
        /// The output.
        arg: &'static str,
        /// The address.
        addr: isize,
    },
    /// An element of the output was never written.
    Unwritten {
        /// The output.
        arg: &'static str,
        /// Row-major index of the element.
        index: usize,
    },
    /// NaN or infinity where the reference has none, or the reverse.
    Structure {
        /// The output.
        arg: &'static str,
        /// Row-major index.
        index: usize,
        /// The backend's value.
        got: f64,
        /// The reference's value.
        expected: f64,
    },
    /// An element is outside its bound.
    Tolerance {
        /// The output.
        arg: &'static str,
        /// Row-major index of the worst element.
        index: usize,
        /// The backend's value there.
        got: f64,
        /// The reference's value there.
        expected: f64,
        /// The bound there.
        bound: Bound,
        /// The whole comparison.
        agreement: Agreement,
    },
    /// The normalised error of the whole output is above its ceiling.
    Nmse {
        /// The output.
        arg: &'static str,
        /// Measured.
        nmse: f64,
        /// Allowed.
        max: f64,
    },
    /// A discrete output (an index) differs.
    Discrete {
        /// The output.
        arg: &'static str,
        /// Row-major index.
        index: usize,
        /// The backend's value.
        got: u32,
        /// The reference's value.
        expected: u32,
    },
}

impl Failure {
    /// Wraps a seqcore error met while setting up a case.
    pub fn setup(e: seqcore::Error) -> Failure {
        Failure::Setup(e.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Setup(s) => write!(f, "bad case: {s}"),
            Failure::Kernel(e) => write!(f, "kernel error on valid input: {e}"),
            Failure::Rejection {
                call,
                expected,
                got,
            } => {
                let show = |e: &Option<String>| match e {
                    Some(e) => format!("Err({e})"),
                    None => "Ok".to_owned(),
                };
                write!(
                    f,
                    "{call}: answered {}, the reference {}",
                    show(got),
                    show(expected)
                )
            }
            Failure::Guard { arg, addr } => {
                write!(
                    f,
                    "`{arg}`: memory outside the view changed at address {addr}"
                )
            }
            Failure::Unwritten { arg, index } => write!(f, "`{arg}`[{index}] was never written"),
            Failure::Structure {
                arg,
                index,
                got,
                expected,
            } => {
                write!(f, "`{arg}`[{index}] is {got:e}, the reference {expected:e}")
            }
            Failure::Tolerance {
                arg,
                index,
                got,
                expected,
                bound,
                agreement,
            } => write!(
                f,
                "`{arg}`[{index}] is {got:e}, the reference {expected:e}: |diff| {:.3e} > atol {:.3e} + rtol {:.3e} * |ref| (nmse {:.3e})",
                (got - expected).abs(),
                bound.atol,
                bound.rtol,
                agreement.nmse
            ),
            Failure::Nmse { arg, nmse, max } => {
                write!(f, "`{arg}`: normalised error {nmse:.3e} above {max:.3e}")
            }
            Failure::Discrete {
                arg,
                index,
                got,
                expected,
            } => {
                write!(f, "`{arg}`[{index}] is {got}, the reference {expected}")
            }
        }
    }
}

impl core::error::Error for Failure {}
