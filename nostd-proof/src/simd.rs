//! seq-accel-simd without std or alloc: its CPU check, then gemm, softmax and fused attention on
//! static and stack buffers.

use seq_accel_simd::Simd;
use seqcore::{AttentionMasks, AttentionParams, Backend, Result, SoftmaxKind};

static X: [f32; 12] = [
    0.5, -1.0, 2.0, 0.25, 1.5, -0.5, 3.0, 1.0, -2.0, 0.0, 0.75, 1.25,
];

/// Runs the SIMD backend's kernels on static and stack buffers; returns a checksum, or the
/// `Unavailable` error on a CPU without the build's level.
///
/// # Errors
/// [`seqcore::Error::Unavailable`] as above; nothing else for these inputs.
pub fn simd_on_static_buffers() -> Result<f32> {
    let b = Simd::new()?;
    let mut c = [0.0f32; 9];
    b.gemm(
        1.0,
        b.view(&X, &[3, 4])?,
        b.view(&X, &[3, 4])?.transpose(0, 1)?,
        0.0,
        b.view_mut(&mut c, &[3, 3])?,
    )?;
    let mut p = [0.0f32; 12];
    b.softmax(
        SoftmaxKind::LogSoftmax,
        b.view(&X, &[3, 4])?,
        None,
        b.view_mut(&mut p, &[3, 4])?,
    )?;
    // One head, three tokens of dimension 4, causal.
    let mut o = [0.0f32; 12];
    let mut ws = [0.0f32; 1024];
    let q = b.view(&X, &[1, 1, 3, 4])?;
    let params = AttentionParams {
        causal: true,
        ..AttentionParams::default()
    };
    b.attention(
        &params,
        q,
        q,
        q,
        AttentionMasks::none(),
        b.view_mut(&mut o, &[1, 1, 3, 4])?,
        None,
        &mut ws,
    )?;
    Ok(c.iter().chain(&p).chain(&o).sum())
}
