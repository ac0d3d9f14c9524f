//! The build's vectors and the bridge from seqcore's generic element types to them.
//!
//! Every kernel computes in its accumulation type ([`Lanes`]: f32 or f64) on the widest vector
//! the build has: `f32x16`/`f64x8` with AVX-512, `f32x8`/`f64x4` otherwise (`wide` splits those
//! into 128-bit halves on SSE2). f16 and bf16 are widened to f32 when loaded and rounded once when
//! stored ([`widen`], [`narrow`]; F16C instructions when the build has them, through `half`).

use core::ops::{Add, Div, Mul, Neg, Sub};

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use seqcore::{DType, Element, Real};

/// The build's f32 vector.
#[cfg(target_feature = "avx512f")]
pub type F32s = wide::f32x16;
/// The build's f32 vector.
#[cfg(not(target_feature = "avx512f"))]
pub type F32s = wide::f32x8;
/// The build's f64 vector.
#[cfg(target_feature = "avx512f")]
pub type F64s = wide::f64x8;
/// The build's f64 vector.
#[cfg(not(target_feature = "avx512f"))]
pub type F64s = wide::f64x4;

/// Lanes of [`F32s`].
pub const F32_LANES: usize = if cfg!(target_feature = "avx512f") {
    16
} else {
    8
};
/// Lanes of [`F64s`].
pub const F64_LANES: usize = F32_LANES / 2;

/// The operations kernels use on a vector of `A` (implemented by [`F32s`] and [`F64s`] through
/// `wide`'s inherent methods).
pub trait Vector<A>:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// Every lane `x`.
    fn splat(x: A) -> Self;
    /// `self * a + b`, fused where the build has FMA (one rounding), else two roundings.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Lane-wise maximum; NaN in either operand gives the other (as `maxps` does not: `wide`'s
    /// `max` handles NaN this way on every level).
    fn max(self, b: Self) -> Self;
    /// Lane-wise minimum (NaN as [`Vector::max`]).
    fn min(self, b: Self) -> Self;
    /// Sum of the lanes (pairwise).
    fn reduce_add(self) -> A;
    /// The lanes as an array slice.
    fn lanes(&self) -> &[A];
    /// Builds a vector from the first lanes of `s`, the rest `fill`.
    fn load_or(s: &[A], fill: A) -> Self;
    /// Writes the first `min(s.len(), LANES)` lanes into `s`.
    fn store(self, s: &mut [A]);
    /// `f` applied to each lane (the scalar fallback of a vector function).
    fn map(self, f: impl Fn(A) -> A) -> Self;
    /// Lane-wise `if self == rhs { then } else { other }` (NaN equals nothing).
    fn select_eq(self, rhs: Self, then: Self, other: Self) -> Self;
    /// Lane-wise `if self > rhs { then } else { other }` (false where either is NaN).
    fn select_gt(self, rhs: Self, then: Self, other: Self) -> Self;
    /// Lane-wise absolute value.
    fn abs(self) -> Self;
}

