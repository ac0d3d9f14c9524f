//! seq-attention against a naive f64 attention written out here (full score rows, explicit
//! masks), and its own identities: decode through every cache == the full forward pass, split KV
//! + merge == whole, the int8 cache's documented error bound, bad input is an `Err`.

#![allow(
    clippy::cast_lossless,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::too_many_arguments,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::type_complexity
)]

use proptest::prelude::*;
use seq_attention::{
    FixedKvCache, GrowableKvCache, KvCache, KvCacheDims, KvWorkspace, MultiHeadAttention,
    PartialAttention, QuantizedKvCache, RingKvCache, merge,
};
use seqcore::{AttentionMasks, AttentionParams, Backend, Element, Error, Reference, bf16, f16};

const R: Reference = Reference;

/// Naive attention of one sequence, token-major `q [Lq, Hq, D]`, `k [Lk, Hkv, D]`,
/// `v [Lk, Hkv, Dv]`, query `i` at key position `i + off`. Returns `o [Lq, Hq, Dv]`.
fn naive(
    p: &AttentionParams,
    (hq, hkv, d, dv): (usize, usize, usize, usize),
    q: &[f64],
    k: &[f64],
    v: &[f64],
    off: i64,
) -> Vec<f64> {
    let lq = q.len() / (hq * d).max(1);
    let lk = k.len().checked_div(hkv * d).unwrap_or(0);
    let scale = p.scale.unwrap_or(1.0 / (d as f64).sqrt());
    let mut o = vec![0.0; lq * hq * dv];
    for h in 0..hq {
        let g = h / (hq / hkv);
        for i in 0..lq {
            let pos = i as i64 + off;
            let s: Vec<f64> = (0..lk)
                .map(|j| {
                    let jj = j as i64;
                    if (p.causal && jj > pos) || p.window.is_some_and(|w| pos - jj >= w as i64) {
                        return f64::NEG_INFINITY;
                    }
                    let mut x = 0.0;
                    for e in 0..d {
                        x += q[(i * hq + h) * d + e] * k[(j * hkv + g) * d + e];
                    }
                    x *= scale;
                    if let Some(c) = p.softcap {
                        x = c * (x / c).tanh();
                    }
                    x
                })
                .collect();
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if m == f64::NEG_INFINITY {
                continue;
            }
            let w: Vec<f64> = s.iter().map(|&x| (x - m).exp()).collect();
            let z: f64 = w.iter().sum();
            for e in 0..dv {
                let mut a = 0.0;
                for j in 0..lk {
                    a += w[j] * v[(j * hkv + g) * dv + e];
                }
                o[(i * hq + h) * dv + e] = a / z;
            }
        }
    }
    o
}

fn to<T: Element>(x: &[f64]) -> Vec<T> {
    x.iter().map(|&x| T::from_f64(x)).collect()
}

fn back<T: Element>(x: &[T]) -> Vec<f64> {
    x.iter().map(|x| x.to_f64()).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "[{}] got {} want {} (tol {})",
            i,
            g,
            w,
            tol
        );
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct Seq {
    heads: (usize, usize, usize, usize),
    p: AttentionParams,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    len: usize,
    /// Token counts of the steps: a prefill, then decode steps.
    steps: Vec<usize>,
}

