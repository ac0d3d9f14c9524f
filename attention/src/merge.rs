//! Sequence-parallel attention: partial results over chunks of keys, and their exact merge.
//!
//! Sequence parallelism (Li et al. 2021, "Sequence Parallelism: Long Sequence Training from System
//! Perspective", ring self-attention) and ring attention split the keys and values of a sequence
//! over devices. Each computes attention of its queries over the chunk it holds, keeping the
//! partial state `(o, lse)`: the chunk's normalised output and the log-sum-exp of its logits
//! (equivalently flash-attention's `(o, m, l)` with `lse = m + ln l`). Partials of disjoint key
//! chunks combine exactly (Milakov & Gimelshein 2018, eq. 4):
//!
//! ```text
//! lse = ln(e^lse_a + e^lse_b),   o = e^(lse_a - lse) o_a + e^(lse_b - lse) o_b
//! ```
//!
//! The merge is associative and commutative (up to rounding), and a chunk in which a query sees no
//! key (`lse = -inf`) is its identity. These crates compute and merge the states; moving them
//! between machines is the job of an existing collective-communication library.

use seqcore::{Backend, Element, Result, View, ViewMut};

/// The partial state of attention over one chunk of keys: `o [.., Dv]` (normalised within the
/// chunk) and `lse [..]` (natural log-sum-exp of the chunk's logits, `-inf` where no key was
/// visible), as written by [`crate::MultiHeadAttention::forward_partial`] or
/// [`Backend::attention`].
#[derive(Debug)]
pub struct PartialAttention<'a, B: Backend + ?Sized, T: Element> {
    /// Output over the chunk, `[.., Dv]`.
    pub o: View<'a, B, T>,
    /// Log-sum-exp over the chunk, `[..]`, in the accumulation type.
    pub lse: View<'a, B, T::Acc>,
}

impl<B: Backend + ?Sized, T: Element> Clone for PartialAttention<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for PartialAttention<'_, B, T> {}

/// Merges the partial states of two disjoint key chunks into the state over their union
/// (`lse` optional: leave it out for the final merge). See the module docs for the formula.
///
/// ```
/// use seq_attention::{merge, MultiHeadAttention, PartialAttention};
/// use seqcore::{AttentionMasks, Backend, Reference};
///
/// let b = Reference;
/// let mha = MultiHeadAttention::new(1, 1, 2)?;
/// let q = [1.0f64, 0.5];
/// let (k, v) = ([0.1f64, 0.2, -0.3, 0.4, 0.5, 0.6], [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// let mut ws = vec![0.0f64; mha.workspace_len::<_, f64>(&b, 1, 1, 3)?];
/// // Whole sequence.
/// let mut whole = [0.0f64; 2];
/// mha.forward(&b, b.view(&q, &[1, 1, 1, 2])?, b.view(&k, &[1, 3, 1, 2])?,
///     b.view(&v, &[1, 3, 1, 2])?, AttentionMasks::none(), b.view_mut(&mut whole, &[1, 1, 1, 2])?, &mut ws)?;
/// // Keys 0..1 and 1..3 separately, then merged.
/// let (mut oa, mut la, mut ob, mut lb) = ([0.0f64; 2], [0.0f64; 1], [0.0f64; 2], [0.0f64; 1]);
/// mha.forward_partial(&b, b.view(&q, &[1, 1, 1, 2])?, b.view(&k[..2], &[1, 1, 1, 2])?,
///     b.view(&v[..2], &[1, 1, 1, 2])?, AttentionMasks::none(), b.view_mut(&mut oa, &[1, 1, 1, 2])?,
///     b.view_mut(&mut la, &[1, 1, 1])?, &mut ws)?;
/// mha.forward_partial(&b, b.view(&q, &[1, 1, 1, 2])?, b.view(&k[2..], &[1, 2, 1, 2])?,
///     b.view(&v[2..], &[1, 2, 1, 2])?, AttentionMasks::none(), b.view_mut(&mut ob, &[1, 1, 1, 2])?,
///     b.view_mut(&mut lb, &[1, 1, 1])?, &mut ws)?;
/// let mut merged = [0.0f64; 2];
/// merge(
///     &b,
///     PartialAttention { o: b.view(&oa, &[1, 1, 1, 2])?, lse: b.view(&la, &[1, 1, 1])? },
///     PartialAttention { o: b.view(&ob, &[1, 1, 1, 2])?, lse: b.view(&lb, &[1, 1, 1])? },
///     b.view_mut(&mut merged, &[1, 1, 1, 2])?,
///     None,
/// )?;
/// assert!((merged[0] - whole[0]).abs() < 1e-14 && (merged[1] - whole[1]).abs() < 1e-14);
/// # Ok::<(), seqcore::Error>(())
/// ```
///
/// # Errors
/// As [`Backend::attention_merge`]: shape errors naming `o_b`, `lse_a`, `lse_b`, `o`, `lse`.
pub fn merge<B: Backend + ?Sized, T: Element>(
    backend: &B,
    a: PartialAttention<'_, B, T>,
    b: PartialAttention<'_, B, T>,
    o: ViewMut<'_, B, T>,
    lse: Option<ViewMut<'_, B, T::Acc>>,
) -> Result<()> {
    backend.attention_merge(a.o, a.lse, b.o, b.lse, o, lse)
}
