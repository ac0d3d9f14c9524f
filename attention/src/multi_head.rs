//! Multi-head, grouped-query and multi-query scaled dot-product attention over token-major views,
//! for self- and cross-attention, on any [`Backend`].
//!
//! Vaswani et al. 2017, "Attention Is All You Need", eq. 1 (scaled dot-product attention) and
//! section 3.2.2 (multi-head); grouped-query attention (Ainslie et al. 2023, GQA) and multi-query
//! attention (Shazeer 2019): `Hkv` key/value heads shared by groups of `Hq / Hkv` query heads,
//! query head `h` reading key/value head `h / (Hq / Hkv)` as Hugging Face's `repeat_kv`.

use seqcore::{
    AttentionDims, AttentionMasks, AttentionParams, AttentionPlan, Backend, Element, Error, Result,
    View, ViewMut,
};

/// The configuration of one attention layer: head counts, head sizes, and the options of
/// [`AttentionParams`] (scale, causal, sliding window, soft-capping). Projections are the caller's
/// (a `gemm` each); this type attends the projected, token-major `[B, L, H, D]` tensors.
///
/// Self-attention passes keys and values of the same sequence as the queries (usually with
/// [`MultiHeadAttention::causal`] in a decoder); cross-attention (encoder-decoder) passes the
/// encoder's keys and values, of another length, without a causal mask.
///
/// ```
/// use seq_attention::MultiHeadAttention;
/// use seqcore::{AttentionMasks, Backend, Reference};
///
/// let b = Reference;
/// // 4 query heads sharing 2 key/value heads (GQA), head size 2, one sequence of 3 tokens.
/// let mha = MultiHeadAttention::new(4, 2, 2)?.causal();
/// let q = [0.5f32; 3 * 4 * 2];
/// let kv = [1.0f32, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0, 3.0];
/// let mut o = [0.0f32; 3 * 4 * 2];
/// let mut ws = vec![0.0f32; mha.workspace_len::<_, f32>(&b, 1, 3, 3)?];
/// mha.forward(
///     &b,
///     b.view(&q, &[1, 3, 4, 2])?,
///     b.view(&kv, &[1, 3, 2, 2])?,
///     b.view(&kv, &[1, 3, 2, 2])?,
///     AttentionMasks::none(),
///     b.view_mut(&mut o, &[1, 3, 4, 2])?,
///     &mut ws,
/// )?;
/// // Token 0 sees only itself: head 0 (KV head 0) returns v[0, 0] = [1, 0].
/// assert_eq!(&o[..2], &[1.0, 0.0]);
/// # Ok::<(), seqcore::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiHeadAttention {
    heads_q: usize,
    heads_kv: usize,
    head_dim: usize,
    value_dim: usize,
    params: AttentionParams,
}

impl MultiHeadAttention {
    /// `heads_q` query heads over `heads_kv` key/value heads (`heads_kv == heads_q`: multi-head;
    /// `1`: multi-query; otherwise grouped-query), `head_dim` features per query/key head (and
    /// per value head until [`MultiHeadAttention::with_value_dim`]); scale `1/sqrt(head_dim)`.
    ///
    /// # Errors
    /// [`Error::Param`] naming `heads_q` or `heads_kv` when zero, `heads_kv` when it does not
    /// divide `heads_q`, `head_dim` when zero.
    pub fn new(heads_q: usize, heads_kv: usize, head_dim: usize) -> Result<Self> {
        let param = |arg, reason| Err(Error::Param { arg, reason });
        if heads_q == 0 {
            return param("heads_q", "must be at least 1");
        }
        if heads_kv == 0 {
            return param("heads_kv", "must be at least 1");
        }
        if heads_q % heads_kv != 0 {
            return param("heads_kv", "must divide heads_q");
        }
        if head_dim == 0 {
            return param("head_dim", "must be at least 1");
        }
        Ok(MultiHeadAttention {
            heads_q,
            heads_kv,
            head_dim,
            value_dim: head_dim,
            params: AttentionParams::default(),
        })
    }

