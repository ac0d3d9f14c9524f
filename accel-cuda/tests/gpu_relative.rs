//! `relative_attention` on a real GPU (`kernels/relative.cu`) against `seqcore::Reference` in
//! f64 on the same rounded inputs: Shaw's clipped distances, Music Transformer, T5 buckets, in
//! every element type, with token-major (strided) views and tables shared across heads (stride
//! 0), lengths 0 and 1, queries that see no key, special values, and bad input. On a machine
//! without a GPU every test prints `SKIPPED` and passes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    clippy::too_many_lines
)]

mod support;

use seq_accel_cuda::CudaBackend;
use seqcore::portable::relative::{RelativeIndex, RelativeParams, workspace_len};
use seqcore::{Allocate, Backend, DType, Element, Layout, Reference, View, ViewMut, bf16, f16};
use support::rng::Rng;
use support::{down, gpu, up};

/// How a relative table is given.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Table {
    None,
    /// `[H, R, ..]`, one table per head.
    PerHead,
    /// `[1, R, ..]` expanded to `[H, R, ..]` (head stride 0).
    Shared,
}

#[derive(Clone, Debug)]
struct Case {
    b: usize,
    h: usize,
    lq: usize,
    lk: usize,
    d: usize,
    dv: usize,
    params: RelativeParams,
    rk: Table,
    rv: Table,
    rb: Table,
    /// q, k, v, o stored `[B, L, H, D]` and viewed `[B, H, L, D]`.
    token_major: bool,
    /// Multiplies q (large logits: the online rescaling).
    q_mag: f64,
}

/// Logical inputs, each row-major in its logical shape (`[B, H, L, D]`, tables `[H or 1, R, ..]`).
#[derive(Clone, Debug)]
struct Inputs {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    rk: Vec<f64>,
    rv: Vec<f64>,
    rb: Vec<f64>,
}

/// Deterministic values in `[-mag, mag)`.
fn vals(n: usize, seed: u64, mag: f64) -> Vec<f64> {
    Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234_5678).vec(n, mag)
}

fn table_heads(c: &Case, t: Table) -> usize {
    match t {
        Table::Shared => 1,
        _ => c.h,
    }
}

fn inputs(c: &Case, seed: u64) -> Inputs {
    let rows = c.params.index.rows();
    let n = |t: Table, per_row: usize| {
        if t == Table::None {
            0
        } else {
            table_heads(c, t) * rows * per_row
        }
    };
    Inputs {
        q: vals(c.b * c.h * c.lq * c.d, seed, c.q_mag),
        k: vals(c.b * c.h * c.lk * c.d, seed + 1, 1.0),
        v: vals(c.b * c.h * c.lk * c.dv, seed + 2, 1.0),
        rk: vals(n(c.rk, c.d), seed + 3, 0.5),
        rv: vals(n(c.rv, c.dv), seed + 4, 0.5),
        rb: vals(n(c.rb, 1), seed + 5, 1.0),
    }
}

/// Storage and view layout of a `[B, H, L, X]` operand.
fn bhlx(c: &Case, l: usize, x: usize, logical: &[f64]) -> (Vec<f64>, Layout) {
    if !c.token_major {
        return (
            logical.to_vec(),
            Layout::contiguous(&[c.b, c.h, l, x]).unwrap(),
        );
    }
    let mut st = vec![0.0; logical.len()];
    for b in 0..c.b {
        for h in 0..c.h {
            for i in 0..l {
                for e in 0..x {
                    st[((b * l + i) * c.h + h) * x + e] = logical[((b * c.h + h) * l + i) * x + e];
                }
            }
        }
    }
    let lay = Layout::contiguous(&[c.b, l, c.h, x])
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    (st, lay)
}

/// Layout of a table `[H, R, X..]` (`x` empty for the bias).
fn table_layout(c: &Case, t: Table, x: &[usize]) -> Layout {
    let rows = c.params.index.rows();
    let mut full = vec![c.h, rows];
    full.extend_from_slice(x);
    match t {
        Table::Shared => {
            let mut one = vec![1, rows];
            one.extend_from_slice(x);
            Layout::contiguous(&one).unwrap().expand(&full).unwrap()
        }
        _ => Layout::contiguous(&full).unwrap(),
    }
}

