//! The `kv_cache` row: a sequence run as a prefill and decode steps through every cache of
//! seq-attention (fixed, growable, ring buffer, int8) on the backend under test, each step's
//! outputs held to the whole-sequence causal (and windowed) reference of the `sdpa` row, with the
//! `sdpa` bound; the ring buffer's partial results are merged, which adds the merge's rounding
//! (`2 (2u + 8 ua) sum p |v|`). The int8 cache is held to its documented bound: every dequantised
//! element within `s/2 + u_T |x^|` with `s = max|x|/127` (rounded up to f32), and every output
//! within `e_v + (exp(2 e_s) - 1) max_j |v_j|` of the reference plus the `sdpa` bound, `e_k`,
//! `e_v` the largest key and value errors of the head, `e_s = |scale| ||q||_1 e_k`. It runs only
//! where the backend's memory is host memory (elsewhere it answers `Unsupported` by design).

use core::borrow::{Borrow, BorrowMut};

use proptest::prelude::*;
use seq_attention::{
    FixedKvCache, GrowableKvCache, KvCache, KvCacheDims, KvWorkspace, QuantizedKvCache, RingKvCache,
};
use seqcore::{Allocate, AttentionDims, AttentionParams, Element};

use super::sdpa;
use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, Tensor, round, widen};
use crate::properties::{Bench, Work};
use crate::{Failure, tolerance};

/// A sequence: heads, options, token-major `q [L, Hq, D]`, `k [L, Hkv, D]`, `v [L, Hkv, Dv]`,
/// and the token counts of its steps (a prefill, then decode steps).
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// `(Hq, Hkv, D, Dv)`.
    pub heads: (usize, usize, usize, usize),
    /// Sliding window (then the ring buffer is sized `window + largest step - 1`).
    pub window: Option<usize>,
    /// Soft cap.
    pub softcap: Option<f64>,
    /// Queries.
    pub q: Vec<f64>,
    /// Keys.
    pub k: Vec<f64>,
    /// Values.
    pub v: Vec<f64>,
    /// Tokens per step.
    pub steps: Vec<usize>,
}

/// Random sequences across the int8 tile (64) and around the ring.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![(1usize, 1usize), (2, 2), (4, 2), (4, 1)]),
        1usize..9,
        1usize..6,
        0usize..70,
        0usize..6,
        prop::option::of(1usize..20),
        prop::option::of(prop::sample::select(vec![2.0f64, 30.0])),
    )
        .prop_flat_map(|((hq, hkv), d, dv, prefill, decode, window, softcap)| {
            let len = prefill + decode;
            let x = |n: usize| prop::collection::vec(-2.0f64..2.0, n);
            (
                Just((hq, hkv, d, dv)),
                Just(window),
                Just(softcap),
                x(len * hq * d),
                x(len * hkv * d),
                x(len * hkv * dv),
                Just(
                    core::iter::once(prefill)
                        .chain(core::iter::repeat_n(1, decode))
                        .collect::<Vec<_>>(),
                ),
            )
        })
        .prop_map(|(heads, window, softcap, q, k, v, steps)| Case {
            heads,
            window,
            softcap,
            q,
            k,
            v,
            steps,
        })
}

/// Token-major `[L, H, X]` as head-major `[H, L, X]`.
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

/// Runs the steps of `c` through `cache`; returns the outputs head-major `[Hq, L, Dv]`.
fn run<B: Allocate, T: Element, C: KvCache<B, T>>(
    b: &B,
    c: &Case,
    params: &AttentionParams,
    cache: &mut C,
) -> Result<Vec<f64>, Failure> {
    let (hq, hkv, d, dv) = c.heads;
    let len: usize = c.steps.iter().sum();
    let mut out = vec![0.0; len * hq * dv];
    let mut t = 0;
    for &n in &c.steps {
        let slice =
            |x: &[f64], w: usize| -> Vec<f64> { x.get(t * w..(t + n) * w).unwrap_or(&[]).to_vec() };
        let k = Input::<B, T>::new(b, &Tensor::contiguous(&[n, hkv, d], slice(&c.k, hkv * d))?)?;
        let v = Input::<B, T>::new(
            b,
            &Tensor::contiguous(&[n, hkv, dv], slice(&c.v, hkv * dv))?,
        )?;
        let q = Input::<B, T>::new(b, &Tensor::contiguous(&[n, hq, d], slice(&c.q, hq * d))?)?;
        cache
            .append(b, k.view()?, v.view()?)
            .map_err(Failure::Kernel)?;
        let need = cache.workspace_len(b, hq, n).map_err(Failure::Kernel)?;
        let mut kernel = b.alloc::<T::Acc>(need.kernel).map_err(Failure::setup)?;
        let mut state = b.alloc::<T::Acc>(need.state).map_err(Failure::setup)?;
        let mut partial = b.alloc::<T>(need.partial).map_err(Failure::setup)?;
        let mut o = Output::<B, T>::new(
            b,
            &seqcore::Layout::contiguous(&[n, hq, dv]).map_err(Failure::setup)?,
            None,
        )?;
        cache
            .attend(
                b,
                params,
                q.view()?,
                o.view()?,
                KvWorkspace {
                    kernel: kernel.borrow_mut(),
                    state: state.borrow_mut(),
                    partial: partial.borrow_mut(),
                },
            )
            .map_err(Failure::Kernel)?;
        let got = widen(&o.finish(b, "o")?);
        for i in 0..n {
            for h in 0..hq {
                for e in 0..dv {
                    if let (Some(dst), Some(src)) = (
                        out.get_mut((h * len + t + i) * dv + e),
                        got.get((i * hq + h) * dv + e),
                    ) {
                        *dst = *src;
                    }
                }
            }
        }
        t += n;
    }
    Ok(out)
}

