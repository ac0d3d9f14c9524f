//! Speed of the CUDA kernels on the GPU, each timed over repeated calls between two stream
//! synchronisations (so the time is the device's, not the enqueue's). Writes one JSON object per
//! case to the file named by the first argument (default `seq-perf.json`) for
//! `scripts/torch_peers.py`, which times PyTorch's peers in the same run and prints the table.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::io::Write as _;
use std::time::Instant;

use seq_accel_cuda::{CudaBackend, CudaMem};
use seqcore::{
    Allocate, AttentionDims, AttentionMasks, AttentionParams, Backend, Element, Reduce,
    SoftmaxKind, Unary, bf16, f16,
};

struct Case {
    kernel: &'static str,
    dtype: &'static str,
    size: String,
    seconds: f64,
    work: f64,
    unit: &'static str,
}

fn time(b: &CudaBackend, mut f: impl FnMut()) -> f64 {
    f();
    b.synchronize().unwrap();
    // Calibrate to about 0.2 s.
    let t = Instant::now();
    f();
    b.synchronize().unwrap();
    let one = t.elapsed().as_secs_f64().max(1e-6);
    let reps = ((0.2 / one) as usize).clamp(3, 1000);
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    b.synchronize().unwrap();
    t.elapsed().as_secs_f64() / reps as f64
}

fn filled<T: Element>(b: &CudaBackend, n: usize) -> CudaMem<T> {
    let host: Vec<T> = (0..n)
        .map(|i| T::from_f64(((i * 2_654_435_761) % 1000) as f64 / 250.0 - 2.0))
        .collect();
    let mut m = b.alloc::<T>(n).unwrap();
    b.write(&host, &mut m).unwrap();
    m
}

fn softmax<T: Element>(b: &CudaBackend, out: &mut Vec<Case>, rows: usize, n: usize) {
    let x = filled::<T>(b, rows * n);
    let mut y = b.alloc::<T>(rows * n).unwrap();
    let s = time(b, || {
        b.softmax(
            SoftmaxKind::Softmax,
            b.view(&x, &[rows, n]).unwrap(),
            None,
            b.view_mut(&mut y, &[rows, n]).unwrap(),
        )
        .unwrap();
    });
    out.push(Case {
        kernel: "softmax",
        dtype: T::NAME,
        size: format!("{rows}x{n}"),
        seconds: s,
        work: (2 * rows * n * size_of::<T>()) as f64,
        unit: "GB/s",
    });
}

/// RoPE (rotate-half, Llama's layout) of `x [1, H, L, D]` into `y`, positions `0..L`, every
/// feature rotated: one read and one write of the tensor.
fn rope<T: Element>(b: &CudaBackend, out: &mut Vec<Case>, h: usize, l: usize, d: usize) {
    use seqcore::portable::rope::{RopeLayout, RopePositions};
    let x = filled::<T>(b, h * l * d);
    let mut y = b.alloc::<T>(h * l * d).unwrap();
    let inv_freq: Vec<f64> = (0..d / 2)
        .map(|i| 10_000f64.powf(-2.0 * i as f64 / d as f64))
        .collect();
    let mut call = || {
        b.rope(
            RopeLayout::Half,
            &inv_freq,
            1.0,
            RopePositions::Offset(0),
            Some(b.view(&x, &[1, h, l, d]).unwrap()),
            b.view_mut(&mut y, &[1, h, l, d]).unwrap(),
        )
    };
    if let Err(e) = call() {
        println!("rope {}: {e}", T::NAME);
        return;
    }
    let s = time(b, || call().unwrap());
    out.push(Case {
        kernel: "rope",
        dtype: T::NAME,
        size: format!("H{h} L{l} D{d}"),
        seconds: s,
        work: (2 * h * l * d * size_of::<T>()) as f64,
        unit: "GB/s",
    });
}