fn seq() -> impl Strategy<Value = Seq> {
    (
        prop::sample::select(vec![(1usize, 1usize), (2, 2), (4, 2), (4, 1)]),
        1usize..5,
        1usize..4,
        0usize..80,
        any::<bool>(),
        prop::option::of(1usize..12),
        prop::option::of(prop::sample::select(vec![1.0f64, 20.0])),
        0usize..6,
    )
        .prop_flat_map(
            |((hq, hkv), d, dv, prefill, causal, window, softcap, decode)| {
                let len = prefill + decode;
                let x = |n: usize| prop::collection::vec(-2.0f64..2.0, n);
                (
                    Just((hq, hkv, d, dv)),
                    Just(AttentionParams {
                        causal,
                        window,
                        softcap,
                        ..AttentionParams::default()
                    }),
                    x(len * hq * d),
                    x(len * hkv * d),
                    x(len * hkv * dv),
                    Just(len),
                    Just(
                        core::iter::once(prefill)
                            .chain(core::iter::repeat_n(1, decode))
                            .collect::<Vec<_>>(),
                    ),
                )
            },
        )
        .prop_map(|(heads, p, q, k, v, len, steps)| Seq {
            heads,
            p,
            q,
            k,
            v,
            len,
            steps,
        })
}

/// Runs a sequence through `cache` step by step; returns every step's outputs concatenated,
/// token-major `[len, Hq, Dv]`.
fn decode<T: Element, C: KvCache<Reference, T>>(
    s: &Seq,
    cache: &mut C,
    ws_len: usize,
) -> Result<Vec<f64>, Error> {
    let (hq, hkv, d, dv) = s.heads;
    let (q, k, v) = (to::<T>(&s.q), to::<T>(&s.k), to::<T>(&s.v));
    let mut out = Vec::new();
    let mut t = 0;
    for &n in &s.steps {
        cache.append(
            &R,
            R.view(&k[t * hkv * d..(t + n) * hkv * d], &[n, hkv, d])?,
            R.view(&v[t * hkv * dv..(t + n) * hkv * dv], &[n, hkv, dv])?,
        )?;
        let need = cache.workspace_len(&R, hq, n)?;
        let mut kernel = vec![T::Acc::from_f64(f64::NAN); need.kernel.max(ws_len)];
        let mut state = vec![T::Acc::from_f64(f64::NAN); need.state];
        let mut partial = vec![T::from_f64(f64::NAN); need.partial];
        let mut o = vec![T::from_f64(f64::NAN); n * hq * dv];
        cache.attend(
            &R,
            &s.p,
            R.view(&q[t * hq * d..(t + n) * hq * d], &[n, hq, d])?,
            R.view_mut(&mut o, &[n, hq, dv])?,
            KvWorkspace {
                kernel: &mut kernel,
                state: &mut state,
                partial: &mut partial,
            },
        )?;
        out.extend(back(&o));
        t += n;
    }
    Ok(out)
}

