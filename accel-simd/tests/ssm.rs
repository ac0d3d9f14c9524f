//! The SIMD state-space kernels against the reference: the FFT convolution against the direct
//! sum at f64 (normwise FFT bound), the scan and the Vandermonde kernel against the reference,
//! conv == scan, tails (every channel count and length up to `3 LANES + 1`), strided layouts,
//! NaN kept in its own channel, and the same `Err` for the same bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_arguments,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::portable::ssm::conv::{conv_direct, fft_len};
use seqcore::{Backend, Element, Error, Layout, Reference, View, ViewMut, bf16, f16};

#[path = "support/rng.rs"]
mod rng;
use rng::{Rng, simd};

fn round<T: Element>(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| T::from_f64(v).to_f64()).collect()
}

/// `y` from the SIMD FFT convolution in `T` (inputs given already rounded to `T`).
fn simd_conv<T: Element>(
    b: &Simd,
    k: &[f64],
    u: &[f64],
    d: Option<&[f64]>,
    h: usize,
    l: usize,
) -> Vec<f64> {
    let kt: Vec<T> = k.iter().map(|&x| T::from_f64(x)).collect();
    let ut: Vec<T> = u.iter().map(|&x| T::from_f64(x)).collect();
    let dt: Option<Vec<T::Acc>> = d.map(|d| d.iter().map(|&x| T::Acc::from_f64(x)).collect());
    let mut y = vec![T::from_f64(f64::NAN); l * h];
    let wl = b.ssm_conv_workspace_len(h, l).unwrap();
    let mut ws = vec![T::Acc::from_f64(f64::NAN); wl];
    b.ssm_conv::<T>(
        b.view(&kt, &[h, l]).unwrap(),
        b.view(&ut, &[l, h]).unwrap(),
        dt.as_ref().map(|d| b.view(d, &[h]).unwrap()),
        b.view_mut(&mut y, &[l, h]).unwrap(),
        b.view_mut(&mut ws, &[wl]).unwrap(),
    )
    .unwrap();
    y.iter().map(|x| x.to_f64()).collect()
}

fn direct(k: &[f64], u: &[f64], d: Option<&[f64]>, h: usize, l: usize) -> Vec<f64> {
    let r = Reference;
    let mut y = vec![0.0; l * h];
    conv_direct::<f64>(
        r.view(k, &[h, l]).unwrap(),
        r.view(u, &[l, h]).unwrap(),
        d.map(|d| r.view(d, &[h]).unwrap()),
        r.view_mut(&mut y, &[l, h]).unwrap(),
    )
    .unwrap();
    y
}

/// The normwise FFT bound of the conformance suite (`12 log2(n) u_acc ||k_h|| ||u_h||`, the skip,
/// the store's `u |y|`), with a floor of the smallest normal of `T`.
fn check_conv_close<T: Element>(
    got: &[f64],
    want: &[f64],
    k: &[f64],
    u: &[f64],
    d: Option<&[f64]>,
    h: usize,
    l: usize,
) {
    let ua = <T::Acc as Element>::DTYPE.unit_roundoff();
    let ut = T::DTYPE.unit_roundoff();
    let n = fft_len(l).unwrap() as f64;
    for hh in 0..h {
        let kn = (0..l).map(|j| k[hh * l + j].powi(2)).sum::<f64>().sqrt();
        let un = (0..l).map(|j| u[j * h + hh].powi(2)).sum::<f64>().sqrt();
        for t in 0..l {
            let i = t * h + hh;
            let du = d.map_or(0.0, |d| (d[hh] * u[i]).abs());
            let tol = 12.0 * n.log2().max(2.0) * ua * kn * un
                + 4.0 * ua * du
                + 2.0 * ut * want[i].abs()
                + 1e-30;
            assert!(
                (got[i] - want[i]).abs() <= tol,
                "{} h={h} l={l} [t={t}, h={hh}]: {} vs {} (tol {tol})",
                T::DTYPE.name(),
                got[i],
                want[i]
            );
        }
    }
}

fn conv_case<T: Element>(h: usize, l: usize, seed: u64, skip: bool) {
    let Some(b) = simd() else { return };
    let mut r = Rng(seed);
    let k = round::<T>(&r.vec(h * l, 1.0));
    let u = round::<T>(&r.vec(l * h, 2.0));
    let d = round::<T>(&r.vec(h, 1.0));
    let d = skip.then_some(d.as_slice());
    let got = simd_conv::<T>(&b, &k, &u, d, h, l);
    let want = direct(&k, &u, d, h, l);
    check_conv_close::<T>(&got, &want, &k, &u, d, h, l);
}

