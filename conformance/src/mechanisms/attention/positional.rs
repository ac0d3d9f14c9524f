//! seq-attention's positional mechanisms in the suite: RoPE and its scalings ([`rope`]), relative
//! attention (Shaw et al., Music Transformer's skew, T5 buckets: [`relative`]).
//!
//! Rows: `rope` (agreement with the f64 reference for every layout, scaling and position kind;
//! norms preserved; `<R(m)q, R(n)k>` depends on `m - n` only; positions 2^20 .. 2^24 against a
//! double-double reference of the angles), `relative_attention` (fused kernel against the f64
//! reference; the f64 reference against an explicit O(L^2 D) evaluation of Shaw's eq. (3)-(5);
//! Music Transformer's skew equal to the naive relative logits). Vector mechanisms: `rope`,
//! `relative_attention` (both of the format), `shaw_attention`, `t5_relative_bucket` (added to the
//! crate's copy of the format).

pub mod relative;
pub mod rope;

use seqcore::{Allocate, Element};

use crate::Failure;
use crate::compare::Agreement;
use crate::suite::{Config, Row, sample};
use crate::vectors::Case;

/// Row names, in report order.
pub const KERNELS: &[&str] = &["rope", "relative_attention"];

/// Vector-format mechanisms run here.
pub const VECTORS: &[&str] = &[
    "rope",
    "relative_attention",
    "shaw_attention",
    "t5_relative_bucket",
];

/// Appends the rows (see [`crate::mechanisms::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    // A backend that does not run a fused kernel answers `Unsupported` (never a wrong result):
    // its row is left out rather than failed.
    if config.wants("rope") && supported(rope::probe::<B, T>(b)) {
        let mut row = Row::new::<B, T>(b, "rope");
        let cases = row
            .fixed(config, rope::edge_cases())
            .into_iter()
            .chain(sample(&rope::cases(), n, seed ^ 0x0707));
        for c in cases {
            row.add(&c, rope::check::<B, T>(b, &c));
        }
        row.time(config, rope::bench::<B, T>(b, 1, 8, 1024, 128));
        rows.push(row);
    }
    if config.wants("relative_attention") && supported(relative::probe::<B, T>(b)) {
        let mut row = Row::new::<B, T>(b, "relative_attention");
        let cases = row
            .fixed(config, relative::edge_cases())
            .into_iter()
            .chain(sample(&relative::cases(), n, seed ^ 0x0808));
        for c in cases {
            row.add(&c, relative::check::<B, T>(b, &c));
        }
        row.time(config, relative::bench::<B, T>(b, 1, 4, 256, 64));
        rows.push(row);
    }
}

/// False when a probe call answered [`seqcore::Error::Unsupported`].
fn supported(probe: Result<(), Failure>) -> bool {
    !matches!(
        probe,
        Err(Failure::Kernel(seqcore::Error::Unsupported { .. }))
    )
}

/// Runs a case whose mechanism is in [`VECTORS`]; `None` for any other.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    match case.mechanism.as_str() {
        "rope" => Some(rope::run_vector::<B, T>(b, case)),
        "relative_attention" => Some(relative::run_vector::<B, T>(b, case)),
        "shaw_attention" => Some(relative::run_shaw_vector::<B, T>(b, case)),
        "t5_relative_bucket" => Some(relative::run_t5_vector(case)),
        _ => None,
    }
}

/// Uploads `values` as backend memory of `u32`.
pub(crate) fn upload_u32<B: Allocate>(b: &B, values: &[u32]) -> Result<B::Buffer<u32>, Failure> {
    let mut buf = b.alloc::<u32>(values.len()).map_err(Failure::setup)?;
    b.write(values, core::borrow::BorrowMut::borrow_mut(&mut buf))
        .map_err(Failure::setup)?;
    Ok(buf)
}

/// `v` rounded to `T` and widened back.
pub(crate) fn expected_in<T: Element>(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| crate::harness::round::<T>(x)).collect()
}

/// The normalised-error ceiling after the per-element comparison.
pub(crate) fn gate(arg: &'static str, a: Agreement, max: f64) -> Result<Agreement, Failure> {
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
