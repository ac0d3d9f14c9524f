//! The Miras design space: presets against the linear kernels and against their update rules
//! written out here in f64, the reductions between presets (notes §9), chunk size 1 == recurrent,
//! the chunkwise form against Titans Eq. 16, gradients against finite differences, and bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::too_many_arguments,
    missing_docs
)]

use proptest::prelude::*;
use seq_memory::miras::Gates;
use seq_memory::{
    Architecture, AttentionalBias, FeatureMap, LearningRule, LinearMemory, MemoryInputs, Miras,
    Retention,
};
use seqcore::{Backend, Error, Reference};

#[derive(Clone, Debug)]
struct Seq {
    l: usize,
    d: usize,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    lr: Vec<f64>,
    keep: Vec<f64>,
    mom: Vec<f64>,
}

fn seq(max_l: usize) -> impl Strategy<Value = Seq> {
    (0..=max_l, 1usize..6).prop_flat_map(|(l, d)| {
        let f = |n: usize| proptest::collection::vec(-1.0f64..1.0, n);
        let u = |n: usize, a: f64, b: f64| proptest::collection::vec(a..b, n);
        (
            f(l * d),
            f(l * d),
            f(l * d),
            u(l, 0.0, 1.0),
            u(l, 0.5, 1.0),
            u(l, 0.0, 0.9),
        )
            .prop_map(move |(q, mut k, v, lr, keep, mom)| {
                for r in k.chunks_mut(d) {
                    let n = r.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
                    r.iter_mut().for_each(|x| *x /= n);
                }
                Seq {
                    l,
                    d,
                    q,
                    k,
                    v,
                    lr,
                    keep,
                    mom,
                }
            })
    })
}

/// Runs `m` (chunkwise with `chunk`) from parameters `p0`; returns (outputs, parameters).
fn run(
    m: &Miras,
    s: &Seq,
    chunk: usize,
    p0: &[f64],
    keep: bool,
    mom: bool,
) -> (Vec<f64>, Vec<f64>) {
    let (d, l) = (s.d, s.l);
    let mut state = vec![0.0; m.state_len(d, d).unwrap()];
    m.init(d, d, p0, &mut state).unwrap();
    let mut o = vec![f64::NAN; l * d];
    let mut ws = vec![0.0; m.workspace_len(chunk, d, d).unwrap()];
    let gates = Gates {
        lr: &s.lr,
        keep: keep.then_some(&s.keep[..]),
        momentum: mom.then_some(&s.mom[..]),
    };
    m.chunkwise(
        chunk, d, d, &s.q, &s.k, &s.v, gates, &mut state, &mut o, &mut ws,
    )
    .unwrap();
    let p = m.params_len(d, d).unwrap();
    (o, state[..p].to_vec())
}

