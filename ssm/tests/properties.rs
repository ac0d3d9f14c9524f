//! Properties of seq-ssm: FFT == direct DFT, FFT convolution == direct convolution, convolution
//! mode == recurrent mode (ZOH and bilinear, odd and prime lengths up to 4096), chunked == whole
//! sequence for every chunk size, Vandermonde kernel == powers of Abar, Cauchy/Woodbury S4 kernel
//! == dense powers-of-Abar kernel, and the discretisation's limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::type_complexity
)]

use proptest::prelude::*;
use seq_ssm::fft;
use seq_ssm::s4::{self, Dplr};
use seq_ssm::{Complex, Discretization, S4d, S4dParams, Stability, discretize};
use seqcore::portable::ssm::conv;
use seqcore::{Backend, Reference, View, ViewMut};

fn naive_dft(x: &[f64], inverse: bool) -> Vec<f64> {
    let n = x.len() / 2;
    let s = if inverse { 1.0 } else { -1.0 };
    let mut out = vec![0.0; x.len()];
    for k in 0..n {
        let (mut re, mut im) = (0.0, 0.0);
        for j in 0..n {
            let ang = s * 2.0 * core::f64::consts::PI * ((j * k) % n) as f64 / n as f64;
            let (sn, c) = ang.sin_cos();
            re += x[2 * j] * c - x[2 * j + 1] * sn;
            im += x[2 * j] * sn + x[2 * j + 1] * c;
        }
        out[2 * k] = re;
        out[2 * k + 1] = im;
    }
    out
}

fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    if num == 0.0 {
        0.0
    } else {
        (num / den.max(1e-300)).sqrt()
    }
}

