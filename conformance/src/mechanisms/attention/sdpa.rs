//! The `sdpa` row: the fused [`seqcore::Backend::attention`] kernel in `T` on the backend under
//! test, against a naive `softmax(scale Q K^T + mask) V` composed from the reference backend's
//! `gemm`, `softmax` and `reduce` at f64 (the `Lq x Lk` scores materialised, masks written out
//! from their definitions), and the `sdpa` golden-vector mechanism.
//!
//! ## Bound
//!
//! Per output element `o[b,h,i,e]`, with `ua` the unit round-off of the accumulation type, `u`
//! that of `T`, `n` the visible keys of the row, `p_j` the reference weights and
//! `E_s = max_j (D + 4) ua (|scale| sum_d |q_d k_jd| + |s_j| + |bias_j|)` the largest logit error
//! (a dot product of `D` terms, the soft cap and the bias, each a few roundings):
//!
//! `|got - ref| <= floor + ((exp(2 E_s) - 1) + (3n + 16) ua) sum_j p_j |v_je| + 2u |ref|`
//!
//! The first term is the softmax's conditioning (each weight moves by a factor within
//! `exp(+-2 E_s)`), the second the online sums (`l`, `acc`, their rescaling per tile) and the
//! division, the last the store. The log-sum-exp gets `E_s + (n + 8) ua + 4 ua |lse|`. A row
//! with no visible key must be zeros and `lse = -inf` exactly.

use proptest::prelude::*;
use seqcore::{
    Allocate, AttentionDims, AttentionMasks, AttentionParams, Backend, Element, Layout, Reduce,
    Reference, SoftmaxKind, View,
};

use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, Tensor, round, widen};
use crate::properties::{Bench, Work};
use crate::strategies::{self, Specials, Storage};
use crate::vectors::Case as VectorCase;
use crate::{Failure, tolerance};

/// One attention call.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Extents.
    pub dims: AttentionDims,
    /// Options.
    pub params: AttentionParams,
    /// Queries `[B, Hq, Lq, D]` (any storage).
    pub q: Tensor,
    /// Keys `[B, Hkv, Lk, D]`.
    pub k: Tensor,
    /// Values `[B, Hkv, Lk, Dv]`.
    pub v: Tensor,
    /// Key padding `[B, Lk]`, row-major.
    pub key_mask: Option<Vec<u8>>,
    /// Additive bias `[B, Hq, Lq, Lk]`.
    pub bias: Option<Tensor>,
    /// How `o` is stored.
    pub o: Storage,
    /// Ask for the log-sum-exp too.
    pub lse: bool,
}

/// The reference result of a case, from the inputs rounded to `T`: `o`, `lse` and the per-row
/// quantities of the bound (`E_s`, visible keys) and per-element `sum_j p_j |v_je|`.
pub(crate) struct Expected {
    pub(crate) o: Vec<f64>,
    pub(crate) lse: Vec<f64>,
    pub(crate) e_s: Vec<f64>,
    pub(crate) visible: Vec<usize>,
    pub(crate) weighted_abs_v: Vec<f64>,
}

/// `x[i]`, NaN past the end (never reached: [`reference`] checks every length first, and a NaN
/// would fail the comparison rather than pass it).
fn at(x: &[f64], i: usize) -> f64 {
    x.get(i).copied().unwrap_or(f64::NAN)
}

/// `x[start .. start + len]`.
fn part<'x>(x: &'x [f64], start: usize, len: usize, what: &str) -> Result<&'x [f64], Failure> {
    x.get(start..start + len)
        .ok_or_else(|| Failure::Setup(format!("`{what}` holds {} values, too few", x.len())))
}

fn setup<E: core::fmt::Display>(e: E) -> Failure {
    Failure::Setup(e.to_string())
}

