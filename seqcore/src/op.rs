//! The closed sets of operations the kernels take, and the scalar meaning of each.
//!
//! Every backend computes these definitions; [`Unary::apply`] and friends are the definitions
//! written once, in the accumulation type, and are what the reference backend runs.

use crate::element::Real;
use crate::error::Result;

/// Normalisation over the last axis: softmax or its logarithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoftmaxKind {
    /// `y_j = exp(x_j - m) / sum_k exp(x_k - m)`, `m = max_k x_k`.
    Softmax,
    /// `y_j = x_j - m - ln sum_k exp(x_k - m)`.
    LogSoftmax,
}

impl SoftmaxKind {
    /// The mechanism name of the golden-vector format (`softmax`, `log_softmax`).
    pub const fn name(self) -> &'static str {
        match self {
            SoftmaxKind::Softmax => "softmax",
            SoftmaxKind::LogSoftmax => "log_softmax",
        }
    }
}

/// Elementwise maps `y = f(x)`.
///
/// Each is computed in the accumulation type with the formulation that stays accurate over the
/// whole range (for example GELU as `x/2 * erfc(-x/sqrt 2)`, which does not cancel for negative
/// `x`); NaN in gives NaN out.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Unary {
    /// `e^x`.
    Exp,
    /// `ln x` (NaN below 0, `-inf` at 0).
    Log,
    /// Logistic sigmoid `1 / (1 + e^-x)`.
    Sigmoid,
    /// SiLU / swish `x * sigmoid(x)` (Elfwing et al. 2017; PyTorch `silu`). `silu(-inf) = 0`.
    Silu,
    /// GELU, exact erf form `x * Phi(x)` (Hendrycks & Gimpel 2016; PyTorch's default).
    /// `gelu(-inf) = 0`.
    Gelu,
    /// GELU, tanh approximation `x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (PyTorch
    /// `approximate='tanh'`). Computed as `x * sigmoid(2 z)`, the same function without the
    /// cancellation. `gelu_tanh(-inf) = 0`.
    GeluTanh,
    /// `ln(1 + e^x)`, computed as `max(x, 0) + ln(1 + e^-|x|)` (no threshold).
    Softplus,
    /// `elu(x) + 1` with alpha 1: `x + 1` for `x > 0`, `e^x` otherwise. The positive feature map
    /// of linear attention (Katharopoulos et al. 2020, eq. 7).
    Elu1,
    /// Hyperbolic tangent.
    Tanh,
    /// `max(x, 0)`; NaN stays NaN.
    Relu,
    /// Square root (NaN below 0).
    Sqrt,
    /// `1 / x`.
    Recip,
    /// `x * x`.
    Square,
    /// `|x|`.
    Abs,
    /// `-x`.
    Neg,
    /// `x * c`; `c` must be finite.
    Scale(f64),
    /// `x + c`; `c` must be finite.
    AddScalar(f64),
}

impl Unary {
    /// Every map without a parameter, in report order.
    pub const ALL: [Unary; 15] = [
        Unary::Exp,
        Unary::Log,
        Unary::Sigmoid,
        Unary::Silu,
        Unary::Gelu,
        Unary::GeluTanh,
        Unary::Softplus,
        Unary::Elu1,
        Unary::Tanh,
        Unary::Relu,
        Unary::Sqrt,
        Unary::Recip,
        Unary::Square,
        Unary::Abs,
        Unary::Neg,
    ];

    /// The name used by reports and by the `unary` golden vectors.
    pub const fn name(self) -> &'static str {
        match self {
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Sigmoid => "sigmoid",
            Unary::Silu => "silu",
            Unary::Gelu => "gelu",
            Unary::GeluTanh => "gelu_tanh",
            Unary::Softplus => "softplus",
            Unary::Elu1 => "elu1",
            Unary::Tanh => "tanh",
            Unary::Relu => "relu",
            Unary::Sqrt => "sqrt",
            Unary::Recip => "recip",
            Unary::Square => "square",
            Unary::Abs => "abs",
            Unary::Neg => "neg",
            Unary::Scale(_) => "scale",
            Unary::AddScalar(_) => "add_scalar",
        }
    }

    /// Parses a parameterless map by [`Unary::name`].
    pub fn from_name(name: &str) -> Option<Unary> {
        Unary::ALL.into_iter().find(|u| u.name() == name)
    }

    /// Checks the parameter for computation in `R`.
    ///
    /// # Errors
    /// [`crate::Error::Param`] naming `op` when the constant of `Scale` or `AddScalar` is not finite, or
    /// not finite once rounded to `R`.
    pub fn validate<R: Real>(self) -> Result<Self> {
        match self {
            Unary::Scale(c) | Unary::AddScalar(c) => {
                crate::check::finite_in::<R>("op", c).map(|_| self)
            }
            _ => Ok(self),
        }
    }

    /// The definition: `f(x)` in the accumulation type `R`.
    pub fn apply<R: Real>(self, x: R) -> R {
        let zero = R::zero();
        let one = R::one();
        match self {
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sigmoid => sigmoid(x),
            Unary::Silu if x == R::neg_infinity() => zero,
            Unary::Silu => x * sigmoid(x),
            Unary::Gelu if x == R::neg_infinity() => zero,
            Unary::Gelu => R::lit(0.5) * x * (-x * R::lit(core::f64::consts::FRAC_1_SQRT_2)).erfc(),
            Unary::GeluTanh if x == R::neg_infinity() => zero,
            Unary::GeluTanh => {
                // sqrt(2/pi) = 2 / sqrt(2 pi)
                let c = R::lit(0.797_884_560_802_865_4);
                let z = c * (x + R::lit(0.044_715) * x * x * x);
                x * sigmoid(z + z)
            }
            Unary::Softplus => {
                let pos = if x > zero { x } else { zero };
                pos + (-x.abs()).exp().ln_1p()
            }
            Unary::Elu1 => {
                if x > zero {
                    x + one
                } else {
                    x.exp()
                }
            }
            Unary::Tanh => x.tanh(),
            Unary::Relu => {
                if x > zero || x.is_nan() {
                    x
                } else {
                    zero
                }
            }
            Unary::Sqrt => x.sqrt(),
            Unary::Recip => one / x,
            Unary::Square => x * x,
            Unary::Abs => x.abs(),
            Unary::Neg => -x,
            Unary::Scale(c) => x * R::lit(c),
            Unary::AddScalar(c) => x + R::lit(c),
        }
    }
}

