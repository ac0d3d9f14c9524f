//! Batched, strided matrix products.

use proptest::prelude::*;
use seqcore::{Allocate, Backend, Element, Layout, Reference};

use super::{Bench, Work, expected_in, gate, out_layout};
use crate::compare::{Agreement, compare};
use crate::harness::{Input, Output, Tensor, widen};
use crate::strategies::{Specials, Storage, dim, storage, tensor};
use crate::{Failure, tolerance};

/// One `c = alpha a b + beta c` call.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// `a [.., m, k]`.
    pub a: Tensor,
    /// `b [.., k, n]`.
    pub b: Tensor,
    /// Initial `c [.., m, n]` (read when `beta != 0`).
    pub c: Tensor,
    /// Scale of the product.
    pub alpha: f64,
    /// Scale of the initial `c`.
    pub beta: f64,
    /// How `c` is laid out.
    pub c_storage: Storage,
}

/// Runs `case` on `bk` in `T` and compares with the f64 reference.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(bk: &B, case: &Case) -> Result<Agreement, Failure> {
    let (sa, sb, sc) = (
        case.a.shape().to_vec(),
        case.b.shape().to_vec(),
        case.c.shape().to_vec(),
    );
    let (a, b, c) = (
        case.a.rounded::<T>(),
        case.b.rounded::<T>(),
        case.c.rounded::<T>(),
    );
    let r = Reference;
    let mut want = c.clone();
    r.gemm(
        case.alpha,
        r.view(&a, &sa).map_err(Failure::setup)?,
        r.view(&b, &sb).map_err(Failure::setup)?,
        case.beta,
        r.view_mut(&mut want, &sc).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;

    let ain = Input::<B, T>::new(bk, &case.a)?;
    let bin = Input::<B, T>::new(bk, &case.b)?;
    let init: Vec<T> = c.iter().map(|&v| T::from_f64(v)).collect();
    let read_c = case.beta != 0.0;
    let mut out = Output::<B, T>::new(
        bk,
        &out_layout(&sc, case.c_storage)?,
        read_c.then_some(&init[..]),
    )?;
    bk.gemm(case.alpha, ain.view()?, bin.view()?, case.beta, out.view()?)
        .map_err(Failure::Kernel)?;
    let got = widen(&out.finish(bk, "c")?);

    // (|A||B|)_ij for the bound.
    let k = sa.last().copied().unwrap_or(0);
    let m = sa.iter().rev().nth(1).copied().unwrap_or(0);
    let n = sb.last().copied().unwrap_or(0);
    let abs_dot = |idx: usize| -> f64 {
        let (p, i, j) = (
            idx / (m * n).max(1),
            (idx / n.max(1)) % m.max(1),
            idx % n.max(1),
        );
        (0..k)
            .map(|kk| {
                let av = a.get(p * m * k + i * k + kk).copied().unwrap_or(0.0);
                let bv = b.get(p * k * n + kk * n + j).copied().unwrap_or(0.0);
                (av * bv).abs()
            })
            .sum()
    };
    let bound = |i: usize| {
        let beta_c = (case.beta * c.get(i).copied().unwrap_or(0.0)).abs();
        tolerance::gemm::<T>(k, case.alpha, abs_dot(i), if read_c { beta_c } else { 0.0 })
    };
    let ag = compare("c", &got, &expected_in::<T>(&want), bound)?;
    gate("c", ag, tolerance::nmse_max::<T>())
}

