//! The SIMD S4D Vandermonde kernel (`ssm_vandermonde`) against the Reference (the portable
//! kernel, f64 throughout): at f64 and in the same dtype (f32, f16, bf16), every length in
//! `0..=3 LANES + 1` and lengths across the re-anchor span and the stack block (up to 5000, where
//! an unanchored power recurrence in f32 would drift), with and without `v`, strided parameter
//! views (read in place) and a strided output (the portable fallback), NaN kept in its channel.
//! The bound is the conformance row's (`ssm_kernel`): `2 ua sum_n 2|w v||z|^l (4 (1 + l |ln z|)
//! + 132) + 2 ut |k|`.

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

#[derive(Clone, Debug)]
struct Case {
    h: usize,
    n: usize,
    l: usize,
    /// `[H, N, 2]` logical values.
    lz: Vec<f64>,
    w: Vec<f64>,
    v: Option<Vec<f64>>,
    /// Parameters stored with their `[re, im]` axis 3 apart (and padded modes).
    strided_params: bool,
    /// `k` stored with an `l` stride of 2 (the portable fallback).
    strided_k: bool,
}

fn make(h: usize, n: usize, l: usize, seed: u64, with_v: bool) -> Case {
    let mut r = Rng(seed);
    let mut lz = Vec::new();
    for _ in 0..h * n {
        // S4D-Lin-like: decay rates from ~0 to 0.5, frequencies up to ~pi.
        lz.push(-0.5 * r.next().abs() - 1e-4);
        lz.push(3.1 * r.next());
    }
    let w = (0..2 * h * n).map(|_| r.next()).collect();
    let v = with_v.then(|| (0..2 * h * n).map(|_| r.next()).collect());
    Case {
        h,
        n,
        l,
        lz,
        w,
        v,
        strided_params: false,
        strided_k: false,
    }
}

/// `[H, N, 2]` storage: `(memory, layout)`.
fn params<A: Element>(x: &[f64], h: usize, n: usize, strided: bool) -> (Vec<A>, Layout) {
    let st = if strided {
        [(n + 1) * 6, 6, 3]
    } else {
        [2 * n, 2, 1]
    };
    let len = if strided { h * (n + 1) * 6 } else { 2 * h * n };
    let mut mem = vec![A::from_f64(f64::NAN); len.max(1)];
    for hh in 0..h {
        for nn in 0..n {
            for c in 0..2 {
                mem[hh * st[0] + nn * st[1] + c * st[2]] = A::from_f64(x[(hh * n + nn) * 2 + c]);
            }
        }
    }
    (mem, Layout::new(0, &[h, n, 2], &st).unwrap())
}

macro_rules! run_on {
    ($b:expr, $back:ty, $t:ty, $c:expr) => {{
        let c: &Case = $c;
        type A = <$t as Element>::Acc;
        let (h, n, l) = (c.h, c.n, c.l);
        let (lzm, pl) = params::<A>(&c.lz, h, n, c.strided_params);
        let (wm, _) = params::<A>(&c.w, h, n, c.strided_params);
        let vm =
            c.v.as_ref()
                .map(|v| params::<A>(v, h, n, c.strided_params).0);
        let ks = if c.strided_k { [2 * l, 2] } else { [l, 1] };
        let kl = Layout::new(0, &[h, l], &ks).unwrap();
        let mut k = vec![<$t as Element>::from_f64(7.0); (h * l * ks[1]).max(1)];
        $b.ssm_vandermonde::<$t>(
            View::<$back, A>::new(&lzm[..], pl).unwrap(),
            View::<$back, A>::new(&wm[..], pl).unwrap(),
            vm.as_ref()
                .map(|v| View::<$back, A>::new(&v[..], pl).unwrap()),
            ViewMut::<$back, $t>::new(&mut k[..], kl).unwrap(),
        )
        .unwrap();
        (0..h * l)
            .map(|i| k[(i / l.max(1)) * ks[0] + (i % l.max(1)) * ks[1]].to_f64())
            .collect::<Vec<f64>>()
    }};
}

/// The case's parameters as rounded to `A` (what every backend computes on).
fn rounded<A: Element>(c: &Case) -> Case {
    let r = |x: &[f64]| -> Vec<f64> {
        x.iter()
            .map(|&v| <A as Element>::from_f64(v).to_f64())
            .collect()
    };
    Case {
        lz: r(&c.lz),
        w: r(&c.w),
        v: c.v.as_ref().map(|v| r(v)),
        ..c.clone()
    }
}

