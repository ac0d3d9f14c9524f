//! Linear memories: each preset against its closed form written here independently in f64,
//! chunkwise == recurrent at every chunk size, streaming == one call, split-and-merge == whole
//! (LASP-2), gate extremes, state growth, and bad input.
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
use seq_memory::parallel::{advance, chunk_state};
use seq_memory::{FeatureMap, LinearMemory, MemoryInputs};
use seqcore::{Backend, Error, Reference};

#[derive(Clone, Debug)]
struct Case {
    l: usize,
    h: usize,
    dk: usize,
    dv: usize,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    beta: Vec<f64>,
    g: Vec<f64>,
}

fn unit_rows(x: &mut [f64], d: usize) {
    for row in x.chunks_mut(d) {
        let n = row.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
        row.iter_mut().for_each(|a| *a /= n);
    }
}

fn case_strategy(max_l: usize) -> impl Strategy<Value = Case> {
    (0..=max_l, 1usize..3, 1usize..6, 1usize..6).prop_flat_map(|(l, h, dk, dv)| {
        let f = |n: usize| proptest::collection::vec(-1.0f64..1.0, n);
        (
            f(l * h * dk),
            f(l * h * dk),
            f(l * h * dv),
            proptest::collection::vec(0.0f64..1.0, l * h),
            proptest::collection::vec(-1.0f64..0.0, l * h),
        )
            .prop_map(move |(q, mut k, v, beta, g)| {
                unit_rows(&mut k, dk);
                Case {
                    l,
                    h,
                    dk,
                    dv,
                    q,
                    k,
                    v,
                    beta,
                    g,
                }
            })
    })
}

fn inputs<'a>(c: &'a Case, m: &LinearMemory) -> MemoryInputs<'a, Reference, f64> {
    let b = Reference;
    let (beta, g) = match m.gates {
        seq_memory::Gates::None => (None, None),
        seq_memory::Gates::Decay => (None, Some(&c.g)),
        seq_memory::Gates::Beta => (Some(&c.beta), None),
        seq_memory::Gates::BetaAndDecay => (Some(&c.beta), Some(&c.g)),
    };
    MemoryInputs {
        q: b.view(&c.q, &[c.l, c.h, c.dk]).unwrap(),
        k: b.view(&c.k, &[c.l, c.h, c.dk]).unwrap(),
        v: b.view(&c.v, &[c.l, c.h, c.dv]).unwrap(),
        beta: beta.map(|x| b.view(x, &[c.l, c.h]).unwrap()),
        log_decay: g.map(|x| b.view(x, &[c.l, c.h]).unwrap()),
    }
}

/// Runs `m` on the case from `state0`; returns (outputs, final state).
fn run(m: &LinearMemory, c: &Case, state0: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let b = Reference;
    let mut state = state0.to_vec();
    let mut o = vec![f64::NAN; c.l * c.h * c.dv];
    let mut ws = vec![0.0; m.workspace_len(&b, c.dk, c.dv).unwrap()];
    let wsv = (!ws.is_empty()).then(|| {
        b.view_mut(&mut ws[..], &[m.workspace_len(&b, c.dk, c.dv).unwrap()])
            .unwrap()
    });
    m.forward(
        &b,
        inputs(c, m),
        b.view_mut(&mut state, &[c.h, c.dv, c.dk]).unwrap(),
        Some(b.view_mut(&mut o, &[c.l, c.h, c.dv]).unwrap()),
        wsv,
    )
    .unwrap();
    (o, state)
}

fn presets() -> [LinearMemory; 5] {
    [
        LinearMemory::linear_attention(FeatureMap::Identity),
        LinearMemory::linear_attention(FeatureMap::Elu1),
        LinearMemory::decayed_linear_attention(),
        LinearMemory::delta_net(),
        LinearMemory::gated_delta_net(),
    ]
}

fn phi(m: &LinearMemory, x: f64) -> f64 {
    match m.spec.feature_map {
        FeatureMap::Elu1 => {
            if x > 0.0 {
                x + 1.0
            } else {
                x.exp()
            }
        }
        _ => x,
    }
}

