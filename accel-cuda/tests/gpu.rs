//! Tests on a real GPU. On a machine without one (or without the driver / NVRTC), every test
//! prints a `SKIPPED` line with the reason and passes; it never hangs. The full agreement checks
//! are `seq-conformance report --backend cuda` (see `scripts/gpu-check.sh`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_lossless
)]

mod support;

use proptest::prelude::*;
use seq_accel_cuda::{CudaBackend, CudaMem};
use seqcore::{
    Allocate, Backend, Binary, Element, Error, Layout, Reduce, Reference, SoftmaxKind, Unary, View,
    ViewMut, bf16, f16,
};
use support::attention::{AttnCase, check_attention, vals};
use support::{down, gpu, up};

#[test]
fn construction_never_panics() {
    match CudaBackend::new(0) {
        Ok(b) => println!("GPU: {} ({})", b.device_name(), b.arch()),
        Err(e) => {
            assert!(matches!(
                e,
                Error::Unavailable {
                    backend: "cuda",
                    ..
                }
            ));
            println!("SKIPPED construction_never_panics: {e}");
        }
    }
    // A device that does not exist is Unavailable, never a panic.
    let e = CudaBackend::new(1 << 20).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unavailable {
                backend: "cuda",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn round_trip_and_length_errors() {
    let Some(b) = gpu() else { return };
    let v: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 3.0).collect();
    let m = up(b, &v);
    assert_eq!(down(b, &m), v);
    let mut short = vec![0.0f32; 999];
    assert!(matches!(
        b.read(&m, &mut short),
        Err(Error::Shape { arg: "dst", .. })
    ));
    let mut m2 = b.alloc::<f32>(3).unwrap();
    assert!(matches!(b.write(&v, &mut m2), Err(Error::Shape { .. })));
    // Empty memory works both ways.
    let e = b.alloc::<f16>(0).unwrap();
    assert!(down(b, &e).is_empty());
}

#[test]
fn softmax_masked_rows_and_specials() {
    let Some(b) = gpu() else { return };
    let ninf = f32::NEG_INFINITY;
    let x = [
        1.0f32,
        2.0,
        3.0,
        ninf,
        ninf,
        ninf,
        0.0,
        f32::NAN,
        1.0,
        5.0,
        f32::INFINITY,
        1.0,
    ];
    for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
        let xm = up(b, &x);
        let mut ym = b.alloc::<f32>(12).unwrap();
        b.softmax(
            kind,
            b.view(&xm, &[4, 3]).unwrap(),
            None,
            b.view_mut(&mut ym, &[4, 3]).unwrap(),
        )
        .unwrap();
        let got = down(b, &ym);
        let mut want = [0.0f32; 12];
        let r = Reference;
        r.softmax(
            kind,
            r.view(&x, &[4, 3]).unwrap(),
            None,
            r.view_mut(&mut want, &[4, 3]).unwrap(),
        )
        .unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= 4e-7 * w.abs().max(1.0),
                "{kind:?}: got {got:?}, want {want:?}"
            );
        }
        // fully masked row: 0 / -inf exactly
        let masked = if kind == SoftmaxKind::Softmax {
            0.0
        } else {
            ninf
        };
        assert_eq!(&got[3..6], &[masked; 3]);
        assert!(got[6..12].iter().all(|v| v.is_nan()));
    }
}

#[test]
fn gemm_transposed_batched_matches_reference() {
    let Some(b) = gpu() else { return };
    let (bt, m, n, k) = (3usize, 70usize, 65usize, 33usize);
    let a: Vec<f64> = (0..bt * k * m)
        .map(|i| ((i * 7919) % 97) as f64 / 17.0 - 2.5)
        .collect();
    let bb: Vec<f64> = (0..bt * k * n)
        .map(|i| ((i * 104_729) % 89) as f64 / 13.0 - 3.0)
        .collect();
    let c0: Vec<f64> = (0..bt * m * n).map(|i| (i % 11) as f64).collect();
    // `a` stored as [bt, k, m] and viewed transposed as [bt, m, k].
    let at = Layout::contiguous(&[bt, k, m])
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let (am, bm) = (up(b, &a), up(b, &bb));
    let mut cm = up(b, &c0);
    b.gemm(
        0.5,
        View::new(&am, at).unwrap(),
        b.view(&bm, &[bt, k, n]).unwrap(),
        2.0,
        b.view_mut(&mut cm, &[bt, m, n]).unwrap(),
    )
    .unwrap();
    let got = down(b, &cm);
    let mut want = c0.clone();
    let r = Reference;
    r.gemm(
        0.5,
        View::new(a.as_slice(), at).unwrap(),
        r.view(&bb, &[bt, k, n]).unwrap(),
        2.0,
        r.view_mut(&mut want, &[bt, m, n]).unwrap(),
    )
    .unwrap();
    for (g, w) in got.iter().zip(&want) {
        // gamma_k bound of a dot product with |a||b| <= 33 * 3 * 4
        assert!((g - w).abs() <= 1e-12, "{g} vs {w}");
    }
}

