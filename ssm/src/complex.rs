//! A small complex type in f64: the parameter side of every model here (discretisation, kernel
//! generation, the Cauchy kernel) is computed in f64 and rounded once into the accumulation type
//! of the kernels.

use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A complex number `re + i im` in f64.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Complex {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

impl Complex {
    /// `0`.
    pub const ZERO: Complex = Complex { re: 0.0, im: 0.0 };
    /// `1`.
    pub const ONE: Complex = Complex { re: 1.0, im: 0.0 };
    /// `i`.
    pub const I: Complex = Complex { re: 0.0, im: 1.0 };

    /// `re + i im`.
    pub const fn new(re: f64, im: f64) -> Complex {
        Complex { re, im }
    }

    /// A real number.
    pub const fn real(re: f64) -> Complex {
        Complex { re, im: 0.0 }
    }

    /// The conjugate.
    pub fn conj(self) -> Complex {
        Complex::new(self.re, -self.im)
    }

    /// `|z|^2`.
    pub fn norm_sqr(self) -> f64 {
        self.re * self.re + self.im * self.im
    }

    /// `|z|` (without undue overflow).
    pub fn abs(self) -> f64 {
        libm::hypot(self.re, self.im)
    }

    /// `e^z`.
    pub fn exp(self) -> Complex {
        let m = libm::exp(self.re);
        let (s, c) = libm::sincos(self.im);
        Complex::new(m * c, m * s)
    }

    /// `e^z - 1`, accurate when `z` is near 0 (and when only its real part is):
    /// `Re = expm1(x) cos y - 2 sin^2(y/2)`, `Im = e^x sin y`.
    pub fn exp_m1(self) -> Complex {
        let (s, c) = libm::sincos(self.im);
        let sh = libm::sin(0.5 * self.im);
        Complex::new(
            libm::expm1(self.re) * c - 2.0 * sh * sh,
            libm::exp(self.re) * s,
        )
    }

    /// Principal logarithm `ln|z| + i arg z`.
    pub fn ln(self) -> Complex {
        Complex::new(libm::log(self.abs()), libm::atan2(self.im, self.re))
    }

    /// `1/z`.
    pub fn recip(self) -> Complex {
        Complex::ONE / self
    }

    /// `z * s` for a real `s`.
    pub fn scale(self, s: f64) -> Complex {
        Complex::new(self.re * s, self.im * s)
    }

    /// True when both parts are finite.
    pub fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

impl Add for Complex {
    type Output = Complex;
    fn add(self, o: Complex) -> Complex {
        Complex::new(self.re + o.re, self.im + o.im)
    }
}
impl Sub for Complex {
    type Output = Complex;
    fn sub(self, o: Complex) -> Complex {
        Complex::new(self.re - o.re, self.im - o.im)
    }
}
impl Mul for Complex {
    type Output = Complex;
    fn mul(self, o: Complex) -> Complex {
        Complex::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}
impl Div for Complex {
    type Output = Complex;
    /// Smith's algorithm (no overflow of `|o|^2` for large operands).
    fn div(self, o: Complex) -> Complex {
        if o.re.abs() >= o.im.abs() {
            let r = o.im / o.re;
            let d = o.re + o.im * r;
            Complex::new((self.re + self.im * r) / d, (self.im - self.re * r) / d)
        } else {
            let r = o.re / o.im;
            let d = o.re * r + o.im;
            Complex::new((self.re * r + self.im) / d, (self.im * r - self.re) / d)
        }
    }
}
impl Neg for Complex {
    type Output = Complex;
    fn neg(self) -> Complex {
        Complex::new(-self.re, -self.im)
    }
}
impl AddAssign for Complex {
    fn add_assign(&mut self, o: Complex) {
        *self = *self + o;
    }
}
impl SubAssign for Complex {
    fn sub_assign(&mut self, o: Complex) {
        *self = *self - o;
    }
}
impl MulAssign for Complex {
    fn mul_assign(&mut self, o: Complex) {
        *self = *self * o;
    }
}
