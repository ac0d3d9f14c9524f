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
    /// f32 fused multiply-add throughput of one core with the instruction set this binary was
    /// built for, in GFLOP/s (2 flops per lane per `mul_add`): `wide` vectors of the build's width
    /// (`f32x16` with AVX-512, `f32x8` otherwise) and its `mul_add` (one FMA instruction where the
    /// build has FMA, a multiply and an add otherwise), over enough independent chains to cover
    /// the latency of both FMA pipes. So a default build reports the SSE2 peak and an
    /// `x86-64-v3` build the AVX2+FMA peak, as the kernels of that build can reach.
    pub gflops: f64,
    /// Memory bandwidth of one core on a STREAM triad (McCalpin 1995) `a = b + s c` over three
    /// f64 arrays each at least 4 times the last-level cache (and at least 32 MiB), in GB/s
    /// (bytes read plus written).
    pub gbps: f64,
}

/// Measures [`Peak`] in about a second.
pub fn peak() -> Peak {
    Peak {
        gflops: best_of(3, flops_probe),
        gbps: best_of(3, triad_probe),
    }
}

fn best_of(n: usize, f: fn() -> f64) -> f64 {
    (0..n).map(|_| f()).fold(0.0, f64::max)
}

/// The build's widest f32 vector, as `seq-accel-simd` chooses it.
#[cfg(target_feature = "avx512f")]
type F32s = wide::f32x16;
/// The build's widest f32 vector, as `seq-accel-simd` chooses it.
#[cfg(not(target_feature = "avx512f"))]
type F32s = wide::f32x8;

fn flops_probe() -> f64 {
    // 12 independent chains of vectors: at least latency (4-5 cycles) x 2 FMA pipes of every x86
    // core, and few enough (with the two constants) to stay in the 16 vector registers of AVX2.
    const CHAINS: usize = 12;
    let lanes = size_of::<F32s>() / size_of::<f32>();
    let iters = 4_000_000usize;
    let mut acc = [F32s::splat(1.0); CHAINS];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = F32s::splat(1.0 + i as f32 * 1e-3);
    }
    let m = F32s::splat(black_box(0.999_999_9f32));
    let c = F32s::splat(black_box(1e-7f32));
    let t = Instant::now();
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = x.mul_add(m, c);
        }
    }
    let s = t.elapsed().as_secs_f64();
    black_box(&acc);
    (2 * lanes * CHAINS * iters) as f64 / s / 1e9
}

/// Bytes of the last-level cache (Linux sysfs), or 32 MiB when it cannot be read.
fn last_level_cache() -> usize {
    let mut best = 0usize;
    for i in 0..8 {
        let path = format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size");
        let Ok(s) = std::fs::read_to_string(path) else {
            continue;
        };
        let s = s.trim();
        let (num, mul) = match s.strip_suffix('K') {
            Some(n) => (n, 1usize << 10),
            None => match s.strip_suffix('M') {
                Some(n) => (n, 1 << 20),
                None => (s, 1),
            },
        };
        if let Ok(n) = num.parse::<usize>() {
            best = best.max(n * mul);
        }
    }
    if best == 0 { 32 << 20 } else { best }
}

fn triad_probe() -> f64 {
    // Each array at least 4 x the last-level cache (so the triad streams from memory), at least
    // 32 MiB, at most 512 MiB.
    let bytes = (4 * last_level_cache()).clamp(32 << 20, 512 << 20);
    let n = bytes / size_of::<f64>();
    let b = vec![1.0f64; n];
    let c = vec![2.0f64; n];
    let mut a = vec![0.0f64; n];
    let s = black_box(3.0f64);
    // A first pass faults every page in.
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
