//! Fused scaled-dot-product attention with an online softmax over key tiles (Milakov & Gimelshein
//! 2018, "Online normalizer calculation for softmax"; Dao et al. 2022, FlashAttention, Algorithm
//! 1, one query row at a time).
//!
//! For each query row the kernel keeps the running maximum `m`, the running denominator `l` and
//! the unnormalised output `acc` (`Dv` values) in the accumulation type. Each tile of
//! [`KEY_TILE`] keys is scored into the workspace, then folded in:
//!
//! ```text
//! m' = max(m, max_j s_j);  a = exp(m - m');  l' = a l + sum_j exp(s_j - m');
//! acc' = a acc + sum_j exp(s_j - m') v_j;     at the end o = acc / l,  lse = m + ln l
//! ```
//!
//! The `L x L` score matrix never exists: the workspace is `Dv + KEY_TILE` accumulation-type
//! values whatever the sequence lengths. A tile whose keys are all hidden is skipped before any
//! `-inf - -inf` can arise; a row with no visible key gives zeros and `lse = -inf`. NaN in a visible
//! logit makes the whole row NaN (as PyTorch); hidden keys are never read.

use crate::attention::AttentionPlan;
use crate::element::{Element, Real};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::reference::Reference;
use crate::view::{View, ViewMut};

/// Keys scored per tile by the portable kernel.
pub const KEY_TILE: usize = 64;

/// Workspace elements (of the accumulation type) the portable kernel needs: `Dv + KEY_TILE`,
/// independent of the sequence lengths.
///
/// # Errors
/// [`Error::Overflow`] when the sum overflows `usize`.
pub fn workspace_len(value_dim: usize) -> Result<usize> {
    value_dim
        .checked_add(KEY_TILE)
        .ok_or(Error::Overflow { arg: "value_dim" })
}

fn workspace_len_of(a: usize, b: usize) -> usize {
    a.saturating_add(b)
}

/// Offset and strides of a rank-`N` layout.
fn parts<const N: usize>(l: &Layout, arg: &'static str) -> Result<(usize, [usize; N])> {
    let s = <[usize; N]>::try_from(l.strides()).map_err(|_| Error::Rank {
        arg,
        got: l.rank(),
        min: N,
        max: N,
    })?;
    Ok((l.offset(), s))
}

fn at<T: Copy>(s: &[T], i: usize) -> Result<T> {
    s.get(i).copied().ok_or(Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len: s.len(),
    })
}

/// `sum_d a[a0 + d sa] b[b0 + d sb]` over `n` elements, in the accumulation type, in index order.
fn dot<T: Element>(
    a: &[T],
    a0: usize,
    sa: usize,
    b: &[T],
    b0: usize,
    sb: usize,
    n: usize,
) -> Result<T::Acc> {
    let mut acc = T::Acc::zero();
    if sa == 1 && sb == 1 {
        let x = a.get(a0..a0 + n).ok_or(Error::OutOfBounds {
            arg: "q",
            end: a0 + n,
            len: a.len(),
        })?;
        let y = b.get(b0..b0 + n).ok_or(Error::OutOfBounds {
            arg: "k",
            end: b0 + n,
            len: b.len(),
        })?;
        for (&x, &y) in x.iter().zip(y) {
            acc += x.to_acc() * y.to_acc();
        }
    } else {
        for d in 0..n {
            acc += at(a, a0 + d * sa)?.to_acc() * at(b, b0 + d * sb)?.to_acc();
        }
    }
    Ok(acc)
}

/// The views of one call, on host memory.
#[derive(Debug)]
pub struct Operands<'a, T: Element> {
    /// Queries `[B, Hq, Lq, D]`.
    pub q: View<'a, Reference, T>,
    /// Keys `[B, Hkv, Lk, D]`.
    pub k: View<'a, Reference, T>,
    /// Values `[B, Hkv, Lk, Dv]`.
    pub v: View<'a, Reference, T>,
    /// Key padding `[B, Lk]` (nonzero: seen).
    pub key_mask: Option<View<'a, Reference, u8>>,
    /// Additive bias `[B, Hq, Lq, Lk]`.
    pub bias: Option<View<'a, Reference, T>>,
    /// Output `[B, Hq, Lq, Dv]`.
    pub o: ViewMut<'a, Reference, T>,
    /// Log-sum-exp `[B, Hq, Lq]`.
    pub lse: Option<ViewMut<'a, Reference, T::Acc>>,
}

