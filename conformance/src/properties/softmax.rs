//! Softmax and log-softmax over rows, with an optional additive mask.

use proptest::prelude::*;
use seqcore::{Allocate, Backend, Element, Reference, SoftmaxKind};

use super::{Bench, Work, bytes, expected_in, gate, out_layout};
use crate::compare::{Agreement, compare};
use crate::harness::{Input, Output, Tensor, widen};
use crate::strategies::{Specials, Storage, dim, storage, tensor};
use crate::{Failure, tolerance};

/// One softmax call.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Softmax or log-softmax.
    pub kind: SoftmaxKind,
    /// Logits `[.., n]`.
    pub x: Tensor,
    /// Additive mask of `x`'s shape (may hold `-inf`).
    pub mask: Option<Tensor>,
    /// How the output is laid out.
    pub y: Storage,
}

/// Runs `case` on `b` in `T` and compares with the f64 reference.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let shape = case.x.shape().to_vec();
    let x = case.x.rounded::<T>();
    let mask = case.mask.as_ref().map(|m| m.rounded::<T>());
    let r = Reference;
    let mut want = vec![0.0f64; x.len()];
    {
        let mv = match &mask {
            Some(m) => Some(r.view(m, &shape).map_err(Failure::setup)?),
            None => None,
        };
        r.softmax(
            case.kind,
            r.view(&x, &shape).map_err(Failure::setup)?,
            mv,
            r.view_mut(&mut want, &shape).map_err(Failure::setup)?,
        )
        .map_err(Failure::setup)?;
    }
    let xin = Input::<B, T>::new(b, &case.x)?;
    let min = match &case.mask {
        Some(m) => Some(Input::<B, T>::new(b, m)?),
        None => None,
    };
    let mut out = Output::<B, T>::new(b, &out_layout(&shape, case.y)?, None)?;
    let mview = match &min {
        Some(m) => Some(m.view()?),
        None => None,
    };
    b.softmax(case.kind, xin.view()?, mview, out.view()?)
        .map_err(Failure::Kernel)?;
    let got = widen(&out.finish(b, "y")?);

    // Per-row quantities of the bound, from the inputs as the backend saw them.
    let n = shape.last().copied().unwrap_or(1).max(1);
    let rows: Vec<(f64, f64)> = x
        .chunks(n)
        .enumerate()
        .map(|(ri, row)| {
            let z = |j: usize| {
                let mv = mask.as_ref().and_then(|m| m.get(ri * n + j)).copied();
                row.get(j).copied().unwrap_or(0.0) + mv.unwrap_or(0.0)
            };
            let m = (0..row.len()).map(z).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..row.len()).map(|j| (z(j) - m).exp()).sum();
            (m, s.ln())
        })
        .collect();
    let log = case.kind == SoftmaxKind::LogSoftmax;
    let bound = |i: usize| {
        let (ri, j) = (i / n, i % n);
        let (m, log_sum) = rows.get(ri).copied().unwrap_or((0.0, 0.0));
        let xv = x.get(i).copied().unwrap_or(0.0);
        let mv = mask.as_ref().and_then(|mm| mm.get(ri * n + j)).copied();
        let z = xv + mv.unwrap_or(0.0);
        let mask_term = mv.map_or(0.0, |mv| xv.abs() + mv.abs() + m.abs());
        tolerance::softmax::<T>(log, n, z - m, log_sum, mask_term)
    };
    let a = compare("y", &got, &expected_in::<T>(&want), bound)?;
    gate("y", a, tolerance::nmse_max::<T>())
}

/// Softmax cases: rows of every awkward length, masks with `-inf` (whole rows too), NaN, `+inf`
/// and logits near 1e4 and 3e38, in strided storage.
pub fn cases() -> impl Strategy<Value = Case> {
    let kind = prop_oneof![Just(SoftmaxKind::Softmax), Just(SoftmaxKind::LogSoftmax)];
    (
        kind,
        1usize..5,
        dim(140),
        any::<bool>(),
        storage(),
        any::<bool>(),
    )
        .prop_flat_map(|(kind, rows, n, masked, y, special)| {
            let sp = Specials {
                neg_inf: true,
                pos_inf: special,
                nan: special,
                huge: true,
            };
            let x = tensor(vec![rows, n], 3.0, sp);
            let mask = if masked {
                tensor(
                    vec![rows, n],
                    1.0,
                    Specials {
                        neg_inf: true,
                        ..Specials::default()
                    },
                )
                .prop_map(Some)
                .boxed()
            } else {
                Just(None).boxed()
            };
            (x, mask).prop_map(move |(x, mask)| Case { kind, x, mask, y })
        })
}

/// Fixed edge cases: empty and length-1 rows, a fully masked row, a row of 4096 equal logits.
///
/// # Errors
/// Never for these shapes.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let inf = f64::NEG_INFINITY;
    let mut v = Vec::new();
    for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
        let c = |x: Tensor, mask: Option<Tensor>| Case {
            kind,
            x,
            mask,
            y: Storage::Contiguous,
        };
        v.push(c(Tensor::contiguous(&[2, 0], vec![])?, None));
        v.push(c(Tensor::contiguous(&[3, 1], vec![0.5, inf, -2.0])?, None));
        v.push(c(
            Tensor::contiguous(&[2, 3], vec![inf, inf, inf, 1.0, 2.0, 3.0])?,
            None,
        ));
        v.push(c(
            Tensor::contiguous(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?,
            Some(Tensor::contiguous(
                &[2, 3],
                vec![inf, inf, inf, 0.0, inf, 0.0],
            )?),
        ));
        v.push(c(Tensor::contiguous(&[1, 4096], vec![0.25; 4096])?, None));
        v.push(c(
            Tensor::contiguous(&[1, 3], vec![1e4, -1e4, 9.99e3])?,
            None,
        ));
        v.push(c(Tensor::contiguous(&[1, 3], vec![0.0, -1e30, 1.0])?, None));
    }
    Ok(v)
}

/// Timing setup: `kind` over `rows x n`.
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(
    b: &'a B,
    kind: SoftmaxKind,
    rows: usize,
    n: usize,
) -> Result<Bench<'a>, Failure> {
    let vals: Vec<f64> = (0..rows * n)
        .map(|i| ((i * 7919) % 1000) as f64 / 100.0 - 5.0)
        .collect();
    let x = Input::<B, T>::new(b, &Tensor::contiguous(&[rows, n], vals)?)?;
    let mut y = Output::<B, T>::new(b, &out_layout(&[rows, n], Storage::Contiguous)?, None)?;
    Ok(Bench {
        run: Box::new(move || {
            b.softmax(kind, x.view()?, None, y.view()?)
                .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(2.0 * bytes::<T>(rows * n)),
        size: format!("{rows}x{n}"),
    })
}
