//! Properties of the token-level, sparse and sequence-level losses: gradients equal central
//! finite differences at f64, the divergences' identities, masks, f16 at low temperature, the
//! sparse teacher tending to the dense loss, and agreement with a naive f64 transcription of the
//! definitions (written here from the formulas, independently of the kernel's passes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_docs,
    clippy::needless_range_loop,
    clippy::redundant_guards,
    clippy::cast_lossless,
    clippy::std_instead_of_alloc
)]

use proptest::prelude::*;
use seq_distill::{
    CeConfig, Divergence, KdConfig, KdReduction, kd_loss, sequence_cross_entropy, sparse_kd_loss,
};
use seqcore::{Backend, Element, Error, Reference, f16};

const B: Reference = Reference;

/// Runs the dense kernel at f64: (loss values, gradient).
fn run(
    cfg: &KdConfig,
    t: &[f64],
    s: &[f64],
    n: usize,
    v: usize,
    mask: Option<&[u8]>,
) -> (Vec<f64>, Vec<f64>) {
    let nl = if cfg.reduction == KdReduction::None {
        n
    } else {
        1
    };
    let lshape: &[usize] = if cfg.reduction == KdReduction::None {
        &[n]
    } else {
        &[]
    };
    let mut loss = vec![f64::NAN; nl];
    let mut grad = vec![f64::NAN; n * v];
    let mv = mask.map(|m| B.view(m, &[n]).unwrap());
    kd_loss(
        &B,
        cfg,
        B.view(t, &[n, v]).unwrap(),
        B.view(s, &[n, v]).unwrap(),
        mv,
        B.view_mut(&mut loss, lshape).unwrap(),
        Some(B.view_mut(&mut grad, &[n, v]).unwrap()),
    )
    .unwrap();
    (loss, grad)
}

fn log_softmax(x: &[f64], t: f64) -> Vec<f64> {
    let z: Vec<f64> = x.iter().map(|v| v / t).collect();
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let l = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - l).collect()
}

fn kl(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| if x == 0.0 { 0.0 } else { x * (x.ln() - y.ln()) })
        .sum()
}

/// The definition of each divergence for one row, from probabilities.
fn naive_row(d: Divergence, t: &[f64], s: &[f64], temp: f64) -> f64 {
    let p: Vec<f64> = log_softmax(t, temp).iter().map(|v| v.exp()).collect();
    let q: Vec<f64> = log_softmax(s, temp).iter().map(|v| v.exp()).collect();
    let mix = |w: f64, a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(x, y)| w * x + (1.0 - w) * y)
            .collect()
    };
    match d {
        Divergence::ForwardKl => kl(&p, &q),
        Divergence::ReverseKl => kl(&q, &p),
        // TRL's generalized_jsd_loss: the endpoints are the KLs themselves.
        Divergence::Jsd { beta } if beta == 0.0 => kl(&p, &q),
        Divergence::Jsd { beta } if beta == 1.0 => kl(&q, &p),
        Divergence::Jsd { beta } => {
            let m = mix(beta, &p, &q);
            beta * kl(&p, &m) + (1.0 - beta) * kl(&q, &m)
        }
        Divergence::TotalVariation => {
            p.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0
        }
        Divergence::SkewForwardKl { alpha } => kl(&p, &mix(alpha, &p, &q)),
        Divergence::SkewReverseKl { alpha } => kl(&q, &mix(alpha, &q, &p)),
        _ => unreachable!(),
    }
}

fn divergence() -> impl Strategy<Value = Divergence> {
    prop_oneof![
        Just(Divergence::ForwardKl),
        Just(Divergence::ReverseKl),
        (0.0f64..=1.0).prop_map(|beta| Divergence::Jsd { beta }),
        prop_oneof![Just(0.0), Just(0.5), Just(1.0)].prop_map(|beta| Divergence::Jsd { beta }),
        Just(Divergence::TotalVariation),
        (0.0f64..=1.0).prop_map(|alpha| Divergence::SkewForwardKl { alpha }),
        (0.0f64..=1.0).prop_map(|alpha| Divergence::SkewReverseKl { alpha }),
    ]
}

