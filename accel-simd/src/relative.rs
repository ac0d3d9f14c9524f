//! Attention with relative-position terms (Shaw et al. 2018 eq. (3)-(5); Music Transformer's
//! relative logits; T5's bucketed bias), fused with an online softmax (Milakov & Gimelshein 2018).
//!
//! The portable kernel's algorithm, one query row and one key at a time, with the feature axes on
//! vectors: `e = scale (q . (k_j + a^K_r)) + bias_r` as a vector multiply-add over `D` and one
//! horizontal sum, `acc = acc corr + p (v_j + a^V_r)` over `Dv`, the relative rows added on the
//! fly (the workspace stays the `Dv` accumulators of [`seqcore::portable::relative::workspace_len`]).
//! The same skips as the portable kernel: a key whose logit is `-inf` is not folded in, a NaN
//! logit makes the row NaN, a row with no key gives zeros. Layouts whose feature axes are strided
//! take the portable kernel.

use seqcore::portable::relative::{RelativeParams, check_relative};
use seqcore::{Backend, DType, Element, Error, Layout, Real, Reference, Result, View, ViewMut};

use crate::attention::{cast_mut, conv, conv_mut, unit_rows};
use crate::lanes::{F32_LANES, Lanes, Vector};

#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
pub(crate) fn relative_attention<T: Element>(
    params: &RelativeParams,
    q: View<'_, Reference, T>,
    k: View<'_, Reference, T>,
    v: View<'_, Reference, T>,
    rel_k: Option<View<'_, Reference, T>>,
    rel_v: Option<View<'_, Reference, T>>,
    rel_bias: Option<View<'_, Reference, T>>,
    o: ViewMut<'_, Reference, T>,
    workspace: &mut [T::Acc],
) -> Result<()> {
    const OP: &str = "relative_attention";
    macro_rules! go {
        ($u:ty) => {
            run::<$u>(
                params,
                conv(q, OP)?,
                conv(k, OP)?,
                conv(v, OP)?,
                rel_k.map(|x| conv(x, OP)).transpose()?,
                rel_v.map(|x| conv(x, OP)).transpose()?,
                rel_bias.map(|x| conv(x, OP)).transpose()?,
                conv_mut(o, OP)?,
                cast_mut(workspace, OP)?,
            )
        };
    }
    match T::DTYPE {
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
        DType::F16 => go!(half::f16),
        DType::BF16 => go!(half::bf16),
        _ => Reference.relative_attention(params, q, k, v, rel_k, rel_v, rel_bias, o, workspace),
    }
}

fn oob(arg: &'static str, end: usize, len: usize) -> Error {
    Error::OutOfBounds { arg, end, len }
}

/// `len` elements of `mem` from `at` (empty when `len` is 0).
#[inline(always)]
fn row<'a, X>(mem: &'a [X], at: usize, len: usize, arg: &'static str) -> Result<&'a [X]> {
    if len == 0 {
        return Ok(&[]);
    }
    mem.get(at..at + len)
        .ok_or_else(|| oob(arg, at + len, mem.len()))
}

/// Address of `[i0, i1, ..]` in `l`.
fn addr(l: &Layout, idx: &[usize]) -> usize {
    l.offset()
        + idx
            .iter()
            .zip(l.strides())
            .map(|(&i, &s)| i * s)
            .sum::<usize>()
}