/// Is key `j` hidden from query row `i` by the causal, window or key-padding masks? Written
/// from the definitions of [`AttentionParams`], not with the kernel's range arithmetic.
fn hidden(
    p: &AttentionParams,
    d: &AttentionDims,
    mask: Option<&[u8]>,
    b: usize,
    i: usize,
    j: usize,
) -> bool {
    let off = p.query_offset.unwrap_or(d.len_k as i64 - d.len_q as i64);
    let (pos, jj) = (i as i128 + i128::from(off), j as i128);
    (p.causal && jj > pos)
        || p.window.is_some_and(|w| pos - jj >= w as i128)
        || mask.is_some_and(|m| m.get(b * d.len_k + j).is_some_and(|&x| x == 0))
}

/// The naive reference at f64 on [`Reference`]: per batch row and head, `S = scale Q K^T`
/// (`gemm`), the soft cap, the additive mask (bias, and `-inf` where hidden), `P = softmax(S +
/// M)`, `O = P V` (`gemm`), `lse = logsumexp(S + M)` (`reduce`). `q`, `k`, `v`, `bias` are the
/// logical values (row-major `[B, H, L, X]`), already rounded to the case's type.
#[allow(clippy::too_many_arguments)]
pub(crate) fn reference(
    p: &AttentionParams,
    d: &AttentionDims,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: Option<&[u8]>,
    bias: Option<&[f64]>,
    ua: f64,
) -> Result<Expected, Failure> {
    let r = Reference;
    let (lq, lk, dd, dv) = (d.len_q, d.len_k, d.head_dim, d.value_dim);
    let scale = p.scale.unwrap_or(1.0 / (dd as f64).sqrt());
    let rows = d.batch * d.heads_q * lq;
    let mut ex = Expected {
        o: vec![0.0; rows * dv],
        lse: vec![f64::NEG_INFINITY; rows],
        e_s: vec![0.0; rows],
        visible: vec![0; rows],
        weighted_abs_v: vec![0.0; rows * dv],
    };
    let group = d.heads_q / d.heads_kv.max(1);
    for b in 0..d.batch {
        for h in 0..d.heads_q {
            let g = h / group.max(1);
            let qs = part(q, (b * d.heads_q + h) * lq * dd, lq * dd, "q")?;
            let ks = part(k, (b * d.heads_kv + g) * lk * dd, lk * dd, "k")?;
            let vs = part(v, (b * d.heads_kv + g) * lk * dv, lk * dv, "v")?;
            let mut s = vec![0.0f64; lq * lk];
            if lq * lk > 0 {
                r.gemm(
                    scale,
                    r.view(qs, &[lq, dd]).map_err(setup)?,
                    r.view(ks, &[lk, dd])
                        .map_err(setup)?
                        .transpose(0, 1)
                        .map_err(setup)?,
                    0.0,
                    r.view_mut(&mut s, &[lq, lk]).map_err(setup)?,
                )
                .map_err(setup)?;
            }
            if let Some(c) = p.softcap {
                for x in &mut s {
                    *x = c * (*x / c).tanh();
                }
            }
            let mut m = vec![0.0f64; lq * lk];
            for i in 0..lq {
                for j in 0..lk {
                    let bias_ij =
                        bias.map_or(0.0, |bb| at(bb, ((b * d.heads_q + h) * lq + i) * lk + j));
                    if let Some(slot) = m.get_mut(i * lk + j) {
                        *slot = if hidden(p, d, mask, b, i, j) {
                            f64::NEG_INFINITY
                        } else {
                            bias_ij
                        };
                    }
                }
            }
            let mut prob = vec![0.0f64; lq * lk];
            let mut z = vec![0.0f64; lq * lk];
            let mut lse = vec![0.0f64; lq];
            let mut o = vec![0.0f64; lq * dv];
            if lq * lk > 0 {
                r.softmax(
                    SoftmaxKind::Softmax,
                    r.view(&s, &[lq, lk]).map_err(setup)?,
                    Some(r.view(&m, &[lq, lk]).map_err(setup)?),
                    r.view_mut(&mut prob, &[lq, lk]).map_err(setup)?,
                )
                .map_err(setup)?;
                r.binary(
                    seqcore::Binary::Add,
                    r.view(&s, &[lq, lk]).map_err(setup)?,
                    r.view(&m, &[lq, lk]).map_err(setup)?,
                    r.view_mut(&mut z, &[lq, lk]).map_err(setup)?,
                )
                .map_err(setup)?;
            }
            if lq > 0 {
                r.reduce(
                    Reduce::LogSumExp,
                    r.view(&z, &[lq, lk]).map_err(setup)?,
                    r.view_mut(&mut lse, &[lq]).map_err(setup)?,
                )
                .map_err(setup)?;
            }
            if lq * dv > 0 {
                r.gemm(
                    1.0,
                    r.view(&prob, &[lq, lk]).map_err(setup)?,
                    r.view(vs, &[lk, dv]).map_err(setup)?,
                    0.0,
                    r.view_mut(&mut o, &[lq, dv]).map_err(setup)?,
                )
                .map_err(setup)?;
            }
            for i in 0..lq {
                let row = (b * d.heads_q + h) * lq + i;
                let mut e_s = 0.0f64;
                let mut n = 0;
                for j in 0..lk {
                    let mij = at(&m, i * lk + j);
                    if mij == f64::NEG_INFINITY {
                        continue;
                    }
                    n += 1;
                    let qk: f64 = (0..dd)
                        .map(|e| (at(qs, i * dd + e) * at(ks, j * dd + e)).abs())
                        .sum();
                    let t = (dd as f64 + 4.0)
                        * ua
                        * (scale.abs() * qk + at(&s, i * lk + j).abs() + mij.abs());
                    e_s = e_s.max(t);
                    for e in 0..dv {
                        if let Some(w) = ex.weighted_abs_v.get_mut(row * dv + e) {
                            *w += at(&prob, i * lk + j) * at(vs, j * dv + e).abs();
                        }
                    }
                }
                let row_lse = if n == 0 {
                    f64::NEG_INFINITY
                } else {
                    at(&lse, i)
                };
                for (slot, x) in [(ex.e_s.get_mut(row), e_s), (ex.lse.get_mut(row), row_lse)] {
                    if let Some(slot) = slot {
                        *slot = x;
                    }
                }
                if let Some(slot) = ex.visible.get_mut(row) {
                    *slot = n;
                }
                for e in 0..dv {
                    if let Some(slot) = ex.o.get_mut(row * dv + e) {
                        *slot = at(&o, i * dv + e);
                    }
                }
            }
        }
    }
    Ok(ex)
}