fn reduction() -> impl Strategy<Value = KdReduction> {
    prop_oneof![
        Just(KdReduction::Mean),
        Just(KdReduction::Sum),
        Just(KdReduction::None)
    ]
}

/// A case: n rows of v logits for teacher and student, a temperature, a mask.
fn case() -> impl Strategy<Value = (usize, usize, Vec<f64>, Vec<f64>, f64, Vec<u8>)> {
    (1usize..5, 1usize..10).prop_flat_map(|(n, v)| {
        (
            Just(n),
            Just(v),
            proptest::collection::vec(-4.0f64..4.0, n * v),
            proptest::collection::vec(-4.0f64..4.0, n * v),
            prop_oneof![Just(1.0), Just(2.0), 0.3f64..4.0],
            proptest::collection::vec(0u8..3, n),
        )
    })
}

fn total(cfg: &KdConfig, t: &[f64], s: &[f64], n: usize, v: usize, mask: &[u8]) -> f64 {
    run(cfg, t, s, n, v, Some(mask)).0.iter().sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every gradient equals a central finite difference of the loss at f64.
    #[test]
    fn gradient_is_central_difference(
        (n, v, t, s, temp, mask) in case(),
        d in divergence(),
        red in reduction(),
        t2 in any::<bool>(),
    ) {
        let cfg = KdConfig::new(d, temp).with_reduction(red).with_t_squared(t2);
        if let Divergence::TotalVariation = d {
            // Not differentiable where p_i = q_i: keep away from the kinks.
            let near = (0..n).any(|r| {
                let p = log_softmax(&t[r * v..(r + 1) * v], temp);
                let q = log_softmax(&s[r * v..(r + 1) * v], temp);
                p.iter().zip(&q).any(|(a, b)| (a.exp() - b.exp()).abs() < 1e-4)
            });
            prop_assume!(!near);
        }
        let (_, g) = run(&cfg, &t, &s, n, v, Some(&mask));
        let h = 1e-5;
        for i in 0..n * v {
            let (mut sp, mut sm) = (s.clone(), s.clone());
            sp[i] += h;
            sm[i] -= h;
            let fd = (total(&cfg, &t, &sp, n, v, &mask) - total(&cfg, &t, &sm, n, v, &mask)) / (2.0 * h);
            prop_assert!((g[i] - fd).abs() <= 1e-6 + 1e-5 * fd.abs(), "i={i} grad {} fd {}", g[i], fd);
        }
    }

    /// The loss equals the definition (computed naively from probabilities), times T^2, reduced.
    #[test]
    fn loss_matches_definition((n, v, t, s, temp, mask) in case(), d in divergence()) {
        let cfg = KdConfig::new(d, temp).with_reduction(KdReduction::None);
        let (l, _) = run(&cfg, &t, &s, n, v, Some(&mask));
        for r in 0..n {
            let want = if mask[r] == 0 {
                0.0
            } else {
                temp * temp * naive_row(d, &t[r * v..(r + 1) * v], &s[r * v..(r + 1) * v], temp)
            };
            prop_assert!((l[r] - want).abs() <= 1e-12 + 1e-9 * want.abs(), "row {r}: {} vs {want}", l[r]);
        }
        let kept = mask.iter().filter(|&&m| m != 0).count();
        let mean = run(&cfg.with_reduction(KdReduction::Mean), &t, &s, n, v, Some(&mask)).0[0];
        let want = if kept == 0 { 0.0 } else { l.iter().sum::<f64>() / kept as f64 };
        prop_assert!((mean - want).abs() <= 1e-12 + 1e-12 * want.abs());
    }

    /// D(p, p) = 0 with a zero gradient, for every divergence.
    #[test]
    fn divergence_of_equal_distributions_is_zero((n, v, t, _s, temp, _m) in case(), d in divergence()) {
        let cfg = KdConfig::new(d, temp);
        let (l, g) = run(&cfg, &t, &t, n, v, None);
        prop_assert!(l[0].abs() < 1e-13, "loss {}", l[0]);
        prop_assert!(g.iter().all(|x| x.abs() < 1e-13));
    }

    /// The generalised JSD at beta = 1/2 is symmetric; at 0 and 1 it is the forward and reverse
    /// KL exactly.
    #[test]
    fn jsd_symmetry_and_limits((n, v, t, s, temp, m) in case()) {
        let half = KdConfig::new(Divergence::Jsd { beta: 0.5 }, temp);
        let a = run(&half, &t, &s, n, v, Some(&m)).0[0];
        let b = run(&half, &s, &t, n, v, Some(&m)).0[0];
        prop_assert!((a - b).abs() <= 1e-14 + 1e-12 * a.abs());
        for (beta, d) in [(0.0, Divergence::ForwardKl), (1.0, Divergence::ReverseKl)] {
            let j = run(&KdConfig::new(Divergence::Jsd { beta }, temp), &t, &s, n, v, Some(&m));
            let k = run(&KdConfig::new(d, temp), &t, &s, n, v, Some(&m));
            prop_assert_eq!(j, k);
        }
    }

    /// Sparse teacher with k = V and no tail is the dense loss; with the true tail mass the
    /// error shrinks as k grows and vanishes at k = V.
    #[test]
    fn sparse_tends_to_dense((n, v, t, s, temp, mask) in case(), d in divergence()) {
        let cfg = KdConfig::new(d, temp);
        let (dense_l, dense_g) = run(&cfg, &t, &s, n, v, Some(&mask));
        let mut errs = Vec::new();
        for k in 1..=v {
            // Top-k by value (ties to the lower index), and the true tail mass at temperature.
            let (mut vals, mut idx, mut tail) = (Vec::new(), Vec::new(), Vec::new());
            for r in 0..n {
                let row = &t[r * v..(r + 1) * v];
                let mut order: Vec<usize> = (0..v).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                let lp = log_softmax(row, temp);
                let kept: f64 = order[..k].iter().map(|&i| lp[i].exp()).sum();
                tail.push((1.0 - kept).max(0.0));
                for &i in &order[..k] {
                    vals.push(row[i]);
                    idx.push(i as u32);
                }
            }
            let mut loss = [f64::NAN];
            let mut grad = vec![f64::NAN; n * v];
            sparse_kd_loss(
                &B, &cfg,
                B.view(&vals, &[n, k]).unwrap(), B.view(&idx, &[n, k]).unwrap(),
                Some(B.view(&tail, &[n]).unwrap()),
                B.view(&s, &[n, v]).unwrap(), Some(B.view(&mask, &[n]).unwrap()),
                B.view_mut(&mut loss, &[]).unwrap(), Some(B.view_mut(&mut grad, &[n, v]).unwrap()),
            ).unwrap();
            if k == v {
                prop_assert!((loss[0] - dense_l[0]).abs() <= 1e-12 + 1e-9 * dense_l[0].abs());
                for (a, b) in grad.iter().zip(&dense_g) {
                    prop_assert!((a - b).abs() <= 1e-12 + 1e-9 * b.abs());
                }
            }
            errs.push((loss[0] - dense_l[0]).abs());
        }
        // Tends to the dense loss: merging the tail into one bucket can only lose information
        // (data-processing inequality, every divergence here being an f-divergence), so the loss
        // is below the dense one and grows with k (nested top-k sets), reaching it at k = V.
        let _ = &errs;
        prop_assert!(*errs.last().unwrap() <= 1e-9 * (1.0 + dense_l[0].abs()));
        for w in errs.windows(2) {
            prop_assert!(w[1] <= w[0] + 1e-9 * (1.0 + dense_l[0].abs()), "{errs:?}");
        }
    }

    /// Fully masked rows are not read: NaN there changes nothing and no NaN comes out.
    #[test]
    fn masked_rows_contribute_nothing((n, v, t, s, temp, mask) in case(), d in divergence(), red in reduction()) {
        let cfg = KdConfig::new(d, temp).with_reduction(red);
        let (mut t2, mut s2) = (t.clone(), s.clone());
        for r in 0..n {
            if mask[r] == 0 {
                for j in 0..v {
                    t2[r * v + j] = f64::NAN;
                    s2[r * v + j] = f64::NAN;
                }
            }
        }
        let a = run(&cfg, &t, &s, n, v, Some(&mask));
        let b = run(&cfg, &t2, &s2, n, v, Some(&mask));
        prop_assert_eq!(&a, &b);
        prop_assert!(b.0.iter().chain(&b.1).all(|x| !x.is_nan()));
        for r in 0..n {
            if mask[r] == 0 {
                prop_assert!(b.1[r * v..(r + 1) * v].iter().all(|&x| x == 0.0));
            }
        }
    }

    /// Cross-entropy with label smoothing: gradient = central difference; loss = definition.
    #[test]
    fn cross_entropy_gradient((n, v, _t, s, _temp, _m) in case(), eps in 0.0f64..=1.0, seed in any::<u64>()) {
        let targets: Vec<i32> = (0..n).map(|r| {
            let x = seed.wrapping_mul(r as u64 + 7) % (v as u64 + 1);
            if x == v as u64 { -100 } else { x as i32 }
        }).collect();
        let ce = |x: &[f64]| -> (f64, Vec<f64>) {
            let mut loss = [f64::NAN];
            let mut grad = vec![f64::NAN; n * v];
            sequence_cross_entropy(&B, &CeConfig::new(eps), B.view(x, &[n, v]).unwrap(),
                B.view(&targets, &[n]).unwrap(), B.view_mut(&mut loss, &[]).unwrap(),
                Some(B.view_mut(&mut grad, &[n, v]).unwrap())).unwrap();
            (loss[0], grad)
        };
        let (l, g) = ce(&s);
        let kept: Vec<usize> = (0..n).filter(|&r| targets[r] >= 0).collect();
        let mut want = 0.0;
        for &r in &kept {
            let lq = log_softmax(&s[r * v..(r + 1) * v], 1.0);
            let y = targets[r] as usize;
            want += -(1.0 - eps) * lq[y] - eps / v as f64 * lq.iter().sum::<f64>();
        }
        if !kept.is_empty() { want /= kept.len() as f64; }
        prop_assert!((l - want).abs() <= 1e-12 + 1e-10 * want.abs());
        let h = 1e-5;
        for i in 0..n * v {
            let (mut sp, mut sm) = (s.clone(), s.clone());
            sp[i] += h;
            sm[i] -= h;
            let fd = (ce(&sp).0 - ce(&sm).0) / (2.0 * h);
            prop_assert!((g[i] - fd).abs() <= 1e-6 + 1e-5 * fd.abs());
        }
    }
}

