//! Vectorised elementary functions on the build's vectors, each with its error bound in ULPs
//! against the correctly rounded result (documented per function and asserted by
//! `tests/math.rs` over dense sweeps against `libm` at f64 / a double-double oracle).
//!
//! Kernels call these through [`Lanes`], generic over f32 and f64: `exp::<A>(v)`, `ln::<A>(v)`.
//! The per-type code lives in [`VMath`], implemented for [`F32s`] and [`F64s`].
//!
//! | function | f32 max error | f64 max error | special values |
//! | --- | --- | --- | --- |
//! | [`exp`] | 1 ULP (measured 0.52, every finite f32) | 1 ULP (measured 0.51, dense sweep) | `exp(-inf) = 0`, `exp(+inf) = inf`, NaN → NaN, overflow → inf, gradual underflow (subnormal results rounded once) |
//! | [`ln`] | 1 ULP (measured 0.52, every positive f32) | 1 ULP (measured 0.52, dense sweep) | `ln(±0) = -inf`, `ln(x < 0) = NaN`, `ln(inf) = inf`, NaN → NaN, subnormal inputs exact-scaled |
//! | [`ln_1p`] (for `x >= 0`) | 2 ULP | 2 ULP | as [`ln`] |
//!
//! The measured figures are re-measured by `tests/math.rs` (which prints them) and the bounds
//! asserted there; the README repeats the table.
//!
//! Algorithms: Cody & Waite (1980) argument reduction with a two-part `ln 2`, then a polynomial
//! fitted on the reduced interval (Chebyshev fits computed with mpmath, near-minimax), as in
//! Tang, "Table-driven implementation of the exponential function" (1989) without the table;
//! the logarithm is the `2 atanh(s)`, `s = f / (2 + f)` form of Sun Microsystems' fdlibm
//! `e_log.c`, with our own fitted coefficients.

use crate::lanes::{F32s, F64s, Lanes, Vector};

/// The build's 32-bit unsigned vector, as wide as [`F32s`].
#[cfg(target_feature = "avx512f")]
type U32s = wide::u32x16;
/// The build's 32-bit unsigned vector, as wide as [`F32s`].
#[cfg(not(target_feature = "avx512f"))]
type U32s = wide::u32x8;
/// The build's 64-bit unsigned vector, as wide as [`F64s`].
#[cfg(target_feature = "avx512f")]
type U64s = wide::u64x8;
/// The build's 64-bit unsigned vector, as wide as [`F64s`].
#[cfg(not(target_feature = "avx512f"))]
type U64s = wide::u64x4;

/// `e^x` lane by lane; error at most 1 ULP (see the module table).
#[inline]
pub fn exp<A: Lanes>(x: A::V) -> A::V {
    x.v_exp()
}

/// `ln x` lane by lane; error at most 1 ULP (see the module table).
#[inline]
pub fn ln<A: Lanes>(x: A::V) -> A::V {
    x.v_ln()
}

/// `ln(1 + x)` lane by lane for `x >= 0` (NaN propagates), within 2 ULP: `ln(u) + (x - (u - 1)) / u`,
/// `u = 1 + x` rounded, which restores the rounding error of `1 + x` (Goldberg 1991, fdlibm
/// `s_log1p.c`'s correction term).
#[inline]
pub fn ln_1p<A: Lanes>(x: A::V) -> A::V {
    let one = A::V::splat(A::one());
    let u = x + one;
    let c = (x - (u - one)) / u;
    u.v_ln() + c
}

/// The complementary error function `erfc x = 1 - erf x`, accurate where `erf x` is near 1
/// (GELU's `x/2 erfc(-x/sqrt 2)`). f32: vectorised, `1 - x P(x^2)` for `|x| < 0.84375` and
/// `e^(-x^2) h(1/|x|) / |x|` above (`h(w) = erfcx(1/w)/w`, a degree-12 polynomial centred on its
/// interval; `2 - erfc|x|` for negative `x`; `x^2` split exactly into `hi + lo` so that
/// `e^(-x^2) = e^(-hi) (1 - lo)` does not carry its rounding), error measured in `tests/math.rs`
/// (where the result is normal) and listed in the README. f64: `libm::erfc` per lane (not
/// vectorised yet).
#[inline]
pub fn erfc<A: Lanes>(x: A::V) -> A::V {
    x.v_erfc()
}

