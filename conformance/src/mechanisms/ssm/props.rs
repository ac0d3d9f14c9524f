//! Property rows of seq-ssm.

use seqcore::{Allocate, Element};

use crate::suite::{Config, Row};

/// Row names, in report order.
pub const KERNELS: &[&str] = &[];

/// Appends the rows.
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    let _ = (b, config, seed, n, rows);
}
