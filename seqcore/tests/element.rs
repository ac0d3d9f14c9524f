//! Element conversions, checked exhaustively over every f16 and bf16 bit pattern against an
//! independent decoder and an independent round-to-nearest-even written here.

// Helpers of a test crate unwrap and index as freely as the tests themselves (clippy.toml
// allows it inside `#[test]` functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use seqcore::{DType, Element, bf16, f16};

/// A binary floating-point format with `p` significand bits (hidden bit included) and `e` exponent
/// bits, stored as `u16`.
#[derive(Clone, Copy, Debug)]
struct Format {
    p: i32,
    ebits: i32,
}

const F16: Format = Format { p: 11, ebits: 5 };
const BF16: Format = Format { p: 8, ebits: 8 };

impl Format {
    fn bias(self) -> i32 {
        (1 << (self.ebits - 1)) - 1
    }
    /// Exponent of the smallest normal number.
    fn emin(self) -> i32 {
        1 - self.bias()
    }
    /// Exponent of the largest finite number.
    fn emax(self) -> i32 {
        self.bias()
    }
    fn mant_bits(self) -> i32 {
        self.p - 1
    }
    /// Largest finite value, `(2 - 2^(1-p)) 2^emax`.
    fn max(self) -> f64 {
        (2.0 - pow2(1 - self.p)) * pow2(self.emax())
    }

    /// Our own decoder of a bit pattern (not `half`'s).
    fn decode(self, bits: u16) -> f64 {
        let m = self.mant_bits();
        let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
        let exp = i32::from((bits >> m) & ((1 << self.ebits) - 1));
        let man = f64::from(bits & ((1 << m) - 1));
        let all_ones = (1 << self.ebits) - 1;
        if exp == all_ones {
            if man == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            }
        } else if exp == 0 {
            sign * man * pow2(self.emin() - m)
        } else {
            sign * (1.0 + man * pow2(-m)) * pow2(exp - self.bias())
        }
    }

    /// Round `x` to this format, to nearest, ties to even significand, overflow to +-inf: by
    /// finding the two neighbours of `|x|` on the grid of its binade and picking the nearer.
    fn round(self, x: f64) -> f64 {
        if x.is_nan() || x.is_infinite() || x == 0.0 {
            return x;
        }
        let a = x.abs();
        // Quantum (spacing of representable numbers) around `a`, subnormals included.
        let q = pow2(exponent(a).max(self.emin()) - self.mant_bits());
        let n = (a / q).floor(); // exact: division by a power of two, floor of an f64
        let lo = n * q;
        let hi = (n + 1.0) * q;
        // Both differences are exact (multiples of ulp(a), smaller than 2 ulp of the binade).
        let (dl, dh) = (a - lo, hi - a);
        assert!(dl >= 0.0 && dh > 0.0);
        let r = if dl < dh {
            lo
        } else if dh < dl {
            hi
        } else if n % 2.0 == 0.0 {
            lo
        } else {
            hi
        };
        let r = if r > self.max() { f64::INFINITY } else { r };
        r.copysign(x)
    }

    /// The next representable value above `v >= 0` (finite), from the grid.
    fn next_up(self, v: f64) -> f64 {
        let q = pow2(exponent_or_min(v).max(self.emin()) - self.mant_bits());
        v + q
    }
}

/// `2^e` for `-1022 <= e <= 1023`, exactly.
fn pow2(e: i32) -> f64 {
    assert!((-1022..=1023).contains(&e));
    f64::from_bits(u64::try_from(e + 1023).unwrap() << 52)
}

/// `floor(log2 a)` for finite `a > 0`, subnormals included.
fn exponent(a: f64) -> i32 {
    let bits = a.to_bits();
    let biased = i32::try_from((bits >> 52) & 0x7ff).unwrap();
    if biased == 0 {
        let man = bits & ((1u64 << 52) - 1);
        // Position of the leading one in the 52-bit field.
        let lead = 63 - i32::try_from(man.leading_zeros()).unwrap();
        -1074 + lead
    } else {
        biased - 1023
    }
}

