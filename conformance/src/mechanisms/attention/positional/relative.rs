//! The `relative_attention` row and vector mechanisms: [`seqcore::Backend::relative_attention`]
//! (Shaw et al., Music Transformer, T5) against the f64 reference, the reference against an
//! explicit O(L^2 D) evaluation, and Music Transformer's skew against the naive relative logits.

// Harness code: indices below the extents the case was built with (the kernel call checks them
// first), casts of counts checked integral and in range before the cast.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap
)]

use proptest::prelude::*;
use seq_attention::relative::skew::{SkewedAttention, padded_len, relative_logits};
use seq_attention::relative::{RelativeIndex, RelativeParams, workspace_len};
use seqcore::{Allocate, Backend, Element, Layout, Reference, View};

use super::{expected_in, gate};
use crate::Failure;
use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, Tensor, widen};
use crate::properties::{Bench, Work};
use crate::strategies::{Specials, Storage, storage, tensor};
use crate::tolerance::{floor, nmse_max, u, ua};
use crate::vectors::{Case as VCase, bad};

/// One relative-attention call.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Kernel parameters.
    pub params: RelativeParams,
    /// `[B, H, Lq, D]`.
    pub q: Tensor,
    /// `[B, H, Lk, D]`.
    pub k: Tensor,
    /// `[B, H, Lk, Dv]`.
    pub v: Tensor,
    /// `[H, R, D]`.
    pub rel_k: Option<Tensor>,
    /// `[H, R, Dv]`.
    pub rel_v: Option<Tensor>,
    /// `[H, R]`.
    pub rel_bias: Option<Tensor>,
    /// Output storage.
    pub o: Storage,
}

fn dims(c: &Case) -> [usize; 6] {
    let q = c.q.shape();
    let g = |s: &[usize], i: usize| s.get(i).copied().unwrap_or(0);
    [
        g(q, 0),
        g(q, 1),
        g(q, 2),
        g(c.k.shape(), 2),
        g(q, 3),
        g(c.v.shape(), 3),
    ]
}

/// Explicit O(Lq Lk D) evaluation in f64 of Shaw's eq. (3)-(5) (with the bias of T5): the
/// embeddings `a^K_ij`, `a^V_ij` are gathered per pair, scores formed, a two-pass softmax taken.
/// Independent of the kernel's online softmax.
#[allow(clippy::too_many_arguments)]
pub fn explicit(
    p: &RelativeParams,
    shape: [usize; 6],
    q: &[f64],
    k: &[f64],
    v: &[f64],
    rk: Option<&[f64]>,
    rv: Option<&[f64]>,
    rb: Option<&[f64]>,
) -> Vec<f64> {
    let [nb, nh, lq, lk, d, dv] = shape;
    let rows = p.index.rows();
    let at = |s: &[f64], i: usize| s.get(i).copied().unwrap_or(f64::NAN);
    let mut o = vec![0.0; nb * nh * lq * dv];
    for b in 0..nb {
        for h in 0..nh {
            for i in 0..lq {
                let qpos = i as i64 + lk as i64 - lq as i64;
                let mut e = vec![f64::NEG_INFINITY; lk];
                let mut vals = vec![vec![0.0; dv]; lk];
                for j in 0..lk {
                    if p.causal && j as i64 > qpos {
                        continue;
                    }
                    // Clipped distance (Shaw eq. (5)) or T5 bucket.
                    let r = match p.index {
                        RelativeIndex::Clipped { max_back, max_fwd } => {
                            let dist = j as i64 - qpos;
                            (dist.clamp(-(max_back as i64), max_fwd as i64) + max_back as i64)
                                as usize
                        }
                        _ => p.index.row(j as i64 - qpos),
                    };
                    debug_assert!(r < rows);
                    let mut s = 0.0;
                    for c in 0..d {
                        let a_k = rk.map_or(0.0, |t| at(t, (h * rows + r) * d + c));
                        s += at(q, ((b * nh + h) * lq + i) * d + c)
                            * (at(k, ((b * nh + h) * lk + j) * d + c) + a_k);
                    }
                    e[j] = s * p.scale + rb.map_or(0.0, |t| at(t, h * rows + r));
                    for (c, slot) in vals[j].iter_mut().enumerate() {
                        *slot = at(v, ((b * nh + h) * lk + j) * dv + c)
                            + rv.map_or(0.0, |t| at(t, (h * rows + r) * dv + c));
                    }
                }
                let m = e.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let out = &mut o[((b * nh + h) * lq + i) * dv..][..dv];
                if m == f64::NEG_INFINITY {
                    continue; // no key seen: zeros
                }
                let w: Vec<f64> = e.iter().map(|&x| (x - m).exp()).collect();
                let z: f64 = w.iter().sum();
                for j in 0..lk {
                    for c in 0..dv {
                        out[c] += w[j] / z * vals[j][c];
                    }
                }
            }
        }
    }
    o
}

