//! Softmax / log-softmax on the SIMD backend against the f64 Reference (the conformance bound of
//! `conformance/src/tolerance.rs`, NaN and infinities at the same places) and against the
//! Reference at the same element type: every row length 0..=3 vectors + 1, f16/bf16 rows longer
//! than the widening block, masks (with `-inf`, fully masked rows, broadcast), huge logits (1e4,
//! 3e38), NaN and `+inf` rows, subnormals, strided layouts (the fallback), and the same `Err`s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::float_cmp,
    clippy::needless_range_loop,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::{Backend, DType, Element, Layout, Reference, SoftmaxKind, View, ViewMut, bf16, f16};

const KINDS: [SoftmaxKind; 2] = [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax];

fn floor(d: DType) -> f64 {
    match d {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 5.960_464_477_539_063e-8,
        _ => f64::from(f32::MIN_POSITIVE),
    }
}

/// Runs softmax over `x` (given layouts) on one backend, returning `y` (contiguous) and the
/// result.
macro_rules! runner {
    ($name:ident, $b:ty) => {
        fn $name<T: Element>(
            b: &$b,
            kind: SoftmaxKind,
            x: &[T],
            xl: Layout,
            m: Option<(&[T], Layout)>,
            shape: &[usize],
        ) -> (Vec<T>, seqcore::Result<()>) {
            let n: usize = shape.iter().product();
            let mut y = vec![T::default(); n];
            let r = b.softmax(
                kind,
                View::new(x, xl).unwrap(),
                m.map(|(m, l)| View::new(m, l).unwrap()),
                b.view_mut(&mut y[..], shape).unwrap(),
            );
            (y, r)
        }
    };
}
runner!(run_simd, Simd);
runner!(run_ref, Reference);

/// Checks one call at element type `T` against the f64 reference and the same-dtype Reference.
fn check<T: Element>(
    s: &Simd,
    kind: SoftmaxKind,
    x: &[T],
    xl: Layout,
    m: Option<(&[T], Layout)>,
    shape: &[usize],
) {
    let (got, eg) = run_simd(s, kind, x, xl, m, shape);
    let (same, es) = run_ref(&Reference, kind, x, xl, m, shape);
    assert_eq!(format!("{eg:?}"), format!("{es:?}"));
    if eg.is_err() {
        return;
    }
    if shape.len() != 2 {
        // Rank 0 (one element): exactly 1 / 0, as the Reference.
        for (g, w) in got.iter().zip(&same) {
            assert_eq!(g.to_f64().to_bits(), w.to_f64().to_bits());
        }
        return;
    }
    let x64: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
    let m64: Option<(Vec<f64>, Layout)> =
        m.map(|(m, l)| (m.iter().map(|v| v.to_f64()).collect(), l));
    let (want, _) = run_ref(
        &Reference,
        kind,
        &x64,
        xl,
        m64.as_ref().map(|(m, l)| (&m[..], *l)),
        shape,
    );
    // z, per row, for the bound.
    let n = *shape.last().unwrap_or(&1);
    let rows = got.len().checked_div(n).unwrap_or(0);
    let z_at = |r: usize, j: usize| -> (f64, f64, f64) {
        let xo = xl.offset() + r * xl.strides()[0] + j * xl.strides()[1];
        let xv = x64[xo];
        match &m64 {
            Some((mv, l)) => {
                let mo = l.offset() + r * l.strides()[0] + j * l.strides()[1];
                (xv + mv[mo], xv, mv[mo])
            }
            None => (xv, xv, 0.0),
        }
    };
    let (u, ua) = (
        T::DTYPE.unit_roundoff(),
        T::DTYPE.accumulator().unit_roundoff(),
    );
    for r in 0..rows {
        let zs: Vec<(f64, f64, f64)> = (0..n).map(|j| z_at(r, j)).collect();
        let max = zs.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = zs.iter().map(|t| (t.0 - max).exp()).sum();
        let log_sum = sum.ln();
        for j in 0..n {
            let i = r * n + j;
            let (g, w) = (got[i].to_f64(), T::from_f64(want[i]).to_f64());
            let sm = same[i].to_f64();
            let ctx = || {
                format!(
                    "{:?} {} n={n} row {r} j {j}: simd {g:e} f64-ref {w:e} same-ref {sm:e}",
                    kind,
                    T::DTYPE
                )
            };
            if w.is_nan() {
                assert!(g.is_nan(), "{}", ctx());
                continue;
            }
            if w.is_infinite() {
                assert_eq!(g, w, "{}", ctx());
                continue;
            }
            assert!(g.is_finite(), "{}", ctx());
            if g == w {
                continue;
            }
            let (z, xv, mv) = zs[j];
            let d = z - max;
            let mask_term = if m.is_some() {
                xv.abs() + mv.abs() + max.abs()
            } else {
                0.0
            };
            let base = 8.0 * (n as f64).sqrt() + 2.0 * d.abs() + 2.0 * mask_term;
            let limit = match kind {
                SoftmaxKind::Softmax => floor(T::DTYPE) + (2.0 * u + ua * base) * w.abs(),
                _ => floor(T::DTYPE) + ua * (base + 2.0 * log_sum.abs()) + 2.0 * u * w.abs(),
            };
            assert!((g - w).abs() <= limit, "{} (limit {limit:e})", ctx());
        }
    }
}

