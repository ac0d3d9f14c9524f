//! Teacher -> student alignment (round trips, padding on both sides, mixed lengths, errors) and
//! aTLAS composition (coefficient gradient = finite difference, untouched blocks not copied).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    missing_docs,
    clippy::needless_range_loop,
    clippy::redundant_guards,
    clippy::cast_lossless,
    clippy::std_instead_of_alloc
)]

use proptest::prelude::*;
use seq_distill::{
    Atlas, Divergence, KdConfig, KdReduction, Span, align, aligned_kd_loss, kd_loss,
};
use seqcore::{Backend, Error, Reference};

const B: Reference = Reference;

/// A batch: per example (teacher left pad, prompt, target, student left pad), with the
/// longest lengths.
fn batch() -> impl Strategy<Value = Vec<(usize, usize, usize, usize)>> {
    proptest::collection::vec((0usize..3, 1usize..4, 0usize..4, 0usize..2), 1..4)
}

fn masks(b: &[(usize, usize, usize, usize)]) -> (Vec<u8>, usize, Vec<usize>, Vec<u8>, usize) {
    let lt = b.iter().map(|e| e.0 + e.1 + e.2).max().unwrap() + 1; // right padding too
    let ls = b.iter().map(|e| e.3 + e.2).max().unwrap() + 1;
    let mut tm = vec![0u8; b.len() * lt];
    let mut sm = vec![0u8; b.len() * ls];
    for (i, &(tp, p, t, sp)) in b.iter().enumerate() {
        for j in tp..tp + p + t {
            tm[i * lt + j] = 1;
        }
        for j in sp..sp + t {
            sm[i * ls + j] = 1;
        }
    }
    (tm, lt, b.iter().map(|e| e.1).collect(), sm, ls)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every aligned teacher row predicts the same target token as its student row, and the
    /// mapping round-trips both ways.
    #[test]
    fn alignment_round_trips(b in batch()) {
        let (tm, lt, prompt, sm, ls) = masks(&b);
        let mut spans = vec![Span::default(); b.len()];
        let total = align(&tm, lt, &prompt, &sm, ls, &mut spans).unwrap();
        prop_assert_eq!(total, b.iter().map(|e| e.2).sum::<usize>());
        for (s, &(tp, p, t, sp)) in spans.iter().zip(&b) {
            prop_assert_eq!(s.len, t);
            for i in 0..t {
                // Teacher position tp + p - 1 + i has read the prompt and target[..i]: it
                // predicts target[i], as decoder position sp + i does.
                let tr = tp + p - 1 + i;
                prop_assert_eq!(s.student_row(tr), Some(sp + i));
                prop_assert_eq!(s.teacher_row(sp + i), Some(tr));
            }
            for r in 0..lt {
                if let Some(st) = s.student_row(r) {
                    prop_assert_eq!(s.teacher_row(st), Some(r));
                }
            }
        }
    }

    /// The aligned loss equals the dense loss over the gathered rows, and its gradient lands on
    /// the aligned student rows.
    #[test]
    fn aligned_loss_is_loss_of_gathered_rows(b in batch(), seed in 0u64..1000) {
        let v = 5;
        let (tm, lt, prompt, sm, ls) = masks(&b);
        let mut spans = vec![Span::default(); b.len()];
        let total = align(&tm, lt, &prompt, &sm, ls, &mut spans).unwrap();
        let val = |i: usize, salt: u64| (((i as u64 * 2654435761 + seed * 97 + salt) % 1000) as f64) / 200.0 - 2.5;
        let teacher: Vec<f64> = (0..b.len() * lt * v).map(|i| val(i, 1)).collect();
        let student: Vec<f64> = (0..b.len() * ls * v).map(|i| val(i, 2)).collect();
        let cfg = KdConfig::new(Divergence::Jsd { beta: 0.4 }, 1.7);
        let mut loss = vec![f64::NAN; b.len()];
        let mut grad = vec![0.0; b.len() * ls * v];
        aligned_kd_loss(&B, &cfg, &spans, B.view(&teacher, &[b.len(), lt, v]).unwrap(),
            B.view(&student, &[b.len(), ls, v]).unwrap(), B.view_mut(&mut loss, &[b.len()]).unwrap(),
            Some(B.view_mut(&mut grad, &[b.len(), ls, v]).unwrap())).unwrap();
        // Gather the aligned rows by hand and run the plain loss.
        let (mut tg, mut sg, mut where_) = (Vec::new(), Vec::new(), Vec::new());
        for (e, s) in spans.iter().enumerate() {
            for i in 0..s.len {
                let tr = (e * lt + s.teacher_start + i) * v;
                let sr = (e * ls + s.student_start + i) * v;
                tg.extend_from_slice(&teacher[tr..tr + v]);
                sg.extend_from_slice(&student[sr..sr + v]);
                where_.push(sr);
            }
        }
        let mut l = [f64::NAN];
        let mut g = vec![f64::NAN; total * v];
        kd_loss(&B, &cfg, B.view(&tg, &[total, v]).unwrap(), B.view(&sg, &[total, v]).unwrap(), None,
            B.view_mut(&mut l, &[]).unwrap(), Some(B.view_mut(&mut g, &[total, v]).unwrap())).unwrap();
        let sum: f64 = loss.iter().sum();
        prop_assert!((sum - l[0]).abs() <= 1e-12 * (1.0 + l[0].abs()), "{sum} vs {}", l[0]);
        let mut expect = vec![0.0; b.len() * ls * v];
        for (k, &sr) in where_.iter().enumerate() {
            expect[sr..sr + v].copy_from_slice(&g[k * v..(k + 1) * v]);
        }
        for (a, e) in grad.iter().zip(&expect) {
            prop_assert!((a - e).abs() <= 1e-15 + 1e-12 * e.abs());
        }
    }

    /// aTLAS: the coefficient gradient equals a central difference of a loss of the composed
    /// parameters, and untouched blocks are the base blocks themselves.
    #[test]
    fn atlas_gradient_and_no_copy(
        lambda in proptest::collection::vec(prop_oneof![Just(0.0), -2.0f64..2.0], 6),
        seed in 0u64..1000,
    ) {
        let val = |i: u64| (((i * 2654435761 + seed * 131) % 1000) as f64) / 500.0 - 1.0;
        let base_v: Vec<Vec<f64>> = [4usize, 3, 2].iter().enumerate()
            .map(|(b, &n)| (0..n).map(|i| val((b * 10 + i) as u64)).collect()).collect();
        let tau_v: Vec<Vec<Vec<f64>>> = (0..2).map(|t| [4usize, 3, 2].iter().enumerate()
            .map(|(b, &n)| (0..n).map(|i| val((100 + t * 50 + b * 10 + i) as u64)).collect()).collect()).collect();
        let base: Vec<&[f64]> = base_v.iter().map(Vec::as_slice).collect();
        let task_blocks: Vec<Vec<&[f64]>> = tau_v.iter().map(|t| t.iter().map(Vec::as_slice).collect()).collect();
        let tasks: Vec<&[&[f64]]> = task_blocks.iter().map(Vec::as_slice).collect();
        // L(theta) = sum_b sum_i w_bi theta_bi^2 / 2, dL/dtheta = w theta.
        let loss_of = |lam: &[f64]| -> f64 {
            let a = Atlas::new(&base, &tasks, lam).unwrap();
            let mut s = 0.0;
            for b in 0..3 {
                let mut scratch = [0.0; 4];
                for (i, x) in a.block(b, &mut scratch).unwrap().iter().enumerate() {
                    s += (1.0 + i as f64) * x * x / 2.0;
                }
            }
            s
        };
        let a = Atlas::new(&base, &tasks, &lambda).unwrap();
        let mut grads_v = Vec::new();
        for b in 0..3 {
            let mut scratch = [0.0; 4];
            let blk = a.block(b, &mut scratch).unwrap();
            grads_v.push(blk.iter().enumerate().map(|(i, x)| (1.0 + i as f64) * x).collect::<Vec<f64>>());
            if !a.touched(b) {
                prop_assert!(core::ptr::eq(blk, base[b]));
            }
        }
        let grads: Vec<&[f64]> = grads_v.iter().map(Vec::as_slice).collect();
        let mut cg = [0.0; 6];
        a.coefficient_grad(&grads, &mut cg).unwrap();
        let h = 1e-6;
        for k in 0..6 {
            let (mut lp, mut lm) = (lambda.clone(), lambda.clone());
            lp[k] += h;
            lm[k] -= h;
            let fd = (loss_of(&lp) - loss_of(&lm)) / (2.0 * h);
            prop_assert!((cg[k] - fd).abs() <= 1e-7 + 1e-6 * fd.abs(), "{k}: {} vs {fd}", cg[k]);
        }
        // apply writes exactly the touched blocks; export borrows the others.
        let mut live_v = base_v.clone();
        let mut live: Vec<&mut [f64]> = live_v.iter_mut().map(Vec::as_mut_slice).collect();
        let written = a.apply(&mut live).unwrap();
        prop_assert_eq!(written, (0..3).filter(|&b| a.touched(b)).count());
        let exported = a.export().unwrap();
        for (b, e) in exported.iter().enumerate() {
            prop_assert_eq!(matches!(e, std::borrow::Cow::Borrowed(_)), !a.touched(b));
            prop_assert_eq!(&e[..], &live[b][..]);
        }
    }
}