/// Runs `case` on `b` in `T` against the f64 reference, checks the reference against
/// [`explicit`], and for Music Transformer cases the skew against the naive relative logits.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let sh = dims(case);
    let [nb, nh, lq, lk, d, dv] = sh;
    let (q, k, v) = (
        case.q.rounded::<T>(),
        case.k.rounded::<T>(),
        case.v.rounded::<T>(),
    );
    let rk = case.rel_k.as_ref().map(Tensor::rounded::<T>);
    let rv = case.rel_v.as_ref().map(Tensor::rounded::<T>);
    let rb = case.rel_bias.as_ref().map(Tensor::rounded::<T>);
    let rows = case.params.index.rows();
    let r = Reference;
    let mut want = vec![0.0f64; nb * nh * lq * dv];
    {
        let mut ws = vec![0.0f64; workspace_len(dv)];
        r.relative_attention(
            &case.params,
            hv(&q, &[nb, nh, lq, d])?,
            hv(&k, &[nb, nh, lk, d])?,
            hv(&v, &[nb, nh, lk, dv])?,
            rk.as_deref().map(|t| hv(t, &[nh, rows, d])).transpose()?,
            rv.as_deref().map(|t| hv(t, &[nh, rows, dv])).transpose()?,
            rb.as_deref().map(|t| hv(t, &[nh, rows])).transpose()?,
            r.view_mut(&mut want, &[nb, nh, lq, dv])
                .map_err(Failure::setup)?,
            &mut ws,
        )
        .map_err(Failure::Kernel)?;
    }
    // Per query row: the largest |logit| perturbation and the largest |value|.
    let mut row_scale = vec![(0.0f64, 0.0f64); nb * nh * lq];
    for b_ in 0..nb {
        for h in 0..nh {
            for i in 0..lq {
                let qpos = i as i64 + lk as i64 - lq as i64;
                let (mut de, mut vm) = (0.0f64, 0.0f64);
                for j in 0..lk {
                    if case.params.causal && j as i64 > qpos {
                        continue;
                    }
                    let row = case.params.index.row(j as i64 - qpos);
                    let mut s = 0.0;
                    for c in 0..d {
                        let a = rk.as_ref().map_or(0.0, |t| t[(h * rows + row) * d + c]);
                        s += q[((b_ * nh + h) * lq + i) * d + c].abs()
                            * (k[((b_ * nh + h) * lk + j) * d + c].abs() + a.abs());
                    }
                    let bias = rb.as_ref().map_or(0.0, |t| t[h * rows + row].abs());
                    de = de.max(
                        (d as f64 + 4.0) * ua::<T>() * case.params.scale.abs() * s
                            + 2.0 * ua::<T>() * bias,
                    );
                    for c in 0..dv {
                        let a = rv.as_ref().map_or(0.0, |t| t[(h * rows + row) * dv + c]);
                        vm = vm.max(v[((b_ * nh + h) * lk + j) * dv + c].abs() + a.abs());
                    }
                }
                row_scale[(b_ * nh + h) * lq + i] = (de, vm);
            }
        }
    }
    // Softmax is 2-Lipschitz in the max norm of the logits (into the l1 norm of the weights);
    // the online rescaling and the weighted sum add (Lk + 8) ua of the values' scale.
    let bound = |idx: usize| {
        let (de, vm) = row_scale
            .get(idx / dv.max(1))
            .copied()
            .unwrap_or((0.0, 0.0));
        Bound {
            atol: floor::<T>() + (2.0 * de + (lk as f64 + 8.0) * ua::<T>()) * vm,
            rtol: 2.0 * u::<T>(),
        }
    };

    let qi = Input::<B, T>::new(b, &case.q)?;
    let ki = Input::<B, T>::new(b, &case.k)?;
    let vi = Input::<B, T>::new(b, &case.v)?;
    let rki = case
        .rel_k
        .as_ref()
        .map(|t| Input::<B, T>::new(b, t))
        .transpose()?;
    let rvi = case
        .rel_v
        .as_ref()
        .map(|t| Input::<B, T>::new(b, t))
        .transpose()?;
    let rbi = case
        .rel_bias
        .as_ref()
        .map(|t| Input::<B, T>::new(b, t))
        .transpose()?;
    let (ol, _) = crate::strategies::layout(&[nb, nh, lq, dv], case.o)
        .ok_or_else(|| Failure::Setup("no output layout".into()))?;
    let mut out = Output::<B, T>::new(b, &ol, None)?;
    let mut ws = b
        .alloc::<T::Acc>(workspace_len(dv))
        .map_err(Failure::setup)?;
    b.relative_attention(
        &case.params,
        qi.view()?,
        ki.view()?,
        vi.view()?,
        rki.as_ref().map(Input::view).transpose()?,
        rvi.as_ref().map(Input::view).transpose()?,
        rbi.as_ref().map(Input::view).transpose()?,
        out.view()?,
        core::borrow::BorrowMut::borrow_mut(&mut ws),
    )
    .map_err(Failure::Kernel)?;
    let got = widen(&out.finish(b, "o")?);
    let a = compare("o", &got, &expected_in::<T>(&want), bound)?;
    let a = gate("o", a, nmse_max::<T>())?;

    // The f64 oracle against the explicit formula (Shaw eq. (3)-(5)), bound at f64.
    let ex = explicit(
        &case.params,
        sh,
        &q,
        &k,
        &v,
        rk.as_deref(),
        rv.as_deref(),
        rb.as_deref(),
    );
    let u64_ = 2f64.powi(-53);
    compare("o (explicit)", &want, &ex, |idx| {
        let (de, vm) = row_scale
            .get(idx / dv.max(1))
            .copied()
            .unwrap_or((0.0, 0.0));
        let de64 = de / ua::<T>() * u64_;
        Bound {
            atol: f64::MIN_POSITIVE + (4.0 * de64 + 2.0 * (lk as f64 + 8.0) * u64_) * vm,
            rtol: 4.0 * u64_,
        }
    })?;

    // Music Transformer cases: the skew equals the naive relative logits.
    if let (
        RelativeIndex::Clipped {
            max_back,
            max_fwd: 0,
        },
        true,
        Some(rk_t),
    ) = (case.params.index, case.params.causal, &rk)
    {
        if lq == lk && max_back + 1 == lk && lk > 0 {
            skew_equals_naive::<B, T>(b, &q, rk_t, lq, d)?;
        }
    }
    Ok(a)
}

