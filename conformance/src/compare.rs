//! Comparing a backend's output with the f64 reference: structure first (NaN and infinities
//! where the reference has them), then the normalised error `sum((a-b)^2)/sum(b^2)`, the largest
//! absolute error, and a per-element bound `|a - b| <= atol_i + rtol_i * |b|`.

use crate::Failure;

/// How far an output is from its reference, in f64.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Agreement {
    /// Normalised error `sum((a-b)^2) / sum(b^2)` over the finite elements (0 when both are 0).
    pub nmse: f64,
    /// Largest `|a - b|` over the finite elements.
    pub max_abs: f64,
    /// Where `max_abs` was found (row-major index).
    pub max_abs_index: usize,
    /// Largest `|a - b| / (atol_i + rtol_i |b|)`: at most 1 when every element is within bounds.
    pub worst_ratio: f64,
    /// Elements compared.
    pub count: usize,
}

impl Agreement {
    /// The worse of two agreements (for summaries over many cases).
    pub fn worst(self, other: Agreement) -> Agreement {
        Agreement {
            nmse: self.nmse.max(other.nmse),
            max_abs: self.max_abs.max(other.max_abs),
            max_abs_index: if other.max_abs > self.max_abs {
                other.max_abs_index
            } else {
                self.max_abs_index
            },
            worst_ratio: self.worst_ratio.max(other.worst_ratio),
            count: self.count + other.count,
        }
    }
}

/// A per-element bound: `|a - b| <= atol + rtol * |b|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
}

impl Bound {
    /// Exact equality.
    pub const EXACT: Bound = Bound {
        atol: 0.0,
        rtol: 0.0,
    };
}

/// Compares `got` with `expected` element by element: NaN and infinities must sit at the same
/// places (infinities with the same sign), then every finite pair must satisfy `bound(i)`; where
/// the bound is exact, a zero's sign must match as well.
///
/// # Errors
/// [`Failure::Structure`] or [`Failure::Tolerance`] naming the first or worst element.
pub fn compare(
    arg: &'static str,
    got: &[f64],
    expected: &[f64],
    bound: impl Fn(usize) -> Bound,
) -> Result<Agreement, Failure> {
    if got.len() != expected.len() {
        return Err(Failure::Setup(format!(
            "`{arg}`: {} values, expected {}",
            got.len(),
            expected.len()
        )));
    }
    let mut a = Agreement {
        count: got.len(),
        ..Agreement::default()
    };
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut worst: Option<(usize, f64, f64, Bound)> = None;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let structural_ok = if e.is_nan() {
            g.is_nan()
        } else if e.is_infinite() {
            g == e
        } else {
            g.is_finite()
        };
        if !structural_ok {
            return Err(Failure::Structure {
                arg,
                index: i,
                got: g,
                expected: e,
            });
        }
        if !e.is_finite() {
            continue;
        }
        let d = (g - e).abs();
        num += d * d;
        den += e * e;
        if d > a.max_abs {
            a.max_abs = d;
            a.max_abs_index = i;
        }
        let b = bound(i);
        if b == Bound::EXACT && g == 0.0 && e == 0.0 && g.is_sign_negative() != e.is_sign_negative()
        {
            // An exact output carries its zero's sign too (max/min, moved values, casts).
            return Err(Failure::Structure {
                arg,
                index: i,
                got: g,
                expected: e,
            });
        }
        let limit = b.atol + b.rtol * e.abs();
        let ratio = if d == 0.0 {
            0.0
        } else if limit > 0.0 {
            d / limit
        } else {
            f64::INFINITY
        };
        if ratio > a.worst_ratio {
            a.worst_ratio = ratio;
            worst = Some((i, g, e, b));
        }
    }
    a.nmse = if num == 0.0 {
        0.0
    } else if den > 0.0 {
        num / den
    } else {
        f64::INFINITY
    };
    match worst {
        Some((index, got, expected, bound)) if a.worst_ratio > 1.0 => Err(Failure::Tolerance {
            arg,
            index,
            got,
            expected,
            bound,
            agreement: a,
        }),
        _ => Ok(a),
    }
}

/// Exact comparison of discrete outputs (indices).
///
/// # Errors
/// [`Failure::Discrete`] at the first difference.
pub fn compare_exact(arg: &'static str, got: &[u32], expected: &[u32]) -> Result<(), Failure> {
    if got.len() != expected.len() {
        return Err(Failure::Setup(format!(
            "`{arg}`: {} values, expected {}",
            got.len(),
            expected.len()
        )));
    }
    match got.iter().zip(expected).position(|(g, e)| g != e) {
        Some(index) => Err(Failure::Discrete {
            arg,
            index,
            got: got.get(index).copied().unwrap_or(0),
            expected: expected.get(index).copied().unwrap_or(0),
        }),
        None => Ok(()),
    }
}