fn kernel(m: LinearMemory, s: &Seq, beta: bool, decay: bool) -> Vec<f64> {
    let b = Reference;
    let (l, d) = (s.l, s.d);
    let g: Vec<f64> = s.keep.iter().map(|x| x.ln()).collect();
    let mut st = vec![0.0; d * d];
    let mut o = vec![0.0; l * d];
    let x = MemoryInputs {
        q: b.view(&s.q, &[l, 1, d]).unwrap(),
        k: b.view(&s.k, &[l, 1, d]).unwrap(),
        v: b.view(&s.v, &[l, 1, d]).unwrap(),
        beta: beta.then(|| b.view(&s.lr, &[l, 1]).unwrap()),
        log_decay: decay.then(|| b.view(&g, &[l, 1]).unwrap()),
    };
    m.forward(
        &b,
        x,
        b.view_mut(&mut st, &[1, d, d]).unwrap(),
        Some(b.view_mut(&mut o, &[l, 1, d]).unwrap()),
        None,
    )
    .unwrap();
    o
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

fn mlp_p0(d: usize, h: usize) -> Vec<f64> {
    (0..2 * h * d)
        .map(|i| ((i * 37 % 19) as f64 - 9.0) / 30.0)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The linear presets as Miras memories equal the fused kernels' rules.
    #[test]
    fn linear_presets_equal_the_kernels(s in seq(12)) {
        let z = vec![0.0; s.d * s.d];
        let ones = Seq { lr: vec![1.0; s.l], ..s.clone() };
        let (o, _) = run(&Miras::linear_attention(), &ones, 1, &z, false, false);
        prop_assert!(close(&o, &kernel(LinearMemory::linear_attention(FeatureMap::Identity), &s, false, false), 1e-12));
        let (o, _) = run(&Miras::decayed_linear_attention(), &ones, 1, &z, true, false);
        prop_assert!(close(&o, &kernel(LinearMemory::decayed_linear_attention(), &s, false, true), 1e-12));
        let (o, _) = run(&Miras::delta_net(), &s, 1, &z, false, false);
        prop_assert!(close(&o, &kernel(LinearMemory::delta_net(), &s, true, false), 1e-12));
        let (o, _) = run(&Miras::gated_delta_net(), &s, 1, &z, true, false);
        prop_assert!(close(&o, &kernel(LinearMemory::gated_delta_net(), &s, true, true), 1e-12));
    }

    /// Chunk size 1 is the recurrence, for every preset (bit for bit), and the dot-product bias
    /// on a matrix (whose gradient does not depend on the memory) is the same at every chunk size.
    #[test]
    fn chunk_one_is_the_recurrence(s in seq(10), chunk in 2usize..6) {
        let d = s.d;
        for m in [Miras::titans(3), Miras::moneta(3, 3.0, 4.0), Miras::yaad(3, 0.5), Miras::memora(3, 1.0)] {
            let p0: Vec<f64> = if matches!(m.retention, Retention::Kl { .. }) {
                memora_p0(d, 3)
            } else {
                mlp_p0(d, 3)
            };
            let mut state = vec![0.0; m.state_len(d, d).unwrap()];
            m.init(d, d, &p0, &mut state).unwrap();
            let mut o = vec![0.0; s.l * d];
            let mut ws = vec![0.0; m.workspace_len(1, d, d).unwrap()];
            let gates = Gates { lr: &s.lr, keep: Some(&s.keep), momentum: Some(&s.mom) };
            m.recurrent(d, d, &s.q, &s.k, &s.v, gates, &mut state, &mut o, &mut ws).unwrap();
            let mut state1 = vec![0.0; m.state_len(d, d).unwrap()];
            m.init(d, d, &p0, &mut state1).unwrap();
            let mut o1 = vec![0.0; s.l * d];
            m.chunkwise(1, d, d, &s.q, &s.k, &s.v, gates, &mut state1, &mut o1, &mut ws).unwrap();
            prop_assert_eq!(&o, &o1);
            prop_assert_eq!(&state, &state1);
        }
        let z = vec![0.0; d * d];
        let (o1, p1) = run(&Miras::decayed_linear_attention(), &s, 1, &z, true, false);
        let (oc, pc) = run(&Miras::decayed_linear_attention(), &s, chunk, &z, true, false);
        prop_assert!(close(&o1, &oc, 1e-12) && close(&p1, &pc, 1e-12));
    }

    /// Titans Eq. 16 for a matrix memory without momentum, written out: within a chunk every
    /// gradient is taken at the chunk-start memory `W0`, `W_t = alpha_t W_{t-1} - eta_t grad(W0; k_t, v_t)`,
    /// and each token reads `W_t q_t`.
    #[test]
    fn chunkwise_is_titans_eq16(s in seq(12), chunk in 1usize..6) {
        let m = Miras { rule: LearningRule::GradientDescent, architecture: Architecture::Matrix, ..Miras::titans(1) };
        let d = s.d;
        let (o, p) = run(&m, &s, chunk, &vec![0.0; d * d], true, false);
        let mut w = vec![0.0; d * d];
        let mut want = vec![0.0; s.l * d];
        let mut c0 = 0;
        while c0 < s.l {
            let n = chunk.min(s.l - c0);
            let w0 = w.clone();
            for t in c0..c0 + n {
                let (k, v) = (&s.k[t * d..(t + 1) * d], &s.v[t * d..(t + 1) * d]);
                for i in 0..d {
                    let e: f64 = (0..d).map(|j| w0[i * d + j] * k[j]).sum::<f64>() - v[i];
                    for j in 0..d {
                        w[i * d + j] = s.keep[t] * w[i * d + j] - s.lr[t] * e * k[j];
                    }
                }
                for i in 0..d {
                    want[t * d + i] = (0..d).map(|j| w[i * d + j] * s.q[t * d + j]).sum();
                }
            }
            c0 += n;
        }
        prop_assert!(close(&o, &want, 1e-12), "{:?} vs {:?}", o, want);
        prop_assert!(close(&p, &w, 1e-12));
    }

    /// Titans with momentum on a matrix memory, Eq. 13-14 written out.
    #[test]
    fn titans_momentum_written_out(s in seq(12)) {
        let m = Miras { architecture: Architecture::Matrix, ..Miras::titans(1) };
        let d = s.d;
        let (o, _) = run(&m, &s, 1, &vec![0.0; d * d], true, true);
        let (mut w, mut sm) = (vec![0.0; d * d], vec![0.0; d * d]);
        let mut want = vec![0.0; s.l * d];
        for t in 0..s.l {
            let (k, v) = (&s.k[t * d..(t + 1) * d], &s.v[t * d..(t + 1) * d]);
            let e: Vec<f64> = (0..d).map(|i| (0..d).map(|j| w[i * d + j] * k[j]).sum::<f64>() - v[i]).collect();
            for i in 0..d {
                for j in 0..d {
                    sm[i * d + j] = s.mom[t] * sm[i * d + j] - s.lr[t] * e[i] * k[j];
                    w[i * d + j] = s.keep[t] * w[i * d + j] + sm[i * d + j];
                }
            }
            for i in 0..d {
                want[t * d + i] = (0..d).map(|j| w[i * d + j] * s.q[t * d + j]).sum();
            }
        }
        prop_assert!(close(&o, &want, 1e-12));
    }

    /// Notes §9: Moneta with p = q = 2 is the L2 memory with twice the learning rate, and Yaad with
    /// delta = inf is the L2 memory: exactly. Yaad(delta = inf, alpha = 1) on a matrix is DeltaNet.
    #[test]
    fn moneta_and_yaad_reduce_to_l2(s in seq(10)) {
        let d = s.d;
        let p0 = mlp_p0(d, 2);
        let l2 = Miras { bias: AttentionalBias::L2, retention: Retention::ForgetGate, ..Miras::yaad(2, 1.0) };
        let twice = Seq { lr: s.lr.iter().map(|x| 2.0 * x).collect(), ..s.clone() };
        let (a, _) = run(&Miras::moneta(2, 2.0, 2.0), &s, 1, &p0, true, false);
        let (b, _) = run(&Miras { retention: Retention::Lq { q: 2.0 }, ..l2 }, &twice, 1, &p0, true, false);
        let (c, _) = run(&Miras { bias: AttentionalBias::Lp { p: 2.0 }, ..l2 }, &s, 1, &p0, true, false);
        let (e, _) = run(&l2, &twice, 1, &p0, true, false);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&c, &e);
        let (y, _) = run(&Miras::yaad(2, f64::INFINITY), &s, 1, &p0, true, false);
        let (z, _) = run(&l2, &s, 1, &p0, true, false);
        prop_assert_eq!(&y, &z);
        let ym = Miras { architecture: Architecture::Matrix, ..Miras::yaad(1, f64::INFINITY) };
        let zero = vec![0.0; d * d];
        let (y, _) = run(&ym, &s, 1, &zero, false, false);
        let (dn, _) = run(&Miras::delta_net(), &s, 1, &zero, false, false);
        prop_assert_eq!(&y, &dn);
    }

    /// Memora: every row stays on the simplex (positive, summing to the scale), and the update is
    /// the literal Eq. 27 `W_t = c softmax(alpha_t log W_{t-1} - eta_t grad)` written out here on a
    /// matrix memory.
    #[test]
    fn memora_rows_stay_on_the_simplex(s in seq(10)) {
        let d = s.d;
        let m = Miras { architecture: Architecture::Matrix, ..Miras::memora(1, 2.0) };
        let p0 = vec![2.0 / d as f64; d * d];
        let (o, p) = run(&m, &s, 1, &p0, true, false);
        for r in p.chunks(d) {
            prop_assert!(r.iter().all(|&x| x > 0.0));
            prop_assert!((r.iter().sum::<f64>() - 2.0).abs() < 1e-12);
        }
        let mut w = p0.clone();
        let mut want = vec![0.0; s.l * d];
        for t in 0..s.l {
            let (k, v) = (&s.k[t * d..(t + 1) * d], &s.v[t * d..(t + 1) * d]);
            let e: Vec<f64> = (0..d).map(|i| (0..d).map(|j| w[i * d + j] * k[j]).sum::<f64>() - v[i]).collect();
            for i in 0..d {
                let z: Vec<f64> = (0..d).map(|j| s.keep[t] * w[i * d + j].ln() - s.lr[t] * e[i] * k[j]).collect();
                let sum: f64 = z.iter().map(|x| x.exp()).sum();
                for j in 0..d {
                    w[i * d + j] = 2.0 * z[j].exp() / sum;
                }
            }
            for i in 0..d {
                want[t * d + i] = (0..d).map(|j| w[i * d + j] * s.q[t * d + j]).sum();
            }
        }
        prop_assert!(close(&o, &want, 1e-10), "{:?} vs {:?}", o, want);
    }

    /// The MLP memory's analytic gradient (every bias) against central finite differences in f64.
    #[test]
    fn mlp_gradient_matches_finite_differences(
        d in 1usize..5,
        h in 1usize..5,
        x in proptest::collection::vec(-1.0f64..1.0, 40),
        bias in 0usize..4,
    ) {
        let bias = [AttentionalBias::DotProduct, AttentionalBias::L2, AttentionalBias::Lp { p: 3.0 }, AttentionalBias::Huber { delta: 100.0 }][bias];
        let arch = Architecture::Mlp { hidden: h };
        let np = arch.params_len(d, d).unwrap();
        let p: Vec<f64> = (0..np).map(|i| x[i % 40] * 0.7).collect();
        let k: Vec<f64> = (0..d).map(|i| x[(i + 7) % 40]).collect();
        let v: Vec<f64> = (0..d).map(|i| x[(i + 13) % 40]).collect();
        let mut g = vec![0.0; np];
        let mut scratch = vec![0.0; arch.scratch_len(d, d).unwrap()];
        arch.gradient(&bias, d, d, &p, &k, &v, &mut g, &mut scratch).unwrap();
        let loss = |p: &[f64]| {
            let mut y = vec![0.0; d];
            let mut sc = vec![0.0; arch.scratch_len(d, d).unwrap()];
            arch.forward(d, d, p, &k, &mut y, &mut sc).unwrap();
            bias.loss(&y, &v)
        };
        for i in 0..np {
            let hstep = 1e-5;
            let (mut a, mut b) = (p.clone(), p.clone());
            a[i] += hstep;
            b[i] -= hstep;
            let fd = (loss(&a) - loss(&b)) / (2.0 * hstep);
            prop_assert!((fd - g[i]).abs() <= 1e-6 * (1.0 + g[i].abs()), "param {}: fd {} analytic {}", i, fd, g[i]);
        }
    }

    /// Bad input never panics; every error names its argument.
    #[test]
    fn bad_input_is_an_error(
        p in -1.0f64..4.0,
        delta in -1.0f64..1.0,
        q in 0.0f64..5.0,
        lr in -1.0f64..1.0,
        l in 0usize..4,
        d in 0usize..3,
        lens in proptest::collection::vec(0usize..12, 6),
        chunk in 0usize..3,
        which in 0usize..4,
    ) {
        let m = [Miras::moneta(2, p, q), Miras::yaad(2, delta), Miras::titans(d), Miras::memora(2, delta)][which];
        let buf = vec![0.5; 64];
        let lrs = vec![lr; l];
        let mut state = vec![0.1; lens[4] * 4];
        let mut o = vec![0.0; lens[3]];
        let mut ws = vec![0.0; lens[5] * 3];
        let gates = Gates { lr: &lrs, keep: None, momentum: None };
        let r = m.chunkwise(chunk, d, d, &buf[..lens[0]], &buf[..lens[1]], &buf[..lens[2]], gates, &mut state, &mut o, &mut ws);
        if let Err(e) = r {
            let msg = format!("{e}");
            prop_assert!(msg.contains('`'), "{}", msg);
        }
    }
}