/// The logistic sigmoid `1 / (1 + e^-x)` on the side where `e^..` cannot overflow:
/// `e = exp(-|x|)`, `(x >= 0 ? 1 : e) / (1 + e)`; at most `exp`'s error + 2 roundings.
#[inline]
pub fn sigmoid<A: Lanes>(x: A::V) -> A::V {
    let one = A::V::splat(A::one());
    let e = (-x.v_abs()).v_exp();
    let num = x.v_ge(A::V::splat(A::zero())).v_select(one, e);
    num / (one + e)
}

/// Per-type vector code behind [`exp`], [`ln`] and the mask operations the kernels use.
///
/// A "mask" is a vector whose lanes are all-ones (true) or all-zeros (false) bit patterns, as
/// the comparisons return.
pub trait VMath<A>: Vector<A> {
    /// `e^x` (see [`exp`]).
    fn v_exp(self) -> Self;
    /// `ln x` (see [`ln`]).
    fn v_ln(self) -> Self;
    /// Complementary error function `erfc x` (f32: vectorised, see [`erfc`]; f64: `libm` per
    /// lane).
    fn v_erfc(self) -> Self;
    /// `|x|`.
    fn v_abs(self) -> Self;
    /// Correctly rounded square root.
    fn v_sqrt(self) -> Self;
    /// Mask of `self < b` (false with NaN).
    fn v_lt(self, b: Self) -> Self;
    /// Mask of `self <= b`.
    fn v_le(self, b: Self) -> Self;
    /// Mask of `self > b`.
    fn v_gt(self, b: Self) -> Self;
    /// Mask of `self >= b`.
    fn v_ge(self, b: Self) -> Self;
    /// Mask of `self == b`.
    fn v_eq(self, b: Self) -> Self;
    /// Mask of the NaN lanes.
    fn v_nan(self) -> Self;
    /// Mask of the lanes whose sign bit is set.
    fn v_sign(self) -> Self;
    /// Lane-wise OR of two masks.
    fn v_or(self, b: Self) -> Self;
    /// Lane-wise AND of two masks.
    fn v_and(self, b: Self) -> Self;
    /// `self` a mask: `t` where true, else `f`.
    fn v_select(self, t: Self, f: Self) -> Self;
    /// `self` a mask: true when any lane is.
    fn v_any(self) -> bool;
}

// ---- f32 ----

/// `ln 2` split for Cody-Waite: `LN2_HI` has 9 significant bits, so `n * LN2_HI` is exact for
/// `|n| < 2^15`; `LN2_HI + LN2_LO = ln 2` to 2^-40 relative.
const LN2_HI_F32: f32 = 0.693_359_4;
const LN2_LO_F32: f32 = -2.121_944_4e-4;
/// `1.5 * 2^23`: adding it rounds an f32 of magnitude below 2^22 to an integer, kept in the low
/// bits of the sum.
const MAGIC_F32: f32 = 12_582_912.0;
/// `(e^r - 1 - r) / r^2` on `|r| <= ln 2 / 2`, degree 4 (ascending); fit error 6.5e-8, i.e.
/// 8e-9 relative on `e^r`.
const EXP_F32: [f32; 5] = [
    0.5,
    0.166_665_77,
    0.041_666_556,
    0.008_363_203,
    0.001_392_621_3,
];
/// `R(z) / z` with `R(z) = 2 (atanh(s)/s - 1)`, `z = s^2 <= 0.0295`, degree 3 (ascending).
const LN_F32: [f32; 4] = [0.666_666_7, 0.400_001_22, 0.285_507_8, 0.233_316_14];

/// `2^k` for the integer-valued lanes of `k` (`|k| <= 127`): the exponent field written directly.
#[inline(always)]
fn pow2_f32(k: F32s) -> F32s {
    let t: U32s = bytemuck::cast(k + F32s::splat(MAGIC_F32));
    let bias = MAGIC_F32.to_bits().wrapping_sub(127);
    bytemuck::cast((t - U32s::splat(bias)) << 23)
}