/// `relative_logits` (the paper's pad-reshape-slice) against `q_i . E^r[L-1-i+j]` for `j <= i`,
/// on the first batch and head.
fn skew_equals_naive<B: Allocate, T: Element>(
    b: &B,
    q: &[f64],
    er: &[f64],
    l: usize,
    d: usize,
) -> Result<(), Failure> {
    let qt = Tensor::contiguous(&[l, d], q.get(..l * d).unwrap_or(&[]).to_vec())?;
    let et = Tensor::contiguous(&[l, d], er.get(..l * d).unwrap_or(&[]).to_vec())?;
    let qi = Input::<B, T>::new(b, &qt)?;
    let ei = Input::<B, T>::new(b, &et)?;
    let mut padded = b
        .alloc::<T>(padded_len(l).map_err(Failure::setup)?)
        .map_err(Failure::setup)?;
    let s = relative_logits(
        b,
        qi.view()?,
        ei.view()?,
        core::borrow::BorrowMut::borrow_mut(&mut padded),
    )
    .map_err(Failure::Kernel)?;
    let mut host = vec![T::default(); l * l];
    {
        // Download through a contiguous copy of the view (a cast to the same type).
        let mut copy = b.alloc::<T>(l * l).map_err(Failure::setup)?;
        b.cast(
            s,
            seqcore::ViewMut::new(
                core::borrow::BorrowMut::borrow_mut(&mut copy),
                Layout::contiguous(&[l, l]).map_err(Failure::setup)?,
            )
            .map_err(Failure::setup)?,
        )
        .map_err(Failure::Kernel)?;
        b.read(core::borrow::Borrow::borrow(&copy), &mut host)
            .map_err(Failure::setup)?;
    }
    let got = widen(&host);
    let mut gl = Vec::new();
    let mut want = Vec::new();
    let mut bounds = Vec::new();
    for i in 0..l {
        for j in 0..=i {
            let r = l - 1 - i + j;
            let (mut dot, mut abs) = (0.0, 0.0);
            for c in 0..d {
                dot += q[i * d + c] * er[r * d + c];
                abs += (q[i * d + c] * er[r * d + c]).abs();
            }
            gl.push(got[i * l + j]);
            want.push(crate::harness::round::<T>(dot));
            bounds.push(crate::tolerance::gemm::<T>(d, 1.0, abs, 0.0));
        }
    }
    compare("s_rel (skew)", &gl, &want, |i| {
        bounds.get(i).copied().unwrap_or(Bound::EXACT)
    })?;
    Ok(())
}

