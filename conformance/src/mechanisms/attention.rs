//! seq-attention in the suite (see [`super`]).
//!
//! Rows: `sdpa` (the fused kernel against a naive f64 composition, every mask, GQA/MQA, strided
//! and token-major layouts, edge cases), `kv_cache` (decode through every cache == the whole
//! sequence), `attention_merge` (split KV into chunks, merge == whole). Vectors: `sdpa`.
//! Then the rows of [`positional`] (RoPE, relative attention) and [`structure`] (pointer
//! attention, set encoders, ACT).

pub mod kv_cache;
pub mod merge;
pub mod positional;
pub mod sdpa;
pub mod structure;

use seqcore::{
    Allocate, AttentionDims, AttentionMasks, AttentionParams, Element, Error, Layout, View, ViewMut,
};

use crate::Failure;
use crate::compare::Agreement;
use crate::suite::{Config, Row, sample};
use crate::vectors::Case;

/// Row names, in report order.
pub const KERNELS: &[&str] = &[
    "sdpa",
    "kv_cache",
    "attention_merge",
    "rope",
    "relative_attention",
    "pointer_attention",
    "set_encoder",
    "act",
];

/// Vector-format mechanisms run here.
pub const VECTORS: &[&str] = &[
    "sdpa",
    "rope",
    "relative_attention",
    "shaw_attention",
    "t5_relative_bucket",
];

/// True when `b` answers [`Error::Unsupported`] for the fused attention kernel or the merge (a
/// backend whose memory is not on the host and that does not override them): its rows then hold
/// no case (nothing was verified, and nothing is wrong: the design's answer for a missing
/// capability).
fn unsupported<B: Allocate, T: Element>(b: &B) -> bool {
    let probe = || -> Result<(), Error> {
        let d = AttentionDims {
            batch: 1,
            heads_q: 1,
            heads_kv: 1,
            len_q: 1,
            len_k: 1,
            head_dim: 1,
            value_dim: 1,
        };
        let x = b.alloc::<T>(1)?;
        let l = b.alloc::<T::Acc>(1)?;
        let (mut o, mut lo) = (b.alloc::<T>(1)?, b.alloc::<T::Acc>(1)?);
        let mut ws = b.alloc::<T::Acc>(b.attention_workspace_len::<T>(&d)?)?;
        let one = Layout::contiguous(&[1, 1, 1, 1])?;
        let v = View::new(core::borrow::Borrow::borrow(&x), one)?;
        b.attention(
            &AttentionParams::default(),
            v,
            v,
            v,
            AttentionMasks::none(),
            ViewMut::new(core::borrow::BorrowMut::borrow_mut(&mut o), one)?,
            None,
            core::borrow::BorrowMut::borrow_mut(&mut ws),
        )?;
        let row = Layout::contiguous(&[1, 1])?;
        let lse = View::new(core::borrow::Borrow::borrow(&l), Layout::contiguous(&[1])?)?;
        b.attention_merge(
            View::new(core::borrow::Borrow::borrow(&x), row)?,
            lse,
            View::new(core::borrow::Borrow::borrow(&x), row)?,
            lse,
            ViewMut::new(core::borrow::BorrowMut::borrow_mut(&mut o), row)?,
            Some(ViewMut::new(
                core::borrow::BorrowMut::borrow_mut(&mut lo),
                Layout::contiguous(&[1])?,
            )?),
        )
    };
    matches!(probe(), Err(Error::Unsupported { .. }))
}

/// Appends this crate's rows (see [`super::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    fused_rows::<B, T>(b, config, seed, n, rows);
    positional::rows::<B, T>(b, config, seed, n, rows);
    structure::rows::<B, T>(b, config, seed, n, rows);
}

/// The rows of the fused kernels: empty rows when the backend does not support them.
fn fused_rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    const FUSED: [&str; 3] = ["sdpa", "kv_cache", "attention_merge"];
    if unsupported::<B, T>(b) {
        for kernel in FUSED.into_iter().filter(|k| config.wants(k)) {
            let mut row = Row::new::<B, T>(b, kernel);
            row.mark_unsupported("attention");
            rows.push(row);
        }
        return;
    }
    if config.wants("sdpa") {
        let mut row = Row::new::<B, T>(b, "sdpa");
        let cases = row
            .fixed(config, sdpa::edge_cases())
            .into_iter()
            .chain(sample(&sdpa::cases(), n, seed ^ 0xA77E));
        for c in cases {
            row.add(&c, sdpa::check::<B, T>(b, &c));
        }
        row.time(config, sdpa::bench::<B, T>(b, 256));
        rows.push(row);
    }
    if config.wants("kv_cache") {
        let mut row = Row::new::<B, T>(b, "kv_cache");
        for c in sample(&kv_cache::cases(), n.div_ceil(2), seed ^ 0xCAC4E) {
            row.add(&c, kv_cache::check::<B, T>(b, &c));
        }
        row.time(config, kv_cache::bench::<B, T>(b, 4096));
        rows.push(row);
    }
    if config.wants("attention_merge") {
        let mut row = Row::new::<B, T>(b, "attention_merge");
        for c in sample(&merge::cases(), n, seed ^ 0x3E76E) {
            row.add(&c, merge::check::<B, T>(b, &c));
        }
        row.time(config, merge::bench::<B, T>(b));
        rows.push(row);
    }
}

/// Runs a case whose mechanism is in [`VECTORS`]; `None` for any other.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    match case.mechanism.as_str() {
        "sdpa" => Some(sdpa::run_vector::<B, T>(b, case)),
        _ => positional::run_vector::<B, T>(b, case)
            .or_else(|| structure::run_vector::<B, T>(b, case)),
    }
}