fn full(s: &Seq) -> Vec<f64> {
    naive(&s.p, s.heads, &s.q, &s.k, &s.v, 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// MultiHeadAttention::forward (token-major, batch of 2 identical rows) == naive.
    #[test]
    fn forward_equals_naive(s in seq()) {
        let (hq, hkv, d, dv) = s.heads;
        let mut mha = MultiHeadAttention::new(hq, hkv, d).unwrap().with_value_dim(dv).unwrap();
        if s.p.causal { mha = mha.causal(); }
        if let Some(w) = s.p.window { mha = mha.with_window(w).unwrap(); }
        if let Some(c) = s.p.softcap { mha = mha.with_softcap(c).unwrap(); }
        let twice = |x: &[f64]| -> Vec<f64> { x.iter().chain(x).copied().collect() };
        let (q, k, v) = (twice(&s.q), twice(&s.k), twice(&s.v));
        let l = s.len;
        let mut o = vec![f64::NAN; 2 * l * hq * dv];
        let mut ws = vec![0.0; mha.workspace_len::<_, f64>(&R, 2, l, l).unwrap()];
        mha.forward(&R, R.view(&q, &[2, l, hq, d]).unwrap(), R.view(&k, &[2, l, hkv, d]).unwrap(),
            R.view(&v, &[2, l, hkv, dv]).unwrap(), AttentionMasks::none(),
            R.view_mut(&mut o, &[2, l, hq, dv]).unwrap(), &mut ws).unwrap();
        let want = full(&s);
        assert_close(&o[..want.len()], &want, 1e-12)?;
        assert_close(&o[want.len()..], &want, 1e-12)?;
    }

    /// Prefill + decode steps through the fixed, growable and (large enough) ring caches equal
    /// the full forward pass.
    #[test]
    fn cache_decode_equals_full_forward(s in seq()) {
        let (_, hkv, d, dv) = s.heads;
        // Decoding is causal: a token never sees the ones after it.
        let s = Seq { p: AttentionParams { causal: true, ..s.p }, ..s };
        let want = full(&s);
        let cap = s.len.max(1);
        let dims = KvCacheDims::new(hkv, d, dv, cap).unwrap();
        let (mut kb, mut vb) = (vec![0.0f64; hkv * cap * d], vec![0.0f64; hkv * cap * dv]);
        let got = decode::<f64, _>(&s, &mut FixedKvCache::<Reference, f64>::new(dims, &mut kb[..], &mut vb[..]).unwrap(), 0).unwrap();
        assert_close(&got, &want, 1e-12)?;
        let small = KvCacheDims::new(hkv, d, dv, 1).unwrap();
        let got = decode::<f64, _>(&s, &mut GrowableKvCache::new(&R, small).unwrap(), 0).unwrap();
        assert_close(&got, &want, 1e-12)?;
        let got = decode::<f32, _>(&s, &mut GrowableKvCache::new(&R, small).unwrap(), 0).unwrap();
        assert_close(&got, &want, 1e-4)?;
    }

    /// A ring of capacity `w + n - 1` (n = the largest step) with window `w` equals the full
    /// windowed forward pass, through its wrap-around; a ring of capacity w serves decode steps.
    #[test]
    fn ring_cache_equals_windowed_forward(s in seq(), w in 1usize..10, extra in 0usize..4) {
        let (_, hkv, d, dv) = s.heads;
        let s = Seq { p: AttentionParams { window: Some(w), causal: true, ..s.p }, ..s };
        let want = full(&s);
        let n = s.steps.iter().copied().max().unwrap_or(1).max(1);
        let cap = w + n - 1 + extra;
        let dims = KvCacheDims::new(hkv, d, dv, cap).unwrap();
        let (mut kb, mut vb) = (vec![0.0f64; hkv * cap * d], vec![0.0f64; hkv * cap * dv]);
        let mut ring = RingKvCache::<Reference, f64>::new(dims, w, &mut kb[..], &mut vb[..]).unwrap();
        let got = decode::<f64, _>(&s, &mut ring, 0).unwrap();
        assert_close(&got, &want, 1e-12)?;
        // Decode-only sequence through a ring of exactly the window.
        let s1 = Seq { steps: vec![1; s.len], ..s.clone() };
        let dims = KvCacheDims::new(hkv, d, dv, w).unwrap();
        let (mut kb, mut vb) = (vec![0.0f64; hkv * w * d], vec![0.0f64; hkv * w * dv]);
        let mut ring = RingKvCache::<Reference, f64>::new(dims, w, &mut kb[..], &mut vb[..]).unwrap();
        let got = decode::<f64, _>(&s1, &mut ring, 0).unwrap();
        assert_close(&got, &want, 1e-12)?;
    }

    /// The int8 cache: every dequantised element within `s/2 + u_T |x^|` of the original, and
    /// decode within the documented attention bound of the full forward pass.
    #[test]
    fn int8_cache_within_documented_bound(s in seq()) {
        let (hq, hkv, d, dv) = s.heads;
        let s = Seq { p: AttentionParams { causal: true, ..s.p }, ..s };
        let cap = s.len.max(1);
        let dims = KvCacheDims::new(hkv, d, dv, cap).unwrap();
        let (mut kc, mut vc) = (vec![0i8; hkv * cap * d], vec![0i8; hkv * cap * dv]);
        let (mut ks, mut vs) = (vec![0.0f32; hkv * cap], vec![0.0f32; hkv * cap]);
        let mut cache = QuantizedKvCache::new(dims, &mut kc, &mut ks, &mut vc, &mut vs).unwrap();
        let got = decode::<f32, _>(&s, &mut cache, 0).unwrap();
        let u = f32::EPSILON as f64 / 2.0;
        // Per-element bound, and the largest key/value errors per KV head.
        let (mut ek, mut ev) = (vec![0.0f64; hkv], vec![0.0f64; hkv]);
        for t in 0..s.len {
            for g in 0..hkv {
                for (vals, dim, x, e_max) in [(false, d, &s.k, &mut ek), (true, dv, &s.v, &mut ev)] {
                    let sc = f64::from(cache.scale(vals, g, t).unwrap());
                    for e in 0..dim {
                        let deq = cache.dequantized(vals, g, t, e).unwrap();
                        let orig = x[(t * hkv + g) * dim + e];
                        let err = (orig - deq).abs();
                        prop_assert!(err <= sc / 2.0 + u * deq.abs() + 1e-300, "{err} > {sc}/2");
                        let err_t = (orig - f64::from(deq as f32)).abs();
                        e_max[g] = e_max[g].max(err_t);
                    }
                }
            }
        }
        let want = full(&s);
        let scale = 1.0 / (d as f64).sqrt();
        for i in 0..s.len {
            for h in 0..hq {
                let g = h / (hq / hkv);
                let q1: f64 = (0..d).map(|e| s.q[(i * hq + h) * d + e].abs()).sum();
                let es = scale * q1 * ek[g];
                for e in 0..dv {
                    let vmax = (0..s.len).map(|j| s.v[(j * hkv + g) * dv + e].abs()).fold(0.0, f64::max);
                    let bound = ev[g] + ((2.0 * es).exp() - 1.0) * vmax + 1e-5 * vmax.max(1.0);
                    let idx = (i * hq + h) * dv + e;
                    prop_assert!((got[idx] - want[idx]).abs() <= bound,
                        "o[{idx}] = {} vs {}: bound {bound}", got[idx], want[idx]);
                }
            }
        }
    }

    /// Attention over P chunks of keys, merged left to right, right to left and as a tree,
    /// equals attention over all keys.
    #[test]
    fn split_kv_merge_equals_whole(s in seq(), cuts in prop::collection::vec(0.0f64..1.0, 0..4)) {
        let (hq, hkv, d, dv) = s.heads;
        let l = s.len;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| (c * l as f64) as usize).collect();
        bounds.push(0);
        bounds.push(l);
        bounds.sort_unstable();
        let mut mha = MultiHeadAttention::new(hq, hkv, d).unwrap().with_value_dim(dv).unwrap();
        if s.p.causal { mha = mha.causal(); }
        if let Some(w) = s.p.window { mha = mha.with_window(w).unwrap(); }
        if let Some(c) = s.p.softcap { mha = mha.with_softcap(c).unwrap(); }
        let mut ws = vec![0.0; mha.workspace_len::<_, f64>(&R, 1, l, l).unwrap()];
        // Partials (o [1, l, hq, dv], lse [1, hq, l]) per chunk.
        let parts: Vec<(Vec<f64>, Vec<f64>)> = bounds.windows(2).map(|c| {
            let (lo, hi) = (c[0], c[1]);
            let mut o = vec![f64::NAN; l * hq * dv];
            let mut lse = vec![f64::NAN; hq * l];
            mha.with_query_offset(-(lo as i64)).forward_partial(&R,
                R.view(&s.q, &[1, l, hq, d]).unwrap(),
                R.view(&s.k[lo * hkv * d..hi * hkv * d], &[1, hi - lo, hkv, d]).unwrap(),
                R.view(&s.v[lo * hkv * dv..hi * hkv * dv], &[1, hi - lo, hkv, dv]).unwrap(),
                AttentionMasks::none(),
                R.view_mut(&mut o, &[1, l, hq, dv]).unwrap(),
                R.view_mut(&mut lse, &[1, hq, l]).unwrap(), &mut ws).unwrap();
            (o, lse)
        }).collect();
        // o of the partials is token-major [1, l, hq, dv]; view it head-major to pair with lse.
        let m2 = |a: &(Vec<f64>, Vec<f64>), b: &(Vec<f64>, Vec<f64>)| -> (Vec<f64>, Vec<f64>) {
            fn ov(x: &[f64], s: [usize; 4]) -> seqcore::View<'_, Reference, f64> { R.view(x, &s).unwrap().transpose(1, 2).unwrap() }
            let mut o = vec![f64::NAN; l * hq * dv];
            let mut lse = vec![f64::NAN; hq * l];
            merge(&R,
                PartialAttention { o: ov(&a.0, [1, l, hq, dv]), lse: R.view(&a.1, &[1, hq, l]).unwrap() },
                PartialAttention { o: ov(&b.0, [1, l, hq, dv]), lse: R.view(&b.1, &[1, hq, l]).unwrap() },
                R.view_mut(&mut o, &[1, l, hq, dv]).unwrap().transpose(1, 2).unwrap(),
                Some(R.view_mut(&mut lse, &[1, hq, l]).unwrap())).unwrap();
            (o, lse)
        };
        let want = full(&s);
        let left = parts.iter().skip(1).fold(parts[0].clone(), |acc, p| m2(&acc, p));
        assert_close(&left.0, &want, 1e-12)?;
        let right = parts.iter().rev().skip(1).fold(parts[parts.len() - 1].clone(), |acc, p| m2(p, &acc));
        assert_close(&right.0, &want, 1e-12)?;
        let mut level = parts.clone();
        while level.len() > 1 {
            level = level.chunks(2).map(|c| if c.len() == 2 { m2(&c[0], &c[1]) } else { c[0].clone() }).collect();
        }
        assert_close(&level[0].0, &want, 1e-12)?;
        assert_close(&level[0].1, &left.1, 1e-12)?;
    }

    /// Arbitrary configurations and shapes: an `Err` or a result, never a panic.
    #[test]
    fn bad_input_never_panics(
        hq in 0usize..5, hkv in 0usize..5, d in 0usize..4, dv in 0usize..4,
        lq in 0usize..4, lk in 0usize..4, qd in 0usize..4, kh in 0usize..5, vd in 0usize..4,
        window in prop::option::of(0usize..3), scale in prop::option::of(prop::sample::select(vec![f64::NAN, f64::INFINITY, 1.0, 0.0])),
        softcap in prop::option::of(prop::sample::select(vec![f64::NAN, 0.0, -1.0, 5.0])),
        cap in 0usize..4, n in 0usize..4,
    ) {
        let mha = MultiHeadAttention::new(hq, hkv, d).and_then(|m| m.with_value_dim(dv.max(1)));
        let mha = mha.and_then(|m| match window { Some(w) => m.with_window(w), None => Ok(m) });
        let mha = mha.and_then(|m| match scale { Some(s) => m.with_scale(s), None => Ok(m) });
        let mha = mha.and_then(|m| match softcap { Some(c) => m.with_softcap(c), None => Ok(m) });
        let buf = vec![0.5f32; 512];
        let mut out = vec![0.0f32; 512];
        let mut ws = vec![0.0f32; 256];
        if let Ok(m) = mha {
            let r = m.forward(&R, R.view(&buf, &[1, lq, hq, qd]).unwrap(),
                R.view(&buf, &[1, lk, kh, qd]).unwrap(), R.view(&buf, &[1, lk, kh, vd]).unwrap(),
                AttentionMasks::none(), R.view_mut(&mut out, &[1, lq, hq, vd]).unwrap(), &mut ws);
            let consistent = qd == d && kh == hkv && vd == dv.max(1);
            prop_assert_eq!(r.is_ok(), consistent, "{:?}", r);
        }
        // Raw kernel with any options.
        let p = AttentionParams { scale, window, softcap, causal: true, query_offset: None };
        let _ = R.attention(&p, R.view(&buf, &[1, hq, lq, qd]).unwrap(), R.view(&buf, &[1, kh, lk, d]).unwrap(),
            R.view(&buf, &[1, kh, lk, vd]).unwrap(), AttentionMasks::none(),
            R.view_mut(&mut out, &[1, hq, lq, vd]).unwrap(), None, &mut ws);
        // Caches past capacity and with mismatched shapes.
        if let Ok(dims) = KvCacheDims::new(hkv, d, dv, cap) {
            let (mut kb, mut vb) = (vec![0.0f32; 64], vec![0.0f32; 64]);
            if let Ok(mut c) = FixedKvCache::<Reference, f32>::new(dims, &mut kb, &mut vb) {
                let mut r = Ok(());
                for _ in 0..4 {
                    r = r.and(c.append(&R, R.view(&buf, &[n, kh, qd]).unwrap(), R.view(&buf, &[n, kh, vd]).unwrap()));
                }
                if kh == hkv && qd == d && vd == dv && n > 0 {
                    let is_capacity_error = matches!(r, Err(Error::Capacity { arg: "cache", .. }));
                    prop_assert_eq!(4 * n > cap, is_capacity_error);
                }
            }
        }
    }
}