#[test]
fn alignment_errors_are_named() {
    let mut spans = [Span::default(); 2];
    let arg = |r: Result<usize, Error>| match r {
        Err(
            Error::Param { arg, .. }
            | Error::Shape { arg, .. }
            | Error::Capacity { arg, .. }
            | Error::Rank { arg, .. }
            | Error::Index { arg, .. },
        ) => arg,
        other => panic!("{other:?}"),
    };
    // A gap inside the teacher's tokens.
    assert_eq!(
        arg(align(&[1, 0, 1], 3, &[1], &[1, 0], 2, &mut spans)),
        "teacher_mask"
    );
    // Decoder length differs from teacher tokens minus prompt.
    assert_eq!(
        arg(align(&[1, 1, 1], 3, &[1], &[1, 0], 2, &mut spans)),
        "student_mask"
    );
    assert_eq!(
        arg(align(&[1, 1, 1], 3, &[4], &[1, 0], 2, &mut spans)),
        "prompt_len"
    );
    assert_eq!(
        arg(align(&[1, 1, 1], 3, &[0], &[1, 0], 2, &mut spans)),
        "prompt_len"
    );
    assert_eq!(
        arg(align(&[1, 1], 3, &[1], &[1, 0], 2, &mut spans)),
        "teacher_mask"
    );
    assert_eq!(
        arg(align(&[1; 9], 3, &[1, 1, 1], &[1; 6], 2, &mut spans)),
        "spans"
    );
    // Vocabulary mismatch between teacher and student.
    let t = [0.0f64; 2 * 3 * 4];
    let s = [0.0f64; 2 * 2 * 5];
    let mut l = [0.0f64; 2];
    let spans = [Span {
        teacher_start: 0,
        student_start: 0,
        len: 1,
    }; 2];
    let cfg = KdConfig::new(Divergence::ForwardKl, 1.0);
    let r = aligned_kd_loss(
        &B,
        &cfg,
        &spans,
        B.view(&t, &[2, 3, 4]).unwrap(),
        B.view(&s, &[2, 2, 5]).unwrap(),
        B.view_mut(&mut l, &[2]).unwrap(),
        None,
    );
    assert!(
        matches!(
            r,
            Err(Error::Shape {
                arg: "student",
                axis: 2,
                ..
            })
        ),
        "{r:?}"
    );
    let s = [0.0f64; 2 * 2 * 4];
    let far = [Span {
        teacher_start: 3,
        student_start: 0,
        len: 1,
    }; 2];
    assert_eq!(
        arg(aligned_kd_loss(
            &B,
            &cfg,
            &far,
            B.view(&t, &[2, 3, 4]).unwrap(),
            B.view(&s, &[2, 2, 4]).unwrap(),
            B.view_mut(&mut l, &[2]).unwrap(),
            None
        )),
        "spans"
    );
    assert_eq!(
        arg(aligned_kd_loss(
            &B,
            &cfg.with_reduction(KdReduction::None),
            &spans,
            B.view(&t, &[2, 3, 4]).unwrap(),
            B.view(&s, &[2, 2, 4]).unwrap(),
            B.view_mut(&mut l, &[2]).unwrap(),
            None
        )),
        "reduction"
    );
}

