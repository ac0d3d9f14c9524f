//! The packed gemm against the reference kernel: every layout kind, every tail, both sides of
//! the k, m and n blocks, beta = 0 with NaN in `c`, f16/bf16 rounding, and the same `Err` for the
//! same bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_lossless,
    missing_docs
)]

use half::{bf16, f16};
use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::{Backend, Element, Layout, Reference, Result, View, ViewMut};

/// The backend under test; `None` on a CPU below this build's level (a v4 build here), where
/// the level test (`tests/level.rs`) checks the refusal instead.
fn simd() -> Option<Simd> {
    match Simd::new() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("gemm tests skipped: {e}");
            None
        }
    }
}

/// How an operand is laid out in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Row-major, dense.
    Contiguous,
    /// The transpose of a dense `[.., cols, rows]` buffer (swapped strides).
    Transposed,
    /// Row pitch larger than the row.
    Padded,
    /// Column stride 2.
    ColStrided,
    /// Dense, starting at element 5.
    Offset,
    /// One matrix shared by every batch entry (batch stride 0); dense otherwise.
    Broadcast,
}

const KINDS: [Kind; 6] = [
    Kind::Contiguous,
    Kind::Transposed,
    Kind::Padded,
    Kind::ColStrided,
    Kind::Offset,
    Kind::Broadcast,
];

/// The layout of a `[batch?, r, c]` operand of `kind` (rank 2 when `batch` is `None`).
fn layout(kind: Kind, batch: Option<usize>, r: usize, c: usize) -> Layout {
    let (off, rs, cs, bs) = match kind {
        Kind::Contiguous => (0, c, 1, r * c),
        Kind::Transposed => (0, 1, r, r * c),
        Kind::Padded => (0, c + 3, 1, r * (c + 3) + 1),
        Kind::ColStrided => (0, 2 * c, 2, 2 * r * c),
        Kind::Offset => (5, c, 1, r * c),
        Kind::Broadcast => (0, c, 1, 0),
    };
    match batch {
        None => Layout::new(off, &[r, c], &[rs, cs]).unwrap(),
        Some(p) => Layout::new(off, &[p, r, c], &[bs, rs, cs]).unwrap(),
    }
}

/// Deterministic values in [-2, 2) (a few exact small integers too), from `seed`.
fn values(seed: u64, len: usize) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            if s % 7 == 0 {
                (u * 8.0).floor() - 4.0
            } else {
                4.0 * u - 2.0
            }
        })
        .collect()
}

/// One product: buffers (as f64, rounded to `T` on use) and layouts.
#[derive(Clone, Debug)]
struct Problem {
    a: Vec<f64>,
    la: Layout,
    b: Vec<f64>,
    lb: Layout,
    c: Vec<f64>,
    lc: Layout,
    alpha: f64,
    beta: f64,
}

#[allow(clippy::too_many_arguments)]
fn problem(
    batch: Option<usize>,
    m: usize,
    n: usize,
    k: usize,
    kinds: [Kind; 3],
    alpha: f64,
    beta: f64,
    seed: u64,
) -> Problem {
    let la = layout(kinds[0], batch, m, k);
    let lb = layout(kinds[1], batch, k, n);
    // A writable view may not share addresses: no broadcast for `c`.
    let kc = if kinds[2] == Kind::Broadcast {
        Kind::Contiguous
    } else {
        kinds[2]
    };
    let lc = layout(kc, batch, m, n);
    Problem {
        a: values(seed, la.end()),
        la,
        b: values(seed ^ 0x9e37, lb.end()),
        lb,
        c: values(seed ^ 0x7f4a, lc.end()),
        lc,
        alpha,
        beta,
    }
}

/// Runs `p` in `T` on `bk`; the whole `c` buffer afterwards, widened to f64.
fn run<B: Backend<Mem<T> = [T]>, T: Element>(bk: &B, p: &Problem) -> Result<Vec<f64>> {
    let a: Vec<T> = p.a.iter().map(|&x| T::from_f64(x)).collect();
    let b: Vec<T> = p.b.iter().map(|&x| T::from_f64(x)).collect();
    let mut c: Vec<T> = p.c.iter().map(|&x| T::from_f64(x)).collect();
    bk.gemm::<T>(
        p.alpha,
        View::<B, T>::new(&a[..], p.la)?,
        View::<B, T>::new(&b[..], p.lb)?,
        p.beta,
        ViewMut::<B, T>::new(&mut c[..], p.lc)?,
    )?;
    Ok(c.iter().map(|x| x.to_f64()).collect())
}