#[test]
fn bad_configurations_name_their_argument() {
    let arg = |e: Result<MultiHeadAttention, Error>| match e {
        Err(Error::Param { arg, .. }) => arg,
        other => panic!("{other:?}"),
    };
    assert_eq!(arg(MultiHeadAttention::new(0, 1, 4)), "heads_q");
    assert_eq!(arg(MultiHeadAttention::new(4, 0, 4)), "heads_kv");
    assert_eq!(arg(MultiHeadAttention::new(4, 3, 4)), "heads_kv");
    assert_eq!(arg(MultiHeadAttention::new(4, 2, 0)), "head_dim");
    let m = MultiHeadAttention::new(4, 2, 4).unwrap();
    assert_eq!(arg(m.with_scale(f64::NAN)), "scale");
    assert_eq!(arg(m.with_window(0)), "window");
    assert_eq!(arg(m.with_softcap(-1.0)), "softcap");
    assert_eq!(arg(m.with_value_dim(0)), "value_dim");
    // Mismatched D between q and k.
    let b = [0.0f32; 64];
    let mut o = [0.0f32; 64];
    let mut ws = [0.0f32; 128];
    let e = m.forward(
        &R,
        R.view(&b, &[1, 2, 4, 4]).unwrap(),
        R.view(&b, &[1, 2, 2, 3]).unwrap(),
        R.view(&b, &[1, 2, 2, 4]).unwrap(),
        AttentionMasks::none(),
        R.view_mut(&mut o, &[1, 2, 4, 4]).unwrap(),
        &mut ws,
    );
    assert!(
        matches!(
            e,
            Err(Error::Shape {
                arg: "k",
                axis: 3,
                ..
            })
        ),
        "{e:?}"
    );
    // Ring windows.
    let dims = KvCacheDims::new(1, 1, 1, 4).unwrap();
    let (mut kb, mut vb) = ([0.0f32; 4], [0.0f32; 4]);
    assert!(matches!(
        RingKvCache::<Reference, f32>::new(dims, 5, &mut kb, &mut vb),
        Err(Error::Param { arg: "window", .. })
    ));
    assert!(matches!(
        KvCacheDims::new(1, 1, 1, 0),
        Err(Error::Param {
            arg: "capacity",
            ..
        })
    ));
}

