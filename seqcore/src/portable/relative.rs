//! Attention with relative-position terms, fused with an online softmax (one pass over the keys,
//! a workspace of `Dv` accumulators, never the `Lq x Lk` score matrix):
//!
//! ```text
//! e_ij  = scale * (q_i . k_j + q_i . a^K[h, r(i, j)]) + bias[h, r(i, j)]
//! o_i   = sum_j softmax_j(e_ij) (v_j + a^V[h, r(i, j)])
//! ```
//!
//! - Shaw, Uszkoreit and Vaswani, *Self-Attention with Relative Position Representations* (2018),
//!   eq. (3)-(5): key and value embeddings `a^K`, `a^V` indexed by the clipped distance
//!   `r = clip(j - i, -k, k) + k` ([`RelativeIndex::Clipped`] with `max_back = max_fwd = k`).
//! - Huang et al., *Music Transformer* (2018), section 3.4: per-head embeddings `E^r` of the
//!   distances `i - j = 0 .. L-1` of causal attention, `E^r[L - 1 - (i - j)]`
//!   ([`RelativeIndex::Clipped`] with `max_back = L - 1`, `max_fwd = 0`); the kernel indexes the
//!   table directly, which is what the paper's skew computes with O(L D) extra memory.
//! - Raffel et al., *T5* (2020), section 2.1: a scalar bias per head and log-spaced distance bucket
//!   ([`RelativeIndex::Buckets`], exactly Hugging Face's `T5Attention._relative_position_bucket`);
//!   T5 uses `scale = 1`.
//!
//! Queries are aligned to the end of the keys (bottom-right, as with a KV cache): query `i` sits at
//! key position `i + Lk - Lq`, and the distance is `j - (i + Lk - Lq)`. With `causal`, keys past the
//! query are hidden. A query that sees no key (`Lk = 0`, or causal with `Lq > Lk`) gives zeros, as
//! PyTorch's `scaled_dot_product_attention` does for fully masked rows.

use super::{Error, Result, View, ViewMut};
use crate::element::{Element, Real};
use crate::reference::Reference;

/// How a query-key distance `j - i` selects a row of the relative tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RelativeIndex {
    /// Row `clamp(j - i, -max_back, max_fwd) + max_back` of a table of
    /// `max_back + max_fwd + 1` rows (Shaw et al.'s clipping, eq. (5)).
    Clipped {
        /// Largest distance to earlier keys told apart (`k` of Shaw et al.).
        max_back: usize,
        /// Largest distance to later keys told apart.
        max_fwd: usize,
    },
    /// T5's log-spaced buckets (`num_buckets` rows).
    Buckets {
        /// Separate buckets for earlier and later keys (encoder), or earlier only (decoder).
        bidirectional: bool,
        /// Rows of the table.
        num_buckets: usize,
        /// Distances from this on share the last bucket.
        max_distance: usize,
    },
}

impl RelativeIndex {
    /// Rows of a table indexed this way.
    pub fn rows(&self) -> usize {
        match *self {
            RelativeIndex::Clipped { max_back, max_fwd } => {
                max_back.saturating_add(max_fwd).saturating_add(1)
            }
            RelativeIndex::Buckets { num_buckets, .. } => num_buckets,
        }
    }

    /// The table row of distance `j - i`.
    pub fn row(&self, distance: i64) -> usize {
        match *self {
            RelativeIndex::Clipped { max_back, max_fwd } => {
                let back = i64::try_from(max_back).unwrap_or(i64::MAX);
                let fwd = i64::try_from(max_fwd).unwrap_or(i64::MAX);
                let c = distance.clamp(back.saturating_neg(), fwd);
                usize::try_from(c.saturating_add(back)).unwrap_or(0)
            }
            RelativeIndex::Buckets {
                bidirectional,
                num_buckets,
                max_distance,
            } => t5_bucket(distance, bidirectional, num_buckets, max_distance),
        }
    }

    /// Checks the index parameters.
    ///
    /// # Errors
    /// [`Error::Param`] naming `num_buckets` (zero, odd when bidirectional, or too few to hold the
    /// exact buckets) or `max_distance` (not above the exact range).
    pub fn check(&self) -> Result<()> {
        if let RelativeIndex::Buckets {
            bidirectional,
            num_buckets,
            max_distance,
        } = *self
        {
            let n = if bidirectional {
                if num_buckets % 2 != 0 {
                    return Err(Error::Param {
                        arg: "num_buckets",
                        reason: "must be even when bidirectional",
                    });
                }
                num_buckets / 2
            } else {
                num_buckets
            };
            if n < 2 {
                return Err(Error::Param {
                    arg: "num_buckets",
                    reason: "must leave at least 2 buckets per direction",
                });
            }
            if max_distance <= n / 2 {
                return Err(Error::Param {
                    arg: "max_distance",
                    reason: "must exceed the exact range (num_buckets per direction / 2)",
                });
            }
        }
        Ok(())
    }
}