fn floor(t: DType) -> f64 {
    match t {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 5.960_464_477_539_063e-8,
        _ => f64::from(f32::MIN_POSITIVE),
    }
}

/// Runs `c` on the GPU in `T` and on the reference in f64 on the same `T`-rounded inputs.
/// Returns `(got, want, bound)`: the outputs in logical `[B, H, Lq, Dv]` order and each element's
/// allowed difference.
///
/// The bound is the conformance suite's for `relative_attention`
/// (`conformance/src/mechanisms/attention/positional/relative.rs`), the one the lead's run holds
/// the kernel to: per query row, the logits carry
/// `de = (D + 4) ua |scale| sum|q|(|k| + |a^K|) + 2 ua |bias|`; softmax is 2-Lipschitz (max norm into the weights' l1 norm), the online
/// rescaling and the weighted sum add `(Lk + 8) ua`, times the largest `|v| + |a^V|`; the
/// store rounds once (`2u |o|`). Non-finite terms (keys hidden by a `-inf` bias) are left out:
/// where they reach the output, the reference's output is non-finite and compared exactly.
fn run<T: Element>(b: &CudaBackend, c: &Case, x: &Inputs) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let r = Reference;
    let rt = |v: &[f64]| -> Vec<f64> { v.iter().map(|&e| T::from_f64(e).to_f64()).collect() };
    let x = Inputs {
        q: rt(&x.q),
        k: rt(&x.k),
        v: rt(&x.v),
        rk: rt(&x.rk),
        rv: rt(&x.rv),
        rb: rt(&x.rb),
    };
    let (qs, ql) = bhlx(c, c.lq, c.d, &x.q);
    let (ks, kl) = bhlx(c, c.lk, c.d, &x.k);
    let (vs, vl) = bhlx(c, c.lk, c.dv, &x.v);
    let on = c.b * c.h * c.lq * c.dv;
    let (_, ol) = bhlx(c, c.lq, c.dv, &vec![0.0; on]);
    let (rkl, rvl, rbl) = (
        table_layout(c, c.rk, &[c.d]),
        table_layout(c, c.rv, &[c.dv]),
        table_layout(c, c.rb, &[]),
    );
    // reference, f64
    let mut want_st = vec![0.0f64; on];
    let mut ws = vec![0.0f64; workspace_len(c.dv)];
    r.relative_attention(
        &c.params,
        View::new(qs.as_slice(), ql).unwrap(),
        View::new(ks.as_slice(), kl).unwrap(),
        View::new(vs.as_slice(), vl).unwrap(),
        (c.rk != Table::None).then(|| View::new(x.rk.as_slice(), rkl).unwrap()),
        (c.rv != Table::None).then(|| View::new(x.rv.as_slice(), rvl).unwrap()),
        (c.rb != Table::None).then(|| View::new(x.rb.as_slice(), rbl).unwrap()),
        ViewMut::new(want_st.as_mut_slice(), ol).unwrap(),
        &mut ws,
    )
    .unwrap();
    // GPU, in T; the output starts as NaN so that an element never written shows.
    let tv = |v: &[f64]| -> Vec<T> { v.iter().map(|&e| T::from_f64(e)).collect() };
    let (qm, km, vm) = (up(b, &tv(&qs)), up(b, &tv(&ks)), up(b, &tv(&vs)));
    let (rkm, rvm, rbm) = (up(b, &tv(&x.rk)), up(b, &tv(&x.rv)), up(b, &tv(&x.rb)));
    let mut om = up(b, &vec![T::from_f64(f64::NAN); on]);
    let mut wsm = b.alloc::<T::Acc>(workspace_len(c.dv)).unwrap();
    b.relative_attention(
        &c.params,
        View::new(&qm, ql).unwrap(),
        View::new(&km, kl).unwrap(),
        View::new(&vm, vl).unwrap(),
        (c.rk != Table::None).then(|| View::new(&rkm, rkl).unwrap()),
        (c.rv != Table::None).then(|| View::new(&rvm, rvl).unwrap()),
        (c.rb != Table::None).then(|| View::new(&rbm, rbl).unwrap()),
        ViewMut::new(&mut om, ol).unwrap(),
        &mut wsm,
    )
    .unwrap();
    let got_st: Vec<f64> = down(b, &om).iter().map(|e| e.to_f64()).collect();
    // Back to logical order.
    let logical = |st: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; on];
        for (i, o) in out.iter_mut().enumerate() {
            let (e, row) = (i % c.dv.max(1), i / c.dv.max(1));
            let (ii, bh) = (row % c.lq.max(1), row / c.lq.max(1));
            let (h, bb) = (bh % c.h.max(1), bh / c.h.max(1));
            *o = st[ol.offset()
                + [bb, h, ii, e]
                    .iter()
                    .zip(ol.strides())
                    .map(|(a, s)| a * s)
                    .sum::<usize>()];
        }
        out
    };
    let (got, want) = (logical(&got_st), logical(&want_st));
    // The bound, per element.
    let (u, ua) = (
        T::DTYPE.unit_roundoff(),
        T::DTYPE.accumulator().unit_roundoff(),
    );
    let rows = c.params.index.rows();
    let th = |t: Table, h: usize| if t == Table::Shared { 0 } else { h };
    let fin = |x: f64| if x.is_finite() { x } else { 0.0 };
    let mut bound = vec![0.0; on];
    for bb in 0..c.b {
        for h in 0..c.h {
            for i in 0..c.lq {
                let qpos = i as i64 + c.lk as i64 - c.lq as i64;
                let (mut de, mut vmax) = (0.0f64, 0.0f64);
                for j in 0..c.lk {
                    if c.params.causal && j as i64 > qpos {
                        continue;
                    }
                    let row = c.params.index.row(j as i64 - qpos);
                    let mut s = 0.0;
                    for e in 0..c.d {
                        let a = if c.rk == Table::None {
                            0.0
                        } else {
                            x.rk[(th(c.rk, h) * rows + row) * c.d + e]
                        };
                        s += x.q[((bb * c.h + h) * c.lq + i) * c.d + e].abs()
                            * (x.k[((bb * c.h + h) * c.lk + j) * c.d + e].abs() + a.abs());
                    }
                    let bias = if c.rb == Table::None {
                        0.0
                    } else {
                        x.rb[th(c.rb, h) * rows + row].abs()
                    };
                    de = de.max(fin((c.d as f64 + 4.0) * ua * c.params.scale.abs() * fin(s)
                        + 2.0 * ua * fin(bias)));
                    for e in 0..c.dv {
                        let a = if c.rv == Table::None {
                            0.0
                        } else {
                            x.rv[(th(c.rv, h) * rows + row) * c.dv + e]
                        };
                        vmax = vmax.max(fin(
                            x.v[((bb * c.h + h) * c.lk + j) * c.dv + e].abs() + a.abs()
                        ));
                    }
                }
                for e in 0..c.dv {
                    let idx = ((bb * c.h + h) * c.lq + i) * c.dv + e;
                    bound[idx] = floor(T::DTYPE)
                        + (2.0 * de + (c.lk as f64 + 8.0) * ua) * vmax
                        + 2.0 * u * fin(want[idx].abs());
                }
            }
        }
    }
    (got, want, bound)
}