/// The bound of output element `i` (see the module docs); `extra` adds relative roundings per
/// unit of `sum p |v|` (the merges of split-KV partials).
pub(crate) fn o_bound<T: Element>(ex: &Expected, dv: usize, i: usize, extra: f64) -> Bound {
    let row = i / dv.max(1);
    let (ua, u) = (tolerance::ua::<T>(), tolerance::u::<T>());
    let e_s = ex.e_s.get(row).copied().unwrap_or(0.0);
    let n = ex.visible.get(row).copied().unwrap_or(0) as f64;
    let w = ex.weighted_abs_v.get(i).copied().unwrap_or(0.0);
    Bound {
        atol: tolerance::floor::<T>() + ((2.0 * e_s).exp_m1() + (3.0 * n + 16.0) * ua + extra) * w,
        rtol: 2.0 * u,
    }
}

fn lse_bound<T: Element>(ex: &Expected, row: usize) -> Bound {
    let ua = tolerance::ua::<T>();
    let n = ex.visible.get(row).copied().unwrap_or(0) as f64;
    Bound {
        atol: tolerance::floor::<T>() + ex.e_s.get(row).copied().unwrap_or(0.0) + (n + 8.0) * ua,
        rtol: 4.0 * ua,
    }
}

/// Uploads a `u8` mask `[B, Lk]`.
pub(crate) fn upload_mask<B: Allocate>(b: &B, m: &[u8]) -> Result<B::Buffer<u8>, Failure> {
    let mut buf = b.alloc::<u8>(m.len()).map_err(Failure::setup)?;
    b.write(m, core::borrow::BorrowMut::borrow_mut(&mut buf))
        .map_err(Failure::setup)?;
    Ok(buf)
}

