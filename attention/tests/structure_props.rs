//! Properties of pointer attention, the set encoders and ACT halting on the reference backend:
//! agreement with independent f64 implementations written here, permutation invariance and
//! equivariance, the halting identities, and bad input answered with `Err` (never a panic).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_arguments,
    missing_docs,
    clippy::needless_range_loop,
    clippy::std_instead_of_core
)]

use proptest::prelude::*;
use seq_attention::act::Ponder;
use seq_attention::{
    Act, Isab, LayerNorm, Linear, LstmCell, Mab, MultiheadAttention, Pma, PointerAttention,
    ReadProcessWrite, Sab,
};
use seqcore::{Backend, Binary, Error, Reference, Result, Unary, View, ViewMut};

/// Deterministic values in about [-scale, scale] from a seed (splitmix64).
fn values(seed: u64, n: usize, scale: f64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn bufs(count: usize, len: usize) -> Vec<Vec<f64>> {
    vec![vec![0.0; len]; count]
}

fn refs(v: &mut [Vec<f64>]) -> Vec<&mut [f64]> {
    v.iter_mut().map(Vec::as_mut_slice).collect()
}

fn v<'a>(x: &'a [f64], shape: &[usize]) -> View<'a, Reference, f64> {
    View::contiguous(x, shape).unwrap()
}

// ---------------------------------------------------------------- pointer attention

