//! seq-attention's RoPE and relative attention on static and stack buffers.

use seq_attention::relative::skew::SkewedAttention;
use seq_attention::rope::{RopeConfig, RopeScaling};
use seqcore::portable::rope::RopePositions;
use seqcore::{Backend, Reference, Result};

static Q: [f32; 16] = [
    0.5, -1.0, 0.25, 2.0, 1.5, 0.0, -0.5, 1.0, 0.5, -1.0, 0.25, 2.0, 1.5, 0.0, -0.5, 1.0,
];

/// Rotates `Q` ([1, 1, 4, 4]) with llama3 RoPE at positions 2^24 - 4 .. 2^24, then runs Music
/// Transformer relative attention over it; returns a checksum.
///
/// # Errors
/// Whatever a kernel returns (nothing, for these inputs).
pub fn rope_on_static_buffers() -> Result<f32> {
    let b = Reference;
    let cfg = RopeConfig::new(10_000.0, 4).with_scaling(RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    });
    let mut y = [0.0f32; 16];
    let mut table = [0.0f64; 2];
    cfg.apply(
        &b,
        1 << 24,
        RopePositions::Offset((1 << 24) - 4),
        Some(b.view(&Q, &[1, 1, 4, 4])?),
        b.view_mut(&mut y, &[1, 1, 4, 4])?,
        &mut table,
    )?;
    let mut o = [0.0f32; 16];
    let mut ws = [0.0f32; 4];
    SkewedAttention { scale: None }.forward(
        &b,
        b.view(&y, &[1, 1, 4, 4])?,
        b.view(&y, &[1, 1, 4, 4])?,
        b.view(&Q, &[1, 1, 4, 4])?,
        b.view(&Q, &[1, 4, 4])?,
        b.view_mut(&mut o, &[1, 1, 4, 4])?,
        &mut ws,
    )?;
    Ok(o.iter().sum())
}
