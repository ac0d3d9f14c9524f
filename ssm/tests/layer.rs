//! The S4 block against a plain f64 implementation written from its definition: direct causal
//! (and anti-causal, lag one) sums of the S4D kernel computed as powers of Abar, erf-GELU, the
//! linear map and the GLU.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use seq_ssm::layer::{Output, S4Layer, Scratch};
use seq_ssm::{Complex, Discretization, S4d, S4dParams, Stability, discretize};
use seqcore::{Backend, Reference};

fn vals(seed: u64, n: usize, s: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            ((((i as u64 + 1) * 2_654_435_761 + seed * 40503) % 1000) as f64 / 500.0 - 1.0) * s
        })
        .collect()
}

fn kernel(
    log_dt: &[f64],
    a: &[f64],
    b: &[f64],
    c: &[f64],
    h: usize,
    n: usize,
    l: usize,
) -> Vec<f64> {
    let mut k = vec![0.0; h * l];
    for hh in 0..h {
        for nn in 0..n {
            let i = hh * n + nn;
            let m = discretize(
                Discretization::Zoh,
                log_dt[hh].exp(),
                Complex::new(a[2 * i], a[2 * i + 1]),
                Complex::new(b[2 * i], b[2 * i + 1]),
                Stability::Strict,
            )
            .unwrap();
            let cc = Complex::new(c[2 * i], c[2 * i + 1]);
            let mut p = m.bbar;
            for j in 0..l {
                k[hh * l + j] += 2.0 * (cc * p).re;
                p *= m.abar;
            }
        }
    }
    k
}

fn erf(x: f64) -> f64 {
    1.0 - libm::erfc(x)
}

#[test]
fn block_matches_its_definition() {
    let (h, n, l) = (3usize, 4usize, 37usize);
    let b = Reference;
    let params = |seed: u64| {
        let log_dt: Vec<f64> = (0..h)
            .map(|i| -4.0 + 0.5 * i as f64 + seed as f64 * 0.1)
            .collect();
        let a: Vec<f64> = (0..h * n)
            .flat_map(|i| [-0.5, core::f64::consts::PI * (i % n) as f64])
            .collect();
        (
            log_dt,
            a,
            vals(seed, 2 * h * n, 1.0),
            vals(seed + 7, 2 * h * n, 0.5),
            vals(seed + 3, h, 1.0),
        )
    };
    let (ldf, af, bf, cf, df) = params(1);
    let (ldb, ab, bb, cb, db) = params(2);
    let w = vals(11, 2 * h * h, 0.4);
    let bias = vals(12, 2 * h, 0.1);
    let u = vals(13, l * h, 1.0);
    for bidirectional in [false, true] {
        let mk = |ld: &[f64], a: &[f64], bv: &[f64], c: &[f64], d: &[f64], mem: &mut Vec<f64>| {
            let p = S4dParams {
                h,
                n,
                log_dt: ld,
                a,
                b: bv,
                c,
                d,
            };
            let len = S4d::<Reference, f64>::mem_len(h, n).unwrap();
            mem.resize(len, 0.0);
            let mut host = vec![0.0; len];
            S4d::<Reference, f64>::new(
                &b,
                &p,
                Discretization::Zoh,
                Stability::Strict,
                mem,
                &mut host,
            )
            .unwrap();
        };
        let (mut mf, mut mb) = (Vec::new(), Vec::new());
        mk(&ldf, &af, &bf, &cf, &df, &mut mf);
        mk(&ldb, &ab, &bb, &cb, &db, &mut mb);
        let fwd = S4d::<Reference, f64>::from_discretized(h, n, &mf).unwrap();
        let bwd = S4d::<Reference, f64>::from_discretized(h, n, &mb).unwrap();
        let layer = S4Layer::<Reference, f64>::new(
            fwd,
            bidirectional.then_some(bwd),
            Output::GeluGlu,
            Some((&w, &bias)),
        )
        .unwrap();
        let lens = layer.scratch_lens(&b, l).unwrap();
        let mut bufs: Vec<Vec<f64>> = lens.iter().map(|&x| vec![f64::NAN; x]).collect();
        let mut out = vec![f64::NAN; l * h];
        {
            let [k, y, sa, sb, o, ws] = &mut bufs[..] else {
                panic!()
            };
            layer
                .forward(
                    &b,
                    b.view(&u, &[l, h]).unwrap(),
                    b.view_mut(&mut out, &[l, h]).unwrap(),
                    Scratch {
                        k,
                        y,
                        a: sa,
                        b: sb,
                        o,
                        workspace: ws,
                    },
                )
                .unwrap();
        }
        // The definition, in f64.
        let kf = kernel(&ldf, &af, &bf, &cf, h, n, l);
        let kb = kernel(&ldb, &ab, &bb, &cb, h, n, l);
        let mut want = vec![0.0; l * h];
        for t in 0..l {
            let mut z = vec![0.0; h];
            for c in 0..h {
                let mut y: f64 = (0..=t).map(|s| kf[c * l + t - s] * u[s * h + c]).sum();
                y += df[c] * u[t * h + c];
                if bidirectional {
                    y += (t + 1..l)
                        .map(|s| kb[c * l + s - t - 1] * u[s * h + c])
                        .sum::<f64>();
                }
                z[c] = 0.5 * y * (1.0 + erf(y / core::f64::consts::SQRT_2));
            }
            let o: Vec<f64> = (0..2 * h)
                .map(|j| bias[j] + (0..h).map(|c| w[j * h + c] * z[c]).sum::<f64>())
                .collect();
            for c in 0..h {
                want[t * h + c] = o[c] / (1.0 + (-o[h + c]).exp());
            }
        }
        let err = out
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f64::max);
        assert!(
            err < 1e-10,
            "bidirectional={bidirectional}: max error {err}"
        );
    }
}