fn index() -> impl Strategy<Value = RelativeIndex> {
    prop_oneof![
        (0usize..6, 0usize..6).prop_map(|(a, b)| RelativeIndex::Clipped {
            max_back: a,
            max_fwd: b
        }),
        (any::<bool>(), 2usize..9, 1usize..40).prop_map(|(bi, n, md)| {
            let nb = if bi { 2 * n } else { n };
            let per = if bi { nb / 2 } else { nb };
            RelativeIndex::Buckets {
                bidirectional: bi,
                num_buckets: nb,
                max_distance: md.max(per / 2 + 1),
            }
        }),
    ]
}

/// Random cases: Shaw (clipped, key and value embeddings), Music Transformer (`Lq = Lk`,
/// `max_back = L - 1`, causal) and T5 buckets with a bias; cross lengths, strided storage.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        (
            1usize..3,
            1usize..3,
            crate::strategies::dim(13),
            crate::strategies::dim(13),
        ),
        (1usize..9, 1usize..9),
        (index(), any::<bool>(), 0usize..3, any::<bool>()),
        (any::<bool>(), any::<bool>(), any::<bool>(), storage()),
    )
        .prop_flat_map(
            |((nb, nh, lq, lk), (d, dv), (idx, causal, kind, big), (hk, hv, hb, o))| {
                // kind 0: as drawn; 1: Music Transformer; 2: T5 (bias only, scale 1).
                let (lk, idx, causal) = match kind {
                    1 => (
                        lq,
                        RelativeIndex::Clipped {
                            max_back: lq.saturating_sub(1),
                            max_fwd: 0,
                        },
                        true,
                    ),
                    _ => (lk, idx, causal),
                };
                let (hk, hv, hb) = match kind {
                    1 => (true, false, false),
                    2 => (false, false, true),
                    _ => (hk, hv, hb),
                };
                let rows = idx.rows();
                let scale = if kind == 2 {
                    1.0
                } else {
                    1.0 / (d as f64).sqrt()
                };
                let sp = Specials {
                    huge: false,
                    ..Specials::default()
                };
                let mag = if big { 30.0 } else { 1.0 };
                let opt = |on: bool, shape: Vec<usize>| {
                    if on {
                        tensor(shape, 0.5, sp).prop_map(Some).boxed()
                    } else {
                        Just(None).boxed()
                    }
                };
                (
                    tensor(vec![nb, nh, lq, d], mag, sp),
                    tensor(vec![nb, nh, lk, d], 1.0, sp),
                    tensor(vec![nb, nh, lk, dv], 1.0, sp),
                    opt(hk, vec![nh, rows, d]),
                    opt(hv, vec![nh, rows, dv]),
                    opt(hb, vec![nh, rows]),
                )
                    .prop_map(move |(q, k, v, rel_k, rel_v, rel_bias)| Case {
                        params: RelativeParams {
                            scale,
                            causal,
                            index: idx,
                        },
                        q,
                        k,
                        v,
                        rel_k,
                        rel_v,
                        rel_bias,
                        o,
                    })
            },
        )
}

fn ramp(n: usize, s: f64, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i + seed) * 37 % 101) as f64 / 50.0 - 1.0) * s)
        .collect()
}

