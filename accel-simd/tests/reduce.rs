//! Reductions on the SIMD backend against the Reference: `max`/`min` bit-exact (the sign of a
//! zero included), the others within the conformance bound of the f64 reference
//! (`conformance/src/tolerance.rs`: sum/mean `gamma_n`, logsumexp, l2norm), NaN and infinities at
//! the same places; every row length 0..=3 vectors + 1, long f16/bf16 rows (blocked widening),
//! NaN, ±inf, huge and subnormal values, strided rows (fallback) and the same `Err`s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::float_cmp,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::{Backend, DType, Element, Layout, Reduce, Reference, View, bf16, f16};

macro_rules! runner {
    ($name:ident, $b:ty) => {
        fn $name<T: Element>(
            b: &$b,
            op: Reduce,
            x: &[T],
            xl: Layout,
            yshape: &[usize],
        ) -> (Vec<T>, seqcore::Result<()>) {
            let n: usize = yshape.iter().product();
            let mut y = vec![T::default(); n];
            let r = b.reduce(
                op,
                View::new(x, xl).unwrap(),
                b.view_mut(&mut y[..], yshape).unwrap(),
            );
            (y, r)
        }
    };
}
runner!(run_simd, Simd);
runner!(run_ref, Reference);

fn floor(d: DType) -> f64 {
    match d {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 5.960_464_477_539_063e-8,
        _ => f64::from(f32::MIN_POSITIVE),
    }
}

/// The conformance bound of a reduction over the row `x` (tolerance.rs `reduce`).
fn bound<T: Element>(op: Reduce, x: &[f64]) -> (f64, f64) {
    let (ua, u, n) = (
        T::DTYPE.accumulator().unit_roundoff(),
        T::DTYPE.unit_roundoff(),
        x.len() as f64,
    );
    let abs_sum: f64 = x.iter().map(|v| v.abs()).sum();
    let fl = floor(T::DTYPE);
    match op {
        Reduce::Sum => (fl + (n + 3.0) * ua * abs_sum, 2.0 * u),
        Reduce::Mean => (fl + (n + 3.0) * ua * abs_sum / n.max(1.0), 2.0 * u),
        Reduce::LogSumExp => {
            let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let (mut s, mut w) = (0.0, 0.0);
            if m.is_finite() {
                for &v in x {
                    let e = (v - m).exp();
                    if e > 0.0 {
                        s += e;
                        w += e * (v - m).abs();
                    }
                }
            }
            let w = if s > 0.0 { w / s } else { 0.0 };
            (
                fl + ua * (2.0 * n + 4.0 + 2.0 * m.abs().min(f64::MAX) + 2.0 * w),
                2.0 * u,
            )
        }
        Reduce::L2Norm => (fl, 2.0 * u + (n + 6.0) * ua),
        _ => (0.0, 0.0),
    }
}

fn check<T: Element>(s: &Simd, x: &[T], xl: Layout, yshape: &[usize]) {
    for op in Reduce::ALL {
        let (got, eg) = run_simd(s, op, x, xl, yshape);
        let (same, es) = run_ref(&Reference, op, x, xl, yshape);
        assert_eq!(format!("{eg:?}"), format!("{es:?}"));
        if eg.is_err() {
            continue;
        }
        let x64: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
        let (want, _) = run_ref(&Reference, op, &x64, xl, yshape);
        let n = xl.shape().last().copied().unwrap_or(1);
        let rs = if xl.rank() == 0 {
            0
        } else {
            xl.strides()[xl.rank() - 1]
        };
        for (r, ((g, w), sm)) in got.iter().zip(&want).zip(&same).enumerate() {
            let (g, sm) = (g.to_f64(), sm.to_f64());
            let w = T::from_f64(*w).to_f64();
            let ctx = format!(
                "{} {} n={n} row {r}: simd {g:e} f64-ref {w:e} same-ref {sm:e}",
                op.name(),
                T::DTYPE
            );
            if op.is_exact() {
                assert!(
                    g.to_bits() == sm.to_bits() || (g.is_nan() && sm.is_nan()),
                    "{ctx}"
                );
                continue;
            }
            if w.is_nan() {
                assert!(g.is_nan(), "{ctx}");
                continue;
            }
            if w.is_infinite() {
                assert_eq!(g, w, "{ctx}");
                continue;
            }
            assert!(g.is_finite(), "{ctx}");
            // The row as the backend saw it (contiguous rows of a row-major x here).
            let row: Vec<f64> = if xl.rank() <= 1 {
                x64.clone()
            } else {
                let o = xl.offset() + r * xl.strides()[0];
                (0..n).map(|j| x64[o + j * rs]).collect()
            };
            let (atol, rtol) = bound::<T>(op, &row);
            assert!((g - w).abs() <= atol + rtol * w.abs() || g == w, "{ctx}");
        }
    }
}

