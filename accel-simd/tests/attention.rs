//! The SIMD attention and merge kernels against the Reference backend (the portable kernels) at
//! f64, f32, f16 and bf16: every mask kind, GQA/MQA, lengths around the key tile and the query
//! block, layouts (head-major, token-major, strided feature axis), special values, and bad inputs
//! (same `Err`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::too_many_arguments,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::type_complexity,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seqcore::{
    AttentionDims, AttentionMasks, AttentionParams, Backend, Element, Error, Layout, Reference,
    View, ViewMut, bf16, f16,
};

fn simd() -> Option<Simd> {
    Simd::new().ok()
}

/// One attention call's inputs (logical values, f64), their storage and options.
#[derive(Clone, Debug)]
struct Case {
    dims: AttentionDims,
    params: AttentionParams,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    key_mask: Option<Vec<u8>>,
    bias: Option<Vec<f64>>,
    lse: bool,
    /// Store q/k/v/o token-major `[B, L, H, D]` (viewed through a transpose).
    token_major: bool,
    /// Store q/k with a feature stride of 2 (the portable fallback).
    strided: bool,
}

/// Memory for a logical `[B, H, L, X]` tensor and its layout.
fn store<T: Element>(
    x: &[f64],
    shape: [usize; 4],
    token_major: bool,
    strided: bool,
) -> (Vec<T>, Layout) {
    let [b, h, l, d] = shape;
    if strided {
        let mut mem = vec![T::from_f64(f64::NAN); 2 * x.len().max(1)];
        for (i, &y) in x.iter().enumerate() {
            mem[2 * i] = T::from_f64(y);
        }
        let layout = Layout::new(0, &shape, &[2 * h * l * d, 2 * l * d, 2 * d, 2]).unwrap();
        return (mem, layout);
    }
    if token_major {
        let mut mem = vec![T::from_f64(0.0); x.len()];
        for bi in 0..b {
            for hi in 0..h {
                for li in 0..l {
                    for di in 0..d {
                        mem[((bi * l + li) * h + hi) * d + di] =
                            T::from_f64(x[((bi * h + hi) * l + li) * d + di]);
                    }
                }
            }
        }
        let layout = Layout::contiguous(&[b, l, h, d])
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        return (mem, layout);
    }
    (
        x.iter().map(|&y| T::from_f64(y)).collect(),
        Layout::contiguous(&shape).unwrap(),
    )
}

/// Runs the case on `backend` at `T`; `o` and `lse` in logical order, as f64. The workspace is
/// filled with NaN first (a kernel must not read what it did not write).
fn run<B, T>(backend: &B, c: &Case) -> Result<(Vec<f64>, Vec<f64>), Error>
where
    B: Backend<Mem<T> = [T]> + Backend<Mem<u8> = [u8]> + Backend<Mem<T::Acc> = [T::Acc]>,
    T: Element,
{
    let d = c.dims;
    let qs = [d.batch, d.heads_q, d.len_q, d.head_dim];
    let ks = [d.batch, d.heads_kv, d.len_k, d.head_dim];
    let vs = [d.batch, d.heads_kv, d.len_k, d.value_dim];
    let os = [d.batch, d.heads_q, d.len_q, d.value_dim];
    let (qm, ql) = store::<T>(&c.q, qs, c.token_major, c.strided);
    let (km, kl) = store::<T>(&c.k, ks, c.token_major, c.strided);
    let (vm, vl) = store::<T>(&c.v, vs, c.token_major, false);
    let zeros = vec![0.0; os.iter().product()];
    let (mut om, ol) = store::<T>(&zeros, os, c.token_major, false);
    let bias: Option<Vec<T>> = c
        .bias
        .as_ref()
        .map(|b| b.iter().map(|&x| T::from_f64(x)).collect());
    let mut lse = vec![T::Acc::from_f64(7.0); d.batch * d.heads_q * d.len_q];
    let mut ws = vec![T::Acc::from_f64(f64::NAN); backend.attention_workspace_len::<T>(&d)?];
    let masks = AttentionMasks {
        key_mask: c
            .key_mask
            .as_ref()
            .map(|m| {
                View::<B, u8>::new(
                    m.as_slice(),
                    Layout::contiguous(&[d.batch, d.len_k]).unwrap(),
                )
            })
            .transpose()?,
        bias: bias
            .as_ref()
            .map(|b| {
                View::<B, T>::new(
                    b.as_slice(),
                    Layout::contiguous(&[d.batch, d.heads_q, d.len_q, d.len_k]).unwrap(),
                )
            })
            .transpose()?,
    };
    let lse_view = if c.lse {
        Some(ViewMut::new(
            lse.as_mut_slice(),
            Layout::contiguous(&[d.batch, d.heads_q, d.len_q]).unwrap(),
        )?)
    } else {
        None
    };
    backend.attention(
        &c.params,
        View::new(qm.as_slice(), ql)?,
        View::new(km.as_slice(), kl)?,
        View::new(vm.as_slice(), vl)?,
        masks,
        ViewMut::new(om.as_mut_slice(), ol)?,
        lse_view,
        ws.as_mut_slice(),
    )?;
    let o_view = View::<Reference, T>::new(om.as_slice(), ol)?;
    let o: Vec<f64> = ol.offsets().map(|i| o_view.mem()[i].to_f64()).collect();
    Ok((o, lse.iter().map(|x| x.to_f64()).collect()))
}

