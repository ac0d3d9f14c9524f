//! seq-attention in the suite (see [`super`]).

pub mod structure;

use seqcore::{Allocate, Element};

use crate::Failure;
use crate::compare::Agreement;
use crate::suite::{Config, Row};
use crate::vectors::Case;

/// Row names, in report order.
pub const KERNELS: &[&str] = structure::KERNELS;

/// Vector-format mechanisms run here.
pub const VECTORS: &[&str] = &[];

/// Appends this crate's rows (see [`super::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    structure::rows::<B, T>(b, config, seed, n, rows);
}

/// Runs a case whose mechanism is in [`VECTORS`]; `None` for any other.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    if let Some(r) = structure::run_vector::<B, T>(b, case) {
        return Some(r);
    }
    VECTORS
        .contains(&case.mechanism.as_str())
        .then(|| Err(crate::vectors::bad("not implemented yet")))
}
