//! The kernel properties: plain generic functions, one per kernel, that run a case on any
//! backend in any element type and hold it against the f64 reference. Each returns the measured
//! [`Agreement`] or the first [`Failure`]; tests and [`crate::check_backend`] call the same
//! functions.

pub mod elementwise;
pub mod gemm;
pub mod reduce;
pub mod rejection;
pub mod softmax;
pub mod top_k;

use seqcore::{Element, Layout};

use crate::Failure;
use crate::compare::Agreement;
use crate::harness::round;
use crate::strategies::{self, Storage};

/// What a benchmark does per call, to turn its time into a rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// Floating-point operations (rate in GFLOP/s, compared with the machine's compute peak).
    Flops(f64),
    /// Bytes read and written (rate in GB/s, compared with the machine's bandwidth peak).
    Bytes(f64),
}

/// A kernel call set up for timing: inputs uploaded, output allocated; each `run` is one call.
pub struct Bench<'a> {
    /// One kernel call.
    pub run: Box<dyn FnMut() -> Result<(), Failure> + 'a>,
    /// The work of one call.
    pub work: Work,
    /// A short description of the size (`"256x256x256"`).
    pub size: String,
}

impl core::fmt::Debug for Bench<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bench")
            .field("work", &self.work)
            .field("size", &self.size)
            .finish()
    }
}

/// Reference values rounded to `T`: what an exact computation followed by the store would give.
fn expected_in<T: Element>(ref64: &[f64]) -> Vec<f64> {
    ref64.iter().map(|&v| round::<T>(v)).collect()
}

/// The layout an output of `shape` is written through.
fn out_layout(shape: &[usize], st: Storage) -> Result<Layout, Failure> {
    strategies::layout(shape, st)
        .map(|(l, _)| l)
        .ok_or_else(|| Failure::Setup(format!("no layout for shape {shape:?}")))
}

/// Applies the normalised-error ceiling after the per-element comparison.
fn gate(arg: &'static str, a: Agreement, max: f64) -> Result<Agreement, Failure> {
    if a.nmse > max {
        Err(Failure::Nmse {
            arg,
            nmse: a.nmse,
            max,
        })
    } else {
        Ok(a)
    }
}

fn bytes<T: Element>(elements: usize) -> f64 {
    (elements * size_of::<T>()) as f64
}