    /// Values of `value_dim` features per head (MLA-style layers use `Dv != D`).
    ///
    /// # Errors
    /// [`Error::Param`] naming `value_dim` when zero.
    pub fn with_value_dim(mut self, value_dim: usize) -> Result<Self> {
        if value_dim == 0 {
            return Err(Error::Param {
                arg: "value_dim",
                reason: "must be at least 1",
            });
        }
        self.value_dim = value_dim;
        Ok(self)
    }

    /// Causal masking, bottom-right aligned (the last query sees every key, as with a KV cache).
    pub fn causal(mut self) -> Self {
        self.params.causal = true;
        self
    }

    /// Replaces `1/sqrt(head_dim)`.
    ///
    /// # Errors
    /// [`Error::Param`] naming `scale` when it is not finite.
    pub fn with_scale(mut self, scale: f64) -> Result<Self> {
        self.params.scale = Some(seqcore::check::finite("scale", scale)?);
        Ok(self)
    }

    /// A sliding window of `window` keys (query at key position `p` sees keys `p - window + 1 ..`,
    /// Hugging Face's `sliding_window`).
    ///
    /// # Errors
    /// [`Error::Param`] naming `window` when zero.
    pub fn with_window(mut self, window: usize) -> Result<Self> {
        if window == 0 {
            return Err(Error::Param {
                arg: "window",
                reason: "must be at least 1",
            });
        }
        self.params.window = Some(window);
        Ok(self)
    }

    /// Gemma 2's logit soft-capping `cap * tanh(s / cap)`.
    ///
    /// # Errors
    /// [`Error::Param`] naming `softcap` unless finite and positive.
    pub fn with_softcap(mut self, cap: f64) -> Result<Self> {
        if !(cap.is_finite() && cap > 0.0) {
            return Err(Error::Param {
                arg: "softcap",
                reason: "must be finite and positive",
            });
        }
        self.params.softcap = Some(cap);
        Ok(self)
    }

    /// The kernel options.
    pub fn params(&self) -> &AttentionParams {
        &self.params
    }

    /// Query heads.
    pub fn heads_q(&self) -> usize {
        self.heads_q
    }

    /// Key/value heads.
    pub fn heads_kv(&self) -> usize {
        self.heads_kv
    }

    /// Features per query/key head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Features per value head.
    pub fn value_dim(&self) -> usize {
        self.value_dim
    }

    /// The kernel extents for `batch` sequences of `len_q` queries over `len_k` keys.
    pub fn dims(&self, batch: usize, len_q: usize, len_k: usize) -> AttentionDims {
        AttentionDims {
            batch,
            heads_q: self.heads_q,
            heads_kv: self.heads_kv,
            len_q,
            len_k,
            head_dim: self.head_dim,
            value_dim: self.value_dim,
        }
    }

    /// Workspace elements (`T::Acc`, backend memory) [`MultiHeadAttention::forward`] needs; it does
    /// not grow with the lengths on the portable path.
    ///
    /// # Errors
    /// As [`Backend::attention_workspace_len`].
    pub fn workspace_len<B: Backend + ?Sized, T: Element>(
        &self,
        backend: &B,
        batch: usize,
        len_q: usize,
        len_k: usize,
    ) -> Result<usize> {
        backend.attention_workspace_len::<T>(&self.dims(batch, len_q, len_k))
    }

    /// Checks that a token-major operand is `[B, L, heads, dim]`, naming it, and returns it in
    /// the kernel's head-major `[B, heads, L, dim]` order.
    fn head_major(
        arg: &'static str,
        l: &seqcore::Layout,
        heads: usize,
        dim: usize,
    ) -> Result<seqcore::Layout> {
        let s = l.shape();
        if s.len() != 4 {
            return Err(Error::Rank {
                arg,
                got: s.len(),
                min: 4,
                max: 4,
            });
        }
        let (b, len) = (s.first().copied(), s.get(1).copied());
        seqcore::check::shape(arg, l, &[b.unwrap_or(0), len.unwrap_or(0), heads, dim])?;
        l.transpose(1, 2)
    }