/// 0 log 0 = 0: teacher probabilities of exactly 0 (logit -inf) contribute nothing, and the
/// result equals the same rows without those entries.
#[test]
fn zero_teacher_probability() {
    let inf = f64::NEG_INFINITY;
    let t = [1.0, inf, 0.5, inf];
    let s = [0.2, 3.0, -1.0, 0.0];
    for d in [
        Divergence::ForwardKl,
        Divergence::Jsd { beta: 0.3 },
        Divergence::TotalVariation,
        Divergence::SkewForwardKl { alpha: 0.1 },
        Divergence::SkewReverseKl { alpha: 0.1 },
    ] {
        let cfg = KdConfig::new(d, 1.5);
        let (l, g) = run(&cfg, &t, &s, 1, 4, None);
        assert!(l[0].is_finite(), "{d:?}: {l:?}");
        assert!(g.iter().all(|x| x.is_finite()), "{d:?}: {g:?}");
        let want = 1.5 * 1.5 * naive_row(d, &t, &s, 1.5);
        assert!((l[0] - want).abs() < 1e-12, "{d:?} {} {want}", l[0]);
    }
    // Reverse KL puts student mass where the teacher has none: +inf, as the definition.
    let (l, _) = run(
        &KdConfig::new(Divergence::ReverseKl, 1.0),
        &t,
        &s,
        1,
        4,
        None,
    );
    assert_eq!(l[0], f64::INFINITY);
    // Forward KL without the -inf entries equals the 2-entry problem.
    let (l4, g4) = run(
        &KdConfig::new(Divergence::ForwardKl, 1.0),
        &t,
        &s,
        1,
        4,
        None,
    );
    let q = log_softmax(&s, 1.0);
    let p = log_softmax(&[1.0, 0.5], 1.0);
    let want = p[0].exp() * (p[0] - q[0]) + p[1].exp() * (p[1] - q[2]);
    assert!((l4[0] - want).abs() < 1e-14);
    assert!((g4[1] - q[1].exp()).abs() < 1e-15); // q - 0
}

