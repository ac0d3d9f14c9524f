//! Shaw, Uszkoreit and Vaswani, *Self-Attention with Relative Position Representations* (NAACL
//! 2018), eq. (3)-(5):
//!
//! ```text
//! e_ij = x_i W^Q (x_j W^K + a^K_ij)^T / sqrt(d_z)            (4)
//! z_i  = sum_j alpha_ij (x_j W^V + a^V_ij)                    (3)
//! a^K_ij = w^K_clip(j - i, k),  a^V_ij = w^V_clip(j - i, k),  clip(x, k) = max(-k, min(k, x))   (5)
//! ```
//!
//! with `2k + 1` learned embeddings each for keys and values, shared across heads in the paper
//! (pass `[2k+1, D]`), or per head (`[H, 2k+1, D]`). Row `r` of a table embeds the distance
//! `j - i = r - k`.

use seqcore::{Backend, Element, Result, View, ViewMut};

use super::{RelativeIndex, RelativeParams, per_head, scale_or_default};

/// Shaw et al.'s relative self-attention (eq. (3)-(5)) over projected `q, k, v`.
///
/// ```
/// use seq_attention::relative::shaw::ShawAttention;
/// use seqcore::{Backend, Reference};
///
/// // One head, L = 2, D = 1, clipping distance k = 1 (3 embeddings), causal.
/// let b = Reference;
/// let (q, k, v) = ([1.0f64, 1.0], [0.0f64, 0.0], [1.0f64, 3.0]);
/// let (ak, av) = ([0.0f64, 0.0, 0.0], [10.0f64, 0.0, 0.0]); // a^V of distance -1 is 10
/// let mut o = [0.0f64; 2];
/// let mut ws = [0.0f64; 1];
/// let shaw = ShawAttention { clip: 1, scale: None, causal: true };
/// shaw.forward(&b, b.view(&q, &[1, 1, 2, 1])?, b.view(&k, &[1, 1, 2, 1])?, b.view(&v, &[1, 1, 2, 1])?,
///     b.view(&ak, &[3, 1])?, Some(b.view(&av, &[3, 1])?), b.view_mut(&mut o, &[1, 1, 2, 1])?, &mut ws)?;
/// // Query 1 attends equally to key 0 (value 1 + a^V_{-1} = 11) and key 1 (3 + a^V_0 = 3).
/// assert!((o[0] - 1.0).abs() < 1e-12 && (o[1] - 7.0).abs() < 1e-12);
/// # Ok::<(), seqcore::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShawAttention {
    /// The clipping distance `k`.
    pub clip: usize,
    /// Score scale (default `1/sqrt(D)`, the paper's `1/sqrt(d_z)`).
    pub scale: Option<f64>,
    /// Hide later keys (decoder self-attention).
    pub causal: bool,
}

impl ShawAttention {
    /// The kernel parameters for head dimension `d`.
    ///
    /// # Errors
    /// [`seqcore::Error::Param`] naming `scale` when it is not finite.
    pub fn params(&self, d: usize) -> Result<RelativeParams> {
        Ok(RelativeParams {
            scale: scale_or_default(self.scale, d)?,
            causal: self.causal,
            index: RelativeIndex::Clipped {
                max_back: self.clip,
                max_fwd: self.clip,
            },
        })
    }

    /// `o [B, H, Lq, Dv]` from `q [B, H, Lq, D]`, `k [B, H, Lk, D]`, `v [B, H, Lk, Dv]` and the
    /// embeddings `a_k [(H,) 2k+1, D]`, `a_v [(H,) 2k+1, Dv]` (none: eq. (3) without `a^V`).
    /// `workspace` holds [`super::workspace_len`]`(Dv)` accumulators.
    ///
    /// # Errors
    /// Shape errors naming the argument; those of [`Backend::relative_attention`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend, T: Element>(
        &self,
        b: &B,
        q: View<'_, B, T>,
        k: View<'_, B, T>,
        v: View<'_, B, T>,
        a_k: View<'_, B, T>,
        a_v: Option<View<'_, B, T>>,
        o: ViewMut<'_, B, T>,
        workspace: &mut B::Mem<T::Acc>,
    ) -> Result<()> {
        let heads = q.shape().get(1).copied().unwrap_or(0);
        let d = q.shape().get(3).copied().unwrap_or(0);
        let p = self.params(d)?;
        let a_k = per_head("rel_k", a_k, heads, 3)?;
        let a_v = a_v.map(|t| per_head("rel_v", t, heads, 3)).transpose()?;
        b.relative_attention(&p, q, k, v, Some(a_k), a_v, None, o, workspace)
    }
}
