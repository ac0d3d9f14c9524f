//! Top-k on the SIMD backend equals the Reference exactly (values bit for bit, indices): ties to
//! the lower index, NaN largest, `-0` tied with `+0`, every `k` from 0 to `n` for every row length
//! 0..=3 vectors + 1, long f16/bf16 rows (blocked widening), ascending rows (every element
//! enters), strided layouts (fallback) and the same `Err`s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::float_cmp,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::{Backend, Element, Layout, Reference, View, ViewMut, bf16, f16};

macro_rules! runner {
    ($name:ident, $b:ty) => {
        fn $name<T: Element>(
            b: &$b,
            k: usize,
            x: &[T],
            xl: Layout,
            vl: Layout,
            il: Layout,
        ) -> (Vec<T>, Vec<u32>, seqcore::Result<()>) {
            let mut v = vec![T::default(); vl.end().max(1)];
            let mut i = vec![u32::MAX; il.end().max(1)];
            let r = b.top_k(
                k,
                View::new(x, xl).unwrap(),
                ViewMut::new(&mut v[..], vl).unwrap(),
                ViewMut::new(&mut i[..], il).unwrap(),
            );
            (v, i, r)
        }
    };
}
runner!(run_simd, Simd);
runner!(run_ref, Reference);

fn same<T: Element>(s: &Simd, k: usize, x: &[T], xl: Layout, vl: Layout, il: Layout) {
    let (gv, gi, ge) = run_simd(s, k, x, xl, vl, il);
    let (wv, wi, we) = run_ref(&Reference, k, x, xl, vl, il);
    assert_eq!(format!("{ge:?}"), format!("{we:?}"), "k={k} {}", T::DTYPE);
    assert_eq!(gi, wi, "indices, k={k} {} x={x:?}", T::DTYPE);
    for (a, b) in gv.iter().zip(&wv) {
        assert!(
            a.to_f64().to_bits() == b.to_f64().to_bits()
                || (a.to_f64().is_nan() && b.to_f64().is_nan()),
            "values, k={k} {}: {gv:?} vs {wv:?}",
            T::DTYPE
        );
    }
}

fn rows_all_k<T: Element>(s: &Simd, x: &[T], rows: usize, n: usize, ks: &[usize]) {
    let xl = Layout::contiguous(&[rows, n]).unwrap();
    for &k in ks {
        let vl = Layout::contiguous(&[rows, k]).unwrap();
        same(s, k, x, xl, vl, vl);
    }
}

fn all_types(s: &Simd, x: &[f64], rows: usize, n: usize, ks: &[usize]) {
    rows_all_k::<f32>(
        s,
        &x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        rows,
        n,
        ks,
    );
    rows_all_k::<f64>(s, x, rows, n, ks);
    rows_all_k::<f16>(
        s,
        &x.iter().map(|&v| f16::from_f64(v)).collect::<Vec<_>>(),
        rows,
        n,
        ks,
    );
    rows_all_k::<bf16>(
        s,
        &x.iter().map(|&v| bf16::from_f64(v)).collect::<Vec<_>>(),
        rows,
        n,
        ks,
    );
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

#[test]
fn every_length_every_k_with_ties() {
    let Some(s) = Simd::new().ok() else { return };
    let mut seed = 1;
    for n in 0..=3 * F32_LANES + 1 {
        // Few distinct values (many ties), signed zeros, a NaN or two, infinities.
        let x: Vec<f64> = (0..3 * n)
            .map(|_| match lcg(&mut seed) % 12 {
                0 => f64::NAN,
                1 => -0.0,
                2 => 0.0,
                3 => f64::INFINITY,
                4 => f64::NEG_INFINITY,
                r => (r as f64) - 8.0,
            })
            .collect();
        let ks: Vec<usize> = (0..=n).collect();
        all_types(&s, &x, 3, n, &ks);
    }
}

#[test]
fn long_rows_ascending_descending_random() {
    let Some(s) = Simd::new().ok() else { return };
    let mut seed = 9;
    for n in [100, 1023, 1025, 2500] {
        let asc: Vec<f64> = (0..n).map(|j| j as f64 * 0.25).collect();
        let desc: Vec<f64> = asc.iter().rev().copied().collect();
        let rnd: Vec<f64> = (0..n)
            .map(|_| (lcg(&mut seed) % 1000) as f64 / 7.0 - 50.0)
            .collect();
        let mut late_nan = rnd.clone();
        late_nan[n - 3] = f64::NAN;
        let x = [asc, desc, rnd, late_nan].concat();
        all_types(&s, &x, 4, n, &[0, 1, 2, 7, 64, n / 2, n]);
    }
}

#[test]
fn layouts_and_errors() {
    let Some(s) = Simd::new().ok() else { return };
    let x: Vec<f32> = (0..30).map(|i| ((i * 7) % 5) as f32).collect();
    // Transposed x (fallback) and strided outputs (fallback).
    let xt = Layout::new(0, &[6, 5], &[1, 6]).unwrap();
    let vl = Layout::contiguous(&[6, 3]).unwrap();
    same::<f32>(&s, 3, &x, xt, vl, vl);
    let vt = Layout::new(0, &[6, 3], &[1, 6]).unwrap();
    same::<f32>(&s, 3, &x, Layout::contiguous(&[6, 5]).unwrap(), vt, vl);
    // Rank 1.
    same::<f32>(
        &s,
        4,
        &x,
        Layout::contiguous(&[30]).unwrap(),
        Layout::contiguous(&[4]).unwrap(),
        Layout::contiguous(&[4]).unwrap(),
    );
    // k > n, shape mismatches, rank 0.
    let xl = Layout::contiguous(&[6, 5]).unwrap();
    same::<f32>(
        &s,
        6,
        &x,
        xl,
        Layout::contiguous(&[6, 6]).unwrap(),
        Layout::contiguous(&[6, 6]).unwrap(),
    );
    same::<f32>(
        &s,
        2,
        &x,
        xl,
        Layout::contiguous(&[6, 3]).unwrap(),
        Layout::contiguous(&[6, 2]).unwrap(),
    );
    same::<f32>(
        &s,
        2,
        &x,
        xl,
        Layout::contiguous(&[6, 2]).unwrap(),
        Layout::contiguous(&[5, 2]).unwrap(),
    );
    same::<f32>(
        &s,
        1,
        &x,
        Layout::contiguous(&[]).unwrap(),
        Layout::contiguous(&[1]).unwrap(),
        Layout::contiguous(&[1]).unwrap(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn random(rows in 1usize..4, n in 1usize..90, kf in 0.0f64..=1.0, seed in any::<u64>(), distinct in 2u64..50) {
        let Some(s) = Simd::new().ok() else { return Ok(()) };
        let mut sd = seed;
        let x: Vec<f64> = (0..rows * n).map(|_| (lcg(&mut sd) % distinct) as f64 - (distinct / 2) as f64).collect();
        let k = ((n as f64) * kf) as usize;
        all_types(&s, &x, rows, n, &[k, k / 2, 1.min(n)]);
    }
}