fn unary<T: Element>(b: &CudaBackend, out: &mut Vec<Case>, n: usize) {
    let x = filled::<T>(b, n);
    let mut y = b.alloc::<T>(n).unwrap();
    let s = time(b, || {
        b.unary(
            Unary::Gelu,
            b.view(&x, &[n]).unwrap(),
            b.view_mut(&mut y, &[n]).unwrap(),
        )
        .unwrap();
    });
    out.push(Case {
        kernel: "unary_gelu",
        dtype: T::NAME,
        size: format!("{n}"),
        seconds: s,
        work: (2 * n * size_of::<T>()) as f64,
        unit: "GB/s",
    });
}

fn reduce<T: Element>(b: &CudaBackend, out: &mut Vec<Case>, rows: usize, n: usize) {
    let x = filled::<T>(b, rows * n);
    let mut y = b.alloc::<T>(rows).unwrap();
    let s = time(b, || {
        b.reduce(
            Reduce::Sum,
            b.view(&x, &[rows, n]).unwrap(),
            b.view_mut(&mut y, &[rows]).unwrap(),
        )
        .unwrap();
    });
    out.push(Case {
        kernel: "reduce_sum",
        dtype: T::NAME,
        size: format!("{rows}x{n}"),
        seconds: s,
        work: (rows * n * size_of::<T>()) as f64,
        unit: "GB/s",
    });
}

fn gemm<T: Element>(b: &CudaBackend, out: &mut Vec<Case>, n: usize) {
    let a = filled::<T>(b, n * n);
    let bb = filled::<T>(b, n * n);
    let mut c = b.alloc::<T>(n * n).unwrap();
    let s = time(b, || {
        b.gemm(
            1.0,
            b.view(&a, &[n, n]).unwrap(),
            b.view(&bb, &[n, n]).unwrap(),
            0.0,
            b.view_mut(&mut c, &[n, n]).unwrap(),
        )
        .unwrap();
    });
    out.push(Case {
        kernel: "gemm",
        dtype: T::NAME,
        size: format!("{n}x{n}x{n}"),
        seconds: s,
        work: 2.0 * (n as f64).powi(3),
        unit: "GFLOP/s",
    });
}

/// One causal attention call of `shape` (`[B, H, L, D]`, every operand contiguous).
fn causal<T: Element>(
    b: &CudaBackend,
    q: &CudaMem<T>,
    k: &CudaMem<T>,
    v: &CudaMem<T>,
    o: &mut CudaMem<T>,
    ws: &mut CudaMem<T::Acc>,
    shape: &[usize; 4],
) {
    b.attention(
        &AttentionParams::causal(),
        b.view(q, shape).unwrap(),
        b.view(k, shape).unwrap(),
        b.view(v, shape).unwrap(),
        AttentionMasks::none(),
        b.view_mut(o, shape).unwrap(),
        None,
        ws,
    )
    .unwrap();
}

/// Causal attention forward, B = 1, H = 16 (as the PyTorch SDPA comparison).
fn attention<T: Element>(b: &CudaBackend, out: &mut Vec<Case>, l: usize, d: usize) {
    let n = 16 * l * d;
    let (q, k, v) = (filled::<T>(b, n), filled::<T>(b, n), filled::<T>(b, n));
    let mut o = b.alloc::<T>(n).unwrap();
    let mut ws = b.alloc::<T::Acc>(0).unwrap();
    let shape = [1, 16, l, d];
    let mut run = || time(b, || causal(b, &q, &k, &v, &mut o, &mut ws, &shape));
    let s = run();
    // The same call with the weights rounded to T before `P V` (FlashAttention's precision).
    b.round_attention_weights(true);
    let s_rounded = run();
    b.round_attention_weights(false);
    let dims = AttentionDims {
        batch: 1,
        heads_q: 16,
        heads_kv: 16,
        len_q: l,
        len_k: l,
        head_dim: d,
        value_dim: d,
    };
    for (kernel, seconds) in [("attention", s), ("attention_rw", s_rounded)] {
        out.push(Case {
            kernel,
            dtype: T::NAME,
            size: format!("B1 H16 L{l} D{d} causal"),
            seconds,
            // causal: half the score matrix
            work: dims.flops() / 2.0,
            unit: "GFLOP/s",
        });
    }
}