/// The conformance bound at `(hh, j)` (its floor: `tolerance::floor`), on the rounded
/// parameters.
fn bound(c: &Case, hh: usize, j: usize, ua: f64, ut: f64, k: f64, floor: f64) -> f64 {
    let mut s = 0.0;
    for nn in 0..c.n {
        let i = (hh * c.n + nn) * 2;
        let (lr, li) = (c.lz[i], c.lz[i + 1]);
        let mut wm = c.w[i].hypot(c.w[i + 1]);
        if let Some(v) = &c.v {
            wm *= v[i].hypot(v[i + 1]);
        }
        let jf = j as f64;
        s += 2.0 * wm * (lr * jf).exp() * (4.0 * (1.0 + jf * lr.hypot(li)) + 132.0);
    }
    floor + 2.0 * ua * s + 2.0 * ut * k.abs()
}

macro_rules! check_case {
    ($t:ty, $c:expr) => {{
        let c: &Case = $c;
        let Some(s) = simd() else { return };
        type A = <$t as Element>::Acc;
        let c = rounded::<A>(c);
        let got = run_on!(s, Simd, $t, &c);
        let same = run_on!(Reference, Reference, $t, &c);
        let want = run_on!(Reference, Reference, f64, &c);
        let ua = <A as Element>::DTYPE.unit_roundoff();
        let ut = <$t as Element>::DTYPE.unit_roundoff();
        let floor = match <$t as Element>::DTYPE {
            seqcore::DType::F64 => f64::MIN_POSITIVE,
            seqcore::DType::F16 => 5.960_464_477_539_063e-8,
            _ => f64::from(f32::MIN_POSITIVE),
        };
        for i in 0..got.len() {
            let (hh, j) = (i / c.l, i % c.l);
            let (g, w, r) = (got[i], want[i], same[i]);
            if w.is_nan() || r.is_nan() {
                assert!(
                    g.is_nan(),
                    "{}: k[{hh}, {j}] = {g}, want NaN",
                    stringify!($t)
                );
                continue;
            }
            let tol = bound(&c, hh, j, ua, ut, w, floor);
            assert!(
                (g - w).abs() <= tol,
                "{} n={} l={}: k[{hh}, {j}] = {g}, want {w} (tol {tol:e})",
                stringify!($t),
                c.n,
                c.l
            );
            assert!(
                (g - r).abs() <= tol + 2.0 * ut * r.abs(),
                "{} vs same dtype: k[{hh}, {j}] = {g}, want {r}",
                stringify!($t)
            );
        }
    }};
}

fn all_types(c: &Case) {
    check_case!(f64, c);
    check_case!(f32, c);
    check_case!(f16, c);
    check_case!(bf16, c);
}

#[test]
fn every_length_tail() {
    for l in 0..=3 * F32_LANES + 1 {
        for n in [0, 1, 3, 8] {
            all_types(&make(2, n, l, (l * 10 + n) as u64, l % 2 == 0));
        }
    }
}

#[test]
fn long_lengths_stay_anchored() {
    // Across the re-anchor span (STEPS * LANES) and the stack block (1024), to 5000 positions,
    // with slow decays (|z| near 1) and high frequencies, where error growth would show.
    for &l in &[127, 128, 129, 255, 1023, 1024, 1025, 2100, 5000] {
        let mut c = make(2, 16, l, l as u64, true);
        for i in 0..c.h * c.n {
            c.lz[2 * i] = -1e-5 * (1 + i) as f64;
        }
        all_types(&c);
    }
}

#[test]
fn strided_layouts() {
    let mut c = make(3, 5, 3 * F32_LANES + 1, 11, true);
    c.strided_params = true;
    all_types(&c);
    c.strided_k = true;
    all_types(&c);
    c.strided_params = false;
    all_types(&c);
}

#[test]
fn nan_stays_in_its_channel() {
    let mut c = make(3, 4, 2 * F32_LANES + 3, 5, false);
    c.w[(4 + 2) * 2] = f64::NAN; // channel 1, mode 2
    check_case!(f32, &c);
    check_case!(f64, &c);
    let Some(s) = simd() else { return };
    let k = run_on!(s, Simd, f32, &c);
    let l = c.l;
    assert!(k[l..2 * l].iter().all(|x| x.is_nan()));
    assert!(k[..l].iter().chain(&k[2 * l..]).all(|x| x.is_finite()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_kernels(
        h in 0usize..4,
        n in 0usize..24,
        l in 0usize..300,
        seed in any::<u64>(),
        with_v in any::<bool>(),
        strided_params in any::<bool>(),
        strided_k in any::<bool>(),
    ) {
        let mut c = make(h, n, l, seed, with_v);
        c.strided_params = strided_params;
        c.strided_k = strided_k;
        all_types(&c);
    }
}