    /// Attention of token-major `q [B, Lq, Hq, D]` over `k [B, Lk, Hkv, D]`, `v [B, Lk, Hkv, Dv]`
    /// into `o [B, Lq, Hq, Dv]` (any strides), with the optional key-padding mask `[B, Lk]` and
    /// bias `[B, Hq, Lq, Lk]` of [`AttentionMasks`]. A query that sees no key gets zeros.
    ///
    /// # Errors
    /// [`Error::Rank`]/[`Error::Shape`] naming `q`, `k`, `v`, `o` or a mask when its extents
    /// disagree with this configuration or with each other; [`Error::Capacity`] naming
    /// `workspace`; the errors of [`Backend::attention`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend + ?Sized, T: Element>(
        &self,
        backend: &B,
        q: View<'_, B, T>,
        k: View<'_, B, T>,
        v: View<'_, B, T>,
        masks: AttentionMasks<'_, B, T>,
        o: ViewMut<'_, B, T>,
        workspace: &mut B::Mem<T::Acc>,
    ) -> Result<()> {
        self.run(backend, q, k, v, masks, o, None, workspace)
    }

    /// [`MultiHeadAttention::forward`] that also writes each query row's log-sum-exp into
    /// `lse [B, Hq, Lq]`: the partial state `(o, lse)` of attention over this chunk of keys,
    /// which [`crate::merge`] combines with the partials of other chunks. Give the chunk's keys
    /// their place in the whole sequence with [`MultiHeadAttention::with_query_offset`].
    ///
    /// # Errors
    /// As [`MultiHeadAttention::forward`], and shape errors naming `lse`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_partial<B: Backend + ?Sized, T: Element>(
        &self,
        backend: &B,
        q: View<'_, B, T>,
        k: View<'_, B, T>,
        v: View<'_, B, T>,
        masks: AttentionMasks<'_, B, T>,
        o: ViewMut<'_, B, T>,
        lse: ViewMut<'_, B, T::Acc>,
        workspace: &mut B::Mem<T::Acc>,
    ) -> Result<()> {
        self.run(backend, q, k, v, masks, o, Some(lse), workspace)
    }

    /// The same layer with query row 0 at key coordinate `offset` (see
    /// [`AttentionParams::query_offset`]): for a chunk of keys starting at key `s` of a sequence
    /// whose queries are bottom-right aligned, `offset = Lk_total - Lq - s`.
    pub fn with_query_offset(mut self, offset: i64) -> Self {
        self.params.query_offset = Some(offset);
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn run<B: Backend + ?Sized, T: Element>(
        &self,
        backend: &B,
        q: View<'_, B, T>,
        k: View<'_, B, T>,
        v: View<'_, B, T>,
        masks: AttentionMasks<'_, B, T>,
        o: ViewMut<'_, B, T>,
        lse: Option<ViewMut<'_, B, T::Acc>>,
        workspace: &mut B::Mem<T::Acc>,
    ) -> Result<()> {
        let q = q.map_layout(|l| Self::head_major("q", l, self.heads_q, self.head_dim))?;
        let k = k.map_layout(|l| Self::head_major("k", l, self.heads_kv, self.head_dim))?;
        let v = v.map_layout(|l| Self::head_major("v", l, self.heads_kv, self.value_dim))?;
        let o = o.map_layout(|l| Self::head_major("o", l, self.heads_q, self.value_dim))?;
        // Shapes first (naming the argument), then the workspace, then the kernel.
        AttentionPlan::<T::Acc>::check(
            &self.params,
            q.layout(),
            k.layout(),
            v.layout(),
            masks.key_mask.as_ref().map(View::layout),
            masks.bias.as_ref().map(View::layout),
            o.layout(),
            lse.as_ref().map(ViewMut::layout),
        )?;
        backend.attention(&self.params, q, k, v, masks, o, lse, workspace)
    }
}