/// `1 / (1 + e^-x)`, computed on the side where `e^..` cannot overflow.
fn sigmoid<R: Real>(x: R) -> R {
    if x >= R::zero() {
        R::one() / (R::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (R::one() + e)
    }
}

/// Elementwise maps of two operands `y = f(a, b)`; broadcasting is a zero-stride view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `max(a, b)`, NaN if either is NaN (PyTorch `maximum`), `+0` above `-0` (IEEE 754-2019).
    Max,
    /// `min(a, b)`, NaN if either is NaN (PyTorch `minimum`), `-0` below `+0` (IEEE 754-2019).
    Min,
}

impl Binary {
    /// Every binary map, in report order.
    pub const ALL: [Binary; 6] = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Max,
        Binary::Min,
    ];

    /// The name used by reports.
    pub const fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
            Binary::Max => "max",
            Binary::Min => "min",
        }
    }

    /// The definition, in the accumulation type.
    pub fn apply<R: Real>(self, a: R, b: R) -> R {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Max => maximum(a, b),
            Binary::Min => minimum(a, b),
        }
    }
}

/// IEEE 754-2019 `maximum`: NaN if either is NaN, and `+0` above `-0`, so the result does not
/// depend on the order of the operands.
pub(crate) fn maximum<R: Real>(a: R, b: R) -> R {
    if a.is_nan() || b.is_nan() {
        R::nan()
    } else if a > b || (a == b && b.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// IEEE 754-2019 `minimum`: NaN if either is NaN, and `-0` below `+0`.
pub(crate) fn minimum<R: Real>(a: R, b: R) -> R {
    if a.is_nan() || b.is_nan() {
        R::nan()
    } else if a < b || (a == b && a.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// Reductions over the last axis. Any NaN in a row gives NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reduce {
    /// `sum x` (0 for an empty row), summed in order in the accumulation type.
    Sum,
    /// `sum x / n` (NaN for an empty row, as PyTorch).
    Mean,
    /// Largest element (`-inf` for an empty row; `+0` above `-0`).
    Max,
    /// Smallest element (`+inf` for an empty row; `-0` below `+0`).
    Min,
    /// `ln sum e^x`, computed as `m + ln sum e^(x - m)` (`-inf` for an empty or all `-inf` row,
    /// `+inf` when the row holds `+inf`).
    LogSumExp,
    /// Euclidean norm `sqrt(sum x^2)`, scaled by the largest magnitude first so that it neither
    /// overflows nor underflows where the result is representable (LAPACK `nrm2`'s idea).
    L2Norm,
}

impl Reduce {
    /// Every reduction, in report order.
    pub const ALL: [Reduce; 6] = [
        Reduce::Sum,
        Reduce::Mean,
        Reduce::Max,
        Reduce::Min,
        Reduce::LogSumExp,
        Reduce::L2Norm,
    ];

    /// The name used by reports and by the `reduce` golden vectors.
    pub const fn name(self) -> &'static str {
        match self {
            Reduce::Sum => "sum",
            Reduce::Mean => "mean",
            Reduce::Max => "max",
            Reduce::Min => "min",
            Reduce::LogSumExp => "logsumexp",
            Reduce::L2Norm => "l2norm",
        }
    }

    /// Parses a name written by [`Reduce::name`].
    pub fn from_name(name: &str) -> Option<Reduce> {
        Reduce::ALL.into_iter().find(|r| r.name() == name)
    }

    /// True for the reductions whose result is one of the inputs, so every backend must return it
    /// exactly.
    pub const fn is_exact(self) -> bool {
        matches!(self, Reduce::Max | Reduce::Min)
    }
}