#[test]
fn layer_rejects_bad_input() {
    let (h, n) = (2usize, 2usize);
    let b = Reference;
    let mem = vec![0.0f64; S4d::<Reference, f64>::mem_len(h, n).unwrap()];
    let m = || S4d::<Reference, f64>::from_discretized(h, n, &mem).unwrap();
    let w = vec![0.0; 3];
    let bias = vec![0.0; 4];
    assert!(S4Layer::<Reference, f64>::new(m(), None, Output::GeluGlu, None).is_err());
    assert!(S4Layer::<Reference, f64>::new(m(), None, Output::GeluGlu, Some((&w, &bias))).is_err());
    let other = vec![0.0f64; S4d::<Reference, f64>::mem_len(3, n).unwrap()];
    let m3 = S4d::<Reference, f64>::from_discretized(3, n, &other).unwrap();
    assert!(S4Layer::<Reference, f64>::new(m(), Some(m3), Output::Gelu, None).is_err());
    let layer = S4Layer::<Reference, f64>::new(m(), None, Output::Gelu, None).unwrap();
    let u = vec![0.0; 12];
    let mut out = vec![0.0; 12];
    let mut bufs: Vec<Vec<f64>> = vec![vec![0.0; 1]; 6];
    let [k, y, sa, sb, o, ws] = &mut bufs[..] else {
        panic!()
    };
    let e = layer.forward(
        &b,
        b.view(&u, &[4, 3]).unwrap(),
        b.view_mut(&mut out, &[4, 3]).unwrap(),
        Scratch {
            k,
            y,
            a: sa,
            b: sb,
            o,
            workspace: ws,
        },
    );
    assert!(
        matches!(e, Err(seqcore::Error::Shape { arg: "u", .. })),
        "{e:?}"
    );
    let e = layer.forward(
        &b,
        b.view(&u, &[6, 2]).unwrap(),
        b.view_mut(&mut out, &[6, 2]).unwrap(),
        Scratch {
            k,
            y,
            a: sa,
            b: sb,
            o,
            workspace: ws,
        },
    );
    assert!(
        matches!(e, Err(seqcore::Error::Shape { arg: "k", .. })),
        "{e:?}"
    );
}