#[test]
fn conv_every_tail() {
    let w = F32_LANES;
    for h in 0..=3 * w + 1 {
        for l in [0, 1, 2, 3, 5, 7, 8, 9, 16, 17] {
            conv_case::<f64>(h, l, (h * 100 + l) as u64, h % 2 == 0);
            conv_case::<f32>(h, l, (h * 100 + l) as u64 + 1, h % 2 == 1);
        }
    }
    for l in 0..=3 * w + 1 {
        conv_case::<f32>(3, l, l as u64, true);
        conv_case::<f64>(5, l, l as u64, true);
    }
}

#[test]
fn conv_half_types() {
    for (h, l) in [(1, 1), (9, 13), (17, 64), (3, 127)] {
        conv_case::<f16>(h, l, 7, true);
        conv_case::<bf16>(h, l, 8, true);
    }
}

#[test]
fn conv_long_and_prime() {
    conv_case::<f32>(20, 1021, 3, true);
    conv_case::<f64>(9, 4096, 4, true);
    conv_case::<f32>(17, 4096, 5, true);
}

#[test]
fn conv_mismatched_norms() {
    // A kernel 2^-40 times smaller than the input: each signal is transformed on its own.
    let Some(b) = simd() else { return };
    let (h, l) = (9, 200);
    let mut r = Rng(11);
    let k: Vec<f64> = round::<f32>(&r.vec(h * l, 1e-12));
    let u = round::<f32>(&r.vec(l * h, 1e3));
    let got = simd_conv::<f32>(&b, &k, &u, None, h, l);
    let want = direct(&k, &u, None, h, l);
    check_conv_close::<f32>(&got, &want, &k, &u, None, h, l);
}

#[test]
fn conv_strided_layouts() {
    let Some(b) = simd() else { return };
    let (h, l) = (11, 37);
    let mut r = Rng(5);
    let k = r.vec(h * l, 1.0);
    let u = r.vec(l * h, 1.0);
    let want = direct(&k, &u, None, h, l);
    // k stored [L, H] and u, y stored [H, L]: transposed views.
    let mut kt = vec![0.0; l * h];
    let mut ut = vec![0.0; l * h];
    for hh in 0..h {
        for t in 0..l {
            kt[t * h + hh] = k[hh * l + t];
            ut[hh * l + t] = u[t * h + hh];
        }
    }
    let mut y = vec![f64::NAN; l * h];
    let wl = b.ssm_conv_workspace_len(h, l).unwrap();
    let mut ws = vec![0.0; wl + 3];
    b.ssm_conv::<f64>(
        View::new(&kt[..], Layout::new(0, &[h, l], &[1, h]).unwrap()).unwrap(),
        View::new(&ut[..], Layout::new(0, &[l, h], &[1, l]).unwrap()).unwrap(),
        None,
        ViewMut::new(&mut y[..], Layout::new(0, &[l, h], &[1, l]).unwrap()).unwrap(),
        ViewMut::new(&mut ws[..], Layout::new(3, &[wl], &[1]).unwrap()).unwrap(),
    )
    .unwrap();
    let mut got = vec![0.0; l * h];
    for hh in 0..h {
        for t in 0..l {
            got[t * h + hh] = y[hh * l + t];
        }
    }
    check_conv_close::<f64>(&got, &want, &k, &u, None, h, l);
}

#[test]
fn conv_nan_stays_in_its_channel() {
    let Some(b) = simd() else { return };
    let (h, l) = (10, 33);
    let mut r = Rng(9);
    let k = r.vec(h * l, 1.0);
    let mut u = r.vec(l * h, 1.0);
    let clean = simd_conv::<f32>(&b, &k, &u, None, h, l);
    u[5 * h + 3] = f64::NAN;
    u[7 * h + 8] = f64::INFINITY;
    let got = simd_conv::<f32>(&b, &k, &u, None, h, l);
    for t in 0..l {
        for hh in 0..h {
            let i = t * h + hh;
            if hh == 3 || hh == 8 {
                continue;
            }
            assert_eq!(got[i].to_bits(), clean[i].to_bits(), "[{t}, {hh}]");
        }
    }
    assert!(got[20 * h + 3].is_nan());
    assert!(!got[20 * h + 8].is_finite());
}

