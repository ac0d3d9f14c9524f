#![doc = include_str!("../README.md")]
// The CUDA driver is a C API: `unsafe` is allowed in this crate only, each block with its
// `// SAFETY:` reasoning.
#![deny(clippy::undocumented_unsafe_blocks)]
// A host-side driver of a GPU: it needs `std` (threads, dlopen, the driver's own allocations).
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod blas;
mod distill;
mod error;
mod launch;
mod memory;
pub mod module;
mod relative;
mod rope;
mod ssm;

use core::marker::PhantomData;
use std::string::{String, ToString};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DriverError};
use seqcore::{
    Allocate, AttentionDims, AttentionMasks, AttentionParams, AttentionPlan, Backend, Binary,
    Element, Error, Real, Reduce, Result, Scalar, SoftmaxKind, Unary, View, ViewMut, check,
};

use crate::error::{BACKEND, driver, unavailable};
use crate::launch::{GemmP, i, lay};
use crate::module::Kernels;

/// Device memory holding `len` elements of `T`, owned; released (stream-ordered) on drop.
///
/// The memory type of [`CudaBackend`]: data stays on the device across kernels, and
/// [`Backend::write`] / [`Backend::read`] are the only transfers.
pub struct CudaMem<T> {
    buf: CudaSlice<u8>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> CudaMem<T> {
    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address of element 0.
    fn ptr(&self, stream: &CudaStream) -> u64 {
        // Event tracking is off (one stream per backend), so the guard records nothing.
        let (p, _guard) = self.buf.device_ptr(stream);
        p
    }
}

impl<T: Scalar> core::fmt::Debug for CudaMem<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CudaMem")
            .field("dtype", &T::NAME)
            .field("len", &self.len)
            .finish()
    }
}

/// A [`Backend`] on one NVIDIA GPU: device memory, one stream, and kernels compiled from CUDA C
/// by NVRTC at run time (once per process).
///
/// Every kernel validates its arguments with [`seqcore::check`] (the reference's errors for the
/// same bad input), then enqueues on the backend's stream and returns without waiting;
/// [`Backend::read`] and [`CudaBackend::synchronize`] wait. A kernel that faults on the device
/// reports its error at the next wait.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    device: String,
    arch: String,
    flash: AtomicBool,
    rounded_weights: AtomicBool,
    blas: Option<blas::Blas>,
    use_blas: AtomicBool,
}

impl core::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ctx.ordinal())
            .field("device", &self.device)
            .field("arch", &self.arch)
            .finish()
    }
}

/// Runs `f`, turning a panic of cudarc's library loader (it panics when a library it needs
/// cannot be opened) into `Unavailable`.
fn guarded<R>(what: &'static str, f: impl FnOnce() -> Result<R>) -> Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(unavailable(what)))
}