/// Deterministic pseudo-random values in [-1, 1).
fn vals(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// A random stable S4D model of `h x n` modes: `(log_dt, a, b, c, d)`.
fn model(seed: u64, h: usize, n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let r = vals(seed, h * (1 + 6 * n + 1));
    let mut it = r.into_iter();
    let log_dt: Vec<f64> = (0..h)
        .map(|_| (1e-3f64).ln() + (it.next().unwrap() + 1.0) / 2.0 * (100f64).ln())
        .collect();
    let mut a = Vec::new();
    let (mut b, mut c) = (Vec::new(), Vec::new());
    for _ in 0..h {
        for k in 0..n {
            a.push(-0.5 + 0.4 * it.next().unwrap());
            a.push(core::f64::consts::PI * k as f64 + it.next().unwrap());
            b.extend([it.next().unwrap(), it.next().unwrap()]);
            c.extend([it.next().unwrap(), it.next().unwrap()]);
        }
    }
    let d: Vec<f64> = (0..h).map(|_| it.next().unwrap()).collect();
    (log_dt, a, b, c, d)
}

struct Built {
    mem: Vec<f64>,
    h: usize,
    n: usize,
}

fn build(seed: u64, h: usize, n: usize, method: Discretization) -> Built {
    let (log_dt, a, b, c, d) = model(seed, h, n);
    let p = S4dParams {
        h,
        n,
        log_dt: &log_dt,
        a: &a,
        b: &b,
        c: &c,
        d: &d,
    };
    let len = S4d::<Reference, f64>::mem_len(h, n).unwrap();
    let mut mem = vec![0.0; len];
    let mut host = vec![0.0; len];
    S4d::<Reference, f64>::new(
        &Reference,
        &p,
        method,
        Stability::Strict,
        &mut mem,
        &mut host,
    )
    .unwrap();
    Built { mem, h, n }
}

impl Built {
    /// Rebuilds the model over the already-discretised buffer (same values).
    fn model(&mut self, seed: u64, method: Discretization) -> (S4d<'_, Reference, f64>, Vec<f64>) {
        let (log_dt, a, b, c, d) = model(seed, self.h, self.n);
        let p = S4dParams {
            h: self.h,
            n: self.n,
            log_dt: &log_dt,
            a: &a,
            b: &b,
            c: &c,
            d: &d,
        };
        let mut host = vec![0.0; self.mem.len()];
        let m = S4d::<Reference, f64>::new(
            &Reference,
            &p,
            method,
            Stability::Strict,
            &mut self.mem,
            &mut host,
        )
        .unwrap();
        (m, d)
    }
}

fn run_conv(m: &S4d<'_, Reference, f64>, u: &[f64], l: usize) -> Vec<f64> {
    let h = m.channels();
    let b = Reference;
    let mut k = vec![0.0; h * l];
    m.kernel::<f64>(&b, b.view_mut(&mut k, &[h, l]).unwrap())
        .unwrap();
    let mut ws = vec![0.0; b.ssm_conv_workspace_len(h, l).unwrap()];
    let wl = ws.len();
    let mut y = vec![f64::NAN; l * h];
    m.conv::<f64>(
        &b,
        b.view(&k, &[h, l]).unwrap(),
        b.view(u, &[l, h]).unwrap(),
        b.view_mut(&mut y, &[l, h]).unwrap(),
        b.view_mut(&mut ws, &[wl]).unwrap(),
    )
    .unwrap();
    y
}

fn run_scan(m: &S4d<'_, Reference, f64>, u: &[f64], l: usize) -> Vec<f64> {
    let (h, n) = (m.channels(), m.modes());
    let b = Reference;
    let mut state = vec![0.0; h * n * 2];
    let mut y = vec![f64::NAN; l * h];
    m.scan::<f64>(
        &b,
        b.view(u, &[l, h]).unwrap(),
        b.view_mut(&mut state, &[h, n, 2]).unwrap(),
        Some(b.view_mut(&mut y, &[l, h]).unwrap()),
    )
    .unwrap();
    y
}

const LENGTHS: [usize; 14] = [1, 2, 3, 7, 16, 31, 64, 97, 127, 128, 257, 1000, 1021, 4096];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fft_matches_direct_dft(n in 0usize..200, seed in any::<u64>(), inverse in any::<bool>()) {
        let x = vals(seed, 2 * n);
        let want = naive_dft(&x, inverse);
        let mut got = x.clone();
        let mut ws = vec![0.0; fft::dft_workspace_len(n).unwrap()];
        fft::dft(&mut got, inverse, &mut ws).unwrap();
        let err = rel_l2(&got, &want);
        prop_assert!(err < 1e-12, "n={n} err={err}");
        if n.is_power_of_two() {
            let mut tw = vec![0.0; n];
            fft::twiddles(n, &mut tw).unwrap();
            let mut got2 = x.clone();
            fft::fft_pow2(&mut got2, &tw, inverse).unwrap();
            prop_assert!(rel_l2(&got2, &want) < 1e-12);
        }
    }

    #[test]
    fn fft_conv_matches_direct(h in 1usize..5, l in 0usize..300, seed in any::<u64>(), with_d in any::<bool>()) {
        let b = Reference;
        let k = vals(seed, h * l);
        let u = vals(seed ^ 1, l * h);
        let d = vals(seed ^ 2, h);
        let dv = with_d.then(|| b.view(&d, &[h]).unwrap());
        let mut want = vec![f64::NAN; l * h];
        conv::conv_direct::<f64>(b.view(&k, &[h, l]).unwrap(), b.view(&u, &[l, h]).unwrap(), dv,
            b.view_mut(&mut want, &[l, h]).unwrap()).unwrap();
        let mut ws = vec![0.0; b.ssm_conv_workspace_len(h, l).unwrap()];
        let wl = ws.len();
        let mut got = vec![f64::NAN; l * h];
        b.ssm_conv::<f64>(b.view(&k, &[h, l]).unwrap(), b.view(&u, &[l, h]).unwrap(), dv,
            b.view_mut(&mut got, &[l, h]).unwrap(), b.view_mut(&mut ws, &[wl]).unwrap()).unwrap();
        prop_assert!(got.iter().all(|v| v.is_finite()));
        let err = rel_l2(&got, &want);
        prop_assert!(err < 1e-12, "h={h} l={l} err={err}");
    }

    #[test]
    fn conv_mode_equals_recurrent_mode(li in 0usize..LENGTHS.len(), h in 1usize..4, n in 1usize..9,
                                       seed in any::<u64>(), zoh in any::<bool>()) {
        let l = LENGTHS[li];
        let method = if zoh { Discretization::Zoh } else { Discretization::Bilinear };
        let mut built = build(seed, h, n, method);
        let (m, _) = built.model(seed, method);
        let u = vals(seed ^ 7, l * h);
        let yc = run_conv(&m, &u, l);
        let yr = run_scan(&m, &u, l);
        let err = rel_l2(&yc, &yr);
        prop_assert!(err < 1e-10, "L={l} err={err}");
    }

    #[test]
    fn chunked_equals_whole_for_every_chunk_size(l in 1usize..40, h in 1usize..3, n in 1usize..5,
                                                 seed in any::<u64>(), zoh in any::<bool>()) {
        let method = if zoh { Discretization::Zoh } else { Discretization::Bilinear };
        let mut built = build(seed, h, n, method);
        let (m, _) = built.model(seed, method);
        let b = Reference;
        let u = vals(seed ^ 3, l * h);
        let whole = run_scan(&m, &u, l);
        for chunk in 1..=l {
            let mut k = vec![0.0; h * chunk];
            m.kernel::<f64>(&b, b.view_mut(&mut k, &[h, chunk]).unwrap()).unwrap();
            let mut state = vec![0.0; h * n * 2];
            let mut y = vec![f64::NAN; l * h];
            let mut scratch = vec![0.0; m.chunk_scratch_len(chunk).unwrap()];
            let mut ws = vec![0.0; b.ssm_conv_workspace_len(h, chunk).unwrap()];
            let wl = ws.len();
            let mut t0 = 0;
            while t0 < l {
                let t = chunk.min(l - t0);
                m.chunk::<f64>(&b, b.view(&k, &[h, chunk]).unwrap(),
                    b.view(&u[t0 * h..(t0 + t) * h], &[t, h]).unwrap(),
                    b.view_mut(&mut state, &[h, n, 2]).unwrap(),
                    b.view_mut(&mut y[t0 * h..(t0 + t) * h], &[t, h]).unwrap(),
                    &mut scratch, b.view_mut(&mut ws, &[wl]).unwrap()).unwrap();
                t0 += t;
            }
            let err = rel_l2(&y, &whole);
            prop_assert!(err < 1e-11, "L={l} chunk={chunk} err={err}");
        }
    }

    #[test]
    fn vandermonde_kernel_equals_powers_of_abar(l in 0usize..300, n in 1usize..8, seed in any::<u64>(), zoh in any::<bool>()) {
        let method = if zoh { Discretization::Zoh } else { Discretization::Bilinear };
        let mut built = build(seed, 1, n, method);
        let (m, _) = built.model(seed, method);
        let b = Reference;
        let mut k = vec![f64::NAN; l];
        m.kernel::<f64>(&b, b.view_mut(&mut k, &[1, l]).unwrap()).unwrap();
        let (log_dt, a, bb, c, _) = model(seed, 1, n);
        let dt = log_dt[0].exp();
        let mut want = vec![0.0; l];
        for i in 0..n {
            let md = discretize(method, dt, Complex::new(a[2 * i], a[2 * i + 1]),
                Complex::new(bb[2 * i], bb[2 * i + 1]), Stability::Strict).unwrap();
            let cc = Complex::new(c[2 * i], c[2 * i + 1]);
            let mut p = md.bbar;
            for w in want.iter_mut() {
                *w += 2.0 * (cc * p).re;
                p *= md.abar;
            }
        }
        prop_assert!(rel_l2(&k, &want) < 1e-11);
    }

    #[test]
    fn cauchy_kernel_equals_dense_powers(l in 1usize..130, n in 1usize..7, seed in any::<u64>(), log_dt in -6.9f64..-1.0) {
        let r = vals(seed, 8 * n);
        let cx = |i: usize| Complex::new(r[2 * i], r[2 * i + 1]);
        let lambda: Vec<Complex> = (0..n).map(|i| Complex::new(-0.5 - 0.4 * r[2 * i].abs(), core::f64::consts::PI * i as f64 + r[2 * i + 1])).collect();
        let p: Vec<Complex> = (0..n).map(|i| cx(n + i).scale(0.7)).collect();
        let bv: Vec<Complex> = (0..n).map(|i| cx(2 * n + i)).collect();
        let cv: Vec<Complex> = (0..n).map(|i| cx(3 * n + i)).collect();
        let m = Dplr { lambda: &lambda, p: &p, b: &bv, c: &cv };
        let dt = log_dt.exp();
        let (nc, nf) = s4::cauchy_workspace_len(n, l).unwrap();
        let (mut wc, mut wf) = (vec![Complex::ZERO; nc], vec![0.0; nf]);
        let mut fast = vec![0.0; l];
        s4::kernel_cauchy(dt, &m, &mut fast, &mut wc, &mut wf).unwrap();
        let mut ws = vec![Complex::ZERO; s4::dense_workspace_len(n).unwrap()];
        let mut slow = vec![0.0; l];
        s4::kernel_dense(Discretization::Bilinear, dt, &m, &mut slow, &mut ws).unwrap();
        let err = rel_l2(&fast, &slow);
        prop_assert!(err < 1e-9, "L={l} N={n} err={err}");
    }

    #[test]
    fn bad_s4d_params_are_errors_not_panics(h in 0usize..4, n in 0usize..4, la in 0usize..30, lb in 0usize..30,
                                             ldt in 0usize..5, ld in 0usize..5, mlen in 0usize..120, dtv in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -10.0f64..2.0],
                                             re in prop_oneof![Just(0.0), Just(1.0), Just(-0.5), Just(f64::NAN)]) {
        let log_dt = vec![dtv; ldt];
        let mut a = vec![re; la];
        for (i, x) in a.iter_mut().enumerate() { if i % 2 == 1 { *x = 1.0; } }
        let b = vec![1.0; lb];
        let c = vec![1.0; lb];
        let d = vec![0.5; ld];
        let p = S4dParams { h, n, log_dt: &log_dt, a: &a, b: &b, c: &c, d: &d };
        let mut mem = vec![0.0; mlen];
        let mut host = vec![0.0; mlen];
        let r = S4d::<Reference, f64>::new(&Reference, &p, Discretization::Zoh, Stability::Strict, &mut mem, &mut host);
        if let Ok(m) = r {
            // Everything was consistent: the model runs.
            let mut k = vec![0.0; 3 * h];
            m.kernel::<f64>(&Reference, Reference.view_mut(&mut k, &[h, 3]).unwrap()).unwrap();
            prop_assert!(re < 0.0 && dtv.is_finite());
        }
    }
}

