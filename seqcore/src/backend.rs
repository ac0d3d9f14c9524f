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
