//! The [`Backend`] trait: memory that a backend owns, and the kernels that run on it.

use crate::attention::{AttentionDims, AttentionMasks, AttentionParams, AttentionPlan};
use crate::element::{Element, Scalar};
use crate::error::Result;
use crate::layout::Layout;
use crate::op::{Binary, Reduce, SoftmaxKind, Unary};
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
        crate::check::shape("o_b", o_b.layout(), o_a.shape())?;
        crate::check::shape("o", o.layout(), o_a.shape())?;
        crate::check::rows(o_a.layout(), "lse_a", lse_a.layout(), None)?;
        crate::check::rows(o_a.layout(), "lse_b", lse_b.layout(), None)?;
        if let Some(l) = &lse {
            crate::check::rows(o_a.layout(), "lse", l.layout(), None)?;
        }
        fused::merge(
            (host_view(self, OP, o_a)?, host_view(self, OP, lse_a)?),
            (host_view(self, OP, o_b)?, host_view(self, OP, lse_b)?),
            host_view_mut(self, OP, o)?,
            lse.map(|l| host_view_mut(self, OP, l)).transpose()?,
        )
    }

    // ---- fused kernels: state-space models (seq-ssm) ----

    // ---- fused kernels: associative memories (seq-memory) ----

    // ---- fused kernels: distillation (seq-distill) ----

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
