//! The chunkwise (WY-form) linear-memory kernel: the algorithm, workspace and checks of
//! `seqcore::portable::linear_memory::chunkwise` (DeltaNet's UT transform, Yang et al. 2024,
//! §3.2; Gated DeltaNet §3.3; decay ratios as exponentials of differences of cumulative logs),
//! with every inner loop a vector sweep over a contiguous row of the workspace: the dot products
//! over `Dk` ([`super::vec::dot`]) and the row updates over `Dk` or `Dv` ([`axpy`]).

use seqcore::portable::linear_memory::{
    FeatureMap, LinearMemorySpec, MemoryInputs, MemoryRule, check_chunkwise,
};
use seqcore::{Backend, DType, Element, Reference, Result, ViewMut};

use super::vec::dot;
use super::{Inputs, acc_as, as_acc, oob, store_row};
use crate::lanes::{Lanes, Vector};

/// `y <- y + a x` over `min(x.len(), y.len())` elements.
#[inline]
pub(crate) fn axpy<A: Lanes>(a: A, x: &[A], y: &mut [A]) {
    let n = A::LANES;
    let av = A::V::splat(a);
    let mut yc = y.chunks_exact_mut(n);
    let mut xc = x.chunks_exact(n);
    for (ys, xs) in (&mut yc).zip(&mut xc) {
        av.mul_add(A::V::load_or(xs, A::zero()), A::V::load_or(ys, A::zero()))
            .store(ys);
    }
    for (ys, &xs) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *ys += a * xs;
    }
}

/// `y <- a y`.
#[inline]
fn scale<A: Lanes>(a: A, y: &mut [A]) {
    let n = A::LANES;
    let av = A::V::splat(a);
    let mut yc = y.chunks_exact_mut(n);
    for ys in &mut yc {
        (av * A::V::load_or(ys, A::zero())).store(ys);
    }
    for ys in yc.into_remainder() {
        *ys *= a;
    }
}

fn row<A>(x: &[A], r: usize, d: usize) -> Result<&[A]> {
    let len = x.len();
    x.get(r * d..(r + 1) * d).ok_or(oob(len, (r + 1) * d))
}

fn row_mut<A>(x: &mut [A], r: usize, d: usize) -> Result<&mut [A]> {
    let len = x.len();
    x.get_mut(r * d..(r + 1) * d).ok_or(oob(len, (r + 1) * d))
}

fn at<A: Copy>(x: &[A], i: usize) -> Result<A> {
    x.get(i).copied().ok_or(oob(x.len(), i))
}

