//! Timing kernels and measuring this machine's peak, so that a speed reads as a fraction of what
//! the machine can do.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::Failure;
use crate::properties::{Bench, Work};

/// The speed of one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Median seconds per call.
    pub seconds: f64,
    /// Calls timed.
    pub calls: usize,
    /// The work of one call.
    pub work: Work,
    /// The problem size.
    pub size: String,
}

impl Timing {
    /// GFLOP/s or GB/s (10^9 per second).
    pub fn rate(&self) -> f64 {
        match self.work {
            Work::Flops(w) | Work::Bytes(w) => w / self.seconds / 1e9,
        }
    }

    /// `"GFLOP/s"` or `"GB/s"`.
    pub fn unit(&self) -> &'static str {
        match self.work {
            Work::Flops(_) => "GFLOP/s",
            Work::Bytes(_) => "GB/s",
        }
    }

    /// The rate as a fraction of the matching peak.
    pub fn fraction(&self, peak: &Peak) -> f64 {
        match self.work {
            Work::Flops(_) => self.rate() / peak.gflops,
            Work::Bytes(_) => self.rate() / peak.gbps,
        }
    }
}

/// Runs `bench` for a warm-up of a tenth of `budget`, then for at least `budget`, and returns the
/// median time per call.
///
/// # Errors
/// The kernel's failure, if it fails.
pub fn time(mut bench: Bench<'_>, budget: Duration) -> Result<Timing, Failure> {
    let warm = Instant::now();
    (bench.run)()?;
    while warm.elapsed() < budget / 10 {
        (bench.run)()?;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 3 {
        let t = Instant::now();
        (bench.run)()?;
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    let seconds = samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(Timing {
        seconds,
        calls: samples.len(),
        work: bench.work,
        size: bench.size,
    })
}

/// This machine's measured peak on one core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// f32 multiply-then-add throughput of one core with the instruction set this binary was built
    /// for (128 independent chains, vectorised by the compiler), in GFLOP/s. A build with wider
    /// vectors or fused multiply-add (`-C target-cpu=native`) measures a higher peak.
    pub gflops: f64,
    /// Memory bandwidth of one core on a STREAM triad over 3 x 32 MiB, in GB/s (bytes read plus
    /// written).
    pub gbps: f64,
}

/// Measures [`Peak`] in about half a second.
pub fn peak() -> Peak {
    Peak {
        gflops: best_of(3, flops_probe),
        gbps: best_of(3, triad_probe),
    }
}

fn best_of(n: usize, f: fn() -> f64) -> f64 {
    (0..n).map(|_| f()).fold(0.0, f64::max)
}

fn flops_probe() -> f64 {
    // 128 independent chains: enough to hide the latency of the vector units, in one flat array
    // the compiler vectorises for this build's instruction set (separate multiply and add: Rust
    // does not contract them into FMA).
    const CHAINS: usize = 128;
    let iters = 2_000_000usize;
    let mut acc = [1.0f32; CHAINS];
    let m = black_box(0.999_999_9f32);
    let c = black_box(1e-7f32);
    let t = Instant::now();
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * m + c;
        }
    }
    let s = t.elapsed().as_secs_f64();
    black_box(&acc);
    (2 * CHAINS * iters) as f64 / s / 1e9
}

fn triad_probe() -> f64 {
    let n = 4 << 20; // 4 Mi f64 = 32 MiB per array
    let b = vec![1.0f64; n];
    let c = vec![2.0f64; n];
    let mut a = vec![0.0f64; n];
    let s = black_box(3.0f64);
    for (x, (y, z)) in a.iter_mut().zip(b.iter().zip(&c)) {
        *x = y + s * z;
    }
    let t = Instant::now();
    for (x, (y, z)) in a.iter_mut().zip(b.iter().zip(&c)) {
        *x = y + s * z;
    }
    let secs = t.elapsed().as_secs_f64();
    black_box(&a);
    (3 * 8 * n) as f64 / secs / 1e9
}
