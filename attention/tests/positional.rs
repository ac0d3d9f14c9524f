//! RoPE and relative attention: bad input is an `Err` naming the argument (fuzzed: never a
//! panic), and the identities R(a) R(b) = R(a + b), skew == fused == explicit, T5 buckets
//! monotone in the distance.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use proptest::prelude::*;
use seq_attention::relative::skew::{SkewedAttention, padded_len};
use seq_attention::relative::t5::relative_position_bucket;
use seq_attention::relative::{RelativeIndex, RelativeParams};
use seq_attention::rope::{LongRope, RopeConfig, RopeScaling, Yarn};
use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::{Backend, Error, Reference};

fn param_arg(e: Error) -> &'static str {
    match e {
        Error::Param { arg, .. } | Error::Capacity { arg, .. } | Error::Overflow { arg } => arg,
        Error::Shape { arg, .. } | Error::Rank { arg, .. } => arg,
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn bad_rope_configs_name_their_argument() {
    let mut t = [0.0; 64];
    let c = |cfg: RopeConfig<'_>, t: &mut [f64]| param_arg(cfg.inv_freq(10, t).unwrap_err());
    assert_eq!(c(RopeConfig::new(f64::NAN, 8), &mut t), "theta");
    assert_eq!(c(RopeConfig::new(0.0, 8), &mut t), "theta");
    assert_eq!(c(RopeConfig::new(-1.0, 8), &mut t), "theta");
    assert_eq!(
        c(RopeConfig::new(1e4, 8).with_rotary_dim(5), &mut t),
        "rotary_dim"
    );
    assert_eq!(
        c(RopeConfig::new(1e4, 8).with_rotary_dim(10), &mut t),
        "rotary_dim"
    );
    let lin = RopeScaling::Linear { factor: f64::NAN };
    assert_eq!(
        c(RopeConfig::new(1e4, 8).with_scaling(lin), &mut t),
        "factor"
    );
    let ntk = RopeScaling::Ntk { alpha: 2.0 };
    assert_eq!(
        c(RopeConfig::new(1e4, 2).with_scaling(ntk), &mut t),
        "rotary_dim"
    );
    let l3 = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 4.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    assert_eq!(
        c(RopeConfig::new(1e4, 8).with_scaling(l3), &mut t),
        "high_freq_factor"
    );
    let mut y = Yarn::new(4.0);
    y.beta_fast = Some(-1.0);
    let yc = RopeConfig::new(1e4, 8).with_scaling(RopeScaling::Yarn(y));
    assert_eq!(c(yc, &mut t), "beta_fast");
    let lr = RopeScaling::LongRope(LongRope {
        short_factor: &[1.0, 1.0, 1.0],
        long_factor: &[1.0, 1.0, 1.0, 1.0],
        factor: Some(4.0),
        attention_factor: None,
        original_max_position_embeddings: None,
    });
    assert_eq!(
        c(RopeConfig::new(1e4, 8).with_scaling(lr), &mut t),
        "short_factor"
    );
    assert_eq!(c(RopeConfig::new(1e4, 8), &mut [0.0; 3]), "inv_freq");
}

#[test]
fn bad_rope_kernel_arguments_name_their_argument() {
    let b = Reference;
    let x = [0.0f32; 16];
    let mut y = [0.0f32; 16];
    let pos = [0u32; 3];
    let e = b
        .rope(
            RopeLayout::Half,
            &[1.0; 3],
            1.0,
            RopePositions::Offset(0),
            None,
            b.view_mut(&mut y, &[1, 1, 4, 4]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(param_arg(e), "inv_freq");
    let e = b
        .rope(
            RopeLayout::Half,
            &[1.0; 2],
            f64::NAN,
            RopePositions::Offset(0),
            None,
            b.view_mut(&mut y, &[1, 1, 4, 4]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(param_arg(e), "attention_factor");
    let e = b
        .rope(
            RopeLayout::Half,
            &[1.0; 2],
            1.0,
            RopePositions::Ids(b.view(&pos, &[3]).unwrap()),
            None,
            b.view_mut(&mut y, &[1, 1, 4, 4]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(param_arg(e), "positions");
    let e = b
        .rope(
            RopeLayout::Half,
            &[1.0; 2],
            1.0,
            RopePositions::Offset(u64::MAX - 1),
            None,
            b.view_mut(&mut y, &[1, 1, 4, 4]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(param_arg(e), "positions");
    let e = b
        .rope(
            RopeLayout::Half,
            &[1.0; 2],
            1.0,
            RopePositions::Offset(0),
            Some(b.view(&x, &[1, 1, 2, 8]).unwrap()),
            b.view_mut(&mut y, &[1, 1, 4, 4]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(param_arg(e), "x");
}

#[test]
fn bad_relative_arguments_name_their_argument() {
    let b = Reference;
    let q = [0.0f64; 8];
    let mut o = [0.0f64; 8];
    let p = |index| RelativeParams {
        scale: 1.0,
        causal: false,
        index,
    };
    let run = |p: RelativeParams, rel_bias: Option<&[f64]>, ws: &mut [f64], o: &mut [f64]| {
        b.relative_attention(
            &p,
            b.view(&q, &[1, 1, 2, 4]).unwrap(),
            b.view(&q, &[1, 1, 2, 4]).unwrap(),
            b.view(&q, &[1, 1, 2, 4]).unwrap(),
            None,
            None,
            rel_bias.map(|t| b.view(t, &[1, t.len()]).unwrap()),
            b.view_mut(o, &[1, 1, 2, 4]).unwrap(),
            ws,
        )
        .unwrap_err()
    };
    let buckets = |bidirectional, num_buckets, max_distance| RelativeIndex::Buckets {
        bidirectional,
        num_buckets,
        max_distance,
    };
    assert_eq!(
        param_arg(run(p(buckets(true, 7, 20)), None, &mut [0.0; 4], &mut o)),
        "num_buckets"
    );
    assert_eq!(
        param_arg(run(p(buckets(false, 1, 20)), None, &mut [0.0; 4], &mut o)),
        "num_buckets"
    );
    assert_eq!(
        param_arg(run(p(buckets(false, 8, 2)), None, &mut [0.0; 4], &mut o)),
        "max_distance"
    );
    let clipped = RelativeIndex::Clipped {
        max_back: 1,
        max_fwd: 1,
    };
    assert_eq!(
        param_arg(run(p(clipped), None, &mut [0.0; 3], &mut o)),
        "workspace"
    );
    assert_eq!(
        param_arg(run(p(clipped), Some(&[0.0; 2]), &mut [0.0; 4], &mut o)),
        "rel_bias"
    );
    let mut nan = p(clipped);
    nan.scale = f64::NAN;
    assert_eq!(param_arg(run(nan, None, &mut [0.0; 4], &mut o)), "scale");
    assert_eq!(
        param_arg(relative_position_bucket(3, true, 9, 128).unwrap_err()),
        "num_buckets"
    );
}

/// RoPE of `x` ([1, 1, 1, D]) at `p`, in f64.
fn rope_at(cfg: &RopeConfig<'_>, x: &[f64], p: u64) -> Vec<f64> {
    let b = Reference;
    let mut y = x.to_vec();
    let mut t = vec![0.0; cfg.pairs()];
    let d = x.len();
    cfg.apply(
        &b,
        1,
        RopePositions::Offset(p),
        None,
        b.view_mut(&mut y, &[1, 1, 1, d]).unwrap(),
        &mut t,
    )
    .unwrap();
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any parameters: `Ok` or `Err`, never a panic.
    #[test]
    fn rope_config_never_panics(
        theta in prop_oneof![Just(f64::NAN), Just(0.0), Just(-3.0), Just(f64::INFINITY), 1.0f64..1e7],
        d in 0usize..20, rd in 0usize..22, factor in prop_oneof![Just(f64::NAN), Just(0.0), -2.0f64..40.0],
        kind in 0usize..7, mp in 0usize..5000, orig in 0usize..5000, sl in 0usize..10000,
        lf in prop::collection::vec(prop_oneof![Just(f64::NAN), -1.0f64..5.0], 0..12),
    ) {
        let mut y = Yarn::new(factor);
        y.original_max_position_embeddings = (orig % 2 == 0).then_some(orig);
        y.mscale = Some(factor);
        y.mscale_all_dim = Some(1.0);
        let scaling = match kind {
            0 => RopeScaling::Default,
            1 => RopeScaling::Linear { factor },
            2 => RopeScaling::Ntk { alpha: factor },
            3 => RopeScaling::Dynamic { factor },
            4 => RopeScaling::Yarn(y),
            5 => RopeScaling::Llama3 { factor, low_freq_factor: 1.0, high_freq_factor: factor, original_max_position_embeddings: orig },
            _ => RopeScaling::LongRope(LongRope { short_factor: &lf, long_factor: &lf, factor: Some(factor), attention_factor: None, original_max_position_embeddings: (orig % 3 == 0).then_some(orig) }),
        };
        let cfg = RopeConfig::new(theta, d).with_rotary_dim(rd).with_scaling(scaling).with_max_position_embeddings(mp);
        let mut t = vec![0.0; 12];
        let r = cfg.inv_freq(sl, &mut t);
        if let Ok(af) = r {
            prop_assert!(af.is_finite());
            prop_assert!(t[..cfg.pairs()].iter().all(|f| f.is_finite()));
        }
        let x = vec![1.0f32; d.max(1) * 2];
        let mut yv = x.clone();
        let b = Reference;
        let _ = cfg.apply(&b, sl, RopePositions::Offset(sl as u64), Some(b.view(&x, &[1, 1, 2, d.max(1)]).unwrap()), b.view_mut(&mut yv, &[1, 1, 2, d.max(1)]).unwrap(), &mut t);
    }

    /// Mismatched shapes and tables: `Err`, never a panic.
    #[test]
    fn relative_attention_never_panics(
        s in prop::collection::vec(0usize..4, 4), lk in 0usize..4, dv in 0usize..4, rows in 0usize..5,
        heads in 0usize..3, ws in 0usize..5, nb in 0usize..6, md in 0usize..8, bi in any::<bool>(), clipped in any::<bool>(),
    ) {
        let b = Reference;
        let n = |sh: &[usize]| sh.iter().product::<usize>();
        let qs = [s[0], s[1], s[2], s[3]];
        let ks = [s[0], s[1], lk, s[3]];
        let vs = [s[0], s[1], lk, dv];
        let os = [s[0], s[1], s[2], dv];
        let q = vec![0.5f32; n(&qs)];
        let k = vec![0.5f32; n(&ks)];
        let v = vec![0.5f32; n(&vs)];
        let rk = vec![0.1f32; heads * rows * s[3]];
        let mut o = vec![0.0f32; n(&os)];
        let mut w = vec![0.0f32; ws];
        let index = if clipped { RelativeIndex::Clipped { max_back: rows / 2, max_fwd: rows / 3 } } else { RelativeIndex::Buckets { bidirectional: bi, num_buckets: nb, max_distance: md } };
        let p = RelativeParams { scale: 0.5, causal: bi, index };
        let _ = b.relative_attention(&p, b.view(&q, &qs).unwrap(), b.view(&k, &ks).unwrap(), b.view(&v, &vs).unwrap(),
            Some(b.view(&rk, &[heads, rows, s[3]]).unwrap()), None, None, b.view_mut(&mut o, &os).unwrap(), &mut w);
    }

    /// R(a) R(b) = R(a + b), every scaling-free layout, positions up to 2^24.
    #[test]
    fn rope_composes(a in 0u64..(1 << 23), c in 0u64..(1 << 23), inter in any::<bool>(), x in prop::collection::vec(-2.0f64..2.0, 8)) {
        let layout = if inter { RopeLayout::Interleaved } else { RopeLayout::Half };
        let cfg = RopeConfig::new(10_000.0, 8).with_layout(layout);
        let two = rope_at(&cfg, &rope_at(&cfg, &x, a), c);
        let one = rope_at(&cfg, &x, a + c);
        for (p, q) in two.iter().zip(&one) {
            // Each application: angle error 2^-53 p theta, plus a few roundings of |x|.
            prop_assert!((p - q).abs() <= (((a + c) as f64) * 2f64.powi(-50) + 1e-14) * 4.0, "{two:?} vs {one:?}");
        }
    }

    /// Music Transformer: the paper's skew with dense kernels equals the fused kernel, at f64.
    #[test]
    fn skew_equals_fused(l in 1usize..9, d in 1usize..5, vals in prop::collection::vec(-1.0f64..1.0, 4 * 8 * 4)) {
        let b = Reference;
        let take = |off: usize| vals[off..off + l * d].to_vec();
        let (q, k, v, er) = (take(0), take(32), take(64), take(96));
        let att = SkewedAttention { scale: None };
        let (mut o1, mut o2) = (vec![0.0; l * d], vec![0.0; l * d]);
        let mut ws = vec![0.0; d];
        let sh = [1, 1, l, d];
        att.forward(&b, b.view(&q, &sh).unwrap(), b.view(&k, &sh).unwrap(), b.view(&v, &sh).unwrap(), b.view(&er, &[1, l, d]).unwrap(), b.view_mut(&mut o1, &sh).unwrap(), &mut ws).unwrap();
        let mut padded = vec![f64::NAN; padded_len(l).unwrap()];
        let mut probs = vec![f64::NAN; l * l];
        att.forward_skewed(&b, b.view(&q, &sh).unwrap(), b.view(&k, &sh).unwrap(), b.view(&v, &sh).unwrap(), b.view(&er, &[1, l, d]).unwrap(), b.view_mut(&mut o2, &sh).unwrap(), &mut padded, &mut probs).unwrap();
        for (x, y) in o1.iter().zip(&o2) {
            prop_assert!((x - y).abs() <= 1e-13, "{o1:?} vs {o2:?}");
        }
    }

    /// T5 buckets: within range, monotone in the distance on each side.
    #[test]
    fn t5_buckets_monotone(bi in any::<bool>(), n in 2usize..40, md in 1usize..300) {
        let nb = if bi { 2 * n } else { n };
        let md = md.max(n / 2 + 1);
        let mut last = 0;
        for r in 0..1000i64 {
            let k = relative_position_bucket(-r, bi, nb, md).unwrap();
            prop_assert!(k < nb && k >= last);
            last = k;
        }
    }
}