fn check<T: Element>(b: &CudaBackend, c: &Case, x: &Inputs) {
    let (got, want, bound) = run::<T>(b, c, x);
    for (idx, ((g, w), bd)) in got.iter().zip(&want).zip(&bound).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            g.is_finite() && (g - w).abs() <= *bd
        };
        assert!(
            ok,
            "{} {c:?}: o[{idx}] = {g}, reference {w} (bound {bd})",
            T::NAME
        );
    }
}

fn check_all(b: &CudaBackend, c: &Case, x: &Inputs) {
    check::<f64>(b, c, x);
    check::<f32>(b, c, x);
    check::<f16>(b, c, x);
    check::<bf16>(b, c, x);
}

fn shaw(k: usize) -> RelativeIndex {
    RelativeIndex::Clipped {
        max_back: k,
        max_fwd: k,
    }
}

fn t5(bidirectional: bool, num_buckets: usize, max_distance: usize) -> RelativeIndex {
    RelativeIndex::Buckets {
        bidirectional,
        num_buckets,
        max_distance,
    }
}

fn base() -> Case {
    Case {
        b: 2,
        h: 3,
        lq: 7,
        lk: 37,
        d: 16,
        dv: 8,
        params: RelativeParams {
            scale: 0.25,
            causal: false,
            index: shaw(3),
        },
        rk: Table::PerHead,
        rv: Table::PerHead,
        rb: Table::None,
        token_major: false,
        q_mag: 1.0,
    }
}