/// Runs `case` on `b` in `T` and compares with the reference.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let d = case.dims;
    let (q, k, v) = (
        case.q.rounded::<T>(),
        case.k.rounded::<T>(),
        case.v.rounded::<T>(),
    );
    let bias = case.bias.as_ref().map(Tensor::rounded::<T>);
    let ex = reference(
        &case.params,
        &d,
        &q,
        &k,
        &v,
        case.key_mask.as_deref(),
        bias.as_deref(),
        tolerance::ua::<T>(),
    )?;
    let (qi, ki, vi) = (
        Input::<B, T>::new(b, &case.q)?,
        Input::<B, T>::new(b, &case.k)?,
        Input::<B, T>::new(b, &case.v)?,
    );
    let bi = match &case.bias {
        Some(t) => Some(Input::<B, T>::new(b, t)?),
        None => None,
    };
    let mi = match &case.key_mask {
        Some(m) => Some(upload_mask(b, m)?),
        None => None,
    };
    let oshape = [d.batch, d.heads_q, d.len_q, d.value_dim];
    let ol = strategies::layout(&oshape, case.o)
        .map(|(l, _)| l)
        .ok_or_else(|| Failure::Setup(format!("no layout for {oshape:?}")))?;
    let mut o = Output::<B, T>::new(b, &ol, None)?;
    let ll = Layout::contiguous(&[d.batch, d.heads_q, d.len_q]).map_err(Failure::setup)?;
    let mut lse = Output::<B, T::Acc>::new(b, &ll, None)?;
    let mut ws = b
        .alloc::<T::Acc>(
            b.attention_workspace_len::<T>(&d)
                .map_err(Failure::Kernel)?,
        )
        .map_err(Failure::setup)?;
    let masks = AttentionMasks {
        key_mask: match &mi {
            Some(m) => Some(
                View::new(
                    core::borrow::Borrow::borrow(m),
                    Layout::contiguous(&[d.batch, d.len_k]).map_err(Failure::setup)?,
                )
                .map_err(Failure::setup)?,
            ),
            None => None,
        },
        bias: match &bi {
            Some(x) => Some(x.view()?),
            None => None,
        },
    };
    b.attention(
        &case.params,
        qi.view()?,
        ki.view()?,
        vi.view()?,
        masks,
        o.view()?,
        if case.lse { Some(lse.view()?) } else { None },
        core::borrow::BorrowMut::borrow_mut(&mut ws),
    )
    .map_err(Failure::Kernel)?;
    let got = widen(&o.finish(b, "o")?);
    let want: Vec<f64> = ex.o.iter().map(|&x| round::<T>(x)).collect();
    let dv = d.value_dim;
    let a = compare("o", &got, &want, |i| o_bound::<T>(&ex, dv, i, 0.0))?;
    let a = if case.lse {
        let got = widen(&lse.finish(b, "lse")?);
        a.worst(compare("lse", &got, &ex.lse, |i| lse_bound::<T>(&ex, i))?)
    } else {
        a
    };
    Ok(a)
}

/// A `[B, H, L, X]` tensor stored token-major (`[B, L, H, X]` in memory, seen through a
/// transpose) or as `st` says.
fn tensor4(
    shape: [usize; 4],
    values: Vec<f64>,
    st: Storage,
    token_major: bool,
) -> Result<Tensor, Failure> {
    if token_major {
        let l = Layout::contiguous(&[shape[0], shape[2], shape[1], shape[3]])
            .and_then(|l| l.transpose(1, 2))
            .map_err(Failure::setup)?;
        return Tensor::with_layout(l, l.end(), values);
    }
    let (l, len) = strategies::layout(&shape, st)
        .ok_or_else(|| Failure::Setup(format!("no layout for {shape:?}")))?;
    Tensor::with_layout(l, len, values)
}