/// The closed forms, in f64, written without the crate: the masked product `(phi(Q) phi(K)^T ⊙ D) V`
/// for the additive rule (`D[t, s] = exp(sum_{s<r<=t} g_r)`), and the explicit matrix product
/// `S_t = S_{t-1} (a_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T` for the delta rule.
fn closed_form(m: &LinearMemory, c: &Case) -> Vec<f64> {
    let (l, h, dk, dv) = (c.l, c.h, c.dk, c.dv);
    let at = |x: &Vec<f64>, t: usize, hh: usize, d: usize, j: usize| x[(t * h + hh) * d + j];
    let beta = |t: usize, hh: usize| match m.gates {
        seq_memory::Gates::Beta | seq_memory::Gates::BetaAndDecay => c.beta[t * h + hh],
        _ => 1.0,
    };
    let g = |t: usize, hh: usize| match m.gates {
        seq_memory::Gates::Decay | seq_memory::Gates::BetaAndDecay => c.g[t * h + hh],
        _ => 0.0,
    };
    let mut o = vec![0.0; l * h * dv];
    for hh in 0..h {
        match m.spec.rule {
            seq_memory::MemoryRule::Additive => {
                for t in 0..l {
                    for s in 0..=t {
                        let decay: f64 = ((s + 1)..=t).map(|r| g(r, hh)).sum::<f64>().exp();
                        let score: f64 = (0..dk)
                            .map(|j| {
                                phi(m, at(&c.q, t, hh, dk, j)) * phi(m, at(&c.k, s, hh, dk, j))
                            })
                            .sum();
                        for i in 0..dv {
                            o[(t * h + hh) * dv + i] +=
                                decay * score * beta(s, hh) * at(&c.v, s, hh, dv, i);
                        }
                    }
                }
            }
            _ => {
                let mut s_mat = vec![0.0; dv * dk];
                for t in 0..l {
                    let a = g(t, hh).exp();
                    let bt = beta(t, hh);
                    let k: Vec<f64> = (0..dk).map(|j| at(&c.k, t, hh, dk, j)).collect();
                    // P = a (I - beta k k^T)
                    let mut p = vec![0.0; dk * dk];
                    for r in 0..dk {
                        for cc in 0..dk {
                            let id = if r == cc { 1.0 } else { 0.0 };
                            p[r * dk + cc] = a * (id - bt * k[r] * k[cc]);
                        }
                    }
                    let mut next = vec![0.0; dv * dk];
                    for i in 0..dv {
                        for cc in 0..dk {
                            let mut acc = 0.0;
                            for r in 0..dk {
                                acc += s_mat[i * dk + r] * p[r * dk + cc];
                            }
                            next[i * dk + cc] = acc + bt * at(&c.v, t, hh, dv, i) * k[cc];
                        }
                    }
                    s_mat = next;
                    for i in 0..dv {
                        o[(t * h + hh) * dv + i] = (0..dk)
                            .map(|j| s_mat[i * dk + j] * at(&c.q, t, hh, dk, j))
                            .sum();
                    }
                }
            }
        }
    }
    o
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().map(|x| x.abs()).fold(1.0, f64::max);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}: element {i}: got {g}, want {w} (scale {scale})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn presets_equal_their_closed_forms(c in case_strategy(12)) {
        for m in presets() {
            let (o, _) = run(&m, &c, &vec![0.0; c.h * c.dv * c.dk]);
            assert_close(&o, &closed_form(&m, &c), 1e-12, &format!("{m:?}"));
        }
    }

    #[test]
    fn chunkwise_equals_recurrent_at_every_chunk_size(c in case_strategy(13), init in proptest::collection::vec(-1.0f64..1.0, 50)) {
        let s0: Vec<f64> = (0..c.h * c.dv * c.dk).map(|i| init[i % init.len()]).collect();
        for m in presets() {
            let (o_r, s_r) = run(&m, &c, &s0);
            for chunk in 1..=c.l + 2 {
                let (o_c, s_c) = run(&m.chunkwise(chunk), &c, &s0);
                assert_close(&o_c, &o_r, 1e-12, &format!("{m:?} chunk {chunk} o"));
                assert_close(&s_c, &s_r, 1e-12, &format!("{m:?} chunk {chunk} state"));
            }
        }
    }

    #[test]
    fn streaming_one_token_at_a_time_equals_one_call(c in case_strategy(9)) {
        let b = Reference;
        for m in presets() {
            let (o_all, s_all) = run(&m, &c, &vec![0.0; c.h * c.dv * c.dk]);
            let mut state = vec![0.0; c.h * c.dv * c.dk];
            let mut o = vec![f64::NAN; c.l * c.h * c.dv];
            for t in 0..c.l {
                let x = inputs(&c, &m);
                let x = MemoryInputs {
                    q: x.q.narrow(0, t, 1).unwrap(),
                    k: x.k.narrow(0, t, 1).unwrap(),
                    v: x.v.narrow(0, t, 1).unwrap(),
                    beta: x.beta.map(|v| v.narrow(0, t, 1).unwrap()),
                    log_decay: x.log_decay.map(|v| v.narrow(0, t, 1).unwrap()),
                };
                let ov = b.view_mut(&mut o, &[c.l, c.h, c.dv]).unwrap().narrow(0, t, 1).unwrap();
                m.forward(&b, x, b.view_mut(&mut state, &[c.h, c.dv, c.dk]).unwrap(), Some(ov), None).unwrap();
            }
            prop_assert_eq!(&o, &o_all);
            prop_assert_eq!(&state, &s_all);
        }
    }

    #[test]
    fn split_and_merge_equals_whole(c in case_strategy(14), cuts in proptest::collection::vec(0usize..15, 0..4), chunk in 1usize..5) {
        let b = Reference;
        let mut cuts: Vec<usize> = cuts.into_iter().map(|x| x.min(c.l)).collect();
        cuts.push(0);
        cuts.push(c.l);
        cuts.sort_unstable();
        let (h, dk, dv) = (c.h, c.dk, c.dv);
        for m in presets() {
            for m in [m, m.chunkwise(chunk)] {
                let (o_whole, s_whole) = run(&m, &c, &vec![0.0; h * dv * dk]);
                // Every part computes its affine map (M, D) alone, from its own tokens.
                let parts: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
                let zero = [0.0f64];
                let maps: Vec<(Vec<f64>, Vec<f64>)> = parts
                    .iter()
                    .map(|&(a, e)| {
                        let x = inputs(&c, &m);
                        let x = MemoryInputs {
                            q: x.q.narrow(0, a, e - a).unwrap(),
                            k: x.k.narrow(0, a, e - a).unwrap(),
                            v: x.v.narrow(0, a, e - a).unwrap(),
                            beta: x.beta.map(|v| v.narrow(0, a, e - a).unwrap()),
                            log_decay: x.log_decay.map(|v| v.narrow(0, a, e - a).unwrap()),
                        };
                        let mut d = vec![0.0; h * dv * dk];
                        let mut mm = vec![0.0; h * dk * dk];
                        for hh in 0..h {
                            for j in 0..dk {
                                mm[(hh * dk + j) * dk + j] = 1.0;
                            }
                        }
                        let wl = m.workspace_len(&b, dk, dv.max(dk)).unwrap();
                        let mut ws = vec![0.0; wl];
                        let wsv = (wl > 0).then(|| b.view_mut(&mut ws[..], &[wl]).unwrap());
                        chunk_state(
                            &b,
                            &m,
                            x,
                            b.view(&zero, &[1]).unwrap(),
                            b.view_mut(&mut d, &[h, dv, dk]).unwrap(),
                            b.view_mut(&mut mm, &[h, dk, dk]).unwrap(),
                            wsv,
                        )
                        .unwrap();
                        (mm, d)
                    })
                    .collect();
                // Prefix: each part's start state from the maps of the parts before it.
                let mut start = vec![0.0; h * dv * dk];
                let mut o = vec![f64::NAN; c.l * h * dv];
                for (&(a, e), (mm, d)) in parts.iter().zip(&maps) {
                    let x = inputs(&c, &m);
                    let x = MemoryInputs {
                        q: x.q.narrow(0, a, e - a).unwrap(),
                        k: x.k.narrow(0, a, e - a).unwrap(),
                        v: x.v.narrow(0, a, e - a).unwrap(),
                        beta: x.beta.map(|v| v.narrow(0, a, e - a).unwrap()),
                        log_decay: x.log_decay.map(|v| v.narrow(0, a, e - a).unwrap()),
                    };
                    let mut s = start.clone();
                    let wl = m.workspace_len(&b, dk, dv).unwrap();
                    let mut ws = vec![0.0; wl];
                    let wsv = (wl > 0).then(|| b.view_mut(&mut ws[..], &[wl]).unwrap());
                    let ov = b.view_mut(&mut o, &[c.l, h, dv]).unwrap().narrow(0, a, e - a).unwrap();
                    m.forward(&b, x, b.view_mut(&mut s, &[h, dv, dk]).unwrap(), Some(ov), wsv).unwrap();
                    let mut next = d.clone();
                    advance(
                        &b,
                        b.view(&start, &[h, dv, dk]).unwrap(),
                        b.view(mm, &[h, dk, dk]).unwrap(),
                        b.view_mut(&mut next, &[h, dv, dk]).unwrap(),
                    )
                    .unwrap();
                    assert_close(&next, &s, 1e-12, "advanced state == computed state");
                    start = next;
                }
                assert_close(&o, &o_whole, 1e-12, &format!("{m:?} outputs"));
                assert_close(&start, &s_whole, 1e-12, &format!("{m:?} final state"));
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic(
        dims in proptest::collection::vec(0usize..4, 13),
        chunk in 0usize..3,
        which in 0usize..5,
        gates in 0usize..4,
        ws_len in 0usize..40,
    ) {
        let b = Reference;
        let buf = vec![0.5f32; 512];
        let mut st = vec![0.0f32; 512];
        let mut out = vec![0.0f32; 512];
        let mut ws = vec![0.0f32; ws_len];
        let m = presets()[which];
        let m = if chunk == 0 { m } else { m.chunkwise(chunk - 1) };
        let x = MemoryInputs {
            q: b.view(&buf, &dims[0..3]).unwrap(),
            k: b.view(&buf, &dims[3..6]).unwrap(),
            v: b.view(&buf, &dims[6..9]).unwrap(),
            beta: (gates & 1 == 1).then(|| b.view(&buf, &dims[9..11]).unwrap()),
            log_decay: (gates & 2 == 2).then(|| b.view(&buf, &dims[11..13]).unwrap()),
        };
        let (hh, dv, dk) = (dims[4], dims[7], dims[5]);
        let r = m.forward(
            &b,
            x,
            b.view_mut(&mut st, &[hh, dv, dk]).unwrap(),
            Some(b.view_mut(&mut out, &[dims[3], hh, dv]).unwrap()),
            Some(b.view_mut(&mut ws[..], &[ws_len]).unwrap()),
        );
        if let Err(e) = r {
            // Every error names its argument.
            let s = format!("{e}");
            prop_assert!(s.contains('`'), "{}", s);
        }
    }
}

#[test]
fn chunk_zero_and_missing_gates_are_named_errors() {
    let b = Reference;
    let x = [0.0f64; 4];
    let mut s = [0.0f64; 1];
    let mut ws = [0.0f64; 8];
    let inp = MemoryInputs {
        q: b.view(&x, &[2, 1, 1]).unwrap(),
        k: b.view(&x, &[2, 1, 1]).unwrap(),
        v: b.view(&x, &[2, 1, 1]).unwrap(),
        beta: None,
        log_decay: None,
    };
    let m = LinearMemory::linear_attention(FeatureMap::Identity).chunkwise(0);
    let e = m
        .forward(
            &b,
            inp,
            b.view_mut(&mut s, &[1, 1, 1]).unwrap(),
            None,
            Some(b.view_mut(&mut ws, &[8]).unwrap()),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Param { arg: "chunk", .. }), "{e:?}");
    let e = LinearMemory::delta_net()
        .forward(&b, inp, b.view_mut(&mut s, &[1, 1, 1]).unwrap(), None, None)
        .unwrap_err();
    assert!(matches!(e, Error::Param { arg: "beta", .. }), "{e:?}");
    let e = LinearMemory::linear_attention(FeatureMap::Identity)
        .chunkwise(4)
        .forward(
            &b,
            inp,
            b.view_mut(&mut s, &[1, 1, 1]).unwrap(),
            None,
            Some(b.view_mut(&mut ws[..2], &[2]).unwrap()),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Capacity {
                arg: "workspace",
                ..
            }
        ),
        "{e:?}"
    );
    let e = LinearMemory::linear_attention(FeatureMap::Identity)
        .forward(
            &b,
            inp,
            b.view_mut(&mut ws, &[1, 2, 1]).unwrap(),
            None,
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::Shape { arg: "state", .. }), "{e:?}");
}

