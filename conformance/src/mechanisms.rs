//! The mechanism crates in the suite: each module adds its crate's rows to [`crate::check_backend`]
//! (properties and benchmarks, on any backend) and runs its crate's golden-vector mechanisms.
//!
//! A module exports `KERNELS` (its row names, in report order), `VECTORS` (the vector-format
//! mechanisms it runs), `rows` and `run_vector` (which answers `None` for a mechanism not its own).

use seqcore::{Allocate, Element};

use crate::Failure;
use crate::compare::Agreement;
use crate::suite::{Config, Row};
use crate::vectors::Case;

pub mod attention;
pub mod decode;
pub mod distill;
pub mod memory;
pub mod ssm;

/// Row names of every mechanism crate, crate by crate.
pub const KERNELS: [&[&str]; 5] = [
    attention::KERNELS,
    ssm::KERNELS,
    memory::KERNELS,
    decode::KERNELS,
    distill::KERNELS,
];

/// Vector mechanisms of every mechanism crate.
pub const VECTORS: [&[&str]; 5] = [
    attention::VECTORS,
    ssm::VECTORS,
    memory::VECTORS,
    decode::VECTORS,
    distill::VECTORS,
];

/// Appends every mechanism crate's rows for element type `T`; `n` random cases per row (0 in a
/// timing-only run), drawn from `seed`.
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    attention::rows::<B, T>(b, config, seed, n, rows);
    ssm::rows::<B, T>(b, config, seed, n, rows);
    memory::rows::<B, T>(b, config, seed, n, rows);
    decode::rows::<B, T>(b, config, seed, n, rows);
    distill::rows::<B, T>(b, config, seed, n, rows);
}

/// Runs a vector case of a mechanism crate; `None` when no crate claims its mechanism.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    attention::run_vector::<B, T>(b, case)
        .or_else(|| ssm::run_vector::<B, T>(b, case))
        .or_else(|| memory::run_vector::<B, T>(b, case))
        .or_else(|| decode::run_vector::<B, T>(b, case))
        .or_else(|| distill::run_vector::<B, T>(b, case))
}
