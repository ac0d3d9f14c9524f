#![doc = include_str!("../README.md")]
#![no_std]
// `unsafe` is allowed only where a measured gain needs it, each block with its `// SAFETY:`.
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod lanes;
mod level;
pub mod math;

mod attention;
mod attention_merge;
mod elementwise;
mod gemm;
mod kd_loss;
mod linear_memory;
mod reduce;
mod relative;
mod rope;
mod softmax;
mod ssm;
mod top_k;

pub use level::Level;

use seqcore::portable::kd_loss::{CeConfig, KdConfig};
use seqcore::portable::linear_memory::{LinearMemorySpec, MemoryInputs};
use seqcore::portable::relative::RelativeParams;
use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::{
    AttentionDims, AttentionMasks, AttentionParams, Backend, Binary, Element, Error, Reduce,
    Reference, Result, Scalar, SoftmaxKind, Unary, View, ViewMut,
};

/// The SIMD backend: seqcore's kernels on `wide` vectors, for the instruction-set [`Level`] this
/// build was compiled for. Its memory is a host slice, as [`Reference`]'s.
///
/// ```
/// use seq_accel_simd::{Level, Simd};
/// use seqcore::{Backend, SoftmaxKind};
///
/// let simd = match Simd::new() {
///     Ok(b) => b,
///     Err(e) => {
///         // A v3/v4 build on a CPU without AVX2/AVX-512.
///         println!("skipped: {e}");
///         return Ok(());
///     }
/// };
/// assert_eq!(simd.level(), Level::BUILT);
/// let x = [1.0f32, 2.0, 3.0, 4.0];
/// let mut y = [0.0f32; 4];
/// simd.softmax(SoftmaxKind::Softmax, simd.view(&x, &[1, 4])?, None, simd.view_mut(&mut y, &[1, 4])?)?;
/// assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6);
/// # Ok::<(), seqcore::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Simd {
    level: Level,
}

impl Simd {
    /// The backend at [`Level::BUILT`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] (backend `simd`) when this CPU, or its operating system, lacks the
    /// level the build was compiled for (an x86-64-v4 build on a CPU without AVX-512): running
    /// its kernels would be an illegal instruction.
    pub fn new() -> Result<Simd> {
        if Level::BUILT.detected() {
            Ok(Simd {
                level: Level::BUILT,
            })
        } else {
            Err(Error::Unavailable {
                backend: "simd",
                reason: match Level::BUILT {
                    Level::X86_64V4 => {
                        "built for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), which this CPU or OS lacks"
                    }
                    _ => {
                        "built for x86-64-v3 (AVX2, FMA, F16C, BMI1/2), which this CPU or OS lacks"
                    }
                },
            })
        }
    }

    /// The instruction-set level of the kernels (the build's).
    pub fn level(&self) -> Level {
        self.level
    }
}

/// `v` over the same host slice, as a [`Reference`] view: the kernels below work on host views.
fn host<'a, T: Scalar>(v: View<'a, Simd, T>) -> Result<View<'a, Reference, T>> {
    View::new(v.mem(), *v.layout())
}

/// `v` over the same host slice, as a writable [`Reference`] view.
fn host_mut<'a, T: Scalar>(v: ViewMut<'a, Simd, T>) -> Result<ViewMut<'a, Reference, T>> {
    let (mem, layout) = v.into_parts();
    ViewMut::new(mem, layout)
}

impl Backend for Simd {
    type Mem<T: Scalar> = [T];

