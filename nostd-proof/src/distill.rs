//! seq-distill without std or alloc: the fused distillation loss, the sparse teacher, the
//! sequence-level cross-entropy, the teacher/student alignment and aTLAS on static and stack
//! buffers.

use seq_distill::{
    Atlas, CeConfig, Divergence, KdConfig, Span, align, kd_loss, sequence_cross_entropy,
    sparse_kd_loss,
};
use seqcore::{Backend, Reference, Result};

static TEACHER: [f32; 8] = [2.0, 0.5, -1.0, 0.0, 1.0, 1.0, f32::NEG_INFINITY, 0.0];
static STUDENT: [f32; 8] = [1.0, 1.0, -1.0, 0.5, 0.0, 2.0, 1.0, -0.5];

/// Runs every seq-distill entry point on static and stack buffers; returns a checksum.
///
/// # Errors
/// Whatever a call returns (nothing, for these inputs).
pub fn distill_on_static_buffers() -> Result<f32> {
    let b = Reference;
    let (mut loss, mut grad) = ([0.0f32; 1], [0.0f32; 8]);
    let cfg = KdConfig::new(Divergence::Jsd { beta: 0.5 }, 2.0);
    kd_loss(
        &b,
        &cfg,
        b.view(&TEACHER, &[2, 4])?,
        b.view(&STUDENT, &[2, 4])?,
        Some(b.view(&[1u8, 1], &[2])?),
        b.view_mut(&mut loss, &[])?,
        Some(b.view_mut(&mut grad, &[2, 4])?),
    )?;
    let mut sparse = [0.0f32; 1];
    sparse_kd_loss(
        &b,
        &KdConfig::new(Divergence::ForwardKl, 1.0),
        b.view(&[2.0f32, 0.5], &[1, 2])?,
        b.view(&[0u32, 1], &[1, 2])?,
        None,
        b.view(&STUDENT[..4], &[1, 4])?,
        None,
        b.view_mut(&mut sparse, &[])?,
        None,
    )?;
    let mut ce = [0.0f32; 1];
    sequence_cross_entropy(
        &b,
        &CeConfig::new(0.1),
        b.view(&STUDENT, &[2, 4])?,
        b.view(&[3i32, -100], &[2])?,
        b.view_mut(&mut ce, &[])?,
        None,
    )?;
    let mut spans = [Span::default(); 1];
    let aligned = align(&[0, 1, 1, 1], 4, &[2], &[1, 0], 2, &mut spans)?;
    let base: [&[f32]; 1] = [&TEACHER[..4]];
    let tasks = [&base[..]];
    let atlas = Atlas::new(&base, &tasks, &[0.5])?;
    let mut scratch = [0.0f32; 4];
    let composed = atlas.block(0, &mut scratch)?;
    let first = composed.first().copied().unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)] // a small count
    let aligned = aligned as f32;
    Ok(loss[0] + sparse[0] + ce[0] + aligned + first)
}