#[test]
fn atlas_errors_are_named() {
    let (a, b) = ([1.0f32, 2.0], [3.0f32]);
    let base: [&[f32]; 2] = [&a, &b];
    let short: [&[f32]; 2] = [&a[..1], &b];
    let one: [&[f32]; 1] = [&a];
    let tasks_bad_len = [&short[..]];
    let tasks_bad_count = [&one[..]];
    let tasks = [&base[..]];
    assert!(matches!(
        Atlas::new(&base, &tasks_bad_len, &[1.0, 1.0]),
        Err(Error::Shape { arg: "tasks", .. })
    ));
    assert!(matches!(
        Atlas::new(&base, &tasks_bad_count, &[1.0, 1.0]),
        Err(Error::Shape { arg: "tasks", .. })
    ));
    assert!(matches!(
        Atlas::new(&base, &tasks, &[1.0]),
        Err(Error::Shape {
            arg: "coefficients",
            ..
        })
    ));
    assert!(matches!(
        Atlas::new(&base, &tasks, &[1.0, f64::NAN]),
        Err(Error::Param {
            arg: "coefficients",
            ..
        })
    ));
    let at = Atlas::new(&base, &tasks, &[1.0, 0.0]).unwrap();
    let mut small = [0.0f32; 1];
    assert!(matches!(
        at.block(0, &mut small),
        Err(Error::Capacity { arg: "scratch", .. })
    ));
    assert!(matches!(
        at.block(5, &mut small),
        Err(Error::Index { arg: "block", .. })
    ));
    let mut x = [0.0f32; 2];
    let mut live: [&mut [f32]; 1] = [&mut x];
    assert!(matches!(
        at.apply(&mut live),
        Err(Error::Shape { arg: "theta", .. })
    ));
}