fn rowsx<T: Element>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn check_all_types(s: &Simd, x: &[f64], m: Option<&[f64]>, shape: &[usize]) {
    let l = Layout::contiguous(shape).unwrap();
    for kind in KINDS {
        macro_rules! one {
            ($t:ty) => {{
                let xt: Vec<$t> = rowsx(x);
                let mt: Option<Vec<$t>> = m.map(rowsx);
                check::<$t>(s, kind, &xt, l, mt.as_deref().map(|m| (m, l)), shape);
            }};
        }
        one!(f32);
        one!(f64);
        one!(f16);
        one!(bf16);
    }
}

fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((*seed >> 11) as f64) / ((1u64 << 53) as f64)
}

#[test]
fn every_length_with_and_without_mask() {
    let Some(s) = Simd::new().ok() else { return };
    let mut seed = 7;
    for n in 0..=3 * F32_LANES + 1 {
        let rows = 3;
        let x: Vec<f64> = (0..rows * n)
            .map(|_| lcg(&mut seed) * 20.0 - 10.0)
            .collect();
        let m: Vec<f64> = (0..rows * n)
            .map(|i| {
                let r = lcg(&mut seed);
                // Row 1 fully masked; elsewhere a third masked.
                if i / n.max(1) == 1 || r < 0.33 {
                    f64::NEG_INFINITY
                } else {
                    r * 4.0 - 2.0
                }
            })
            .collect();
        check_all_types(&s, &x, None, &[rows, n]);
        check_all_types(&s, &x, Some(&m), &[rows, n]);
    }
}

#[test]
fn special_rows() {
    let Some(s) = Simd::new().ok() else { return };
    let n = 2 * F32_LANES + 3;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let base: Vec<f64> = (0..n).map(|j| (j as f64) * 0.37 - 2.0).collect();
    rows.push(base.clone());
    let mut r = base.clone();
    r[5] = f64::NAN;
    rows.push(r);
    let mut r = base.clone();
    r[n - 1] = f64::INFINITY;
    rows.push(r);
    rows.push(vec![f64::NEG_INFINITY; n]);
    let mut r = vec![f64::NEG_INFINITY; n];
    r[n - 2] = 3.0;
    rows.push(r);
    rows.push(base.iter().map(|v| v * 1e4).collect());
    let mut r = base.clone();
    r[3] = 3e38;
    r[4] = -3e38;
    rows.push(r);
    rows.push(base.iter().map(|v| v * 1e-40).collect());
    rows.push(base.iter().map(|v| v * 3e4).collect()); // f16: +-65504 and overflow to inf
    rows.push(vec![1.0; n]);
    let flat: Vec<f64> = rows.concat();
    check_all_types(&s, &flat, None, &[rows.len(), n]);
    // A mask of -inf on a +inf logit gives NaN; a finite mask on huge logits.
    let mut m = vec![0.0; flat.len()];
    m[2 * n + n - 1] = f64::NEG_INFINITY;
    m[7] = -1e4;
    check_all_types(&s, &flat, Some(&m), &[rows.len(), n]);
}