/// T5's bucket of the relative position `j - i` (Hugging Face's
/// `T5Attention._relative_position_bucket`, whose argument is `memory_position - query_position`):
/// half the buckets (per direction) hold the exact distances `0 .. n/2`, the rest are spaced
/// logarithmically up to `max_distance`, past which everything shares the last bucket. The
/// logarithm is taken in f32, as in Hugging Face, and truncated toward zero (`.to(torch.long)`).
/// Parameters are as checked by [`RelativeIndex::check`]; for others the result is some bucket
/// below `num_buckets` (never a panic).
pub fn t5_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut n = num_buckets;
    let mut bucket = 0usize;
    let dist = if bidirectional {
        n /= 2;
        if relative_position > 0 {
            bucket += n;
        }
        relative_position.unsigned_abs()
    } else {
        // -min(relative_position, 0)
        if relative_position < 0 {
            relative_position.unsigned_abs()
        } else {
            0
        }
    };
    let max_exact = n / 2;
    let d = usize::try_from(dist).unwrap_or(usize::MAX);
    let r = if d < max_exact {
        d
    } else {
        // max_exact + (log(d / max_exact) / log(max_distance / max_exact) * (n - max_exact)),
        // every operation in f32 (the tensor is float32 in Hugging Face), truncated to long,
        // then min(.., n - 1).
        // `math.log(max_distance / max_exact)` is a Python (f64) scalar, rounded to f32 when it
        // divides the f32 tensor.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let (df, me, denom, span) = (
            d as f32,
            max_exact.max(1) as f32,
            libm::log(max_distance as f64 / max_exact.max(1) as f64) as f32,
            n.saturating_sub(max_exact) as f32,
        );
        let v = libm::logf(df / me) / denom * span;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let large = max_exact.saturating_add(if v.is_finite() && v > 0.0 {
            v as usize
        } else {
            0
        });
        large.min(n.saturating_sub(1))
    };
    let out = bucket.saturating_add(r);
    out.min(num_buckets.saturating_sub(1))
}

/// Parameters of [`crate::Backend::relative_attention`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelativeParams {
    /// Multiplies `q . k` and `q . a^K` (not the bias): `1/sqrt(D)` in Shaw et al. and Music
    /// Transformer, 1 in T5.
    pub scale: f64,
    /// Hide keys after the query.
    pub causal: bool,
    /// How distances select table rows.
    pub index: RelativeIndex,
}

/// Accumulators [`crate::Backend::relative_attention`] needs for value dimension `dv`.
pub fn workspace_len(dv: usize) -> usize {
    dv
}

fn get<T: Copy>(s: &[T], i: usize) -> Result<T> {
    s.get(i).copied().ok_or(Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len: s.len(),
    })
}

fn set<T>(s: &mut [T], i: usize, v: T) -> Result<()> {
    let len = s.len();
    *s.get_mut(i).ok_or(Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len,
    })? = v;
    Ok(())
}

fn rank(arg: &'static str, shape: &[usize], r: usize) -> Result<()> {
    if shape.len() == r {
        Ok(())
    } else {
        Err(Error::Rank {
            arg,
            got: shape.len(),
            min: r,
            max: r,
        })
    }
}

/// The extents `(batch, heads, lq, lk, d, dv)` after checking every argument of
/// [`crate::Backend::relative_attention`].
///
/// # Errors
/// As [`crate::Backend::relative_attention`].
#[allow(clippy::too_many_arguments)]
pub fn check_relative(
    params: &RelativeParams,
    q: &crate::Layout,
    k: &crate::Layout,
    v: &crate::Layout,
    rel_k: Option<&crate::Layout>,
    rel_v: Option<&crate::Layout>,
    rel_bias: Option<&crate::Layout>,
    o: &crate::Layout,
    workspace_len: usize,
) -> Result<[usize; 6]> {
    rank("q", q.shape(), 4)?;
    let [b, h, lq, d] = [0, 1, 2, 3].map(|i| q.shape().get(i).copied().unwrap_or(0));
    rank("k", k.shape(), 4)?;
    let lk = k.shape().get(2).copied().unwrap_or(0);
    crate::check::shape("k", k, &[b, h, lk, d])?;
    rank("v", v.shape(), 4)?;
    let dv = v.shape().get(3).copied().unwrap_or(0);
    crate::check::shape("v", v, &[b, h, lk, dv])?;
    crate::check::shape("o", o, &[b, h, lq, dv])?;
    params.index.check()?;
    crate::check::finite("scale", params.scale)?;
    let rows = params.index.rows();
    if let Some(l) = rel_k {
        crate::check::shape("rel_k", l, &[h, rows, d])?;
    }
    if let Some(l) = rel_v {
        crate::check::shape("rel_v", l, &[h, rows, dv])?;
    }
    if let Some(l) = rel_bias {
        crate::check::shape("rel_bias", l, &[h, rows])?;
    }
    if workspace_len < self::workspace_len(dv) {
        return Err(Error::Capacity {
            arg: "workspace",
            needed: self::workspace_len(dv),
            capacity: workspace_len,
        });
    }
    Ok([b, h, lq, lk, d, dv])
}

