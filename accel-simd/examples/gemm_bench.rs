//! Times `c = a @ b` (f32 or f64, row-major, `n x n x n`) on the simd backend, one thread:
//! `cargo run --release --example gemm_bench -- [n] [reps] [f32|f64]`. Prints GFLOP/s (best of
//! `reps`), to compare with numpy/OpenBLAS (`OPENBLAS_NUM_THREADS=1`) in the same session.
#![allow(clippy::unwrap_used, clippy::cast_precision_loss, missing_docs)]

use std::time::Instant;

use seq_accel_simd::Simd;
use seqcore::{Backend, Element, View, ViewMut};

/// This thread's CPU time in seconds (Linux `schedstat`), so that time spent preempted on a
/// loaded machine is not counted; `None` elsewhere.
fn cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Best wall-clock and best CPU-time GFLOP/s over `reps` products.
fn time<T: Element>(s: &Simd, n: usize, reps: usize) -> (f64, f64) {
    let fill = |len: usize| -> Vec<T> {
        (0..len)
            .map(|i| T::from_f64(((i * 31) % 17) as f64 / 8.0 - 1.0))
            .collect()
    };
    let (a, b) = (fill(n * n), fill(n * n));
    let mut c = vec![T::from_f64(0.0); n * n];
    let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let c0 = cpu();
        let t = Instant::now();
        s.gemm::<T>(
            1.0,
            View::<Simd, T>::contiguous(&a[..], &[n, n]).unwrap(),
            View::<Simd, T>::contiguous(&b[..], &[n, n]).unwrap(),
            0.0,
            ViewMut::<Simd, T>::contiguous(&mut c[..], &[n, n]).unwrap(),
        )
        .unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c0, cpu()) {
            best_cpu = best_cpu.min(b - a);
        }
    }
    let flop = 2.0 * (n * n * n) as f64 / 1e9;
    (flop / best, flop / best_cpu)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args.get(1).and_then(|x| x.parse().ok()).unwrap_or(1024);
    let reps = args.get(2).and_then(|x| x.parse().ok()).unwrap_or(5);
    let s = Simd::new().unwrap();
    let g = match args.get(3).map(String::as_str) {
        Some("f64") => time::<f64>(&s, n, reps),
        _ => time::<f32>(&s, n, reps),
    };
    println!(
        "simd {:?} gemm {n}^3: {:.2} GFLOP/s wall, {:.2} GFLOP/s cpu time",
        s.level(),
        g.0,
        g.1
    );
}