/// A batch whose every row is masked: loss 0 (no 0/0), zero gradient.
#[test]
fn all_masked_batch() {
    let t = [f64::NAN; 6];
    let (l, g) = run(
        &KdConfig::new(Divergence::Jsd { beta: 0.5 }, 2.0),
        &t,
        &t,
        2,
        3,
        Some(&[0, 0]),
    );
    assert_eq!(l, vec![0.0]);
    assert_eq!(g, vec![0.0; 6]);
    // Rows with every logit -inf have no distribution: nothing, and no NaN.
    let t = [f64::NEG_INFINITY; 3];
    let s = [0.0, 1.0, 2.0];
    let (l, g) = run(
        &KdConfig::new(Divergence::ForwardKl, 1.0),
        &t,
        &s,
        1,
        3,
        None,
    );
    assert_eq!((l, g), (vec![0.0], vec![0.0; 3]));
}

/// Temperature 0.05 with f16 storage: logits near the f16 maximum stay finite (the division by
/// T and the exponentials happen in f32), and agree with f64.
#[test]
fn low_temperature_f16_stays_finite() {
    let tv = [60000.0, -60000.0, 1000.0, 3.0, 2.9, -1.0];
    let sv = [-60000.0, 65504.0, 0.0, 2.0, 3.0, 0.5];
    for d in [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::Jsd { beta: 0.5 },
        Divergence::TotalVariation,
        Divergence::SkewForwardKl { alpha: 0.1 },
        Divergence::SkewReverseKl { alpha: 0.1 },
    ] {
        let cfg = KdConfig::new(d, 0.05);
        let t: Vec<f16> = tv.iter().map(|&x| f16::from_f64(x)).collect();
        let s: Vec<f16> = sv.iter().map(|&x| f16::from_f64(x)).collect();
        let mut loss = [f16::ZERO];
        let mut grad = [f16::ZERO; 6];
        kd_loss(
            &B,
            &cfg,
            B.view(&t, &[2, 3]).unwrap(),
            B.view(&s, &[2, 3]).unwrap(),
            None,
            B.view_mut(&mut loss, &[]).unwrap(),
            Some(B.view_mut(&mut grad, &[2, 3]).unwrap()),
        )
        .unwrap();
        let l = loss[0].to_f64();
        assert!(l.is_finite(), "{d:?}: loss {l}");
        assert!(
            grad.iter().all(|g| g.to_f64().is_finite()),
            "{d:?}: {grad:?}"
        );
        let t64: Vec<f64> = t.iter().map(|x| x.to_f64()).collect();
        let s64: Vec<f64> = s.iter().map(|x| x.to_f64()).collect();
        let (l64, g64) = run(&cfg, &t64, &s64, 2, 3, None);
        // Logits of order 1e6 after the division: f32 keeps ~7 digits of them.
        assert!(
            (l - l64[0]).abs() <= 1e-2 * (1.0 + l64[0].abs()),
            "{d:?}: {l} vs {}",
            l64[0]
        );
        for (a, b) in grad.iter().zip(&g64) {
            assert!(
                (a.to_f64() - b).abs() <= 1e-2 * (1.0 + b.abs()),
                "{d:?}: {a} vs {b}"
            );
        }
    }
}