#[test]
fn discretisation_limits() {
    let b = Complex::ONE;
    // Re(a) -> 0: ZOH Bbar = dt (e^{dt a} - 1)/(dt a) keeps its digits (series value).
    for dt in [1e-9, 1e-4, 1e-2, 1.0] {
        let a = Complex::new(-1e-9, 0.0);
        let m = discretize(Discretization::Zoh, dt, a, b, Stability::Strict).unwrap();
        let x = dt * a.re;
        let want = dt * (1.0 + x / 2.0 + x * x / 6.0);
        assert!(
            (m.bbar.re - want).abs() <= 4.0 * f64::EPSILON * want,
            "dt={dt}"
        );
        assert_eq!(m.log_abar.re, x);
    }
    // Tiny and huge dt, bilinear and ZOH: finite, |Abar| < 1.
    for dt in [1e-12, 1e-4, 1.0, 1e3, 1e8] {
        for method in [Discretization::Zoh, Discretization::Bilinear] {
            let m = discretize(method, dt, Complex::new(-0.5, 3.0), b, Stability::Strict).unwrap();
            assert!(
                m.abar.abs() <= 1.0 && m.bbar.is_finite() && m.log_abar.re <= 0.0,
                "{method:?} dt={dt}"
            );
        }
    }
    // Bilinear ln|Abar| stays exact as Re(a) -> 0.
    let m = discretize(
        Discretization::Bilinear,
        0.1,
        Complex::new(-1e-9, 2.0),
        b,
        Stability::Strict,
    )
    .unwrap();
    assert!(m.log_abar.re < 0.0 && m.log_abar.re > -2e-10);
    // Re(a) >= 0 only with the opt-in; NaN dt never; bilinear pole always.
    let e = discretize(
        Discretization::Zoh,
        0.1,
        Complex::new(0.0, 1.0),
        b,
        Stability::Strict,
    );
    assert!(matches!(e, Err(seqcore::Error::Param { arg: "a", .. })));
    assert!(
        discretize(
            Discretization::Zoh,
            0.1,
            Complex::new(0.0, 1.0),
            b,
            Stability::AllowUnstable
        )
        .is_ok()
    );
    let e = discretize(
        Discretization::Zoh,
        f64::NAN,
        Complex::new(-1.0, 1.0),
        b,
        Stability::Strict,
    );
    assert!(matches!(e, Err(seqcore::Error::Param { arg: "dt", .. })));
    let e = discretize(
        Discretization::Bilinear,
        1.0,
        Complex::new(2.0, 0.0),
        b,
        Stability::AllowUnstable,
    );
    assert!(matches!(e, Err(seqcore::Error::Param { arg: "a", .. })));
    // ZOH at a = 0 (opt-in): Bbar = dt b exactly.
    let m = discretize(
        Discretization::Zoh,
        0.25,
        Complex::ZERO,
        b,
        Stability::AllowUnstable,
    )
    .unwrap();
    assert_eq!(m.bbar, Complex::real(0.25));
}

