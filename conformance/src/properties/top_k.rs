//! Top-k along the last axis: values and indices must equal the reference exactly.

use proptest::prelude::*;
use seqcore::{Allocate, Backend, Element, Reference};

use super::{Bench, Work, bytes, out_layout};
use crate::Failure;
use crate::compare::{Agreement, Bound, compare, compare_exact};
use crate::harness::{Input, Output, Tensor, widen};
use crate::strategies::{Specials, Storage, dim_nonzero, storage, tensor, value};

/// One top-k call.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// How many.
    pub k: usize,
    /// The operand `[.., n]`.
    pub x: Tensor,
    /// How the outputs are laid out.
    pub out: Storage,
}

/// Runs `case` on `b` in `T`; values and indices must match the reference exactly.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let shape = case.x.shape().to_vec();
    let mut out_shape = shape.clone();
    if let Some(l) = out_shape.last_mut() {
        *l = case.k;
    }
    let x = case.x.rounded::<T>();
    let r = Reference;
    let len: usize = out_shape.iter().product();
    let (mut wv, mut wi) = (vec![0.0f64; len], vec![0u32; len]);
    r.top_k(
        case.k,
        r.view(&x, &shape).map_err(Failure::setup)?,
        r.view_mut(&mut wv, &out_shape).map_err(Failure::setup)?,
        r.view_mut(&mut wi, &out_shape).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let xin = Input::<B, T>::new(b, &case.x)?;
    let ol = out_layout(&out_shape, case.out)?;
    let mut ov = Output::<B, T>::new(b, &ol, None)?;
    let mut oi = Output::<B, u32>::new(b, &ol, None)?;
    b.top_k(case.k, xin.view()?, ov.view()?, oi.view()?)
        .map_err(Failure::Kernel)?;
    compare_exact("indices", &oi.finish(b, "indices")?, &wi)?;
    compare("values", &widen(&ov.finish(b, "values")?), &wv, |_| {
        Bound::EXACT
    })
}

/// Top-k cases: ties (values from a small set), NaN, infinities, k from 0 to n.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(dim_nonzero(6), 0..=2),
        dim_nonzero(70),
        storage(),
        any::<bool>(),
    )
        .prop_flat_map(|(mut s, n, out, ties)| {
            s.push(n);
            let sp = Specials {
                neg_inf: true,
                pos_inf: true,
                nan: true,
                huge: false,
            };
            let x = if ties {
                let v = prop_oneof![4 => (-2i32..3).prop_map(f64::from), 1 => value(1.0, sp)];
                let count: usize = s.iter().product();
                (proptest::collection::vec(v, count), storage())
                    .prop_filter_map("layout", {
                        let s = s.clone();
                        move |(vals, st)| {
                            let (l, len) = crate::strategies::layout(&s, st)?;
                            Tensor::with_layout(l, len, vals).ok()
                        }
                    })
                    .boxed()
            } else {
                tensor(s, 2.0, sp).boxed()
            };
            (x, 0..=n).prop_map(move |(x, k)| Case { k, x, out })
        })
}

/// Timing setup: top-8 of `rows x n`.
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(
    b: &'a B,
    rows: usize,
    n: usize,
    k: usize,
) -> Result<Bench<'a>, Failure> {
    let x = Input::<B, T>::new(
        b,
        &Tensor::contiguous(
            &[rows, n],
            (0..rows * n).map(|i| ((i * 7919) % 10007) as f64).collect(),
        )?,
    )?;
    let ol = out_layout(&[rows, k], Storage::Contiguous)?;
    let mut v = Output::<B, T>::new(b, &ol, None)?;
    let mut ix = Output::<B, u32>::new(b, &ol, None)?;
    Ok(Bench {
        run: Box::new(move || {
            b.top_k(k, x.view()?, v.view()?, ix.view()?)
                .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(bytes::<T>(rows * n)),
        size: format!("{rows}x{n} k={k}"),
    })
}
