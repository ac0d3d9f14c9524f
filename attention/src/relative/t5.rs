//! T5's relative position bias: Raffel et al., *Exploring the Limits of Transfer Learning with a
//! Unified Text-to-Text Transformer* (JMLR 2020), section 2.1: a learned scalar per head and
//! distance bucket is added to the attention logits; buckets are exact for short distances and
//! logarithmic up to `max_distance`. [`relative_position_bucket`] is exactly Hugging Face's
//! `T5Attention._relative_position_bucket`.

use seqcore::{Backend, Element, Result, View, ViewMut};

use super::{RelativeIndex, RelativeParams, per_head};

/// The bucket of `relative_position = key position - query position` (Hugging Face's
/// `memory_position - context_position`). Encoders use `bidirectional = true`, decoders `false`
/// (later keys all share bucket 0). T5 uses 32 buckets and `max_distance = 128`.
///
/// ```
/// use seq_attention::relative::t5::relative_position_bucket;
/// assert_eq!(relative_position_bucket(-3, true, 32, 128)?, 3);
/// assert_eq!(relative_position_bucket(3, true, 32, 128)?, 19);
/// assert_eq!(relative_position_bucket(-1000, false, 32, 128)?, 31);
/// # Ok::<(), seqcore::Error>(())
/// ```
///
/// # Errors
/// [`seqcore::Error::Param`] naming `num_buckets` (odd when bidirectional, or fewer than 2 per
/// direction) or `max_distance` (within the exact range, where the log spacing divides by zero).
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> Result<usize> {
    RelativeIndex::Buckets {
        bidirectional,
        num_buckets,
        max_distance,
    }
    .check()?;
    Ok(seqcore::portable::relative::t5_bucket(
        relative_position,
        bidirectional,
        num_buckets,
        max_distance,
    ))
}

/// T5 attention with its relative bias: `softmax(q k^T + bias[h, bucket(j - i)]) v`, unscaled as
/// in T5 (the `1/sqrt(D)` is folded into the initialisation), fused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct T5RelativeBias {
    /// Encoder (`true`) or decoder (`false`) buckets.
    pub bidirectional: bool,
    /// `relative_attention_num_buckets` (32).
    pub num_buckets: usize,
    /// `relative_attention_max_distance` (128).
    pub max_distance: usize,
    /// Hide later keys (decoder self-attention).
    pub causal: bool,
}

impl T5RelativeBias {
    /// The kernel parameters.
    pub fn params(&self) -> RelativeParams {
        RelativeParams {
            scale: 1.0,
            causal: self.causal,
            index: RelativeIndex::Buckets {
                bidirectional: self.bidirectional,
                num_buckets: self.num_buckets,
                max_distance: self.max_distance,
            },
        }
    }

    /// `o [B, H, Lq, Dv]` with the bias table `bias [H, num_buckets]` (Hugging Face's
    /// `relative_attention_bias.weight` is `[num_buckets, H]`: pass its transposed view) or
    /// `[num_buckets]` shared by the heads. Queries are the last `Lq` positions of the keys (a
    /// decode step with a cache sits at position `Lk - 1`, as Hugging Face's `cache_position`).
    ///
    /// # Errors
    /// Those of [`Backend::relative_attention`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend, T: Element>(
        &self,
        b: &B,
        q: View<'_, B, T>,
        k: View<'_, B, T>,
        v: View<'_, B, T>,
        bias: View<'_, B, T>,
        o: ViewMut<'_, B, T>,
        workspace: &mut B::Mem<T::Acc>,
    ) -> Result<()> {
        let heads = q.shape().get(1).copied().unwrap_or(0);
        let bias = per_head("rel_bias", bias, heads, 2)?;
        b.relative_attention(
            &self.params(),
            q,
            k,
            v,
            None,
            None,
            Some(bias),
            o,
            workspace,
        )
    }
}
