//! The [`Backend`] trait: memory that a backend owns, and the kernels that run on it.

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

    // ---- fused kernels: state-space models (seq-ssm) ----

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