fn all_types(s: &Simd, x: &[f64], shape: &[usize]) {
    let l = Layout::contiguous(shape).unwrap();
    let y = &shape[..shape.len().saturating_sub(1)];
    check::<f32>(s, &x.iter().map(|&v| v as f32).collect::<Vec<_>>(), l, y);
    check::<f64>(s, x, l, y);
    check::<f16>(
        s,
        &x.iter().map(|&v| f16::from_f64(v)).collect::<Vec<_>>(),
        l,
        y,
    );
    check::<bf16>(
        s,
        &x.iter().map(|&v| bf16::from_f64(v)).collect::<Vec<_>>(),
        l,
        y,
    );
}

fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((*seed >> 11) as f64) / ((1u64 << 53) as f64)
}

#[test]
fn every_length() {
    let Some(s) = Simd::new().ok() else { return };
    let mut seed = 3;
    for n in 0..=3 * F32_LANES + 1 {
        let x: Vec<f64> = (0..3 * n).map(|_| lcg(&mut seed) * 8.0 - 4.0).collect();
        all_types(&s, &x, &[3, n]);
    }
}

#[test]
fn special_values_and_signed_zeros() {
    let Some(s) = Simd::new().ok() else { return };
    let n = 2 * F32_LANES + 1;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    rows.push(vec![-0.0; n]);
    rows.push(vec![0.0; n]);
    let mut r = vec![-0.0; n];
    r[n - 1] = 0.0;
    rows.push(r);
    let mut r = vec![0.0; n];
    r[n - 1] = -0.0;
    r[3] = -1.0;
    rows.push(r);
    let mut r: Vec<f64> = (0..n).map(|j| j as f64).collect();
    r[4] = f64::NAN;
    rows.push(r);
    let mut r: Vec<f64> = (0..n).map(|j| j as f64).collect();
    r[n - 1] = f64::INFINITY;
    rows.push(r);
    let mut r: Vec<f64> = (0..n).map(|j| j as f64).collect();
    r[0] = f64::NEG_INFINITY;
    rows.push(r);
    rows.push(vec![f64::NEG_INFINITY; n]);
    rows.push((0..n).map(|j| (j as f64 - 4.0) * 1e4).collect());
    rows.push(
        (0..n)
            .map(|j| if j == 2 { 3e38 } else { j as f64 })
            .collect(),
    );
    rows.push((0..n).map(|j| (j as f64 + 1.0) * 1e-41).collect());
    rows.push((0..n).map(|j| (j as f64 + 1.0) * 1e-310).collect());
    rows.push((0..n).map(|j| (j as f64 - 3.0) * 4e4).collect()); // f16 overflow
    let flat = rows.concat();
    all_types(&s, &flat, &[rows.len(), n]);
}

#[test]
fn long_rows_and_layouts() {
    let Some(s) = Simd::new().ok() else { return };
    let mut seed = 5;
    for n in [1023, 1024, 1025, 3000] {
        let mut x: Vec<f64> = (0..2 * n).map(|_| lcg(&mut seed) * 2.0 - 1.0).collect();
        all_types(&s, &x, &[2, n]);
        x[n + n / 2] = f64::NAN;
        x[n - 1] = 7.0;
        all_types(&s, &x, &[2, n]);
    }
    // Rank 1 (one row), rank 0 (a row of one), transposed (fallback), errors.
    let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    check::<f32>(&s, &x, Layout::contiguous(&[24]).unwrap(), &[]);
    check::<f32>(&s, &x[..1], Layout::contiguous(&[]).unwrap(), &[]);
    check::<f32>(&s, &x, Layout::new(0, &[6, 4], &[1, 6]).unwrap(), &[6]);
    check::<f32>(&s, &x, Layout::contiguous(&[4, 6]).unwrap(), &[5]);
    check::<f32>(&s, &x, Layout::contiguous(&[4, 6]).unwrap(), &[4, 1]);
    check::<f32>(&s, &[], Layout::contiguous(&[3, 0]).unwrap(), &[3]);
    check::<f32>(&s, &[], Layout::contiguous_at(7, &[0]).unwrap(), &[]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn random_rows(rows in 1usize..4, n in 0usize..80, scale in prop_oneof![Just(1.0f64), Just(100.0), Just(1e4)], seed in any::<u64>()) {
        let Some(s) = Simd::new().ok() else { return Ok(()) };
        let mut sd = seed;
        let x: Vec<f64> = (0..rows * n).map(|_| (lcg(&mut sd) * 2.0 - 1.0) * scale).collect();
        all_types(&s, &x, &[rows, n]);
    }
}