/// Fixed cases: L = 0 and 1, causal with Lq > Lk (queries that see no key: zeros), Music
/// Transformer at L = 17, logits near 1e4, a T5 decoder step.
///
/// # Errors
/// Never for these shapes.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let mk = |nb: usize,
              nh: usize,
              lq: usize,
              lk: usize,
              d: usize,
              idx: RelativeIndex,
              causal: bool,
              qs: f64,
              rk: bool,
              rv: bool,
              rb: bool|
     -> Result<Case, Failure> {
        let rows = idx.rows();
        let t = |shape: &[usize], s: f64, seed: usize| {
            Tensor::contiguous(shape, ramp(shape.iter().product(), s, seed))
        };
        Ok(Case {
            params: RelativeParams {
                scale: 1.0 / (d as f64).sqrt(),
                causal,
                index: idx,
            },
            q: t(&[nb, nh, lq, d], qs, 1)?,
            k: t(&[nb, nh, lk, d], 1.0, 2)?,
            v: t(&[nb, nh, lk, d], 1.0, 3)?,
            rel_k: if rk {
                Some(t(&[nh, rows, d], 0.5, 4)?)
            } else {
                None
            },
            rel_v: if rv {
                Some(t(&[nh, rows, d], 0.5, 5)?)
            } else {
                None
            },
            rel_bias: if rb {
                Some(t(&[nh, rows], 0.5, 6)?)
            } else {
                None
            },
            o: Storage::Contiguous,
        })
    };
    let shaw = RelativeIndex::Clipped {
        max_back: 2,
        max_fwd: 2,
    };
    let music = |l: usize| RelativeIndex::Clipped {
        max_back: l.saturating_sub(1),
        max_fwd: 0,
    };
    let t5 = RelativeIndex::Buckets {
        bidirectional: false,
        num_buckets: 32,
        max_distance: 128,
    };
    Ok(vec![
        mk(1, 2, 0, 0, 4, shaw, false, 1.0, true, true, false)?,
        mk(1, 2, 1, 1, 4, shaw, true, 1.0, true, true, false)?,
        mk(1, 1, 3, 5, 4, shaw, true, 1.0, true, true, true)?,
        mk(1, 1, 5, 3, 4, shaw, true, 1.0, true, true, false)?,
        mk(1, 1, 4, 0, 4, shaw, false, 1.0, true, false, false)?,
        mk(2, 3, 17, 17, 8, music(17), true, 1.0, true, false, false)?,
        mk(1, 2, 9, 9, 16, music(9), true, 2e3, true, false, false)?,
        mk(1, 4, 1, 200, 8, t5, true, 1.0, false, false, true)?,
    ])
}

/// One small call, to learn whether `b` runs the kernel at all.
///
/// # Errors
/// The kernel's error.
pub fn probe<B: Allocate, T: Element>(b: &B) -> Result<(), Failure> {
    let t = Tensor::contiguous(&[1, 1, 1, 1], vec![1.0])?;
    let x = Input::<B, T>::new(b, &t)?;
    let mut o = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[1, 1, 1, 1]).map_err(Failure::setup)?,
        None,
    )?;
    let mut ws = b.alloc::<T::Acc>(1).map_err(Failure::setup)?;
    let p = RelativeParams {
        scale: 1.0,
        causal: true,
        index: RelativeIndex::Clipped {
            max_back: 0,
            max_fwd: 0,
        },
    };
    b.relative_attention(
        &p,
        x.view()?,
        x.view()?,
        x.view()?,
        None,
        None,
        None,
        o.view()?,
        core::borrow::BorrowMut::borrow_mut(&mut ws),
    )
    .map_err(Failure::Kernel)
}