/// Runs `c` through every cache on `b` in `T`.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, c: &Case) -> Result<Agreement, Failure> {
    let (hq, hkv, d, dv) = c.heads;
    let len: usize = c.steps.iter().sum();
    let params = AttentionParams {
        causal: true,
        window: c.window,
        softcap: c.softcap,
        ..AttentionParams::default()
    };
    let dims = AttentionDims {
        batch: 1,
        heads_q: hq,
        heads_kv: hkv,
        len_q: len,
        len_k: len,
        head_dim: d,
        value_dim: dv,
    };
    let r = |x: &[f64]| x.iter().map(|&v| round::<T>(v)).collect::<Vec<f64>>();
    let (q, k, v) = (
        head_major(&r(&c.q), len, hq, d),
        head_major(&r(&c.k), len, hkv, d),
        head_major(&r(&c.v), len, hkv, dv),
    );
    let ex = sdpa::reference(&params, &dims, &q, &k, &v, None, None, tolerance::ua::<T>())?;
    let want: Vec<f64> = ex.o.iter().map(|&x| round::<T>(x)).collect();
    let kv = KvCacheDims::new(hkv, d, dv, len.max(1)).map_err(Failure::setup)?;
    let mut agreement = Agreement::default();

    // Fixed capacity, in backend memory.
    let mut kb = b
        .alloc::<T>(kv.key_len().map_err(Failure::setup)?)
        .map_err(Failure::setup)?;
    let mut vb = b
        .alloc::<T>(kv.value_len().map_err(Failure::setup)?)
        .map_err(Failure::setup)?;
    let mut fixed =
        FixedKvCache::<B, T>::new(kv, kb.borrow_mut(), vb.borrow_mut()).map_err(Failure::Kernel)?;
    let got = run(b, c, &params, &mut fixed)?;
    agreement = agreement.worst(compare("o", &got, &want, |i| {
        sdpa::o_bound::<T>(&ex, dv, i, 0.0)
    })?);

    // Growable, from a capacity of 1.
    let small = KvCacheDims { capacity: 1, ..kv };
    let mut grow = GrowableKvCache::<B, T>::new(b, small).map_err(Failure::Kernel)?;
    let got = run(b, c, &params, &mut grow)?;
    agreement = agreement.worst(compare("o", &got, &want, |i| {
        sdpa::o_bound::<T>(&ex, dv, i, 0.0)
    })?);

    // Ring buffer: as small as the window and the largest step allow.
    if let Some(w) = c.window {
        let n = c.steps.iter().copied().max().unwrap_or(1).max(1);
        let rd = KvCacheDims {
            capacity: w + n - 1,
            ..kv
        };
        let mut rk = b
            .alloc::<T>(rd.key_len().map_err(Failure::setup)?)
            .map_err(Failure::setup)?;
        let mut rv = b
            .alloc::<T>(rd.value_len().map_err(Failure::setup)?)
            .map_err(Failure::setup)?;
        let mut ring = RingKvCache::<B, T>::new(rd, w, rk.borrow_mut(), rv.borrow_mut())
            .map_err(Failure::Kernel)?;
        let got = run(b, c, &params, &mut ring)?;
        let extra = 2.0 * (2.0 * tolerance::u::<T>() + 8.0 * tolerance::ua::<T>());
        agreement = agreement.worst(compare("o", &got, &want, |i| {
            sdpa::o_bound::<T>(&ex, dv, i, extra)
        })?);
    }

    // int8, where memory is on the host.
    let probe = b.alloc::<T>(1).map_err(Failure::setup)?;
    if B::host(probe.borrow()).is_some() {
        let n = hkv * kv.capacity;
        let (mut kc, mut vc) = (vec![0i8; n * d], vec![0i8; n * dv]);
        let (mut ks, mut vs) = (vec![0.0f32; n], vec![0.0f32; n]);
        let mut int8 = QuantizedKvCache::new(kv, &mut kc, &mut ks, &mut vc, &mut vs)
            .map_err(Failure::Kernel)?;
        let got = run::<B, T, _>(b, c, &params, &mut int8)?;
        // Dequantisation errors per head, checked against the per-element bound first.
        let (mut ek, mut ev) = (vec![0.0f64; hkv], vec![0.0f64; hkv]);
        let u = tolerance::u::<T>();
        for t in 0..len {
            for g in 0..hkv {
                for (vals, dim, x, e_max) in [(false, d, &k, &mut ek), (true, dv, &v, &mut ev)] {
                    let orig = |e: usize| x.get((g * len + t) * dim + e).copied().unwrap_or(0.0);
                    let amax = (0..dim).map(|e| orig(e).abs()).fold(0.0f64, f64::max);
                    let s = f64::from(
                        int8.scale(vals, g, t)
                            .ok_or_else(|| Failure::Setup("no scale".into()))?,
                    );
                    if s < amax / 127.0 || s > amax / 127.0 * (1.0 + 2f64.powi(-22)) {
                        return Err(Failure::Setup(format!(
                            "int8 scale {s} for a group of max {amax}"
                        )));
                    }
                    for e in 0..dim {
                        let deq = int8.dequantized(vals, g, t, e).unwrap_or(f64::NAN);
                        let deq_t = round::<T>(deq);
                        let err = (orig(e) - deq_t).abs();
                        if err > s / 2.0 + u * deq.abs() + tolerance::floor::<T>() {
                            return Err(Failure::Tolerance {
                                arg: if vals { "v (int8)" } else { "k (int8)" },
                                index: (g * len + t) * dim + e,
                                got: deq_t,
                                expected: orig(e),
                                bound: Bound {
                                    atol: s / 2.0,
                                    rtol: u,
                                },
                                agreement: Agreement::default(),
                            });
                        }
                        if let Some(m) = e_max.get_mut(g) {
                            *m = m.max(err);
                        }
                    }
                }
            }
        }
        let scale = 1.0 / (d as f64).sqrt();
        let bound = |i: usize| {
            let (row, e) = (i / dv, i % dv);
            let (h, qi) = (row / len.max(1), row % len.max(1));
            let g = h / (hq / hkv);
            let q1: f64 = (0..d)
                .map(|x| q.get((h * len + qi) * d + x).map_or(0.0, |v| v.abs()))
                .sum();
            let vmax = (0..len)
                .map(|j| v.get((g * len + j) * dv + e).map_or(0.0, |x| x.abs()))
                .fold(0.0, f64::max);
            let es = scale * q1 * ek.get(g).copied().unwrap_or(0.0);
            let mut bd = sdpa::o_bound::<T>(&ex, dv, i, 2.0 * tolerance::u::<T>() * 8.0);
            bd.atol += ev.get(g).copied().unwrap_or(0.0) + (2.0 * es).exp_m1() * vmax;
            bd
        };
        agreement = agreement.worst(compare("o", &got, &want, bound)?);
    }
    Ok(agreement)
}