fn exponent_or_min(a: f64) -> i32 {
    if a == 0.0 { -1022 } else { exponent(a) }
}

/// Same value, bitwise (so +0 and -0 differ), or both NaN.
fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// An f64 one unit in the last place further from zero (for finite, non-max `x`).
fn f64_up(x: f64) -> f64 {
    f64::from_bits(x.to_bits() + 1)
}
fn f64_down(x: f64) -> f64 {
    f64::from_bits(x.to_bits() - 1)
}

trait Half: Element<Acc = f32> {
    const FMT: Format;
    fn bits(self) -> u16;
    fn of_bits(b: u16) -> Self;
}
impl Half for f16 {
    const FMT: Format = F16;
    fn bits(self) -> u16 {
        self.to_bits()
    }
    fn of_bits(b: u16) -> Self {
        f16::from_bits(b)
    }
}
impl Half for bf16 {
    const FMT: Format = BF16;
    fn bits(self) -> u16 {
        self.to_bits()
    }
    fn of_bits(b: u16) -> Self {
        bf16::from_bits(b)
    }
}

/// Checks `T::from_f64(x)` against our rounding; returns a description on failure.
fn check_round<T: Half>(x: f64) -> Result<(), String> {
    let got = T::from_f64(x);
    let got_v = T::FMT.decode(got.bits());
    let want = T::FMT.round(x);
    if same(got_v, want) {
        Ok(())
    } else {
        Err(format!(
            "{}::from_f64({x:e} = {:#018x}) gave {got_v:e} ({:#06x}), want {want:e}",
            T::NAME,
            x.to_bits(),
            got.bits()
        ))
    }
}

fn exhaustive_roundtrip<T: Half>() {
    for b in 0..=u16::MAX {
        let x = T::of_bits(b);
        let v = x.to_f64();
        // `to_f64` is the exact value (against our own decoder).
        let want = T::FMT.decode(b);
        assert!(
            same(v, want),
            "{} {b:#06x}: to_f64 {v:e}, want {want:e}",
            T::NAME
        );
        // `to_acc` agrees with `to_f64`.
        let acc = f64::from(x.to_acc());
        assert!(
            same(acc, v),
            "{} {b:#06x}: to_acc {acc:e} vs {v:e}",
            T::NAME
        );
        // from_f64(to_f64(x)) is x bitwise; NaN stays NaN.
        let back = T::from_f64(v);
        if v.is_nan() {
            assert!(back.to_f64().is_nan(), "{} {b:#06x}: NaN lost", T::NAME);
        } else {
            assert_eq!(back.bits(), b, "{} {b:#06x}: round trip", T::NAME);
        }
        // from_acc(to_acc(x)) too.
        let back = T::from_acc(x.to_acc());
        if v.is_nan() {
            assert!(back.to_f64().is_nan());
        } else {
            assert_eq!(back.bits(), b);
        }
    }
}

#[test]
fn f16_exhaustive_roundtrip() {
    exhaustive_roundtrip::<f16>();
}

#[test]
fn bf16_exhaustive_roundtrip() {
    exhaustive_roundtrip::<bf16>();
}