#[inline(always)]
fn exp_f32(x: F32s) -> F32s {
    // Beyond these every result is 0 (below 2^-150) or inf; clamping keeps `n` in range.
    let xc = x.max(F32s::splat(-104.0)).min(F32s::splat(89.0));
    let magic = F32s::splat(MAGIC_F32);
    let n = xc.mul_add(F32s::splat(core::f32::consts::LOG2_E), magic) - magic;
    // Cody-Waite: `x - n LN2_HI` is exact (with or without FMA), then the low part.
    let r1 = n.mul_add(F32s::splat(-LN2_HI_F32), xc);
    let t = n * F32s::splat(LN2_LO_F32);
    let r = r1 - t;
    // The rounding error of `r1 - t` (Fast2Sum: |t| < 0.03 is below |r1| wherever the error
    // matters), added back after the polynomial.
    let c = (r1 - r) - t;
    let [c0, c1, c2, c3, c4] = EXP_F32.map(F32s::splat);
    let q = r
        .mul_add(c4, c3)
        .mul_add(r, c2)
        .mul_add(r, c1)
        .mul_add(r, c0);
    let p = (r * r).mul_add(q, c) + r + F32s::splat(1.0);
    // 2^n as two normal factors: `p 2^n1` is exact, the second product rounds once (to a
    // subnormal, or to inf, where the true result does).
    let n1 = n * F32s::splat(0.5) + magic - magic;
    let n2 = n - n1;
    let y = p * pow2_f32(n1) * pow2_f32(n2);
    x.v_nan().v_select(x, y)
}

#[inline(always)]
fn ln_f32(x: F32s) -> F32s {
    const SQRT_HALF_BITS: u32 = 0x3f35_04f3;
    let tiny = x.v_lt(F32s::splat(f32::MIN_POSITIVE));
    // Subnormals scaled by 2^25 (exact), compensated in the exponent.
    let xs = tiny.v_select(x * F32s::splat(33_554_432.0), x);
    let off = tiny.v_select(F32s::splat(25.0), F32s::splat(0.0));
    let bits: U32s = bytemuck::cast(xs);
    let hx = bits + U32s::splat(0x3f80_0000 - SQRT_HALF_BITS);
    // The exponent of `x / sqrt(2)`, as a float through the 2^23 trick.
    let kb = (hx >> 23) | U32s::splat(0x4b00_0000);
    let k = bytemuck::cast::<U32s, F32s>(kb) - F32s::splat(8_388_608.0 + 127.0) - off;
    // m in [sqrt(1/2), sqrt(2)), x = 2^k m.
    let m: F32s = bytemuck::cast((hx & U32s::splat(0x007f_ffff)) + U32s::splat(SQRT_HALF_BITS));
    let one = F32s::splat(1.0);
    let f = m - one;
    let s = f / (F32s::splat(2.0) + f);
    let z = s * s;
    let [c0, c1, c2, c3] = LN_F32.map(F32s::splat);
    let r = z * z.mul_add(c3, c2).mul_add(z, c1).mul_add(z, c0);
    let hfsq = F32s::splat(0.5) * f * f;
    let y =
        k * F32s::splat(LN2_HI_F32) - ((hfsq - (s * (hfsq + r) + k * F32s::splat(LN2_LO_F32))) - f);
    let zero = F32s::splat(0.0);
    let y = x.v_eq(F32s::splat(f32::INFINITY)).v_select(x, y);
    let y = x.v_eq(zero).v_select(F32s::splat(f32::NEG_INFINITY), y);
    x.v_lt(zero)
        .v_or(x.v_nan())
        .v_select(F32s::splat(f32::NAN), y)
}

/// `erf(t) / t` in `z = t^2` on `[0, 0.84375^2]`, degree 5 (ascending), fit error 5.9e-9.
const ERF_SMALL_F32: [f32; 6] = [
    core::f32::consts::FRAC_2_SQRT_PI,
    -0.376_125_8,
    0.112_828_02,
    -0.026_806_085,
    0.005_057_145,
    -0.000_635_120_3,
];
/// Centre of `w = 1/t` over `t` in `[0.84375, 10.1]`.
const ERFC_W0_F32: f32 = 0.642_097_54;
/// `erfcx(t) t` in `v = 1/t - ERFC_W0`, degree 12 (ascending), fit error 6.8e-9 (the sum of
/// `|c_i| r^i` is 0.6: Horner loses under 2 ULP).
const ERFC_BIG_F32: [f32; 13] = [
    0.486_591_07,
    -0.171_568_35,
    0.002_269_459,
    0.066_920_94,
    -0.073_855_88,
    0.048_107_14,
    -0.012_407_886,
    -0.015_145_01,
    0.034_853_957,
    -0.061_805_78,
    0.049_940_254,
    0.034_275_32,
    -0.055_347_184,
];