/// Lanes `i ..` of `s`, widened (the rest zero).
#[inline(always)]
fn ld<T: Element>(s: &[T], i: usize) -> <T::Acc as Lanes>::V
where
    T::Acc: Lanes,
{
    let zero = <T::Acc as Real>::zero();
    if T::DTYPE == <T::Acc as Element>::DTYPE {
        if let Ok(s) = bytemuck::try_cast_slice::<T, T::Acc>(s) {
            return <T::Acc as Lanes>::V::load_or(s.get(i..).unwrap_or(&[]), zero);
        }
    }
    let mut a = [zero; F32_LANES];
    for (d, x) in a
        .iter_mut()
        .zip(s.iter().skip(i))
        .take(<T::Acc as Lanes>::LANES)
    {
        *d = x.to_acc();
    }
    <T::Acc as Lanes>::V::load_or(&a, zero)
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
fn run<T: Element>(
    params: &RelativeParams,
    q: View<'_, Reference, T>,
    k: View<'_, Reference, T>,
    v: View<'_, Reference, T>,
    rel_k: Option<View<'_, Reference, T>>,
    rel_v: Option<View<'_, Reference, T>>,
    rel_bias: Option<View<'_, Reference, T>>,
    mut o: ViewMut<'_, Reference, T>,
    workspace: &mut [T::Acc],
) -> Result<()>
where
    T::Acc: Lanes,
{
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
    let unit = unit_rows(q.layout())
        && unit_rows(k.layout())
        && unit_rows(v.layout())
        && unit_rows(o.layout())
        && rel_k.as_ref().is_none_or(|x| unit_rows(x.layout()))
        && rel_v.as_ref().is_none_or(|x| unit_rows(x.layout()));
    if !unit {
        return seqcore::portable::relative::relative_attention(
            params, q, k, v, rel_k, rel_v, rel_bias, o, workspace,
        );
    }
    let acc = workspace.get_mut(..dv).ok_or(Error::Capacity {
        arg: "workspace",
        needed: dv,
        capacity: 0,
    })?;
    type A<T> = <T as Element>::Acc;
    let lanes = <A<T> as Lanes>::LANES;
    let zero = <A<T> as Real>::zero();
    let neg_inf = <A<T> as Real>::neg_infinity();
    let scale = <A<T> as Real>::lit(params.scale);
    let (ql, kl, vl) = (*q.layout(), *k.layout(), *v.layout());
    let (lq64, lk64) = (
        i64::try_from(lq).map_err(|_| Error::Overflow { arg: "q" })?,
        i64::try_from(lk).map_err(|_| Error::Overflow { arg: "k" })?,
    );
    let ol = *o.layout();
    let om = o.mem_mut();
    for b in 0..nb {
        for h in 0..nh {
            for (i, i64_) in (0..lq).zip(0i64..) {
                let qpos = i64_ + lk64 - lq64;
                let qr = row(q.mem(), addr(&ql, &[b, h, i, 0]), d, "q")?;
                acc.fill(zero);
                let (mut m, mut l) = (neg_inf, zero);
                let mut nan = false;
                for (j, j64) in (0..lk).zip(0i64..) {
                    if params.causal && j64 > qpos {
                        break;
                    }
                    let r = params.index.row(j64 - qpos);
                    let kr = row(k.mem(), addr(&kl, &[b, h, j, 0]), d, "k")?;
                    let rk = match &rel_k {
                        Some(x) => Some(row(x.mem(), addr(x.layout(), &[h, r, 0]), d, "rel_k")?),
                        None => None,
                    };
                    let mut dot = <A<T> as Lanes>::V::splat(zero);
                    let mut c = 0;
                    while c < d {
                        let mut kv = ld::<T>(kr, c);
                        if let Some(rk) = rk {
                            kv = kv + ld::<T>(rk, c);
                        }
                        dot = ld::<T>(qr, c).mul_add(kv, dot);
                        c += lanes;
                    }
                    let mut e = dot.reduce_add() * scale;
                    if let Some(rb) = &rel_bias {
                        let at = addr(rb.layout(), &[h, r]);
                        e += rb
                            .mem()
                            .get(at)
                            .ok_or_else(|| oob("rel_bias", at + 1, rb.mem().len()))?
                            .to_acc();
                    }
                    if e.is_nan() {
                        nan = true;
                        continue;
                    }
                    if e == neg_inf {
                        continue;
                    }
                    let m_new = if e > m { e } else { m };
                    let corr = (m - m_new).exp();
                    let p = (e - m_new).exp();
                    l = l * corr + p;
                    let vr = row(v.mem(), addr(&vl, &[b, h, j, 0]), dv, "v")?;
                    let rv = match &rel_v {
                        Some(x) => Some(row(x.mem(), addr(x.layout(), &[h, r, 0]), dv, "rel_v")?),
                        None => None,
                    };
                    let (cv, pv) = (
                        <A<T> as Lanes>::V::splat(corr),
                        <A<T> as Lanes>::V::splat(p),
                    );
                    for (c, a) in acc.chunks_mut(lanes).enumerate() {
                        let mut vv = ld::<T>(vr, c * lanes);
                        if let Some(rv) = rv {
                            vv = vv + ld::<T>(rv, c * lanes);
                        }
                        let x = <A<T> as Lanes>::V::load_or(a, zero);
                        (x * cv + pv * vv).store(a);
                    }
                    m = m_new;
                }
                let orow = addr(&ol, &[b, h, i, 0]);
                let ostride = ol.strides().get(3).copied().unwrap_or(1);
                for (c, a) in acc.iter().enumerate() {
                    let out = if nan {
                        <A<T> as Real>::nan()
                    } else if l == zero {
                        zero
                    } else {
                        *a / l
                    };
                    let at = orow + c * ostride;
                    let len = om.len();
                    *om.get_mut(at).ok_or_else(|| oob("o", at + 1, len))? = T::from_acc(out);
                }
            }
        }
    }
    Ok(())
}
