//! Reductions over the last axis.

use proptest::prelude::*;
use seqcore::{Allocate, Backend, Element, Reduce, Reference};

use super::{Bench, Work, bytes, expected_in, gate, out_layout};
use crate::compare::{Agreement, compare};
use crate::harness::{Input, Output, Tensor, widen};
use crate::properties::elementwise::ALL_SPECIALS;
use crate::strategies::{Specials, Storage, dim, storage, tensor};
use crate::{Failure, tolerance};

/// One reduction call.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// The reduction.
    pub op: Reduce,
    /// The operand `[.., n]`.
    pub x: Tensor,
    /// How `y` is laid out.
    pub y: Storage,
}

/// Runs `case` on `b` in `T` and compares with the f64 reference.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let shape = case.x.shape().to_vec();
    let out_shape = shape
        .get(..shape.len().saturating_sub(1))
        .unwrap_or(&[])
        .to_vec();
    let x = case.x.rounded::<T>();
    let n = shape.last().copied().unwrap_or(1);
    let r = Reference;
    let mut want = vec![0.0f64; out_shape.iter().product()];
    r.reduce(
        case.op,
        r.view(&x, &shape).map_err(Failure::setup)?,
        r.view_mut(&mut want, &out_shape).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let xin = Input::<B, T>::new(b, &case.x)?;
    let mut out = Output::<B, T>::new(b, &out_layout(&out_shape, case.y)?, None)?;
    b.reduce(case.op, xin.view()?, out.view()?)
        .map_err(Failure::Kernel)?;
    let got = widen(&out.finish(b, "y")?);
    let bound = |i: usize| {
        let row = x.get(i * n..(i + 1) * n).unwrap_or(&[]);
        tolerance::reduce::<T>(case.op, row)
    };
    let a = compare("y", &got, &expected_in::<T>(&want), bound)?;
    gate("y", a, tolerance::nmse_max::<T>())
}

/// Reduction cases: rank 1 to 3 (rank 1 reduces to a scalar), empty rows, every special. Sums
/// and means get no huge values, whose partial sums would overflow the accumulator.
pub fn cases() -> impl Strategy<Value = Case> {
    let op = proptest::sample::select(Reduce::ALL.to_vec());
    (
        op,
        proptest::collection::vec(dim(12), 0..=2),
        dim(140),
        storage(),
    )
        .prop_flat_map(|(op, mut s, n, y)| {
            s.push(n);
            let huge = !matches!(op, Reduce::Sum | Reduce::Mean);
            tensor(
                s,
                4.0,
                Specials {
                    huge,
                    ..ALL_SPECIALS
                },
            )
            .prop_map(move |x| Case { op, x, y })
        })
}

/// Fixed edge cases: empty rows, an all `-inf` row, and an L2 norm whose squares overflow f32.
///
/// # Errors
/// Never.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let mut v = Vec::new();
    for op in Reduce::ALL {
        let c = |x: Tensor| Case {
            op,
            x,
            y: Storage::Contiguous,
        };
        v.push(c(Tensor::contiguous(&[3, 0], vec![])?));
        v.push(c(Tensor::contiguous(&[2, 2], vec![f64::NEG_INFINITY; 4])?));
        v.push(c(Tensor::contiguous(&[1, 2], vec![3e30, 4e30])?));
        v.push(c(Tensor::contiguous(&[1, 3], vec![1e4, -1e4, 9.99e3])?));
    }
    Ok(v)
}

/// Timing setup: `op` over `rows x n`.
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(
    b: &'a B,
    op: Reduce,
    rows: usize,
    n: usize,
) -> Result<Bench<'a>, Failure> {
    let x = Input::<B, T>::new(
        b,
        &Tensor::contiguous(
            &[rows, n],
            (0..rows * n).map(|i| (i % 53) as f64 / 9.0).collect(),
        )?,
    )?;
    let mut y = Output::<B, T>::new(b, &out_layout(&[rows], Storage::Contiguous)?, None)?;
    Ok(Bench {
        run: Box::new(move || b.reduce(op, x.view()?, y.view()?).map_err(Failure::Kernel)),
        work: Work::Bytes(bytes::<T>(rows * n + rows)),
        size: format!("{rows}x{n}"),
    })
}