/// `got` agrees with `want` within `tol` relative to the row's scale (`1 + |want|`), with NaN,
/// ±inf and exact zeros (rows without a visible key) in the same places.
fn close(what: &str, got: &[f64], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() {
            prop_assert!(w.is_nan() && g.is_nan(), "{what}[{i}]: got {g}, want {w}");
        } else if w.is_infinite() || g.is_infinite() {
            prop_assert_eq!(g, w, "{}[{}]", what, i);
        } else {
            prop_assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }
    Ok(())
}

/// Simd against Reference at `T`, both computing in `T::Acc`.
fn agree<T: Element>(c: &Case, tol: f64) -> Result<(), TestCaseError>
where
    Simd: Backend<Mem<T> = [T]> + Backend<Mem<u8> = [u8]> + Backend<Mem<T::Acc> = [T::Acc]>,
{
    let Some(s) = simd() else { return Ok(()) };
    let want = run::<Reference, T>(&Reference, c);
    let got = run::<Simd, T>(&s, c);
    match (got, want) {
        (Ok((go, gl)), Ok((wo, wl))) => {
            close("o", &go, &wo, tol)?;
            if c.lse {
                close("lse", &gl, &wl, tol)?;
            }
        }
        (got, want) => prop_assert_eq!(got.err(), want.err()),
    }
    Ok(())
}

fn values(n: usize, range: f64) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(-range..range, n)
}

prop_compose! {
    fn dims()(
        batch in 1usize..3,
        heads_kv in 1usize..3,
        group in prop::sample::select(vec![1usize, 2, 3]),
        len_q in prop::sample::select(vec![0usize, 1, 2, 3, 7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 40, 65, 97]),
        len_k in prop::sample::select(vec![0usize, 1, 5, 17, 63, 64, 65, 100, 127, 128, 129, 150, 257]),
        head_dim in prop::sample::select(vec![1usize, 2, 3, 4, 5, 8, 13, 16, 17, 32]),
        value_dim in prop::sample::select(vec![1usize, 3, 4, 5, 7, 8, 9, 16, 19]),
    ) -> AttentionDims {
        AttentionDims { batch, heads_q: heads_kv * group, heads_kv, len_q, len_k, head_dim, value_dim }
    }
}