#[inline(always)]
fn erfc_f32(x: F32s) -> F32s {
    let one = F32s::splat(1.0);
    let a = x.abs();
    let z = x * x;
    let [s0, s1, s2, s3, s4, s5] = ERF_SMALL_F32.map(F32s::splat);
    let p = z
        .mul_add(s5, s4)
        .mul_add(z, s3)
        .mul_add(z, s2)
        .mul_add(z, s1)
        .mul_add(z, s0);
    let small = one - x * p;
    let ac = a.max(F32s::splat(0.843_75)).min(F32s::splat(10.1));
    let v = one / ac - F32s::splat(ERFC_W0_F32);
    let h = ERFC_BIG_F32
        .iter()
        .rev()
        .fold(F32s::splat(0.0), |h, &c| h.mul_add(v, F32s::splat(c)));
    // x^2 = hi + lo exactly (Dekker's split of `ac` into 12-bit halves), and
    // e^(-x^2) = e^(-hi) (1 - lo): the rounding of x^2 would cost |x|^2 u.
    let hi = ac * ac;
    let ah: F32s = bytemuck::cast(bytemuck::cast::<F32s, U32s>(ac) & U32s::splat(0xffff_f000));
    let al = ac - ah;
    let lo = ((ah * ah - hi) + F32s::splat(2.0) * ah * al) + al * al;
    let ex = exp_f32(-hi);
    let e = ex.mul_add(-lo, ex) * (h / ac);
    let e = a.v_gt(F32s::splat(10.1)).v_select(F32s::splat(0.0), e);
    let big = x.v_lt(F32s::splat(0.0)).v_select(F32s::splat(2.0) - e, e);
    let y = a.v_lt(F32s::splat(0.843_75)).v_select(small, big);
    x.v_nan().v_select(x, y)
}

// ---- f64 ----

/// `ln 2` split for Cody-Waite (fdlibm's `ln2_hi`/`ln2_lo`): `LN2_HI` has 32 significant bits.
const LN2_HI_F64: f64 = 6.931_471_803_691_238e-1;
const LN2_LO_F64: f64 = 1.908_214_929_270_587_7e-10;
/// `1.5 * 2^52` (see [`MAGIC_F32`]).
const MAGIC_F64: f64 = 6_755_399_441_055_744.0;
/// `(e^r - 1 - r) / r^2` on `|r| <= ln 2 / 2`, degree 9 (ascending); fit error 1.1e-16, i.e.
/// 1.3e-17 relative on `e^r`.
const EXP_F64: [f64; 10] = [
    0.500_000_000_000_000_1,
    0.166_666_666_666_666_67,
    0.041_666_666_666_623_99,
    0.008_333_333_333_330_051,
    0.001_388_888_891_728_179_3,
    0.000_198_412_698_631_059_7,
    0.000_024_801_521_190_217_73,
    0.000_002_755_726_837_868_419,
    2.762_013_871_973_399_6e-7,
    2.510_042_415_700_506_7e-8,
];
/// `R(z) / z` (see [`LN_F32`]), degree 6 (ascending), fit error 3.1e-16.
const LN_F64: [f64; 7] = [
    0.666_666_666_666_666_9,
    0.399_999_999_998_988_9,
    0.285_714_286_262_538_4,
    0.222_222_110_893_794_96,
    0.181_828_924_325_368_7,
    0.153_316_117_220_550_08,
    0.146_178_071_534_173_25,
];

/// `2^k` for the integer-valued lanes of `k` (`|k| <= 1023`).
#[inline(always)]
fn pow2_f64(k: F64s) -> F64s {
    let t: U64s = bytemuck::cast(k + F64s::splat(MAGIC_F64));
    let bias = MAGIC_F64.to_bits().wrapping_sub(1023);
    bytemuck::cast((t - U64s::splat(bias)) << 52)
}

#[inline(always)]
fn exp_f64(x: F64s) -> F64s {
    let xc = x.max(F64s::splat(-746.0)).min(F64s::splat(710.0));
    let magic = F64s::splat(MAGIC_F64);
    let n = xc.mul_add(F64s::splat(core::f64::consts::LOG2_E), magic) - magic;
    let r = n.mul_add(F64s::splat(-LN2_HI_F64), xc);
    let r = n.mul_add(F64s::splat(-LN2_LO_F64), r);
    let c = EXP_F64.map(F64s::splat);
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9] = c;
    let q = r
        .mul_add(c9, c8)
        .mul_add(r, c7)
        .mul_add(r, c6)
        .mul_add(r, c5)
        .mul_add(r, c4)
        .mul_add(r, c3)
        .mul_add(r, c2)
        .mul_add(r, c1)
        .mul_add(r, c0);
    let p = (r * r).mul_add(q, r) + F64s::splat(1.0);
    let n1 = n * F64s::splat(0.5) + magic - magic;
    let n2 = n - n1;
    let y = p * pow2_f64(n1) * pow2_f64(n2);
    x.v_nan().v_select(x, y)
}

