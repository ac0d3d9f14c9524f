//! The [`Backend`] trait: memory that a backend owns, and the kernels that run on it.

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
