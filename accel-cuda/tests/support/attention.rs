//! The attention check shared by the GPU test files: a case, run on the GPU and on the reference
//! in f64, compared under a derived bound.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    dead_code
)]

use seq_accel_cuda::CudaBackend;
use seqcore::{
    Allocate, AttentionDims, AttentionMasks, AttentionParams, Backend, Element, Layout, Reference,
    View, ViewMut,
};

use super::{down, up};

/// Deterministic values in [-2, 2).
pub(crate) fn vals(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            ((i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97_531)) % 4096) as f64 / 1024.0
                - 2.0
        })
        .collect()
}

#[derive(Clone, Debug)]
pub(crate) struct AttnCase {
    pub(crate) b: usize,
    pub(crate) hq: usize,
    pub(crate) hkv: usize,
    pub(crate) lq: usize,
    pub(crate) lk: usize,
    pub(crate) d: usize,
    pub(crate) dv: usize,
    pub(crate) params: AttentionParams,
    pub(crate) mask: bool,
    pub(crate) bias: bool,
    pub(crate) token_major: bool,
}

/// Runs `c` on the GPU in `T` and on the reference in f64 (on the same rounded inputs); checks
/// every output and lse element against a bound derived from the computation: the logits carry
/// a dot-product error `gamma_D scale sum|q||k|`, the softmax weights the relative error of the
/// softmax row (`ua (8 sqrt Lk + 2 |s_j - m|)`, as the conformance table), and the weighted sum
/// `gamma_Lk max|v|`; the store rounds once (`2u |o|`). The tensor-core path's split weights
/// (relative error <= 4 ua each) fall under the `gamma_Lk` and constant
/// terms. `extra` is an absolute error allowed on top (0 but for the rounded-weights mode).
pub(crate) fn check_attention<T: Element>(b: &CudaBackend, c: &AttnCase, extra: f64) {
    let r = Reference;
    let (qn, kn, vn) = (
        c.b * c.hq * c.lq * c.d,
        c.b * c.hkv * c.lk * c.d,
        c.b * c.hkv * c.lk * c.dv,
    );
    let round = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64).collect() };
    let (q, k, v) = (round(vals(qn, 1)), round(vals(kn, 2)), round(vals(vn, 3)));
    let mask: Vec<u8> = (0..c.b * c.lk).map(|i| u8::from(i % 5 != 3)).collect();
    let mut biasv = vals(c.b * c.hq * c.lq * c.lk, 4);
    if let Some(x) = biasv.get_mut(7) {
        *x = f64::NEG_INFINITY;
    }
    let bias = round(biasv);
    let (sq, sk, sv, so) = if c.token_major {
        // stored [B, L, H, D], viewed [B, H, L, D]
        (
            Layout::contiguous(&[c.b, c.lq, c.hq, c.d])
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
            Layout::contiguous(&[c.b, c.lk, c.hkv, c.d])
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
            Layout::contiguous(&[c.b, c.lk, c.hkv, c.dv])
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
            Layout::contiguous(&[c.b, c.lq, c.hq, c.dv])
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
        )
    } else {
        (
            Layout::contiguous(&[c.b, c.hq, c.lq, c.d]).unwrap(),
            Layout::contiguous(&[c.b, c.hkv, c.lk, c.d]).unwrap(),
            Layout::contiguous(&[c.b, c.hkv, c.lk, c.dv]).unwrap(),
            Layout::contiguous(&[c.b, c.hq, c.lq, c.dv]).unwrap(),
        )
    };
    let on = c.b * c.hq * c.lq * c.dv;
    let ln = c.b * c.hq * c.lq;
    // reference, f64
    let f = |x: &[T]| -> Vec<f64> { x.iter().map(|e| e.to_f64()).collect() };
    let (q64, k64, v64, bias64) = (f(&q), f(&k), f(&v), f(&bias));
    let mut want = vec![0.0f64; on];
    let mut want_lse = vec![0.0f64; ln];
    let dims = AttentionDims::of(&sq, &sk, &sv).unwrap();
    let mut ws = vec![0.0f64; r.attention_workspace_len::<f64>(&dims).unwrap()];
    let bl = Layout::contiguous(&[c.b, c.hq, c.lq, c.lk]).unwrap();
    let ml = Layout::contiguous(&[c.b, c.lk]).unwrap();
    r.attention(
        &c.params,
        View::new(q64.as_slice(), sq).unwrap(),
        View::new(k64.as_slice(), sk).unwrap(),
        View::new(v64.as_slice(), sv).unwrap(),
        AttentionMasks {
            key_mask: c.mask.then(|| View::new(mask.as_slice(), ml).unwrap()),
            bias: c.bias.then(|| View::new(bias64.as_slice(), bl).unwrap()),
        },
        ViewMut::new(want.as_mut_slice(), so).unwrap(),
        Some(r.view_mut(&mut want_lse, &[c.b, c.hq, c.lq]).unwrap()),
        &mut ws,
    )
    .unwrap();
    // GPU
    let (qm, km, vm, mm, bm) = (up(b, &q), up(b, &k), up(b, &v), up(b, &mask), up(b, &bias));
    let mut om = up(b, &vec![T::from_f64(f64::NAN); on]);
    let mut lm = b.alloc::<T::Acc>(ln).unwrap();
    let mut wsm = b
        .alloc::<T::Acc>(b.attention_workspace_len::<T>(&dims).unwrap())
        .unwrap();
    b.attention(
        &c.params,
        View::new(&qm, sq).unwrap(),
        View::new(&km, sk).unwrap(),
        View::new(&vm, sv).unwrap(),
        AttentionMasks {
            key_mask: c.mask.then(|| View::new(&mm, ml).unwrap()),
            bias: c.bias.then(|| View::new(&bm, bl).unwrap()),
        },
        ViewMut::new(&mut om, so).unwrap(),
        Some(b.view_mut(&mut lm, &[c.b, c.hq, c.lq]).unwrap()),
        &mut wsm,
    )
    .unwrap();
    let got = f(&down(b, &om));
    let got_lse: Vec<f64> = down(b, &lm).iter().map(|e| e.to_f64()).collect();
    let (u, ua) = (
        T::DTYPE.unit_roundoff(),
        T::DTYPE.accumulator().unit_roundoff(),
    );
    let scale = c.params.scale.unwrap_or(1.0 / (c.d as f64).sqrt());
    let dot = 4.0 * c.d as f64 * scale; // sum |q||k| <= D * 2 * 2
    let spread = 2.0 * dot + 4.0 + if c.bias { 4.0 } else { 0.0 };
    let rel = ua
        * ((c.d as f64 + 4.0) * dot * 2.0
            + 8.0 * (c.lk as f64).sqrt()
            + 2.0 * spread
            + c.lk as f64
            + 8.0);
    for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
        let ok = (g.is_nan() && w.is_nan())
            || (g - w).abs() <= 2.0 * u * w.abs() + rel * 2.0 + extra + 1e-30;
        assert!(ok, "{} {c:?}: o[{idx}] = {g}, reference {w}", T::NAME);
    }
    for (idx, (g, w)) in got_lse.iter().zip(&want_lse).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= rel * (1.0 + w.abs());
        assert!(ok, "{} {c:?}: lse[{idx}] = {g}, reference {w}", T::NAME);
    }
}