/// Runs the kernel on host views already checked by [`AttentionPlan::check`]; `workspace` holds
/// at least [`workspace_len`] elements.
///
/// # Errors
/// [`Error::Capacity`] naming `workspace` when it is too short; [`Error::OutOfBounds`] cannot
/// happen for views that passed construction.
#[allow(clippy::too_many_lines)]
pub fn attention<T: Element>(
    plan: &AttentionPlan<T::Acc>,
    ops: Operands<'_, T>,
    workspace: &mut [T::Acc],
) -> Result<()> {
    let d = plan.dims;
    let need = workspace_len(d.value_dim)?;
    if workspace.len() < need {
        return Err(Error::Capacity {
            arg: "workspace",
            needed: need,
            capacity: workspace.len(),
        });
    }
    let (acc, rest) = workspace.split_at_mut(d.value_dim);
    let capacity = workspace_len_of(d.value_dim, rest.len());
    let scores = rest.get_mut(..KEY_TILE).ok_or(Error::Capacity {
        arg: "workspace",
        needed: need,
        capacity,
    })?;

    let Operands {
        q,
        k,
        v,
        key_mask,
        bias,
        mut o,
        mut lse,
    } = ops;
    let (q0, [qb, qh, qi, qd]) = parts::<4>(q.layout(), "q")?;
    let (k0, [kb, kh, kj, kd]) = parts::<4>(k.layout(), "k")?;
    let (v0, [vb, vh, vj, vd]) = parts::<4>(v.layout(), "v")?;
    let (o0, [ob, oh, oi, od]) = parts::<4>(o.layout(), "o")?;
    let mask = match &key_mask {
        Some(m) => Some((m.mem(), parts::<2>(m.layout(), "key_mask")?)),
        None => None,
    };
    let bias = match &bias {
        Some(b) => Some((b.mem(), parts::<4>(b.layout(), "bias")?)),
        None => None,
    };
    let lse_parts = match &lse {
        Some(l) => Some(parts::<3>(l.layout(), "lse")?),
        None => None,
    };
    let (qm, km, vm) = (q.mem(), k.mem(), v.mem());
    let om = o.mem_mut();
    let neg_inf = T::Acc::neg_infinity();

    for b in 0..d.batch {
        for h in 0..d.heads_q {
            let g = d.kv_head(h);
            for i in 0..d.len_q {
                let qrow = q0 + b * qb + h * qh + i * qi;
                let mut m = neg_inf;
                let mut l = T::Acc::zero();
                let mut nan = false;
                acc.fill(T::Acc::zero());
                let keys = plan.keys(i);
                let mut start = keys.start;
                while start < keys.end {
                    let n = (keys.end - start).min(KEY_TILE);
                    // Score the tile.
                    let mut tile_max = neg_inf;
                    for (t, s_out) in scores.iter_mut().take(n).enumerate() {
                        let j = start + t;
                        if let Some((mm, (m0, [mb, mj]))) = mask {
                            if at(mm, m0 + b * mb + j * mj)? == 0 {
                                *s_out = neg_inf;
                                continue;
                            }
                        }
                        let mut s = plan.scale
                            * dot(
                                qm,
                                qrow,
                                qd,
                                km,
                                k0 + b * kb + g * kh + j * kj,
                                kd,
                                d.head_dim,
                            )?;
                        if let Some(cap) = plan.softcap {
                            s = cap * (s / cap).tanh();
                        }
                        if let Some((bm, (b0, [bb, bh, bi, bj]))) = bias {
                            s += at(bm, b0 + b * bb + h * bh + i * bi + j * bj)?.to_acc();
                        }
                        if s.is_nan() {
                            nan = true;
                        } else if s > tile_max {
                            tile_max = s;
                        }
                        *s_out = s;
                    }
                    start += n;
                    if nan {
                        break;
                    }
                    let m_new = if tile_max > m { tile_max } else { m };
                    if m_new == neg_inf {
                        // Every key so far hidden: nothing to fold in.
                        continue;
                    }
                    // `m` is -inf (alpha = 0, acc and l are 0) or finite; `m_new` is finite or
                    // +inf, where the NaN of inf - inf is the answer (as PyTorch).
                    let alpha = (m - m_new).exp();
                    if alpha != T::Acc::one() {
                        l *= alpha;
                        for a in acc.iter_mut() {
                            *a *= alpha;
                        }
                    }
                    m = m_new;
                    for (t, &s) in scores.iter().take(n).enumerate() {
                        if s == neg_inf {
                            continue;
                        }
                        let p = (s - m).exp();
                        l += p;
                        let vrow = v0 + b * vb + g * vh + (start - n + t) * vj;
                        if vd == 1 {
                            let vs =
                                vm.get(vrow..vrow + d.value_dim).ok_or(Error::OutOfBounds {
                                    arg: "v",
                                    end: vrow + d.value_dim,
                                    len: vm.len(),
                                })?;
                            for (a, &x) in acc.iter_mut().zip(vs) {
                                *a += p * x.to_acc();
                            }
                        } else {
                            for (e, a) in acc.iter_mut().enumerate() {
                                *a += p * at(vm, vrow + e * vd)?.to_acc();
                            }
                        }
                    }
                }
                // Write the row.
                let orow = o0 + b * ob + h * oh + i * oi;
                let (value, row_lse) = if nan {
                    (None, T::Acc::nan())
                } else if l == T::Acc::zero() {
                    (Some(T::Acc::zero()), neg_inf)
                } else {
                    (None, m + l.ln())
                };
                for (e, &a) in acc.iter().enumerate() {
                    let y = match value {
                        Some(z) => z,
                        None if nan => T::Acc::nan(),
                        None => a / l,
                    };
                    let len = om.len();
                    let slot = om.get_mut(orow + e * od).ok_or(Error::OutOfBounds {
                        arg: "o",
                        end: orow + e * od + 1,
                        len,
                    })?;
                    *slot = T::from_acc(y);
                }
                if let (Some(lv), Some((l0, [lb, lh, li]))) = (lse.as_mut(), lse_parts) {
                    let at = l0 + b * lb + h * lh + i * li;
                    let lm = lv.mem_mut();
                    let len = lm.len();
                    let slot = lm.get_mut(at).ok_or(Error::OutOfBounds {
                        arg: "lse",
                        end: at + 1,
                        len,
                    })?;
                    *slot = row_lse;
                }
            }
        }
    }
    Ok(())
}