#[test]
fn long_half_rows_take_the_blocked_path() {
    let Some(s) = Simd::new().ok() else { return };
    let mut seed = 11;
    for n in [1023, 1024, 1025, 2048, 2500, 4099] {
        let x: Vec<f64> = (0..2 * n).map(|_| lcg(&mut seed) * 16.0 - 8.0).collect();
        let mut m: Vec<f64> = (0..2 * n)
            .map(|_| {
                if lcg(&mut seed) < 0.2 {
                    f64::NEG_INFINITY
                } else {
                    0.5
                }
            })
            .collect();
        check_all_types(&s, &x, None, &[2, n]);
        check_all_types(&s, &x, Some(&m), &[2, n]);
        // A NaN in the last block, a fully masked second row.
        let mut x2 = x.clone();
        x2[n - 1] = f64::NAN;
        for v in &mut m[n..] {
            *v = f64::NEG_INFINITY;
        }
        check_all_types(&s, &x2, Some(&m), &[2, n]);
    }
}

#[test]
fn layouts_broadcast_mask_and_fallback() {
    let Some(s) = Simd::new().ok() else { return };
    let (rows, n) = (4, 13);
    let x: Vec<f32> = (0..rows * n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let m: Vec<f32> = (0..n)
        .map(|j| if j % 3 == 0 { f32::NEG_INFINITY } else { 0.0 })
        .collect();
    let xl = Layout::contiguous(&[rows, n]).unwrap();
    let ml = Layout::new(0, &[rows, n], &[0, 1]).unwrap();
    for kind in KINDS {
        check::<f32>(&s, kind, &x, xl, Some((&m, ml)), &[rows, n]);
        // Transposed x (last axis stride `rows`): the fallback.
        let xt = Layout::new(0, &[n, rows], &[1, n]).unwrap();
        let mt = Layout::new(0, &[n, rows], &[1, 0]).unwrap();
        check::<f32>(&s, kind, &x, xt, None, &[n, rows]);
        check::<f32>(&s, kind, &x, xt, Some((&m, mt)), &[n, rows]);
        // Shape errors: the same Err (check compares them).
        let bad = Layout::new(0, &[rows, n - 1], &[0, 1]).unwrap();
        let (_, e) = run_simd(&s, kind, &x, xl, Some((&m, bad)), &[rows, n]);
        let (_, r) = run_ref(&Reference, kind, &x, xl, Some((&m, bad)), &[rows, n]);
        assert!(e.is_err());
        assert_eq!(format!("{e:?}"), format!("{r:?}"));
        let mut y = vec![0f32; rows * n];
        let e = s.softmax(
            kind,
            s.view(&x[..], &[rows, n]).unwrap(),
            None,
            s.view_mut(&mut y[..], &[n, rows]).unwrap(),
        );
        let r = Reference.softmax(
            kind,
            Reference.view(&x[..], &[rows, n]).unwrap(),
            None,
            Reference.view_mut(&mut y[..], &[n, rows]).unwrap(),
        );
        assert!(e.is_err());
        assert_eq!(format!("{e:?}"), format!("{r:?}"));
    }
    // Rank 0 and empty shapes.
    let one = [2.5f32];
    for kind in KINDS {
        check::<f32>(&s, kind, &one, Layout::contiguous(&[]).unwrap(), None, &[]);
        check::<f32>(
            &s,
            kind,
            &[],
            Layout::contiguous(&[0, 5]).unwrap(),
            None,
            &[0, 5],
        );
        check::<f32>(
            &s,
            kind,
            &[],
            Layout::contiguous(&[3, 0]).unwrap(),
            None,
            &[3, 0],
        );
    }
    // Offset output view: untouched around it.
    let mut y = [7f32; 60];
    let yl = Layout::contiguous_at(4, &[rows, n]).unwrap();
    s.softmax(
        SoftmaxKind::Softmax,
        View::new(&x[..], xl).unwrap(),
        None,
        ViewMut::new(&mut y[..], yl).unwrap(),
    )
    .unwrap();
    assert_eq!(&y[..4], &[7.0; 4]);
    assert_eq!(&y[56..], &[7.0; 4]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn random_rows(
        rows in 1usize..4,
        n in 0usize..70,
        scale in prop_oneof![Just(1.0f64), Just(30.0), Just(1e4)],
        seed in any::<u64>(),
        masked in any::<bool>(),
    ) {
        let Some(s) = Simd::new().ok() else { return Ok(()) };
        let mut sd = seed;
        let x: Vec<f64> = (0..rows * n).map(|_| (lcg(&mut sd) * 2.0 - 1.0) * scale).collect();
        let m: Vec<f64> = (0..rows * n).map(|_| {
            let r = lcg(&mut sd);
            if r < 0.25 { f64::NEG_INFINITY } else { r - 0.5 }
        }).collect();
        check_all_types(&s, &x, masked.then_some(&m[..]), &[rows, n]);
    }
}