#[test]
fn casts_round_once_to_nearest_even() {
    let Some(b) = gpu() else { return };
    // f64 just past an f16 tie, an exact tie, overflow, subnormals, NaN, signed zero.
    let x = [
        1.0 + 2f64.powi(-11) + 2f64.powi(-40),
        1.0 + 2f64.powi(-11),
        70000.0,
        -70000.0,
        2f64.powi(-25),
        3.0 * 2f64.powi(-26),
        f64::NAN,
        -0.0,
        1e300,
        3.4e38,
    ];
    let xm = up(b, &x);
    let mut hm = b.alloc::<f16>(x.len()).unwrap();
    b.cast(
        b.view(&xm, &[x.len()]).unwrap(),
        b.view_mut(&mut hm, &[x.len()]).unwrap(),
    )
    .unwrap();
    let mut bm = b.alloc::<bf16>(x.len()).unwrap();
    b.cast(
        b.view(&xm, &[x.len()]).unwrap(),
        b.view_mut(&mut bm, &[x.len()]).unwrap(),
    )
    .unwrap();
    let (h, bf) = (down(b, &hm), down(b, &bm));
    for (i, &v) in x.iter().enumerate() {
        let (wh, wb) = (f16::from_f64_exact(v), bf16::from_f64_exact(v));
        assert_eq!(
            h[i].to_bits(),
            wh.to_bits(),
            "f16 of {v:e}: {} vs {}",
            h[i],
            wh
        );
        assert!(
            bf[i].to_bits() == wb.to_bits() || (bf[i].is_nan() && wb.is_nan()),
            "bf16 of {v:e}: {} vs {}",
            bf[i],
            wb
        );
    }
}

trait Exact {
    fn from_f64_exact(x: f64) -> Self;
}
impl Exact for f16 {
    fn from_f64_exact(x: f64) -> Self {
        <f16 as Element>::from_f64(x)
    }
}
impl Exact for bf16 {
    fn from_f64_exact(x: f64) -> Self {
        <bf16 as Element>::from_f64(x)
    }
}

