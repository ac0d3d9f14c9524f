//! Relative-position attention: Shaw et al.'s clipped key and value embeddings ([`shaw`]), Music
//! Transformer's memory-efficient skew ([`skew`]) and T5's bucketed bias ([`t5`]).
//!
//! All three run on the fused kernel [`seqcore::Backend::relative_attention`] (online softmax,
//! workspace of `Dv` accumulators); [`skew::SkewedAttention`] also runs the paper's own
//! pad-reshape-slice procedure with the dense kernels, which the conformance suite holds equal to
//! the explicit O(L^2 D) relative logits.

pub mod shaw;
pub mod skew;
pub mod t5;

pub use seqcore::portable::relative::{RelativeIndex, RelativeParams, workspace_len};

use seqcore::{Backend, Element, Error, Result, View};

/// `1/sqrt(D)` unless `scale` is given; checked finite.
pub(crate) fn scale_or_default(scale: Option<f64>, d: usize) -> Result<f64> {
    #[allow(clippy::cast_precision_loss)]
    let s = scale.unwrap_or_else(|| 1.0 / libm::sqrt(d.max(1) as f64));
    seqcore::check::finite("scale", s)
}

/// A per-head table `[H, R, ..]`, or a table `[R, ..]` shared by every head (seen with a zero
/// head stride).
pub(crate) fn per_head<'a, B: Backend, T: Element>(
    arg: &'static str,
    t: View<'a, B, T>,
    heads: usize,
    rank: usize,
) -> Result<View<'a, B, T>> {
    let r = t.shape().len();
    if r == rank {
        Ok(t)
    } else if r + 1 == rank {
        t.map_layout(|l| {
            let u = l.unsqueeze(0)?;
            let mut shape = [0usize; seqcore::MAX_RANK];
            for (s, &x) in shape.iter_mut().skip(1).zip(l.shape()) {
                *s = x;
            }
            if let Some(s) = shape.first_mut() {
                *s = heads;
            }
            u.expand(shape.get(..rank).unwrap_or(&[]))
        })
    } else {
        Err(Error::Rank {
            arg,
            got: r,
            min: rank - 1,
            max: rank,
        })
    }
}
