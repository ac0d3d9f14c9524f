//! The SIMD attention merge (Milakov & Gimelshein 2018, eq. 4) against the Reference backend
//! (the portable kernel): at f64 against the Reference at f64 on the same rounded inputs, and at
//! the same dtype (f32, f16, bf16) against the Reference in that dtype; every `Dv` in
//! `0..=3 LANES + 1` and row counts around the row group, `lse = -inf` on one or both sides (the
//! hidden side holding NaN, which must not leak), NaN and `+inf` in `lse`, far-apart `lse`
//! (`exp` underflow), and layouts: contiguous, padded rows, transposed row axes, a strided `lse`,
//! and a strided feature axis (the portable fallback).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::too_many_arguments,
    clippy::cast_precision_loss,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::{Backend, Element, Layout, Reference, View, ViewMut, bf16, f16};

#[path = "support/rng.rs"]
mod rng;
use rng::{Rng, simd};

/// How the `[r1, r2, Dv]` outputs and inputs are stored.
#[derive(Clone, Copy, Debug)]
enum Store {
    Contiguous,
    /// Rows `Dv + 3` apart.
    Padded,
    /// The two row axes swapped in memory.
    Transposed,
    /// Feature stride 2 (the portable fallback).
    Strided,
}

/// `(strides, memory length)` of a `[r1, r2, dv]` tensor stored as `s`.
fn o_layout(s: Store, r1: usize, r2: usize, dv: usize) -> ([usize; 3], usize) {
    match s {
        Store::Contiguous => ([r2 * dv, dv, 1], r1 * r2 * dv),
        Store::Padded => ([r2 * (dv + 3), dv + 3, 1], r1 * r2 * (dv + 3)),
        Store::Transposed => ([dv, r1 * dv, 1], r1 * r2 * dv),
        Store::Strided => ([2 * r2 * dv, 2 * dv, 2], 2 * r1 * r2 * dv),
    }
}

/// Memory holding the logical row-major values `x` of `shape` at `strides` (NaN elsewhere).
fn place<E: Element>(x: &[f64], shape: &[usize], strides: &[usize], len: usize) -> Vec<E> {
    let mut mem = vec![E::from_f64(f64::NAN); len.max(1)];
    let n: usize = shape.iter().product();
    for (i, &v) in x.iter().enumerate().take(n) {
        let mut rem = i;
        let mut at = 0;
        for (&d, &s) in shape.iter().zip(strides).rev() {
            at += (rem % d) * s;
            rem /= d;
        }
        mem[at] = E::from_f64(v);
    }
    mem
}