impl CudaBackend {
    /// The backend on GPU `ordinal`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] (backend `cuda`) with the reason when the driver library
    /// (`libcuda.so`) or NVRTC (`libnvrtc.so`) cannot be loaded, when there is no device
    /// `ordinal`, when its compute capability is below 7.5, or when the kernels fail to compile
    /// or load (with NVRTC's or the driver's text). Never panics.
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: only tries to dlopen the driver library under its usual names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable(
                "no CUDA driver: libcuda.so could not be loaded (no NVIDIA driver on this machine)",
            ));
        }
        // SAFETY: as above, for NVRTC.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(unavailable(
                "NVRTC not found: put the directory of libnvrtc.so (or a libnvrtc.so link to libnvrtc.so.13) on LD_LIBRARY_PATH",
            ));
        }
        guarded("the CUDA driver could not be initialised", || {
            let count = CudaContext::device_count().map_err(no_device)?;
            if usize::try_from(count).map_or(true, |c| ordinal >= c) {
                return Err(unavailable("no CUDA device with this ordinal"));
            }
            let ctx = CudaContext::new(ordinal).map_err(no_device)?;
            // SAFETY: every kernel, copy and free of this backend goes to its one stream, in
            // order, and host reads synchronise that stream, so cudarc's cross-stream events are
            // not needed.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream().map_err(driver)?;
            let (major, minor) = ctx.compute_capability().map_err(driver)?;
            let arch = module::arch_for(major, minor)
                .ok_or(unavailable("the GPU's compute capability is below 7.5"))?;
            let kernels = Kernels::load(&ctx, &arch)?;
            let device = ctx.name().unwrap_or_else(|_| "unknown".to_string());
            // `SEQ_CUDA_ATTENTION=generic` turns the tensor-core attention path off.
            let attention = std::env::var("SEQ_CUDA_ATTENTION").unwrap_or_default();
            let flash = attention != "generic";
            let rounded_weights = attention == "rounded";
            // `SEQ_CUDA_GEMM=kernel` keeps `gemm` on the crate's own kernel.
            let use_blas = std::env::var("SEQ_CUDA_GEMM").map_or(true, |v| v != "kernel");
            let blas = blas::Blas::new(&stream);
            Ok(CudaBackend {
                ctx,
                stream,
                kernels,
                device,
                arch,
                flash: AtomicBool::new(flash),
                rounded_weights: AtomicBool::new(rounded_weights),
                blas,
                use_blas: AtomicBool::new(use_blas),
            })
        })
    }

    /// The device's name, as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// The architecture the kernels were compiled for (`sm_90`, ...).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Whether [`Backend::attention`] may take the tensor-core path (f16/bf16, head dimension 64
    /// or 128, no key mask, bias or soft cap, unit feature stride): on by default, off with the
    /// environment variable `SEQ_CUDA_ATTENTION=generic` or this call. Both paths compute the
    /// same function (see `kernels/flash.cu` for the one difference on non-finite hidden values).
    pub fn use_tensor_core_attention(&self, on: bool) {
        self.flash.store(on, Ordering::Relaxed);
    }

    /// Whether cuBLAS was loaded (`libcublas.so` on the library path): [`Backend::gemm`] runs
    /// there when it is and the views suit it (see [`CudaBackend::use_cublas`]).
    pub fn has_cublas(&self) -> bool {
        self.blas.is_some()
    }

    /// Whether [`Backend::gemm`] may run on cuBLAS (when it was loaded): on by default, off with
    /// the environment variable `SEQ_CUDA_GEMM=kernel` or this call, which keep every `gemm` on
    /// the crate's own kernel. cuBLAS takes the calls whose matrices each have a unit stride on
    /// one axis with non-overlapping rows or columns (any batch stride), `alpha != 0` and
    /// `k > 0`; the others run on the crate's kernel either way.
    pub fn use_cublas(&self, on: bool) {
        self.use_blas.store(on, Ordering::Relaxed);
    }

    /// Whether the tensor-core attention path rounds the softmax weights to the element type
    /// before `P V`, as FlashAttention (and PyTorch's fused SDPA kernels) do: one `P V` product
    /// instead of two (f16) or three (bf16), at FlashAttention's precision, whose output error
    /// has an extra term of up to `u sum_j p_j |v_j|` (`u` the element type's unit round-off)
    /// beyond the conformance suite's bound. Off by default (the weights then keep about f32's
    /// precision); on with `SEQ_CUDA_ATTENTION=rounded` or this call.
    pub fn round_attention_weights(&self, on: bool) {
        self.rounded_weights.store(on, Ordering::Relaxed);
    }

    /// The tensor-core attention kernel for this call, if it takes one.
    #[allow(clippy::too_many_arguments)]
    fn flash_kernel<T: Element>(
        &self,
        d: &AttentionDims,
        plan: &AttentionPlan<T::Acc>,
        mask_or_bias: bool,
        views: [&seqcore::Layout; 4],
    ) -> Option<&'static str> {
        if !self.flash.load(Ordering::Relaxed)
            || self.arch == "sm_75"
            || mask_or_bias
            || plan.softcap.is_some()
            || d.head_dim != d.value_dim
        {
            return None;
        }
        let aligned = views.iter().all(|l| {
            let s = l.strides();
            s.get(3) == Some(&1) && l.offset() % 8 == 0 && s.iter().take(3).all(|&x| x % 8 == 0)
        });
        if !aligned {
            return None;
        }
        let rounded = self.rounded_weights.load(Ordering::Relaxed);
        match (T::DTYPE, d.head_dim, rounded) {
            (seqcore::DType::F16, 64, false) => Some("flash_f16_d64"),
            (seqcore::DType::F16, 128, false) => Some("flash_f16_d128"),
            (seqcore::DType::BF16, 64, false) => Some("flash_bf16_d64"),
            (seqcore::DType::BF16, 128, false) => Some("flash_bf16_d128"),
            (seqcore::DType::F16, 64, true) => Some("flash_f16_rounded_d64"),
            (seqcore::DType::F16, 128, true) => Some("flash_f16_rounded_d128"),
            (seqcore::DType::BF16, 64, true) => Some("flash_bf16_rounded_d64"),
            (seqcore::DType::BF16, 128, true) => Some("flash_bf16_rounded_d128"),
            _ => None,
        }
    }

    /// The stream every call of this backend enqueues on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// An optional input operand as the kernels take it: its device address, its layout and a
    /// presence flag (zeros when absent).
    fn optional<T: Scalar>(
        &self,
        v: Option<&View<'_, Self, T>>,
    ) -> Result<(u64, launch::Lay, i32)> {
        match v {
            Some(v) => Ok((v.mem().ptr(&self.stream), lay(v.layout())?, 1)),
            None => Ok((0, launch::Lay::default(), 0)),
        }
    }

    /// Waits until everything enqueued so far has run.
    ///
    /// # Errors
    /// The first device error of the enqueued work, with its CUDA text.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver)
    }

    fn launch<const N: usize>(
        &self,
        name: &str,
        cfg: cudarc::driver::LaunchConfig,
        args: [&dyn Arg; N],
    ) -> Result<()> {
        let f = self.kernels.get(name)?;
        let mut b = self.stream.launch_builder(&f);
        for a in args {
            a.push(&mut b);
        }
        // SAFETY: `name` is one of our kernels and `args` match its C signature (the launch
        // sites mirror the `extern "C"` declarations); the addresses are of live `CudaMem`s
        // borrowed for this call, through layouts checked against their lengths by `View`
        // construction, so every access stays inside its allocation; outputs are exclusively
        // borrowed (`ViewMut`), and their layouts never address an element twice.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver)
    }
}

