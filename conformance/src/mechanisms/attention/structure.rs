//! seq-attention's structure modules in the suite: pointer attention (Pointer Networks eq. 3),
//! the set encoders (Read-Process-Write, Set Transformer) and ACT halting (Universal
//! Transformers). Each row runs the module on the backend in `T` and on the reference at f64
//! (inputs rounded to `T` first), and holds the two together; see each submodule for the bound.

pub mod act;
pub mod pointer;
pub mod set_encoder;

use core::borrow::BorrowMut;

use seqcore::{Allocate, Element};

use crate::Failure;
use crate::compare::Agreement;
use crate::harness::{Input, Tensor};
use crate::suite::{Config, Row, sample};
use crate::vectors::Case;

/// Row names, in report order.
pub const KERNELS: &[&str] = &["pointer_attention", "set_encoder", "act"];

/// Vector-format mechanisms run here (none: the golden values of these modules are PyTorch's,
/// checked by seq-attention's own tests from `conformance/vectors/gen/set_encoder.py`).
pub const VECTORS: &[&str] = &[];

/// Appends the rows (see [`crate::mechanisms::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    if config.wants("pointer_attention") {
        let mut row = Row::new::<B, T>(b, "pointer_attention");
        let cases = row
            .fixed(config, pointer::edge_cases())
            .into_iter()
            .chain(sample(&pointer::cases(), n, seed ^ 0x5017));
        for c in cases {
            row.add(&c, pointer::check::<B, T>(b, &c));
        }
        row.time(config, pointer::bench::<B, T>(b, 64, 256, 128));
        rows.push(row);
    }
    if config.wants("set_encoder") {
        let mut row = Row::new::<B, T>(b, "set_encoder");
        let cases = row
            .fixed(config, set_encoder::edge_cases())
            .into_iter()
            .chain(sample(&set_encoder::cases(), n, seed ^ 0x5E7));
        for c in cases {
            row.add(&c, set_encoder::check::<B, T>(b, &c));
        }
        row.time(config, set_encoder::bench::<B, T>(b, 256, 64, 4));
        rows.push(row);
    }
    if config.wants("act") {
        let mut row = Row::new::<B, T>(b, "act");
        let cases = row
            .fixed(config, act::edge_cases())
            .into_iter()
            .chain(sample(&act::cases(), n, seed ^ 0xAC7));
        for c in cases {
            row.add(&c, act::check::<B, T>(b, &c));
        }
        row.time(config, act::bench::<B, T>(b, 512, 64, 8));
        rows.push(row);
    }
}

/// Runs a vector case of these modules: none are in [`VECTORS`], so always `None`.
#[allow(clippy::extra_unused_type_parameters)] // the signature of every mechanism hook
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    let _ = b;
    VECTORS
        .contains(&case.mechanism.as_str())
        .then(|| Err(crate::vectors::bad("not implemented")))
}

/// Deterministic values in `[-scale, scale]` from `seed` (splitmix64), so that a case is a few
/// integers and prints short.
pub(crate) fn values(seed: u64, n: usize, scale: f64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// `vals` uploaded densely as `shape`, rounded to `T`.
pub(crate) fn upload<B: Allocate, T: Element>(
    b: &B,
    shape: &[usize],
    vals: &[f64],
) -> Result<Input<B, T>, Failure> {
    Input::new(b, &Tensor::contiguous(shape, vals.to_vec())?)
}

/// `count` backend buffers of `len` elements.
pub(crate) fn workspace<B: Allocate, T: Element>(
    b: &B,
    count: usize,
    len: usize,
) -> Result<Vec<B::Buffer<T>>, Failure> {
    (0..count)
        .map(|_| b.alloc::<T>(len).map_err(Failure::setup))
        .collect()
}

/// The buffers as the `&mut [&mut B::Mem<T>]` the modules take.
pub(crate) fn refs<B: Allocate, T: Element>(v: &mut [B::Buffer<T>]) -> Vec<&mut B::Mem<T>> {
    v.iter_mut().map(BorrowMut::borrow_mut).collect()
}