/// Reads the logical values of `shape` at `strides` back (as f64).
fn gather<E: Element>(mem: &[E], shape: &[usize], strides: &[usize]) -> Vec<f64> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| {
            let mut rem = i;
            let mut at = 0;
            for (&d, &s) in shape.iter().zip(strides).rev() {
                at += (rem % d) * s;
                rem /= d;
            }
            mem[at].to_f64()
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Case {
    r1: usize,
    r2: usize,
    dv: usize,
    oa: Vec<f64>,
    ob: Vec<f64>,
    la: Vec<f64>,
    lb: Vec<f64>,
    store: Store,
    lse_strided: bool,
    with_lse: bool,
}

/// Runs the merge on backend `$b` in element type `$t`; returns `(o, lse)` as f64.
macro_rules! run_on {
    ($b:expr, $back:ty, $t:ty, $c:expr) => {{
        let c: &Case = $c;
        let (r1, r2, dv) = (c.r1, c.r2, c.dv);
        let shape = [r1, r2, dv];
        let (os, olen) = o_layout(c.store, r1, r2, dv);
        let ls: [usize; 2] = if c.lse_strided { [2 * r2, 2] } else { [r2, 1] };
        let llen = r1 * r2 * if c.lse_strided { 2 } else { 1 };
        type A = <$t as Element>::Acc;
        let oa = place::<$t>(&c.oa, &shape, &os, olen);
        let ob = place::<$t>(&c.ob, &shape, &os, olen);
        let la = place::<A>(&c.la, &shape[..2], &ls, llen);
        let lb = place::<A>(&c.lb, &shape[..2], &ls, llen);
        let mut o = vec![<$t as Element>::from_f64(7.0); olen.max(1)];
        let mut lse = vec![A::from_f64(7.0); llen.max(1)];
        let ol = Layout::new(0, &shape, &os).unwrap();
        let ll = Layout::new(0, &shape[..2], &ls).unwrap();
        $b.attention_merge::<$t>(
            View::<$back, $t>::new(&oa[..], ol).unwrap(),
            View::<$back, A>::new(&la[..], ll).unwrap(),
            View::<$back, $t>::new(&ob[..], ol).unwrap(),
            View::<$back, A>::new(&lb[..], ll).unwrap(),
            ViewMut::<$back, $t>::new(&mut o[..], ol).unwrap(),
            c.with_lse
                .then(|| ViewMut::<$back, A>::new(&mut lse[..], ll).unwrap()),
        )
        .unwrap();
        (gather(&o, &shape, &os), gather(&lse, &shape[..2], &ls))
    }};
}

/// Same non-finite class, and `|g - w| <= tol`.
fn close(what: &str, i: usize, g: f64, w: f64, tol: f64) {
    if w.is_nan() || g.is_nan() || w.is_infinite() || g.is_infinite() {
        assert!(
            (w.is_nan() && g.is_nan()) || g == w,
            "{what}[{i}]: got {g}, want {w}"
        );
        return;
    }
    assert!(
        (g - w).abs() <= tol,
        "{what}[{i}]: got {g}, want {w} (tol {tol:e})"
    );
}

/// The merge in `$t` on the SIMD backend against the Reference in `$t` and at f64.
macro_rules! check_case {
    ($t:ty, $c:expr) => {{
        let c: &Case = $c;
        let Some(s) = simd() else { return };
        let (go, gl) = run_on!(s, Simd, $t, c);
        let (ro, rl) = run_on!(Reference, Reference, $t, c);
        // The f64 reference on the inputs as rounded to the element / accumulation type.
        type A = <$t as Element>::Acc;
        let rnd = |x: &[f64]| -> Vec<f64> {
            x.iter()
                .map(|&v| <$t as Element>::from_f64(v).to_f64())
                .collect()
        };
        let rnda = |x: &[f64]| -> Vec<f64> {
            x.iter()
                .map(|&v| <A as Element>::from_f64(v).to_f64())
                .collect()
        };
        let c64 = Case {
            oa: rnd(&c.oa),
            ob: rnd(&c.ob),
            la: rnda(&c.la),
            lb: rnda(&c.lb),
            ..c.clone()
        };
        let (wo, wl) = run_on!(Reference, Reference, f64, &c64);
        let ut = <$t as Element>::DTYPE.unit_roundoff();
        let ua = <A as Element>::DTYPE.unit_roundoff();
        for i in 0..go.len() {
            // |wa a| + |wb b| bounds |o| and the error of the combine (weights <= 1).
            let fin = |x: f64| if x.is_finite() { x.abs() } else { 0.0 };
            let mag = fin(c64.oa[i]) + fin(c64.ob[i]);
            let tol64 = 2.0 * ut * wo[i].abs() + 16.0 * ua * mag;
            close("o vs f64", i, go[i], wo[i], tol64);
            close(
                "o vs same dtype",
                i,
                go[i],
                ro[i],
                tol64 + 2.0 * ut * ro[i].abs(),
            );
        }
        if c.with_lse {
            for i in 0..gl.len() {
                let tol = 8.0 * ua * (wl[i].abs() + 1.0);
                close("lse vs f64", i, gl[i], wl[i], tol);
                close("lse vs same dtype", i, gl[i], rl[i], tol);
            }
        }
    }};
}

/// An `lse` value: finite mostly, with `-inf`, NaN, `+inf` and far-apart values mixed in.
fn lse_value(r: &mut Rng, special: bool) -> f64 {
    let k = r.next();
    if special && k > 0.7 {
        f64::NEG_INFINITY
    } else if special && k < -0.95 {
        f64::NAN
    } else if special && k < -0.92 {
        f64::INFINITY
    } else if special && k < -0.85 {
        200.0 * r.next()
    } else {
        8.0 * r.next()
    }
}

/// A case with random values; where a side's `lse` is `-inf`, its `o` row is NaN (a side of
/// weight 0 must not be read).
fn make(
    r1: usize,
    r2: usize,
    dv: usize,
    seed: u64,
    special: bool,
    store: Store,
    lse_strided: bool,
    with_lse: bool,
) -> Case {
    let mut r = Rng(seed);
    let rows = r1 * r2;
    let la: Vec<f64> = (0..rows).map(|_| lse_value(&mut r, special)).collect();
    let lb: Vec<f64> = (0..rows).map(|_| lse_value(&mut r, special)).collect();
    let mut oa: Vec<f64> = (0..rows * dv).map(|_| 3.0 * r.next()).collect();
    let mut ob: Vec<f64> = (0..rows * dv).map(|_| 3.0 * r.next()).collect();
    for i in 0..rows * dv {
        if la[i / dv] == f64::NEG_INFINITY {
            oa[i] = f64::NAN;
        }
        if lb[i / dv] == f64::NEG_INFINITY {
            ob[i] = f64::NAN;
        }
    }
    Case {
        r1,
        r2,
        dv,
        oa,
        ob,
        la,
        lb,
        store,
        lse_strided,
        with_lse,
    }
}

fn all_types(c: &Case) {
    check_case!(f64, c);
    check_case!(f32, c);
    check_case!(f16, c);
    check_case!(bf16, c);
}

#[test]
fn every_feature_tail_and_row_count() {
    for dv in 0..=3 * F32_LANES + 1 {
        for rows in [0, 1, 3, F32_LANES - 1, F32_LANES + 1, 2 * F32_LANES + 3] {
            let seed = (dv * 100 + rows) as u64;
            all_types(&make(
                rows,
                1,
                dv,
                seed,
                true,
                Store::Contiguous,
                false,
                true,
            ));
            all_types(&make(
                1,
                rows,
                dv,
                seed + 1,
                false,
                Store::Contiguous,
                false,
                rows % 2 == 0,
            ));
        }
    }
}

#[test]
fn every_lse_combination() {
    // Every pair from {finite, -inf, NaN, +inf, far below}: 25 rows of Dv = 2 LANES + 1.
    let vals = [1.5, f64::NEG_INFINITY, f64::NAN, f64::INFINITY, -300.0];
    let mut la = Vec::new();
    let mut lb = Vec::new();
    for &a in &vals {
        for &b in &vals {
            la.push(a);
            lb.push(b);
        }
    }
    let dv = 2 * F32_LANES + 1;
    let mut c = make(25, 1, dv, 9, false, Store::Contiguous, false, true);
    for i in 0..25 * dv {
        c.oa[i] = if la[i / dv] == f64::NEG_INFINITY {
            f64::NAN
        } else {
            1.0 + i as f64 / 7.0
        };
        c.ob[i] = if lb[i / dv] == f64::NEG_INFINITY {
            f64::NAN
        } else {
            -2.0 + i as f64 / 5.0
        };
    }
    c.la = la;
    c.lb = lb;
    all_types(&c);
    // The outcome classes directly: -inf on one side is the other side exactly; both -inf give
    // zeros and -inf; NaN or +inf give NaN.
    let Some(s) = simd() else { return };
    let (o, l) = run_on!(s, Simd, f64, &c);
    for (row, (&a, &b)) in c.la.iter().zip(&c.lb).enumerate() {
        let ys = &o[row * dv..(row + 1) * dv];
        if a.is_nan() || b.is_nan() || a == f64::INFINITY || b == f64::INFINITY {
            assert!(
                ys.iter().all(|y| y.is_nan()) && l[row].is_nan(),
                "row {row}"
            );
        } else if a == f64::NEG_INFINITY && b == f64::NEG_INFINITY {
            assert!(
                ys.iter().all(|&y| y == 0.0) && l[row] == f64::NEG_INFINITY,
                "row {row}"
            );
        } else if b == f64::NEG_INFINITY || (a - b) > 100.0 {
            assert_eq!(ys, &c.oa[row * dv..(row + 1) * dv], "row {row}");
            assert_eq!(l[row], a, "row {row}");
        } else if a == f64::NEG_INFINITY || (b - a) > 100.0 {
            assert_eq!(ys, &c.ob[row * dv..(row + 1) * dv], "row {row}");
            assert_eq!(l[row], b, "row {row}");
        }
    }
}

#[test]
fn f16_overflow_and_half_weights() {
    // Equal lse: both weights 1/2, lse + ln 2; f16 values near the top of the range stay finite
    // (the combine is in f32) and the sum of two large ones overflows only where it must.
    let dv = F32_LANES + 3;
    let mut c = make(2, 1, dv, 3, false, Store::Contiguous, false, true);
    c.la = vec![0.25, 0.25];
    c.lb = vec![0.25, 0.25];
    c.oa = (0..2 * dv)
        .map(|i| if i < dv { 65000.0 } else { 60000.0 })
        .collect();
    c.ob = (0..2 * dv)
        .map(|i| if i < dv { 65000.0 } else { -60000.0 })
        .collect();
    check_case!(f16, &c);
    check_case!(bf16, &c);
    let Some(s) = simd() else { return };
    let (o, l) = run_on!(s, Simd, f16, &c);
    assert!(o[..dv].iter().all(|&y| y == 64992.0), "{o:?}");
    assert!(o[dv..].iter().all(|&y| y == 0.0), "{o:?}");
    assert!((l[0] - (0.25 + core::f64::consts::LN_2)).abs() < 1e-6);
}

fn store_strategy() -> impl Strategy<Value = Store> {
    prop_oneof![
        Just(Store::Contiguous),
        Just(Store::Padded),
        Just(Store::Transposed),
        Just(Store::Strided),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_merges(
        r1 in 0usize..5,
        r2 in 0usize..7,
        dv in 0usize..=3 * F32_LANES + 1,
        seed in any::<u64>(),
        special in any::<bool>(),
        store in store_strategy(),
        lse_strided in any::<bool>(),
        with_lse in any::<bool>(),
    ) {
        all_types(&make(r1, r2, dv, seed, special, store, lse_strided, with_lse));
    }
}