/// Gate extremes (numerics notes, edge case 18): log-decay exactly 0, -1e-4 and -20, in both
/// forms and every chunk size: finite, and equal.
#[test]
fn gate_extremes_stay_finite() {
    for g in [0.0, -1e-4, -20.0, -1e4] {
        let (l, h, dk, dv) = (67, 1, 4, 3);
        let mut k: Vec<f64> = (0..l * dk)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 5.0)
            .collect();
        unit_rows(&mut k, dk);
        let c = Case {
            l,
            h,
            dk,
            dv,
            q: (0..l * dk)
                .map(|i| ((i * 13 % 7) as f64 - 3.0) / 3.0)
                .collect(),
            k,
            v: (0..l * dv)
                .map(|i| ((i * 17 % 5) as f64 - 2.0) / 2.0)
                .collect(),
            beta: vec![0.9; l],
            g: vec![g; l],
        };
        for m in [
            LinearMemory::decayed_linear_attention(),
            LinearMemory::gated_delta_net(),
        ] {
            let (o_r, s_r) = run(&m, &c, &vec![0.0; dv * dk]);
            assert!(o_r.iter().chain(&s_r).all(|x| x.is_finite()), "g = {g}");
            for chunk in [1, 16, 64, 100] {
                let (o_c, s_c) = run(&m.chunkwise(chunk), &c, &vec![0.0; dv * dk]);
                assert!(o_c.iter().chain(&s_c).all(|x| x.is_finite()), "g = {g}");
                assert_close(&o_c, &o_r, 1e-12, "extreme gate o");
                assert_close(&s_c, &s_r, 1e-12, "extreme gate state");
            }
        }
    }
}

