//! Argument checks shared by every backend, so that each rejects the same inputs with the same
//! [`Error`]. A backend calls these first, then runs its kernel on arguments known to be sound.

use crate::element::Real;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// `got` must have exactly the extents `expected`; `arg` names it in the error.
///
/// # Errors
/// [`Error::Rank`] or [`Error::Shape`] naming `arg`.
pub fn shape(arg: &'static str, got: &Layout, expected: &[usize]) -> Result<()> {
    let r = expected.len();
    if got.rank() != r {
        return Err(Error::Rank {
            arg,
            got: got.rank(),
            min: r,
            max: r,
        });
    }
    for (axis, (&g, &e)) in got.shape().iter().zip(expected).enumerate() {
        if g != e {
            return Err(Error::Shape {
                arg,
                axis,
                got: g,
                expected: e,
                shape: got.dims(),
            });
        }
    }
    Ok(())
}

/// A finite parameter.
///
/// # Errors
/// [`Error::Param`] naming `arg` when `x` is NaN or infinite.
pub fn finite(arg: &'static str, x: f64) -> Result<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Error::Param {
            arg,
            reason: "must be finite",
        })
    }
}

/// A finite parameter as the accumulation type `R` holds it (`1e300` is finite in f64 but not in
/// f32).
///
/// # Errors
/// [`Error::Param`] naming `arg` when `x`, or `x` rounded to `R`, is NaN or infinite.
pub fn finite_in<R: Real>(arg: &'static str, x: f64) -> Result<R> {
    let r = R::lit(finite(arg, x)?);
    if r.is_finite() {
        Ok(r)
    } else {
        Err(Error::Param {
            arg,
            reason: "must be finite in the accumulation type",
        })
    }
}

/// The extents of a (batched) matrix product `c[.., m, n] = a[.., m, k] b[.., k, n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmDims {
    /// Batch count (1 for rank-2 operands).
    pub batch: usize,
    /// Rows of `a` and `c`.
    pub m: usize,
    /// Columns of `b` and `c`.
    pub n: usize,
    /// The contracted extent.
    pub k: usize,
}

/// Checks the operands of [`crate::Backend::gemm`]: all rank 2, or all rank 3 with one batch
/// extent; `a [.., m, k]`, `b [.., k, n]`, `c [.., m, n]`.
///
/// # Errors
/// [`Error::Rank`] or [`Error::Shape`] naming the operand at fault.
pub fn gemm(a: &Layout, b: &Layout, c: &Layout) -> Result<GemmDims> {
    let r = a.rank();
    if !(2..=3).contains(&r) {
        return Err(Error::Rank {
            arg: "a",
            got: r,
            min: 2,
            max: 3,
        });
    }
    let (batch, m, k) = match *a.shape() {
        [m, k] => (1, m, k),
        [bt, m, k] => (bt, m, k),
        _ => {
            return Err(Error::Rank {
                arg: "a",
                got: r,
                min: 2,
                max: 3,
            });
        }
    };
    let n = b.shape().last().copied().unwrap_or(0);
    let (bs, cs) = if r == 3 {
        ([batch, k, n], [batch, m, n])
    } else {
        ([k, n, 0], [m, n, 0])
    };
    shape("b", b, bs.get(..r).unwrap_or(&[]))?;
    shape("c", c, cs.get(..r).unwrap_or(&[]))?;
    Ok(GemmDims { batch, m, n, k })
}

/// Checks a row-wise kernel whose output has the input's shape with the last axis replaced by
/// `out_len` (`None`: dropped). Returns the row length of `x`.
///
/// # Errors
/// [`Error::Rank`] or [`Error::Shape`] naming `arg`.
pub fn rows(x: &Layout, arg: &'static str, y: &Layout, out_len: Option<usize>) -> Result<usize> {
    let (rows, len, _) = x.split_last();
    let mut want = [0usize; crate::MAX_RANK];
    let r = rows.rank();
    for (w, &s) in want.iter_mut().zip(rows.shape()) {
        *w = s;
    }
    let r = match out_len {
        Some(k) => {
            if x.rank() == 0 {
                return Err(Error::Rank {
                    arg: "x",
                    got: 0,
                    min: 1,
                    max: crate::MAX_RANK,
                });
            }
            if let Some(w) = want.get_mut(r) {
                *w = k;
            }
            r + 1
        }
        None => r,
    };
    shape(arg, y, want.get(..r).unwrap_or(&[]))?;
    Ok(len)
}

/// The checks of `Backend::top_k`: `values` and `indices` shaped as `x` with rows of `k`,
/// `k <= n` and `n` indexable by `u32`. Returns the row length `n`.
///
/// # Errors
/// [`Error::Rank`] or [`Error::Shape`] naming `values` or `indices`; [`Error::Param`] naming `k`
/// past the row length, or `x` for rows longer than `u32::MAX`.
pub fn top_k(x: &Layout, values: &Layout, indices: &Layout, k: usize) -> Result<usize> {
    let n = rows(x, "values", values, Some(k))?;
    rows(x, "indices", indices, Some(k))?;
    if k > n {
        return Err(Error::Param {
            arg: "k",
            reason: "must not exceed the row length",
        });
    }
    if u32::try_from(n).is_err() {
        return Err(Error::Param {
            arg: "x",
            reason: "rows longer than u32::MAX cannot be indexed",
        });
    }
    Ok(n)
}

/// The checks of `Backend::attention_merge`: `o_b` and `o` shaped as `o_a`, each `lse` its rows.
///
/// # Errors
/// [`Error::Rank`] or [`Error::Shape`] naming `o_b`, `o`, `lse_a`, `lse_b` or `lse`.
pub fn attention_merge(
    o_a: &Layout,
    lse_a: &Layout,
    o_b: &Layout,
    lse_b: &Layout,
    o: &Layout,
    lse: Option<&Layout>,
) -> Result<()> {
    shape("o_b", o_b, o_a.shape())?;
    shape("o", o, o_a.shape())?;
    rows(o_a, "lse_a", lse_a, None)?;
    rows(o_a, "lse_b", lse_b, None)?;
    if let Some(l) = lse {
        rows(o_a, "lse", l, None)?;
    }
    Ok(())
}