/// Combines two partial attention results over disjoint key sets into the result over their union
/// (the merge of Milakov & Gimelshein 2018, eq. 4, as in ring attention and flash-decoding):
///
/// ```text
/// lse = ln(exp(lse_a) + exp(lse_b)),   o = exp(lse_a - lse) o_a + exp(lse_b - lse) o_b
/// ```
///
/// computed with the larger `lse` subtracted first. A side with `lse = -inf` (no visible key)
/// contributes nothing; both `-inf` give zeros and `-inf`; NaN in either `lse` gives NaN. Shapes
/// were checked by the caller: `o_* [.., Dv]`, `lse_* [..]`.
///
/// # Errors
/// [`Error::OutOfBounds`] cannot happen for views that passed construction.
pub fn merge<T: Element>(
    a: (View<'_, Reference, T>, View<'_, Reference, T::Acc>),
    b: (View<'_, Reference, T>, View<'_, Reference, T::Acc>),
    mut o: ViewMut<'_, Reference, T>,
    mut lse: Option<ViewMut<'_, Reference, T::Acc>>,
) -> Result<()> {
    let (oa_rows, dv, oa_s) = a.0.layout().split_last();
    let (ob_rows, _, ob_s) = b.0.layout().split_last();
    let (o_rows, _, o_s) = o.layout().split_last();
    let lse_layout = lse.as_ref().map(|l| *l.layout());
    let mut lse_out = lse_layout.map(|l| l.offsets());
    let neg_inf = T::Acc::neg_infinity();
    let rows = oa_rows
        .offsets()
        .zip(ob_rows.offsets())
        .zip(o_rows.offsets())
        .zip(a.1.layout().offsets().zip(b.1.layout().offsets()));
    for (((ra, rb), ro), (la, lb)) in rows {
        let (xa, xb) = (at(a.1.mem(), la)?, at(b.1.mem(), lb)?);
        let m = if xa > xb { xa } else { xb };
        let (wa, wb, out_lse) = if xa.is_nan() || xb.is_nan() {
            (T::Acc::nan(), T::Acc::nan(), T::Acc::nan())
        } else if m == neg_inf {
            (T::Acc::zero(), T::Acc::zero(), neg_inf)
        } else {
            let (ea, eb) = ((xa - m).exp(), (xb - m).exp());
            let z = ea + eb;
            (ea / z, eb / z, m + z.ln())
        };
        let om = o.mem_mut();
        for e in 0..dv {
            // A side of weight 0 is not read: 0 * NaN would leak a hidden side's contents.
            let mut y = T::Acc::zero();
            if wa != T::Acc::zero() {
                y += wa * at(a.0.mem(), ra + e * oa_s)?.to_acc();
            }
            if wb != T::Acc::zero() {
                y += wb * at(b.0.mem(), rb + e * ob_s)?.to_acc();
            }
            let len = om.len();
            let slot = om.get_mut(ro + e * o_s).ok_or(Error::OutOfBounds {
                arg: "o",
                end: ro + e * o_s + 1,
                len,
            })?;
            *slot = T::from_acc(y);
        }
        if let (Some(lv), Some(it)) = (lse.as_mut(), lse_out.as_mut()) {
            let i = it.next().unwrap_or(usize::MAX);
            let lm = lv.mem_mut();
            let len = lm.len();
            let slot = lm.get_mut(i).ok_or(Error::OutOfBounds {
                arg: "lse",
                end: i.saturating_add(1),
                len,
            })?;
            *slot = out_lse;
        }
    }
    Ok(())
}