fn cases() -> Vec<Case> {
    let b = base();
    let p = |causal: bool, index: RelativeIndex, scale: f64| RelativeParams {
        scale,
        causal,
        index,
    };
    vec![
        // Shaw et al., key and value embeddings, bidirectional.
        b.clone(),
        // Shaw, causal, tables shared across heads (stride 0), token-major views.
        Case {
            params: p(true, shaw(4), 0.25),
            rk: Table::Shared,
            rv: Table::Shared,
            token_major: true,
            ..b.clone()
        },
        // Music Transformer: Lq = Lk, every earlier distance its own row, causal, key table only.
        Case {
            lq: 40,
            lk: 40,
            params: p(
                true,
                RelativeIndex::Clipped {
                    max_back: 39,
                    max_fwd: 0,
                },
                0.25,
            ),
            rv: Table::None,
            ..b.clone()
        },
        // T5 encoder: bidirectional buckets (32, 128), bias only, scale 1, long keys (past
        // max_distance), the bias shared across heads.
        Case {
            lq: 20,
            lk: 300,
            d: 8,
            params: p(false, t5(true, 32, 128), 1.0),
            rk: Table::None,
            rv: Table::None,
            rb: Table::Shared,
            ..b.clone()
        },
        // T5 decoder step and cross lengths: unidirectional, causal, per-head bias, token-major.
        Case {
            lq: 5,
            lk: 200,
            params: p(true, t5(false, 32, 128), 1.0),
            rk: Table::None,
            rv: Table::None,
            rb: Table::PerHead,
            token_major: true,
            ..b.clone()
        },
        // Every table at once, small buckets.
        Case {
            lq: 12,
            lk: 45,
            params: p(false, t5(true, 8, 20), 0.3),
            rb: Table::PerHead,
            ..b.clone()
        },
        // Causal with Lq > Lk: the first rows see no key (zeros).
        Case {
            lq: 9,
            lk: 4,
            params: p(true, shaw(2), 0.5),
            rb: Table::Shared,
            ..b.clone()
        },
        // Several key tiles with a partial last one; Dv above the warp's 32 lanes; D = 1.
        Case {
            b: 1,
            h: 2,
            lq: 3,
            lk: 70,
            d: 1,
            dv: 40,
            params: p(false, shaw(5), 1.0),
            ..b.clone()
        },
        // Large logits (|q| up to 30): the online softmax rescales.
        Case {
            q_mag: 30.0,
            params: p(true, shaw(3), 0.25),
            rb: Table::PerHead,
            ..b.clone()
        },
        // Length 1.
        Case {
            b: 1,
            h: 1,
            lq: 1,
            lk: 1,
            params: p(true, shaw(0), 0.25),
            ..b.clone()
        },
        // No keys (Lk = 0): zeros.
        Case { lk: 0, ..b.clone() },
        // No queries (Lq = 0): nothing to write.
        Case { lq: 0, ..b.clone() },
        // D = 0: every logit is the bias.
        Case {
            d: 0,
            rb: Table::PerHead,
            ..b.clone()
        },
        // Dv = 0: an empty output.
        Case { dv: 0, ..b.clone() },
    ]
}

