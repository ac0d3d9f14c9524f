//! The parameters of the fused scaled-dot-product attention kernel ([`crate::Backend::attention`])
//! and the checks every backend shares, so that all of them accept and reject the same calls and
//! agree on which key each query row sees.
//!
//! The kernel computes, for batch `b`, query head `h` and query row `i` (Vaswani et al. 2017,
//! "Attention Is All You Need", eq. 1, with the masks and options below):
//!
//! ```text
//! s_j   = scale * q[b,h,i,:] . k[b,g,j,:]          g = h / (Hq / Hkv)   (GQA / MQA)
//! s_j   = cap * tanh(s_j / cap)                     when softcap = Some(cap)   (Gemma 2)
//! s_j   = s_j + bias[b,h,i,j]                       when a bias is given
//! s_j   = -inf                                      when key j is hidden by causal / window / key_mask
//! o     = sum_j softmax(s)_j v[b,g,j,:]             (zeros when every key is hidden)
//! lse   = ln sum_j exp(s_j)                         (-inf when every key is hidden)
//! ```
//!
//! Positions: query row `i` sits at key coordinate `i + query_offset`. The default offset is
//! `Lk - Lq` (**bottom-right** alignment: the last query row is aligned with the last key, as with a
//! KV cache; PyTorch's `CausalBias` lower-right variant and flash-attention >= 2.1). PyTorch's
//! `is_causal=True` is top-left aligned: pass `query_offset: Some(0)` for it.

use core::ops::Range;

use crate::backend::Backend;
use crate::check;
use crate::element::{Element, Real};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::view::View;

/// Scalar options of [`crate::Backend::attention`]. `AttentionParams::default()` is plain
/// bidirectional attention with scale `1/sqrt(D)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttentionParams {
    /// Multiplies `q . k`; `None` is `1/sqrt(D)` (PyTorch's default). Must be finite.
    pub scale: Option<f64>,
    /// Query row `i` sees key `j` only when `j <= i + query_offset` (bottom-right aligned by
    /// default, see the module docs).
    pub causal: bool,
    /// Sliding window of `w` keys: query row `i` sees key `j` only when `i + query_offset - j < w`
    /// (Hugging Face's `sliding_window` (Mistral, Gemma 2), flash-attention's
    /// `window_size = (w - 1, 0)` with `causal`, `(w - 1, -1)` without). Must be at least 1.
    pub window: Option<usize>,
    /// Logit soft-capping `cap * tanh(s / cap)`, applied to the scaled logits before the bias
    /// and the masks (Gemma 2's `attn_logit_softcapping`). Must be finite and positive.
    pub softcap: Option<f64>,
    /// The key coordinate of query row 0; `None` is `Lk - Lq` (bottom-right). A chunk of keys
    /// that starts at key `s` of a longer sequence takes the whole sequence's offset minus `s`, so
    /// that split-KV partials see exactly the keys the whole call would.
    pub query_offset: Option<i64>,
}

impl AttentionParams {
    /// Causal attention with the default scale and alignment.
    pub fn causal() -> Self {
        AttentionParams {
            causal: true,
            ..AttentionParams::default()
        }
    }
}

/// The optional masks of [`crate::Backend::attention`], as views of the backend's memory.
///
/// Broadcast smaller masks with [`View::expand`] (a zero stride), for example one key mask for all
/// batch rows or one bias for all heads.
#[derive(Debug)]
pub struct AttentionMasks<'a, B: Backend + ?Sized, T: Element> {
    /// Key padding, `[B, Lk]`: key `j` of batch row `b` is seen when `key_mask[b, j] != 0`
    /// (Hugging Face's `attention_mask` convention: 1 attend, 0 padding).
    pub key_mask: Option<View<'a, B, u8>>,
    /// Additive bias `[B, Hq, Lq, Lk]` (ALiBi, relative-position biases, a float mask holding
    /// `-inf`), added after soft-capping as Hugging Face's Gemma 2 adds its mask.
    pub bias: Option<View<'a, B, T>>,
}

impl<B: Backend + ?Sized, T: Element> AttentionMasks<'_, B, T> {
    /// No key mask and no bias.
    pub fn none() -> Self {
        AttentionMasks {
            key_mask: None,
            bias: None,
        }
    }
}

impl<B: Backend + ?Sized, T: Element> Clone for AttentionMasks<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for AttentionMasks<'_, B, T> {}

impl<B: Backend + ?Sized, T: Element> Default for AttentionMasks<'_, B, T> {
    fn default() -> Self {
        AttentionMasks::none()
    }
}

/// The extents of one attention call: `q [B, Hq, Lq, D]`, `k [B, Hkv, Lk, D]`,
/// `v [B, Hkv, Lk, Dv]`, `o [B, Hq, Lq, Dv]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionDims {
    /// Batch rows `B`.
    pub batch: usize,
    /// Query heads `Hq`.
    pub heads_q: usize,
    /// Key/value heads `Hkv` (divides `Hq`; `Hkv = Hq` multi-head, `1` multi-query, else grouped).
    pub heads_kv: usize,
    /// Query rows `Lq`.
    pub len_q: usize,
    /// Keys `Lk`.
    pub len_k: usize,
    /// Query/key features per head `D`.
    pub head_dim: usize,
    /// Value features per head `Dv`.
    pub value_dim: usize,
}