#[test]
fn shape_errors_name_the_argument() {
    let b = Reference;
    let k = [0.0f64; 6];
    let u = [0.0f64; 6];
    let mut y = [0.0f64; 6];
    let mut ws = [0.0f64; 100];
    // u is [3, 2] but k says H = 3.
    let e = b.ssm_conv::<f64>(
        b.view(&k, &[3, 2]).unwrap(),
        b.view(&u, &[3, 2]).unwrap(),
        None,
        b.view_mut(&mut y, &[2, 3]).unwrap(),
        b.view_mut(&mut ws, &[100]).unwrap(),
    );
    assert!(
        matches!(e, Err(seqcore::Error::Shape { arg: "u", .. })),
        "{e:?}"
    );
    // Too small a workspace.
    let e = b.ssm_conv::<f64>(
        b.view(&k, &[2, 3]).unwrap(),
        b.view(&u, &[3, 2]).unwrap(),
        None,
        b.view_mut(&mut y, &[3, 2]).unwrap(),
        b.view_mut(&mut ws, &[3]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(seqcore::Error::Shape {
                arg: "workspace",
                ..
            })
        ),
        "{e:?}"
    );
    // A state buffer of the wrong size.
    let mut built = build(5, 2, 3, Discretization::Zoh);
    let (m, _) = built.model(5, Discretization::Zoh);
    let mut state = [0.0f64; 10];
    let e = m.scan::<f64>(
        &b,
        b.view(&u, &[3, 2]).unwrap(),
        b.view_mut(&mut state, &[2, 2, 2]).unwrap(),
        None,
    );
    assert!(
        matches!(e, Err(seqcore::Error::Shape { arg: "state", .. })),
        "{e:?}"
    );
    // Mismatched H: u says 3 channels, the model has 2.
    let mut state12 = [0.0f64; 12];
    let e = m.scan::<f64>(
        &b,
        b.view(&u, &[2, 3]).unwrap(),
        b.view_mut(&mut state12, &[2, 3, 2]).unwrap(),
        None,
    );
    assert!(
        matches!(e, Err(seqcore::Error::Shape { arg: "u", .. })),
        "{e:?}"
    );
    let mut k2 = [0.0f64; 4];
    let e = m.kernel::<f64>(&b, b.view_mut(&mut k2, &[1, 4]).unwrap());
    assert!(
        matches!(e, Err(seqcore::Error::Shape { arg: "k", .. })),
        "{e:?}"
    );
    let _ = View::<Reference, f64>::new(&k, seqcore::Layout::contiguous(&[6]).unwrap()).unwrap();
    let _: Option<ViewMut<'_, Reference, f64>> = None;
}
