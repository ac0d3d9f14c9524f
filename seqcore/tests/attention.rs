//! The fused attention kernel against a naive two-pass softmax(QK^T)V written out below in f64
//! (full score rows, explicit masks), and its workspace claim.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::too_many_arguments,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use proptest::prelude::*;
use seqcore::{
    AttentionDims, AttentionMasks, AttentionParams, Backend, Element, Error, Reference, View,
    ViewMut, f16,
};

const R: Reference = Reference;

/// Naive attention on contiguous `q [B,Hq,Lq,D]`, `k [B,Hkv,Lk,D]`, `v [B,Hkv,Lk,Dv]` in f64:
/// every score of a row, masked by the definitions of the docs, then softmax and the weighted sum.
/// Returns `(o, lse)`.
fn naive(
    p: &AttentionParams,
    dims: &AttentionDims,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    key_mask: Option<&[u8]>,
    bias: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>) {
    let AttentionDims {
        batch,
        heads_q: hq,
        heads_kv: hkv,
        len_q: lq,
        len_k: lk,
        head_dim: d,
        value_dim: dv,
    } = *dims;
    let scale = p.scale.unwrap_or(1.0 / (d as f64).sqrt());
    let off = p.query_offset.unwrap_or(lk as i64 - lq as i64);
    let mut o = vec![0.0; batch * hq * lq * dv];
    let mut lse = vec![0.0; batch * hq * lq];
    for b in 0..batch {
        for h in 0..hq {
            let g = h / (hq / hkv);
            for i in 0..lq {
                let pos = i as i64 + off;
                let s: Vec<f64> = (0..lk)
                    .map(|j| {
                        let ji = j as i64;
                        let hidden = (p.causal && ji > pos)
                            || p.window.is_some_and(|w| pos - ji >= w as i64)
                            || key_mask.is_some_and(|m| m[b * lk + j] == 0);
                        if hidden {
                            return f64::NEG_INFINITY;
                        }
                        let mut x = 0.0;
                        for e in 0..d {
                            x += q[((b * hq + h) * lq + i) * d + e]
                                * k[((b * hkv + g) * lk + j) * d + e];
                        }
                        x *= scale;
                        if let Some(c) = p.softcap {
                            x = c * (x / c).tanh();
                        }
                        if let Some(bias) = bias {
                            x += bias[((b * hq + h) * lq + i) * lk + j];
                        }
                        x
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let row = (b * hq + h) * lq + i;
                if m == f64::NEG_INFINITY {
                    lse[row] = f64::NEG_INFINITY;
                    continue;
                }
                let w: Vec<f64> = s.iter().map(|&x| (x - m).exp()).collect();
                let z: f64 = w.iter().sum();
                lse[row] = m + z.ln();
                for e in 0..dv {
                    let mut acc = 0.0;
                    for j in 0..lk {
                        acc += w[j] * v[((b * hkv + g) * lk + j) * dv + e];
                    }
                    o[row * dv + e] = acc / z;
                }
            }
        }
    }
    (o, lse)
}

fn to<T: Element>(x: &[f64]) -> Vec<T> {
    x.iter().map(|&x| T::from_f64(x)).collect()
}

/// Runs the kernel on contiguous data, or on token-major `[B, L, H, D]` storage seen through a
/// transpose when `token_major`.
fn fused<T: Element>(
    p: &AttentionParams,
    dims: &AttentionDims,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    key_mask: Option<&[u8]>,
    bias: Option<&[f64]>,
    token_major: bool,
) -> Result<(Vec<f64>, Vec<f64>), Error> {
    let d = *dims;
    let qs = [d.batch, d.heads_q, d.len_q, d.head_dim];
    let ks = [d.batch, d.heads_kv, d.len_k, d.head_dim];
    let vs = [d.batch, d.heads_kv, d.len_k, d.value_dim];
    let os = [d.batch, d.heads_q, d.len_q, d.value_dim];
    // Token-major storage: permute the data to [B, L, H, D] and view it back through a transpose.
    let store = |x: &[f64], s: [usize; 4]| -> Vec<T> {
        if !token_major {
            return to::<T>(x);
        }
        let mut y = vec![T::from_f64(0.0); x.len()];
        for b in 0..s[0] {
            for h in 0..s[1] {
                for l in 0..s[2] {
                    for e in 0..s[3] {
                        y[((b * s[2] + l) * s[1] + h) * s[3] + e] =
                            T::from_f64(x[((b * s[1] + h) * s[2] + l) * s[3] + e]);
                    }
                }
            }
        }
        y
    };
    fn view<T: Element>(m: &[T], s: [usize; 4], token_major: bool) -> View<'_, Reference, T> {
        if token_major {
            R.view(m, &[s[0], s[2], s[1], s[3]])
                .unwrap()
                .transpose(1, 2)
                .unwrap()
        } else {
            R.view(m, &s).unwrap()
        }
    }
    let (qm, km, vm) = (store(q, qs), store(k, ks), store(v, vs));
    let bm = bias.map(to::<T>);
    let mut om = vec![T::from_f64(f64::NAN); os.iter().product()];
    let mut lm = vec![T::Acc::from_f64(f64::NAN); d.batch * d.heads_q * d.len_q];
    let mut ws = vec![T::Acc::from_f64(f64::NAN); R.attention_workspace_len::<T>(dims)?];
    let masks = AttentionMasks {
        key_mask: key_mask.map(|m| R.view(m, &[d.batch, d.len_k]).unwrap()),
        bias: bm
            .as_deref()
            .map(|b| R.view(b, &[d.batch, d.heads_q, d.len_q, d.len_k]).unwrap()),
    };
    let ov: ViewMut<'_, Reference, T> = if token_major {
        R.view_mut(&mut om, &[os[0], os[2], os[1], os[3]])?
            .transpose(1, 2)?
    } else {
        R.view_mut(&mut om, &os)?
    };
    R.attention(
        p,
        view(&qm, qs, token_major),
        view(&km, ks, token_major),
        view(&vm, vs, token_major),
        masks,
        ov,
        Some(R.view_mut(&mut lm, &[d.batch, d.heads_q, d.len_q])?),
        &mut ws,
    )?;
    let o: Vec<f64> = if token_major {
        let mut o = vec![0.0; om.len()];
        for b in 0..os[0] {
            for h in 0..os[1] {
                for l in 0..os[2] {
                    for e in 0..os[3] {
                        o[((b * os[1] + h) * os[2] + l) * os[3] + e] =
                            om[((b * os[2] + l) * os[1] + h) * os[3] + e].to_f64();
                    }
                }
            }
        }
        o
    } else {
        om.iter().map(|x| x.to_f64()).collect()
    };
    Ok((o, lm.iter().map(|x| x.to_f64()).collect()))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
        return a == b || (a.is_nan() && b.is_nan());
    }
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[derive(Clone, Debug)]
struct Case {
    p: AttentionParams,
    dims: AttentionDims,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    key_mask: Option<Vec<u8>>,
    bias: Option<Vec<f64>>,
    token_major: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..3,
        prop::sample::select(vec![(1usize, 1usize), (2, 2), (4, 2), (4, 1), (3, 3)]),
        0usize..9,
        prop::sample::select(vec![0usize, 1, 5, 63, 64, 65, 130]),
        1usize..6,
        1usize..5,
    )
        .prop_flat_map(|(batch, (hq, hkv), lq, lk, d, dv)| {
            let dims = AttentionDims {
                batch,
                heads_q: hq,
                heads_kv: hkv,
                len_q: lq,
                len_k: lk,
                head_dim: d,
                value_dim: dv,
            };
            let x = |n: usize| prop::collection::vec(-3.0f64..3.0, n);
            (
                Just(dims),
                x(batch * hq * lq * d),
                x(batch * hkv * lk * d),
                x(batch * hkv * lk * dv),
                any::<bool>(),
                prop::option::of(1usize..70),
                prop::option::of(prop::sample::select(vec![0.5f64, 2.0, 30.0])),
                prop::option::of(prop::collection::vec(0u8..3, batch * lk)),
                prop::option::of(x(batch * hq * lq * lk)),
                any::<bool>(),
                prop::option::of(prop::sample::select(vec![0.3f64, -1.0])),
                prop::option::of(-3i64..140),
            )
        })
        .prop_map(
            |(dims, q, k, v, causal, window, softcap, key_mask, bias, token_major, scale, off)| {
                Case {
                    p: AttentionParams {
                        scale,
                        causal,
                        window,
                        softcap,
                        query_offset: off,
                    },
                    dims,
                    q,
                    k,
                    v,
                    key_mask,
                    bias,
                    token_major,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn fused_equals_naive(c in case()) {
        let (want, want_lse) = naive(&c.p, &c.dims, &c.q, &c.k, &c.v, c.key_mask.as_deref(), c.bias.as_deref());
        let (got, got_lse) = fused::<f64>(&c.p, &c.dims, &c.q, &c.k, &c.v, c.key_mask.as_deref(), c.bias.as_deref(), c.token_major).unwrap();
        for (g, w) in got.iter().zip(&want).chain(got_lse.iter().zip(&want_lse)) {
            prop_assert!(close(*g, *w, 1e-12), "got {g} want {w}");
        }
        let (got, got_lse) = fused::<f32>(&c.p, &c.dims, &c.q, &c.k, &c.v, c.key_mask.as_deref(), c.bias.as_deref(), c.token_major).unwrap();
        for (g, w) in got.iter().zip(&want).chain(got_lse.iter().zip(&want_lse)) {
            prop_assert!(close(*g, *w, 1e-4), "f32 got {g} want {w}");
        }
    }
}

#[test]
fn fully_masked_rows_give_zeros_and_minus_inf_lse() {
    let dims = AttentionDims {
        batch: 1,
        heads_q: 1,
        heads_kv: 1,
        len_q: 3,
        len_k: 2,
        head_dim: 2,
        value_dim: 2,
    };
    let x = [0.5, -1.0, 2.0, 0.25, 1.0, 1.0];
    let k = [1.0, 2.0, 3.0, 4.0];
    // Causal with Lq > Lk: row 0 sees no key (bottom-right alignment).
    let (o, lse) = fused::<f32>(
        &AttentionParams::causal(),
        &dims,
        &x,
        &k,
        &k,
        None,
        None,
        false,
    )
    .unwrap();
    assert_eq!(&o[..2], &[0.0, 0.0]);
    assert_eq!(lse[0], f64::NEG_INFINITY);
    // Row 1 sees key 0 only: o = v_0 exactly.
    assert_eq!(&o[2..4], &[1.0, 2.0]);
    // An all-zero key mask hides everything.
    let (o, lse) = fused::<f32>(
        &AttentionParams::default(),
        &dims,
        &x,
        &k,
        &k,
        Some(&[0, 0]),
        None,
        false,
    )
    .unwrap();
    assert!(o.iter().all(|&y| y == 0.0));
    assert!(lse.iter().all(|&y| y == f64::NEG_INFINITY));
}

#[test]
fn f16_logits_beyond_f16_range_accumulate_in_f32() {
    // q . k = 16 * 200 * 200 = 640000 > 65504; scale 1/4 keeps the logits huge but finite in f32.
    let dims = AttentionDims {
        batch: 1,
        heads_q: 1,
        heads_kv: 1,
        len_q: 1,
        len_k: 2,
        head_dim: 16,
        value_dim: 1,
    };
    let q = vec![200.0; 16];
    let mut k = vec![200.0; 16];
    k.extend(vec![199.0; 16]);
    let v = [3.0, -1.0];
    let (o, lse) = fused::<f16>(
        &AttentionParams::default(),
        &dims,
        &q,
        &k,
        &v,
        None,
        None,
        false,
    )
    .unwrap();
    // The first key wins by 16*200/4 = 800 in the logits: o = v_0, lse = its logit.
    assert_eq!(o, vec![3.0]);
    assert_eq!(lse, vec![160000.0]);
}

#[test]
fn nan_in_a_visible_logit_gives_a_nan_row() {
    let dims = AttentionDims {
        batch: 1,
        heads_q: 1,
        heads_kv: 1,
        len_q: 1,
        len_k: 3,
        head_dim: 1,
        value_dim: 1,
    };
    let (o, _) = fused::<f32>(
        &AttentionParams::default(),
        &dims,
        &[1.0],
        &[1.0, f64::NAN, 2.0],
        &[1.0, 2.0, 3.0],
        None,
        None,
        false,
    )
    .unwrap();
    assert!(o[0].is_nan());
    // Hidden by the key mask, the NaN key is never read.
    let (o, _) = fused::<f32>(
        &AttentionParams::default(),
        &dims,
        &[1.0],
        &[0.0, f64::NAN, 0.0],
        &[1.0, 2.0, 3.0],
        Some(&[1, 0, 1]),
        None,
        false,
    )
    .unwrap();
    assert_eq!(o[0], 2.0);
}

#[test]
fn workspace_does_not_grow_with_length() {
    let dims = |l: usize| AttentionDims {
        batch: 1,
        heads_q: 8,
        heads_kv: 8,
        len_q: l,
        len_k: l,
        head_dim: 64,
        value_dim: 64,
    };
    let short = R.attention_workspace_len::<f32>(&dims(1024)).unwrap();
    let long = R.attention_workspace_len::<f32>(&dims(65536)).unwrap();
    assert_eq!(short, long);
    assert!(short <= 64 + 64);
}

#[test]
fn short_workspace_is_an_error() {
    let q = [0.0f32; 4];
    let mut o = [0.0f32; 4];
    let mut ws = [0.0f32; 3];
    let v = R.view(&q, &[1, 1, 2, 2]).unwrap();
    let e = R.attention(
        &AttentionParams::default(),
        v,
        v,
        v,
        AttentionMasks::none(),
        R.view_mut(&mut o, &[1, 1, 2, 2]).unwrap(),
        None,
        &mut ws,
    );
    assert!(matches!(
        e,
        Err(Error::Capacity {
            arg: "workspace",
            ..
        })
    ));
}

/// Keys `[lo, hi)` of a contiguous `[B, H, L, X]` array.
fn keys_of(x: &[f64], s: [usize; 4], lo: usize, hi: usize) -> Vec<f64> {
    let mut y = Vec::new();
    for b in 0..s[0] {
        for h in 0..s[1] {
            for l in lo..hi {
                let r = ((b * s[1] + h) * s[2] + l) * s[3];
                y.extend_from_slice(&x[r..r + s[3]]);
            }
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Attention over keys [0, s) and over [s, Lk), each with the offset that keeps its keys'
    /// positions, merged by `attention_merge`, equals attention over every key.
    #[test]
    fn split_kv_and_merge_equals_whole(c in case(), split in 0.0f64..=1.0) {
        let d = c.dims;
        let s = ((d.len_k as f64) * split) as usize;
        let off = c.p.query_offset.unwrap_or(d.len_k as i64 - d.len_q as i64);
        let (want, want_lse) = naive(&c.p, &d, &c.q, &c.k, &c.v, c.key_mask.as_deref(), c.bias.as_deref());
        let part = |lo: usize, hi: usize| {
            let dims = AttentionDims { len_k: hi - lo, ..d };
            let k = keys_of(&c.k, [d.batch, d.heads_kv, d.len_k, d.head_dim], lo, hi);
            let v = keys_of(&c.v, [d.batch, d.heads_kv, d.len_k, d.value_dim], lo, hi);
            let m = c.key_mask.as_ref().map(|m| {
                (0..d.batch).flat_map(|b| m[b * d.len_k + lo..b * d.len_k + hi].to_vec()).collect::<Vec<u8>>()
            });
            let bias = c.bias.as_ref().map(|x| x.chunks(d.len_k.max(1)).flat_map(|r| r[lo..hi].to_vec()).collect::<Vec<f64>>());
            let p = AttentionParams { query_offset: Some(off - lo as i64), ..c.p };
            fused::<f64>(&p, &dims, &c.q, &k, &v, m.as_deref(), bias.as_deref(), false).unwrap()
        };
        let (oa, la) = part(0, s);
        let (ob, lb) = part(s, d.len_k);
        let os = [d.batch, d.heads_q, d.len_q, d.value_dim];
        let ls = [d.batch, d.heads_q, d.len_q];
        let mut o = vec![f64::NAN; want.len()];
        let mut lse = vec![f64::NAN; want_lse.len()];
        // Merge in both orders: commutative.
        for (x, y) in [((&oa, &la), (&ob, &lb)), ((&ob, &lb), (&oa, &la))] {
            R.attention_merge(
                R.view(x.0, &os).unwrap(), R.view(x.1, &ls).unwrap(),
                R.view(y.0, &os).unwrap(), R.view(y.1, &ls).unwrap(),
                R.view_mut(&mut o, &os).unwrap(), Some(R.view_mut(&mut lse, &ls).unwrap()),
            ).unwrap();
            for (g, w) in o.iter().zip(&want).chain(lse.iter().zip(&want_lse)) {
                prop_assert!(close(*g, *w, 1e-12), "got {g} want {w}");
            }
        }
    }
}