/// Unit roundoff of `T` and of its accumulation type, and the smallest positive subnormal of `T`
/// (the absolute slack of one rounding to `T` near zero).
fn units<T: Element>() -> (f64, f64, f64) {
    match T::DTYPE {
        seqcore::DType::F64 => (f64::EPSILON / 2.0, f64::EPSILON / 2.0, 5e-324),
        seqcore::DType::F32 => (
            f32::EPSILON as f64 / 2.0,
            f32::EPSILON as f64 / 2.0,
            1.5e-45,
        ),
        seqcore::DType::F16 => (2f64.powi(-11), f32::EPSILON as f64 / 2.0, 2f64.powi(-24)),
        _ => (2f64.powi(-8), f32::EPSILON as f64 / 2.0, 2f64.powi(-133)),
    }
}

/// Checks the simd result of `p` in `T` against the reference in `T`: equal errors, equal
/// non-finite values, and finite values within twice the `gamma_k` bound of one product (each
/// side is within one bound of the exact value) plus one rounding to `T` on each side.
fn agree<T: Element>(s: &Simd, p: &Problem) {
    let got = run::<Simd, T>(s, p);
    let want = run::<Reference, T>(&Reference, p);
    let (got, want) = match (got, want) {
        (Ok(g), Ok(w)) => (g, w),
        (g, w) => {
            assert_eq!(g.err(), w.err(), "errors differ for {p:?}");
            return;
        }
    };
    let (u, ua, tiny) = units::<T>();
    // sum_k |a_ik b_kj| per address of c, and |beta c| before the call, in f64.
    let sh = p.lc.shape();
    let (batch, m, n) = match *sh {
        [m, n] => (1, m, n),
        [q, m, n] => (q, m, n),
        _ => unreachable!(),
    };
    let k = p.la.shape()[p.la.rank() - 1];
    let st = |l: &Layout| -> (usize, usize, usize) {
        let s = l.strides();
        if s.len() == 2 {
            (0, s[0], s[1])
        } else {
            (s[0], s[1], s[2])
        }
    };
    let (ab, ar, ac) = st(&p.la);
    let (bb, br, bc) = st(&p.lb);
    let (cb, cr, cc) = st(&p.lc);
    let r = |x: f64| T::from_f64(x).to_f64();
    let mut touched = vec![false; got.len()];
    for q in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut abs_dot = 0.0;
                for kk in 0..k {
                    let x = r(p.a[p.la.offset() + q * ab + i * ar + kk * ac]);
                    let y = r(p.b[p.lb.offset() + q * bb + kk * br + j * bc]);
                    abs_dot += (x * y).abs();
                }
                let o = p.lc.offset() + q * cb + i * cr + j * cc;
                touched[o] = true;
                let beta_c = if p.beta == 0.0 {
                    0.0
                } else {
                    (p.beta * r(p.c[o])).abs()
                };
                let (g, w) = (got[o], want[o]);
                if !w.is_finite() || !g.is_finite() {
                    assert!(
                        g == w || (g.is_nan() && w.is_nan()),
                        "c[{q},{i},{j}]: simd {g} reference {w} in {}",
                        T::NAME
                    );
                    continue;
                }
                let acc = (2.0 * k as f64 + 4.0) * ua * p.alpha.abs() * abs_dot + 4.0 * ua * beta_c;
                let bound = 2.0 * acc * (1.0 + u) + u * (g.abs() + w.abs()) + 2.0 * tiny;
                assert!(
                    (g - w).abs() <= bound,
                    "c[{q},{i},{j}] (m {m} n {n} k {k}) in {}: simd {g} reference {w}, bound {bound}",
                    T::NAME
                );
            }
        }
    }
    // Nothing outside the view is written.
    for (o, t) in touched.iter().enumerate() {
        if !t {
            assert_eq!(
                got[o].to_bits(),
                r(p.c[o]).to_bits(),
                "c[{o}] outside the view changed"
            );
        }
    }
}

