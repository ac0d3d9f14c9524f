//! The [`Backend`] trait: memory that a backend owns, and the kernels that run on it.

use crate::attention::{AttentionDims, AttentionMasks, AttentionParams, AttentionPlan};
use crate::element::{Element, Scalar};
use crate::error::Result;
use crate::layout::Layout;
use crate::op::{Binary, Reduce, SoftmaxKind, Unary};
use crate::portable::linear_memory::{LinearMemorySpec, MemoryInputs};
use crate::view::{View, ViewMut};

/// A place where kernels run: its own memory type, transfers to and from the host, and the
/// kernels of the family.
///
/// The memory type is the backend's: a host slice `[T]` on CPU backends (so the no-allocation path
/// costs nothing), device memory on a GPU backend, which then keeps data on the device across every
/// kernel of a mechanism. Uploads and downloads are the explicit [`Backend::write`] and
/// [`Backend::read`].
///
/// Every kernel validates its arguments with [`crate::check`] and answers `Err` on bad input; it
/// never panics. Every kernel is generic over the element type: f16 and bf16 are loaded, widened to
/// f32, computed, and rounded once when stored.
///
/// # Adding a kernel
///
/// A later kernel (RoPE, fused attention, scans, FFT convolution) is added as a *provided* method
/// whose default body composes the kernels above, so every existing backend keeps compiling and
/// computing the same numbers; a backend overrides it with a fused version. A capability that has
/// no portable composition answers [`crate::Error::Unsupported`], never a wrong result. A kernel that
/// needs scratch memory comes with a `*_workspace_len` query and takes the scratch from the caller
/// as backend memory of the accumulation type: nothing in a kernel allocates.
pub trait Backend {
    /// Memory holding elements of `T`: `[T]` for host backends.
    type Mem<T: Scalar>: ?Sized;

    /// The backend's name, as `seq-conformance --backend NAME` takes it.
    fn name(&self) -> &'static str;

    /// Elements in `mem`.
    fn mem_len<T: Scalar>(mem: &Self::Mem<T>) -> usize;

    /// Copies host data into backend memory of the same length.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] when the lengths differ; device errors.
    fn write<T: Scalar>(&self, src: &[T], dst: &mut Self::Mem<T>) -> Result<()>;

    /// Copies backend memory into a host slice of the same length.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] when the lengths differ; device errors.
    fn read<T: Scalar>(&self, src: &Self::Mem<T>, dst: &mut [T]) -> Result<()>;

    /// Batched, strided matrix product `c = alpha * a @ b + beta * c` (BLAS `gemm`).
    ///
    /// `a [.., m, k]`, `b [.., k, n]`, `c [.., m, n]`, all of rank 2 or all of rank 3 (a batch
    /// axis first). Transposes are views with swapped strides; a zero batch stride shares an
    /// operand across the batch. Products are summed in the accumulation type. When `beta` is 0,
    /// `c` is not read (a NaN there does not propagate), as in BLAS.
    ///
    /// # Errors
    /// Shape errors from [`crate::check::gemm`]; [`crate::Error::Param`] when `alpha` or `beta`
    /// is not finite.
    fn gemm<T: Element>(
        &self,
        alpha: f64,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        beta: f64,
        c: ViewMut<'_, Self, T>,
    ) -> Result<()>;