/// Timing: Music Transformer relative attention, causal, `[B, H, L, D]`.
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(
    b: &'a B,
    nb: usize,
    nh: usize,
    l: usize,
    d: usize,
) -> Result<Bench<'a>, Failure> {
    let t = |shape: &[usize], seed: usize| {
        Tensor::contiguous(shape, ramp(shape.iter().product(), 1.0, seed))
    };
    let q = Input::<B, T>::new(b, &t(&[nb, nh, l, d], 1)?)?;
    let k = Input::<B, T>::new(b, &t(&[nb, nh, l, d], 2)?)?;
    let v = Input::<B, T>::new(b, &t(&[nb, nh, l, d], 3)?)?;
    let er = Input::<B, T>::new(b, &t(&[nh, l, d], 4)?)?;
    let mut o = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[nb, nh, l, d]).map_err(Failure::setup)?,
        None,
    )?;
    let mut ws = b
        .alloc::<T::Acc>(workspace_len(d))
        .map_err(Failure::setup)?;
    let att = SkewedAttention { scale: None };
    // Causal: L (L + 1) / 2 pairs, each q.k (2D), q.E^r (2D) and the value update (2D).
    let pairs = (l * (l + 1) / 2 * nb * nh) as f64;
    Ok(Bench {
        run: Box::new(move || {
            att.forward(
                b,
                q.view()?,
                k.view()?,
                v.view()?,
                er.view()?,
                o.view()?,
                core::borrow::BorrowMut::borrow_mut(&mut ws),
            )
            .map_err(Failure::Kernel)
        }),
        work: Work::Flops(pairs * 6.0 * d as f64),
        size: format!("{nb}x{nh}x{l}x{d}"),
    })
}

/// `[L, H, D]` seen as `[1, H, L, D]`.
fn heads_first(t: &Tensor) -> Result<(Tensor, [usize; 3]), Failure> {
    let [l, h, d] = match *t.shape() {
        [l, h, d] => [l, h, d],
        _ => return Err(bad("tensors must be [L, H, D]")),
    };
    let lay = Layout::contiguous(&[l, h, d])
        .and_then(|x| x.permute(&[1, 0, 2]))
        .and_then(|x| x.unsqueeze(0))
        .map_err(Failure::setup)?;
    let mut vals = Vec::with_capacity(t.values.len());
    for hh in 0..h {
        for ll in 0..l {
            for dd in 0..d {
                vals.push(
                    t.values
                        .get((ll * h + hh) * d + dd)
                        .copied()
                        .unwrap_or(f64::NAN),
                );
            }
        }
    }
    Ok((Tensor::with_layout(lay, l * h * d, vals)?, [l, h, d]))
}

fn out_view<'o, B: Allocate, T: Element>(
    out: &'o mut Output<B, T>,
) -> Result<seqcore::ViewMut<'o, B, T>, Failure> {
    out.view()?
        .map_layout(|l| l.permute(&[1, 0, 2])?.unsqueeze(0))
        .map_err(Failure::setup)
}

/// Runs a `relative_attention` vector (Music Transformer, causal): through the fused kernel and
/// through the paper's skew with the dense kernels; both must pass.
///
/// # Errors
/// Why the case failed.
pub fn run_vector<B: Allocate, T: Element>(b: &B, case: &VCase) -> Result<Agreement, Failure> {
    let causal = case
        .params
        .get("causal")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if !causal {
        return Err(bad(
            "relative_attention: `er` embeds distances i - j >= 0 only; causal must be true",
        ));
    }
    let (q, [l, h, d]) = heads_first(&case.input("q")?)?;
    let (k, _) = heads_first(&case.input("k")?)?;
    let (v, [_, _, dv]) = heads_first(&case.input("v")?)?;
    let er = case.input("er")?;
    if er.shape() != [h, l, d] {
        return Err(bad("`er` must be [H, L, D]"));
    }
    let scale = case
        .params
        .get("scale")
        .map(crate::vectors::number)
        .transpose()?;
    let att = SkewedAttention { scale };
    let (qi, ki, vi, ei) = (
        Input::<B, T>::new(b, &q)?,
        Input::<B, T>::new(b, &k)?,
        Input::<B, T>::new(b, &v)?,
        Input::<B, T>::new(b, &er)?,
    );
    let mut out = crate::vectors::out::<B, T>(b, case, "o")?;
    let mut ws = b
        .alloc::<T::Acc>(workspace_len(dv))
        .map_err(Failure::setup)?;
    att.forward(
        b,
        qi.view()?,
        ki.view()?,
        vi.view()?,
        ei.view()?,
        out_view(&mut out)?,
        core::borrow::BorrowMut::borrow_mut(&mut ws),
    )
    .map_err(Failure::Kernel)?;
    let fused = case.check("o", &widen(&out.finish(b, "o")?))?;
    // The dense-kernel skew stores logits and probabilities in `T` between kernels: in f16 and
    // bf16 that rounding is outside an f32-accumulation bound, so it is held to the vectors in
    // f32 and f64 only (the `relative_attention` row checks its logits in every type).
    if !matches!(T::DTYPE, seqcore::DType::F32 | seqcore::DType::F64) {
        return Ok(fused);
    }
    let mut out2 = crate::vectors::out::<B, T>(b, case, "o")?;
    let mut padded = b
        .alloc::<T>(padded_len(l).map_err(Failure::setup)?)
        .map_err(Failure::setup)?;
    let mut probs = b.alloc::<T>(l * l).map_err(Failure::setup)?;
    att.forward_skewed(
        b,
        qi.view()?,
        ki.view()?,
        vi.view()?,
        ei.view()?,
        out_view(&mut out2)?,
        core::borrow::BorrowMut::borrow_mut(&mut padded),
        core::borrow::BorrowMut::borrow_mut(&mut probs),
    )
    .map_err(Failure::Kernel)?;
    let skewed = case.check("o", &widen(&out2.finish(b, "o")?))?;
    Ok(fused.worst(skewed))
}

