//! Vector sweeps over one contiguous row: the dot product and the fused rank-1 update and read
//! of the linear-memory kernels, with four independent accumulators (so the sum is pairwise over
//! four partial sums of each lane, then over the lanes) and a zero-filled tail (a scalar one where a zero lane could meet an infinity).

use crate::lanes::{Lanes, Vector};

/// `sum_j a_j b_j` over `min(a.len(), b.len())` elements.
#[inline]
pub(crate) fn dot<A: Lanes>(a: &[A], b: &[A]) -> A {
    let n = A::LANES;
    let zero = A::V::splat(A::zero());
    let mut acc = [zero; 4];
    let mut ac = a.chunks_exact(4 * n);
    let mut bc = b.chunks_exact(4 * n);
    for (x, y) in (&mut ac).zip(&mut bc) {
        for ((s, xs), ys) in acc.iter_mut().zip(x.chunks_exact(n)).zip(y.chunks_exact(n)) {
            *s = A::V::load_or(xs, A::zero()).mul_add(A::V::load_or(ys, A::zero()), *s);
        }
    }
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (s, (xs, ys)) in acc.iter_mut().zip(ar.chunks(n).zip(br.chunks(n))) {
        *s = A::V::load_or(xs, A::zero()).mul_add(A::V::load_or(ys, A::zero()), *s);
    }
    let [a0, a1, a2, a3] = acc;
    ((a0 + a1) + (a2 + a3)).reduce_add()
}

/// `s_j <- a s_j + u k_j` for every `j`, returning `sum_j s_j q_j` (the updated row read by `q`);
/// `s`, `k`, `q` of the same length (the shortest bounds the sweep).
#[inline]
pub(crate) fn update_read<A: Lanes>(s: &mut [A], a: A, u: A, k: &[A], q: &[A]) -> A {
    let n = A::LANES;
    let zero = A::V::splat(A::zero());
    let (av, uv) = (A::V::splat(a), A::V::splat(u));
    let mut acc = [zero; 4];
    let mut sc = s.chunks_exact_mut(4 * n);
    let mut kc = k.chunks_exact(4 * n);
    let mut qc = q.chunks_exact(4 * n);
    for ((x, y), z) in (&mut sc).zip(&mut kc).zip(&mut qc) {
        for (((r, xs), ks), qs) in acc
            .iter_mut()
            .zip(x.chunks_exact_mut(n))
            .zip(y.chunks_exact(n))
            .zip(z.chunks_exact(n))
        {
            let sv = uv.mul_add(
                A::V::load_or(ks, A::zero()),
                av * A::V::load_or(xs, A::zero()),
            );
            sv.store(xs);
            *r = sv.mul_add(A::V::load_or(qs, A::zero()), *r);
        }
    }
    // Whole vectors of the remainder, then the last elements one by one (a zero-filled lane
    // would turn an infinite `u` or `a` into a NaN in the read).
    let (kr, qr) = (kc.remainder(), qc.remainder());
    let mut sr = sc.into_remainder().chunks_exact_mut(n);
    let mut kr = kr.chunks_exact(n);
    let mut qr = qr.chunks_exact(n);
    for (((r, xs), ks), qs) in acc.iter_mut().zip(&mut sr).zip(&mut kr).zip(&mut qr) {
        let sv = uv.mul_add(
            A::V::load_or(ks, A::zero()),
            av * A::V::load_or(xs, A::zero()),
        );
        sv.store(xs);
        *r = sv.mul_add(A::V::load_or(qs, A::zero()), *r);
    }
    let mut tail = A::zero();
    for ((x, &kj), &qj) in sr
        .into_remainder()
        .iter_mut()
        .zip(kr.remainder())
        .zip(qr.remainder())
    {
        *x = a * *x + u * kj;
        tail += *x * qj;
    }
    let [a0, a1, a2, a3] = acc;
    ((a0 + a1) + (a2 + a3)).reduce_add() + tail
}