#[test]
fn ring_refuses_queries_that_need_evicted_keys() {
    let dims = KvCacheDims::new(1, 1, 1, 3).unwrap();
    let (mut kb, mut vb) = ([0.0f32; 3], [0.0f32; 3]);
    let mut ring = RingKvCache::<Reference, f32>::new(dims, 3, &mut kb, &mut vb).unwrap();
    let x = [1.0f32; 5];
    ring.append(
        &R,
        R.view(&x, &[5, 1, 1]).unwrap(),
        R.view(&x, &[5, 1, 1]).unwrap(),
    )
    .unwrap();
    let mut o = [0.0f32; 2];
    let (mut k, mut s, mut p) = ([0.0f32; 128], [0.0f32; 8], [0.0f32; 8]);
    let e = ring.attend(
        &R,
        &AttentionParams::causal(),
        R.view(&x[..2], &[2, 1, 1]).unwrap(),
        R.view_mut(&mut o, &[2, 1, 1]).unwrap(),
        KvWorkspace {
            kernel: &mut k,
            state: &mut s,
            partial: &mut p,
        },
    );
    assert!(matches!(e, Err(Error::Capacity { arg: "q", .. })), "{e:?}");
}

#[test]
fn int8_cache_refuses_non_finite_values() {
    let dims = KvCacheDims::new(1, 2, 2, 2).unwrap();
    let (mut kc, mut vc, mut ks, mut vs) = ([0i8; 4], [0i8; 4], [0.0f32; 2], [0.0f32; 2]);
    let mut c = QuantizedKvCache::new(dims, &mut kc, &mut ks, &mut vc, &mut vs).unwrap();
    let good = [1.0f32, 2.0];
    let bad = [f32::NAN, 2.0];
    let e = KvCache::<Reference, f32>::append(
        &mut c,
        &R,
        R.view(&good, &[1, 1, 2]).unwrap(),
        R.view(&bad, &[1, 1, 2]).unwrap(),
    );
    assert!(matches!(e, Err(Error::Param { arg: "v", .. })), "{e:?}");
    assert_eq!(KvCache::<Reference, f32>::len(&c), 0);
}