prop_compose! {
    fn case()(d in dims())(
        q in values(d.batch * d.heads_q * d.len_q * d.head_dim, 3.0),
        k in values(d.batch * d.heads_kv * d.len_k * d.head_dim, 3.0),
        v in values(d.batch * d.heads_kv * d.len_k * d.value_dim, 3.0),
        mask_bits in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 1, 1, 7]), d.batch * d.len_k),
        bias in values(d.batch * d.heads_q * d.len_q * d.len_k, 2.0),
        causal in any::<bool>(),
        window in prop::option::of(1usize..40),
        softcap in prop::option::of(prop::sample::select(vec![0.5f64, 2.0, 30.0])),
        scale in prop::option::of(prop::sample::select(vec![0.05f64, 1.0, -0.7])),
        query_offset in prop::option::of(-20i64..60),
        use_mask in any::<bool>(),
        use_bias in any::<bool>(),
        lse in any::<bool>(),
        layout in 0u8..4,
        d in Just(d),
    ) -> Case {
        Case {
            dims: d,
            params: AttentionParams { scale, causal, window, softcap, query_offset },
            q, k, v,
            key_mask: use_mask.then_some(mask_bits),
            bias: use_bias.then_some(bias),
            lse,
            token_major: layout == 1,
            strided: layout == 2,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn f64_agrees(c in case()) {
        agree::<f64>(&c, 1e-12)?;
    }

    #[test]
    fn f32_agrees(c in case()) {
        agree::<f32>(&c, 2e-5)?;
    }

    #[test]
    fn f16_agrees(c in case()) {
        // Both round the same f32 result once (or nearly the same: 2 f16 ulps).
        agree::<f16>(&c, 2e-3)?;
    }

    #[test]
    fn bf16_agrees(c in case()) {
        agree::<bf16>(&c, 1.6e-2)?;
    }
}

fn plain(dims: AttentionDims, fill: impl Fn(usize, usize) -> f64) -> Case {
    let n = |x: usize| dims.batch * x;
    Case {
        dims,
        params: AttentionParams::default(),
        q: (0..n(dims.heads_q * dims.len_q * dims.head_dim))
            .map(|i| fill(0, i))
            .collect(),
        k: (0..n(dims.heads_kv * dims.len_k * dims.head_dim))
            .map(|i| fill(1, i))
            .collect(),
        v: (0..n(dims.heads_kv * dims.len_k * dims.value_dim))
            .map(|i| fill(2, i))
            .collect(),
        key_mask: None,
        bias: None,
        lse: true,
        token_major: false,
        strided: false,
    }
}

fn d(
    batch: usize,
    hq: usize,
    hkv: usize,
    lq: usize,
    lk: usize,
    dk: usize,
    dv: usize,
) -> AttentionDims {
    AttentionDims {
        batch,
        heads_q: hq,
        heads_kv: hkv,
        len_q: lq,
        len_k: lk,
        head_dim: dk,
        value_dim: dv,
    }
}

fn ramp(t: usize, i: usize) -> f64 {
    (((i * 37 + t * 11) % 101) as f64 - 50.0) / 25.0
}

fn check<T: Element>(c: &Case, tol: f64)
where
    Simd: Backend<Mem<T> = [T]> + Backend<Mem<u8> = [u8]> + Backend<Mem<T::Acc> = [T::Acc]>,
{
    agree::<T>(c, tol).unwrap();
}

#[test]
fn every_length_around_the_tile_and_the_block() {
    for lq in [0, 1, 7, 8, 9, 15, 16, 17, 33] {
        for lk in [0, 1, 63, 64, 65, 127, 128, 129, 255, 256, 257] {
            let mut c = plain(d(1, 2, 1, lq, lk, 9, 5), ramp);
            for causal in [false, true] {
                c.params.causal = causal;
                check::<f32>(&c, 2e-5);
                check::<f64>(&c, 1e-12);
            }
        }
    }
}

#[test]
fn query_blocks_grouped_over_the_key_tiles() {
    // Several groups of query blocks (a group is 4 blocks: 64 f32 rows with AVX2, 32 f64 rows),
    // blocks of one group seeing different key ranges (causal, windows, offsets), key tiles of
    // 128 cut anywhere.
    for (lq, lk) in [
        (63, 63),
        (64, 64),
        (65, 65),
        (129, 129),
        (200, 130),
        (70, 300),
        (257, 257),
    ] {
        let mut c = plain(d(1, 2, 1, lq, lk, 9, 5), ramp);
        for (causal, window, offset) in [
            (false, None, None),
            (true, None, None),
            (true, Some(20), None),
            (true, Some(150), Some(-40)),
            (false, Some(37), Some(10)),
        ] {
            c.params.causal = causal;
            c.params.window = window;
            c.params.query_offset = offset;
            check::<f32>(&c, 2e-5);
            check::<f64>(&c, 1e-12);
            check::<f16>(&c, 2e-3);
        }
    }
}

#[test]
fn a_group_where_one_block_sees_a_non_finite_value_and_another_hides_it() {
    // Causal window of 30 over 150 tokens: key 10 is seen by rows 10..=39 only, so the blocks of
    // the first group disagree on it; keys 70 and 140 likewise in the later groups.
    let mut c = plain(d(1, 1, 1, 150, 150, 8, 8), ramp);
    c.params.causal = true;
    c.params.window = Some(30);
    for j in [10, 70, 140] {
        c.v[j * 8 + 3] = f64::INFINITY;
    }
    c.k[100 * 8 + 1] = f64::NAN;
    for tm in [false, true] {
        c.token_major = tm;
        check::<f32>(&c, 2e-5);
        check::<f64>(&c, 1e-12);
        check::<f16>(&c, 2e-3);
    }
    let Some(s) = simd() else { return };
    let (o, _) = run::<Simd, f32>(&s, &c).unwrap();
    // Row 45 does not see key 10 (nor 70, 100, 140): finite.
    assert!(o[45 * 8..46 * 8].iter().all(|x| x.is_finite()));
    // Row 20 sees key 10, whose value feature 3 is +inf.
    assert_eq!(o[20 * 8 + 3], f64::INFINITY);
}

#[test]
fn fully_masked_rows_are_zero_with_lse_neg_inf() {
    let Some(s) = simd() else { return };
    let mut c = plain(d(2, 2, 2, 20, 70, 8, 8), ramp);
    let mut mask = vec![1u8; 140];
    mask[..70].fill(0);
    c.key_mask = Some(mask);
    let (o, lse) = run::<Simd, f32>(&s, &c).unwrap();
    let half_o = o.len() / 2;
    assert!(o[..half_o].iter().all(|&x| x == 0.0));
    assert!(lse[..lse.len() / 2].iter().all(|&x| x == f64::NEG_INFINITY));
    check::<f32>(&c, 2e-5);
    // Causal with more queries than keys: the first rows see nothing.
    let mut c = plain(d(1, 1, 1, 40, 20, 8, 8), ramp);
    c.params.causal = true;
    let (o, lse) = run::<Simd, f32>(&s, &c).unwrap();
    assert!(o[..20 * 8].iter().all(|&x| x == 0.0));
    assert!(lse[..20].iter().all(|&x| x == f64::NEG_INFINITY));
    check::<f32>(&c, 2e-5);
}

#[test]
fn hidden_keys_are_never_read() {
    // NaN and inf in the keys and values that every row hides (key mask, causal future) must not
    // reach the output; the reference never reads them.
    let mut c = plain(d(1, 2, 1, 19, 80, 8, 8), ramp);
    c.params.causal = true;
    let mut mask = vec![1u8; 80];
    for j in [3, 40, 64, 70] {
        mask[j] = 0;
        c.k[j * 8 + 2] = f64::NAN;
        c.v[j * 8 + 1] = f64::INFINITY;
    }
    // The last key: visible only to the last row (bottom-right causal).
    c.v[79 * 8 + 5] = f64::INFINITY;
    c.k[78 * 8] = f64::NAN;
    c.key_mask = Some(mask);
    for tm in [false, true] {
        c.token_major = tm;
        check::<f32>(&c, 2e-5);
        check::<f64>(&c, 1e-12);
        check::<f16>(&c, 2e-3);
    }
    // An additive -inf bias hides a key too.
    let mut c = plain(d(1, 1, 1, 5, 70, 4, 4), ramp);
    let mut bias = vec![0.0; 5 * 70];
    bias[2 * 70 + 10] = f64::NEG_INFINITY;
    c.v[10 * 4] = f64::INFINITY;
    c.bias = Some(bias);
    check::<f32>(&c, 2e-5);
}

#[test]
fn nan_logits_give_nan_rows_and_huge_logits_are_exact() {
    let mut c = plain(d(1, 1, 1, 17, 90, 8, 8), ramp);
    c.q[3 * 8 + 1] = f64::NAN; // row 3
    c.k[70 * 8 + 4] = f64::NAN; // key 70: every row sees it
    check::<f32>(&c, 2e-5);
    c.params.causal = true;
    c.params.query_offset = Some(0);
    check::<f32>(&c, 2e-5); // only rows >= 70 see key 70
    // Huge logits, one huge product per dot (no cancellation, whose rounding FMA changes):
    // 1e18 * 1e18 and 1e20 * 1e20 (which overflows f32 to +inf).
    let mut c = plain(d(1, 1, 1, 9, 70, 4, 4), |t, i| {
        if t < 2 && i % 4 == 0 {
            match (i / 4) % 3 {
                0 => 1e18,
                1 => -1e18,
                _ => 1e20,
            }
        } else {
            ramp(t, i)
        }
    });
    check::<f32>(&c, 2e-5);
    c.params.softcap = Some(50.0);
    check::<f32>(&c, 2e-5);
    let c = plain(d(1, 1, 1, 9, 70, 4, 4), |t, i| {
        if t < 2 { 1e30 + i as f64 } else { ramp(t, i) }
    });
    check::<f64>(&c, 1e-12);
}

#[test]
fn f16_dot_products_beyond_the_f16_range() {
    // q . k = 64 * 200 * 200 = 2.56e6 > 65504: computed in f32, so finite.
    let mut c = plain(d(1, 2, 1, 10, 70, 64, 8), |t, i| {
        if t < 2 {
            200.0 - (i % 3) as f64
        } else {
            ramp(t, i)
        }
    });
    c.params.scale = Some(1e-4);
    check::<f16>(&c, 2e-3);
    check::<bf16>(&c, 1.6e-2);
    let Some(s) = simd() else { return };
    let (o, _) = run::<Simd, f16>(&s, &c).unwrap();
    assert!(o.iter().all(|x| x.is_finite()));
}

#[test]
fn gqa_mqa_and_layouts() {
    for (hq, hkv) in [(8, 8), (8, 2), (8, 1), (3, 1)] {
        let mut c = plain(d(2, hq, hkv, 21, 66, 16, 8), ramp);
        c.params.causal = true;
        c.params.window = Some(9);
        for (tm, st) in [(false, false), (true, false), (false, true)] {
            c.token_major = tm;
            c.strided = st;
            check::<f32>(&c, 2e-5);
            check::<bf16>(&c, 1.6e-2);
        }
    }
}

#[test]
fn bad_inputs_give_the_same_error() {
    let Some(s) = simd() else { return };
    let c = plain(d(1, 4, 2, 5, 7, 8, 8), ramp);
    let mut bad = Vec::new();
    let mut x = c.clone();
    x.params.scale = Some(f64::NAN);
    bad.push(x);
    let mut x = c.clone();
    x.params.window = Some(0);
    bad.push(x);
    let mut x = c.clone();
    x.params.softcap = Some(-1.0);
    bad.push(x);
    let mut x = c.clone();
    x.dims.heads_kv = 3;
    x.k = vec![0.0; 3 * 7 * 8];
    x.v = vec![0.0; 3 * 7 * 8];
    bad.push(x);
    let mut x = c.clone();
    x.dims.head_dim = 0;
    x.q.clear();
    x.k.clear();
    bad.push(x);
    let mut x = c.clone();
    x.key_mask = Some(vec![1; 6]);
    bad.push(x);
    for x in &bad {
        // The run helper builds views of the case's extents; where those fail (the mask's
        // length), both fail the same way before the kernel.
        let r = run::<Reference, f32>(&Reference, x).err();
        let g = run::<Simd, f32>(&s, x).err();
        assert!(r.is_some());
        assert_eq!(g, r);
    }
    // Mismatched shapes through the kernel itself.
    let q = vec![0.0f32; 4 * 5 * 8];
    let k = vec![0.0f32; 2 * 7 * 8];
    let mut o = vec![0.0f32; 4 * 5 * 8];
    let shapes: [(&[usize], &[usize], &[usize], &[usize]); 3] = [
        (&[1, 4, 5, 8], &[1, 2, 7, 8], &[1, 2, 6, 8], &[1, 4, 5, 8]),
        (&[1, 4, 5, 8], &[1, 2, 7, 8], &[1, 2, 7, 8], &[1, 4, 4, 8]),
        (&[1, 4, 5, 8], &[1, 2, 7, 7], &[1, 2, 7, 8], &[1, 4, 5, 8]),
    ];
    for (qs, ks, vs, os) in shapes {
        let r = Reference.attention::<f32>(
            &AttentionParams::default(),
            View::new(q.as_slice(), Layout::contiguous(qs).unwrap()).unwrap(),
            View::new(&k[..ks.iter().product()], Layout::contiguous(ks).unwrap()).unwrap(),
            View::new(&k[..vs.iter().product()], Layout::contiguous(vs).unwrap()).unwrap(),
            AttentionMasks::none(),
            ViewMut::new(
                &mut o[..os.iter().product()],
                Layout::contiguous(os).unwrap(),
            )
            .unwrap(),
            None,
            &mut vec![0.0; 10_000],
        );
        let g = s.attention::<f32>(
            &AttentionParams::default(),
            View::new(q.as_slice(), Layout::contiguous(qs).unwrap()).unwrap(),
            View::new(&k[..ks.iter().product()], Layout::contiguous(ks).unwrap()).unwrap(),
            View::new(&k[..vs.iter().product()], Layout::contiguous(vs).unwrap()).unwrap(),
            AttentionMasks::none(),
            ViewMut::new(
                &mut o[..os.iter().product()],
                Layout::contiguous(os).unwrap(),
            )
            .unwrap(),
            None,
            &mut vec![0.0; 10_000],
        );
        assert!(r.is_err());
        assert_eq!(g, r);
    }
    // A short workspace: Capacity naming `workspace`.
    let dims = d(1, 4, 2, 5, 7, 8, 8);
    let need = s.attention_workspace_len::<f32>(&dims).unwrap();
    let mut ws = vec![0.0f32; need - 1];
    let e = s
        .attention::<f32>(
            &AttentionParams::default(),
            View::new(q.as_slice(), Layout::contiguous(&[1, 4, 5, 8]).unwrap()).unwrap(),
            View::new(k.as_slice(), Layout::contiguous(&[1, 2, 7, 8]).unwrap()).unwrap(),
            View::new(k.as_slice(), Layout::contiguous(&[1, 2, 7, 8]).unwrap()).unwrap(),
            AttentionMasks::none(),
            ViewMut::new(o.as_mut_slice(), Layout::contiguous(&[1, 4, 5, 8]).unwrap()).unwrap(),
            None,
            &mut ws,
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::Capacity {
            arg: "workspace",
            needed: need,
            capacity: need - 1
        }
    );
    // The workspace does not grow with the sequence.
    let long = d(1, 4, 2, 1 << 16, 1 << 16, 8, 8);
    assert_eq!(s.attention_workspace_len::<f32>(&long).unwrap(), need);
}