fn memora_p0(d: usize, h: usize) -> Vec<f64> {
    // W0 [h, d] rows sum to 1 over d; W1 [d, h] rows sum to 1 over h.
    let mut p = vec![1.0 / d as f64; h * d];
    p.extend(vec![1.0 / h as f64; d * h]);
    p
}

#[test]
fn invalid_choices_are_named() {
    let s = [0.0f64; 2];
    let mut st = [0.0f64; 12];
    let (mut o, mut ws) = ([0.0f64; 2], [0.0f64; 64]);
    fn g(lr: &[f64]) -> Gates<'_, f64> {
        Gates {
            lr,
            keep: None,
            momentum: None,
        }
    }
    let run = |m: Miras, lr: &[f64], st: &mut [f64], o: &mut [f64], ws: &mut [f64]| {
        m.chunkwise(1, 2, 2, &s, &s, &s, g(lr), st, o, ws)
            .unwrap_err()
    };
    let arg = |e: Error| match e {
        Error::Param { arg, .. } | Error::Shape { arg, .. } | Error::Capacity { arg, .. } => arg,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        arg(run(
            Miras::moneta(2, 0.5, 4.0),
            &[0.1],
            &mut st,
            &mut o,
            &mut ws
        )),
        "p"
    );
    assert_eq!(
        arg(run(
            Miras::moneta(2, 3.0, 1.5),
            &[0.1],
            &mut st,
            &mut o,
            &mut ws
        )),
        "q"
    );
    assert_eq!(
        arg(run(Miras::yaad(2, 0.0), &[0.1], &mut st, &mut o, &mut ws)),
        "delta"
    );
    assert_eq!(
        arg(run(
            Miras::yaad(2, f64::NAN),
            &[0.1],
            &mut st,
            &mut o,
            &mut ws
        )),
        "delta"
    );
    assert_eq!(
        arg(run(Miras::titans(0), &[0.1], &mut st, &mut o, &mut ws)),
        "hidden"
    );
    let m = Miras {
        architecture: Architecture::Matrix,
        ..Miras::titans(1)
    };
    assert_eq!(arg(run(m, &[f64::NAN], &mut st, &mut o, &mut ws)), "lr");
    assert_eq!(arg(run(m, &[-0.1], &mut st, &mut o, &mut ws)), "lr");
    assert_eq!(arg(run(m, &[0.1, 0.1], &mut st, &mut o, &mut ws)), "lr");
    assert_eq!(arg(run(m, &[0.1], &mut st[..5], &mut o, &mut ws)), "state");
    assert_eq!(
        arg(run(m, &[0.1], &mut st, &mut o, &mut ws[..1])),
        "workspace"
    );
    let e = m
        .chunkwise(0, 2, 2, &s, &s, &s, g(&[0.1]), &mut st, &mut o, &mut ws)
        .unwrap_err();
    assert_eq!(arg(e), "chunk");
    let e = Miras::titans(2)
        .chunkwise(
            1,
            2,
            1,
            &s,
            &s,
            &s[..1],
            g(&[0.1]),
            &mut st,
            &mut o[..1],
            &mut ws,
        )
        .unwrap_err();
    assert_eq!(arg(e), "dv");
    let mut st = [0.0f64; 3 * 8];
    let e = Miras::memora(2, 1.0)
        .init(2, 2, &[0.0; 8], &mut st)
        .unwrap_err();
    assert_eq!(arg(e), "p0");
    let _ = Retention::ElasticNet { lambda: 0.1 };
}