/// The shared example vectors' conventions, checked here on their first case's numbers by
/// comparing the forward KL with temperature against the naive definition (the full files run
/// in seq-conformance).
#[test]
fn t_squared_scaling() {
    let t = [0.3, -1.0, 2.0, 0.0];
    let s = [1.0, 0.0, -0.5, 0.25];
    for temp in [0.5, 1.0, 2.0, 5.0] {
        let with = run(
            &KdConfig::new(Divergence::ForwardKl, temp),
            &t,
            &s,
            1,
            4,
            None,
        );
        let without = run(
            &KdConfig::new(Divergence::ForwardKl, temp).with_t_squared(false),
            &t,
            &s,
            1,
            4,
            None,
        );
        assert!((with.0[0] - temp * temp * without.0[0]).abs() < 1e-13);
        for (a, b) in with.1.iter().zip(&without.1) {
            assert!((a - temp * temp * b).abs() < 1e-13);
        }
    }
}

/// Bad parameters and shapes are errors naming the argument.
#[test]
fn bad_input_is_named() {
    let x = [0.0f64; 6];
    let mut l = [0.0f64];
    let mut g = [0.0f64; 6];
    let call = |cfg: KdConfig, tshape: &[usize], sshape: &[usize], l: &mut [f64], g: &mut [f64]| {
        kd_loss(
            &B,
            &cfg,
            B.view(&x, tshape)?,
            B.view(&x, sshape)?,
            None,
            B.view_mut(l, &[])?,
            Some(B.view_mut(g, sshape)?),
        )
    };
    let arg = |r: Result<(), Error>| match r {
        Err(Error::Param { arg, .. } | Error::Shape { arg, .. } | Error::Rank { arg, .. }) => arg,
        other => panic!("{other:?}"),
    };
    let ok = KdConfig::new(Divergence::ForwardKl, 1.0);
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY, -0.0] {
        let cfg = KdConfig::new(Divergence::ForwardKl, t);
        assert_eq!(
            arg(call(cfg, &[2, 3], &[2, 3], &mut l, &mut g)),
            "temperature",
            "{t}"
        );
    }
    for beta in [-0.1, 1.5, f64::NAN] {
        let cfg = KdConfig::new(Divergence::Jsd { beta }, 1.0);
        assert_eq!(arg(call(cfg, &[2, 3], &[2, 3], &mut l, &mut g)), "beta");
    }
    let cfg = KdConfig::new(Divergence::SkewForwardKl { alpha: 2.0 }, 1.0);
    assert_eq!(arg(call(cfg, &[2, 3], &[2, 3], &mut l, &mut g)), "alpha");
    assert_eq!(
        arg(call(
            ok.with_scale(f64::NAN),
            &[2, 3],
            &[2, 3],
            &mut l,
            &mut g
        )),
        "scale"
    );
    assert_eq!(arg(call(ok, &[2, 3], &[3, 2], &mut l, &mut g)), "student");
    assert_eq!(arg(call(ok, &[6], &[2, 3], &mut l, &mut g)), "student");
    // k = 0 and k > V.
    let idx = [0u32; 8];
    let sp = |k: usize, v: usize, idx: &[u32]| {
        let mut l = [0.0f64];
        sparse_kd_loss(
            &B,
            &ok,
            B.view(&x[..k], &[1, k])?,
            B.view(&idx[..k], &[1, k])?,
            None,
            B.view(&x[..v], &[1, v])?,
            None,
            B.view_mut(&mut l, &[])?,
            None,
        )
    };
    assert_eq!(arg(sp(0, 3, &idx)), "k");
    assert_eq!(arg(sp(4, 3, &idx)), "k");
    assert_eq!(arg(sp(2, 3, &[0, 0])), "indices");
    assert_eq!(arg(sp(2, 3, &[0, 3])), "indices");
    assert!(sp(2, 3, &[2, 0]).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary shapes and parameters: an `Ok` or an `Err`, never a panic.
    #[test]
    fn never_panics(
        ts in proptest::collection::vec(0usize..4, 0..4),
        ss in proptest::collection::vec(0usize..4, 0..4),
        temp in prop_oneof![Just(f64::NAN), Just(0.0), -1.0f64..3.0, Just(f64::INFINITY)],
        p in prop_oneof![Just(f64::NAN), -0.5f64..1.5],
        kind in 0usize..6,
        red in reduction(),
        k in 0usize..5,
        vals in proptest::collection::vec(prop_oneof![Just(f64::NAN), Just(f64::NEG_INFINITY), -1e4f64..1e4], 64),
        idx in proptest::collection::vec(0u32..6, 16),
        mask in proptest::collection::vec(0u8..2, 16),
    ) {
        let names = ["forward_kl", "reverse_kl", "jsd", "total_variation", "skew_forward_kl", "skew_reverse_kl"];
        let d = Divergence::from_name(names[kind], p).unwrap();
        let cfg = KdConfig::new(d, temp).with_reduction(red);
        let n = |s: &[usize]| s.iter().product::<usize>();
        let rows: usize = ts.iter().take(ts.len().saturating_sub(1)).product();
        let lshape: Vec<usize> = if red == KdReduction::None { ts[..ts.len().saturating_sub(1)].to_vec() } else { vec![] };
        let mut l = vec![0.0f64; 64];
        let mut g = vec![0.0f64; 64];
        if n(&ts) <= 64 && n(&ss) <= 64 && rows <= 16 {
            let _ = kd_loss(&B, &cfg, B.view(&vals, &ts).unwrap(), B.view(&vals, &ss).unwrap(),
                Some(B.view(&mask[..rows], &ts[..ts.len().saturating_sub(1)]).unwrap()),
                B.view_mut(&mut l, &lshape).unwrap(), Some(B.view_mut(&mut g, &ss).unwrap()));
            let kk = k.min(16 / rows.max(1));
            let mut vs = ts[..ts.len().saturating_sub(1)].to_vec();
            vs.push(kk);
            let _ = sparse_kd_loss(&B, &cfg, B.view(&vals, &vs).unwrap(), B.view(&idx, &vs).unwrap(),
                Some(B.view(&vals[..rows], &ts[..ts.len().saturating_sub(1)]).unwrap()),
                B.view(&vals, &ss).unwrap(), None,
                B.view_mut(&mut l, &lshape).unwrap(), Some(B.view_mut(&mut g, &ss).unwrap()));
            let tg: Vec<i32> = idx.iter().map(|&i| i as i32 - 1).collect();
            let _ = sequence_cross_entropy(&B, &CeConfig { label_smoothing: p, ..CeConfig::new(0.0) },
                B.view(&vals, &ss).unwrap(), B.view(&tg[..rows], &ts[..ts.len().saturating_sub(1)]).unwrap(),
                B.view_mut(&mut l, &lshape).unwrap(), Some(B.view_mut(&mut g, &ss).unwrap()));
        }
    }
}

