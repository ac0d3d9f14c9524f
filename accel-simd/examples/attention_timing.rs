//! Times causal SDPA (B = 1, H = 8, D = 64, f32, one thread) and RoPE (L = 2048, H = 8, D = 64)
//! on the SIMD backend and on the Reference backend, side by side in one run. The peer timings
//! (PyTorch) come from `conformance/peers/`; this prints seq's side only.
//!
//! `cargo run --release -p seq-accel-simd --example attention_timing [L ...]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::time::Instant;

use seq_accel_simd::Simd;
use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::{
    AttentionDims, AttentionMasks, AttentionParams, Backend, Layout, Reference, View, ViewMut,
};

fn ramp(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 50.0)
        .collect()
}

/// Best of `reps` runs of `f`, in milliseconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn sdpa<B>(b: &B, len: usize, reps: usize) -> f64
where
    B: Backend<Mem<f32> = [f32]> + Backend<Mem<u8> = [u8]>,
{
    let (h, d) = (8, 64);
    let n = h * len * d;
    let (q, k, v) = (ramp(n, 1), ramp(n, 2), ramp(n, 3));
    let mut o = vec![0.0f32; n];
    let l = Layout::contiguous(&[1, h, len, d]).unwrap();
    let dims = AttentionDims {
        batch: 1,
        heads_q: h,
        heads_kv: h,
        len_q: len,
        len_k: len,
        head_dim: d,
        value_dim: d,
    };
    let mut ws = vec![0.0f32; b.attention_workspace_len::<f32>(&dims).unwrap()];
    let p = AttentionParams::causal();
    best(reps, || {
        b.attention(
            &p,
            View::<B, f32>::new(q.as_slice(), l).unwrap(),
            View::<B, f32>::new(k.as_slice(), l).unwrap(),
            View::<B, f32>::new(v.as_slice(), l).unwrap(),
            AttentionMasks::none(),
            ViewMut::<B, f32>::new(o.as_mut_slice(), l).unwrap(),
            None,
            ws.as_mut_slice(),
        )
        .unwrap();
    })
}

fn rope<B: Backend<Mem<f32> = [f32]>>(b: &B, reps: usize) -> f64 {
    let (h, len, d) = (8, 2048, 64);
    // Token-major [1, L, H, D] (as a projection writes it), viewed as [1, H, L, D].
    let x = ramp(h * len * d, 4);
    let mut y = vec![0.0f32; h * len * d];
    let l = Layout::contiguous(&[1, len, h, d])
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let inv: Vec<f64> = (0..d / 2)
        .map(|i| 10000f64.powf(-2.0 * i as f64 / d as f64))
        .collect();
    best(reps, || {
        b.rope(
            RopeLayout::Half,
            &inv,
            1.0,
            RopePositions::<B>::Offset(0),
            Some(View::<B, f32>::new(x.as_slice(), l).unwrap()),
            ViewMut::<B, f32>::new(y.as_mut_slice(), l).unwrap(),
        )
        .unwrap();
    })
}

fn main() {
    let s = Simd::new().expect("this CPU runs the build's level");
    println!("level {:?}", s.level());
    let lens: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let lens = if lens.is_empty() {
        vec![512, 2048]
    } else {
        lens
    };
    for len in lens {
        let flops = 2.0 * 8.0 * (len * len) as f64 * 128.0 / 2.0;
        let ts = sdpa(&s, len, 5);
        let tr = sdpa(&Reference, len, 1);
        println!(
            "sdpa causal H8 D64 L{len} f32: simd {ts:.3} ms ({:.2} GFLOP/s), reference {tr:.3} ms, simd/reference speedup {:.2}x",
            flops / ts / 1e6,
            tr / ts
        );
    }
    let ts = rope(&s, 10);
    let tr = rope(&Reference, 3);
    let bytes = 2.0 * 8.0 * 2048.0 * 64.0 * 4.0;
    println!(
        "rope L2048 H8 D64 f32: simd {ts:.3} ms ({:.2} GB/s), reference {tr:.3} ms, speedup {:.2}x",
        bytes / ts / 1e6,
        tr / ts
    );
}
