//! Test support shared by several test files (`#[path = "support/rng.rs"] mod rng;`): the SIMD
//! backend when the CPU has the build's level, and a small deterministic data generator.
#![allow(dead_code)] // each test file uses a part

use seq_accel_simd::Simd;

/// The SIMD backend, or `None` on a CPU without the build's level (the test then passes vacuously).
pub(crate) fn simd() -> Option<Simd> {
    Simd::new().ok()
}

/// A small deterministic generator (SplitMix64, Steele et al. 2014) for test data.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// A value uniform in `[-1, 1)`.
    #[allow(clippy::cast_precision_loss)] // 53-bit integers, exact in f64
    pub(crate) fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// `n` values uniform in `[-scale, scale)`.
    pub(crate) fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}
