//! The no_std proof: a `#![no_std]` crate with its own `#[panic_handler]` that depends on every
//! crate of the family with default features off and calls each on static buffers.
//!
//! If std creeps into any of them, this crate stops building: on the host, std's panic handler
//! and this one clash (`error[E0152]: found duplicate lang item panic_impl`); on a bare-metal
//! target (`thumbv7em-none-eabi`, which CI builds when the target is installed) std does not
//! exist at all. Nothing here allocates: there is no global allocator to use.
#![no_std]

pub mod attention;
pub mod decode;
pub mod distill;
mod memory;
pub mod rope;
mod set_encoders;
mod simd;
mod ssm;

pub use memory::memory_on_static_buffers;
pub use set_encoders::structure_on_static_buffers;
pub use simd::simd_on_static_buffers;
pub use ssm::ssm_on_static_buffers;

use seqcore::{Backend, Reduce, Reference, Result, SoftmaxKind, Unary, bf16, f16};

static LOGITS: [f32; 6] = [
    1.0,
    2.0,
    3.0,
    f32::NEG_INFINITY,
    f32::NEG_INFINITY,
    f32::NEG_INFINITY,
];
static A: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];

/// Runs seqcore's reference kernels on static and stack buffers; returns a checksum.
///
/// # Errors
/// Whatever a kernel returns (nothing, for these inputs).
pub fn seqcore_on_static_buffers() -> Result<f64> {
    let b = Reference;
    let mut probs = [0.0f32; 6];
    b.softmax(
        SoftmaxKind::Softmax,
        b.view(&LOGITS, &[2, 3])?,
        None,
        b.view_mut(&mut probs, &[2, 3])?,
    )?;

    let mut c = [0.0f64; 4];
    let at = b.view(&A, &[2, 3])?.transpose(0, 1)?;
    b.gemm(
        1.0,
        b.view(&A, &[2, 3])?,
        at,
        0.0,
        b.view_mut(&mut c, &[2, 2])?,
    )?;

    let mut g = [0.0f32; 6];
    b.unary(
        Unary::Gelu,
        b.view(&probs, &[6])?,
        b.view_mut(&mut g, &[6])?,
    )?;

    let mut h = [f16::ZERO; 6];
    b.cast(b.view(&g, &[6])?, b.view_mut(&mut h, &[6])?)?;
    let mut s = [bf16::ZERO; 1];
    let mut hb = [bf16::ZERO; 6];
    b.cast(b.view(&h, &[6])?, b.view_mut(&mut hb, &[6])?)?;
    b.reduce(
        Reduce::LogSumExp,
        b.view(&hb, &[6])?,
        b.view_mut(&mut s, &[])?,
    )?;

    let (mut v, mut i) = ([0.0f32; 2], [0u32; 2]);
    b.top_k(
        2,
        b.view(&LOGITS, &[6])?,
        b.view_mut(&mut v, &[2])?,
        b.view_mut(&mut i, &[2])?,
    )?;

    Ok(c.iter().sum::<f64>() + f64::from(s[0].to_f32()) + f64::from(i[0]))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