impl AttentionDims {
    /// The extents of `q`, `k`, `v`, checked against each other.
    ///
    /// # Errors
    /// [`Error::Rank`] when an operand is not of rank 4; [`Error::Shape`] naming `k` or `v` when
    /// an extent disagrees; [`Error::Param`] naming `q` for zero query heads, `k` for zero key/value
    /// heads or when `Hkv` does not divide `Hq`.
    pub fn of(q: &Layout, k: &Layout, v: &Layout) -> Result<AttentionDims> {
        let rank4 = |arg: &'static str, l: &Layout| -> Result<[usize; 4]> {
            <[usize; 4]>::try_from(l.shape()).map_err(|_| Error::Rank {
                arg,
                got: l.rank(),
                min: 4,
                max: 4,
            })
        };
        let [batch, heads_q, len_q, head_dim] = rank4("q", q)?;
        let [_, heads_kv, len_k, _] = rank4("k", k)?;
        let [.., value_dim] = rank4("v", v)?;
        if heads_q == 0 {
            return Err(Error::Param {
                arg: "q",
                reason: "must have at least one head",
            });
        }
        if heads_kv == 0 {
            return Err(Error::Param {
                arg: "k",
                reason: "must have at least one key/value head",
            });
        }
        if heads_q % heads_kv != 0 {
            return Err(Error::Param {
                arg: "k",
                reason: "key/value heads must divide the query heads",
            });
        }
        check::shape("k", k, &[batch, heads_kv, len_k, head_dim])?;
        check::shape("v", v, &[batch, heads_kv, len_k, value_dim])?;
        Ok(AttentionDims {
            batch,
            heads_q,
            heads_kv,
            len_q,
            len_k,
            head_dim,
            value_dim,
        })
    }

    /// The key/value head query head `h` reads: `h / (Hq / Hkv)` (Hugging Face's `repeat_kv`).
    pub fn kv_head(&self, h: usize) -> usize {
        h.checked_div(self.heads_q.checked_div(self.heads_kv).unwrap_or(1))
            .unwrap_or(0)
    }

    /// Multiply-adds of one call without masks, `2 B Hq Lq Lk (D + Dv)` floating-point operations
    /// (what perf reports count).
    pub fn flops(&self) -> f64 {
        let f = |x: usize| x as f64;
        2.0 * f(self.batch)
            * f(self.heads_q)
            * f(self.len_q)
            * f(self.len_k)
            * f(self.head_dim + self.value_dim)
    }
}

/// A checked attention call: its extents and its resolved options, in the accumulation type `R`.
/// Every backend builds it with [`AttentionPlan::check`] and uses [`AttentionPlan::keys`] for the
/// causal/window range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionPlan<R> {
    /// The extents.
    pub dims: AttentionDims,
    /// The scale, resolved (`1/sqrt(D)` by default).
    pub scale: R,
    /// The soft cap, if any.
    pub softcap: Option<R>,
    /// Causal masking.
    pub causal: bool,
    /// The sliding window, if any (at least 1).
    pub window: Option<usize>,
    /// The key coordinate of query row 0 (resolved).
    pub query_offset: i64,
}