/// A kernel argument (a value the driver copies).
trait Arg {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>);
}

impl<T: cudarc::driver::DeviceRepr> Arg for T {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>) {
        use cudarc::driver::PushKernelArg;
        b.arg(self);
    }
}

fn no_device(e: DriverError) -> Error {
    driver(e)
}

/// The op code of `kernels/elementwise.cu`'s `unary_apply`, and its constant.
fn unary_code(op: Unary) -> Result<(i32, f64)> {
    Ok(match op {
        Unary::Exp => (0, 0.0),
        Unary::Log => (1, 0.0),
        Unary::Sigmoid => (2, 0.0),
        Unary::Silu => (3, 0.0),
        Unary::Gelu => (4, 0.0),
        Unary::GeluTanh => (5, 0.0),
        Unary::Softplus => (6, 0.0),
        Unary::Elu1 => (7, 0.0),
        Unary::Tanh => (8, 0.0),
        Unary::Relu => (9, 0.0),
        Unary::Sqrt => (10, 0.0),
        Unary::Recip => (11, 0.0),
        Unary::Square => (12, 0.0),
        Unary::Abs => (13, 0.0),
        Unary::Neg => (14, 0.0),
        Unary::Scale(c) => (15, c),
        Unary::AddScalar(c) => (16, c),
        _ => {
            return Err(Error::Unsupported {
                op: "unary",
                backend: BACKEND,
            });
        }
    })
}

/// The op code of `binary_apply`.
fn binary_code(op: Binary) -> Result<i32> {
    Ok(match op {
        Binary::Add => 0,
        Binary::Sub => 1,
        Binary::Mul => 2,
        Binary::Div => 3,
        Binary::Max => 4,
        Binary::Min => 5,
        _ => {
            return Err(Error::Unsupported {
                op: "binary",
                backend: BACKEND,
            });
        }
    })
}

/// The op code of `reduce_k`.
fn reduce_code(op: Reduce) -> Result<i32> {
    Ok(match op {
        Reduce::Sum => 0,
        Reduce::Mean => 1,
        Reduce::Max => 2,
        Reduce::Min => 3,
        Reduce::LogSumExp => 4,
        Reduce::L2Norm => 5,
        _ => {
            return Err(Error::Unsupported {
                op: "reduce",
                backend: BACKEND,
            });
        }
    })
}

fn kname(kernel: &str, t: &str) -> String {
    std::format!("{kernel}_{t}")
}

impl Backend for CudaBackend {
    type Mem<T: Scalar> = CudaMem<T>;