#[test]
fn relative_attention_matches_the_reference_in_every_type() {
    let Some(b) = gpu() else { return };
    for (n, c) in cases().iter().enumerate() {
        check_all(b, c, &inputs(c, 10 * n as u64 + 1));
    }
}

/// T5 buckets are the reference's exactly, for every distance from -(L - 1) to L - 1, read back
/// through the values: with `q = 0` and no bias every visible key has the same weight, and a
/// one-hot value table (`rel_v[r, c] = [r == c]`) makes `o[c]` the share of keys in bucket `c`.
/// - `Lq = 1`, `Lk = L`: the query sees distances `-(L-1) .. 0` (weights `1/L`).
/// - `Lq = L`, `Lk = 1`: query `i` sees one key at distance `L - 1 - i` (`o` is one-hot).
#[test]
fn t5_buckets_are_the_references() {
    let Some(b) = gpu() else { return };
    for &(bi, nb, md) in &[
        (true, 32, 128),
        (false, 32, 128),
        (true, 8, 20),
        (false, 6, 4),
        (true, 64, 1000),
        (false, 2, 2),
    ] {
        let index = t5(bi, nb, md);
        let l = 400;
        for (lq, lk) in [(1, l), (l, 1)] {
            let c = Case {
                b: 1,
                h: 1,
                lq,
                lk,
                d: 1,
                dv: nb,
                params: RelativeParams {
                    scale: 1.0,
                    causal: false,
                    index,
                },
                rk: Table::None,
                rv: Table::PerHead,
                rb: Table::None,
                token_major: false,
                q_mag: 1.0,
            };
            let mut x = inputs(&c, 7);
            x.q.iter_mut().for_each(|e| *e = 0.0);
            x.v.iter_mut().for_each(|e| *e = 0.0);
            for (i, e) in x.rv.iter_mut().enumerate() {
                *e = f64::from(u8::from(i / nb == i % nb));
            }
            // Exact in f64: shares of 1/L (a count over L) and one-hot rows.
            let (got, want, _) = run::<f64>(b, &c, &x);
            for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                let (gc, wc) = ((g * lk as f64).round(), (w * lk as f64).round());
                assert_eq!(
                    gc, wc,
                    "{index:?} Lq {lq} Lk {lk}: o[{idx}] = {g}, reference {w}"
                );
            }
            check::<f32>(b, &c, &x);
        }
    }
}

