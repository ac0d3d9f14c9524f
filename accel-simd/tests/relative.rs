//! The SIMD relative-attention kernel against the Reference backend (the portable kernel): Shaw
//! clipping, Music Transformer, T5 buckets, with and without each relative table, causal, lengths
//! around the vector width, strided storage (the fallback), special values, and bad inputs (same
//! `Err`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::too_many_arguments,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seqcore::portable::relative::{RelativeIndex, RelativeParams};
use seqcore::{Backend, Element, Error, Layout, Reference, View, ViewMut, bf16, f16};

#[derive(Clone, Debug)]
struct Case {
    params: RelativeParams,
    /// `[B, H, Lq, Lk, D, Dv]`.
    ext: [usize; 6],
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    rel_k: Option<Vec<f64>>,
    rel_v: Option<Vec<f64>>,
    rel_bias: Option<Vec<f64>>,
    /// Store q and k with a feature stride of 2 (the portable fallback).
    strided: bool,
    /// Workspace elements (`None`: `Dv`).
    ws: Option<usize>,
}

fn mem<T: Element>(x: &[f64]) -> Vec<T> {
    x.iter().map(|&y| T::from_f64(y)).collect()
}

fn run<B, T>(backend: &B, c: &Case) -> Result<Vec<f64>, Error>
where
    B: Backend<Mem<T> = [T]> + Backend<Mem<T::Acc> = [T::Acc]>,
    T: Element,
{
    let [b, h, lq, lk, d, dv] = c.ext;
    let rows = c.params.index.rows();
    let (qm, ql, km, kl) = if c.strided {
        let spread = |x: &[f64]| {
            let mut m = vec![T::from_f64(f64::NAN); 2 * x.len().max(1)];
            for (i, &y) in x.iter().enumerate() {
                m[2 * i] = T::from_f64(y);
            }
            m
        };
        (
            spread(&c.q),
            Layout::new(0, &[b, h, lq, d], &[2 * h * lq * d, 2 * lq * d, 2 * d, 2]).unwrap(),
            spread(&c.k),
            Layout::new(0, &[b, h, lk, d], &[2 * h * lk * d, 2 * lk * d, 2 * d, 2]).unwrap(),
        )
    } else {
        (
            mem::<T>(&c.q),
            Layout::contiguous(&[b, h, lq, d]).unwrap(),
            mem::<T>(&c.k),
            Layout::contiguous(&[b, h, lk, d]).unwrap(),
        )
    };
    let vm = mem::<T>(&c.v);
    let rk = c.rel_k.as_deref().map(mem::<T>);
    let rv = c.rel_v.as_deref().map(mem::<T>);
    let rb = c.rel_bias.as_deref().map(mem::<T>);
    let mut om = vec![T::from_f64(-5.0); b * h * lq * dv];
    let mut ws = vec![T::Acc::from_f64(f64::NAN); c.ws.unwrap_or(dv)];
    backend.relative_attention(
        &c.params,
        View::<B, T>::new(qm.as_slice(), ql)?,
        View::<B, T>::new(km.as_slice(), kl)?,
        View::<B, T>::new(vm.as_slice(), Layout::contiguous(&[b, h, lk, dv]).unwrap())?,
        rk.as_ref()
            .map(|x| View::<B, T>::new(x.as_slice(), Layout::contiguous(&[h, rows, d]).unwrap()))
            .transpose()?,
        rv.as_ref()
            .map(|x| View::<B, T>::new(x.as_slice(), Layout::contiguous(&[h, rows, dv]).unwrap()))
            .transpose()?,
        rb.as_ref()
            .map(|x| View::<B, T>::new(x.as_slice(), Layout::contiguous(&[h, rows]).unwrap()))
            .transpose()?,
        ViewMut::<B, T>::new(
            om.as_mut_slice(),
            Layout::contiguous(&[b, h, lq, dv]).unwrap(),
        )?,
        ws.as_mut_slice(),
    )?;
    Ok(om.iter().map(|x| x.to_f64()).collect())
}

fn agree<T: Element>(c: &Case, tol: f64) -> Result<(), TestCaseError>
where
    Simd: Backend<Mem<T> = [T]> + Backend<Mem<T::Acc> = [T::Acc]>,
{
    let Ok(s) = Simd::new() else { return Ok(()) };
    let want = run::<Reference, T>(&Reference, c);
    let got = run::<Simd, T>(&s, c);
    match (got, want) {
        (Ok(g), Ok(w)) => {
            for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
                if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
                    prop_assert!(
                        (a.is_nan() && b.is_nan()) || a == b,
                        "o[{}]: simd {} reference {}",
                        i,
                        a,
                        b
                    );
                } else {
                    prop_assert!(
                        (a - b).abs() <= tol * (1.0 + b.abs()),
                        "o[{}]: simd {} reference {}",
                        i,
                        a,
                        b
                    );
                }
            }
        }
        (g, w) => prop_assert_eq!(g.err(), w.err()),
    }
    Ok(())
}

fn index() -> impl Strategy<Value = RelativeIndex> {
    prop_oneof![
        (0usize..6, 0usize..6)
            .prop_map(|(max_back, max_fwd)| RelativeIndex::Clipped { max_back, max_fwd }),
        (
            any::<bool>(),
            prop::sample::select(vec![4usize, 8, 32]),
            3usize..130
        )
            .prop_map(|(bidirectional, num_buckets, max_distance)| {
                RelativeIndex::Buckets {
                    bidirectional,
                    num_buckets,
                    max_distance,
                }
            }),
    ]
}

