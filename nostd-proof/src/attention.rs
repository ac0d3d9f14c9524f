//! seq-attention without std or alloc: the fused kernel through `MultiHeadAttention`, a
//! fixed-capacity KV cache, a ring buffer and an int8 cache on static and stack buffers, and the
//! merge of two partial states.

use seq_attention::{
    FixedKvCache, KvCache, KvCacheDims, KvWorkspace, MultiHeadAttention, PartialAttention,
    QuantizedKvCache, RingKvCache, merge,
};
use seqcore::{AttentionMasks, AttentionParams, Backend, Reference, Result};

static Q: [f32; 16] = [
    0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1.0, 0.1, 0.2, 0.3, -0.4, 0.5, 0.6,
];
static KV: [f32; 8] = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, -1.0, 2.0];

/// Runs attention, decode steps through three caches, and a merge; returns a checksum.
///
/// # Errors
/// Whatever the calls return (nothing, for these inputs).
pub fn attention_on_static_buffers() -> Result<f32> {
    let b = Reference;
    // 4 query heads over 2 KV heads, D = 2, one sequence of 2 tokens, causal.
    let mha = MultiHeadAttention::new(4, 2, 2)?.causal();
    let mut o = [0.0f32; 16];
    let mut ws = [0.0f32; 2 + 64];
    mha.forward(
        &b,
        b.view(&Q, &[1, 2, 4, 2])?,
        b.view(&KV, &[1, 2, 2, 2])?,
        b.view(&KV, &[1, 2, 2, 2])?,
        AttentionMasks::none(),
        b.view_mut(&mut o, &[1, 2, 4, 2])?,
        &mut ws,
    )?;

    // The same two tokens decoded one by one through each cache.
    let dims = KvCacheDims::new(2, 2, 2, 4)?;
    let (mut kb, mut vb) = ([0.0f32; 16], [0.0f32; 16]);
    let (mut rk, mut rv) = ([0.0f32; 16], [0.0f32; 16]);
    let (mut qk, mut qv, mut sk, mut sv) = ([0i8; 16], [0i8; 16], [0.0f32; 8], [0.0f32; 8]);
    let mut fixed = FixedKvCache::<Reference, f32>::new(dims, &mut kb, &mut vb)?;
    let mut ring = RingKvCache::<Reference, f32>::new(dims, 2, &mut rk, &mut rv)?;
    let mut int8 = QuantizedKvCache::new(dims, &mut qk, &mut sk, &mut qv, &mut sv)?;
    let mut sum = 0.0f32;
    let (mut kernel, mut state, mut partial) = ([0.0f32; 66], [0.0f32; 32], [0.0f32; 512]);
    for t in 0..2 {
        let kv = b.view(KV.get(t * 4..t * 4 + 4).unwrap_or(&[]), &[1, 2, 2])?;
        let q = b.view(Q.get(t * 8..t * 8 + 8).unwrap_or(&[]), &[1, 4, 2])?;
        let caches: [&mut dyn KvCache<Reference, f32>; 3] = [&mut fixed, &mut ring, &mut int8];
        for cache in caches {
            let mut step = [0.0f32; 8];
            cache.append(&b, kv, kv)?;
            cache.attend(
                &b,
                &AttentionParams::causal(),
                q,
                b.view_mut(&mut step, &[1, 4, 2])?,
                KvWorkspace {
                    kernel: &mut kernel,
                    state: &mut state,
                    partial: &mut partial,
                },
            )?;
            sum += step.iter().sum::<f32>();
        }
    }

    // Merge two partial states.
    let (oa, la, ob, lb) = ([1.0f32, 2.0], [0.0f32], [3.0f32, 4.0], [1.0f32]);
    let (mut om, mut lm) = ([0.0f32; 2], [0.0f32; 1]);
    merge(
        &b,
        PartialAttention {
            o: b.view(&oa, &[1, 2])?,
            lse: b.view(&la, &[1])?,
        },
        PartialAttention {
            o: b.view(&ob, &[1, 2])?,
            lse: b.view(&lb, &[1])?,
        },
        b.view_mut(&mut om, &[1, 2])?,
        Some(b.view_mut(&mut lm, &[1])?),
    )?;
    Ok(sum + o.iter().sum::<f32>() + om[0] + lm[0])
}
