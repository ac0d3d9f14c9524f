//! Element types: what a backend stores ([`Scalar`]) and what it computes with ([`Element`],
//! [`Real`]).
//!
//! f16 and bf16 are storage types only: every kernel converts them to their accumulation type
//! ([`Element::Acc`], f32) before any arithmetic and rounds once on the way out. f32 accumulates in
//! f32 and f64 in f64, so the reference backend run at f64 is the oracle of the project.

use core::fmt::{Debug, Display};
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

use half::{bf16, f16};

/// A plain value that backend memory can hold: floats, and the integers used for indices and
/// quantised data. `bytemuck::Pod` so that any backend can move it as bytes.
pub trait Scalar: bytemuck::Pod + Default + PartialEq + Debug + Send + Sync + 'static {
    /// The name printed in reports and errors (`"f32"`, `"u32"`, ...).
    const NAME: &'static str;
}

macro_rules! scalar {
    ($($t:ty => $n:literal),* $(,)?) => { $(impl Scalar for $t { const NAME: &'static str = $n; })* };
}
scalar!(f32 => "f32", f64 => "f64", f16 => "f16", bf16 => "bf16", u8 => "u8", i8 => "i8", u32 => "u32", i32 => "i32");

/// The floating-point element types of the project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary64.
    F64,
    /// IEEE 754 binary16 (storage only; computed in f32).
    F16,
    /// bfloat16 (storage only; computed in f32).
    BF16,
}

impl DType {
    /// Every floating-point element type, in report order.
    pub const ALL: [DType; 4] = [DType::F64, DType::F32, DType::F16, DType::BF16];

    /// The short name used by reports and golden-vector files (`f32`, `f64`, `f16`, `bf16`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// Parses a name as written by [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Unit round-off `u = 2^-p` (half the machine epsilon): the largest relative error of one
    /// correctly rounded operation.
    pub const fn unit_roundoff(self) -> f64 {
        match self {
            DType::F32 => 5.960_464_477_539_063e-8,
            DType::F64 => 1.110_223_024_625_156_5e-16,
            DType::F16 => 4.882_812_5e-4,
            DType::BF16 => 3.906_25e-3,
        }
    }

    /// The dtype arithmetic is carried out in: f64 for f64, f32 for the others.
    pub const fn accumulator(self) -> DType {
        match self {
            DType::F64 => DType::F64,
            _ => DType::F32,
        }
    }
}

impl Display for DType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A floating-point element type: f32, f64, `half::f16` or `half::bf16`.
///
/// Conversions through f64 are exact on the way in and correctly rounded (to nearest, ties to
/// even) on the way out, so `from_f64(to_f64(x)) == x` and a cast rounds once.
pub trait Element: Scalar + PartialOrd + Display {
    /// The type arithmetic is carried out in: f32 for f16, bf16 and f32; f64 for f64.
    type Acc: Real;
    /// This type's tag.
    const DTYPE: DType;
    /// Widens to the accumulation type (exact).
    fn to_acc(self) -> Self::Acc;
    /// Rounds from the accumulation type to nearest, ties to even; overflow gives ±inf.
    fn from_acc(x: Self::Acc) -> Self;
    /// Widens to f64 (exact for every element type).
    fn to_f64(self) -> f64;
    /// Rounds an f64 to nearest, ties to even, in one step (no double rounding).
    fn from_f64(x: f64) -> Self;
}

/// The accumulation types, f32 and f64: IEEE arithmetic and the functions the kernels need.
///
/// The transcendental functions are `libm`'s, with and without `std`, so a result depends neither
/// on this crate's features nor on the platform's C library (std's `f32::exp` calls the system
/// `libm`, whose last bits vary between platforms).
pub trait Real:
    Element<Acc = Self>
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
{
    /// Converts an f64 constant (rounded to nearest).
    fn lit(x: f64) -> Self;
    /// `0`.
    fn zero() -> Self;
    /// `1`.
    fn one() -> Self;
    /// `+inf`.
    fn infinity() -> Self;
    /// `-inf`.
    fn neg_infinity() -> Self;
    /// A quiet NaN.
    fn nan() -> Self;
    /// `e^x`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + x)`, accurate near 0.
    fn ln_1p(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Complementary error function `1 - erf(x)`, accurate where `erf(x)` is near 1.
    fn erfc(self) -> Self;
    /// `|x|`.
    fn abs(self) -> Self;
    /// True for NaN.
    fn is_nan(self) -> bool;
    /// True for `+inf` and `-inf`.
    fn is_infinite(self) -> bool;
    /// True for everything but NaN and infinities.
    fn is_finite(self) -> bool;
    /// True when the sign bit is set (`-0.0` included).
    fn is_sign_negative(self) -> bool;
}

impl Element for f32 {
    type Acc = f32;
    const DTYPE: DType = DType::F32;
    fn to_acc(self) -> f32 {
        self
    }
    fn from_acc(x: f32) -> f32 {
        x
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[allow(clippy::cast_possible_truncation)] // `as` rounds to nearest even: that is the intent
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
}

impl Element for f64 {
    type Acc = f64;
    const DTYPE: DType = DType::F64;
    fn to_acc(self) -> f64 {
        self
    }
    fn from_acc(x: f64) -> f64 {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> f64 {
        x
    }
}

macro_rules! half_element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            type Acc = f32;
            const DTYPE: DType = $d;
            fn to_acc(self) -> f32 {
                self.to_f32()
            }
            fn from_acc(x: f32) -> Self {
                <$t>::from_f32(x)
            }
            fn to_f64(self) -> f64 {
                <$t>::to_f64(self)
            }
            fn from_f64(x: f64) -> Self {
                // Not `<$t>::from_f64`: half 2.7 ignores the low 32 bits of the f64 (a value
                // just past a tie rounds the wrong way) and goes through `as f32` with `f16c`.
                <$t>::from_f32(f64_to_f32_round_to_odd(x))
            }
        }
    };
}
/// `x` rounded to f32 *to odd*: exact values are kept, an inexact one becomes the neighbour whose
/// last significand bit is 1. f32 has at least two more bits than f16 and bf16 at every exponent,
/// so rounding this to nearest-even in f16 or bf16 equals rounding `x` once (Boldo & Melquiond,
/// "Emulation of FMA and correctly rounded sums: proved algorithms using rounding to odd", 2008).
/// Overflow past f32 gives ±inf, which f16 and bf16 would round to as well.
#[allow(clippy::cast_possible_truncation)] // rounds to nearest, then corrected: the intent
fn f64_to_f32_round_to_odd(x: f64) -> f32 {
    let f = x as f32;
    if !f.is_finite() || f64::from(f) == x {
        return f;
    }
    let mut bits = f.to_bits();
    if f64::from(f).abs() > x.abs() {
        // Rounded away from zero: step back to the truncation (|f| > 0 here, so bits > 0).
        bits -= 1;
    }
    f32::from_bits(bits | 1)
}

half_element!(f16, DType::F16);
half_element!(bf16, DType::BF16);

macro_rules! real {
    ($t:ident, $exp:path, $ln:path, $ln1p:path, $tanh:path, $sqrt:path, $erfc:path, $abs:path) => {
        impl Real for $t {
            #[allow(clippy::cast_possible_truncation)] // rounds to nearest: the intent
            fn lit(x: f64) -> $t {
                x as $t
            }
            fn zero() -> $t {
                0.0
            }
            fn one() -> $t {
                1.0
            }
            fn infinity() -> $t {
                $t::INFINITY
            }
            fn neg_infinity() -> $t {
                $t::NEG_INFINITY
            }
            fn nan() -> $t {
                $t::NAN
            }
            fn exp(self) -> $t {
                $exp(self)
            }
            fn ln(self) -> $t {
                $ln(self)
            }
            fn ln_1p(self) -> $t {
                $ln1p(self)
            }
            fn tanh(self) -> $t {
                $tanh(self)
            }
            fn sqrt(self) -> $t {
                $sqrt(self)
            }
            fn erfc(self) -> $t {
                $erfc(self)
            }
            fn abs(self) -> $t {
                $abs(self)
            }
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            fn is_infinite(self) -> bool {
                $t::is_infinite(self)
            }
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
            fn is_sign_negative(self) -> bool {
                $t::is_sign_negative(self)
            }
        }
    };
}
real!(
    f32,
    libm::expf,
    libm::logf,
    libm::log1pf,
    libm::tanhf,
    libm::sqrtf,
    libm::erfcf,
    libm::fabsf
);
real!(
    f64,
    libm::exp,
    libm::log,
    libm::log1p,
    libm::tanh,
    libm::sqrt,
    libm::erfc,
    libm::fabs
);