#[inline(always)]
fn ln_f64(x: F64s) -> F64s {
    const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;
    let tiny = x.v_lt(F64s::splat(f64::MIN_POSITIVE));
    let xs = tiny.v_select(x * F64s::splat(18_014_398_509_481_984.0), x); // 2^54
    let off = tiny.v_select(F64s::splat(54.0), F64s::splat(0.0));
    let bits: U64s = bytemuck::cast(xs);
    let hx = bits + U64s::splat(0x3ff0_0000_0000_0000 - SQRT_HALF_BITS);
    let kb = (hx >> 52) | U64s::splat(0x4330_0000_0000_0000);
    let k = bytemuck::cast::<U64s, F64s>(kb) - F64s::splat(4_503_599_627_370_496.0 + 1023.0) - off;
    let m: F64s =
        bytemuck::cast((hx & U64s::splat(0x000f_ffff_ffff_ffff)) + U64s::splat(SQRT_HALF_BITS));
    let one = F64s::splat(1.0);
    let f = m - one;
    let s = f / (F64s::splat(2.0) + f);
    let z = s * s;
    let [c0, c1, c2, c3, c4, c5, c6] = LN_F64.map(F64s::splat);
    let r = z * z
        .mul_add(c6, c5)
        .mul_add(z, c4)
        .mul_add(z, c3)
        .mul_add(z, c2)
        .mul_add(z, c1)
        .mul_add(z, c0);
    let hfsq = F64s::splat(0.5) * f * f;
    let y =
        k * F64s::splat(LN2_HI_F64) - ((hfsq - (s * (hfsq + r) + k * F64s::splat(LN2_LO_F64))) - f);
    let zero = F64s::splat(0.0);
    let y = x.v_eq(F64s::splat(f64::INFINITY)).v_select(x, y);
    let y = x.v_eq(zero).v_select(F64s::splat(f64::NEG_INFINITY), y);
    x.v_lt(zero)
        .v_or(x.v_nan())
        .v_select(F64s::splat(f64::NAN), y)
}

/// `erfc` per lane through `libm` (the f64 fallback).
#[inline(always)]
fn erfc_f64(x: F64s) -> F64s {
    x.map(libm::erfc)
}

macro_rules! vmath {
    ($v:ty, $a:ty, $u:ty, $sh:expr, $exp:ident, $ln:ident, $erfc:ident) => {
        impl VMath<$a> for $v {
            #[inline(always)]
            fn v_erfc(self) -> Self {
                $erfc(self)
            }
            #[inline(always)]
            fn v_exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn v_ln(self) -> Self {
                $ln(self)
            }
            #[inline(always)]
            fn v_abs(self) -> Self {
                self.abs()
            }
            #[inline(always)]
            fn v_sqrt(self) -> Self {
                self.sqrt()
            }
            #[inline(always)]
            fn v_lt(self, b: Self) -> Self {
                self.simd_lt(b)
            }
            #[inline(always)]
            fn v_le(self, b: Self) -> Self {
                self.simd_le(b)
            }
            #[inline(always)]
            fn v_gt(self, b: Self) -> Self {
                self.simd_gt(b)
            }
            #[inline(always)]
            fn v_ge(self, b: Self) -> Self {
                self.simd_ge(b)
            }
            #[inline(always)]
            fn v_eq(self, b: Self) -> Self {
                self.simd_eq(b)
            }
            #[inline(always)]
            fn v_nan(self) -> Self {
                self.simd_ne(self)
            }
            #[inline(always)]
            fn v_sign(self) -> Self {
                // The sign bit broadcast: an arithmetic comparison cannot see `-0`.
                let bits: $u = bytemuck::cast(self);
                let m: $u = (bits >> $sh).simd_eq(<$u>::splat(1));
                bytemuck::cast(m)
            }
            #[inline(always)]
            fn v_or(self, b: Self) -> Self {
                self | b
            }
            #[inline(always)]
            fn v_and(self, b: Self) -> Self {
                self & b
            }
            #[inline(always)]
            fn v_select(self, t: Self, f: Self) -> Self {
                self.select(t, f)
            }
            #[inline(always)]
            fn v_any(self) -> bool {
                self.any()
            }
        }
    };
}

vmath!(F32s, f32, U32s, 31u32, exp_f32, ln_f32, erfc_f32);
vmath!(F64s, f64, U64s, 63u32, exp_f64, ln_f64, erfc_f64);