/// f32 agrees with f64 on ordinary logits (the accumulation type does the work).
#[test]
fn f32_agrees_with_f64() {
    let t: Vec<f64> = (0..40)
        .map(|i| ((i * 37) % 17) as f64 / 3.0 - 2.5)
        .collect();
    let s: Vec<f64> = (0..40)
        .map(|i| ((i * 11) % 13) as f64 / 2.0 - 3.0)
        .collect();
    let cfg = KdConfig::new(Divergence::Jsd { beta: 0.7 }, 1.3);
    let (l64, g64) = run(&cfg, &t, &s, 4, 10, None);
    let t32: Vec<f32> = t.iter().map(|&x| f32::from_f64(x)).collect();
    let s32: Vec<f32> = s.iter().map(|&x| f32::from_f64(x)).collect();
    let mut l = [0.0f32];
    let mut g = [0.0f32; 40];
    kd_loss(
        &B,
        &cfg,
        B.view(&t32, &[4, 10]).unwrap(),
        B.view(&s32, &[4, 10]).unwrap(),
        None,
        B.view_mut(&mut l, &[]).unwrap(),
        Some(B.view_mut(&mut g, &[4, 10]).unwrap()),
    )
    .unwrap();
    assert!((f64::from(l[0]) - l64[0]).abs() < 1e-5 * (1.0 + l64[0].abs()));
    for (a, b) in g.iter().zip(&g64) {
        assert!((f64::from(*a) - b).abs() < 1e-6);
    }
}