/// Address of `[i0, i1, ..]` in `l`.
fn addr(l: &crate::Layout, idx: &[usize]) -> usize {
    l.offset()
        + idx
            .iter()
            .zip(l.strides())
            .map(|(&i, &s)| i * s)
            .sum::<usize>()
}

/// The portable body of [`crate::Backend::relative_attention`].
///
/// # Errors
/// As [`crate::Backend::relative_attention`].
#[allow(clippy::too_many_arguments, clippy::many_single_char_names)]
pub fn relative_attention<T: Element>(
    params: &RelativeParams,
    q: View<'_, Reference, T>,
    k: View<'_, Reference, T>,
    v: View<'_, Reference, T>,
    rel_k: Option<View<'_, Reference, T>>,
    rel_v: Option<View<'_, Reference, T>>,
    rel_bias: Option<View<'_, Reference, T>>,
    mut o: ViewMut<'_, Reference, T>,
    workspace: &mut [T::Acc],
) -> Result<()> {
    let [nb, nh, lq, lk, d, dv] = check_relative(
        params,
        q.layout(),
        k.layout(),
        v.layout(),
        rel_k.as_ref().map(View::layout),
        rel_v.as_ref().map(View::layout),
        rel_bias.as_ref().map(View::layout),
        o.layout(),
        workspace.len(),
    )?;
    let acc = workspace.get_mut(..dv).ok_or(Error::Capacity {
        arg: "workspace",
        needed: dv,
        capacity: 0,
    })?;
    let scale = T::Acc::lit(params.scale);
    let (ql, kl, vl) = (*q.layout(), *k.layout(), *v.layout());
    let (lq64, lk64) = (
        i64::try_from(lq).map_err(|_| Error::Overflow { arg: "q" })?,
        i64::try_from(lk).map_err(|_| Error::Overflow { arg: "k" })?,
    );
    let (ol, om) = {
        let (m, l) = o.parts();
        (*l, m)
    };
    for b in 0..nb {
        for h in 0..nh {
            for (i, i64_) in (0..lq).zip(0i64..) {
                let qpos = i64_ + lk64 - lq64;
                for a in acc.iter_mut() {
                    *a = T::Acc::zero();
                }
                let (mut m, mut l) = (T::Acc::neg_infinity(), T::Acc::zero());
                let mut nan = false;
                for (j, j64) in (0..lk).zip(0i64..) {
                    if params.causal && j64 > qpos {
                        break;
                    }
                    let row = params.index.row(j64 - qpos);
                    let mut dot = T::Acc::zero();
                    for c in 0..d {
                        let qv = get(q.mem(), addr(&ql, &[b, h, i, c]))?.to_acc();
                        let mut kv = get(k.mem(), addr(&kl, &[b, h, j, c]))?.to_acc();
                        if let Some(rk) = &rel_k {
                            kv += get(rk.mem(), addr(rk.layout(), &[h, row, c]))?.to_acc();
                        }
                        dot += qv * kv;
                    }
                    let mut e = dot * scale;
                    if let Some(rb) = &rel_bias {
                        e += get(rb.mem(), addr(rb.layout(), &[h, row]))?.to_acc();
                    }
                    if e.is_nan() {
                        nan = true;
                        continue;
                    }
                    if e == T::Acc::neg_infinity() {
                        continue;
                    }
                    let m_new = if e > m { e } else { m };
                    let corr = (m - m_new).exp();
                    let p = (e - m_new).exp();
                    l = l * corr + p;
                    for (c, a) in acc.iter_mut().enumerate() {
                        let mut vv = get(v.mem(), addr(&vl, &[b, h, j, c]))?.to_acc();
                        if let Some(rv) = &rel_v {
                            vv += get(rv.mem(), addr(rv.layout(), &[h, row, c]))?.to_acc();
                        }
                        *a = *a * corr + p * vv;
                    }
                    m = m_new;
                }
                for (c, a) in acc.iter().enumerate() {
                    let out = if nan {
                        T::Acc::nan()
                    } else if l == T::Acc::zero() {
                        // No key seen: zeros, as PyTorch's SDPA for a fully masked row.
                        T::Acc::zero()
                    } else {
                        *a / l
                    };
                    set(om, addr(&ol, &[b, h, i, c]), T::from_acc(out))?;
                }
            }
        }
    }
    Ok(())
}