macro_rules! vector {
    ($v:ty, $a:ty, $n:expr) => {
        impl Vector<$a> for $v {
            #[inline(always)]
            fn splat(x: $a) -> Self {
                <$v>::splat(x)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$v>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn max(self, b: Self) -> Self {
                <$v>::max(self, b)
            }
            #[inline(always)]
            fn min(self, b: Self) -> Self {
                <$v>::min(self, b)
            }
            #[inline(always)]
            fn reduce_add(self) -> $a {
                <$v>::reduce_add(self)
            }
            #[inline(always)]
            fn lanes(&self) -> &[$a] {
                self.as_array()
            }
            #[inline(always)]
            fn load_or(s: &[$a], fill: $a) -> Self {
                match <[$a; $n]>::try_from(s.get(..$n).unwrap_or(&[])) {
                    Ok(a) => <$v>::new(a),
                    Err(_) => {
                        let mut a = [fill; $n];
                        for (d, x) in a.iter_mut().zip(s) {
                            *d = *x;
                        }
                        <$v>::new(a)
                    }
                }
            }
            #[inline(always)]
            fn map(self, f: impl Fn($a) -> $a) -> Self {
                <$v>::new(self.to_array().map(f))
            }
            #[inline(always)]
            fn select_eq(self, rhs: Self, then: Self, other: Self) -> Self {
                self.simd_eq(rhs).select(then, other)
            }
            #[inline(always)]
            fn select_gt(self, rhs: Self, then: Self, other: Self) -> Self {
                self.simd_gt(rhs).select(then, other)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$v>::abs(self)
            }
            #[inline(always)]
            fn store(self, s: &mut [$a]) {
                let a = self.to_array();
                match s.get_mut(..$n) {
                    Some(d) => d.copy_from_slice(&a),
                    None => {
                        for (d, x) in s.iter_mut().zip(a) {
                            *d = x;
                        }
                    }
                }
            }
        }
    };
}
vector!(F32s, f32, F32_LANES);
vector!(F64s, f64, F64_LANES);

/// An accumulation type with its vector: f32 ([`F32s`]) or f64 ([`F64s`]).
pub trait Lanes: Real {
    /// The build's vector of `Self`.
    type V: Vector<Self> + crate::math::VMath<Self>;
    /// Lanes of [`Lanes::V`].
    const LANES: usize;
}

impl Lanes for f32 {
    type V = F32s;
    const LANES: usize = F32_LANES;
}

impl Lanes for f64 {
    type V = F64s;
    const LANES: usize = F64_LANES;
}

/// A host slice of a generic element type, as its concrete type.
#[derive(Debug)]
pub enum Typed<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// f64 elements.
    F64(&'a [f64]),
    /// f16 elements.
    F16(&'a [f16]),
    /// bf16 elements.
    Bf16(&'a [bf16]),
}

/// `s` as its concrete type, chosen by `T::DTYPE` (`None` for an element type this crate does
/// not know, which then takes the portable path).
pub fn typed<T: Element>(s: &[T]) -> Option<Typed<'_>> {
    Some(match T::DTYPE {
        DType::F32 => Typed::F32(bytemuck::try_cast_slice(s).ok()?),
        DType::F64 => Typed::F64(bytemuck::try_cast_slice(s).ok()?),
        DType::F16 => Typed::F16(bytemuck::try_cast_slice(s).ok()?),
        DType::BF16 => Typed::Bf16(bytemuck::try_cast_slice(s).ok()?),
        _ => return None,
    })
}

/// Widens `src` into `dst` (exact), element by element over `min` of the two lengths; F16C
/// conversions where the build has them.
#[inline]
pub fn widen<T: Element>(src: &[T], dst: &mut [T::Acc]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (
        src.get(..n).unwrap_or(&[]),
        dst.get_mut(..n).unwrap_or(&mut []),
    );
    let f32s: Option<&mut [f32]> = bytemuck::try_cast_slice_mut(dst).ok();
    match (T::DTYPE, f32s) {
        (DType::F16, Some(d)) if bytemuck::try_cast_slice::<T, f16>(src).is_ok() => {
            if let Ok(s) = bytemuck::try_cast_slice::<T, f16>(src) {
                s.convert_to_f32_slice(d);
            }
        }
        (DType::BF16, Some(d)) if bytemuck::try_cast_slice::<T, bf16>(src).is_ok() => {
            if let Ok(s) = bytemuck::try_cast_slice::<T, bf16>(src) {
                s.convert_to_f32_slice(d);
            }
        }
        _ => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = s.to_acc();
            }
        }
    }
}

/// Rounds `src` into `dst` once, to nearest, ties to even (overflow gives ±inf), over `min` of
/// the two lengths.
#[inline]
pub fn narrow<T: Element>(src: &[T::Acc], dst: &mut [T]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (
        src.get(..n).unwrap_or(&[]),
        dst.get_mut(..n).unwrap_or(&mut []),
    );
    let f32s: Option<&[f32]> = bytemuck::try_cast_slice(src).ok();
    match (T::DTYPE, f32s) {
        (DType::F16, Some(s)) if bytemuck::try_cast_slice::<T, f16>(dst).is_ok() => {
            if let Ok(d) = bytemuck::try_cast_slice_mut::<T, f16>(dst) {
                d.convert_from_f32_slice(s);
            }
        }
        (DType::BF16, Some(s)) if bytemuck::try_cast_slice::<T, bf16>(dst).is_ok() => {
            if let Ok(d) = bytemuck::try_cast_slice_mut::<T, bf16>(dst) {
                d.convert_from_f32_slice(s);
            }
        }
        _ => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = T::from_acc(*s);
            }
        }
    }
}