    fn name(&self) -> &'static str {
        "simd"
    }

    fn mem_len<T: Scalar>(mem: &[T]) -> usize {
        mem.len()
    }

    fn write<T: Scalar>(&self, src: &[T], dst: &mut [T]) -> Result<()> {
        seqcore::reference::host_copy(src, dst)
    }

    fn read<T: Scalar>(&self, src: &[T], dst: &mut [T]) -> Result<()> {
        seqcore::reference::host_copy(src, dst)
    }

    fn host<T: Scalar>(mem: &[T]) -> Option<&[T]> {
        Some(mem)
    }

    fn host_mut<T: Scalar>(mem: &mut [T]) -> Option<&mut [T]> {
        Some(mem)
    }

    fn gemm<T: Element>(
        &self,
        alpha: f64,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        beta: f64,
        c: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        gemm::gemm(alpha, host(a)?, host(b)?, beta, host_mut(c)?)
    }

    fn softmax<T: Element>(
        &self,
        kind: SoftmaxKind,
        x: View<'_, Self, T>,
        mask: Option<View<'_, Self, T>>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        softmax::softmax(kind, host(x)?, mask.map(host).transpose()?, host_mut(y)?)
    }

    fn unary<T: Element>(
        &self,
        op: Unary,
        x: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        elementwise::unary(op, host(x)?, host_mut(y)?)
    }

    fn binary<T: Element>(
        &self,
        op: Binary,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        elementwise::binary(op, host(a)?, host(b)?, host_mut(y)?)
    }

    fn reduce<T: Element>(
        &self,
        op: Reduce,
        x: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        reduce::reduce(op, host(x)?, host_mut(y)?)
    }

    fn cast<S: Element, D: Element>(
        &self,
        x: View<'_, Self, S>,
        y: ViewMut<'_, Self, D>,
    ) -> Result<()> {
        elementwise::cast(host(x)?, host_mut(y)?)
    }

    fn top_k<T: Element>(
        &self,
        k: usize,
        x: View<'_, Self, T>,
        values: ViewMut<'_, Self, T>,
        indices: ViewMut<'_, Self, u32>,
    ) -> Result<()> {
        top_k::top_k(k, host(x)?, host_mut(values)?, host_mut(indices)?)
    }

    // ---- fused kernels: attention ----

    fn attention_workspace_len<T: Element>(&self, dims: &AttentionDims) -> Result<usize> {
        attention::workspace_len::<T>(dims)
    }

    fn attention<T: Element>(
        &self,
        params: &AttentionParams,
        q: View<'_, Self, T>,
        k: View<'_, Self, T>,
        v: View<'_, Self, T>,
        masks: AttentionMasks<'_, Self, T>,
        o: ViewMut<'_, Self, T>,
        lse: Option<ViewMut<'_, Self, T::Acc>>,
        workspace: &mut [T::Acc],
    ) -> Result<()> {
        let masks = AttentionMasks {
            key_mask: masks.key_mask.map(host).transpose()?,
            bias: masks.bias.map(host).transpose()?,
        };
        attention::attention(
            params,
            host(q)?,
            host(k)?,
            host(v)?,
            masks,
            host_mut(o)?,
            lse.map(host_mut).transpose()?,
            workspace,
        )
    }

    fn attention_merge<T: Element>(
        &self,
        o_a: View<'_, Self, T>,
        lse_a: View<'_, Self, T::Acc>,
        o_b: View<'_, Self, T>,
        lse_b: View<'_, Self, T::Acc>,
        o: ViewMut<'_, Self, T>,
        lse: Option<ViewMut<'_, Self, T::Acc>>,
    ) -> Result<()> {
        attention_merge::merge(
            host(o_a)?,
            host(lse_a)?,
            host(o_b)?,
            host(lse_b)?,
            host_mut(o)?,
            lse.map(host_mut).transpose()?,
        )
    }

    // ---- fused kernels: positions ----

    fn rope<T: Element>(
        &self,
        layout: RopeLayout,
        inv_freq: &[f64],
        attention_factor: f64,
        positions: RopePositions<'_, Self>,
        x: Option<View<'_, Self, T>>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        let positions = match positions {
            RopePositions::Offset(s) => RopePositions::Offset(s),
            RopePositions::Ids(p) => RopePositions::Ids(host(p)?),
            _ => {
                return Err(Error::Unsupported {
                    op: "rope",
                    backend: "simd",
                });
            }
        };
        rope::rope(
            layout,
            inv_freq,
            attention_factor,
            positions,
            x.map(host).transpose()?,
            host_mut(y)?,
        )
    }

    fn relative_attention<T: Element>(
        &self,
        params: &RelativeParams,
        q: View<'_, Self, T>,
        k: View<'_, Self, T>,
        v: View<'_, Self, T>,
        rel_k: Option<View<'_, Self, T>>,
        rel_v: Option<View<'_, Self, T>>,
        rel_bias: Option<View<'_, Self, T>>,
        o: ViewMut<'_, Self, T>,
        workspace: &mut [T::Acc],
    ) -> Result<()> {
        relative::relative_attention(
            params,
            host(q)?,
            host(k)?,
            host(v)?,
            rel_k.map(host).transpose()?,
            rel_v.map(host).transpose()?,
            rel_bias.map(host).transpose()?,
            host_mut(o)?,
            workspace,
        )
    }

    // ---- fused kernels: state-space models ----

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
        ssm::scan::<T>(
            host(abar)?,
            host(bbar)?,
            host(c)?,
            host(d)?,
            host(u)?,
            host_mut(state)?,
            y.map(host_mut).transpose()?,
        )
    }

    fn ssm_conv_workspace_len(&self, h: usize, l: usize) -> Result<usize> {
        ssm::conv_workspace_len(h, l)
    }

    fn ssm_conv<T: Element>(
        &self,
        k: View<'_, Self, T>,
        u: View<'_, Self, T>,
        d: Option<View<'_, Self, T::Acc>>,
        y: ViewMut<'_, Self, T>,
        workspace: ViewMut<'_, Self, T::Acc>,
    ) -> Result<()> {
        ssm::conv::<T>(
            host(k)?,
            host(u)?,
            d.map(host).transpose()?,
            host_mut(y)?,
            host_mut(workspace)?,
        )
    }

    fn ssm_vandermonde<T: Element>(
        &self,
        log_z: View<'_, Self, T::Acc>,
        w: View<'_, Self, T::Acc>,
        v: Option<View<'_, Self, T::Acc>>,
        k: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        ssm::vandermonde::<T>(
            host(log_z)?,
            host(w)?,
            v.map(host).transpose()?,
            host_mut(k)?,
        )
    }

    // ---- fused kernels: associative memories ----

    fn linear_memory_recurrent<T: Element>(
        &self,
        spec: LinearMemorySpec,
        inputs: MemoryInputs<'_, Self, T>,
        state: ViewMut<'_, Self, T::Acc>,
        o: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        linear_memory::recurrent(
            spec,
            host_inputs(inputs)?,
            host_mut(state)?,
            o.map(host_mut).transpose()?,
        )
    }

    fn linear_memory_chunkwise_workspace_len(
        &self,
        chunk: usize,
        dk: usize,
        dv: usize,
    ) -> Result<usize> {
        linear_memory::chunkwise_workspace_len(chunk, dk, dv)
    }

    fn linear_memory_chunkwise<T: Element>(
        &self,
        spec: LinearMemorySpec,
        chunk: usize,
        inputs: MemoryInputs<'_, Self, T>,
        state: ViewMut<'_, Self, T::Acc>,
        o: Option<ViewMut<'_, Self, T>>,
        workspace: ViewMut<'_, Self, T::Acc>,
    ) -> Result<()> {
        linear_memory::chunkwise(
            spec,
            chunk,
            host_inputs(inputs)?,
            host_mut(state)?,
            o.map(host_mut).transpose()?,
            host_mut(workspace)?,
        )
    }

    // ---- fused kernels: distillation ----

    fn kd_loss<T: Element>(
        &self,
        cfg: &KdConfig,
        teacher: View<'_, Self, T>,
        student: View<'_, Self, T>,
        mask: Option<View<'_, Self, u8>>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        kd_loss::kd_loss(
            cfg,
            host(teacher)?,
            host(student)?,
            mask.map(host).transpose()?,
            host_mut(loss)?,
            grad.map(host_mut).transpose()?,
        )
    }

    fn kd_loss_sparse<T: Element>(
        &self,
        cfg: &KdConfig,
        values: View<'_, Self, T>,
        indices: View<'_, Self, u32>,
        tail: Option<View<'_, Self, T>>,
        student: View<'_, Self, T>,
        mask: Option<View<'_, Self, u8>>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        kd_loss::kd_loss_sparse(
            cfg,
            host(values)?,
            host(indices)?,
            tail.map(host).transpose()?,
            host(student)?,
            mask.map(host).transpose()?,
            host_mut(loss)?,
            grad.map(host_mut).transpose()?,
        )
    }

    fn cross_entropy<T: Element>(
        &self,
        cfg: &CeConfig,
        logits: View<'_, Self, T>,
        targets: View<'_, Self, i32>,
        loss: ViewMut<'_, Self, T>,
        grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        kd_loss::cross_entropy(
            cfg,
            host(logits)?,
            host(targets)?,
            host_mut(loss)?,
            grad.map(host_mut).transpose()?,
        )
    }
}

/// The linear-memory operands as host views.
fn host_inputs<'a, T: Element>(
    i: MemoryInputs<'a, Simd, T>,
) -> Result<MemoryInputs<'a, Reference, T>> {
    Ok(MemoryInputs {
        q: host(i.q)?,
        k: host(i.k)?,
        v: host(i.v)?,
        beta: i.beta.map(host).transpose()?,
        log_decay: i.log_decay.map(host).transpose()?,
    })
}

#[cfg(feature = "alloc")]
impl seqcore::Allocate for Simd {
    type Buffer<T: Scalar> = alloc::vec::Vec<T>;

    fn alloc<T: Scalar>(&self, len: usize) -> Result<alloc::vec::Vec<T>> {
        Reference.alloc(len)
    }
}