/// `k[h, l] = 2 Re(sum_n c bbar abar^l)`, powers by repeated multiplication in f64.
fn ssm_kernel(a: &[f64], bb: &[f64], c: &[f64], h: usize, n: usize, l: usize) -> Vec<f64> {
    let mut k = vec![0.0; h * l];
    for hh in 0..h {
        for nn in 0..n {
            let i = 2 * (hh * n + nn);
            let (ar, ai) = (a[i], a[i + 1]);
            let (wr, wi) = (
                c[i] * bb[i] - c[i + 1] * bb[i + 1],
                c[i] * bb[i + 1] + c[i + 1] * bb[i],
            );
            let (mut pr, mut pi) = (1.0, 0.0);
            for t in 0..l {
                k[hh * l + t] += 2.0 * (wr * pr - wi * pi);
                let r = pr * ar - pi * ai;
                pi = pr * ai + pi * ar;
                pr = r;
            }
        }
    }
    k
}

/// A stable diagonal system: `|abar| < 1`.
fn system(r: &mut Rng, h: usize, n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut a = Vec::new();
    for _ in 0..h * n {
        let rad = 0.5 + 0.45 * r.next().abs();
        let th = 3.0 * r.next();
        a.push(rad * th.cos());
        a.push(rad * th.sin());
    }
    (
        a,
        r.vec(2 * h * n, 1.0),
        r.vec(2 * h * n, 1.0),
        r.vec(h, 1.0),
    )
}

fn simd_scan<T: Element>(
    b: &Simd,
    sys: &(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>),
    u: &[f64],
    state: &mut [f64],
    h: usize,
    n: usize,
    l: usize,
    with_y: bool,
) -> Vec<f64> {
    let acc = |x: &[f64]| -> Vec<T::Acc> { x.iter().map(|&v| T::Acc::from_f64(v)).collect() };
    let (a, bb, c, d) = (acc(&sys.0), acc(&sys.1), acc(&sys.2), acc(&sys.3));
    let ut: Vec<T> = u.iter().map(|&x| T::from_f64(x)).collect();
    let mut st = acc(state);
    let mut y = vec![T::from_f64(f64::NAN); l * h];
    b.ssm_scan::<T>(
        b.view(&a, &[h, n, 2]).unwrap(),
        b.view(&bb, &[h, n, 2]).unwrap(),
        b.view(&c, &[h, n, 2]).unwrap(),
        b.view(&d, &[h]).unwrap(),
        b.view(&ut, &[l, h]).unwrap(),
        b.view_mut(&mut st, &[h, n, 2]).unwrap(),
        with_y.then(|| b.view_mut(&mut y, &[l, h]).unwrap()),
    )
    .unwrap();
    for (s, x) in state.iter_mut().zip(&st) {
        *s = x.to_f64();
    }
    y.iter().map(|x| x.to_f64()).collect()
}

fn ref_scan(
    sys: &(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>),
    u: &[f64],
    state: &mut [f64],
    h: usize,
    n: usize,
    l: usize,
) -> Vec<f64> {
    let b = Reference;
    let mut y = vec![f64::NAN; l * h];
    b.ssm_scan::<f64>(
        b.view(&sys.0, &[h, n, 2]).unwrap(),
        b.view(&sys.1, &[h, n, 2]).unwrap(),
        b.view(&sys.2, &[h, n, 2]).unwrap(),
        b.view(&sys.3, &[h]).unwrap(),
        b.view(u, &[l, h]).unwrap(),
        b.view_mut(state, &[h, n, 2]).unwrap(),
        Some(b.view_mut(&mut y, &[l, h]).unwrap()),
    )
    .unwrap();
    y
}