prop_compose! {
    fn case()(
        b in 1usize..3, h in 1usize..3, lq in 0usize..12, lk in 0usize..20,
        d in prop::sample::select(vec![1usize, 3, 4, 8, 9, 16, 17, 25]),
        dv in prop::sample::select(vec![1usize, 2, 7, 8, 9, 17]),
        index in index(),
    )(
        q in proptest::collection::vec(-2.0f64..2.0, b * h * lq * d),
        k in proptest::collection::vec(-2.0f64..2.0, b * h * lk * d),
        v in proptest::collection::vec(-2.0f64..2.0, b * h * lk * dv),
        rel_k in proptest::collection::vec(-1.0f64..1.0, h * index.rows() * d),
        rel_v in proptest::collection::vec(-1.0f64..1.0, h * index.rows() * dv),
        rel_bias in proptest::collection::vec(-1.0f64..1.0, h * index.rows()),
        which in 0u8..8,
        causal in any::<bool>(),
        scale in prop::sample::select(vec![1.0f64, 0.25, -0.5]),
        strided in prop::bool::weighted(0.2),
        ext in Just([b, h, lq, lk, d, dv]),
        index in Just(index),
    ) -> Case {
        Case {
            params: RelativeParams { scale, causal, index },
            ext,
            q, k, v,
            rel_k: (which & 1 != 0).then_some(rel_k),
            rel_v: (which & 2 != 0).then_some(rel_v),
            rel_bias: (which & 4 != 0).then_some(rel_bias),
            strided,
            ws: None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn f64_agrees(c in case()) { agree::<f64>(&c, 1e-12)?; }

    #[test]
    fn f32_agrees(c in case()) { agree::<f32>(&c, 2e-5)?; }

    #[test]
    fn f16_agrees(c in case()) { agree::<f16>(&c, 2e-3)?; }

    #[test]
    fn bf16_agrees(c in case()) { agree::<bf16>(&c, 1.6e-2)?; }
}

fn plain(ext: [usize; 6], index: RelativeIndex) -> Case {
    let [b, h, lq, lk, d, dv] = ext;
    let f = |n: usize, s: usize| -> Vec<f64> {
        (0..n)
            .map(|i| (((i * 37 + s * 11) % 101) as f64 - 50.0) / 40.0)
            .collect()
    };
    let rows = index.rows();
    Case {
        params: RelativeParams {
            scale: 0.3,
            causal: true,
            index,
        },
        ext,
        q: f(b * h * lq * d, 1),
        k: f(b * h * lk * d, 2),
        v: f(b * h * lk * dv, 3),
        rel_k: Some(f(h * rows * d, 4)),
        rel_v: Some(f(h * rows * dv, 5)),
        rel_bias: Some(f(h * rows, 6)),
        strided: false,
        ws: None,
    }
}

#[test]
fn every_feature_count_around_the_lanes() {
    let music = RelativeIndex::Clipped {
        max_back: 9,
        max_fwd: 0,
    };
    for d in 0..=3 * 16 + 1 {
        let c = plain([1, 2, 5, 10, d, 3 + d % 5], music);
        agree::<f32>(&c, 2e-5).unwrap();
        agree::<f64>(&c, 1e-12).unwrap();
        agree::<bf16>(&c, 1.6e-2).unwrap();
    }
}

#[test]
fn special_values_and_masked_rows() {
    let shaw = RelativeIndex::Clipped {
        max_back: 3,
        max_fwd: 3,
    };
    // More queries than keys with causal: the first rows see nothing (zeros).
    let c = plain([1, 1, 8, 3, 8, 8], shaw);
    agree::<f32>(&c, 2e-5).unwrap();
    let s = Simd::new().unwrap();
    let o = run::<Simd, f32>(&s, &c).unwrap();
    assert!(o[..5 * 8].iter().all(|&x| x == 0.0));
    // A -inf bias skips keys; a NaN in a key makes the rows that see it NaN; +inf logits.
    let mut c = plain([1, 1, 6, 6, 8, 8], shaw);
    c.rel_bias.as_mut().unwrap()[3] = f64::NEG_INFINITY;
    c.k[2 * 8 + 1] = f64::NAN;
    agree::<f32>(&c, 2e-5).unwrap();
    let mut c = plain([1, 1, 6, 6, 8, 8], shaw);
    c.q[9] = 1e30;
    agree::<f32>(&c, 2e-5).unwrap();
    agree::<f64>(&c, 1e-12).unwrap();
}

#[test]
fn bad_inputs_give_the_same_error() {
    let shaw = RelativeIndex::Clipped {
        max_back: 2,
        max_fwd: 2,
    };
    let base = plain([1, 2, 3, 4, 8, 8], shaw);
    let mut bad = Vec::new();
    let mut c = base.clone();
    c.ws = Some(7);
    bad.push(c);
    let mut c = base.clone();
    c.params.scale = f64::NAN;
    bad.push(c);
    let mut c = base.clone();
    (c.rel_k, c.rel_v, c.rel_bias) = (None, None, None);
    c.params.index = RelativeIndex::Buckets {
        bidirectional: true,
        num_buckets: 7,
        max_distance: 20,
    };
    bad.push(c);
    let mut c = base.clone();
    (c.rel_k, c.rel_v, c.rel_bias) = (None, None, None);
    c.params.index = RelativeIndex::Buckets {
        bidirectional: false,
        num_buckets: 8,
        max_distance: 2,
    };
    bad.push(c);
    for c in &bad {
        let s = Simd::new().unwrap();
        let r = run::<Reference, f32>(&Reference, c).err();
        let g = run::<Simd, f32>(&s, c).err();
        assert!(r.is_some(), "{c:?}");
        assert_eq!(g, r);
    }
}