fn agree_all(s: &Simd, p: &Problem) {
    agree::<f64>(s, p);
    agree::<f32>(s, p);
    agree::<f16>(s, p);
    agree::<bf16>(s, p);
}

/// Every extent in 0..=3 LANES + 1 on each axis (the others at a few awkward values), for the
/// f32 and f64 register tiles (MR = 6 rows, NR = 2 vectors, or 1 on SSE2).
#[test]
fn tails_over_m_n_k() {
    let Some(s) = simd() else { return };
    let top = 3 * F32_LANES + 1;
    let others = [0, 1, 5, 7, F32_LANES + 1];
    let mut seed = 1;
    for x in 0..=top {
        for &y in &others {
            for &z in &others {
                for (m, n, k) in [(x, y, z), (y, x, z), (y, z, x)] {
                    seed += 1;
                    let p = problem(None, m, n, k, [Kind::Contiguous; 3], 1.0, 0.0, seed);
                    agree::<f64>(&s, &p);
                    agree::<f32>(&s, &p);
                }
            }
        }
    }
}

/// Both sides of the KC = 256 k block (the f32/f64 k split) and of the MC and NC blocks.
#[test]
fn block_edges() {
    let Some(s) = simd() else { return };
    let mut seed = 100;
    for (m, n, k) in [
        (7, 17, 255),
        (7, 17, 256),
        (7, 17, 257),
        (13, 33, 513),
        (3, 2, 1000),
        (130, 5, 3),
        (131, 19, 300),
        (257, 3, 2),
        (1, 4100, 2),
        (2, 4099, 257),
    ] {
        for beta in [0.0, 1.0, -0.75] {
            seed += 1;
            let p = problem(None, m, n, k, [Kind::Contiguous; 3], 1.5, beta, seed);
            agree::<f64>(&s, &p);
            agree::<f32>(&s, &p);
            agree::<f16>(&s, &p);
        }
    }
}

/// Every layout kind on every operand, rank 2 and batched.
#[test]
fn every_layout_kind() {
    let Some(s) = simd() else { return };
    let mut seed = 1000;
    for ka in KINDS {
        for kb in KINDS {
            for kc in KINDS {
                for batch in [None, Some(3)] {
                    seed += 1;
                    let p = problem(batch, 9, 19, 11, [ka, kb, kc], -0.5, 0.25, seed);
                    agree_all(&s, &p);
                }
            }
        }
    }
}

/// `beta = 0` never reads `c`: NaN there does not propagate; with `beta != 0` it does.
#[test]
fn beta_zero_ignores_nan_in_c() {
    let Some(s) = simd() else { return };
    for (m, n, k) in [(1, 1, 1), (7, 17, 5), (13, 40, 300), (4, 4, 0)] {
        let mut p = problem(Some(2), m, n, k, [Kind::Contiguous; 3], 1.0, 0.0, 7);
        p.c.iter_mut().for_each(|x| *x = f64::NAN);
        let got = run::<Simd, f32>(&s, &p).unwrap();
        assert!(got.iter().all(|x| x.is_finite()), "NaN leaked from c");
        agree_all(&s, &p);
        p.beta = 1.0;
        let got = run::<Simd, f64>(&s, &p).unwrap();
        assert!(got.iter().all(|x| x.is_nan()), "beta = 1 must read c");
    }
}

/// k = 0: `c = alpha * 0 + beta c` (and `c = 0` with beta = 0), as the reference.
#[test]
fn empty_k_scales_c() {
    let Some(s) = simd() else { return };
    for beta in [0.0, 1.0, 2.5] {
        let p = problem(Some(2), 5, 3, 0, [Kind::Padded; 3], -1.0, beta, 3);
        agree_all(&s, &p);
        let got = run::<Simd, f64>(&s, &p).unwrap();
        let r = &p.c;
        for (o, g) in got.iter().enumerate() {
            let want = if p.lc.offsets().any(|x| x == o) {
                beta * r[o]
            } else {
                r[o]
            };
            assert_eq!(*g, want);
        }
    }
}