fn scan_case<T: Element>(h: usize, n: usize, l: usize, seed: u64) {
    let Some(b) = simd() else { return };
    let mut r = Rng(seed);
    let sys = system(&mut r, h, n);
    let sys = (
        round::<T::Acc>(&sys.0),
        round::<T::Acc>(&sys.1),
        round::<T::Acc>(&sys.2),
        round::<T::Acc>(&sys.3),
    );
    let u = round::<T>(&r.vec(l * h, 1.0));
    let s0 = round::<T::Acc>(&r.vec(2 * h * n, 1.0));
    let mut s_ref = s0.clone();
    let mut s_simd = s0.clone();
    let want = ref_scan(&sys, &u, &mut s_ref, h, n, l);
    let got = simd_scan::<T>(&b, &sys, &u, &mut s_simd, h, n, l, true);
    let ua = <T::Acc as Element>::DTYPE.unit_roundoff();
    let ut = T::DTYPE.unit_roundoff();
    // |y| is at most 2 sum_n |c| |x| + |d u| with |x| <= (|x0| + |b| / (1 - |a|)) <= 21.
    let scale = 2.0 * 21.0 * 2.0 * n as f64 + 2.0;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = ut * w.abs() + 64.0 * ua * scale * (1.0 + (l as f64).sqrt());
        assert!((g - w).abs() <= tol, "y[{i}] h={h} n={n} l={l}: {g} vs {w}");
    }
    for (i, (g, w)) in s_simd.iter().zip(&s_ref).enumerate() {
        assert!(
            (g - w).abs() <= 64.0 * ua * 21.0 * (1.0 + l as f64),
            "state[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn scan_every_tail() {
    let w = F32_LANES;
    for n in 0..=3 * w + 1 {
        // One token (the portable path), 9 and 13 (the vector path), none.
        for (h, l) in [(1, 1), (3, 9), (2, 0), (2, 13)] {
            scan_case::<f64>(h, n, l, n as u64);
            scan_case::<f32>(h, n, l, n as u64 + 50);
        }
    }
    scan_case::<f16>(3, 17, 9, 1);
    scan_case::<bf16>(2, 16, 9, 2);
    scan_case::<f32>(5, 64, 300, 3);
}

#[test]
fn conv_equals_scan() {
    let Some(b) = simd() else { return };
    for (h, n, l, seed) in [
        (3, 4, 1, 1),
        (9, 8, 61, 2),
        (17, 16, 257, 3),
        (2, 3, 1021, 4),
    ] {
        let mut r = Rng(seed);
        let sys = system(&mut r, h, n);
        let u = r.vec(l * h, 1.0);
        let mut st = vec![0.0; 2 * h * n];
        let y_scan = simd_scan::<f64>(&b, &sys, &u, &mut st, h, n, l, true);
        let k = ssm_kernel(&sys.0, &sys.1, &sys.2, h, n, l);
        let y_conv = simd_conv::<f64>(&b, &k, &u, Some(&sys.3), h, l);
        for (i, (a, c)) in y_scan.iter().zip(&y_conv).enumerate() {
            assert!(
                (a - c).abs() <= 1e-9 * (1.0 + a.abs()),
                "y[{i}]: scan {a} vs conv {c}"
            );
        }
        let mut st32 = vec![0.0; 2 * h * n];
        let y32 = simd_scan::<f32>(&b, &sys, &u, &mut st32, h, n, l, true);
        let c32 = simd_conv::<f32>(&b, &round::<f32>(&k), &round::<f32>(&u), Some(&sys.3), h, l);
        for (i, (a, c)) in y32.iter().zip(&c32).enumerate() {
            assert!(
                (a - c).abs() <= 2e-3 * (1.0 + a.abs()),
                "f32 y[{i}]: scan {a} vs conv {c}"
            );
        }
    }
}

fn vandermonde_case<T: Element>(h: usize, n: usize, l: usize, with_v: bool, seed: u64) {
    let Some(b) = simd() else { return };
    let mut r = Rng(seed);
    let mut lz = Vec::new();
    for _ in 0..h * n {
        lz.push(-0.5 * r.next().abs() - 1e-3);
        lz.push(3.0 * r.next());
    }
    let lz = round::<T::Acc>(&lz);
    let w = round::<T::Acc>(&r.vec(2 * h * n, 1.0));
    let v = round::<T::Acc>(&r.vec(2 * h * n, 1.0));
    let acc = |x: &[f64]| -> Vec<T::Acc> { x.iter().map(|&v| T::Acc::from_f64(v)).collect() };
    let (lza, wa, va) = (acc(&lz), acc(&w), acc(&v));
    let mut k = vec![T::from_f64(f64::NAN); h * l];
    b.ssm_vandermonde::<T>(
        b.view(&lza, &[h, n, 2]).unwrap(),
        b.view(&wa, &[h, n, 2]).unwrap(),
        with_v.then(|| b.view(&va, &[h, n, 2]).unwrap()),
        b.view_mut(&mut k, &[h, l]).unwrap(),
    )
    .unwrap();
    let rb = Reference;
    let mut want = vec![f64::NAN; h * l];
    rb.ssm_vandermonde::<f64>(
        rb.view(&lz, &[h, n, 2]).unwrap(),
        rb.view(&w, &[h, n, 2]).unwrap(),
        with_v.then(|| rb.view(&v, &[h, n, 2]).unwrap()),
        rb.view_mut(&mut want, &[h, l]).unwrap(),
    )
    .unwrap();
    let ua = <T::Acc as Element>::DTYPE.unit_roundoff();
    let ut = T::DTYPE.unit_roundoff();
    for (i, (g, wv)) in k.iter().zip(&want).enumerate() {
        let g = g.to_f64();
        let tol = 2.0 * ut * wv.abs() + 300.0 * ua * 4.0 * n as f64;
        assert!((g - wv).abs() <= tol, "k[{i}] n={n} l={l}: {g} vs {wv}");
    }
}

#[test]
fn vandermonde_every_tail() {
    let w = F32_LANES;
    for l in (0..=3 * w + 1).chain([64, 65, 131, 300]) {
        vandermonde_case::<f64>(2, 3, l, l % 2 == 0, l as u64);
        vandermonde_case::<f32>(3, 5, l, l % 2 == 1, l as u64);
    }
    vandermonde_case::<f16>(2, 4, 37, true, 1);
    vandermonde_case::<bf16>(2, 4, 37, false, 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conv_random(h in 0usize..20, l in 0usize..70, seed in any::<u64>(), skip in any::<bool>()) {
        conv_case::<f32>(h, l, seed, skip);
        conv_case::<f64>(h, l, seed, !skip);
    }

    #[test]
    fn scan_random(h in 0usize..5, n in 0usize..20, l in 0usize..40, seed in any::<u64>()) {
        scan_case::<f32>(h, n, l, seed);
        scan_case::<f64>(h, n, l, seed);
    }

    #[test]
    fn bad_shapes_same_err(h in 1usize..5, l in 1usize..9, which in 0usize..6) {
        let Some(s) = simd() else { return Ok(()) };
        let r = Reference;
        let k = vec![0.5f32; h * l + 8];
        let u = vec![0.5f32; h * l + 8];
        let d = vec![0.5f32; h + 2];
        // Shapes with one operand wrong.
        let (ks, us, ds, ys): (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>) = match which {
            0 => (vec![h, l, 1], vec![l, h], vec![h], vec![l, h]),
            1 => (vec![h, l], vec![l + 1, h], vec![h], vec![l, h]),
            2 => (vec![h, l], vec![l, h], vec![h + 1], vec![l, h]),
            3 => (vec![h, l], vec![l, h], vec![h], vec![l, h + 1]),
            4 => (vec![h, l], vec![l, h, 1], vec![h], vec![l, h]),
            _ => (vec![h], vec![l, h], vec![h], vec![l, h]),
        };
        let mut y1 = vec![0.0f32; (l + 1) * (h + 1)];
        let mut y2 = y1.clone();
        let wl = s.ssm_conv_workspace_len(h, l).unwrap().max(r.ssm_conv_workspace_len(h, l).unwrap());
        let mut w1 = vec![0.0f32; wl];
        let mut w2 = w1.clone();
        let e1 = s.ssm_conv::<f32>(
            s.view(&k, &ks).unwrap(), s.view(&u, &us).unwrap(), Some(s.view(&d, &ds).unwrap()),
            s.view_mut(&mut y1, &ys).unwrap(), s.view_mut(&mut w1, &[wl]).unwrap());
        let e2 = r.ssm_conv::<f32>(
            r.view(&k, &ks).unwrap(), r.view(&u, &us).unwrap(), Some(r.view(&d, &ds).unwrap()),
            r.view_mut(&mut y2, &ys).unwrap(), r.view_mut(&mut w2, &[wl]).unwrap());
        prop_assert!(e1.is_err());
        prop_assert_eq!(e1, e2);
    }
}

#[test]
fn conv_workspace_errors() {
    let Some(b) = simd() else { return };
    let (h, l) = (3, 10);
    let k = vec![0.5f32; h * l];
    let u = vec![0.5f32; h * l];
    let mut y = vec![0.0f32; h * l];
    let wl = b.ssm_conv_workspace_len(h, l).unwrap();
    assert!(wl >= Reference.ssm_conv_workspace_len(h, l).unwrap());
    let mut ws = vec![0.0f32; 2 * wl];
    // Too short: a shape error naming the workspace, with this backend's length.
    let e = b.ssm_conv::<f32>(
        b.view(&k, &[h, l]).unwrap(),
        b.view(&u, &[l, h]).unwrap(),
        None,
        b.view_mut(&mut y, &[l, h]).unwrap(),
        b.view_mut(&mut ws, &[wl - 1]).unwrap(),
    );
    assert!(
        matches!(e, Err(Error::Shape { arg: "workspace", expected, got, .. }) if expected == wl && got == wl - 1),
        "{e:?}"
    );
    // Not contiguous: the same error as the reference.
    let e = b.ssm_conv::<f32>(
        b.view(&k, &[h, l]).unwrap(),
        b.view(&u, &[l, h]).unwrap(),
        None,
        b.view_mut(&mut y, &[l, h]).unwrap(),
        ViewMut::<Simd, f32>::new(&mut ws[..], Layout::new(0, &[wl], &[2]).unwrap()).unwrap(),
    );
    let mut ws2 = vec![0.0f32; 2 * wl];
    let mut y2 = vec![0.0f32; h * l];
    let r = Reference;
    let e2 = r.ssm_conv::<f32>(
        r.view(&k, &[h, l]).unwrap(),
        r.view(&u, &[l, h]).unwrap(),
        None,
        r.view_mut(&mut y2, &[l, h]).unwrap(),
        ViewMut::new(&mut ws2[..], Layout::new(0, &[wl], &[2]).unwrap()).unwrap(),
    );
    assert!(e.is_err());
    assert_eq!(e, e2);
    // Empty extents need no workspace and succeed.
    assert_eq!(b.ssm_conv_workspace_len(4, 0).unwrap(), 0);
    let none: [f32; 0] = [];
    let mut none_y: [f32; 0] = [];
    let mut none_w: [f32; 0] = [];
    b.ssm_conv::<f32>(
        b.view(&none, &[4, 0]).unwrap(),
        b.view(&none, &[0, 4]).unwrap(),
        None,
        b.view_mut(&mut none_y, &[0, 4]).unwrap(),
        b.view_mut(&mut none_w, &[0]).unwrap(),
    )
    .unwrap();
}

#[test]
fn scan_bad_shapes_same_err() {
    let Some(s) = simd() else { return };
    let r = Reference;
    let (h, n, l) = (2, 3, 4);
    let p = vec![0.1f64; 2 * h * (n + 1) * 3];
    let u = vec![0.1f64; h * l + 4];
    for which in 0..5 {
        let mut shapes = [
            vec![h, n, 2],
            vec![h, n, 2],
            vec![h, n, 2],
            vec![h],
            vec![l, h],
            vec![h, n, 2],
            vec![l, h],
        ];
        match which {
            0 => shapes[0] = vec![h, n, 3],
            1 => shapes[1] = vec![h, n + 1, 2],
            2 => shapes[3] = vec![h + 1],
            3 => shapes[4] = vec![l],
            _ => shapes[6] = vec![l + 1, h],
        }
        let st1 = vec![0.0f64; 2 * h * (n + 1) * 3];
        let st2 = st1.clone();
        let mut y1 = vec![0.0f32; (l + 1) * h];
        let mut y2 = y1.clone();
        let u32s: Vec<f32> = u.iter().map(|&x| x as f32).collect();
        let p32: Vec<f32> = p.iter().map(|&x| x as f32).collect();
        let st1f: &mut Vec<f32> = &mut st1.iter().map(|&x| x as f32).collect();
        let st2f: &mut Vec<f32> = &mut st2.iter().map(|&x| x as f32).collect();
        let e1 = s.ssm_scan::<f32>(
            s.view(&p32, &shapes[0]).unwrap(),
            s.view(&p32, &shapes[1]).unwrap(),
            s.view(&p32, &shapes[2]).unwrap(),
            s.view(&p32, &shapes[3]).unwrap(),
            s.view(&u32s, &shapes[4]).unwrap(),
            s.view_mut(st1f, &shapes[5]).unwrap(),
            Some(s.view_mut(&mut y1, &shapes[6]).unwrap()),
        );
        let e2 = r.ssm_scan::<f32>(
            r.view(&p32, &shapes[0]).unwrap(),
            r.view(&p32, &shapes[1]).unwrap(),
            r.view(&p32, &shapes[2]).unwrap(),
            r.view(&p32, &shapes[3]).unwrap(),
            r.view(&u32s, &shapes[4]).unwrap(),
            r.view_mut(st2f, &shapes[5]).unwrap(),
            Some(r.view_mut(&mut y2, &shapes[6]).unwrap()),
        );
        assert!(e1.is_err(), "case {which}");
        assert_eq!(e1, e2, "case {which}");
    }
}