/// Runs a `shaw_attention` vector (this crate's format row): `q, k [L, H, D]`, `v [L, H, Dv]`,
/// `ak [2k+1, D]`, optional `av [2k+1, Dv]` (shared by the heads, as in the paper), params `clip`,
/// `causal`, optional `scale`.
///
/// # Errors
/// Why the case failed.
pub fn run_shaw_vector<B: Allocate, T: Element>(b: &B, case: &VCase) -> Result<Agreement, Failure> {
    let causal = case
        .params
        .get("causal")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let clip = case.param_f64("clip", None)? as usize;
    let scale = case
        .params
        .get("scale")
        .map(crate::vectors::number)
        .transpose()?;
    let (q, _) = heads_first(&case.input("q")?)?;
    let (k, _) = heads_first(&case.input("k")?)?;
    let (v, [_, _, dv]) = heads_first(&case.input("v")?)?;
    let ak = Input::<B, T>::new(b, &case.input("ak")?)?;
    let av = case
        .inputs
        .contains_key("av")
        .then(|| case.input("av").and_then(|t| Input::<B, T>::new(b, &t)))
        .transpose()?;
    let (qi, ki, vi) = (
        Input::<B, T>::new(b, &q)?,
        Input::<B, T>::new(b, &k)?,
        Input::<B, T>::new(b, &v)?,
    );
    let mut out = crate::vectors::out::<B, T>(b, case, "o")?;
    let mut ws = b
        .alloc::<T::Acc>(workspace_len(dv))
        .map_err(Failure::setup)?;
    let shaw = seq_attention::relative::shaw::ShawAttention {
        clip,
        scale,
        causal,
    };
    shaw.forward(
        b,
        qi.view()?,
        ki.view()?,
        vi.view()?,
        ak.view()?,
        av.as_ref().map(Input::view).transpose()?,
        out_view(&mut out)?,
        core::borrow::BorrowMut::borrow_mut(&mut ws),
    )
    .map_err(Failure::Kernel)?;
    case.check("o", &widen(&out.finish(b, "o")?))
}

/// Runs a `t5_relative_bucket` vector: `relative_position [N]` (key minus query position) into
/// `bucket [N]`, params `bidirectional`, `num_buckets`, `max_distance`. Exact.
///
/// # Errors
/// Why the case failed.
pub fn run_t5_vector(case: &VCase) -> Result<Agreement, Failure> {
    let bi = case
        .params
        .get("bidirectional")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    let n = case.param_f64("num_buckets", None)? as usize;
    let md = case.param_f64("max_distance", None)? as usize;
    let rp = case.input("relative_position")?;
    let got = rp
        .values
        .iter()
        .map(|&p| {
            seq_attention::relative::t5::relative_position_bucket(p as i64, bi, n, md)
                .map(|x| x as f64)
                .map_err(Failure::Kernel)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let want = &case.expected("bucket")?.data;
    compare("bucket", &got, want, |_| Bound::EXACT)
}

/// A host view for the reference.
fn hv<'a>(x: &'a [f64], s: &[usize]) -> Result<View<'a, Reference, f64>, Failure> {
    Reference.view(x, s).map_err(Failure::setup)
}