/// Gemm cases: rank 2 and 3, every awkward extent including 0, transposed and padded operands,
/// an operand broadcast over the batch (stride 0), alpha and beta.
pub fn cases() -> impl Strategy<Value = Case> {
    let coef = prop_oneof![Just(1.0), Just(0.5), Just(-2.0)];
    let beta = prop_oneof![Just(0.0), Just(1.0), Just(-0.25)];
    (
        0usize..4,
        dim(20),
        dim(40),
        dim(20),
        coef,
        beta,
        storage(),
        any::<bool>(),
    )
        .prop_flat_map(|(batch, m, k, n, alpha, beta, cs, share_b)| {
            let lead = |x: usize, y: usize| {
                if batch == 0 {
                    vec![x, y]
                } else {
                    vec![batch, x, y]
                }
            };
            let sp = Specials::default();
            let b_shape = if share_b && batch > 0 {
                vec![1, k, n]
            } else {
                lead(k, n)
            };
            (
                tensor(lead(m, k), 1.0, sp),
                tensor(b_shape, 1.0, sp),
                tensor(lead(m, n), 1.0, sp),
            )
                .prop_map(move |(a, b, c)| {
                    let b = if share_b && batch > 0 {
                        broadcast(&b, batch).unwrap_or(b)
                    } else {
                        b
                    };
                    Case {
                        a,
                        b,
                        c,
                        alpha,
                        beta,
                        c_storage: cs,
                    }
                })
        })
}

/// `t [1, ..]` seen as `[batch, ..]` with a zero batch stride.
fn broadcast(t: &Tensor, batch: usize) -> Option<Tensor> {
    let mut shape = t.shape().to_vec();
    *shape.first_mut()? = batch;
    let layout = t.layout.expand(&shape).ok()?;
    let values = (0..batch).flat_map(|_| t.values.iter().copied()).collect();
    Tensor::with_layout(layout, t.buffer_len, values).ok()
}

/// Fixed edge cases: `k = 0` (the product is zero), `m = 0`, `beta = 0` with NaN in `c`, and f16
/// operands whose products exceed f16's range unless accumulated in f32.
///
/// # Errors
/// Never for these shapes.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let t = |s: &[usize], f: &dyn Fn(usize) -> f64| {
        Tensor::contiguous(s, (0..s.iter().product()).map(f).collect())
    };
    let case = |a, b, c, alpha, beta| Case {
        a,
        b,
        c,
        alpha,
        beta,
        c_storage: Storage::Contiguous,
    };
    Ok(vec![
        case(
            t(&[3, 0], &|_| 0.0)?,
            t(&[0, 2], &|_| 0.0)?,
            t(&[3, 2], &|i| i as f64)?,
            1.0,
            1.0,
        ),
        case(
            t(&[0, 4], &|_| 0.0)?,
            t(&[4, 2], &|i| i as f64)?,
            t(&[0, 2], &|_| 0.0)?,
            1.0,
            0.0,
        ),
        case(
            t(&[2, 3], &|i| i as f64)?,
            t(&[3, 2], &|i| i as f64)?,
            t(&[2, 2], &|_| f64::NAN)?,
            1.0,
            0.0,
        ),
        // 300 * 300 * 8 = 720000 > 65504: partial sums overflow f16, the result (0.5 alpha,
        // alternating signs) does not.
        case(
            t(&[1, 8], &|_| 300.0)?,
            t(&[8, 1], &|i| if i % 2 == 0 { 300.0 } else { -299.0 })?,
            t(&[1, 1], &|_| 0.0)?,
            0.5,
            0.0,
        ),
    ])
}

/// Timing setup: `m x k` times `k x n`.
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(
    bk: &'a B,
    m: usize,
    k: usize,
    n: usize,
) -> Result<Bench<'a>, Failure> {
    let fill = |len: usize| {
        (0..len)
            .map(|i| ((i * 31) % 17) as f64 / 8.0 - 1.0)
            .collect::<Vec<_>>()
    };
    let a = Input::<B, T>::new(bk, &Tensor::contiguous(&[m, k], fill(m * k))?)?;
    let b = Input::<B, T>::new(bk, &Tensor::contiguous(&[k, n], fill(k * n))?)?;
    let mut c = Output::<B, T>::new(
        bk,
        &Layout::contiguous(&[m, n]).map_err(Failure::setup)?,
        None,
    )?;
    Ok(Bench {
        run: Box::new(move || {
            bk.gemm(1.0, a.view()?, b.view()?, 0.0, c.view()?)
                .map_err(Failure::Kernel)
        }),
        work: Work::Flops(2.0 * (m * n * k) as f64),
        size: format!("{m}x{k}x{n}"),
    })
}