/// The tensor-core path against the generic one on the same call: the largest difference.
fn self_check<T: Element>(b: &CudaBackend, l: usize, d: usize) {
    let n = 16 * l * d;
    let (q, k, v) = (filled::<T>(b, n), filled::<T>(b, n), filled::<T>(b, n));
    let mut ws = b.alloc::<T::Acc>(0).unwrap();
    let shape = [1, 16, l, d];
    let mut outs = Vec::new();
    for tc in [true, false] {
        b.use_tensor_core_attention(tc);
        let mut o = b.alloc::<T>(n).unwrap();
        causal(b, &q, &k, &v, &mut o, &mut ws, &shape);
        let mut h = vec![T::default(); n];
        b.read(&o, &mut h).unwrap();
        outs.push(h);
    }
    b.use_tensor_core_attention(true);
    let diff = outs[0]
        .iter()
        .zip(&outs[1])
        .map(|(a, c)| (a.to_f64() - c.to_f64()).abs())
        .fold(
            0.0f64,
            |m, x| if x.is_nan() { f64::INFINITY } else { m.max(x) },
        );
    println!(
        "self-check attention {} L{l} D{d}: tensor-core vs generic path, max |diff| = {diff:.3e} (unit roundoff {:.1e})",
        T::NAME,
        T::DTYPE.unit_roundoff()
    );
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "seq-perf.json".into());
    let b = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            println!("SKIPPED perf: {e}");
            return;
        }
    };
    println!("device: {} ({})", b.device_name(), b.arch());
    let mut cases = Vec::new();
    softmax::<f32>(&b, &mut cases, 4096, 8192);
    softmax::<bf16>(&b, &mut cases, 4096, 8192);
    softmax::<f16>(&b, &mut cases, 4096, 8192);
    rope::<f32>(&b, &mut cases, 32, 8192, 128);
    rope::<bf16>(&b, &mut cases, 32, 8192, 128);
    unary::<f32>(&b, &mut cases, 1 << 26);
    unary::<bf16>(&b, &mut cases, 1 << 26);
    reduce::<f32>(&b, &mut cases, 4096, 8192);
    gemm::<f32>(&b, &mut cases, 4096);
    gemm::<f16>(&b, &mut cases, 4096);
    gemm::<bf16>(&b, &mut cases, 4096);
    gemm::<f64>(&b, &mut cases, 2048);
    self_check::<bf16>(&b, 1024, 64);
    self_check::<f16>(&b, 1024, 128);
    for d in [64, 128] {
        for l in [1024, 2048, 4096, 8192, 16384] {
            attention::<bf16>(&b, &mut cases, l, d);
            attention::<f16>(&b, &mut cases, l, d);
        }
    }
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "[").unwrap();
    for (i, c) in cases.iter().enumerate() {
        let rate = c.work / c.seconds / 1e9;
        println!(
            "{:<12} {:<5} {:>14} {:>10.3} ms {:>10.1} {}",
            c.kernel,
            c.dtype,
            c.size,
            c.seconds * 1e3,
            rate,
            c.unit
        );
        let comma = if i + 1 == cases.len() { "" } else { "," };
        writeln!(
            f,
            "  {{\"kernel\": \"{}\", \"dtype\": \"{}\", \"size\": \"{}\", \"seconds\": {:e}, \"rate\": {:e}, \"unit\": \"{}\"}}{comma}",
            c.kernel, c.dtype, c.size, c.seconds, rate, c.unit
        )
        .unwrap();
    }
    writeln!(f, "]").unwrap();
}