impl<R: Real> AttentionPlan<R> {
    /// Checks every argument of [`crate::Backend::attention`] (shapes of `q`, `k`, `v`, the masks,
    /// `o` and `lse`; the options) and resolves the options.
    ///
    /// # Errors
    /// As [`AttentionDims::of`]; [`Error::Shape`]/[`Error::Rank`] naming `key_mask`, `bias`, `o`
    /// or `lse`; [`Error::Param`] naming `scale` (not finite, or no default because `D = 0`),
    /// `softcap` (not finite and positive), `window` (0); [`Error::Overflow`] naming
    /// `query_offset` when `Lk - Lq` does not fit in `i64`.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        params: &AttentionParams,
        q: &Layout,
        k: &Layout,
        v: &Layout,
        key_mask: Option<&Layout>,
        bias: Option<&Layout>,
        o: &Layout,
        lse: Option<&Layout>,
    ) -> Result<AttentionPlan<R>> {
        let d = AttentionDims::of(q, k, v)?;
        if let Some(m) = key_mask {
            check::shape("key_mask", m, &[d.batch, d.len_k])?;
        }
        if let Some(b) = bias {
            check::shape("bias", b, &[d.batch, d.heads_q, d.len_q, d.len_k])?;
        }
        check::shape("o", o, &[d.batch, d.heads_q, d.len_q, d.value_dim])?;
        if let Some(l) = lse {
            check::shape("lse", l, &[d.batch, d.heads_q, d.len_q])?;
        }
        let scale = match params.scale {
            Some(s) => check::finite_in::<R>("scale", s)?,
            None if d.head_dim == 0 => {
                return Err(Error::Param {
                    arg: "scale",
                    reason: "has no default when the head dimension is 0",
                });
            }
            None => R::one() / R::lit(d.head_dim as f64).sqrt(),
        };
        let softcap = match params.softcap {
            Some(c) => {
                let c = check::finite_in::<R>("softcap", c)?;
                if c <= R::zero() {
                    return Err(Error::Param {
                        arg: "softcap",
                        reason: "must be positive",
                    });
                }
                Some(c)
            }
            None => None,
        };
        if params.window == Some(0) {
            return Err(Error::Param {
                arg: "window",
                reason: "must be at least 1",
            });
        }
        let query_offset = match params.query_offset {
            Some(o) => o,
            None => {
                let lk = i64::try_from(d.len_k).map_err(|_| Error::Overflow {
                    arg: "query_offset",
                })?;
                let lq = i64::try_from(d.len_q).map_err(|_| Error::Overflow {
                    arg: "query_offset",
                })?;
                lk - lq
            }
        };
        Ok(AttentionPlan {
            dims: d,
            scale,
            softcap,
            causal: params.causal,
            window: params.window,
            query_offset,
        })
    }

    /// The keys query row `i` may see under the causal and window masks: a range of key indices
    /// (empty when none). The key mask and the bias then apply inside it.
    pub fn keys(&self, i: usize) -> Range<usize> {
        let lk = self.dims.len_k;
        let pos = i as i128 + i128::from(self.query_offset);
        let clamp = |x: i128| -> usize {
            if x <= 0 {
                0
            } else {
                usize::try_from(x).map_or(lk, |x| x.min(lk))
            }
        };
        let hi = if self.causal { clamp(pos + 1) } else { lk };
        let lo = match self.window {
            Some(w) => clamp(pos - w as i128 + 1),
            None => 0,
        };
        lo.min(hi)..hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(params: &AttentionParams, lq: usize, lk: usize) -> AttentionPlan<f64> {
        let q = Layout::contiguous(&[1, 1, lq, 2]).unwrap();
        let k = Layout::contiguous(&[1, 1, lk, 2]).unwrap();
        let o = Layout::contiguous(&[1, 1, lq, 2]).unwrap();
        AttentionPlan::check(params, &q, &k, &k, None, None, &o, None).unwrap()
    }

    #[test]
    fn causal_is_bottom_right() {
        let p = plan(&AttentionParams::causal(), 2, 5);
        assert_eq!(p.keys(0), 0..4);
        assert_eq!(p.keys(1), 0..5);
        // More queries than keys: the first rows see nothing.
        let p = plan(&AttentionParams::causal(), 5, 2);
        assert_eq!(p.keys(0), 0..0);
        assert_eq!(p.keys(2), 0..0);
        assert_eq!(p.keys(3), 0..1);
        assert_eq!(p.keys(4), 0..2);
    }

    #[test]
    fn window_counts_the_diagonal() {
        let params = AttentionParams {
            window: Some(3),
            ..AttentionParams::causal()
        };
        let p = plan(&params, 6, 6);
        assert_eq!(p.keys(0), 0..1);
        assert_eq!(p.keys(4), 2..5);
        let params = AttentionParams {
            window: Some(3),
            ..AttentionParams::default()
        };
        let p = plan(&params, 6, 6);
        assert_eq!(p.keys(4), 2..6);
    }

    #[test]
    fn bad_options_name_their_argument() {
        let q = Layout::contiguous(&[1, 4, 3, 2]).unwrap();
        let k = Layout::contiguous(&[1, 3, 3, 2]).unwrap();
        let o = Layout::contiguous(&[1, 4, 3, 2]).unwrap();
        let e = AttentionPlan::<f32>::check(
            &AttentionParams::default(),
            &q,
            &k,
            &k,
            None,
            None,
            &o,
            None,
        );
        assert!(matches!(e, Err(Error::Param { arg: "k", .. })));
        let k = Layout::contiguous(&[1, 2, 3, 2]).unwrap();
        for (params, arg) in [
            (
                AttentionParams {
                    scale: Some(f64::NAN),
                    ..AttentionParams::default()
                },
                "scale",
            ),
            (
                AttentionParams {
                    window: Some(0),
                    ..AttentionParams::default()
                },
                "window",
            ),
            (
                AttentionParams {
                    softcap: Some(0.0),
                    ..AttentionParams::default()
                },
                "softcap",
            ),
            (
                AttentionParams {
                    scale: Some(1e300),
                    ..AttentionParams::default()
                },
                "scale",
            ),
        ] {
            let e = AttentionPlan::<f32>::check(&params, &q, &k, &k, None, None, &o, None);
            assert!(
                matches!(e, Err(Error::Param { arg: a, .. }) if a == arg),
                "{e:?}"
            );
        }
    }
}
