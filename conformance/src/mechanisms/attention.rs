//! seq-attention in the suite (see [`super`]).

use seqcore::{Allocate, Element};

use crate::Failure;
use crate::compare::Agreement;
use crate::suite::{Config, Row};
use crate::vectors::Case;

pub mod positional;

/// Row names, in report order.
pub const KERNELS: &[&str] = positional::KERNELS;

/// Vector-format mechanisms run here.
pub const VECTORS: &[&str] = positional::VECTORS;

/// Appends this crate's rows (see [`super::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    positional::rows::<B, T>(b, config, seed, n, rows);
}

/// Runs a case whose mechanism is in [`VECTORS`]; `None` for any other.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    positional::run_vector::<B, T>(b, case)
}