    fn name(&self) -> &'static str {
        BACKEND
    }

    fn mem_len<T: Scalar>(mem: &CudaMem<T>) -> usize {
        mem.len
    }

    fn write<T: Scalar>(&self, src: &[T], dst: &mut CudaMem<T>) -> Result<()> {
        same_len(src.len(), dst.len)?;
        if src.is_empty() {
            return Ok(());
        }
        self.stream
            .memcpy_htod(bytemuck::cast_slice::<T, u8>(src), &mut dst.buf)
            .map_err(driver)
    }

    fn read<T: Scalar>(&self, src: &CudaMem<T>, dst: &mut [T]) -> Result<()> {
        same_len(src.len, dst.len())?;
        if dst.is_empty() {
            return self.synchronize();
        }
        self.stream
            .memcpy_dtoh(&src.buf, bytemuck::cast_slice_mut::<T, u8>(dst))
            .map_err(driver)?;
        self.synchronize()
    }

    fn gemm<T: Element>(
        &self,
        alpha: f64,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        beta: f64,
        mut c: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        check::finite_in::<T::Acc>("alpha", alpha)?;
        let beta_f = check::finite("beta", beta)?;
        check::finite_in::<T::Acc>("beta", beta_f)?;
        let d = check::gemm(a.layout(), b.layout(), c.layout())?;
        if c.layout().numel() == 0 {
            return Ok(());
        }
        // cuBLAS skips `A B` when `alpha = 0` (BLAS), where the reference propagates a NaN of `A`.
        if let (Some(blas), true, true) = (
            &self.blas,
            self.use_blas.load(Ordering::Relaxed),
            alpha != 0.0,
        ) {
            if let Some(plan) = blas::plan::<T>(&d, a.layout(), b.layout(), c.layout()) {
                let (ap, bp) = (a.mem().ptr(&self.stream), b.mem().ptr(&self.stream));
                let cp = c.parts().0.ptr(&self.stream);
                return blas
                    .gemm::<T>(&plan, alpha, beta_f, ap, bp, cp)
                    .map_err(|reason| Error::Unavailable {
                        backend: BACKEND,
                        reason,
                    });
            }
        }
        let quad = |l: &seqcore::Layout| -> Result<[i64; 4]> {
            let s = l.strides();
            let (bs, rs, cs) = match *s {
                [r, c] => (0, r, c),
                [b, r, c] => (b, r, c),
                _ => return Err(Error::Overflow { arg: "layout" }),
            };
            Ok([i(l.offset())?, i(bs)?, i(rs)?, i(cs)?])
        };
        let p = GemmP {
            a: quad(a.layout())?,
            b: quad(b.layout())?,
            c: quad(c.layout())?,
            batch: i(d.batch)?,
            m: i(d.m)?,
            n: i(d.n)?,
            k: i(d.k)?,
            alpha,
            beta: beta_f,
        };
        let (ap, bp) = (a.mem().ptr(&self.stream), b.mem().ptr(&self.stream));
        let (cm, _) = c.parts();
        let cp = cm.ptr(&self.stream);
        self.launch(
            &kname("gemm", T::NAME),
            launch::gemm(d.batch, d.m, d.n),
            [&ap, &bp, &cp, &p],
        )
    }

    fn softmax<T: Element>(
        &self,
        kind: SoftmaxKind,
        x: View<'_, Self, T>,
        mask: Option<View<'_, Self, T>>,
        mut y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        check::shape("y", y.layout(), x.shape())?;
        if let Some(m) = &mask {
            check::shape("mask", m.layout(), x.shape())?;
        }
        if y.layout().numel() == 0 {
            return Ok(());
        }
        let (xr, n, xs) = x.layout().split_last();
        let (yr, _, ys) = y.layout().split_last();
        let rows = xr.numel();
        let (mp, mr, ms, has) = match &mask {
            Some(m) => {
                let (mr, _, ms) = m.layout().split_last();
                (m.mem().ptr(&self.stream), lay(&mr)?, i(ms)?, 1i32)
            }
            None => (x.mem().ptr(&self.stream), lay(&xr)?, 0, 0),
        };
        let xp = x.mem().ptr(&self.stream);
        let (xr, xs, yr, ys, n, nrows) = (lay(&xr)?, i(xs)?, lay(&yr)?, i(ys)?, i(n)?, i(rows)?);
        let log = i32::from(kind == SoftmaxKind::LogSoftmax);
        let (ym, _) = y.parts();
        let yp = ym.ptr(&self.stream);
        // Rows whose `x + mask` fits the default dynamic shared memory are read once.
        let cache = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(size_of::<T::Acc>()))
            .filter(|&b| b <= launch::SHARED_DEFAULT);
        let mut cfg = launch::rows(rows);
        cfg.shared_mem_bytes = cache.and_then(|b| u32::try_from(b).ok()).unwrap_or(0);
        let cached = i32::from(cfg.shared_mem_bytes > 0);
        self.launch(
            &kname("softmax", T::NAME),
            cfg,
            [
                &xp, &xr, &xs, &mp, &mr, &ms, &has, &yp, &yr, &ys, &n, &nrows, &log, &cached,
            ],
        )
    }

    fn unary<T: Element>(
        &self,
        op: Unary,
        x: View<'_, Self, T>,
        mut y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        let op = op.validate::<T::Acc>()?;
        check::shape("y", y.layout(), x.shape())?;
        let (code, c) = unary_code(op)?;
        let n = x.layout().numel();
        if n == 0 {
            return Ok(());
        }
        // The constant as the accumulation type holds it (as the reference's `R::lit(c)`).
        let c = T::Acc::lit(c).to_f64();
        let (xp, lx) = (x.mem().ptr(&self.stream), launch::flat(x.layout())?);
        let ly = launch::flat(y.layout())?;
        let (ym, _) = y.parts();
        let yp = ym.ptr(&self.stream);
        let ni = i(n)?;
        self.launch(
            &kname("unary", T::NAME),
            launch::elementwise(n),
            [&xp, &lx, &yp, &ly, &ni, &code, &c],
        )
    }

    fn binary<T: Element>(
        &self,
        op: Binary,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        mut y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        check::shape("b", b.layout(), a.shape())?;
        check::shape("y", y.layout(), a.shape())?;
        let code = binary_code(op)?;
        let n = a.layout().numel();
        if n == 0 {
            return Ok(());
        }
        let (ap, la) = (a.mem().ptr(&self.stream), launch::flat(a.layout())?);
        let (bp, lb) = (b.mem().ptr(&self.stream), launch::flat(b.layout())?);
        let ly = launch::flat(y.layout())?;
        let (ym, _) = y.parts();
        let yp = ym.ptr(&self.stream);
        let ni = i(n)?;
        self.launch(
            &kname("binary", T::NAME),
            launch::elementwise(n),
            [&ap, &la, &bp, &lb, &yp, &ly, &ni, &code],
        )
    }

    fn reduce<T: Element>(
        &self,
        op: Reduce,
        x: View<'_, Self, T>,
        mut y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        let n = check::rows(x.layout(), "y", y.layout(), None)?;
        let code = reduce_code(op)?;
        let (xr, _, xs) = x.layout().split_last();
        let rows = xr.numel();
        if rows == 0 {
            return Ok(());
        }
        let xp = x.mem().ptr(&self.stream);
        let (xr, xs, ni, nrows) = (lay(&xr)?, i(xs)?, i(n)?, i(rows)?);
        let yr = lay(y.layout())?;
        let (ym, _) = y.parts();
        let yp = ym.ptr(&self.stream);
        self.launch(
            &kname("reduce", T::NAME),
            launch::rows(rows),
            [&xp, &xr, &xs, &ni, &yp, &yr, &nrows, &code],
        )
    }

    fn cast<S: Element, D: Element>(
        &self,
        x: View<'_, Self, S>,
        mut y: ViewMut<'_, Self, D>,
    ) -> Result<()> {
        check::shape("y", y.layout(), x.shape())?;
        let n = x.layout().numel();
        if n == 0 {
            return Ok(());
        }
        let (xp, lx) = (x.mem().ptr(&self.stream), launch::flat(x.layout())?);
        let ly = launch::flat(y.layout())?;
        let (ym, _) = y.parts();
        let yp = ym.ptr(&self.stream);
        let ni = i(n)?;
        self.launch(
            &std::format!("cast_{}_{}", S::NAME, D::NAME),
            launch::elementwise(n),
            [&xp, &lx, &yp, &ly, &ni],
        )
    }

    /// The fused kernel needs no scratch memory on the GPU.
    fn attention_workspace_len<T: Element>(&self, dims: &AttentionDims) -> Result<usize> {
        let _ = dims;
        Ok(0)
    }

    /// Fused attention on the GPU (`kernels/attention.cu`): the semantics of seqcore's portable
    /// kernel, one warp per query row, online softmax over tiles of 32 keys. `workspace` is not
    /// used (any length, 0 included).
    #[allow(clippy::too_many_arguments)]
    fn attention<T: Element>(
        &self,
        params: &AttentionParams,
        q: View<'_, Self, T>,
        k: View<'_, Self, T>,
        v: View<'_, Self, T>,
        masks: AttentionMasks<'_, Self, T>,
        mut o: ViewMut<'_, Self, T>,
        mut lse: Option<ViewMut<'_, Self, T::Acc>>,
        workspace: &mut CudaMem<T::Acc>,
    ) -> Result<()> {
        let _ = workspace;
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
        let d = plan.dims;
        let rows = d
            .batch
            .checked_mul(d.heads_q)
            .and_then(|x| x.checked_mul(d.len_q))
            .ok_or(Error::Overflow { arg: "q" })?;
        if rows == 0 {
            return Ok(());
        }
        let per_warp = d
            .head_dim
            .checked_add(d.value_dim)
            .and_then(|x| x.checked_mul(size_of::<T::Acc>()))
            .ok_or(Error::Overflow { arg: "q" })?;
        let cfg = launch::attention(rows, per_warp).ok_or(Error::Unsupported {
            op: "attention with head_dim + value_dim beyond the GPU's shared memory",
            backend: BACKEND,
        })?;
        let flag = |b: bool| i64::from(b);
        let mut p = launch::AttnP {
            q: lay(q.layout())?,
            k: lay(k.layout())?,
            v: lay(v.layout())?,
            o: lay(o.layout())?,
            ints: [
                i(d.batch)?,
                i(d.heads_q)?,
                i(d.heads_kv)?,
                i(d.len_q)?,
                i(d.len_k)?,
                i(d.head_dim)?,
                i(d.value_dim)?,
                plan.query_offset,
                i(plan.window.unwrap_or(0))?,
                flag(plan.causal),
                flag(masks.key_mask.is_some()),
                flag(masks.bias.is_some()),
                flag(lse.is_some()),
                flag(plan.softcap.is_some()),
            ],
            scale: plan.scale.to_f64(),
            cap: plan.softcap.map_or(1.0, Element::to_f64),
            ..launch::AttnP::default()
        };
        let s = &self.stream;
        let (qp, kp, vp) = (q.mem().ptr(s), k.mem().ptr(s), v.mem().ptr(s));
        let mp = match &masks.key_mask {
            Some(m) => {
                p.mask = lay(m.layout())?;
                m.mem().ptr(s)
            }
            None => 0u64,
        };
        let bp = match &masks.bias {
            Some(b) => {
                p.bias = lay(b.layout())?;
                b.mem().ptr(s)
            }
            None => 0u64,
        };
        let lp = match &mut lse {
            Some(l) => {
                p.lse = lay(l.layout())?;
                l.parts().0.ptr(s)
            }
            None => 0u64,
        };
        let op = o.parts().0.ptr(s);
        let flash = self.flash_kernel::<T>(
            &d,
            &plan,
            masks.key_mask.is_some() || masks.bias.is_some(),
            [q.layout(), k.layout(), v.layout(), o.parts().1],
        );
        if let Some(name) = flash {
            let bh = d.batch.saturating_mul(d.heads_q);
            return self.launch(
                name,
                launch::flash(bh, d.len_q),
                [&qp, &kp, &vp, &op, &lp, &p],
            );
        }
        self.launch(
            &kname("attention", T::NAME),
            cfg,
            [&qp, &kp, &vp, &mp, &bp, &op, &lp, &p],
        )
    }

    /// The merge of two partial attention results on the GPU (`attention_merge` of
    /// `kernels/attention.cu`), as seqcore's portable merge.
    fn attention_merge<T: Element>(
        &self,
        o_a: View<'_, Self, T>,
        lse_a: View<'_, Self, T::Acc>,
        o_b: View<'_, Self, T>,
        lse_b: View<'_, Self, T::Acc>,
        mut o: ViewMut<'_, Self, T>,
        mut lse: Option<ViewMut<'_, Self, T::Acc>>,
    ) -> Result<()> {
        check::attention_merge(
            o_a.layout(),
            lse_a.layout(),
            o_b.layout(),
            lse_b.layout(),
            o.layout(),
            lse.as_ref().map(ViewMut::layout),
        )?;
        let (ra, dv, sa) = o_a.layout().split_last();
        let (rb, _, sb) = o_b.layout().split_last();
        let (ro, _, so) = o.layout().split_last();
        let rows = ra.numel();
        let work = rows.saturating_mul(dv.max(1));
        if rows == 0 {
            return Ok(());
        }
        let s = &self.stream;
        let (pa, la, psa, lsa) = (
            o_a.mem().ptr(s),
            lay(&ra)?,
            lse_a.mem().ptr(s),
            lay(lse_a.layout())?,
        );
        let (pb, lb, psb, lsb) = (
            o_b.mem().ptr(s),
            lay(&rb)?,
            lse_b.mem().ptr(s),
            lay(lse_b.layout())?,
        );
        let lo = lay(&ro)?;
        let (pl, ll, has) = match &mut lse {
            Some(l) => {
                let ll = lay(l.layout())?;
                (l.parts().0.ptr(s), ll, 1i32)
            }
            None => (0u64, launch::Lay::default(), 0i32),
        };
        let po = o.parts().0.ptr(s);
        let (nrows, ndv, sta, stb, sto) = (i(rows)?, i(dv)?, i(sa)?, i(sb)?, i(so)?);
        self.launch(
            &kname("attention_merge", T::NAME),
            launch::elementwise(work),
            [
                &pa, &la, &psa, &lsa, &pb, &lb, &psb, &lsb, &po, &lo, &pl, &ll, &has, &nrows, &ndv,
                &sta, &stb, &sto,
            ],
        )
    }

    fn top_k<T: Element>(
        &self,
        k: usize,
        x: View<'_, Self, T>,
        mut values: ViewMut<'_, Self, T>,
        mut indices: ViewMut<'_, Self, u32>,
    ) -> Result<()> {
        let n = check::top_k(x.layout(), values.layout(), indices.layout(), k)?;
        if values.layout().numel() == 0 {
            return Ok(());
        }
        let (xr, _, xs) = x.layout().split_last();
        let (vr, _, vs) = values.layout().split_last();
        let (ir, _, is) = indices.layout().split_last();
        let rows = xr.numel();
        let xp = x.mem().ptr(&self.stream);
        let (xr, xs, vr, vs, ir, is) = (lay(&xr)?, i(xs)?, lay(&vr)?, i(vs)?, lay(&ir)?, i(is)?);
        let (ni, ki, nrows) = (i(n)?, i(k)?, i(rows)?);
        let (vm, _) = values.parts();
        let vp = vm.ptr(&self.stream);
        let (im, _) = indices.parts();
        let ip = im.ptr(&self.stream);
        self.launch(
            &kname("top_k", T::NAME),
            launch::rows(rows),
            [
                &xp, &xr, &xs, &vp, &vr, &vs, &ip, &ir, &is, &ni, &ki, &nrows,
            ],
        )
    }

    // ---- RoPE (rope.rs) ----

    /// RoPE on the GPU (`kernels/rope.cu`, see [`CudaBackend`]'s `rope_impl`): the semantics of
    /// [`seqcore::portable::rope::rope`], angles in f64 from the integer position. The frequency
    /// table is a kernel parameter up to 256 entries, uploaded per call beyond.
    fn rope<T: Element>(
        &self,
        layout: seqcore::portable::rope::RopeLayout,
        inv_freq: &[f64],
        attention_factor: f64,
        positions: seqcore::portable::rope::RopePositions<'_, Self>,
        x: Option<View<'_, Self, T>>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        self.rope_impl(layout, inv_freq, attention_factor, positions, x, y)
    }

    // ---- relative attention (relative.rs) ----

    /// Relative attention on the GPU (`kernels/relative.cu`; Shaw et al. 2018 eq. (3)-(5), Music
    /// Transformer, T5 buckets): one warp per query row, online softmax over tiles of 32 keys,
    /// the semantics of `seqcore::portable::relative`. `workspace` must hold
    /// `workspace_len(Dv)` accumulators (the reference's check) but is not used: the
    /// accumulators live in shared memory.
    #[allow(clippy::too_many_arguments)]
    fn relative_attention<T: Element>(
        &self,
        params: &seqcore::portable::relative::RelativeParams,
        q: View<'_, Self, T>,
        k: View<'_, Self, T>,
        v: View<'_, Self, T>,
        rel_k: Option<View<'_, Self, T>>,
        rel_v: Option<View<'_, Self, T>>,
        rel_bias: Option<View<'_, Self, T>>,
        o: ViewMut<'_, Self, T>,
        workspace: &mut CudaMem<T::Acc>,
    ) -> Result<()> {
        self.relative_attention_impl(params, q, k, v, rel_k, rel_v, rel_bias, o, workspace)
    }

    // ---- state-space models (ssm.rs) ----

    /// The diagonal SSM scan on the GPU (`kernels/ssm.cu`): one warp per channel, lanes over the
    /// modes; the recurrence of [`seqcore::portable::ssm::scan::scan`].
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
        self.ssm_scan_impl::<T>(abar, bbar, c, d, u, state, y)
    }

    /// 0: the GPU convolution is the direct causal sum, which needs no scratch memory (any
    /// contiguous rank-1 workspace is accepted, an empty one included).
    fn ssm_conv_workspace_len(&self, h: usize, l: usize) -> Result<usize> {
        let _ = (h, l);
        Ok(0)
    }

    /// The SSM convolution on the GPU (`kernels/ssm.cu`) as the direct causal sum in the
    /// accumulation type (O(L^2) per channel, one thread per output), not by FFT: the semantics
    /// of [`seqcore::portable::ssm::conv::conv_direct`], with the checks of the FFT path.
    fn ssm_conv<T: Element>(
        &self,
        k: View<'_, Self, T>,
        u: View<'_, Self, T>,
        d: Option<View<'_, Self, T::Acc>>,
        y: ViewMut<'_, Self, T>,
        workspace: ViewMut<'_, Self, T::Acc>,
    ) -> Result<()> {
        self.ssm_conv_impl::<T>(k, u, d, y, workspace)
    }

    /// The S4D Vandermonde kernel on the GPU (`kernels/ssm.cu`), in f64 as
    /// [`seqcore::portable::ssm::vandermonde::vandermonde`], one thread per output.
    fn ssm_vandermonde<T: Element>(
        &self,
        log_z: View<'_, Self, T::Acc>,
        w: View<'_, Self, T::Acc>,
        v: Option<View<'_, Self, T::Acc>>,
        k: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        self.ssm_vandermonde_impl::<T>(log_z, w, v, k)
    }

    // ---- associative memories (memory.rs) ----

    /// The linear-memory recurrence on the GPU (`kernels/memory.cu`; linear attention, RetNet,
    /// DeltaNet, Gated DeltaNet): one warp per (head, state row), tokens in order, the state
    /// updated in place in the accumulation type. Needs no workspace.
    fn linear_memory_recurrent<T: Element>(
        &self,
        spec: seqcore::portable::linear_memory::LinearMemorySpec,
        inputs: seqcore::portable::linear_memory::MemoryInputs<'_, Self, T>,
        state: ViewMut<'_, Self, T::Acc>,
        o: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        self.linear_memory_recurrent_impl("linear_memory_recurrent", spec, inputs, state, o)
    }

    /// The chunkwise form's checks (`chunk`, shapes, workspace, as the portable form), then the
    /// GPU recurrence of [`Backend::linear_memory_recurrent`]: the same function up to rounding,
    /// as the trait allows; the chunk size does not change the result and the workspace (sized
    /// as the portable form's) is not touched.
    fn linear_memory_chunkwise<T: Element>(
        &self,
        spec: seqcore::portable::linear_memory::LinearMemorySpec,
        chunk: usize,
        inputs: seqcore::portable::linear_memory::MemoryInputs<'_, Self, T>,
        state: ViewMut<'_, Self, T::Acc>,
        o: Option<ViewMut<'_, Self, T>>,
        workspace: ViewMut<'_, Self, T::Acc>,
    ) -> Result<()> {
        self.linear_memory_chunkwise_impl(spec, chunk, inputs, state, o, workspace.layout())
    }

    // ---- distillation (distill.rs) ----

    /// Dense distillation loss and gradient on the GPU (`kernels/distill.cu`, one block per row):
    /// the semantics of seqcore's portable `kd_loss`. Allocates `rows + 1` f64 of device scratch
    /// for the mean and sum reductions (no workspace argument).
    fn kd_loss<T: Element>(
        &self,
        cfg: &seqcore::portable::kd_loss::KdConfig,
        teacher: View<'_, Self, T>,
        student: View<'_, Self, T>,
        mask: Option<View<'_, Self, u8>>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        self.kd_loss_impl(cfg, teacher, student, mask, loss, grad)
    }

    /// Sparse-teacher distillation on the GPU (`kernels/distill.cu`): seqcore's portable
    /// `kd_loss_sparse`. Its data checks run on a host copy of `indices`, `tail` and `mask`, so
    /// the call waits for the stream.
    #[allow(clippy::too_many_arguments)] // the kernel's operands
    fn kd_loss_sparse<T: Element>(
        &self,
        cfg: &seqcore::portable::kd_loss::KdConfig,
        values: View<'_, Self, T>,
        indices: View<'_, Self, u32>,
        tail: Option<View<'_, Self, T>>,
        student: View<'_, Self, T>,
        mask: Option<View<'_, Self, u8>>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        self.kd_loss_sparse_impl(cfg, values, indices, tail, student, mask, loss, grad)
    }

    /// Cross-entropy with label smoothing on the GPU (`kernels/distill.cu`): seqcore's portable
    /// `cross_entropy`. The target checks run on a host copy of `targets`, so the call waits for
    /// the stream.
    fn cross_entropy<T: Element>(
        &self,
        cfg: &seqcore::portable::kd_loss::CeConfig,
        logits: View<'_, Self, T>,
        targets: View<'_, Self, i32>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        self.cross_entropy_impl(cfg, logits, targets, loss, grad)
    }
}

fn same_len(src: usize, dst: usize) -> Result<()> {
    if src == dst {
        Ok(())
    } else {
        Err(Error::Shape {
            arg: "dst",
            axis: 0,
            got: dst,
            expected: src,
            shape: seqcore::Dims::new(&[dst]),
        })
    }
}

impl Allocate for CudaBackend {
    type Buffer<T: Scalar> = CudaMem<T>;

    /// Zeroed device memory (stream-ordered allocation on the backend's stream).
    fn alloc<T: Scalar>(&self, len: usize) -> Result<CudaMem<T>> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or(Error::OutOfMemory { bytes: usize::MAX })?;
        // At least one byte: a zero-byte allocation is an error for some drivers.
        let buf = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(|e| match e.0 {
                cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                    Error::OutOfMemory { bytes }
                }
                _ => driver(e),
            })?;
        Ok(CudaMem {
            buf,
            len,
            _t: PhantomData,
        })
    }
}