#[test]
fn bad_input_gives_the_reference_errors() {
    let Some(b) = gpu() else { return };
    let r = Reference;
    let x = [0.0f32; 6];
    let xm = up(b, &x);
    let mut ym = b.alloc::<f32>(6).unwrap();
    let mut y = [0.0f32; 6];
    let e_gpu = b
        .softmax(
            SoftmaxKind::Softmax,
            b.view(&xm, &[2, 3]).unwrap(),
            None,
            b.view_mut(&mut ym, &[3, 2]).unwrap(),
        )
        .unwrap_err();
    let e_ref = r
        .softmax(
            SoftmaxKind::Softmax,
            r.view(&x, &[2, 3]).unwrap(),
            None,
            r.view_mut(&mut y, &[3, 2]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(e_gpu, e_ref);
    let e_gpu = b
        .unary(
            Unary::Scale(f64::INFINITY),
            b.view(&xm, &[6]).unwrap(),
            b.view_mut(&mut ym, &[6]).unwrap(),
        )
        .unwrap_err();
    let e_ref = r
        .unary(
            Unary::Scale(f64::INFINITY),
            r.view(&x, &[6]).unwrap(),
            r.view_mut(&mut y, &[6]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(e_gpu, e_ref);
    let mut vm = b.alloc::<f32>(8).unwrap();
    let mut im = b.alloc::<u32>(8).unwrap();
    let e = b
        .top_k(
            4,
            b.view(&xm, &[2, 3]).unwrap(),
            b.view_mut(&mut vm, &[2, 4]).unwrap(),
            b.view_mut(&mut im, &[2, 4]).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Param { arg: "k", .. }), "{e:?}");
}

fn bits_eq<T: Element>(a: &[T], b: &[T]) -> bool {
    a.iter().zip(b).all(|(x, y)| {
        bytemuck::bytes_of(x) == bytemuck::bytes_of(y)
            || (x.to_f64().is_nan() && y.to_f64().is_nan())
    })
}

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -100.0f32..100.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => Just(1e-40f32),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// One f32 operation is correctly rounded on both backends: bitwise equal to the reference.
    #[test]
    fn binary_f32_is_bitwise_the_reference(v in proptest::collection::vec((value(), value()), 1..300), op in proptest::sample::select(Binary::ALL.to_vec())) {
        let Some(b) = gpu() else { return Ok(()) };
        let (a, bb): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
        let n = a.len();
        let (am, bm) = (up(b, &a), up(b, &bb));
        let mut ym = b.alloc::<f32>(n).unwrap();
        b.binary(op, b.view(&am, &[n]).unwrap(), b.view(&bm, &[n]).unwrap(), b.view_mut(&mut ym, &[n]).unwrap()).unwrap();
        let mut want = vec![0.0f32; n];
        let r = Reference;
        r.binary(op, r.view(&a, &[n]).unwrap(), r.view(&bb, &[n]).unwrap(), r.view_mut(&mut want, &[n]).unwrap()).unwrap();
        prop_assert!(bits_eq(&down(b, &ym), &want));
    }

    /// top_k, max and min reductions return inputs: bitwise the reference, ties and NaN included.
    #[test]
    fn selections_are_bitwise_the_reference(rows in 1usize..5, n in 1usize..300, kf in 0.0f64..1.0, seed in proptest::collection::vec(value(), 8)) {
        let Some(b) = gpu() else { return Ok(()) };
        let k = ((n as f64 * kf) as usize).min(n);
        // few distinct values: many ties
        let x: Vec<f32> = (0..rows * n).map(|i| seed[(i * 31 + i / 7) % 8]).collect();
        let xm = up(b, &x);
        let r = Reference;
        let mut vm = b.alloc::<f32>(rows * k).unwrap();
        let mut im = b.alloc::<u32>(rows * k).unwrap();
        b.top_k(k, b.view(&xm, &[rows, n]).unwrap(), b.view_mut(&mut vm, &[rows, k]).unwrap(), b.view_mut(&mut im, &[rows, k]).unwrap()).unwrap();
        let (mut wv, mut wi) = (vec![0.0f32; rows * k], vec![0u32; rows * k]);
        r.top_k(k, r.view(&x, &[rows, n]).unwrap(), r.view_mut(&mut wv, &[rows, k]).unwrap(), r.view_mut(&mut wi, &[rows, k]).unwrap()).unwrap();
        prop_assert!(bits_eq(&down(b, &vm), &wv));
        prop_assert_eq!(down(b, &im), wi);
        for op in [Reduce::Max, Reduce::Min] {
            let mut ym = b.alloc::<f32>(rows).unwrap();
            b.reduce(op, b.view(&xm, &[rows, n]).unwrap(), b.view_mut(&mut ym, &[rows]).unwrap()).unwrap();
            let mut want = vec![0.0f32; rows];
            r.reduce(op, r.view(&x, &[rows, n]).unwrap(), r.view_mut(&mut want, &[rows]).unwrap()).unwrap();
            prop_assert!(bits_eq(&down(b, &ym), &want));
        }
    }

    /// Shapes that do not fit give the reference's error, never a panic.
    #[test]
    fn mismatched_shapes_are_the_reference_errors(xs in proptest::collection::vec(0usize..4, 0..4), ys in proptest::collection::vec(0usize..4, 0..4)) {
        let Some(b) = gpu() else { return Ok(()) };
        let (nx, ny) = (xs.iter().product::<usize>(), ys.iter().product::<usize>());
        let (x, mut y) = (vec![1.0f32; nx], vec![0.0f32; ny]);
        let xm = up(b, &x);
        let mut ym = b.alloc::<f32>(ny).unwrap();
        let r = Reference;
        let got = b.unary(Unary::Exp, b.view(&xm, &xs).unwrap(), b.view_mut(&mut ym, &ys).unwrap());
        let want = r.unary(Unary::Exp, r.view(&x, &xs).unwrap(), r.view_mut(&mut y, &ys).unwrap());
        prop_assert_eq!(got.err(), want.err());
        let got = b.reduce(Reduce::Sum, b.view(&xm, &xs).unwrap(), b.view_mut(&mut ym, &ys).unwrap());
        let want = r.reduce(Reduce::Sum, r.view(&x, &xs).unwrap(), r.view_mut(&mut y, &ys).unwrap());
        prop_assert_eq!(got.err(), want.err());
        let got = b.softmax(SoftmaxKind::LogSoftmax, b.view(&xm, &xs).unwrap(), None, b.view_mut(&mut ym, &ys).unwrap());
        let want = r.softmax(SoftmaxKind::LogSoftmax, r.view(&x, &xs).unwrap(), None, r.view_mut(&mut y, &ys).unwrap());
        prop_assert_eq!(got.err(), want.err());
    }
}

#[test]
fn views_with_offsets_and_broadcast() {
    let Some(b) = gpu() else { return };
    // y[i, j] = a[i, j] + bias[j] with bias broadcast (stride 0) and a read from an offset.
    let a: Vec<f64> = (0..40).map(|i| i as f64).collect();
    let bias = [10.0f64, 20.0, 30.0];
    let (am, bm) = (up(b, &a), up(b, &bias));
    let mut ym = b.alloc::<f64>(12).unwrap();
    let av = View::new(&am, Layout::new(4, &[4, 3], &[5, 1]).unwrap()).unwrap();
    let bv = b.view(&bm, &[3]).unwrap().expand(&[4, 3]).unwrap();
    b.binary(
        Binary::Add,
        av,
        bv,
        ViewMut::new(&mut ym, Layout::contiguous(&[4, 3]).unwrap()).unwrap(),
    )
    .unwrap();
    let got = down(b, &ym);
    for i in 0..4 {
        for j in 0..3 {
            assert_eq!(got[i * 3 + j], a[4 + i * 5 + j] + bias[j]);
        }
    }
}

// ---- fused attention ----

use seqcore::{AttentionMasks, AttentionParams, DType};

fn attention_cases() -> Vec<AttnCase> {
    let base = AttnCase {
        b: 2,
        hq: 4,
        hkv: 2,
        lq: 5,
        lk: 37,
        d: 16,
        dv: 8,
        params: AttentionParams::causal(),
        mask: true,
        bias: false,
        token_major: false,
    };
    vec![
        base.clone(),
        AttnCase {
            lq: 40,
            lk: 33,
            bias: true,
            params: AttentionParams {
                window: Some(3),
                softcap: Some(5.0),
                query_offset: Some(0),
                ..AttentionParams::causal()
            },
            ..base.clone()
        },
        AttnCase {
            b: 1,
            hq: 3,
            hkv: 1,
            lq: 70,
            lk: 70,
            d: 64,
            dv: 64,
            mask: false,
            token_major: true,
            ..base.clone()
        },
        AttnCase {
            lq: 3,
            lk: 0,
            params: AttentionParams::default(),
            ..base.clone()
        },
        AttnCase {
            d: 128,
            dv: 128,
            lq: 65,
            lk: 129,
            mask: false,
            params: AttentionParams {
                scale: Some(0.05),
                ..AttentionParams::default()
            },
            ..base.clone()
        },
        // The tensor-core path's calls (f16/bf16): causal + window, GQA, rows past the keys.
        AttnCase {
            b: 1,
            hq: 4,
            hkv: 2,
            lq: 100,
            lk: 150,
            d: 64,
            dv: 64,
            mask: false,
            params: AttentionParams {
                window: Some(40),
                ..AttentionParams::causal()
            },
            ..base.clone()
        },
        AttnCase {
            b: 2,
            hq: 2,
            hkv: 1,
            lq: 130,
            lk: 70,
            d: 128,
            dv: 128,
            mask: false,
            ..base
        },
    ]
}

#[test]
fn attention_matches_the_reference_in_every_type() {
    let Some(b) = gpu() else { return };
    // Both paths: the tensor-core one (f16/bf16 calls it takes) and the generic one.
    for tensor_cores in [true, false] {
        b.use_tensor_core_attention(tensor_cores);
        for c in attention_cases() {
            check_attention::<f64>(b, &c, 0.0);
            check_attention::<f32>(b, &c, 0.0);
            check_attention::<f16>(b, &c, 0.0);
            check_attention::<bf16>(b, &c, 0.0);
        }
    }
    b.use_tensor_core_attention(true);
    let _ = DType::F32;
}

#[test]
fn attention_bad_input_is_the_reference_error() {
    let Some(b) = gpu() else { return };
    let r = Reference;
    let q = vec![0.0f32; 2 * 3 * 4 * 8];
    let k = vec![0.0f32; 2 * 2 * 4 * 8];
    let (qm, km) = (up(b, &q), up(b, &k));
    let mut o = vec![0.0f32; 2 * 3 * 4 * 8];
    let mut om = up(b, &o);
    let mut ws = b.alloc::<f32>(0).unwrap();
    let mut rws = vec![0.0f32; 128];
    // 2 key/value heads do not divide 3 query heads
    let e_gpu = b
        .attention(
            &AttentionParams::default(),
            b.view(&qm, &[2, 3, 4, 8]).unwrap(),
            b.view(&km, &[2, 2, 4, 8]).unwrap(),
            b.view(&km, &[2, 2, 4, 8]).unwrap(),
            AttentionMasks::none(),
            b.view_mut(&mut om, &[2, 3, 4, 8]).unwrap(),
            None,
            &mut ws,
        )
        .unwrap_err();
    let e_ref = r
        .attention(
            &AttentionParams::default(),
            r.view(&q, &[2, 3, 4, 8]).unwrap(),
            r.view(&k, &[2, 2, 4, 8]).unwrap(),
            r.view(&k, &[2, 2, 4, 8]).unwrap(),
            AttentionMasks::none(),
            r.view_mut(&mut o, &[2, 3, 4, 8]).unwrap(),
            None,
            &mut rws,
        )
        .unwrap_err();
    assert_eq!(e_gpu, e_ref);
}

#[test]
fn attention_merge_of_two_key_halves_is_the_whole() {
    let Some(b) = gpu() else { return };
    let (bh, lq, lk, d) = (3usize, 6usize, 50usize, 32usize);
    let q: Vec<f32> = vals(bh * lq * d, 5).into_iter().map(|x| x as f32).collect();
    let k: Vec<f32> = vals(bh * lk * d, 6).into_iter().map(|x| x as f32).collect();
    let v: Vec<f32> = vals(bh * lk * d, 7).into_iter().map(|x| x as f32).collect();
    let (qm, km, vm) = (up(b, &q), up(b, &k), up(b, &v));
    let mut ws = b.alloc::<f32>(0).unwrap();
    let p = AttentionParams::default();
    let run = |lo: usize,
               len: usize,
               o: &mut CudaMem<f32>,
               l: &mut CudaMem<f32>,
               ws: &mut CudaMem<f32>| {
        b.attention(
            &p,
            b.view(&qm, &[1, bh, lq, d]).unwrap(),
            b.view(&km, &[1, bh, lk, d])
                .unwrap()
                .narrow(2, lo, len)
                .unwrap(),
            b.view(&vm, &[1, bh, lk, d])
                .unwrap()
                .narrow(2, lo, len)
                .unwrap(),
            AttentionMasks::none(),
            b.view_mut(o, &[1, bh, lq, d]).unwrap(),
            Some(b.view_mut(l, &[1, bh, lq]).unwrap()),
            ws,
        )
        .unwrap();
    };
    let n = bh * lq * d;
    let (mut oa, mut ob, mut ow, mut om) = (
        b.alloc::<f32>(n).unwrap(),
        b.alloc::<f32>(n).unwrap(),
        b.alloc::<f32>(n).unwrap(),
        b.alloc::<f32>(n).unwrap(),
    );
    let (mut la, mut lb, mut lw, mut lm) = (
        b.alloc::<f32>(bh * lq).unwrap(),
        b.alloc::<f32>(bh * lq).unwrap(),
        b.alloc::<f32>(bh * lq).unwrap(),
        b.alloc::<f32>(bh * lq).unwrap(),
    );
    run(0, 20, &mut oa, &mut la, &mut ws);
    run(20, 30, &mut ob, &mut lb, &mut ws);
    run(0, 50, &mut ow, &mut lw, &mut ws);
    b.attention_merge(
        b.view(&oa, &[bh, lq, d]).unwrap(),
        b.view(&la, &[bh, lq]).unwrap(),
        b.view(&ob, &[bh, lq, d]).unwrap(),
        b.view(&lb, &[bh, lq]).unwrap(),
        b.view_mut(&mut om, &[bh, lq, d]).unwrap(),
        Some(b.view_mut(&mut lm, &[bh, lq]).unwrap()),
    )
    .unwrap();
    // Merge is exact up to rounding: a few f32 ulps of the magnitudes involved (|v| <= 2).
    for (g, w) in down(b, &om).iter().zip(&down(b, &ow)) {
        assert!((g - w).abs() <= 64.0 * f32::EPSILON * 2.0, "{g} vs {w}");
    }
    for (g, w) in down(b, &lm).iter().zip(&down(b, &lw)) {
        assert!(
            (g - w).abs() <= 64.0 * f32::EPSILON * (1.0 + w.abs()),
            "{g} vs {w}"
        );
    }
}