/// For every non-negative finite value `v` of the format (and its negation): the midpoint to the
/// next value, the f64 neighbours of the midpoint, values a hair (below f32 precision) off the
/// midpoint, and a few points between.
fn exhaustive_rounding<T: Half>() {
    let fmt = T::FMT;
    let mut failures = Vec::new();
    let mut tested = 0usize;
    for b in 0..0x8000u16 {
        let v = fmt.decode(b);
        if !v.is_finite() {
            continue;
        }
        let next = fmt.next_up(v);
        let mid = (v + next) / 2.0; // exact
        let q = next - v;
        let mut xs = vec![
            v,
            mid,
            f64_up(mid),
            f64_down(mid),
            mid + q * pow2(-30), // off the midpoint by less than half an f32 ulp
            mid - q * pow2(-30),
            v + q / 4.0,
            v + 3.0 * q / 4.0,
            v + q * pow2(-40),
            next - q * pow2(-40),
        ];
        // A value whose f32 rounding lands exactly on the midpoint, from either side.
        xs.push(mid + mid * pow2(-40));
        xs.push(mid - mid * pow2(-40));
        for x in xs {
            for x in [x, -x] {
                tested += 1;
                if let Err(e) = check_round::<T>(x) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(tested > 300_000);
    assert!(
        failures.is_empty(),
        "{} of {tested} conversions wrong, first: {:?}",
        failures.len(),
        failures.iter().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn f16_from_f64_rounds_to_nearest_even() {
    exhaustive_rounding::<f16>();
}

#[test]
fn bf16_from_f64_rounds_to_nearest_even() {
    exhaustive_rounding::<bf16>();
}

/// Pseudo-random f64 across the whole exponent range of each format (xorshift, fixed seed).
#[test]
fn random_f64_round_correctly() {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..100_000 {
        let r = next();
        // Exponents from 2^-160 to 2^140: below bf16's subnormals to past its overflow.
        let e = i32::try_from(r % 301).unwrap() - 160;
        let man = f64::from_bits((next() >> 12) | 0x3ff0_0000_0000_0000); // in [1, 2)
        let x = man * pow2(e);
        let x = if r & (1 << 40) == 0 { x } else { -x };
        check_round::<bf16>(x).unwrap();
        check_round::<f16>(x).unwrap();
        // f16 exponents are narrower: also cover them densely.
        let e16 = i32::try_from(r % 50).unwrap() - 30;
        check_round::<f16>(man * pow2(e16)).unwrap();
    }
}

/// The double-rounding trap: an f64 just above a midpoint of two bf16 values that rounds to an
/// f32 exactly *at* the midpoint. Rounding through f32 then ties to even, the wrong way.
#[test]
fn bf16_from_f64_is_a_single_rounding() {
    // Midpoint of bf16 1.0 (even) and 1 + 2^-7 (odd), nudged up by 2^-40.
    let x = 1.0 + pow2(-8) + pow2(-40);
    // Through f32 it lands on the midpoint exactly ...
    #[allow(clippy::cast_possible_truncation)]
    let via_f32 = x as f32;
    assert_eq!(f64::from(via_f32), 1.0 + pow2(-8));
    // ... where ties-to-even goes down to 1.0: the double rounding error.
    assert_eq!(bf16::from_f32(via_f32), bf16::ONE);
    // A single rounding goes up.
    let want = 1.0 + pow2(-7);
    assert_eq!(BF16.round(x), want);
    assert_eq!(<bf16 as Element>::from_f64(x).to_f64(), want);
    assert_eq!(<bf16 as Element>::from_f64(-x).to_f64(), -want);
    // And just below the midpoint it goes down.
    let y = 1.0 + pow2(-8) - pow2(-40);
    assert_eq!(<bf16 as Element>::from_f64(y).to_f64(), 1.0);
    // Subnormal range of bf16: midpoint of 0 and the smallest subnormal 2^-133, nudged up.
    let z = pow2(-134) + pow2(-170);
    assert_eq!(<bf16 as Element>::from_f64(z).to_f64(), pow2(-133));
    assert_eq!(<bf16 as Element>::from_f64(pow2(-134)).to_f64(), 0.0);
}

#[test]
fn f16_from_f64_is_a_single_rounding() {
    let x = 1.0 + pow2(-11) + pow2(-40);
    assert_eq!(<f16 as Element>::from_f64(x).to_f64(), 1.0 + pow2(-10));
    let y = 1.0 + pow2(-11);
    assert_eq!(<f16 as Element>::from_f64(y).to_f64(), 1.0);
    let z = 1.0 + 3.0 * pow2(-11); // tie, odd below: goes up to even
    assert_eq!(
        <f16 as Element>::from_f64(z).to_f64(),
        1.0 + 2.0 * pow2(-10)
    );
    // Subnormal: midpoint of 0 and 2^-24, nudged up.
    let s = pow2(-25) + pow2(-60);
    assert_eq!(<f16 as Element>::from_f64(s).to_f64(), pow2(-24));
    assert_eq!(<f16 as Element>::from_f64(pow2(-25)).to_f64(), 0.0);
}

#[test]
fn overflow_goes_to_infinity() {
    // f16: max 65504, next step 32: ties at 65520 go to even, i.e. up to inf.
    assert_eq!(F16.max(), 65504.0);
    assert_eq!(<f16 as Element>::from_f64(65519.999).to_f64(), 65504.0);
    assert_eq!(<f16 as Element>::from_f64(65520.0).to_f64(), f64::INFINITY);
    assert_eq!(
        <f16 as Element>::from_f64(-65520.0).to_f64(),
        f64::NEG_INFINITY
    );
    assert_eq!(<f16 as Element>::from_f64(1e300).to_f64(), f64::INFINITY);
    assert_eq!(<f16 as Element>::from_f64(f64::MAX).to_f64(), f64::INFINITY);
    assert_eq!(
        <f16 as Element>::from_f64(-f64::MAX).to_f64(),
        f64::NEG_INFINITY
    );
    // bf16: max (2 - 2^-7) 2^127.
    let m = BF16.max();
    assert_eq!(m, f64::from(bf16::MAX.to_f32()));
    let tie = m + pow2(127 - 8);
    assert_eq!(<bf16 as Element>::from_f64(f64_down(tie)).to_f64(), m);
    assert_eq!(<bf16 as Element>::from_f64(tie).to_f64(), f64::INFINITY);
    assert_eq!(<bf16 as Element>::from_f64(1e39).to_f64(), f64::INFINITY);
    assert_eq!(
        <bf16 as Element>::from_f64(-1e300).to_f64(),
        f64::NEG_INFINITY
    );
    assert_eq!(
        <bf16 as Element>::from_f64(f64::MAX).to_f64(),
        f64::INFINITY
    );
    // f32 from f64.
    assert_eq!(<f32 as Element>::from_f64(1e39), f32::INFINITY);
    assert_eq!(<f32 as Element>::from_f64(-1e39), f32::NEG_INFINITY);
    // Infinities and NaN pass through.
    for inf in [f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(<f16 as Element>::from_f64(inf).to_f64(), inf);
        assert_eq!(<bf16 as Element>::from_f64(inf).to_f64(), inf);
        assert_eq!(<f32 as Element>::from_f64(inf).to_f64(), inf);
    }
    assert!(<f16 as Element>::from_f64(f64::NAN).to_f64().is_nan());
    assert!(<bf16 as Element>::from_f64(f64::NAN).to_f64().is_nan());
    assert!(<bf16 as Element>::from_f64(-f64::NAN).to_f64().is_nan());
    assert!(<f32 as Element>::from_f64(f64::NAN).is_nan());
    // Tiny values go to a zero of the right sign.
    assert_eq!(
        <f16 as Element>::from_f64(-1e-300).to_f64().to_bits(),
        (-0.0f64).to_bits()
    );
    assert_eq!(<bf16 as Element>::from_f64(1e-300).to_f64().to_bits(), 0);
    assert_eq!(<bf16 as Element>::from_f64(f64::MIN_POSITIVE).to_f64(), 0.0);
    assert_eq!(<bf16 as Element>::from_f64(5e-324).to_f64(), 0.0);
}

#[test]
fn f32_and_f64_elements() {
    // f32 <-> f64 is exact one way and rounds once the other.
    for x in [
        0.0f32,
        -0.0,
        1.0,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        f32::INFINITY,
    ] {
        assert_eq!(
            <f32 as Element>::from_f64(x.to_f64()).to_bits(),
            x.to_bits()
        );
        assert_eq!(x.to_acc().to_bits(), x.to_bits());
    }
    assert_eq!(<f32 as Element>::from_f64(1.0 + pow2(-24)), 1.0); // tie to even
    assert_eq!(
        <f32 as Element>::from_f64(1.0 + pow2(-24) + pow2(-50)),
        1.0 + f32::EPSILON
    );
    assert_eq!(<f64 as Element>::from_f64(0.1), 0.1);
    assert_eq!(0.1f64.to_acc(), 0.1);
    assert!(<f64 as Element>::from_f64(f64::NAN).is_nan());
}

#[test]
fn dtypes() {
    assert_eq!(DType::ALL.len(), 4);
    for d in DType::ALL {
        assert_eq!(DType::from_name(d.name()), Some(d));
        assert_eq!(d.to_string(), d.name());
    }
    assert_eq!(DType::from_name("f128"), None);
    assert_eq!(DType::from_name("F32"), None);
    assert_eq!(DType::from_name(""), None);
    assert_eq!(
        [DType::F32, DType::F64, DType::F16, DType::BF16].map(DType::name),
        ["f32", "f64", "f16", "bf16"]
    );
    // Unit roundoffs 2^-p.
    assert_eq!(DType::F32.unit_roundoff(), pow2(-24));
    assert_eq!(DType::F64.unit_roundoff(), pow2(-53));
    assert_eq!(DType::F16.unit_roundoff(), pow2(-11));
    assert_eq!(DType::BF16.unit_roundoff(), pow2(-8));
    assert_eq!(DType::F32.unit_roundoff(), f64::from(f32::EPSILON) / 2.0);
    assert_eq!(DType::F64.unit_roundoff(), f64::EPSILON / 2.0);
    assert_eq!(DType::F16.unit_roundoff(), f16::EPSILON.to_f64() / 2.0);
    assert_eq!(DType::BF16.unit_roundoff(), bf16::EPSILON.to_f64() / 2.0);
    // Sizes and accumulators.
    assert_eq!(DType::ALL.map(DType::size), [8, 4, 2, 2]);
    assert_eq!(DType::F64.accumulator(), DType::F64);
    assert_eq!(DType::F32.accumulator(), DType::F32);
    assert_eq!(DType::F16.accumulator(), DType::F32);
    assert_eq!(DType::BF16.accumulator(), DType::F32);
    // Each element type's tag, name and size.
    assert_eq!(<f32 as Element>::DTYPE, DType::F32);
    assert_eq!(<f64 as Element>::DTYPE, DType::F64);
    assert_eq!(<f16 as Element>::DTYPE, DType::F16);
    assert_eq!(<bf16 as Element>::DTYPE, DType::BF16);
    fn name_and_size<T: Element>() {
        assert_eq!(T::NAME, T::DTYPE.name());
        assert_eq!(size_of::<T>(), T::DTYPE.size());
        assert_eq!(<T::Acc as Element>::DTYPE, T::DTYPE.accumulator());
    }
    name_and_size::<f32>();
    name_and_size::<f64>();
    name_and_size::<f16>();
    name_and_size::<bf16>();
}

/// The independent rounding above, instantiated for f32 (p = 24, 8 exponent bits), agrees with
/// Rust's `as f32` (correctly rounded): a check of the checker.
#[test]
fn reference_rounding_agrees_with_f32_cast() {
    let f32_fmt = Format { p: 24, ebits: 8 };
    assert_eq!(f32_fmt.max(), f64::from(f32::MAX));
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..100_000u32 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let e = i32::try_from(s % 300).unwrap() - 160;
        let man = f64::from_bits((s >> 12) | 0x3ff0_0000_0000_0000);
        // Every fourth value is put on or next to an f32 midpoint.
        let man = match i % 4 {
            0 => f64::from_bits(man.to_bits() & !((1 << 28) - 1) | (1 << 28)),
            1 => f64::from_bits(man.to_bits() & !((1 << 28) - 1) | (1 << 28) | 1),
            _ => man,
        };
        let x = man * pow2(e);
        #[allow(clippy::cast_possible_truncation)]
        let want = f64::from(x as f32);
        assert!(same(f32_fmt.round(x), want), "{x:e}");
    }
}