/// Timing: one decode step (append one token, attend its query: `Hq = 8` over `Hkv = 2`,
/// `D = 64`) over a growable cache holding `len - 1` tokens, truncated back after each step.
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(b: &'a B, len: usize) -> Result<Bench<'a>, Failure> {
    let (hq, hkv, d) = (8usize, 2usize, 64usize);
    let kv = KvCacheDims::new(hkv, d, d, len).map_err(Failure::setup)?;
    let x = |l: usize, h: usize| {
        Tensor::contiguous(
            &[l, h, d],
            (0..l * h * d)
                .map(|i| (i % 29) as f64 / 14.0 - 1.0)
                .collect(),
        )
    };
    let past = Input::<B, T>::new(b, &x(len - 1, hkv)?)?;
    let new = Input::<B, T>::new(b, &x(1, hkv)?)?;
    let q = Input::<B, T>::new(b, &x(1, hq)?)?;
    let mut cache = GrowableKvCache::<B, T>::new(b, kv).map_err(Failure::Kernel)?;
    cache
        .append(b, past.view()?, past.view()?)
        .map_err(Failure::Kernel)?;
    let mut o = Output::<B, T>::new(
        b,
        &seqcore::Layout::contiguous(&[1, hq, d]).map_err(Failure::setup)?,
        None,
    )?;
    let need = KvCache::<B, T>::workspace_len(&cache, b, hq, 1).map_err(Failure::Kernel)?;
    let mut kernel = b.alloc::<T::Acc>(need.kernel).map_err(Failure::setup)?;
    let mut state = b.alloc::<T::Acc>(need.state).map_err(Failure::setup)?;
    let mut partial = b.alloc::<T>(need.partial).map_err(Failure::setup)?;
    let dims = AttentionDims {
        batch: 1,
        heads_q: hq,
        heads_kv: hkv,
        len_q: 1,
        len_k: len,
        head_dim: d,
        value_dim: d,
    };
    let p = AttentionParams::causal();
    Ok(Bench {
        run: Box::new(move || {
            cache
                .append(b, new.view()?, new.view()?)
                .map_err(Failure::Kernel)?;
            cache
                .attend(
                    b,
                    &p,
                    q.view()?,
                    o.view()?,
                    KvWorkspace {
                        kernel: kernel.borrow_mut(),
                        state: state.borrow_mut(),
                        partial: partial.borrow_mut(),
                    },
                )
                .map_err(Failure::Kernel)?;
            cache.truncate(len - 1);
            Ok(())
        }),
        work: Work::Flops(dims.flops()),
        size: format!("decode 1 over L{len} H8/2 D64"),
    })
}