/// A case from plain values (used by the edge cases and the golden vectors).
#[allow(clippy::too_many_arguments)]
fn build(
    dims: AttentionDims,
    params: AttentionParams,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    key_mask: Option<Vec<u8>>,
    token_major: bool,
    lse: bool,
) -> Result<Case, Failure> {
    let d = dims;
    Ok(Case {
        dims,
        params,
        q: tensor4(
            [d.batch, d.heads_q, d.len_q, d.head_dim],
            q,
            Storage::Contiguous,
            token_major,
        )?,
        k: tensor4(
            [d.batch, d.heads_kv, d.len_k, d.head_dim],
            k,
            Storage::Contiguous,
            token_major,
        )?,
        v: tensor4(
            [d.batch, d.heads_kv, d.len_k, d.value_dim],
            v,
            Storage::Contiguous,
            token_major,
        )?,
        key_mask,
        bias: None,
        o: Storage::Contiguous,
        lse,
    })
}

fn dims(
    batch: usize,
    hq: usize,
    hkv: usize,
    lq: usize,
    lk: usize,
    d: usize,
    dv: usize,
) -> AttentionDims {
    AttentionDims {
        batch,
        heads_q: hq,
        heads_kv: hkv,
        len_q: lq,
        len_k: lk,
        head_dim: d,
        value_dim: dv,
    }
}

/// Deterministic values in [-1, 1).
fn ramp(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 2000) as f64 / 1000.0 - 1.0)
        .collect()
}

/// Fixed edge cases: L = 0 and 1, key counts one either side of the kernel tile (63, 64, 65,
/// 129), fully masked rows (causal with `Lq > Lk`, an all-zero key mask), logits near 1e4, f16
/// inputs whose `q . k` overflows f16, every mask with GQA and MQA, token-major storage.
///
/// # Errors
/// Never for these shapes.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let mut v = Vec::new();
    let causal = AttentionParams::causal();
    let mk =
        |d: AttentionDims, p: AttentionParams, mask: Option<Vec<u8>>, tm: bool, seed: usize| {
            build(
                d,
                p,
                ramp(d.batch * d.heads_q * d.len_q * d.head_dim, seed),
                ramp(d.batch * d.heads_kv * d.len_k * d.head_dim, seed + 1),
                ramp(d.batch * d.heads_kv * d.len_k * d.value_dim, seed + 2),
                mask,
                tm,
                true,
            )
        };
    // Empty and length-1.
    v.push(mk(dims(1, 2, 1, 0, 5, 4, 4), causal, None, false, 1)?);
    v.push(mk(dims(1, 2, 1, 3, 0, 4, 4), causal, None, false, 2)?);
    v.push(mk(
        dims(1, 2, 2, 1, 1, 4, 3),
        AttentionParams::default(),
        None,
        false,
        3,
    )?);
    // Around the tile.
    for lk in [63, 64, 65, 129] {
        v.push(mk(dims(1, 4, 2, 3, lk, 8, 8), causal, None, true, lk)?);
    }
    // Causal with more queries than keys: the first rows see nothing.
    v.push(mk(dims(2, 2, 1, 7, 4, 4, 4), causal, None, false, 7)?);
    // A batch row whose keys are all padding.
    v.push(mk(
        dims(2, 2, 2, 3, 5, 4, 4),
        AttentionParams::default(),
        Some(vec![1, 0, 1, 1, 0, 0, 0, 0, 0, 0]),
        false,
        8,
    )?);
    // Sliding window with a chunk of queries (bottom-right), MQA, soft cap, top-left offset.
    v.push(mk(
        dims(1, 4, 1, 6, 20, 8, 8),
        AttentionParams {
            window: Some(5),
            ..causal
        },
        None,
        true,
        9,
    )?);
    v.push(mk(
        dims(1, 2, 2, 9, 9, 8, 8),
        AttentionParams {
            softcap: Some(2.0),
            scale: Some(3.0),
            ..causal
        },
        None,
        false,
        10,
    )?);
    v.push(mk(
        dims(1, 2, 2, 4, 9, 8, 8),
        AttentionParams {
            query_offset: Some(0),
            ..causal
        },
        None,
        false,
        11,
    )?);
    // Logits near 1e4 (scale 1, |q . k| up to about 1e4).
    let d = dims(1, 1, 1, 3, 4, 4, 2);
    v.push(build(
        d,
        AttentionParams {
            scale: Some(1.0),
            ..AttentionParams::default()
        },
        vec![
            50.0, 50.0, 0.0, 0.0, -50.0, 0.0, 50.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ],
        vec![
            50.0, 50.0, 0.0, 0.0, 49.0, 50.0, 0.0, 0.0, -50.0, 0.0, 50.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ],
        vec![1.0, -1.0, 2.0, 0.5, -3.0, 0.25, 4.0, 1.0],
        None,
        false,
        true,
    )?);
    // q . k = 16 * 200 * 200 = 640000, beyond f16's 65504: must be accumulated in f32.
    let d = dims(1, 1, 1, 2, 3, 16, 2);
    let mut k = vec![200.0; 16];
    k.extend(vec![-200.0; 16]);
    k.extend(vec![199.0; 16]);
    let mut q = vec![200.0; 16];
    q.extend(vec![-1.0; 16]);
    v.push(build(
        d,
        AttentionParams::default(),
        q,
        k,
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        None,
        false,
        true,
    )?);
    Ok(v)
}

