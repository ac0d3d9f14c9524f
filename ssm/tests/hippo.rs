//! HiPPO: the LegS matrices as HiPPO Theorem 2 writes them, the NPLR identity
//! `A = 2 Re(V Lambda V^*) - P P^T`, FouT's normal-plus-low-rank structure, the online LegS
//! projection's reconstruction error falling as N grows, S4D-LegS.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::panic
)]

use seq_ssm::Complex;
use seq_ssm::hippo::{
    Measure, legendre_eval, legs_step, nplr_legs, nplr_workspace_len, transition,
};
use seq_ssm::s4d::init_a_legs;

#[test]
fn legs_matches_the_paper() {
    let (mut a, mut b) = (vec![0.0; 9], vec![0.0; 3]);
    transition(Measure::LegS, 3, &mut a, &mut b).unwrap();
    let (s3, s5, s15) = (3f64.sqrt(), 5f64.sqrt(), 15f64.sqrt());
    let want = [-1.0, 0.0, 0.0, -s3, -2.0, 0.0, -s5, -s15, -3.0];
    for (g, w) in a.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{a:?}");
    }
    assert_eq!(b, vec![1.0, s3, s5]);
}

#[test]
fn fout_and_lagt_and_legt_structure() {
    let n = 8;
    let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n]);
    // FouT: A + B B^T is skew-symmetric (the official code's rank correction is B itself).
    transition(Measure::FouT, n, &mut a, &mut b).unwrap();
    for i in 0..n {
        for j in 0..n {
            let s = a[i * n + j] + b[i] * b[j];
            let t = a[j * n + i] + b[j] * b[i];
            assert!((s + t).abs() < 1e-12, "FouT not skew at {i},{j}");
        }
    }
    // LagT: -1/2 on the diagonal, -1 below, 0 above; B = 1.
    transition(Measure::LagT, n, &mut a, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 1.0));
    for i in 0..n {
        for j in 0..n {
            let w = if i == j {
                -0.5
            } else if j < i {
                -1.0
            } else {
                0.0
            };
            assert_eq!(a[i * n + j], w);
        }
    }
    // LegT: A + P P^T with the rank-2 correction of even/odd halves is -I/2 ... skew: check
    // that A + A^T is rank 2 (= -(P0 P0^T + P1 P1^T)).
    transition(Measure::LegT, n, &mut a, &mut b).unwrap();
    for i in 0..n {
        for j in 0..n {
            let sym = a[i * n + j] + a[j * n + i];
            let r = |k: usize| (2.0 * k as f64 + 1.0).sqrt();
            let same_parity = (i % 2) == (j % 2);
            let want = if same_parity { -r(i) * r(j) } else { 0.0 };
            assert!((sym - want).abs() < 1e-12, "LegT {i},{j}: {sym} vs {want}");
        }
    }
    assert!(transition(Measure::LegS, 3, &mut a, &mut b).is_err());
}

#[test]
fn nplr_reconstructs_legs() {
    for n in [2usize, 8, 16, 64] {
        let half = n / 2;
        let mut lambda = vec![Complex::ZERO; half];
        let mut p = vec![Complex::ZERO; half];
        let mut bt = vec![Complex::ZERO; half];
        let mut v = vec![Complex::ZERO; n * half];
        let mut ws = vec![0.0; nplr_workspace_len(n).unwrap()];
        nplr_legs(n, &mut lambda, &mut p, &mut bt, &mut v, &mut ws).unwrap();
        let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n]);
        transition(Measure::LegS, n, &mut a, &mut b).unwrap();
        let pv: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5).sqrt()).collect();
        let scale = n as f64;
        for i in 0..n {
            for j in 0..n {
                let mut s = Complex::ZERO;
                for k in 0..half {
                    s += v[i * half + k] * lambda[k] * v[j * half + k].conj();
                }
                let got = 2.0 * s.re - pv[i] * pv[j];
                assert!(
                    (got - a[i * n + j]).abs() < 1e-9 * scale,
                    "n={n} ({i},{j}): {got} vs {}",
                    a[i * n + j]
                );
            }
        }
        // V^* B and V^* P: B = 2 Re(V (V^* B)) (B is real).
        for i in 0..n {
            let s: Complex = (0..half).fold(Complex::ZERO, |s, k| s + v[i * half + k] * bt[k]);
            assert!((2.0 * s.re - b[i]).abs() < 1e-9 * scale);
            let s: Complex = (0..half).fold(Complex::ZERO, |s, k| s + v[i * half + k] * p[k]);
            assert!((2.0 * s.re - pv[i]).abs() < 1e-9 * scale);
        }
        assert!(lambda.iter().all(|l| l.re == -0.5 && l.im > 0.0));
    }
    let mut z = vec![Complex::ZERO; 1];
    assert!(nplr_legs(3, &mut z, &mut [], &mut [], &mut [], &mut []).is_err());
}

#[test]
fn s4d_legs_init() {
    let mut a = vec![Complex::ZERO; 16];
    let mut wf = vec![0.0; nplr_workspace_len(32).unwrap()];
    let mut wc = vec![Complex::ZERO; 32 + 32 * 16];
    init_a_legs(&mut a, &mut wf, &mut wc).unwrap();
    assert!(a.iter().all(|z| z.re == -0.5));
    assert!(a.windows(2).all(|w| w[0].im > w[1].im && w[1].im > 0.0));
    assert!(init_a_legs(&mut a, &mut wf, &mut wc[..10]).is_err());
}

fn reconstruction_error(n: usize, len: usize) -> f64 {
    let f: Vec<f64> = (0..len)
        .map(|s| {
            let t = s as f64 / len as f64;
            (2.0 * core::f64::consts::PI * 3.0 * t).sin() + 0.3 * t
        })
        .collect();
    let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n]);
    transition(Measure::LegS, n, &mut a, &mut b).unwrap();
    let (mut x, mut tmp) = (vec![0.0; n], vec![0.0; n]);
    for (k, &fk) in f.iter().enumerate() {
        legs_step(&a, &b, k, &mut x, fk, &mut tmp).unwrap();
    }
    let (mut num, mut den) = (0.0, 0.0);
    for (s, &fs) in f.iter().enumerate() {
        let r = legendre_eval(&x, 2.0 * (s as f64 + 1.0) / len as f64 - 1.0);
        num += (r - fs) * (r - fs);
        den += fs * fs;
    }
    (num / den).sqrt()
}

#[test]
fn legs_reconstruction_error_falls_as_n_grows() {
    let e: Vec<f64> = [2usize, 4, 8, 16, 32]
        .iter()
        .map(|&n| reconstruction_error(n, 500))
        .collect();
    assert!(e.windows(2).all(|w| w[1] < w[0]), "{e:?}");
    assert!(e[4] < 0.05, "{e:?}");
    let mut x = vec![0.0; 2];
    assert!(legs_step(&[0.0; 4], &[0.0; 2], 0, &mut x, f64::NAN, &mut [0.0; 2]).is_err());
    assert!(legs_step(&[0.0; 3], &[0.0; 2], 0, &mut x, 1.0, &mut [0.0; 2]).is_err());
}