/// NaN and infinities in the operands land where the reference puts them (the sums here do not
/// depend on their order), and f16's range: partial sums past 65504 whose total is in range.
#[test]
fn specials_and_f16_overflow() {
    let Some(s) = simd() else { return };
    for (m, n, k) in [(3, 5, 4), (7, 17, 9), (8, 33, 260)] {
        let mut p = problem(None, m, n, k, [Kind::Contiguous; 3], 1.0, 0.0, 11);
        p.a[0] = f64::NAN;
        p.a[k + 1] = f64::INFINITY;
        p.b[n + 2] = f64::NEG_INFINITY;
        agree_all(&s, &p);
        // alpha = 0 still multiplies: 0 * inf and NaN stay NaN.
        p.alpha = 0.0;
        agree_all(&s, &p);
    }
    // 300 * 300 * 8 = 720000 > 65504 in f16; the result, alternating signs, is in range.
    let mut p = problem(None, 1, 1, 8, [Kind::Contiguous; 3], 0.5, 0.0, 0);
    p.a.iter_mut().for_each(|x| *x = 300.0);
    for (i, x) in p.b.iter_mut().enumerate() {
        *x = if i % 2 == 0 { 300.0 } else { -299.0 };
    }
    let got = run::<Simd, f16>(&s, &p).unwrap();
    assert_eq!(got[0], 600.0);
    agree_all(&s, &p);
    // A result past f16's range rounds to inf, once.
    p.b.iter_mut().for_each(|x| *x = 300.0);
    let got = run::<Simd, f16>(&s, &p).unwrap();
    assert_eq!(got[0], f64::INFINITY);
}

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(KINDS.to_vec())
}

fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![0..=3 * F32_LANES + 1, 0usize..=3]
}

fn scale() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), Just(-1.0), -3.0f64..3.0]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random extents, layouts and scales: simd agrees with the reference in every dtype.
    #[test]
    fn simd_matches_reference(
        batch in prop_oneof![Just(None), (1usize..=3).prop_map(Some)],
        m in dim(), n in dim(), k in prop_oneof![dim(), 250usize..=270],
        kinds in [kind(), kind(), kind()],
        alpha in scale(), beta in scale(), seed in any::<u64>(),
    ) {
        if let Some(s) = simd() {
            let p = problem(batch, m, n, k, kinds, alpha, beta, seed);
            agree_all(&s, &p);
        }
    }

    /// Any shapes and scales, mostly bad: the same `Err` (or the same numbers) as the reference.
    #[test]
    fn same_errors_as_reference(
        sa in prop::collection::vec(0usize..4, 1..=4),
        sb in prop::collection::vec(0usize..4, 1..=4),
        sc in prop::collection::vec(0usize..4, 1..=4),
        alpha in prop_oneof![Just(1.0), Just(f64::NAN), Just(f64::INFINITY), Just(1e300)],
        beta in prop_oneof![Just(0.0), Just(f64::NAN), Just(f64::NEG_INFINITY), Just(-1e300)],
        seed in any::<u64>(),
    ) {
        if let Some(s) = simd() {
            let mk = |sh: &[usize]| Layout::contiguous(sh).unwrap();
            let (la, lb, lc) = (mk(&sa), mk(&sb), mk(&sc));
            let p = Problem {
                a: values(seed, la.end()),
                la,
                b: values(seed ^ 1, lb.end()),
                lb,
                c: values(seed ^ 2, lc.end()),
                lc,
                alpha,
                beta,
            };
            for (g, w) in [
                (run::<Simd, f64>(&s, &p).err(), run::<Reference, f64>(&Reference, &p).err()),
                (run::<Simd, f32>(&s, &p).err(), run::<Reference, f32>(&Reference, &p).err()),
                (run::<Simd, bf16>(&s, &p).err(), run::<Reference, bf16>(&Reference, &p).err()),
            ] {
                prop_assert_eq!(g, w);
            }
            let ok = run::<Reference, f64>(&Reference, &p).is_ok();
            if ok {
                agree_all(&s, &p);
            }
        }
    }
}