/// NaN, infinities and `-inf` biases, as the reference: a NaN logit makes its row NaN; a key
/// whose logit is `-inf` (bias) is skipped and its values never read; a `+inf` logit gives NaN;
/// every key at `-inf` gives zeros; keys hidden by `causal` are never read.
#[test]
fn special_values_as_the_reference() {
    let Some(b) = gpu() else { return };
    let c = Case {
        b: 1,
        h: 2,
        lq: 6,
        lk: 40,
        d: 4,
        dv: 5,
        params: RelativeParams {
            scale: 0.5,
            causal: true,
            index: shaw(3),
        },
        rk: Table::PerHead,
        rv: Table::PerHead,
        rb: Table::PerHead,
        token_major: false,
        q_mag: 1.0,
    };
    let rows = c.params.index.rows();
    let x0 = inputs(&c, 99);
    let (lq, lk, d, dv) = (c.lq, c.lk, c.d, c.dv);
    let qat = |h: usize, i: usize| (h * lq + i) * d;
    let kat = |h: usize, j: usize| (h * lk + j) * d;
    let vat = |h: usize, j: usize| (h * lk + j) * dv;
    let mut variants: Vec<(&str, Inputs)> = Vec::new();
    {
        // NaN in one query: its row is NaN, the others are not.
        let mut x = x0.clone();
        x.q[qat(0, 2) + 1] = f64::NAN;
        variants.push(("nan q", x));
    }
    {
        // A -inf bias on the farthest-back row (distance <= -3): those keys are skipped, so a
        // NaN and an inf in their values (key 0, far behind every query) never show.
        let mut x = x0.clone();
        x.rb[0] = f64::NEG_INFINITY;
        x.v[vat(0, 0)] = f64::NAN;
        x.v[vat(0, 1) + 2] = f64::INFINITY;
        variants.push(("-inf bias hides nan v", x));
    }
    {
        // Every key at -inf in head 1: zeros.
        let mut x = x0.clone();
        for r in 0..rows {
            x.rb[rows + r] = f64::NEG_INFINITY;
        }
        variants.push(("all -inf", x));
    }
    {
        // +inf bias on distance 0 of head 0: NaN rows.
        let mut x = x0.clone();
        x.rb[3] = f64::INFINITY;
        variants.push(("+inf bias", x));
    }
    {
        // NaN in the last key: causally hidden from every query but the last; NaN in a value
        // of a visible key: NaN where the reference has it.
        let mut x = x0.clone();
        x.k[kat(1, lk - 1)] = f64::NAN;
        x.v[vat(0, 20) + 4] = f64::NAN;
        variants.push(("nan k hidden, nan v", x));
    }
    {
        // NaN in a key table row (distance +1 .. never seen under causal): no effect; inf in a
        // value table row seen by every query (distance -1).
        let mut x = x0.clone();
        x.rk[4 * d] = f64::NAN;
        x.rv[(rows + 2) * dv + 1] = f64::INFINITY;
        variants.push(("table specials", x));
    }
    for (name, x) in &variants {
        println!("special values: {name}");
        check_all(b, &c, x);
    }
    // Non-causal, where the later keys are seen too.
    let c2 = Case {
        params: RelativeParams {
            causal: false,
            ..c.params
        },
        ..c.clone()
    };
    for (name, x) in &variants {
        println!("special values (non-causal): {name}");
        check_all(b, &c2, x);
    }
}