/// Random cases: GQA ratios 1/2/4, lengths across the tile, every mask, soft cap, bias, strided
/// and token-major storage.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..3,
        prop::sample::select(vec![(1usize, 1usize), (2, 1), (4, 2), (4, 4), (3, 1)]),
        strategies::dim(17),
        prop::sample::select(vec![0usize, 1, 7, 33, 63, 64, 65, 100]),
        1usize..10,
        1usize..9,
    )
        .prop_flat_map(|(batch, (hq, hkv), lq, lk, d, dv)| {
            let dm = dims(batch, hq, hkv, lq, lk, d, dv);
            let t = |s: [usize; 4]| strategies::tensor(s.to_vec(), 1.0, Specials::default());
            (
                Just(dm),
                t([batch, hq, lq, d]),
                t([batch, hkv, lk, d]),
                t([batch, hkv, lk, dv]),
                (
                    any::<bool>(),
                    prop::option::of(1usize..40),
                    prop::option::of(prop::sample::select(vec![1.0f64, 5.0, 50.0])),
                ),
                prop::option::of(prop::collection::vec(
                    prop::sample::select(vec![0u8, 1, 1, 1, 7]),
                    batch * lk,
                )),
                prop::option::of(strategies::tensor(
                    vec![batch, hq, lq, lk],
                    1.0,
                    Specials {
                        neg_inf: true,
                        ..Specials::default()
                    },
                )),
                (
                    strategies::storage(),
                    any::<bool>(),
                    prop::option::of(prop::sample::select(vec![0.125f64, -0.7, 2.0])),
                ),
                prop::option::of(-3i64..110),
            )
        })
        .prop_map(
            |(dims, q, k, v, (causal, window, softcap), key_mask, bias, (o, lse, scale), off)| {
                Case {
                    dims,
                    params: AttentionParams {
                        scale,
                        causal,
                        window,
                        softcap,
                        query_offset: off,
                    },
                    q,
                    k,
                    v,
                    key_mask,
                    bias,
                    o,
                    lse,
                }
            },
        )
}

/// Timing: `B = 1`, `H = 4` (GQA over 2 KV heads), `L = 256`, `D = Dv = 64`, causal.
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(b: &'a B, len: usize) -> Result<Bench<'a>, Failure> {
    bench_heads::<B, T>(b, 4, 2, len)
}

/// Timing: `B = 1`, `hq` query heads over `hkv` KV heads, `L = len`, `D = Dv = 64`, causal,
/// head-major `[1, H, L, 64]` (PyTorch's `scaled_dot_product_attention` layout).
///
/// # Errors
/// Setup failures.
pub fn bench_heads<'a, B: Allocate, T: Element>(
    b: &'a B,
    hq: usize,
    hkv: usize,
    len: usize,
) -> Result<Bench<'a>, Failure> {
    let d = dims(1, hq, hkv, len, len, 64, 64);
    let t = |s: [usize; 4], seed| Tensor::contiguous(&s, ramp(s.iter().product(), seed));
    let q = Input::<B, T>::new(b, &t([1, hq, len, 64], 1)?)?;
    let k = Input::<B, T>::new(b, &t([1, hkv, len, 64], 2)?)?;
    let v = Input::<B, T>::new(b, &t([1, hkv, len, 64], 3)?)?;
    let mut o = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[1, hq, len, 64]).map_err(Failure::setup)?,
        None,
    )?;
    let mut ws = b
        .alloc::<T::Acc>(
            b.attention_workspace_len::<T>(&d)
                .map_err(Failure::Kernel)?,
        )
        .map_err(Failure::setup)?;
    let p = AttentionParams::causal();
    Ok(Bench {
        run: Box::new(move || {
            b.attention(
                &p,
                q.view()?,
                k.view()?,
                v.view()?,
                AttentionMasks::none(),
                o.view()?,
                None,
                core::borrow::BorrowMut::borrow_mut(&mut ws),
            )
            .map_err(Failure::Kernel)
        }),
        // Causal: about half of the L x L products are computed.
        work: Work::Flops(d.flops() / 2.0),
        size: format!("B1 H{hq}/{hkv} L{len} D64 causal"),
    })
}