fn f16r(x: f64) -> f64 {
    f16::from_f64(x).to_f64()
}

fn bf16r(x: f64) -> f64 {
    bf16::from_f64(x).to_f64()
}

#[test]
fn f16_and_bf16_caches_track_the_f64_forward() {
    let s = Seq {
        heads: (2, 1, 8, 4),
        p: AttentionParams::causal(),
        q: (0..40 * 2 * 8)
            .map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0)
            .collect(),
        k: (0..40 * 8)
            .map(|i| ((i * 53 % 97) as f64 / 48.0) - 1.0)
            .collect(),
        v: (0..40 * 4)
            .map(|i| ((i * 29 % 89) as f64 / 44.0) - 1.0)
            .collect(),
        len: 40,
        steps: core::iter::once(30).chain([1; 10]).collect(),
    };
    // Round the inputs to the storage type first: the reference sees what the cache sees.
    let rounders: [(f64, fn(f64) -> f64); 2] = [(2e-3, f16r), (1.6e-2, bf16r)];
    for (tol, round) in rounders {
        let r = |x: &[f64]| x.iter().map(|&x| round(x)).collect::<Vec<_>>();
        let sr = Seq {
            q: r(&s.q),
            k: r(&s.k),
            v: r(&s.v),
            ..s.clone()
        };
        let want = full(&sr);
        let dims = KvCacheDims::new(1, 8, 4, 40).unwrap();
        let got = if tol < 1e-2 {
            decode::<f16, _>(&sr, &mut GrowableKvCache::new(&R, dims).unwrap(), 0).unwrap()
        } else {
            decode::<bf16, _>(&sr, &mut GrowableKvCache::new(&R, dims).unwrap(), 0).unwrap()
        };
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= tol * w.abs().max(1.0), "{g} vs {w}");
        }
    }
}