/// Bad input: the reference's `Err` (the same `seqcore::portable::relative::check_relative`, in
/// its order), and nothing launched.
#[test]
fn bad_input_gives_the_reference_errors() {
    let Some(b) = gpu() else { return };
    let r = Reference;
    let ok = RelativeParams {
        scale: 0.5,
        causal: true,
        index: shaw(2),
    };
    // (params, q, k, v, rel_k, rel_v, rel_bias, o, workspace)
    type Shapes = (
        RelativeParams,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Option<Vec<usize>>,
        Option<Vec<usize>>,
        Option<Vec<usize>>,
        Vec<usize>,
        usize,
    );
    let good: Shapes = (
        ok,
        vec![1, 2, 3, 4],
        vec![1, 2, 5, 4],
        vec![1, 2, 5, 6],
        Some(vec![2, 5, 4]),
        Some(vec![2, 5, 6]),
        Some(vec![2, 5]),
        vec![1, 2, 3, 6],
        6,
    );
    let mut bad: Vec<Shapes> = Vec::new();
    let mut m = |f: &dyn Fn(&mut Shapes)| {
        let mut s = good.clone();
        f(&mut s);
        bad.push(s);
    };
    m(&|s| s.1 = vec![2, 3, 4]); // q rank
    m(&|s| s.2 = vec![1, 3, 5, 4]); // k heads
    m(&|s| s.2 = vec![1, 2, 5, 3]); // k head dim
    m(&|s| s.3 = vec![1, 2, 4, 6]); // v length
    m(&|s| s.7 = vec![1, 2, 3, 5]); // o dv
    m(&|s| s.0.index = t5(true, 7, 10)); // odd bidirectional buckets
    m(&|s| s.0.index = t5(false, 1, 10)); // too few buckets
    m(&|s| s.0.index = t5(false, 8, 4)); // max_distance within the exact range
    m(&|s| s.0.scale = f64::NAN); // scale
    m(&|s| s.0.scale = f64::INFINITY); // scale
    m(&|s| s.4 = Some(vec![2, 4, 4])); // rel_k rows
    m(&|s| s.5 = Some(vec![2, 5, 5])); // rel_v dv
    m(&|s| s.6 = Some(vec![3, 5])); // rel_bias heads
    m(&|s| s.8 = 5); // workspace
    m(&|s| {
        s.8 = 0;
        s.1 = vec![1, 2, 3];
    }); // rank first, capacity last
    let numel = |s: &[usize]| s.iter().product::<usize>();
    for s in core::iter::once(&good).chain(&bad) {
        let (p, qs, ks, vs, rks, rvs, rbs, os, wl) = s;
        let host = |sh: &[usize]| vec![0.25f64; numel(sh)];
        let (q, k, v, o0) = (host(qs), host(ks), host(vs), host(os));
        let (rk, rv, rb) = (
            rks.as_deref().map(host),
            rvs.as_deref().map(host),
            rbs.as_deref().map(host),
        );
        let mut o = o0.clone();
        let mut ws = vec![0.0f64; *wl];
        let want = r.relative_attention(
            p,
            r.view(&q, qs).unwrap(),
            r.view(&k, ks).unwrap(),
            r.view(&v, vs).unwrap(),
            rk.as_ref()
                .map(|t| r.view(t, rks.as_ref().unwrap()).unwrap()),
            rv.as_ref()
                .map(|t| r.view(t, rvs.as_ref().unwrap()).unwrap()),
            rb.as_ref()
                .map(|t| r.view(t, rbs.as_ref().unwrap()).unwrap()),
            r.view_mut(&mut o, os).unwrap(),
            &mut ws,
        );
        let tv = |v: &[f64]| -> Vec<f32> { v.iter().map(|&e| e as f32).collect() };
        let (qm, km, vm) = (up(b, &tv(&q)), up(b, &tv(&k)), up(b, &tv(&v)));
        let rkm = rk.as_ref().map(|t| up(b, &tv(t)));
        let rvm = rv.as_ref().map(|t| up(b, &tv(t)));
        let rbm = rb.as_ref().map(|t| up(b, &tv(t)));
        let mut om = up(b, &tv(&o0));
        let mut wsm = b.alloc::<f32>(*wl).unwrap();
        let got = b.relative_attention(
            p,
            b.view(&qm, qs).unwrap(),
            b.view(&km, ks).unwrap(),
            b.view(&vm, vs).unwrap(),
            rkm.as_ref()
                .map(|t| b.view(t, rks.as_ref().unwrap()).unwrap()),
            rvm.as_ref()
                .map(|t| b.view(t, rvs.as_ref().unwrap()).unwrap()),
            rbm.as_ref()
                .map(|t| b.view(t, rbs.as_ref().unwrap()).unwrap()),
            b.view_mut(&mut om, os).unwrap(),
            &mut wsm,
        );
        assert_eq!(got, want, "{s:?}");
        if want.is_err() {
            // Nothing written.
            assert_eq!(down(b, &om), tv(&o0), "{s:?}");
        } else {
            assert_eq!(down(b, &om), tv(&o), "{s:?}");
        }
    }
    // An empty output with an empty workspace is fine (Dv = 0 needs no accumulator).
    let (q, k) = (up(b, &[0.5f32; 6]), up(b, &[0.5f32; 4]));
    let (v, mut o, mut ws) = (
        b.alloc::<f32>(0).unwrap(),
        b.alloc::<f32>(0).unwrap(),
        b.alloc::<f32>(0).unwrap(),
    );
    b.relative_attention(
        &ok,
        b.view(&q, &[1, 1, 3, 2]).unwrap(),
        b.view(&k, &[1, 1, 2, 2]).unwrap(),
        b.view(&v, &[1, 1, 2, 0]).unwrap(),
        None,
        None,
        None,
        b.view_mut(&mut o, &[1, 1, 3, 0]).unwrap(),
        &mut ws,
    )
    .unwrap();
}