/// Token-major `[L, H, X]` vector data as `[1, H, L, X]` row-major values.
fn head_major(x: &[f64], l: usize, h: usize, e: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for t in 0..l {
        for hh in 0..h {
            for i in 0..e {
                if let (Some(dst), Some(src)) =
                    (y.get_mut((hh * l + t) * e + i), x.get((t * h + hh) * e + i))
                {
                    *dst = *src;
                }
            }
        }
    }
    y
}

fn count(x: f64, what: &str) -> Result<usize, Failure> {
    if x >= 0.0 && x.fract() == 0.0 && x <= 1e12 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // integral, in range
        Ok(x as usize)
    } else {
        Err(crate::vectors::bad(format!(
            "`{what}` = {x} is not a count"
        )))
    }
}

/// Runs an `sdpa` vector case (see the format: token-major `q [Lq, Hq, D]`, `k [Lk, Hkv, D]`,
/// `v [Lk, Hkv, Dv]`, optional `key_mask [Lk]`, `bias [Hq, Lq, Lk]`; params `causal`, `scale`,
/// `window`, `softcap`). A `window` implies causal masking, as the format defines it.
///
/// # Errors
/// Why the case failed.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &VectorCase,
) -> Result<Agreement, Failure> {
    let shape3 = |name: &str| -> Result<(Vec<f64>, [usize; 3]), Failure> {
        let t = case
            .inputs
            .get(name)
            .ok_or_else(|| crate::vectors::bad(format!("no input `{name}`")))?;
        let s: [usize; 3] = t.shape.as_slice().try_into().map_err(|_| {
            crate::vectors::bad(format!("`{name}` must have 3 axes, has {:?}", t.shape))
        })?;
        if s.iter().product::<usize>() != t.data.len() {
            return Err(crate::vectors::bad(format!(
                "`{name}`: shape {s:?} and {} values",
                t.data.len()
            )));
        }
        Ok((t.data.clone(), s))
    };
    let (q, [lq, hq, dq]) = shape3("q")?;
    let (k, [lk, hkv, dk]) = shape3("k")?;
    let (v, [lv, hv, dv]) = shape3("v")?;
    if dk != dq || lv != lk || hv != hkv {
        return Err(crate::vectors::bad("`k`/`v` shapes disagree with `q`"));
    }
    let causal = match case.params.get("causal") {
        Some(serde_json::Value::Bool(c)) => *c,
        None => false,
        Some(other) => {
            return Err(crate::vectors::bad(format!(
                "`causal` = {other} is not a boolean"
            )));
        }
    };
    let window = match case.params.get("window") {
        Some(w) => Some(count(crate::vectors::number(w)?, "window")?),
        None => None,
    };
    let scale = match case.params.get("scale") {
        Some(s) => Some(crate::vectors::number(s)?),
        None => None,
    };
    let softcap = match case.params.get("softcap") {
        Some(s) => Some(crate::vectors::number(s)?),
        None => None,
    };
    let key_mask = match case.inputs.get("key_mask") {
        Some(m) => {
            if m.shape != [lk] {
                return Err(crate::vectors::bad(format!(
                    "`key_mask` has shape {:?}, expected [{lk}]",
                    m.shape
                )));
            }
            Some(
                m.data
                    .iter()
                    .map(|&x| u8::from(x != 0.0))
                    .collect::<Vec<u8>>(),
            )
        }
        None => None,
    };
    let bias = match case.inputs.get("bias") {
        Some(t) => {
            if t.shape != [hq, lq, lk] {
                return Err(crate::vectors::bad(format!(
                    "`bias` has shape {:?}, expected [{hq}, {lq}, {lk}]",
                    t.shape
                )));
            }
            Some(Tensor::contiguous(&[1, hq, lq, lk], t.data.clone())?)
        }
        None => None,
    };
    let d = dims(1, hq, hkv, lq, lk, dq, dv);
    let params = AttentionParams {
        scale,
        causal: causal || window.is_some(),
        window,
        softcap,
        query_offset: None,
    };
    // Upload token-major storage, seen head-major through a transpose.
    let c = Case {
        dims: d,
        params,
        q: tensor4(
            [1, hq, lq, dq],
            head_major(&q, lq, hq, dq),
            Storage::Contiguous,
            true,
        )?,
        k: tensor4(
            [1, hkv, lk, dk],
            head_major(&k, lk, hkv, dk),
            Storage::Contiguous,
            true,
        )?,
        v: tensor4(
            [1, hkv, lk, dv],
            head_major(&v, lk, hkv, dv),
            Storage::Contiguous,
            true,
        )?,
        key_mask,
        bias,
        o: Storage::Contiguous,
        lse: false,
    };
    let (qi, ki, vi) = (
        Input::<B, T>::new(b, &c.q)?,
        Input::<B, T>::new(b, &c.k)?,
        Input::<B, T>::new(b, &c.v)?,
    );
    let bi = match &c.bias {
        Some(t) => Some(Input::<B, T>::new(b, t)?),
        None => None,
    };
    let mi = match &c.key_mask {
        Some(m) => Some(upload_mask(b, m)?),
        None => None,
    };
    let want_shape = &case.expected("o")?.shape;
    if want_shape.as_slice() != [lq, hq, dv] {
        return Err(crate::vectors::bad(format!(
            "expected `o` has shape {want_shape:?}, expected [{lq}, {hq}, {dv}]"
        )));
    }
    // o token-major [Lq, Hq, Dv], written through a transposed view.
    let ol = Layout::contiguous(&[1, lq, hq, dv])
        .and_then(|l| l.transpose(1, 2))
        .map_err(Failure::setup)?;
    let mut o = Output::<B, T>::new(b, &ol, None)?;
    let mut ws = b
        .alloc::<T::Acc>(
            b.attention_workspace_len::<T>(&d)
                .map_err(Failure::Kernel)?,
        )
        .map_err(Failure::setup)?;
    let masks = AttentionMasks {
        key_mask: match &mi {
            Some(m) => Some(
                View::new(
                    core::borrow::Borrow::borrow(m),
                    Layout::contiguous(&[1, lk]).map_err(Failure::setup)?,
                )
                .map_err(Failure::setup)?,
            ),
            None => None,
        },
        bias: match &bi {
            Some(x) => Some(x.view()?),
            None => None,
        },
    };
    b.attention(
        &c.params,
        qi.view()?,
        ki.view()?,
        vi.view()?,
        masks,
        o.view()?,
        None,
        core::borrow::BorrowMut::borrow_mut(&mut ws),
    )
    .map_err(Failure::Kernel)?;
    // `finish` gives the values in the view's order [1, Hq, Lq, Dv]; back to token-major.
    let got_hm = widen(&o.finish(b, "o")?);
    let mut got = vec![0.0; got_hm.len()];
    for h in 0..hq {
        for t in 0..lq {
            for e in 0..dv {
                if let (Some(dst), Some(src)) = (
                    got.get_mut((t * hq + h) * dv + e),
                    got_hm.get((h * lq + t) * dv + e),
                ) {
                    *dst = *src;
                }
            }
        }
    }
    case.check("o", &got)
}
