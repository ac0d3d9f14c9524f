//! Times softmax over the last axis of an `(8, 2048, 2048)` f32 tensor on the SIMD backend and
//! the Reference, one thread, side by side in one process, and prints GB/s (bytes read + written)
//! and a STREAM-like copy bandwidth measured in the same run.
//!
//! `cargo run --release -p seq-accel-simd --example softmax_bench`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::Instant;

use seq_accel_simd::Simd;
use seqcore::{Backend, Reference, SoftmaxKind};

fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let shape = [8usize, 2048, 2048];
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let mut y = vec![0f32; n];
    let bytes = 2.0 * (n * 4) as f64;
    // Copy bandwidth (read + write), the ceiling of a one-pass kernel.
    let mut z = vec![0f32; n];
    let tc = best_of(5, || z.copy_from_slice(core::hint::black_box(&x)));
    let s = Simd::new().expect("this CPU runs the build's level");
    for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
        let ts = best_of(5, || {
            s.softmax(
                kind,
                s.view(&x[..], &shape).unwrap(),
                None,
                s.view_mut(&mut y[..], &shape).unwrap(),
            )
            .unwrap();
        });
        let tr = best_of(2, || {
            Reference
                .softmax(
                    kind,
                    Reference.view(&x[..], &shape).unwrap(),
                    None,
                    Reference.view_mut(&mut y[..], &shape).unwrap(),
                )
                .unwrap();
        });
        println!(
            "{kind:?} (8, 2048, 2048) f32 level {}: simd {:.1} ms ({:.2} GB/s), reference {:.1} ms ({:.2} GB/s), simd/reference speed-up {:.2}x, simd at {:.0}% of copy bandwidth ({:.2} GB/s)",
            s.level().name(),
            ts * 1e3,
            bytes / ts / 1e9,
            tr * 1e3,
            bytes / tr / 1e9,
            tr / ts,
            100.0 * tc / ts,
            bytes / tc / 1e9
        );
    }
    core::hint::black_box(&z);
}