    /// Softmax or log-softmax over the last axis of `x + mask`, written to `y` (same shape).
    ///
    /// `mask` is additive (`-inf` hides an element) and has `x`'s shape; broadcast a smaller mask
    /// with [`View::expand`]. A row whose every element is `-inf` (fully masked, or empty) gives
    /// zeros for softmax and `-inf` for log-softmax, as PyTorch's scaled-dot-product attention
    /// does for such rows. A row holding NaN, or `+inf`, gives NaN everywhere (as PyTorch).
    ///
    /// # Errors
    /// Shape errors naming `mask` or `y`.
    fn softmax<T: Element>(
        &self,
        kind: SoftmaxKind,
        x: View<'_, Self, T>,
        mask: Option<View<'_, Self, T>>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()>;

    /// Elementwise map `y = op(x)` (same shape).
    ///
    /// # Errors
    /// Shape errors naming `y`; [`crate::Error::Param`] for a non-finite constant.
    fn unary<T: Element>(
        &self,
        op: Unary,
        x: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()>;

    /// Elementwise map `y = op(a, b)` (all three of one shape; broadcast with [`View::expand`]).
    ///
    /// # Errors
    /// Shape errors naming `b` or `y`.
    fn binary<T: Element>(
        &self,
        op: Binary,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()>;

    /// Reduction over the last axis: `x [.., n]` into `y [..]`.
    ///
    /// # Errors
    /// Shape errors naming `y`.
    fn reduce<T: Element>(
        &self,
        op: Reduce,
        x: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()>;

    /// Converts element types, rounding once to nearest, ties to even (overflow gives ±inf, NaN
    /// stays NaN).
    ///
    /// # Errors
    /// Shape errors naming `y`.
    fn cast<S: Element, D: Element>(
        &self,
        x: View<'_, Self, S>,
        y: ViewMut<'_, Self, D>,
    ) -> Result<()>;

    /// The `k` largest elements of each row of `x [.., n]`, largest first, into
    /// `values [.., k]` and their positions into `indices [.., k]`. Ties go to the lower index;
    /// NaN counts as larger than `+inf` (as `torch.topk`).
    ///
    /// # Errors
    /// [`crate::Error::Param`] when `k > n` or `n` does not fit in `u32`; shape errors naming
    /// `values` or `indices`.
    fn top_k<T: Element>(
        &self,
        k: usize,
        x: View<'_, Self, T>,
        values: ViewMut<'_, Self, T>,
        indices: ViewMut<'_, Self, u32>,
    ) -> Result<()>;

    /// The host slice behind `mem`, when this backend's memory is host memory (`[T]`).
    ///
    /// The portable bodies of the fused kernels below run on it; a backend whose memory is not on
    /// the host (a GPU) keeps the default `None` and overrides each fused kernel it supports; the
    /// rest answer [`crate::Error::Unsupported`].
    fn host<T: Scalar>(mem: &Self::Mem<T>) -> Option<&[T]> {
        let _ = mem;
        None
    }

    /// The writable host slice behind `mem` (see [`Backend::host`]).
    fn host_mut<T: Scalar>(mem: &mut Self::Mem<T>) -> Option<&mut [T]> {
        let _ = mem;
        None
    }

    // ---- fused kernels: attention (seq-attention) ----

    /// Scratch elements (of `T::Acc`, in this backend's memory) that [`Backend::attention`] needs
    /// for calls of extents `dims`. The portable kernel needs `Dv + 64`, independent of the
    /// sequence lengths (flash-attention's O(tile) memory); a backend that overrides the kernel
    /// overrides this too.
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] when the count overflows `usize`.
    fn attention_workspace_len<T: Element>(&self, dims: &AttentionDims) -> Result<usize> {
        crate::portable::attention::workspace_len(dims.value_dim)
    }

    /// Fused scaled-dot-product attention (Vaswani et al. 2017, eq. 1) with an online softmax
    /// over key tiles (FlashAttention, Dao et al. 2022): `o = softmax(scale q k^T + masks) v`
    /// without ever forming the `Lq x Lk` score matrix.
    ///
    /// `q [B, Hq, Lq, D]`, `k [B, Hkv, Lk, D]`, `v [B, Hkv, Lk, Dv]`, `o [B, Hq, Lq, Dv]`, any
    /// strides (token-major `[B, L, H, D]` storage works through [`View::transpose`]). Query head
    /// `h` reads key/value head `h / (Hq / Hkv)` (grouped- and multi-query attention, Hugging
    /// Face's `repeat_kv`). Options and the order in which they apply (scale, soft cap, bias,
    /// causal / window / key masks) are [`AttentionParams`] and [`AttentionMasks`], documented in
    /// [`crate::attention`]; causal and window masks are bottom-right aligned by default.
    ///
    /// Logits, the softmax and the weighted sum are computed in `T::Acc` (f32 for f16/bf16, so a
    /// `q . k` beyond the f16 range is fine). A query row that sees no key gives **zeros** (and
    /// `lse = -inf`), as flash-attention and PyTorch's fused kernels do (PyTorch's math path gives
    /// NaN). NaN in a visible logit gives a NaN row. When `lse [B, Hq, Lq]` is given, it receives
    /// each row's natural log-sum-exp of the final logits: with `o`, the partial state that
    /// sequence-parallel merges combine. `workspace` holds at least
    /// [`Backend::attention_workspace_len`] elements.
    ///
    /// The default body runs [`crate::portable::attention`] on host memory and answers
    /// [`crate::Error::Unsupported`] for a backend whose memory is elsewhere.
    ///
    /// # Errors
    /// As [`AttentionPlan::check`] (every shape and option, naming the argument);
    /// [`crate::Error::Capacity`] naming `workspace` when it is too short.
    #[allow(clippy::too_many_arguments)]
    fn attention<T: Element>(
        &self,
        params: &AttentionParams,
        q: View<'_, Self, T>,
        k: View<'_, Self, T>,
        v: View<'_, Self, T>,
        masks: AttentionMasks<'_, Self, T>,
        o: ViewMut<'_, Self, T>,
        lse: Option<ViewMut<'_, Self, T::Acc>>,
        workspace: &mut Self::Mem<T::Acc>,
    ) -> Result<()> {
        use crate::portable::{attention as fused, host_view, host_view_mut};
        const OP: &str = "attention";
        let plan = AttentionPlan::<T::Acc>::check(
            params,
            q.layout(),
            k.layout(),
            v.layout(),
            masks.key_mask.as_ref().map(View::layout),
            masks.bias.as_ref().map(View::layout),
            o.layout(),
            lse.as_ref().map(ViewMut::layout),
        )?;
        let ops = fused::Operands {
            q: host_view(self, OP, q)?,
            k: host_view(self, OP, k)?,
            v: host_view(self, OP, v)?,
            key_mask: masks.key_mask.map(|m| host_view(self, OP, m)).transpose()?,
            bias: masks.bias.map(|b| host_view(self, OP, b)).transpose()?,
            o: host_view_mut(self, OP, o)?,
            lse: lse.map(|l| host_view_mut(self, OP, l)).transpose()?,
        };
        let ws = Self::host_mut(workspace).ok_or(crate::Error::Unsupported {
            op: OP,
            backend: self.name(),
        })?;
        fused::attention(&plan, ops, ws)
    }

    /// Merges two partial attention results over disjoint key sets (each from
    /// [`Backend::attention`] with its `lse`) into the result over their union: the combine step of
    /// split-KV decoding and ring attention (Milakov & Gimelshein 2018, eq. 4). Exact up to
    /// rounding, associative and commutative; a side with `lse = -inf` contributes nothing.
    ///
    /// `o_a`, `o_b`, `o` of one shape `[.., Dv]`, `lse_a`, `lse_b`, `lse` of that shape without its
    /// last axis. The default body runs [`crate::portable::attention::merge`] on host memory.
    ///
    /// # Errors
    /// [`crate::Error::Shape`]/[`crate::Error::Rank`] naming `o_b`, `lse_a`, `lse_b`, `o` or `lse`.
    #[allow(clippy::too_many_arguments)]
    fn attention_merge<T: Element>(
        &self,
        o_a: View<'_, Self, T>,
        lse_a: View<'_, Self, T::Acc>,
        o_b: View<'_, Self, T>,
        lse_b: View<'_, Self, T::Acc>,
        o: ViewMut<'_, Self, T>,
        lse: Option<ViewMut<'_, Self, T::Acc>>,
    ) -> Result<()> {
        use crate::portable::{attention as fused, host_view, host_view_mut};
        const OP: &str = "attention_merge";
        crate::check::attention_merge(
            o_a.layout(),
            lse_a.layout(),
            o_b.layout(),
            lse_b.layout(),
            o.layout(),
            lse.as_ref().map(ViewMut::layout),
        )?;
        fused::merge(
            (host_view(self, OP, o_a)?, host_view(self, OP, lse_a)?),
            (host_view(self, OP, o_b)?, host_view(self, OP, lse_b)?),
            host_view_mut(self, OP, o)?,
            lse.map(|l| host_view_mut(self, OP, l)).transpose()?,
        )
    }

    /// Rotary position embedding (RoPE; Su et al. 2021, RoFormer eq. (34)) of `x [B, H, L, D]`
    /// into `y` (same shape), or of `y` in place when `x` is `None`: the feature pairs of
    /// `layout` are rotated by `position * inv_freq[i]` and scaled by `attention_factor`
    /// (Hugging Face's `attention_scaling`, 1 for plain RoPE); features from
    /// `2 * inv_freq.len()` (the rotary dimension) on pass through. Angles are formed in f64 from
    /// the integer position, never in f32 or f16 (see [`crate::portable::rope`] for the error).
    /// The frequency table comes from a RoPE configuration (seq-attention's `RopeConfig`
    /// implements Hugging Face's scalings).
    ///
    /// # Errors
    /// [`crate::Error::Rank`] / [`crate::Error::Shape`] naming `y`, `x` or `positions`;
    /// [`crate::Error::Param`] naming `inv_freq` (more than `D/2` entries, or not finite) or
    /// `attention_factor` (not finite); [`crate::Error::Overflow`] naming `positions` when
    /// `start + L` overflows; [`crate::Error::Unsupported`] on a backend whose memory is not on
    /// the host and that does not override this kernel.
    fn rope<T: Element>(
        &self,
        layout: crate::portable::rope::RopeLayout,
        inv_freq: &[f64],
        attention_factor: f64,
        positions: crate::portable::rope::RopePositions<'_, Self>,
        x: Option<View<'_, Self, T>>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        use crate::portable::{host_view, host_view_mut, rope::RopePositions};
        let positions = match positions {
            RopePositions::Offset(start) => RopePositions::Offset(start),
            RopePositions::Ids(p) => RopePositions::Ids(host_view(self, "rope", p)?),
        };
        let x = x.map(|v| host_view(self, "rope", v)).transpose()?;
        let y = host_view_mut(self, "rope", y)?;
        crate::portable::rope::rope(layout, inv_freq, attention_factor, positions, x, y)
    }

    /// Attention with relative-position terms (Shaw et al. 2018 eq. (3)-(5); Music Transformer's
    /// relative logits; T5's bucketed bias), fused with an online softmax:
    /// `e_ij = scale (q_i . (k_j + rel_k[h, r])) + rel_bias[h, r]`,
    /// `o_i = sum_j softmax_j(e_ij) (v_j + rel_v[h, r])`, with `r = params.index.row(j - i)`
    /// and queries aligned to the end of the keys (see [`crate::portable::relative`]).
    ///
    /// `q [B, H, Lq, D]`, `k [B, H, Lk, D]`, `v [B, H, Lk, Dv]`, `rel_k [H, R, D]`,
    /// `rel_v [H, R, Dv]`, `rel_bias [H, R]` (`R = params.index.rows()`; share a table across
    /// heads with a zero stride, [`View::expand`]), `o [B, H, Lq, Dv]`. `workspace` holds at
    /// least [`crate::portable::relative::workspace_len`]`(Dv)` accumulators; the score matrix is
    /// never formed. A query that sees no key gives zeros.
    ///
    /// # Errors
    /// [`crate::Error::Rank`] / [`crate::Error::Shape`] naming the argument at fault;
    /// [`crate::Error::Param`] naming `scale`, `num_buckets` or `max_distance`;
    /// [`crate::Error::Capacity`] naming `workspace`; [`crate::Error::Unsupported`] as for
    /// [`Backend::rope`].
    #[allow(clippy::too_many_arguments)]
    fn relative_attention<T: Element>(
        &self,
        params: &crate::portable::relative::RelativeParams,
        q: View<'_, Self, T>,
        k: View<'_, Self, T>,
        v: View<'_, Self, T>,
        rel_k: Option<View<'_, Self, T>>,
        rel_v: Option<View<'_, Self, T>>,
        rel_bias: Option<View<'_, Self, T>>,
        o: ViewMut<'_, Self, T>,
        workspace: &mut Self::Mem<T::Acc>,
    ) -> Result<()> {
        use crate::portable::{host_view, host_view_mut};
        const OP: &str = "relative_attention";
        let ws = Self::host_mut(workspace).ok_or(crate::Error::Unsupported {
            op: OP,
            backend: self.name(),
        })?;
        crate::portable::relative::relative_attention(
            params,
            host_view(self, OP, q)?,
            host_view(self, OP, k)?,
            host_view(self, OP, v)?,
            rel_k.map(|v| host_view(self, OP, v)).transpose()?,
            rel_v.map(|v| host_view(self, OP, v)).transpose()?,
            rel_bias.map(|v| host_view(self, OP, v)).transpose()?,
            host_view_mut(self, OP, o)?,
            ws,
        )
    }

    // ---- fused kernels: state-space models (seq-ssm) ----

    /// Recurrent mode of a diagonal complex state-space model (S4 eq. 3 with a diagonal state
    /// matrix, as S4D): for each token `t` of `u [L, H]`,
    /// `x[h, n] = abar[h, n] x[h, n] + bbar[h, n] u[t, h]` and
    /// `y[t, h] = 2 Re(sum_n c[h, n] x[h, n]) + d[h] u[t, h]` (N complex modes of a
    /// conjugate-symmetric system). Complex operands are `[H, N, 2]` (`[re, im]`) in the
    /// accumulation type; `state [H, N, 2]` is read and updated in place. Without `y`, only the
    /// state advances. No allocation.
    ///
    /// # Errors
    /// Shape errors naming the operand at fault ([`crate::portable::ssm::scan::check_scan`]);
    /// [`crate::Error::Unsupported`] on a backend without host memory that does not override it.
    #[allow(clippy::too_many_arguments)] // the operands of one fused kernel
    fn ssm_scan<T: Element>(
        &self,
        abar: View<'_, Self, T::Acc>,
        bbar: View<'_, Self, T::Acc>,
        c: View<'_, Self, T::Acc>,
        d: View<'_, Self, T::Acc>,
        u: View<'_, Self, T>,
        state: ViewMut<'_, Self, T::Acc>,
        y: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        use crate::portable::{host_view, host_view_mut};
        let op = "ssm_scan";
        let y = match y {
            Some(y) => Some(host_view_mut(self, op, y)?),
            None => None,
        };
        crate::portable::ssm::scan::scan::<T>(
            host_view(self, op, abar)?,
            host_view(self, op, bbar)?,
            host_view(self, op, c)?,
            host_view(self, op, d)?,
            host_view(self, op, u)?,
            host_view_mut(self, op, state)?,
            y,
        )
    }

    /// Elements of the accumulation type that [`Backend::ssm_conv`] needs as workspace for `h`
    /// channels of `l` tokens (the portable path: `5n`, `n` the FFT length, whatever `h`).
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] naming `l`.
    fn ssm_conv_workspace_len(&self, h: usize, l: usize) -> Result<usize> {
        let _ = h;
        crate::portable::ssm::conv::workspace_len(l)
    }

    /// Convolution mode of a state-space model (S4 eq. 4-5): the causal convolution of each
    /// channel with its kernel plus the skip term,
    /// `y[t, h] = sum_{s <= t} k[h, t - s] u[s, h] + d[h] u[t, h]`, by FFT of a power-of-two
    /// length `>= 2L - 1` (zero-padded, truncated to `L`). `k [H, L]`, `u [L, H]`, `y [L, H]`;
    /// the skip `d [H]` in the accumulation type (as the other SSM parameters); `workspace` is a contiguous rank-1 view of at least
    /// [`Backend::ssm_conv_workspace_len`] elements.
    ///
    /// # Errors
    /// Shape errors naming the operand at fault ([`crate::portable::ssm::conv::check_conv`]),
    /// `workspace` too short or not contiguous; [`crate::Error::Unsupported`] as for the other
    /// fused kernels.
    fn ssm_conv<T: Element>(
        &self,
        k: View<'_, Self, T>,
        u: View<'_, Self, T>,
        d: Option<View<'_, Self, T::Acc>>,
        y: ViewMut<'_, Self, T>,
        workspace: ViewMut<'_, Self, T::Acc>,
    ) -> Result<()> {
        use crate::portable::{host_view, host_view_mut};
        let op = "ssm_conv";
        let d = match d {
            Some(d) => Some(host_view(self, op, d)?),
            None => None,
        };
        crate::portable::ssm::conv::conv_fft::<T>(
            host_view(self, op, k)?,
            host_view(self, op, u)?,
            d,
            host_view_mut(self, op, y)?,
            host_view_mut(self, op, workspace)?,
        )
    }

    /// The S4D convolution kernel as a Vandermonde product (S4D eq. 6):
    /// `k[h, l] = 2 Re(sum_n w[h, n] v[h, n] exp(l log_z[h, n]))` (`v = 1` when absent); for a
    /// discretised diagonal SSM `w = C Bbar` and `exp(log_z) = Abar`, and with `w = C Abar`,
    /// `v = x_0` it is the response of a chunk to its initial state. `log_z, w, v [H, N, 2]` in the
    /// accumulation type, `k [H, L]`.
    ///
    /// # Errors
    /// Shape errors naming the operand at fault
    /// ([`crate::portable::ssm::vandermonde::check_vandermonde`]); [`crate::Error::Unsupported`] as
    /// for the other fused kernels.
    fn ssm_vandermonde<T: Element>(
        &self,
        log_z: View<'_, Self, T::Acc>,
        w: View<'_, Self, T::Acc>,
        v: Option<View<'_, Self, T::Acc>>,
        k: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        use crate::portable::{host_view, host_view_mut};
        let op = "ssm_vandermonde";
        let v = match v {
            Some(v) => Some(host_view(self, op, v)?),
            None => None,
        };
        crate::portable::ssm::vandermonde::vandermonde::<T>(
            host_view(self, op, log_z)?,
            host_view(self, op, w)?,
            v,
            host_view_mut(self, op, k)?,
        )
    }

    // ---- fused kernels: associative memories (seq-memory) ----

    /// Linear associative memory, token by token: for each token and head, the write
    /// `S_t = a_t S_{t-1} + beta_t v_t phi(k_t)^T` ([`crate::portable::linear_memory::MemoryRule::Additive`]: linear attention,
    /// RetNet-style decay) or `S_t = a_t S_{t-1} + beta_t (v_t - a_t S_{t-1} k_t) k_t^T`
    /// ([`crate::portable::linear_memory::MemoryRule::Delta`]: DeltaNet, Gated DeltaNet), then the read `o_t = S_t phi(q_t)`
    /// (see [`crate::portable::linear_memory`] for the papers and equations).
    ///
    /// `state [H, Dv, Dk]` holds `S` in the accumulation type: it is read as the initial state and
    /// left as the final one, so a stream is continued by calling again (one token at a time, or
    /// any number). `o [L, H, Dv]` may be `None` to advance the state alone. Nothing allocates.
    ///
    /// # Errors
    /// Shape errors naming the argument ([`crate::portable::linear_memory::check_dims`]);
    /// [`crate::Error::Unsupported`] where the backend has no host memory and no override.
    fn linear_memory_recurrent<T: Element>(
        &self,
        spec: LinearMemorySpec,
        inputs: MemoryInputs<'_, Self, T>,
        state: ViewMut<'_, Self, T::Acc>,
        o: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        crate::portable::linear_memory::recurrent(self, spec, inputs, state, o)
    }

    /// Accumulation-type workspace elements that [`Backend::linear_memory_chunkwise`] needs for
    /// chunks of `chunk` tokens, `dk` key and `dv` value features per head.
    ///
    /// # Errors
    /// [`crate::Error::Param`] naming `chunk` when it is 0; [`crate::Error::Overflow`].
    fn linear_memory_chunkwise_workspace_len(
        &self,
        chunk: usize,
        dk: usize,
        dv: usize,
    ) -> Result<usize> {
        crate::portable::linear_memory::chunkwise_workspace_len(chunk, dk, dv)
    }

    /// The chunkwise-parallel form of [`Backend::linear_memory_recurrent`], with the same inputs,
    /// state and outputs (equal up to rounding): per chunk of `chunk` tokens, the writes solve a
    /// unit lower-triangular system (DeltaNet's WY form; the identity for the additive rule), the
    /// outputs are an intra-chunk causal product plus the read of the chunk-start state, and the
    /// state is carried to the next chunk. `workspace` is contiguous, rank 1, of at least
    /// [`Backend::linear_memory_chunkwise_workspace_len`] elements.
    ///
    /// # Errors
    /// As [`Backend::linear_memory_recurrent`]; [`crate::Error::Param`] naming `chunk` when it is
    /// 0; [`crate::Error::Capacity`] naming `workspace` when it is too small.
    fn linear_memory_chunkwise<T: Element>(
        &self,
        spec: LinearMemorySpec,
        chunk: usize,
        inputs: MemoryInputs<'_, Self, T>,
        state: ViewMut<'_, Self, T::Acc>,
        o: Option<ViewMut<'_, Self, T>>,
        workspace: ViewMut<'_, Self, T::Acc>,
    ) -> Result<()> {
        crate::portable::linear_memory::chunkwise(self, spec, chunk, inputs, state, o, workspace)
    }

    // ---- fused kernels: distillation (seq-distill) ----

    /// Token-level distillation loss of `student` logits against `teacher` logits `[.., V]` and
    /// its gradient with respect to the student logits, fused (Hinton et al. 2015; GKD, Agarwal et
    /// al. 2024, eq. 4; DistiLLM, Ko et al. 2024): see [`crate::portable::kd_loss::kd_loss`] for the
    /// formulas, masks and reductions. No workspace.
    ///
    /// # Errors
    /// As [`crate::portable::kd_loss::kd_loss`]; [`crate::Error::Unsupported`] when this
    /// backend's memory is not on the host and it does not override the kernel.
    fn kd_loss<T: Element>(
        &self,
        cfg: &crate::portable::kd_loss::KdConfig,
        teacher: View<'_, Self, T>,
        student: View<'_, Self, T>,
        mask: Option<View<'_, Self, u8>>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        use crate::portable::{host_view, host_view_mut};
        const OP: &str = "kd_loss";
        let mask = mask.map(|m| host_view(self, OP, m)).transpose()?;
        let grad = grad.map(|g| host_view_mut(self, OP, g)).transpose()?;
        crate::portable::kd_loss::kd_loss(
            cfg,
            host_view(self, OP, teacher)?,
            host_view(self, OP, student)?,
            mask,
            host_view_mut(self, OP, loss)?,
            grad,
        )
    }

    /// Distillation from a sparse (top-k) teacher, fused: see
    /// [`crate::portable::kd_loss::kd_loss_sparse`]. No workspace.
    ///
    /// # Errors
    /// As [`crate::portable::kd_loss::kd_loss_sparse`]; [`crate::Error::Unsupported`] when this
    /// backend's memory is not on the host and it does not override the kernel.
    #[allow(clippy::too_many_arguments)] // the kernel's operands
    fn kd_loss_sparse<T: Element>(
        &self,
        cfg: &crate::portable::kd_loss::KdConfig,
        values: View<'_, Self, T>,
        indices: View<'_, Self, u32>,
        tail: Option<View<'_, Self, T>>,
        student: View<'_, Self, T>,
        mask: Option<View<'_, Self, u8>>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        use crate::portable::{host_view, host_view_mut};
        const OP: &str = "kd_loss_sparse";
        let tail = tail.map(|t| host_view(self, OP, t)).transpose()?;
        let mask = mask.map(|m| host_view(self, OP, m)).transpose()?;
        let grad = grad.map(|g| host_view_mut(self, OP, g)).transpose()?;
        crate::portable::kd_loss::kd_loss_sparse(
            cfg,
            host_view(self, OP, values)?,
            host_view(self, OP, indices)?,
            tail,
            host_view(self, OP, student)?,
            mask,
            host_view_mut(self, OP, loss)?,
            grad,
        )
    }

    /// Cross-entropy with label smoothing and its gradient, fused: see
    /// [`crate::portable::kd_loss::cross_entropy`]. No workspace.
    ///
    /// # Errors
    /// As [`crate::portable::kd_loss::cross_entropy`]; [`crate::Error::Unsupported`] when this
    /// backend's memory is not on the host and it does not override the kernel.
    fn cross_entropy<T: Element>(
        &self,
        cfg: &crate::portable::kd_loss::CeConfig,
        logits: View<'_, Self, T>,
        targets: View<'_, Self, i32>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        use crate::portable::{host_view, host_view_mut};
        const OP: &str = "cross_entropy";
        let grad = grad.map(|g| host_view_mut(self, OP, g)).transpose()?;
        crate::portable::kd_loss::cross_entropy(
            cfg,
            host_view(self, OP, logits)?,
            host_view(self, OP, targets)?,
            host_view_mut(self, OP, loss)?,
            grad,
        )
    }

    /// A row-major view of `shape` over `mem` (convenience for [`View::contiguous`]).
    ///
    /// # Errors
    /// As [`View::contiguous`].
    fn view<'a, T: Scalar>(
        &self,
        mem: &'a Self::Mem<T>,
        shape: &[usize],
    ) -> Result<View<'a, Self, T>> {
        View::new(mem, Layout::contiguous(shape)?)
    }

    /// A row-major writable view of `shape` over `mem` (convenience for [`ViewMut::contiguous`]).
    ///
    /// # Errors
    /// As [`ViewMut::contiguous`].
    fn view_mut<'a, T: Scalar>(
        &self,
        mem: &'a mut Self::Mem<T>,
        shape: &[usize],
    ) -> Result<ViewMut<'a, Self, T>> {
        ViewMut::new(mem, Layout::contiguous(shape)?)
    }
}

/// Backends that can own memory (with the `alloc` feature): what test harnesses and convenience
/// wrappers use. Kernels never need it.
#[cfg(feature = "alloc")]
pub trait Allocate: Backend {
    /// Owned memory: `Vec<T>` on host backends.
    type Buffer<T: Scalar>: core::borrow::BorrowMut<Self::Mem<T>>;

    /// `len` elements, each `T::default()` (zero).
    ///
    /// # Errors
    /// [`crate::Error::OutOfMemory`] when the memory cannot be had.
    fn alloc<T: Scalar>(&self, len: usize) -> Result<Self::Buffer<T>>;
}
