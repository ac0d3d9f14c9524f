//! The `attention_merge` row: split the keys of an `sdpa` case into `P` chunks, run the fused
//! kernel on each chunk with its log-sum-exp (each chunk's queries at the offset that keeps the
//! keys' positions), fold the partials with [`seqcore::Backend::attention_merge`] in `T`, and hold
//! the result to the whole-sequence reference. The bound is the `sdpa` bound plus, per merge, the
//! rounding of a partial output to `T` and the merge's own arithmetic: `P (2u + 8 ua) sum p |v|`.

use proptest::prelude::*;
use seqcore::{Allocate, AttentionMasks, AttentionParams, Element, Layout, View};

use super::sdpa::{self, Case};
use crate::compare::{Agreement, compare};
use crate::harness::{Input, Output, round, widen};
use crate::properties::{Bench, Work};
use crate::{Failure, tolerance};

/// An `sdpa` case and where its keys are cut (fractions of `Lk`).
#[derive(Clone, Debug, PartialEq)]
pub struct MergeCase {
    /// The attention call.
    pub case: Case,
    /// Cut points in `[0, 1]`.
    pub cuts: Vec<f64>,
}

/// Random merge cases.
pub fn cases() -> impl Strategy<Value = MergeCase> {
    (sdpa::cases(), prop::collection::vec(0.0f64..=1.0, 0..5))
        .prop_map(|(case, cuts)| MergeCase { case, cuts })
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in [0, lk]
fn cut(f: f64, lk: usize) -> usize {
    ((f.clamp(0.0, 1.0) * lk as f64) as usize).min(lk)
}

/// Runs `mc` on `b` in `T`.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, mc: &MergeCase) -> Result<Agreement, Failure> {
    let c = &mc.case;
    let d = c.dims;
    let (q, k, v) = (c.q.rounded::<T>(), c.k.rounded::<T>(), c.v.rounded::<T>());
    let bias = c.bias.as_ref().map(crate::harness::Tensor::rounded::<T>);
    let ex = sdpa::reference(
        &c.params,
        &d,
        &q,
        &k,
        &v,
        c.key_mask.as_deref(),
        bias.as_deref(),
        tolerance::ua::<T>(),
    )?;
    let mut bounds: Vec<usize> = mc.cuts.iter().map(|&f| cut(f, d.len_k)).collect();
    bounds.push(0);
    bounds.push(d.len_k);
    bounds.sort_unstable();
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
        Some(m) => Some(sdpa::upload_mask(b, m)?),
        None => None,
    };
    let ol =
        Layout::contiguous(&[d.batch, d.heads_q, d.len_q, d.value_dim]).map_err(Failure::setup)?;
    let ll = Layout::contiguous(&[d.batch, d.heads_q, d.len_q]).map_err(Failure::setup)?;
    let off = c
        .params
        .query_offset
        .unwrap_or(d.len_k as i64 - d.len_q as i64);
    let mut ws = b
        .alloc::<T::Acc>(
            b.attention_workspace_len::<T>(&d)
                .map_err(Failure::Kernel)?,
        )
        .map_err(Failure::setup)?;
    let mut partials = Vec::new();
    for w in bounds.windows(2) {
        let (lo, hi) = match *w {
            [lo, hi] => (lo, hi),
            _ => continue,
        };
        let mut o = Output::<B, T>::new(b, &ol, None)?;
        let mut lse = Output::<B, T::Acc>::new(b, &ll, None)?;
        let masks = AttentionMasks {
            key_mask: match &mi {
                Some(m) => Some(
                    View::new(
                        core::borrow::Borrow::borrow(m),
                        Layout::contiguous(&[d.batch, d.len_k]).map_err(Failure::setup)?,
                    )
                    .and_then(|m| m.narrow(1, lo, hi - lo))
                    .map_err(Failure::setup)?,
                ),
                None => None,
            },
            bias: match &bi {
                Some(x) => Some(x.view()?.narrow(3, lo, hi - lo).map_err(Failure::setup)?),
                None => None,
            },
        };
        let p = AttentionParams {
            query_offset: Some(off - lo as i64),
            ..c.params
        };
        b.attention(
            &p,
            qi.view()?,
            ki.view()?.narrow(2, lo, hi - lo).map_err(Failure::setup)?,
            vi.view()?.narrow(2, lo, hi - lo).map_err(Failure::setup)?,
            masks,
            o.view()?,
            Some(lse.view()?),
            core::borrow::BorrowMut::borrow_mut(&mut ws),
        )
        .map_err(Failure::Kernel)?;
        partials.push((o, lse));
    }
    let merges = partials.len().saturating_sub(1);
    let mut it = partials.into_iter();
    let mut acc = it.next().ok_or_else(|| Failure::Setup("no chunk".into()))?;
    for (mut po, mut pl) in it {
        let mut o = Output::<B, T>::new(b, &ol, None)?;
        let mut lse = Output::<B, T::Acc>::new(b, &ll, None)?;
        b.attention_merge(
            acc.0.view()?.as_view(),
            acc.1.view()?.as_view(),
            po.view()?.as_view(),
            pl.view()?.as_view(),
            o.view()?,
            Some(lse.view()?),
        )
        .map_err(Failure::Kernel)?;
        acc = (o, lse);
    }
    let got = widen(&acc.0.finish(b, "o")?);
    let want: Vec<f64> = ex.o.iter().map(|&x| round::<T>(x)).collect();
    let extra = merges as f64 * (2.0 * tolerance::u::<T>() + 8.0 * tolerance::ua::<T>());
    let dv = d.value_dim;
    let a = compare("o", &got, &want, |i| sdpa::o_bound::<T>(&ex, dv, i, extra))?;
    let got_lse = widen(&acc.1.finish(b, "lse")?);
    let lse_ok = compare("lse", &got_lse, &ex.lse, |i| {
        let mut bd = sdpa::o_bound::<T>(&ex, 1, i, 0.0);
        bd.atol = tolerance::floor::<T>()
            + ex.e_s.get(i).copied().unwrap_or(0.0)
            + (ex.visible.get(i).copied().unwrap_or(0) as f64 + 8.0 + 4.0 * merges as f64)
                * tolerance::ua::<T>();
        bd.rtol = 4.0 * tolerance::ua::<T>();
        bd
    })?;
    Ok(a.worst(lse_ok))
}