/// Eq. 3 of Pointer Networks, written out in f64 loops.
fn naive_pointer(
    w1: &[f64],
    w2: &[f64],
    vv: &[f64],
    e: &[f64],
    d: &[f64],
    mask: &[f64],
    (h, de, dd, n, q): (usize, usize, usize, usize, usize),
) -> Vec<f64> {
    let mut out = vec![0.0; q * n];
    for i in 0..q {
        let mut u = vec![0.0; n];
        for j in 0..n {
            let mut s = 0.0;
            for k in 0..h {
                let a: f64 = (0..de).map(|c| w1[k * de + c] * e[j * de + c]).sum();
                let bq: f64 = (0..dd).map(|c| w2[k * dd + c] * d[i * dd + c]).sum();
                s += vv[k] * (a + bq).tanh();
            }
            u[j] = s + mask[i * n + j];
        }
        let m = u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            out[i * n..(i + 1) * n].fill(f64::NEG_INFINITY);
            continue;
        }
        let lse = m + u.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        for j in 0..n {
            out[i * n + j] = u[j] - lse;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn pointer_agrees_with_naive_f64(
        h in 1usize..7, de in 1usize..6, dd in 1usize..6, n in 0usize..10, q in 0usize..5,
        seed in any::<u64>(), masked in proptest::collection::vec(any::<bool>(), 50),
    ) {
        let b = Reference;
        let w1 = values(seed, h * de, 1.0);
        let w2 = values(seed ^ 1, h * dd, 1.0);
        let vv = values(seed ^ 2, h, 1.0);
        let e = values(seed ^ 3, n * de, 2.0);
        let d = values(seed ^ 4, q * dd, 2.0);
        let mask: Vec<f64> = (0..q * n)
            .map(|i| if masked[i % 50] && i % 3 == 0 { f64::NEG_INFINITY } else { 0.0 })
            .collect();
        let ptr = PointerAttention::new(v(&w1, &[h, de]), v(&w2, &[h, dd]), v(&vv, &[h])).unwrap();
        let mut keys = vec![f64::NAN; n * h];
        ptr.encode(&b, v(&e, &[n, de]), b.view_mut(&mut keys, &[n, h]).unwrap()).unwrap();
        let mut ws = bufs(PointerAttention::<Reference, f64>::BUFFERS, ptr.workspace_len(q, n).unwrap());
        let mut out = vec![f64::NAN; q * n];
        ptr.log_probs(&b, v(&keys, &[n, h]), v(&d, &[q, dd]), Some(v(&mask, &[q, n])),
            b.view_mut(&mut out, &[q, n]).unwrap(), &mut refs(&mut ws)).unwrap();
        let want = naive_pointer(&w1, &w2, &vv, &e, &d, &mask, (h, de, dd, n, q));
        for (i, (g, w)) in out.iter().zip(&want).enumerate() {
            if w.is_infinite() {
                prop_assert_eq!(g, w, "element {}", i);
            } else {
                prop_assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "element {}: {} vs {}", i, g, w);
            }
        }
        // Each query with a position left is a distribution over its positions.
        for i in 0..q {
            let row = &out[i * n..(i + 1) * n];
            if row.iter().any(|x| x.is_finite()) {
                let s: f64 = row.iter().map(|x| x.exp()).sum();
                prop_assert!((s - 1.0).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn pointer_fully_masked_query_is_all_neg_inf() {
    let b = Reference;
    let (w1, w2, vv) = (values(1, 6, 1.0), values(2, 4, 1.0), values(3, 2, 1.0));
    let ptr = PointerAttention::new(v(&w1, &[2, 3]), v(&w2, &[2, 2]), v(&vv, &[2])).unwrap();
    let e = values(4, 9, 1.0);
    let mut keys = vec![0.0; 6];
    ptr.encode(&b, v(&e, &[3, 3]), b.view_mut(&mut keys, &[3, 2]).unwrap())
        .unwrap();
    let d = values(5, 4, 1.0);
    let inf = f64::NEG_INFINITY;
    let mask = [inf, inf, inf, 0.0, inf, 0.0];
    let mut ws = bufs(4, ptr.workspace_len(2, 3).unwrap());
    let mut out = vec![f64::NAN; 6];
    ptr.log_probs(
        &b,
        v(&keys, &[3, 2]),
        v(&d, &[2, 2]),
        Some(v(&mask, &[2, 3])),
        b.view_mut(&mut out, &[2, 3]).unwrap(),
        &mut refs(&mut ws),
    )
    .unwrap();
    assert_eq!(&out[..3], &[inf, inf, inf]);
    assert_eq!(out[4], inf);
    assert!((out[3].exp() + out[5].exp() - 1.0).abs() < 1e-15);
}

#[test]
fn pointer_rejects_bad_input() {
    let b = Reference;
    let w = values(1, 12, 1.0);
    let nan = [1.0, f64::NAN, 0.5];
    let err = |r: Result<PointerAttention<'_, Reference, f64>>| r.err().unwrap();
    assert!(matches!(
        err(PointerAttention::new(
            v(&w, &[3, 2]),
            v(&w, &[2, 2]),
            v(&w, &[3])
        )),
        Error::Shape { arg: "w2", .. }
    ));
    assert!(matches!(
        err(PointerAttention::new(
            v(&w, &[3, 2]),
            v(&w, &[3, 2]),
            v(&w, &[4])
        )),
        Error::Shape { arg: "v", .. }
    ));
    assert!(matches!(
        err(PointerAttention::new(
            v(&w, &[3, 2]),
            v(&w, &[3, 2]),
            v(&nan, &[3])
        )),
        Error::Param { arg: "v", .. }
    ));
    let ptr = PointerAttention::new(v(&w, &[3, 2]), v(&w, &[3, 4]), v(&w, &[3])).unwrap();
    let mut out = vec![0.0; 4];
    let mut ws = bufs(4, 12);
    // decoder states of the wrong width
    let r = ptr.log_probs(
        &b,
        v(&w, &[2, 3]),
        v(&w, &[2, 3]),
        None,
        b.view_mut(&mut out, &[2, 2]).unwrap(),
        &mut refs(&mut ws),
    );
    assert!(matches!(r, Err(Error::Shape { arg: "d", .. })));
    // too few workspace buffers
    let r = ptr.log_probs(
        &b,
        v(&w, &[2, 3]),
        v(&w, &[1, 4]),
        None,
        b.view_mut(&mut out, &[1, 2]).unwrap(),
        &mut refs(&mut ws[..2]),
    );
    assert!(matches!(
        r,
        Err(Error::Capacity {
            arg: "workspace",
            ..
        })
    ));
}

// ---------------------------------------------------------------- set encoders

struct SetWeights {
    w: Vec<Vec<f64>>,
}

impl SetWeights {
    /// MAB weights for dimension `d`: in_proj [3d, d], in_bias [3d], out [d, d], out_bias [d],
    /// ln0 w/b, ln1 w/b, ff [d, d], ff bias.
    fn new(seed: u64, d: usize) -> Self {
        let sizes = [3 * d * d, 3 * d, d * d, d, d, d, d, d, d * d, d];
        let w = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let mut x = values(seed ^ (i as u64 * 77), s, 0.6);
                if i == 4 || i == 6 {
                    x.iter_mut().for_each(|g| *g += 1.0); // layer-norm gains near 1
                }
                x
            })
            .collect();
        SetWeights { w }
    }

    fn mab(&self, d: usize, heads: usize) -> Mab<'_, Reference, f64> {
        let w = &self.w;
        let attn = MultiheadAttention::new(
            d,
            heads,
            v(&w[0], &[3 * d, d]),
            Some(v(&w[1], &[3 * d])),
            v(&w[2], &[d, d]),
            Some(v(&w[3], &[d])),
        )
        .unwrap();
        let ln0 = LayerNorm::new("ln0", v(&w[4], &[d]), v(&w[5], &[d]), 1e-5, d).unwrap();
        let ln1 = LayerNorm::new("ln1", v(&w[6], &[d]), v(&w[7], &[d]), 1e-5, d).unwrap();
        let ff = Linear::new("ff", v(&w[8], &[d, d]), Some(v(&w[9], &[d])), d, d).unwrap();
        Mab::new(attn, Some(ln0), ff, Some(ln1)).unwrap()
    }
}

fn permute_rows(x: &[f64], d: usize, perm: &[usize]) -> Vec<f64> {
    perm.iter()
        .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
        .collect()
}

fn perm_of(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    let r = values(seed, n, 1.0);
    for i in (1..n).rev() {
        let j = ((r[i].abs() * (i + 1) as f64) as usize).min(i);
        p.swap(i, j);
    }
    p
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) -> std::result::Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        prop_assert!((x - y).abs() <= tol, "element {}: {} vs {}", i, x, y);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sab_and_isab_are_permutation_equivariant(
        heads in 1usize..4, dh in 1usize..4, n in 1usize..8, m in 1usize..4, seed in any::<u64>(),
    ) {
        let b = Reference;
        let d = heads * dh;
        let wa = SetWeights::new(seed, d);
        let wb = SetWeights::new(seed ^ 9, d);
        let x = values(seed ^ 5, n * d, 1.5);
        let perm = perm_of(n, seed ^ 6);
        let xp = permute_rows(&x, d, &perm);
        let sab = Sab { mab: wa.mab(d, heads) };
        let mut ws = bufs(8, sab.workspace_len(n).unwrap().max(m * n * heads + m * d));
        let (mut y, mut yp) = (vec![f64::NAN; n * d], vec![f64::NAN; n * d]);
        sab.forward(&b, v(&x, &[n, d]), b.view_mut(&mut y, &[n, d]).unwrap(), &mut refs(&mut ws)).unwrap();
        sab.forward(&b, v(&xp, &[n, d]), b.view_mut(&mut yp, &[n, d]).unwrap(), &mut refs(&mut ws)).unwrap();
        assert_close(&permute_rows(&y, d, &perm), &yp, 1e-10)?;

        let ind = values(seed ^ 7, m * d, 1.0);
        let isab = Isab::new(v(&ind, &[m, d]), wa.mab(d, heads), wb.mab(d, heads)).unwrap();
        let mut ws = bufs(Isab::<Reference, f64>::BUFFERS, isab.workspace_len(n).unwrap());
        isab.forward(&b, v(&x, &[n, d]), b.view_mut(&mut y, &[n, d]).unwrap(), &mut refs(&mut ws)).unwrap();
        isab.forward(&b, v(&xp, &[n, d]), b.view_mut(&mut yp, &[n, d]).unwrap(), &mut refs(&mut ws)).unwrap();
        assert_close(&permute_rows(&y, d, &perm), &yp, 1e-10)?;
    }

    #[test]
    fn pma_and_rpw_are_permutation_invariant(
        heads in 1usize..4, dh in 1usize..4, n in 0usize..8, k in 1usize..3, steps in 1usize..5,
        din in 1usize..5, seed in any::<u64>(),
    ) {
        let b = Reference;
        let d = heads * dh;
        let wa = SetWeights::new(seed, d);
        let x = values(seed ^ 5, n * d, 1.5);
        let perm = perm_of(n, seed ^ 6);
        let xp = permute_rows(&x, d, &perm);
        let seeds = values(seed ^ 8, k * d, 1.0);
        let rff = values(seed ^ 10, d * d + d, 0.6);
        let ff = Linear::new("rff", v(&rff[..d * d], &[d, d]), Some(v(&rff[d * d..], &[d])), d, d).unwrap();
        let pma = Pma::new(v(&seeds, &[k, d]), ff, wa.mab(d, heads)).unwrap();
        let mut ws = bufs(Pma::<Reference, f64>::BUFFERS, pma.workspace_len(n).unwrap());
        let (mut y, mut yp) = (vec![f64::NAN; k * d], vec![f64::NAN; k * d]);
        pma.forward(&b, v(&x, &[n, d]), b.view_mut(&mut y, &[k, d]).unwrap(), &mut refs(&mut ws)).unwrap();
        pma.forward(&b, v(&xp, &[n, d]), b.view_mut(&mut yp, &[k, d]).unwrap(), &mut refs(&mut ws)).unwrap();
        assert_close(&y, &yp, 1e-10)?;

        // Read-Process-Write over elements of size `din`.
        let lw = values(seed ^ 11, 4 * d * 3 * d + 8 * d + d * din + d, 0.5);
        let (wih, rest) = lw.split_at(4 * d * 2 * d);
        let (whh, rest) = rest.split_at(4 * d * d);
        let (bih, rest) = rest.split_at(4 * d);
        let (bhh, rest) = rest.split_at(4 * d);
        let (rw, rb) = rest.split_at(d * din);
        let lstm = LstmCell::new(2 * d, d, v(wih, &[4 * d, 2 * d]), v(whh, &[4 * d, d]), v(bih, &[4 * d]), v(bhh, &[4 * d])).unwrap();
        let read = Linear::new("read", v(rw, &[d, din]), Some(v(rb, &[d])), d, din).unwrap();
        let rpw = ReadProcessWrite::new(Some(read), lstm, steps).unwrap();
        let xs = values(seed ^ 12, n * din, 1.5);
        let xsp = permute_rows(&xs, din, &perm);
        let mut ws = bufs(ReadProcessWrite::<Reference, f64>::BUFFERS, rpw.workspace_len(n).unwrap());
        let (mut q, mut qp) = (vec![f64::NAN; 2 * d], vec![f64::NAN; 2 * d]);
        rpw.forward(&b, v(&xs, &[n, din]), b.view_mut(&mut q, &[2 * d]).unwrap(), &mut refs(&mut ws)).unwrap();
        rpw.forward(&b, v(&xsp, &[n, din]), b.view_mut(&mut qp, &[2 * d]).unwrap(), &mut refs(&mut ws)).unwrap();
        assert_close(&q, &qp, 1e-10)?;
        prop_assert!(q.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn set_encoders_reject_bad_input() {
    let w = values(3, 200, 0.5);
    let nan = vec![f64::NAN; 48];
    // heads that do not divide d, zero heads
    for heads in [0, 3] {
        let r = MultiheadAttention::<Reference, f64>::new(
            4,
            heads,
            v(&w[..48], &[12, 4]),
            None,
            v(&w[..16], &[4, 4]),
            None,
        );
        assert!(matches!(r, Err(Error::Param { arg: "heads", .. })));
    }
    let r = MultiheadAttention::<Reference, f64>::new(
        4,
        2,
        v(&w[..40], &[10, 4]),
        None,
        v(&w[..16], &[4, 4]),
        None,
    );
    assert!(matches!(
        r,
        Err(Error::Shape {
            arg: "in_proj_weight",
            ..
        })
    ));
    let r = MultiheadAttention::<Reference, f64>::new(
        4,
        2,
        v(&nan, &[12, 4]),
        None,
        v(&w[..16], &[4, 4]),
        None,
    );
    assert!(matches!(
        r,
        Err(Error::Param {
            arg: "in_proj_weight",
            ..
        })
    ));
    for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let r = LayerNorm::<Reference, f64>::new("ln", v(&w[..4], &[4]), v(&w[..4], &[4]), eps, 4);
        assert!(matches!(r, Err(Error::Param { arg: "eps", .. })));
    }
    let lstm = |input: usize, hidden: usize| {
        LstmCell::<Reference, f64>::new(
            input,
            hidden,
            v(&w[..4 * hidden * input], &[4 * hidden, input]),
            v(&w[..4 * hidden * hidden], &[4 * hidden, hidden]),
            v(&w[..4 * hidden], &[4 * hidden]),
            v(&w[..4 * hidden], &[4 * hidden]),
        )
    };
    assert!(matches!(
        ReadProcessWrite::new(None, lstm(4, 2).unwrap(), 0),
        Err(Error::Param { arg: "steps", .. })
    ));
    assert!(matches!(
        ReadProcessWrite::new(None, lstm(3, 2).unwrap(), 1),
        Err(Error::Shape { arg: "lstm", .. })
    ));
    assert!(matches!(
        LstmCell::<Reference, f64>::new(
            4,
            0,
            v(&w[..0], &[0, 4]),
            v(&w[..0], &[0, 0]),
            v(&w[..0], &[0]),
            v(&w[..0], &[0])
        ),
        Err(Error::Param { arg: "hidden", .. })
    ));
    // A set of the wrong width.
    let b = Reference;
    let rpw = ReadProcessWrite::new(None, lstm(4, 2).unwrap(), 2).unwrap();
    let mut ws = bufs(7, 100);
    let mut q = vec![0.0; 4];
    let r = rpw.forward(
        &b,
        v(&w[..9], &[3, 3]),
        b.view_mut(&mut q, &[4]).unwrap(),
        &mut refs(&mut ws),
    );
    assert!(matches!(r, Err(Error::Shape { arg: "x", .. })));
    let r = rpw.forward(
        &b,
        v(&w[..6], &[3, 2]),
        b.view_mut(&mut q, &[4]).unwrap(),
        &mut refs(&mut ws[..6]),
    );
    assert!(matches!(
        r,
        Err(Error::Capacity {
            arg: "workspace",
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any shapes, any buffer counts and sizes: an answer, never a panic.
    #[test]
    fn fuzz_no_panic(
        dims in proptest::collection::vec(0usize..6, 12), nbuf in 0usize..10, blen in 0usize..80,
        steps in 0usize..3, heads in 0usize..3, thr in -0.5f64..1.5, maxs in 0usize..3,
    ) {
        let b = Reference;
        let w = values(1, 400, 1.0);
        let s = |i: usize, j: usize| -> View<'_, Reference, f64> { v(&w[..dims[i] * dims[j]], &[dims[i], dims[j]]) };
        let mut ws = bufs(nbuf, blen);
        let mut out = vec![0.0; 64];
        if let Ok(p) = PointerAttention::new(s(0, 1), s(2, 3), v(&w[..dims[4]], &[dims[4]])) {
            let o = b.view_mut(&mut out[..dims[5] * dims[6]], &[dims[5], dims[6]]).unwrap();
            let _ = p.log_probs(&b, s(6, 7), s(5, 8), None, o, &mut refs(&mut ws));
            let o = b.view_mut(&mut out[..dims[5] * dims[6]], &[dims[5], dims[6]]).unwrap();
            let _ = p.encode(&b, s(9, 10), o);
        }
        let d = dims[0];
        if let Ok(attn) = MultiheadAttention::new(d, heads, s(1, 2), None, s(3, 4), None) {
            if let Ok(ff) = Linear::new("ff", s(5, 6), None, d, d) {
                if let Ok(m) = Mab::new(attn, None, ff, None) {
                    let o = b.view_mut(&mut out[..dims[7] * dims[8]], &[dims[7], dims[8]]).unwrap();
                    let _ = m.forward(&b, s(9, 10), s(11, 0), o, &mut refs(&mut ws));
                }
            }
        }
        if let Ok(attn) = MultiheadAttention::new(d, heads.max(1), s(1, 2), None, s(3, 4), None) {
            let ln = LayerNorm::new("ln", v(&w[..dims[5]], &[dims[5]]), v(&w[..dims[5]], &[dims[5]]), 1e-5, d).ok();
            if let Ok(ff) = Linear::new("ff", s(5, 6), None, d, d) {
                if let Ok(m) = Mab::new(attn, ln, ff, ln) {
                    if let Ok(isab) = Isab::new(s(7, 8), m, m) {
                        let o = b.view_mut(&mut out[..dims[9] * dims[10]], &[dims[9], dims[10]]).unwrap();
                        let _ = isab.forward(&b, s(11, 0), o, &mut refs(&mut ws));
                    }
                    if let Ok(pma) = Pma::new(s(7, 8), ff, m) {
                        let o = b.view_mut(&mut out[..dims[9] * dims[10]], &[dims[9], dims[10]]).unwrap();
                        let _ = pma.forward(&b, s(11, 0), o, &mut refs(&mut ws));
                    }
                    let o = b.view_mut(&mut out[..dims[9] * dims[10]], &[dims[9], dims[10]]).unwrap();
                    let _ = Sab { mab: m }.forward(&b, s(11, 0), o, &mut refs(&mut ws));
                }
            }
        }
        if let Ok(l) = LstmCell::new(dims[0], dims[1], s(2, 3), s(4, 5), v(&w[..dims[6]], &[dims[6]]), v(&w[..dims[7]], &[dims[7]])) {
            if let Ok(r) = ReadProcessWrite::new(None, l, steps) {
                let o = b.view_mut(&mut out[..dims[8]], &[dims[8]]).unwrap();
                let _ = r.forward(&b, s(9, 10), o, &mut refs(&mut ws));
            }
        }
        if let Ok(act) = Act::new(thr, maxs) {
            let (p, dd) = (dims[0], dims[1]);
            let mut step = |_t: usize, st: View<'_, Reference, f64>, nx: ViewMut<'_, Reference, f64>, h: ViewMut<'_, Reference, f64>| -> Result<()> {
                b.unary(Unary::Tanh, st, nx)?;
                b.unary(Unary::Sigmoid, v(&w[..dims[2]], &[dims[2]]), h)
            };
            let (mut hh, mut rr, mut nn) = (vec![0.0; dims[3]], vec![0.0; dims[3]], vec![0.0; dims[3]]);
            let mut host = vec![0.0; dims[4] * 3];
            let o = b.view_mut(&mut out[..p * dd], &[p, dd]).unwrap();
            let _ = act.run(&b, &mut step, s(0, 1), o, Ponder { halting: &mut hh, remainders: &mut rr, updates: &mut nn }, &mut refs(&mut ws), &mut host);
        }
    }
}

// ---------------------------------------------------------------- ACT

/// tensor2tensor's loop in f64 with halting probabilities from a table `ps[t][p]` and the
/// transform `s_t = tanh(s_{t-1} + c_t)`.
fn naive_act(
    s0: &[f64],
    dim: usize,
    ps: &[Vec<f64>],
    cs: &[f64],
    threshold: f64,
    max_steps: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, usize) {
    let p = s0.len() / dim;
    let (mut h, mut r, mut n) = (vec![0.0; p], vec![0.0; p], vec![0.0; p]);
    let mut state = s0.to_vec();
    let mut out = vec![0.0; p * dim];
    let mut t = 0;
    while (0..p).any(|i| h[i] < threshold && n[i] < max_steps as f64) {
        let mut w = vec![0.0; p];
        for i in 0..p {
            let pr = ps[t][i];
            let running = if h[i] < 1.0 { 1.0 } else { 0.0 };
            let new_halted = if h[i] + pr * running > threshold {
                running
            } else {
                0.0
            };
            let still = if h[i] + pr * running <= threshold {
                running
            } else {
                0.0
            };
            h[i] += pr * still;
            r[i] += new_halted * (1.0 - h[i]);
            h[i] += new_halted * r[i];
            n[i] += still + new_halted;
            w[i] = pr * still + new_halted * r[i];
        }
        for (j, s) in state.iter_mut().enumerate() {
            *s = (*s + cs[t]).tanh();
            out[j] = *s * w[j / dim] + out[j] * (1.0 - w[j / dim]);
        }
        t += 1;
    }
    (out, h, r, n, t)
}

struct ActRun {
    out: Vec<f64>,
    h: Vec<f64>,
    r: Vec<f64>,
    n: Vec<f64>,
    steps: usize,
    cost: f64,
}

/// Runs the controller with the table step on the reference backend.
fn run_act(act: &Act, s0: &[f64], dim: usize, ps: &[Vec<f64>], cs: &[f64]) -> Result<ActRun> {
    let b = Reference;
    let p = s0.len() / dim;
    let mut scratch = vec![0.0; p * dim];
    let mut full = |t: usize,
                    st: View<'_, Reference, f64>,
                    nx: ViewMut<'_, Reference, f64>,
                    h: ViewMut<'_, Reference, f64>|
     -> Result<()> {
        let c = [cs[t]];
        b.binary(
            Binary::Add,
            st,
            b.view(&c, &[1, 1])?.expand(&[p, dim])?,
            b.view_mut(&mut scratch, &[p, dim])?,
        )?;
        b.unary(Unary::Tanh, b.view(&scratch, &[p, dim])?, nx)?;
        b.unary(Unary::Scale(1.0), b.view(&ps[t], &[p])?, h)
    };
    let lens = Act::workspace_lens(p, dim)?;
    let mut ws: Vec<Vec<f64>> = lens.iter().map(|&l| vec![0.0; l]).collect();
    let mut host = vec![0.0; 3 * p];
    let (mut h, mut r, mut n) = (vec![0.0; p], vec![0.0; p], vec![0.0; p]);
    let mut out = vec![f64::NAN; p * dim];
    let (steps, cost) = act.run(
        &b,
        &mut full,
        b.view(s0, &[p, dim])?,
        b.view_mut(&mut out, &[p, dim])?,
        Ponder {
            halting: &mut h,
            remainders: &mut r,
            updates: &mut n,
        },
        &mut refs(&mut ws),
        &mut host,
    )?;
    Ok(ActRun {
        out,
        h,
        r,
        n,
        steps,
        cost,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn act_agrees_with_naive_loop_and_keeps_its_identities(
        p in 0usize..7, dim in 1usize..4, max_steps in 1usize..7,
        threshold in prop_oneof![Just(0.99), 0.05f64..=1.0],
        table in proptest::collection::vec(0.0f64..=1.0, 6 * 7),
        seed in any::<u64>(),
    ) {
        let ps: Vec<Vec<f64>> = (0..max_steps).map(|t| (0..p).map(|i| table[(t * 6 + i) % table.len()]).collect()).collect();
        let cs = values(seed, max_steps, 1.0);
        let s0 = values(seed ^ 1, p * dim, 2.0);
        let act = Act::new(threshold, max_steps).unwrap();
        let got = run_act(&act, &s0, dim, &ps, &cs).unwrap();
        let (out, h, r, n, steps) = naive_act(&s0, dim, &ps, &cs, threshold, max_steps);
        prop_assert_eq!(got.steps, steps);
        prop_assert!(steps <= max_steps);
        prop_assert_eq!(&got.n, &n);
        assert_close(&got.out, &out, 1e-14)?;
        assert_close(&got.h, &h, 0.0)?;
        assert_close(&got.r, &r, 0.0)?;
        let cost = if p == 0 { 0.0 } else { n.iter().zip(&r).map(|(a, b)| a + b).sum::<f64>() / p as f64 };
        prop_assert!((got.cost - cost).abs() < 1e-12);
        for i in 0..p {
            prop_assert!(got.n[i] <= max_steps as f64);
            // The update weights p_1 .. p_{N-1}, R of a halted position sum to 1.
            if got.r[i] > 0.0 {
                let k = got.n[i] as usize;
                let sum: f64 = (0..k - 1).map(|t| ps[t][i]).sum::<f64>() + got.r[i];
                prop_assert!((sum - 1.0).abs() < 1e-12, "position {}: weights sum to {}", i, sum);
                prop_assert!((got.h[i] - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn act_threshold_reached_at_step_one_is_one_step(
        p in 1usize..6, dim in 1usize..4, max_steps in 1usize..5, seed in any::<u64>(),
        first in proptest::collection::vec(0.995f64..=1.0, 6),
    ) {
        let b = Reference;
        let ps: Vec<Vec<f64>> = (0..max_steps).map(|_| first[..p].to_vec()).collect();
        let cs = values(seed, max_steps, 1.0);
        let s0 = values(seed ^ 1, p * dim, 2.0);
        let act = Act::universal_transformer(max_steps).unwrap();
        let got = run_act(&act, &s0, dim, &ps, &cs).unwrap();
        prop_assert_eq!(got.steps, 1);
        prop_assert!(got.n.iter().all(|&x| x == 1.0));
        prop_assert!(got.r.iter().all(|&x| x == 1.0));
        prop_assert!((got.cost - 2.0).abs() < 1e-15);
        // The output is one step of the transformation, weighted by R = 1.
        let mut one = vec![0.0; p * dim];
        let c = [cs[0]];
        let mut tmp = vec![0.0; p * dim];
        b.binary(Binary::Add, v(&s0, &[p, dim]), v(&c, &[1, 1]).expand(&[p, dim]).unwrap(), b.view_mut(&mut tmp, &[p, dim]).unwrap()).unwrap();
        b.unary(Unary::Tanh, v(&tmp, &[p, dim]), b.view_mut(&mut one, &[p, dim]).unwrap()).unwrap();
        prop_assert_eq!(got.out, one);
    }
}

#[test]
fn act_rejects_bad_input() {
    for t in [0.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            Act::new(t, 3),
            Err(Error::Param {
                arg: "threshold",
                ..
            })
        ));
    }
    assert!(Act::new(1.0, 1).is_ok());
    assert!(matches!(
        Act::new(0.5, 0),
        Err(Error::Param {
            arg: "max_steps",
            ..
        })
    ));
    let act = Act::universal_transformer(3).unwrap();
    let s0 = [0.5; 4];
    for bad in [f64::NAN, -0.25, 1.5] {
        let ps = vec![vec![bad, 0.5]; 3];
        let r = run_act(&act, &s0, 2, &ps, &[0.0; 3]);
        assert!(
            matches!(r, Err(Error::Param { arg: "halting", .. })),
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------- MAB against naive f64 loops

/// `x [r, c] w^T + b` with `w [o, c]`.
fn lin(x: &[f64], r: usize, c: usize, w: &[f64], b: &[f64], o: usize) -> Vec<f64> {
    let mut y = vec![0.0; r * o];
    for i in 0..r {
        for j in 0..o {
            y[i * o + j] = b[j] + (0..c).map(|k| x[i * c + k] * w[j * c + k]).sum::<f64>();
        }
    }
    y
}

fn layer_norm(x: &[f64], d: usize, g: &[f64], b: &[f64]) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
            let r = 1.0 / (var + 1e-5).sqrt();
            row.iter()
                .enumerate()
                .map(move |(j, v)| (v - mean) * r * g[j] + b[j])
                .collect::<Vec<_>>()
        })
        .collect()
}

/// MAB(X, Y) of Lee et al. eq. 6-7 with nn.MultiheadAttention's layout, in plain loops.
fn naive_mab(
    w: &SetWeights,
    d: usize,
    heads: usize,
    x: &[f64],
    n: usize,
    y: &[f64],
    m: usize,
) -> Vec<f64> {
    let ww = &w.w;
    let (wq, wk, wv) = (
        &ww[0][..d * d],
        &ww[0][d * d..2 * d * d],
        &ww[0][2 * d * d..],
    );
    let (bq, bk, bv) = (&ww[1][..d], &ww[1][d..2 * d], &ww[1][2 * d..]);
    let q = lin(x, n, d, wq, bq, d);
    let k = lin(y, m, d, wk, bk, d);
    let v = lin(y, m, d, wv, bv, d);
    let dh = d / heads;
    let mut ctx = vec![0.0; n * d];
    for h in 0..heads {
        for i in 0..n {
            let s: Vec<f64> = (0..m)
                .map(|j| {
                    (0..dh)
                        .map(|c| q[i * d + h * dh + c] * k[j * d + h * dh + c])
                        .sum::<f64>()
                        / (dh as f64).sqrt()
                })
                .collect();
            let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|z| (z - mx).exp()).collect();
            let tot: f64 = e.iter().sum();
            for c in 0..dh {
                ctx[i * d + h * dh + c] = (0..m).map(|j| e[j] / tot * v[j * d + h * dh + c]).sum();
            }
        }
    }
    let a = lin(&ctx, n, d, &ww[2], &ww[3], d);
    let s: Vec<f64> = x.iter().zip(&a).map(|(p, q)| p + q).collect();
    let hh = layer_norm(&s, d, &ww[4], &ww[5]);
    let f = lin(&hh, n, d, &ww[8], &ww[9], d);
    let s2: Vec<f64> = hh.iter().zip(&f).map(|(p, q)| p + q.max(0.0)).collect();
    layer_norm(&s2, d, &ww[6], &ww[7])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mab_agrees_with_naive_f64(
        heads in 1usize..5, dh in 1usize..5, n in 0usize..7, m in 0usize..7, seed in any::<u64>(),
    ) {
        let b = Reference;
        let d = heads * dh;
        let w = SetWeights::new(seed, d);
        let x = values(seed ^ 21, n * d, 1.5);
        let y = values(seed ^ 22, m * d, 1.5);
        let mab = w.mab(d, heads);
        let mut ws = bufs(Mab::<Reference, f64>::BUFFERS, mab.workspace_len(n, m).unwrap());
        let mut out = vec![f64::NAN; n * d];
        mab.forward(&b, v(&x, &[n, d]), v(&y, &[m, d]), b.view_mut(&mut out, &[n, d]).unwrap(), &mut refs(&mut ws)).unwrap();
        let want = if m == 0 {
            // No keys: the attention output is the out-projection bias alone (softmax of an
            // empty row is empty, the context zero).
            let ctx = vec![0.0; n * d];
            let a = lin(&ctx, n, d, &w.w[2], &w.w[3], d);
            let s: Vec<f64> = x.iter().zip(&a).map(|(p, q)| p + q).collect();
            let hh = layer_norm(&s, d, &w.w[4], &w.w[5]);
            let f = lin(&hh, n, d, &w.w[8], &w.w[9], d);
            let s2: Vec<f64> = hh.iter().zip(&f).map(|(p, q)| p + q.max(0.0)).collect();
            layer_norm(&s2, d, &w.w[6], &w.w[7])
        } else {
            naive_mab(&w, d, heads, &x, n, &y, m)
        };
        assert_close(&out, &want, 1e-11)?;
    }
}
