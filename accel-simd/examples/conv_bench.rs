//! Times the S4D FFT convolution (`ssm_conv`, H = 256 channels, L = 4096, f32, one thread) on the
//! SIMD backend: the median of `REPS` calls (default 15; first argument), after a warm-up, as the
//! torch case of `conformance/peers/torch_cases.py` ("s4d fft conv H=256 L=4096") times its
//! rfft/irfft convolution.
//!
//! `RUSTFLAGS="-C target-cpu=x86-64-v3" cargo run --release --target x86_64-unknown-linux-gnu
//! -p seq-accel-simd --example conv_bench`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::Instant;

use seq_accel_simd::Simd;
use seqcore::Backend;

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let (h, l) = (256usize, 4096usize);
    let input = |n: usize, seed: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .map(|x| x * scale)
            .collect()
    };
    let k = input(h * l, 1, 0.1);
    let u = input(l * h, 2, 1.0);
    let d = input(h, 3, 1.0);
    let mut y = vec![0f32; l * h];
    let s = Simd::new().expect("this CPU runs the build's level");
    let wl = s.ssm_conv_workspace_len(h, l).unwrap();
    let mut ws = vec![0f32; wl];
    let mut run = || {
        s.ssm_conv::<f32>(
            s.view(&k[..], &[h, l]).unwrap(),
            s.view(&u[..], &[l, h]).unwrap(),
            Some(s.view(&d[..], &[h]).unwrap()),
            s.view_mut(&mut y[..], &[l, h]).unwrap(),
            s.view_mut(&mut ws[..], &[wl]).unwrap(),
        )
        .unwrap();
    };
    run();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "ssm_conv H={h} L={l} f32 simd: median {:.2} ms (min {:.2}, {reps} calls)",
        times[reps / 2],
        times[0]
    );
}
