//! A seeded, reproducible, no_std random generator for sampling.

/// xoshiro256++ (Blackman and Vigna, "Scrambled linear pseudorandom number generators", 2021),
/// seeded through SplitMix64 as its authors recommend. Small, fast, no allocation; the same seed
/// gives the same stream on every platform.
///
/// Not PyTorch's generator: sampled tokens do not match `torch.multinomial` draw for draw (no
/// Rust crate can promise that); the distributions match.
#[derive(Clone, Debug)]
pub struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    /// The generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = self.s;
        let result = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        let mut s = [s0, s1, s2 ^ s0, s3 ^ s1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        self.s = s;
        result
    }

    /// A uniform draw from `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        // 53 bits fit exactly in an f64 mantissa.
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64;
        x * (1.0 / 9_007_199_254_740_992.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Xoshiro256;

    #[test]
    fn same_seed_same_stream_and_unit_interval() {
        let mut a = Xoshiro256::new(7);
        let mut b = Xoshiro256::new(7);
        let mut c = Xoshiro256::new(8);
        let mut differs = false;
        for _ in 0..1000 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!((0.0..1.0).contains(&x));
            differs |= x != c.next_f64();
        }
        assert!(differs);
    }

    #[test]
    fn mean_is_one_half() {
        let mut a = Xoshiro256::new(1);
        let n = 100_000;
        let mean = (0..n).map(|_| a.next_f64()).sum::<f64>() / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