/// The chunkwise form; checks, in order, and errors as the portable kernel's.
pub(crate) fn chunkwise<T: Element>(
    spec: LinearMemorySpec,
    chunk: usize,
    inputs: MemoryInputs<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    o: Option<ViewMut<'_, Reference, T>>,
    workspace: ViewMut<'_, Reference, T::Acc>,
) -> Result<()> {
    let (d, need) = check_chunkwise(
        chunk,
        &inputs,
        state.layout(),
        o.as_ref().map(ViewMut::layout),
        workspace.layout(),
    )?;
    // An empty extent has nothing to vectorise; the portable kernel handles its odd layouts.
    let empty = d.len == 0 || d.heads == 0 || d.dk == 0 || d.dv == 0;
    match <T::Acc as Element>::DTYPE {
        DType::F32 if !empty => lanes::<T, f32>(spec, chunk, d, inputs, state, o, workspace, need),
        DType::F64 if !empty => lanes::<T, f64>(spec, chunk, d, inputs, state, o, workspace, need),
        _ => Reference.linear_memory_chunkwise(spec, chunk, inputs, state, o, workspace),
    }
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)] // the portable kernel's one pass
fn lanes<T: Element, A: Lanes>(
    spec: LinearMemorySpec,
    chunk: usize,
    d: seqcore::portable::linear_memory::MemoryDims,
    x: MemoryInputs<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    mut o: Option<ViewMut<'_, Reference, T>>,
    workspace: ViewMut<'_, Reference, T::Acc>,
    need: usize,
) -> Result<()> {
    let inp = Inputs::new(&x);
    let phi = spec.feature_map;
    let (smem, sl) = state.into_parts();
    let slen = smem.len();
    let sst: [usize; 3] = [0, 1, 2].map(|a| sl.strides().get(a).copied().unwrap_or(0));
    let sidx = |h: usize, i: usize, j: usize| sl.offset() + h * sst[0] + i * sst[1] + j * sst[2];
    let (wmem, wl) = workspace.into_parts();
    let wlen = wmem.len();
    let ws = wmem
        .get_mut(wl.offset()..wl.offset() + need)
        .ok_or(oob(wlen, wl.offset() + need))?;
    let ws = bytemuck::try_cast_slice_mut::<T::Acc, A>(ws).map_err(|_| oob(0, 0))?;
    let (dk, dv) = (d.dk, d.dv);
    let (g, rest) = ws.split_at_mut(chunk);
    let (wrow, rest) = rest.split_at_mut(chunk);
    let (u, rest) = rest.split_at_mut(chunk * dv);
    let (kc, rest) = rest.split_at_mut(chunk * dk);
    let (qc, rest) = rest.split_at_mut(chunk * dk);
    let (yrow, sb) = rest.split_at_mut(dv);
    let delta = spec.rule == MemoryRule::Delta;
    let zero = A::zero();
    for h in 0..d.heads {
        // This head's state, contiguous.
        for (i, r) in sb.chunks_mut(dk.max(1)).enumerate().take(dv) {
            for (j, x) in r.iter_mut().enumerate() {
                let p = sidx(h, i, j);
                *x = acc_as::<T, A>(*smem.get(p).ok_or(oob(slen, p))?);
            }
        }
        let mut c0 = 0;
        while c0 < d.len {
            let n = chunk.min(d.len - c0);
            let mut acc = zero;
            for (si, gs) in g.iter_mut().enumerate().take(n) {
                acc += inp.g::<A>(c0 + si, h)?;
                *gs = acc;
            }
            for si in 0..n {
                inp.k.row(c0 + si, h, row_mut(kc, si, dk)?, phi)?;
                inp.q.row(c0 + si, h, row_mut(qc, si, dk)?, phi)?;
            }
            // u_s by forward substitution (the identity system for the additive rule).
            for si in 0..n {
                let t = c0 + si;
                let beta = inp.beta::<A>(t, h)?;
                let gs = at(g, si)?;
                let ks = row(kc, si, dk)?;
                if delta {
                    for (r, wr) in wrow.iter_mut().enumerate().take(si) {
                        *wr = beta * (gs - at(g, r)?).exp() * dot(ks, row(kc, r, dk)?);
                    }
                }
                let eg = gs.exp();
                let (prev, cur) = u.split_at_mut(si * dv);
                let cur = cur.get_mut(..dv).ok_or(oob(0, dv))?;
                inp.v.row(t, h, cur, FeatureMap::Identity)?;
                for (i, ui) in cur.iter_mut().enumerate() {
                    let mut y = beta * *ui;
                    if delta {
                        y = y - beta * eg * dot(row(sb, i, dk)?, ks);
                    }
                    *ui = y;
                }
                if delta {
                    for (r, &wr) in wrow.iter().enumerate().take(si) {
                        axpy(-wr, row(prev, r, dv)?, cur);
                    }
                }
            }
            // Outputs, from the chunk-start state and the chunk's writes.
            if let Some(o) = o.as_mut() {
                for ti in 0..n {
                    let gt = at(g, ti)?;
                    let qt = row(qc, ti, dk)?;
                    for (si, wr) in wrow.iter_mut().enumerate().take(ti + 1) {
                        *wr = (gt - at(g, si)?).exp() * dot(row(kc, si, dk)?, qt);
                    }
                    let eg = gt.exp();
                    for (i, y) in yrow.iter_mut().enumerate() {
                        *y = eg * dot(row(sb, i, dk)?, qt);
                    }
                    for (si, &wr) in wrow.iter().enumerate().take(ti + 1) {
                        axpy(wr, row(u, si, dv)?, yrow);
                    }
                    store_row::<T, A>(o, c0 + ti, h, yrow)?;
                }
            }
            // The state at the chunk end.
            let gn = if n > 0 { at(g, n - 1)? } else { zero };
            for (si, wr) in wrow.iter_mut().enumerate().take(n) {
                *wr = (gn - at(g, si)?).exp();
            }
            let en = gn.exp();
            for i in 0..dv {
                let srow = row_mut(sb, i, dk)?;
                scale(en, srow);
                for (si, &wr) in wrow.iter().enumerate().take(n) {
                    let coef = wr * at(u, si * dv + i)?;
                    axpy(coef, row(kc, si, dk)?, srow);
                }
            }
            c0 += n;
        }
        for (i, r) in sb.chunks(dk.max(1)).enumerate().take(dv) {
            for (j, &x) in r.iter().enumerate() {
                let p = sidx(h, i, j);
                *smem.get_mut(p).ok_or(oob(slen, p))? = as_acc::<T, A>(x);
            }
        }
    }
    Ok(())
}