/// The state of an undecayed linear memory is the plain sum of its writes (README: it grows
/// without bound, linearly in the number of tokens for repeated writes): after `n` writes of the
/// same `v k^T`, `S = n v k^T` exactly (small integers), and the output grows as `n`.
#[test]
fn undecayed_state_grows_linearly() {
    let n = 100_000;
    let c = Case {
        l: n,
        h: 1,
        dk: 2,
        dv: 1,
        q: [1.0, 0.0].repeat(n),
        k: [1.0, 0.0].repeat(n),
        v: vec![2.0; n],
        beta: vec![],
        g: vec![],
    };
    let m = LinearMemory::linear_attention(FeatureMap::Identity);
    let (o, s) = run(&m, &c, &[0.0, 0.0]);
    assert_eq!(s, vec![2.0 * n as f64, 0.0]);
    assert_eq!(o[n - 1], 2.0 * n as f64);
    assert_eq!(o[9], 20.0);
    // The delta rule with unit keys and beta in [0, 1] does not grow: it converges to v.
    let c = Case {
        beta: vec![0.5; n],
        ..c
    };
    let (o, s) = run(&LinearMemory::delta_net(), &c, &[0.0, 0.0]);
    assert!((s[0] - 2.0).abs() < 1e-12 && s[1] == 0.0, "{s:?}");
    assert!(o.iter().all(|x| x.abs() <= 2.0));
}

/// RetNet's per-head decays, `gamma_h = 1 - 2^(-5-h)` (Sun et al. 2023, §2.2).
#[test]
fn retnet_decays() {
    let mut g = [0.0f64; 3];
    seq_memory::linear::retnet_log_decay(&mut g).unwrap();
    for (h, &x) in g.iter().enumerate() {
        let gamma = 1.0 - 2f64.powi(-5 - i32::try_from(h).unwrap());
        assert!((x.exp() - gamma).abs() < 1e-15, "head {h}");
    }
}