/// Timing: merging two partial states of `H = 8`, `Lq = 1024`, `Dv = 64` (bytes moved).
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(b: &'a B) -> Result<Bench<'a>, Failure> {
    let (h, l, dv) = (8usize, 1024usize, 64usize);
    let t = |s: &[usize], f: fn(usize) -> f64| {
        crate::harness::Tensor::contiguous(s, (0..s.iter().product::<usize>()).map(f).collect())
    };
    let oa = Input::<B, T>::new(b, &t(&[h, l, dv], |i| (i % 17) as f64 / 8.0 - 1.0)?)?;
    let ob = Input::<B, T>::new(b, &t(&[h, l, dv], |i| (i % 13) as f64 / 6.0 - 1.0)?)?;
    let la = Input::<B, T::Acc>::new(b, &t(&[h, l], |i| (i % 11) as f64)?)?;
    let lb = Input::<B, T::Acc>::new(b, &t(&[h, l], |i| (i % 7) as f64)?)?;
    let mut o = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[h, l, dv]).map_err(Failure::setup)?,
        None,
    )?;
    let mut lse = Output::<B, T::Acc>::new(
        b,
        &Layout::contiguous(&[h, l]).map_err(Failure::setup)?,
        None,
    )?;
    let elems = (h * l * dv) as f64;
    let lses = (h * l) as f64;
    let bytes = 3.0 * elems * size_of::<T>() as f64 + 3.0 * lses * size_of::<T::Acc>() as f64;
    Ok(Bench {
        run: Box::new(move || {
            b.attention_merge(
                oa.view()?,
                la.view()?,
                ob.view()?,
                lb.view()?,
                o.view()?,
                Some(lse.view()?),
            )
            .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(bytes),
        size: format!("H{h} L{l} Dv{dv}"),
    })
}
