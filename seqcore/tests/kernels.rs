//! The reference kernels against values derived by hand or from identities, never from their own
//! output.

// Helpers of a test crate unwrap and index as freely as the tests themselves (clippy.toml
// allows it inside `#[test]` functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use core::f64::consts::{LN_2, PI};

use seqcore::{Backend, Binary, Element, Error, Reduce, Reference, SoftmaxKind, Unary, bf16, f16};

const B: Reference = Reference;
const INF: f64 = f64::INFINITY;
const NAN: f64 = f64::NAN;

fn to<T: Element>(xs: &[f64]) -> Vec<T> {
    xs.iter().map(|&x| T::from_f64(x)).collect()
}

fn back<T: Element>(xs: &[T]) -> Vec<f64> {
    xs.iter().map(|x| x.to_f64()).collect()
}

/// `|a - b| <= tol * max(1, |b|)`, with NaN == NaN and equal infinities equal.
fn close(a: f64, b: f64, tol: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= tol * b.abs().max(1.0)
}

/// `|a - b| <= tol * |b|`.
fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs()
}

#[track_caller]
fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(g, w, tol),
            "[{i}]: got {g:e}, want {w:e} (tol {tol:e})\n got {got:?}\nwant {want:?}"
        );
    }
}

/// Relative tolerance for a handful of roundings in `T`'s accumulation type and one on store.
fn tol<T: Element>() -> f64 {
    16.0 * T::DTYPE
        .unit_roundoff()
        .max(T::DTYPE.accumulator().unit_roundoff())
}

fn softmax<T: Element>(
    kind: SoftmaxKind,
    x: &[f64],
    shape: &[usize],
    mask: Option<&[f64]>,
) -> Vec<f64> {
    let xs = to::<T>(x);
    let ms = mask.map(to::<T>);
    let mut y = vec![T::from_f64(-7.0); x.len()];
    let mv = ms.as_deref().map(|m| B.view(m, shape).unwrap());
    B.softmax(
        kind,
        B.view(&xs, shape).unwrap(),
        mv,
        B.view_mut(&mut y, shape).unwrap(),
    )
    .unwrap();
    back(&y)
}

// ---------------------------------------------------------------------------------------------
// softmax

fn softmax_identities<T: Element>() {
    use SoftmaxKind::{LogSoftmax, Softmax};
    let t = tol::<T>();
    // Equal logits: uniform, exactly 1/n for n a power of two.
    for c in [0.0, 5.0, -100.0, 60000.0] {
        for n in [1usize, 2, 4, 8] {
            let y = softmax::<T>(Softmax, &vec![c; n], &[n], None);
            assert_eq!(y, vec![1.0 / n as f64; n], "{} c={c} n={n}", T::NAME);
            let ly = softmax::<T>(LogSoftmax, &vec![c; 2 * n], &[2, n], None);
            assert_close(&ly, &vec![-(n as f64).ln(); 2 * n], t);
        }
        let y = softmax::<T>(Softmax, &[c; 3], &[3], None);
        assert_close(&y, &[1.0 / 3.0; 3], t);
    }
    // [0, ln 2, ln 3] -> [1, 2, 3] / 6.
    let x = [0.0, LN_2, 3f64.ln()];
    let y = softmax::<T>(Softmax, &x, &[3], None);
    assert_close(&y, &[1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0], t);
    let ly = softmax::<T>(LogSoftmax, &x, &[3], None);
    assert_close(&ly, &[-(6f64.ln()), -(3f64.ln()), -LN_2], t);
    // Shift invariance: adding 1000 changes nothing.
    let y2 = softmax::<T>(Softmax, &x.map(|v| v + 1000.0), &[3], None);
    if T::DTYPE.accumulator() == seqcore::DType::F64 {
        assert_close(&y2, &[1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0], 1e-12);
    }
    // A row of [a, b] is [sigmoid(a - b), sigmoid(b - a)].
    let y = softmax::<T>(Softmax, &[1.5, -0.5], &[2], None);
    let s = 1.0 / (1.0 + (-2.0f64).exp());
    assert_close(&y, &[s, 1.0 - s], t);
}

#[test]
fn softmax_values() {
    softmax_identities::<f64>();
    softmax_identities::<f32>();
    softmax_identities::<f16>();
    softmax_identities::<bf16>();
}

#[test]
fn log_softmax_is_ln_softmax() {
    let x = [0.3, -1.2, 2.5, 0.0, 7.25, -3.0, 1.0, 1.0];
    let y = softmax::<f64>(SoftmaxKind::Softmax, &x, &[2, 4], None);
    let ly = softmax::<f64>(SoftmaxKind::LogSoftmax, &x, &[2, 4], None);
    let ln_y: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    assert_close(&ly, &ln_y, 1e-14);
    // Each row sums to 1; exp(log_softmax) does too.
    for r in 0..2 {
        let s: f64 = y[4 * r..4 * r + 4].iter().sum();
        assert!((s - 1.0).abs() < 1e-15);
        let s: f64 = ly[4 * r..4 * r + 4].iter().map(|v| v.exp()).sum();
        assert!((s - 1.0).abs() < 1e-14);
    }
    // log_softmax keeps precision where softmax underflows: x = [0, -800].
    let ly = softmax::<f64>(SoftmaxKind::LogSoftmax, &[0.0, -800.0], &[2], None);
    assert_close(&ly, &[0.0, -800.0], 1e-15);
    let y = softmax::<f64>(SoftmaxKind::Softmax, &[0.0, -800.0], &[2], None);
    assert_eq!(y, [1.0, 0.0]);
}

fn masked_rows<T: Element>() {
    use SoftmaxKind::{LogSoftmax, Softmax};
    // Row 0 fully -inf, row 1 finite, row 2 NaN, row 3 +inf.
    let x = [
        -INF,
        -INF,
        -INF, //
        0.0,
        LN_2,
        3f64.ln(), //
        1.0,
        NAN,
        2.0, //
        1.0,
        INF,
        2.0,
    ];
    let y = softmax::<T>(Softmax, &x, &[4, 3], None);
    assert_eq!(&y[..3], &[0.0; 3], "{}", T::NAME);
    assert_close(&y[3..6], &[1.0 / 6.0, 2.0 / 6.0, 0.5], tol::<T>());
    assert!(y[6..].iter().all(|v| v.is_nan()), "{y:?}");
    let ly = softmax::<T>(LogSoftmax, &x, &[4, 3], None);
    assert_eq!(&ly[..3], &[-INF; 3]);
    assert_close(&ly[3..6], &[-(6f64.ln()), -(3f64.ln()), -LN_2], tol::<T>());
    assert!(ly[6..].iter().all(|v| v.is_nan()));

    // Additive mask with -inf: a fully masked row, a partly masked one, a NaN in the mask.
    let x = [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0];
    let mask = [
        -INF, -INF, -INF, -INF, //
        0.0, -INF, 0.0, -INF, //
        0.0, NAN, 0.0, 0.0,
    ];
    let y = softmax::<T>(Softmax, &x, &[3, 4], Some(&mask));
    let e2 = 2f64.exp();
    assert_eq!(&y[..4], &[0.0; 4]);
    assert_close(
        &y[4..8],
        &[1.0 / (1.0 + e2), 0.0, e2 / (1.0 + e2), 0.0],
        tol::<T>(),
    );
    assert!(y[8..].iter().all(|v| v.is_nan()));
    let ly = softmax::<T>(LogSoftmax, &x, &[3, 4], Some(&mask));
    assert_eq!(&ly[..4], &[-INF; 4]);
    let l = (1.0 + e2).ln();
    assert_close(&ly[4..8], &[-l, -INF, 2.0 - l, -INF], tol::<T>());
}

#[test]
fn masked_and_non_finite_rows() {
    masked_rows::<f64>();
    masked_rows::<f32>();
    masked_rows::<f16>();
    masked_rows::<bf16>();
    // Empty rows: nothing written, no error.
    let x: [f32; 0] = [];
    let mut y: [f32; 0] = [];
    B.softmax(
        SoftmaxKind::Softmax,
        B.view(&x, &[3, 0]).unwrap(),
        None,
        B.view_mut(&mut y, &[3, 0]).unwrap(),
    )
    .unwrap();
    // A rank-0 input is one row of one element.
    let mut y = [0.0f64];
    B.softmax(
        SoftmaxKind::Softmax,
        B.view(&[-3.0f64], &[]).unwrap(),
        None,
        B.view_mut(&mut y, &[]).unwrap(),
    )
    .unwrap();
    assert_eq!(y, [1.0]);
}

#[test]
fn broadcast_masks() {
    // A key-padding mask [4] broadcast over 3 query rows (row stride 0).
    let x = [
        0.0,
        LN_2,
        3f64.ln(),
        5.0, //
        1.0,
        1.0,
        1.0,
        9.0, //
        -2.0,
        -2.0,
        0.0,
        0.0,
    ];
    let pad = [0.0, 0.0, 0.0, -INF];
    let mut y = [0.0f64; 12];
    let m = B.view(&pad, &[4]).unwrap().expand(&[3, 4]).unwrap();
    assert_eq!(m.layout().strides(), &[0, 1]);
    B.softmax(
        SoftmaxKind::Softmax,
        B.view(&x, &[3, 4]).unwrap(),
        Some(m),
        B.view_mut(&mut y, &[3, 4]).unwrap(),
    )
    .unwrap();
    // Row 2 is [-2, -2, 0] once masked: [e^-2, e^-2, 1] / (1 + 2 e^-2).
    let d = 1.0 + 2.0 * (-2.0f64).exp();
    assert_close(
        &y,
        &[
            1.0 / 6.0,
            2.0 / 6.0,
            0.5,
            0.0, //
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0,
            0.0, //
            (-2.0f64).exp() / d,
            (-2.0f64).exp() / d,
            1.0 / d,
            0.0,
        ],
        1e-15,
    );
    // A per-row bias [3, 1] broadcast along the row changes nothing (shift invariance), even a
    // large one.
    let bias = [5.0, -700.0, 1e6];
    let mut y2 = [0.0f64; 12];
    let m = B.view(&bias, &[3, 1]).unwrap().expand(&[3, 4]).unwrap();
    assert_eq!(m.layout().strides(), &[1, 0]);
    let x2 = [
        0.0,
        LN_2,
        3f64.ln(),
        -INF,
        1.0,
        1.0,
        1.0,
        -INF,
        -2.0,
        -2.0,
        0.0,
        -INF,
    ];
    B.softmax(
        SoftmaxKind::Softmax,
        B.view(&x2, &[3, 4]).unwrap(),
        Some(m),
        B.view_mut(&mut y2, &[3, 4]).unwrap(),
    )
    .unwrap();
    assert_close(&y2[..8], &y[..8], 1e-13);
    assert_close(&y2[8..], &y[8..], 1e-13);
    // A causal mask over a [2, 3, 3] batch, broadcast over the batch with a zero stride.
    let causal = [0.0, -INF, -INF, 0.0, 0.0, -INF, 0.0, 0.0, 0.0];
    let x3 = [
        1.0f32, 5.0, 9.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 2.0, 2.0, 0.0, 1.0, 1.0, 1.0,
    ];
    let mut y3 = [9.0f32; 18];
    let causal32: Vec<f32> = to(&causal);
    let m = B
        .view(&causal32, &[3, 3])
        .unwrap()
        .expand(&[2, 3, 3])
        .unwrap();
    B.softmax(
        SoftmaxKind::Softmax,
        B.view(&x3, &[2, 3, 3]).unwrap(),
        Some(m),
        B.view_mut(&mut y3, &[2, 3, 3]).unwrap(),
    )
    .unwrap();
    let third = 1.0 / 3.0;
    assert_close(
        &back(&y3),
        &[
            1.0, 0.0, 0.0, 0.5, 0.5, 0.0, third, third, third, 1.0, 0.0, 0.0, 0.5, 0.5, 0.0, third,
            third, third,
        ],
        1e-6,
    );
}

#[test]
fn softmax_extreme_logits_f32() {
    let rows: [[f32; 4]; 6] = [
        [1e4, -1e4, 1e4, -1e4],
        [-1e4, -1e4, -1e4, -1e4],
        [3e38, -3e38, 0.0, -3e38],
        [3e38, 3e38, -3e38, -3e38],
        [-3e38, -3e38, -3e38, -3e38],
        [3e38, 3e38, 3e38, 3e38],
    ];
    let want: [[f64; 4]; 6] = [
        [0.5, 0.0, 0.5, 0.0],
        [0.25; 4],
        [1.0, 0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0, 0.0],
        [0.25; 4],
        [0.25; 4],
    ];
    let x: Vec<f32> = rows.concat();
    let mut y = [0.0f32; 24];
    B.softmax(
        SoftmaxKind::Softmax,
        B.view(&x, &[6, 4]).unwrap(),
        None,
        B.view_mut(&mut y, &[6, 4]).unwrap(),
    )
    .unwrap();
    assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
    for r in 0..6 {
        let s: f32 = y[4 * r..4 * r + 4].iter().sum();
        assert!((s - 1.0).abs() <= 1e-6, "row {r} sums to {s}");
    }
    assert_close(&back(&y), &want.concat(), 1e-7);
    // The same at f16, whose range holds +-1e4.
    let x: Vec<f16> = to(&[1e4, -1e4, 1e4, -1e4]);
    let mut y = [f16::ZERO; 4];
    B.softmax(
        SoftmaxKind::Softmax,
        B.view(&x, &[4]).unwrap(),
        None,
        B.view_mut(&mut y, &[4]).unwrap(),
    )
    .unwrap();
    assert_eq!(back(&y), [0.5, 0.0, 0.5, 0.0]);
    // Log-softmax of finite extremes stays finite where the result is representable.
    let x = [1e4f32, -1e4, 1e4, -1e4];
    let mut y = [0.0f32; 4];
    B.softmax(
        SoftmaxKind::LogSoftmax,
        B.view(&x, &[4]).unwrap(),
        None,
        B.view_mut(&mut y, &[4]).unwrap(),
    )
    .unwrap();
    assert_close(&back(&y), &[-LN_2, -2e4 - LN_2, -LN_2, -2e4 - LN_2], 1e-6);
}

#[test]
fn softmax_on_strided_views() {
    // Softmax along the columns of a row-major [3, 2] matrix, through a transposed view, into a
    // transposed output.
    let x = [0.0, 1.0, LN_2, 1.0, 3f64.ln(), 1.0];
    let mut y = [0.0f64; 6];
    let xv = B.view(&x, &[3, 2]).unwrap().transpose(0, 1).unwrap();
    let yv = B
        .view_mut(&mut y, &[3, 2])
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    B.softmax(SoftmaxKind::Softmax, xv, None, yv).unwrap();
    let third = 1.0 / 3.0;
    assert_close(&y, &[1.0 / 6.0, third, 2.0 / 6.0, third, 0.5, third], 1e-15);
}

#[test]
fn softmax_shape_errors() {
    let x = [0.0f32; 6];
    let m = [0.0f32; 6];
    let mut y = [0.0f32; 6];
    let err = B
        .softmax(
            SoftmaxKind::Softmax,
            B.view(&x, &[2, 3]).unwrap(),
            Some(B.view(&m, &[3, 2]).unwrap()),
            B.view_mut(&mut y, &[2, 3]).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                arg: "mask",
                axis: 0,
                got: 3,
                expected: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let err = B
        .softmax(
            SoftmaxKind::Softmax,
            B.view(&x, &[2, 3]).unwrap(),
            None,
            B.view_mut(&mut y, &[6]).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rank {
                arg: "y",
                got: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// gemm

/// Small deterministic integers in `-r..=r`.
fn ints(n: usize, seed: u64, r: i64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = i64::try_from(s % u64::try_from(2 * r + 1).unwrap()).unwrap() - r;
            v as f64
        })
        .collect()
}

/// `c[p][i][j] = alpha * sum_l a(p, i, l) b(p, l, j) + beta * c0[p][i][j]`, in f64.
#[allow(clippy::too_many_arguments)]
fn naive_gemm(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    a: impl Fn(usize, usize, usize) -> f64,
    b: impl Fn(usize, usize, usize) -> f64,
    alpha: f64,
    beta: f64,
    c0: &[f64],
) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for p in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..k {
                    s += a(p, i, l) * b(p, l, j);
                }
                let idx = (p * m + i) * n + j;
                c[idx] = alpha * s + if beta == 0.0 { 0.0 } else { beta * c0[idx] };
            }
        }
    }
    c
}

fn gemm_exact<T: Element>() {
    let (batch, m, n, k) = (2, 3, 5, 4);
    // a stored transposed: at[p][l][i]; b stored transposed: bt[p][j][l]; b2 shared over batch.
    let at = ints(batch * k * m, 1, 4);
    let bt = ints(batch * n * k, 2, 4);
    let b2 = ints(k * n, 3, 4);
    let c0 = ints(batch * m * n, 4, 4);
    let a_of = |p: usize, i: usize, l: usize| at[(p * k + l) * m + i];
    let b_of = |p: usize, l: usize, j: usize| bt[(p * n + j) * k + l];
    let b2_of = |_: usize, l: usize, j: usize| b2[l * n + j];
    let (at_t, bt_t, b2_t) = (to::<T>(&at), to::<T>(&bt), to::<T>(&b2));
    for (alpha, beta) in [
        (1.0, 0.0),
        (2.0, -3.0),
        (-1.0, 1.0),
        (0.5, 0.25),
        (0.0, 2.0),
    ] {
        // Transposed operands by stride swaps.
        let av = B
            .view(&at_t, &[batch, k, m])
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let bv = B
            .view(&bt_t, &[batch, n, k])
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let mut c = to::<T>(&c0);
        B.gemm(
            alpha,
            av,
            bv,
            beta,
            B.view_mut(&mut c, &[batch, m, n]).unwrap(),
        )
        .unwrap();
        let want = naive_gemm(batch, m, n, k, a_of, b_of, alpha, beta, &c0);
        assert_eq!(back(&c), want, "{} alpha={alpha} beta={beta}", T::NAME);
        // A shared b: batch stride 0.
        let bv = B
            .view(&b2_t, &[k, n])
            .unwrap()
            .expand(&[batch, k, n])
            .unwrap();
        assert_eq!(bv.layout().strides()[0], 0);
        let mut c = to::<T>(&c0);
        B.gemm(
            alpha,
            av,
            bv,
            beta,
            B.view_mut(&mut c, &[batch, m, n]).unwrap(),
        )
        .unwrap();
        let want = naive_gemm(batch, m, n, k, a_of, b2_of, alpha, beta, &c0);
        assert_eq!(back(&c), want, "{} shared b", T::NAME);
        // Rank 2: the first batch only, written into a transposed c (stored [n, m]).
        let a1 = av.select(0, 0).unwrap();
        let b1 = B.view(&b2_t, &[k, n]).unwrap();
        let c0t: Vec<f64> = (0..n * m).map(|q| c0[(q % m) * n + q / m]).collect(); // c0[0]^T
        let mut ct = to::<T>(&c0t);
        let cv = B
            .view_mut(&mut ct, &[n, m])
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        B.gemm(alpha, a1, b1, beta, cv).unwrap();
        let want = naive_gemm(1, m, n, k, a_of, b2_of, alpha, beta, &c0);
        let got: Vec<f64> = (0..m * n)
            .map(|q| ct[(q % n) * m + q / n].to_f64())
            .collect();
        assert_eq!(got, want, "{} transposed c", T::NAME);
    }
}

#[test]
fn gemm_matches_naive_exactly() {
    gemm_exact::<f64>();
    gemm_exact::<f32>();
    gemm_exact::<f16>();
    gemm_exact::<bf16>();
}

#[test]
fn gemm_sub_matrices() {
    // c = a[1..3, 2..5] @ b[0..3, 1..3], operands cut out of larger buffers.
    let a: Vec<f64> = (0..24).map(f64::from).collect(); // [4, 6]
    let b: Vec<f64> = (0..20).map(|v| f64::from(v) - 10.0).collect(); // [5, 4]
    let av = B
        .view(&a, &[4, 6])
        .unwrap()
        .narrow(0, 1, 2)
        .unwrap()
        .narrow(1, 2, 3)
        .unwrap();
    let bv = B
        .view(&b, &[5, 4])
        .unwrap()
        .narrow(0, 0, 3)
        .unwrap()
        .narrow(1, 1, 2)
        .unwrap();
    let mut c = [NAN; 9]; // [3, 3] of which [1..3, 0..2] is written
    let cv = B
        .view_mut(&mut c, &[3, 3])
        .unwrap()
        .narrow(0, 1, 2)
        .unwrap()
        .narrow(1, 0, 2)
        .unwrap();
    B.gemm(1.0, av, bv, 0.0, cv).unwrap();
    let want = naive_gemm(
        1,
        2,
        2,
        3,
        |_, i, l| a[(1 + i) * 6 + 2 + l],
        |_, l, j| b[l * 4 + 1 + j],
        1.0,
        0.0,
        &[],
    );
    assert_eq!(&c[3..5], &want[..2]);
    assert_eq!(&c[6..8], &want[2..]);
    assert!(
        c[..3].iter().chain([&c[5], &c[8]]).all(|v| v.is_nan()),
        "outside the view untouched"
    );
}

#[test]
fn gemm_beta_zero_does_not_read_c() {
    let a = [1.0f32, 2.0, 3.0, 4.0];
    let b = [1.0f32, 0.0, 0.0, 1.0];
    let mut c = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    B.gemm(
        1.0,
        B.view(&a, &[2, 2]).unwrap(),
        B.view(&b, &[2, 2]).unwrap(),
        0.0,
        B.view_mut(&mut c, &[2, 2]).unwrap(),
    )
    .unwrap();
    assert_eq!(c, [1.0, 2.0, 3.0, 4.0]);
    // With beta != 0 the NaN is read and propagates.
    let mut c = [f32::NAN, 0.0, 0.0, 0.0];
    B.gemm(
        1.0,
        B.view(&a, &[2, 2]).unwrap(),
        B.view(&b, &[2, 2]).unwrap(),
        1.0,
        B.view_mut(&mut c, &[2, 2]).unwrap(),
    )
    .unwrap();
    assert!(c[0].is_nan());
    assert_eq!(&c[1..], &[2.0, 3.0, 4.0]);
}

#[test]
fn gemm_empty_extents() {
    // K = 0: the product is zero, c = beta * c (and not read at beta = 0).
    let e: [f64; 0] = [];
    let mut c = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    B.gemm(
        3.0,
        B.view(&e, &[2, 0]).unwrap(),
        B.view(&e, &[0, 3]).unwrap(),
        2.0,
        B.view_mut(&mut c, &[2, 3]).unwrap(),
    )
    .unwrap();
    assert_eq!(c, [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
    let mut c = [NAN; 6];
    B.gemm(
        1.0,
        B.view(&e, &[2, 0]).unwrap(),
        B.view(&e, &[0, 3]).unwrap(),
        0.0,
        B.view_mut(&mut c, &[2, 3]).unwrap(),
    )
    .unwrap();
    assert_eq!(c, [0.0; 6]);
    // M = 0, N = 0, batch = 0: nothing to do.
    let b = [1.0; 6];
    let mut c: [f64; 0] = [];
    B.gemm(
        1.0,
        B.view(&e, &[0, 2]).unwrap(),
        B.view(&b, &[2, 3]).unwrap(),
        1.0,
        B.view_mut(&mut c, &[0, 3]).unwrap(),
    )
    .unwrap();
    B.gemm(
        1.0,
        B.view(&b, &[3, 2]).unwrap(),
        B.view(&e, &[2, 0]).unwrap(),
        1.0,
        B.view_mut(&mut c, &[3, 0]).unwrap(),
    )
    .unwrap();
    B.gemm(
        1.0,
        B.view(&e, &[0, 3, 2]).unwrap(),
        B.view(&e, &[0, 2, 3]).unwrap(),
        1.0,
        B.view_mut(&mut c, &[0, 3, 3]).unwrap(),
    )
    .unwrap();
    // K = 0 in f16 with a batch.
    let e16: [f16; 0] = [];
    let mut c16 = [f16::NAN; 4];
    B.gemm(
        1.0,
        B.view(&e16, &[2, 2, 0]).unwrap(),
        B.view(&e16, &[2, 0, 1]).unwrap(),
        0.0,
        B.view_mut(&mut c16, &[2, 2, 1]).unwrap(),
    )
    .unwrap();
    assert_eq!(c16, [f16::ZERO; 4]);
}

#[test]
fn gemm_errors() {
    let a = [0.0f32; 6];
    let b = [0.0f32; 12];
    let mut c = [0.0f32; 8];
    let av = B.view(&a, &[2, 3]).unwrap();
    let e = B.gemm(
        1.0,
        av,
        B.view(&b, &[4, 3]).unwrap(),
        0.0,
        B.view_mut(&mut c, &[2, 3]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(Error::Shape {
                arg: "b",
                axis: 0,
                got: 4,
                expected: 3,
                ..
            })
        ),
        "{e:?}"
    );
    let e = B.gemm(
        1.0,
        av,
        B.view(&b, &[3, 4]).unwrap(),
        0.0,
        B.view_mut(&mut c, &[4, 2]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(Error::Shape {
                arg: "c",
                axis: 0,
                got: 4,
                expected: 2,
                ..
            })
        ),
        "{e:?}"
    );
    let e = B.gemm(
        NAN,
        av,
        B.view(&b, &[3, 4]).unwrap(),
        0.0,
        B.view_mut(&mut c, &[2, 4]).unwrap(),
    );
    assert!(matches!(e, Err(Error::Param { arg: "alpha", .. })), "{e:?}");
    let e = B.gemm(
        1.0,
        av,
        B.view(&b, &[3, 4]).unwrap(),
        -INF,
        B.view_mut(&mut c, &[2, 4]).unwrap(),
    );
    assert!(matches!(e, Err(Error::Param { arg: "beta", .. })), "{e:?}");
    let e = B.gemm(
        1.0,
        B.view(&a, &[6]).unwrap(),
        B.view(&b, &[3, 4]).unwrap(),
        0.0,
        B.view_mut(&mut c, &[2, 4]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(Error::Rank {
                arg: "a",
                got: 1,
                min: 2,
                max: 3
            })
        ),
        "{e:?}"
    );
    let e = B.gemm(
        1.0,
        av,
        B.view(&b, &[1, 3, 4]).unwrap(),
        0.0,
        B.view_mut(&mut c, &[2, 4]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(Error::Rank {
                arg: "b",
                got: 3,
                ..
            })
        ),
        "{e:?}"
    );
    // Batch extents must agree.
    let e = B.gemm(
        1.0,
        B.view(&a, &[2, 1, 3]).unwrap(),
        B.view(&b, &[1, 3, 4]).unwrap(),
        0.0,
        B.view_mut(&mut c, &[2, 1, 4]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(Error::Shape {
                arg: "b",
                axis: 0,
                got: 1,
                expected: 2,
                ..
            })
        ),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// unary, binary

/// erf by its everywhere-positive series `2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (2n+1)!!`
/// (Abramowitz & Stegun 7.1.6): no cancellation.
fn erf(x: f64) -> f64 {
    let mut term = x;
    let mut sum = x;
    let mut n = 0.0;
    while term.abs() > 1e-18 * sum.abs() {
        n += 1.0;
        term *= 2.0 * x * x / (2.0 * n + 1.0);
        sum += term;
    }
    2.0 / PI.sqrt() * (-x * x).exp() * sum
}

fn definition(op: Unary, x: f64) -> f64 {
    match op {
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Unary::Silu => x / (1.0 + (-x).exp()),
        Unary::Gelu => 0.5 * x * (1.0 + erf(x / 2f64.sqrt())),
        Unary::GeluTanh => {
            0.5 * x * (1.0 + ((2.0 / PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
        Unary::Softplus => (1.0 + x.exp()).ln(),
        Unary::Elu1 => {
            if x > 0.0 {
                x + 1.0
            } else {
                x.exp()
            }
        }
        Unary::Tanh => x.tanh(),
        Unary::Relu => x.max(0.0),
        Unary::Sqrt => x.sqrt(),
        Unary::Recip => 1.0 / x,
        Unary::Square => x * x,
        Unary::Abs => x.abs(),
        Unary::Neg => -x,
        Unary::Scale(c) => x * c,
        Unary::AddScalar(c) => x + c,
        _ => unreachable!(),
    }
}

fn unary<T: Element>(op: Unary, x: &[f64]) -> Vec<f64> {
    let xs = to::<T>(x);
    let mut y = vec![T::from_f64(-7.0); x.len()];
    B.unary(
        op,
        B.view(&xs, &[x.len()]).unwrap(),
        B.view_mut(&mut y, &[x.len()]).unwrap(),
    )
    .unwrap();
    back(&y)
}

fn unary1<T: Element>(op: Unary, x: f64) -> f64 {
    unary::<T>(op, &[x])[0]
}

fn unary_at_points<T: Element>(tolerance: f64) {
    let points = [-3.0, -1.25, -0.5, 0.0, 0.375, 1.0, 2.5, 4.0];
    let mut ops = Unary::ALL.to_vec();
    ops.extend([Unary::Scale(-2.5), Unary::AddScalar(0.75)]);
    for op in ops {
        // Inputs as stored in T.
        let xs: Vec<f64> = points.iter().map(|&p| T::from_f64(p).to_f64()).collect();
        let got = unary::<T>(op, &xs);
        let want: Vec<f64> = xs.iter().map(|&x| definition(op, x)).collect();
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            // The cancellation in the definitions of gelu and gelu_tanh at negative x costs a few
            // digits of the *definition*; allow for it there only.
            let t = if matches!(op, Unary::Gelu | Unary::GeluTanh) && xs[i] < 0.0 {
                tolerance.max(1e-11)
            } else {
                tolerance
            };
            assert!(
                close(g, w, t),
                "{} {}({}) = {g:e}, want {w:e}",
                T::NAME,
                op.name(),
                xs[i]
            );
        }
    }
}

#[test]
fn unary_matches_definitions() {
    unary_at_points::<f64>(1e-14);
    unary_at_points::<f32>(4e-6);
    unary_at_points::<f16>(2e-3);
    unary_at_points::<bf16>(1.6e-2);
}

#[test]
fn unary_limits() {
    let u = unary1::<f64>;
    let uf = unary1::<f32>;
    for f in [u, uf] {
        for op in [Unary::Silu, Unary::Gelu, Unary::GeluTanh] {
            assert_eq!(f(op, -INF), 0.0, "{}", op.name());
            assert_eq!(f(op, INF), INF, "{}", op.name());
            assert_eq!(f(op, 0.0), 0.0, "{}", op.name());
        }
        assert_eq!(f(Unary::Softplus, INF), INF);
        assert_eq!(f(Unary::Softplus, -INF), 0.0);
        assert_eq!(f(Unary::Sigmoid, INF), 1.0);
        assert_eq!(f(Unary::Sigmoid, -INF), 0.0);
        assert_eq!(f(Unary::Sigmoid, 0.0), 0.5);
        assert_eq!(f(Unary::Tanh, INF), 1.0);
        assert_eq!(f(Unary::Tanh, -INF), -1.0);
        assert_eq!(f(Unary::Exp, -INF), 0.0);
        assert_eq!(f(Unary::Exp, INF), INF);
        assert_eq!(f(Unary::Log, 0.0), -INF);
        assert_eq!(f(Unary::Log, INF), INF);
        assert!(f(Unary::Log, -1.0).is_nan());
        assert!(f(Unary::Sqrt, -1.0).is_nan());
        assert_eq!(f(Unary::Recip, 0.0), INF);
        assert_eq!(f(Unary::Recip, -0.0), -INF);
        assert_eq!(f(Unary::Elu1, -INF), 0.0);
        assert_eq!(f(Unary::Elu1, INF), INF);
        assert_eq!(f(Unary::Relu, -INF), 0.0);
        assert_eq!(f(Unary::Relu, -2.0), 0.0);
        assert_eq!(f(Unary::Relu, 2.0), 2.0);
        // NaN in, NaN out, for every map.
        for op in Unary::ALL
            .into_iter()
            .chain([Unary::Scale(2.0), Unary::AddScalar(1.0)])
        {
            assert!(f(op, NAN).is_nan(), "{}(NaN)", op.name());
        }
    }
    // Softplus keeps precision far out: softplus(-40) = e^-40 (1 - e^-40 / 2 ...).
    assert!(rel_close(u(Unary::Softplus, -40.0), (-40f64).exp(), 1e-15));
    assert!(rel_close(uf(Unary::Softplus, -40.0), (-40f64).exp(), 1e-6));
    assert_eq!(u(Unary::Softplus, 40.0), 40.0);
    assert!(rel_close(u(Unary::Softplus, 0.0), LN_2, 1e-15));
    // elu1 is continuous at 0: 1 from both sides.
    for f in [u, uf] {
        assert_eq!(f(Unary::Elu1, 0.0), 1.0);
        assert_eq!(f(Unary::Elu1, -0.0), 1.0);
        assert!(close(f(Unary::Elu1, 1e-7), 1.0, 2e-7));
        assert!(close(f(Unary::Elu1, -1e-7), 1.0, 2e-7));
        assert!(f(Unary::Elu1, -1e-7) < 1.0 && f(Unary::Elu1, 1e-7) > 1.0);
    }
    // gelu far left: -10 Phi(-10), with Phi(-10) = 7.619853024160527e-24 (tabulated).
    assert!(rel_close(
        u(Unary::Gelu, -10.0),
        -7.619_853_024_160_527e-23,
        1e-9
    ));
    assert!(rel_close(
        uf(Unary::Gelu, -10.0),
        -7.619_853_024_160_527e-23,
        1e-5
    ));
    // Parameter checks.
    let x = [1.0f32];
    let mut y = [0.0f32];
    for op in [
        Unary::Scale(NAN),
        Unary::Scale(INF),
        Unary::AddScalar(-INF),
        Unary::AddScalar(NAN),
    ] {
        let e = B.unary(
            op,
            B.view(&x, &[1]).unwrap(),
            B.view_mut(&mut y, &[1]).unwrap(),
        );
        assert!(matches!(e, Err(Error::Param { arg: "op", .. })), "{e:?}");
    }
    for op in Unary::ALL {
        assert_eq!(Unary::from_name(op.name()), Some(op));
    }
    assert_eq!(Unary::from_name("scale"), None);
    assert_eq!(Unary::from_name("nope"), None);
}

#[test]
fn unary_on_views() {
    // Through a transposed view into a transposed output: elementwise maps only care about
    // matching indices.
    let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut y = [0.0f64; 6];
    B.unary(
        Unary::Square,
        B.view(&x, &[2, 3]).unwrap().transpose(0, 1).unwrap(),
        B.view_mut(&mut y, &[3, 2]).unwrap(),
    )
    .unwrap();
    assert_eq!(y, [1.0, 16.0, 4.0, 25.0, 9.0, 36.0]);
    let e = B.unary(
        Unary::Neg,
        B.view(&x, &[2, 3]).unwrap(),
        B.view_mut(&mut y, &[3, 2]).unwrap(),
    );
    assert!(matches!(e, Err(Error::Shape { arg: "y", .. })), "{e:?}");
}

#[test]
fn binary_maps() {
    let a = [1.0, -2.0, 6.0, NAN, 3.0, -INF, 0.0];
    let b = [4.0, 0.5, -3.0, 1.0, NAN, 3.0, -0.0];
    let run = |op: Binary| {
        let mut y = [0.0f64; 7];
        B.binary(
            op,
            B.view(&a, &[7]).unwrap(),
            B.view(&b, &[7]).unwrap(),
            B.view_mut(&mut y, &[7]).unwrap(),
        )
        .unwrap();
        y
    };
    let nan_eq = |got: [f64; 7], want: [f64; 7]| {
        for (g, w) in got.iter().zip(&want) {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{got:?} vs {want:?}"
            );
        }
    };
    nan_eq(run(Binary::Add), [5.0, -1.5, 3.0, NAN, NAN, -INF, 0.0]);
    nan_eq(run(Binary::Sub), [-3.0, -2.5, 9.0, NAN, NAN, -INF, 0.0]);
    nan_eq(run(Binary::Mul), [4.0, -1.0, -18.0, NAN, NAN, -INF, -0.0]);
    nan_eq(run(Binary::Div), [0.25, -4.0, -2.0, NAN, NAN, -INF, NAN]);
    let mx = run(Binary::Max);
    assert_eq!(&mx[..3], &[4.0, 0.5, 6.0]);
    assert!(
        mx[3].is_nan() && mx[4].is_nan(),
        "max propagates NaN from either side"
    );
    assert_eq!(mx[5], 3.0);
    let mn = run(Binary::Min);
    assert_eq!(&mn[..3], &[1.0, -2.0, -3.0]);
    assert!(
        mn[3].is_nan() && mn[4].is_nan(),
        "min propagates NaN from either side"
    );
    assert_eq!(mn[5], -INF);
    // NaN on either side in f16 and bf16 too.
    fn nan_sides<T: Element>() {
        let a = to::<T>(&[NAN, 1.0]);
        let b = to::<T>(&[1.0, NAN]);
        for op in [Binary::Max, Binary::Min] {
            let mut y = to::<T>(&[0.0, 0.0]);
            B.binary(
                op,
                B.view(&a, &[2]).unwrap(),
                B.view(&b, &[2]).unwrap(),
                B.view_mut(&mut y, &[2]).unwrap(),
            )
            .unwrap();
            assert!(
                back(&y).iter().all(|v| v.is_nan()),
                "{} {}",
                T::NAME,
                op.name()
            );
        }
    }
    nan_sides::<f32>();
    nan_sides::<f16>();
    nan_sides::<bf16>();
    // Broadcasting b with expand: a [2, 3] - row [3].
    let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let r = [1.0f32, 2.0, 3.0];
    let mut y = [0.0f32; 6];
    B.binary(
        Binary::Sub,
        B.view(&a, &[2, 3]).unwrap(),
        B.view(&r, &[3]).unwrap().expand(&[2, 3]).unwrap(),
        B.view_mut(&mut y, &[2, 3]).unwrap(),
    )
    .unwrap();
    assert_eq!(y, [0.0, 0.0, 0.0, 3.0, 3.0, 3.0]);
    let e = B.binary(
        Binary::Add,
        B.view(&a, &[2, 3]).unwrap(),
        B.view(&r, &[3]).unwrap(),
        B.view_mut(&mut y, &[2, 3]).unwrap(),
    );
    assert!(matches!(e, Err(Error::Rank { arg: "b", .. })), "{e:?}");
    let e = B.binary(
        Binary::Add,
        B.view(&a, &[2, 3]).unwrap(),
        B.view(&a, &[2, 3]).unwrap(),
        B.view_mut(&mut y, &[3, 2]).unwrap(),
    );
    assert!(matches!(e, Err(Error::Shape { arg: "y", .. })), "{e:?}");
    for op in Binary::ALL {
        assert!(!op.name().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// reduce

fn reduce<T: Element>(op: Reduce, x: &[f64], shape: &[usize]) -> Vec<f64> {
    let xs = to::<T>(x);
    let out_shape = &shape[..shape.len() - 1];
    let n: usize = out_shape.iter().product();
    let mut y = vec![T::from_f64(-7.0); n];
    B.reduce(
        op,
        B.view(&xs, shape).unwrap(),
        B.view_mut(&mut y, out_shape).unwrap(),
    )
    .unwrap();
    back(&y)
}

#[test]
fn reduce_values() {
    let x = [1.0, -2.0, 3.5, 0.5, 4.0, 4.0, -1.0, 0.0];
    let rows = [&x[..4], &x[4..]];
    let want = |f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> { rows.iter().map(|r| f(r)).collect() };
    assert_eq!(reduce::<f64>(Reduce::Sum, &x, &[2, 4]), [3.0, 7.0]);
    assert_eq!(reduce::<f64>(Reduce::Mean, &x, &[2, 4]), [0.75, 1.75]);
    assert_eq!(reduce::<f64>(Reduce::Max, &x, &[2, 4]), [3.5, 4.0]);
    assert_eq!(reduce::<f64>(Reduce::Min, &x, &[2, 4]), [-2.0, -1.0]);
    assert_close(
        &reduce::<f64>(Reduce::LogSumExp, &x, &[2, 4]),
        &want(&|r| r.iter().map(|v| v.exp()).sum::<f64>().ln()),
        1e-15,
    );
    assert_close(
        &reduce::<f64>(Reduce::L2Norm, &x, &[2, 4]),
        &want(&|r| r.iter().map(|v| v * v).sum::<f64>().sqrt()),
        1e-15,
    );
    for op in Reduce::ALL {
        let f32s = reduce::<f32>(op, &x, &[2, 4]);
        let f64s = reduce::<f64>(op, &x, &[2, 4]);
        assert_close(&f32s, &f64s, 1e-6);
        let h = reduce::<f16>(op, &x, &[2, 4]);
        assert_close(&h, &f64s, 2e-3);
        let bh = reduce::<bf16>(op, &x, &[2, 4]);
        assert_close(&bh, &f64s, 1e-2);
        assert_eq!(Reduce::from_name(op.name()), Some(op));
    }
    assert_eq!(Reduce::from_name("prod"), None);
    assert!(Reduce::Max.is_exact() && Reduce::Min.is_exact() && !Reduce::Sum.is_exact());
    // logsumexp of [ln 1, ln 2, ln 3] is ln 6; of [1000, 1000] is 1000 + ln 2 (no overflow).
    assert_close(
        &reduce::<f64>(Reduce::LogSumExp, &[0.0, LN_2, 3f64.ln()], &[3]),
        &[6f64.ln()],
        1e-15,
    );
    assert_close(
        &reduce::<f64>(Reduce::LogSumExp, &[1000.0, 1000.0], &[2]),
        &[1000.0 + LN_2],
        1e-15,
    );
    assert_close(
        &reduce::<f32>(Reduce::LogSumExp, &[100.0, 100.0], &[2]),
        &[100.0 + LN_2],
        1e-7,
    );
    // Reducing a rank-0 input: the element itself.
    assert_eq!(reduce_rank0(Reduce::Sum, 2.5), 2.5);
    assert_eq!(reduce_rank0(Reduce::Mean, 2.5), 2.5);
    assert_eq!(reduce_rank0(Reduce::L2Norm, -2.5), 2.5);
    // Reducing columns through a transposed view.
    let m = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut y = [0.0f64; 3];
    B.reduce(
        Reduce::Sum,
        B.view(&m, &[2, 3]).unwrap().transpose(0, 1).unwrap(),
        B.view_mut(&mut y, &[3]).unwrap(),
    )
    .unwrap();
    assert_eq!(y, [5.0, 7.0, 9.0]);
    let e = B.reduce(
        Reduce::Sum,
        B.view(&m, &[2, 3]).unwrap(),
        B.view_mut(&mut y, &[3]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(Error::Shape {
                arg: "y",
                got: 3,
                expected: 2,
                ..
            })
        ),
        "{e:?}"
    );
}

fn reduce_rank0(op: Reduce, v: f64) -> f64 {
    let mut y = [0.0f64];
    B.reduce(
        op,
        B.view(&[v], &[]).unwrap(),
        B.view_mut(&mut y, &[]).unwrap(),
    )
    .unwrap();
    y[0]
}

fn empty_rows<T: Element>() {
    let want = [
        (Reduce::Sum, 0.0),
        (Reduce::Mean, NAN),
        (Reduce::Max, -INF),
        (Reduce::Min, INF),
        (Reduce::LogSumExp, -INF),
        (Reduce::L2Norm, 0.0),
    ];
    for (op, w) in want {
        let got = reduce::<T>(op, &[], &[3, 0]);
        assert_eq!(got.len(), 3);
        for g in got {
            assert!(close(g, w, 0.0), "{} {}: {g} want {w}", T::NAME, op.name());
        }
    }
}

#[test]
fn reduce_empty_rows() {
    empty_rows::<f64>();
    empty_rows::<f32>();
    empty_rows::<f16>();
    empty_rows::<bf16>();
}

#[test]
fn reduce_non_finite() {
    // l2norm neither overflows nor underflows in f32.
    let big = reduce::<f32>(Reduce::L2Norm, &[3e30, 4e30], &[2]);
    assert!(close(big[0], 5e30, 1e-6), "{big:?}");
    let small = reduce::<f32>(Reduce::L2Norm, &[-3e-30, 4e-30], &[2]);
    assert!(rel_close(small[0], 5e-30, 1e-6), "{small:?}");
    let huge = reduce::<f64>(Reduce::L2Norm, &[3e300, -4e300], &[2]);
    assert!(close(huge[0], 5e300, 1e-15));
    let hb = reduce::<bf16>(Reduce::L2Norm, &[3e30, 4e30], &[2]);
    assert!(close(hb[0], 5e30, 1e-2));
    assert_eq!(reduce::<f32>(Reduce::L2Norm, &[1.0, INF], &[2]), [INF]);
    assert_eq!(reduce::<f32>(Reduce::L2Norm, &[0.0, -0.0], &[2]), [0.0]);
    // logsumexp with infinities.
    assert_eq!(
        reduce::<f64>(Reduce::LogSumExp, &[1.0, INF, 2.0], &[3]),
        [INF]
    );
    assert_eq!(
        reduce::<f64>(Reduce::LogSumExp, &[-INF, -INF], &[2]),
        [-INF]
    );
    assert_eq!(
        reduce::<f64>(Reduce::LogSumExp, &[-INF, 0.0, -INF], &[3]),
        [0.0]
    );
    assert_eq!(reduce::<f32>(Reduce::LogSumExp, &[-INF, INF], &[2]), [INF]);
    // Sums of infinities, and NaN everywhere.
    assert_eq!(reduce::<f64>(Reduce::Sum, &[INF, 1.0], &[2]), [INF]);
    assert!(reduce::<f64>(Reduce::Sum, &[INF, -INF], &[2])[0].is_nan());
    assert_eq!(reduce::<f64>(Reduce::Max, &[-INF, -INF], &[2]), [-INF]);
    for op in Reduce::ALL {
        for t in [
            reduce::<f64>(op, &[1.0, NAN, 2.0], &[3]),
            reduce::<f32>(op, &[NAN, INF, -INF], &[3]),
            reduce::<f16>(op, &[1.0, 2.0, NAN], &[3]),
            reduce::<bf16>(op, &[NAN], &[1]),
        ] {
            assert!(t[0].is_nan(), "{} with NaN gave {t:?}", op.name());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cast

fn cast<S: Element, D: Element>(x: &[S]) -> Vec<D> {
    let mut y = vec![D::from_f64(-7.0); x.len()];
    B.cast(
        B.view(x, &[x.len()]).unwrap(),
        B.view_mut(&mut y, &[x.len()]).unwrap(),
    )
    .unwrap();
    y
}

#[test]
fn cast_f32_to_f16_matches_half() {
    // Every 65537th f32 bit pattern (all exponents, all signs) and the specials.
    let mut xs: Vec<f32> = (0..=u32::MAX).step_by(65_537).map(f32::from_bits).collect();
    xs.extend([
        0.0,
        -0.0,
        65504.0,
        65520.0,
        65519.996,
        6.1e-5,
        5.96e-8,
        2.98e-8,
        2.9802322e-8,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    let got = cast::<f32, f16>(&xs);
    for (x, g) in xs.iter().zip(&got) {
        let want = f16::from_f32(*x);
        if x.is_nan() {
            assert!(g.is_nan());
        } else {
            assert_eq!(g.to_bits(), want.to_bits(), "{x:e}");
        }
    }
    // f32 to bf16 likewise.
    let got = cast::<f32, bf16>(&xs);
    for (x, g) in xs.iter().zip(&got) {
        if x.is_nan() {
            assert!(g.is_nan());
        } else {
            assert_eq!(g.to_bits(), bf16::from_f32(*x).to_bits(), "{x:e}");
        }
    }
}

#[test]
fn cast_rounds_once() {
    // f64 -> bf16: just above the midpoint of 1 and 1 + 2^-7, at a distance f32 cannot hold.
    let x = [
        1.0 + 2f64.powi(-8) + 2f64.powi(-40),
        -(1.0 + 2f64.powi(-8) + 2f64.powi(-40)),
    ];
    let y = cast::<f64, bf16>(&x);
    assert_eq!(back(&y), [1.0 + 2f64.powi(-7), -(1.0 + 2f64.powi(-7))]);
    // Same for f16.
    let x = [1.0 + 2f64.powi(-11) + 2f64.powi(-40)];
    assert_eq!(back(&cast::<f64, f16>(&x)), [1.0 + 2f64.powi(-10)]);
    // Exact ties go to even.
    let x = [1.0 + 2f64.powi(-8), 1.0 + 3.0 * 2f64.powi(-8)];
    assert_eq!(
        back(&cast::<f64, bf16>(&x)),
        [1.0, 1.0 + 2.0 * 2f64.powi(-7)]
    );
    // Widening is exact: f16 -> f32 -> f64 -> bf16 of a value bf16 holds.
    let h = [
        f16::from_f64(0.375),
        f16::from_f64(-1024.0),
        f16::MIN_POSITIVE_SUBNORMAL,
    ];
    assert_eq!(back(&cast::<f16, f32>(&h)), back(&h));
    assert_eq!(back(&cast::<f16, f64>(&h)), back(&h));
    // Narrowing f16 -> bf16 rounds: 1 + 2^-10 lies between the bf16 values 1 and 1 + 2^-7.
    assert_eq!(
        back(&cast::<f16, bf16>(&[f16::from_f64(1.0 + 2f64.powi(-10))])),
        [1.0]
    );
    // bf16 -> f16 overflows to inf.
    assert_eq!(
        back(&cast::<bf16, f16>(&[
            bf16::from_f64(1e6),
            bf16::from_f64(-1e6)
        ])),
        [INF, -INF]
    );
    // f64 -> f32 overflow and underflow.
    assert_eq!(
        cast::<f64, f32>(&[1e39, -1e39, 1e-50, -1e-50]),
        [f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0]
    );
    // NaN stays NaN across every pair.
    fn nan_kept<S: Element, D: Element>() {
        let x = [S::from_f64(NAN), S::from_f64(INF), S::from_f64(-INF)];
        let y = back(&cast::<S, D>(&x));
        assert!(y[0].is_nan(), "{} -> {}", S::NAME, D::NAME);
        assert_eq!(&y[1..], &[INF, -INF]);
    }
    macro_rules! all_pairs {
        ($($s:ty),*) => { $( nan_kept::<$s, f32>(); nan_kept::<$s, f64>(); nan_kept::<$s, f16>(); nan_kept::<$s, bf16>(); )* };
    }
    all_pairs!(f32, f64, f16, bf16);
    // Casting into a transposed view, and a shape error.
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut y = [f16::ZERO; 6];
    B.cast(
        B.view(&x, &[2, 3]).unwrap(),
        B.view_mut(&mut y, &[3, 2])
            .unwrap()
            .transpose(0, 1)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(back(&y), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let e = B.cast(
        B.view(&x, &[2, 3]).unwrap(),
        B.view_mut(&mut y, &[3, 2]).unwrap(),
    );
    assert!(matches!(e, Err(Error::Shape { arg: "y", .. })), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// top_k

fn top_k<T: Element>(k: usize, x: &[f64], shape: &[usize]) -> Result<(Vec<f64>, Vec<u32>), Error> {
    let xs = to::<T>(x);
    let mut out_shape = shape.to_vec();
    *out_shape.last_mut().unwrap() = k;
    let n: usize = out_shape.iter().product();
    let mut v = vec![T::from_f64(-7.0); n];
    let mut i = vec![u32::MAX; n];
    B.top_k(
        k,
        B.view(&xs, shape)?,
        B.view_mut(&mut v, &out_shape)?,
        B.view_mut(&mut i, &out_shape)?,
    )?;
    Ok((back(&v), i))
}

fn top_k_cases<T: Element>() {
    let x = [3.0, 1.0, 3.0, 2.0];
    assert_eq!(
        top_k::<T>(2, &x, &[4]).unwrap(),
        (vec![3.0, 3.0], vec![0, 2])
    );
    assert_eq!(
        top_k::<T>(4, &x, &[4]).unwrap(),
        (vec![3.0, 3.0, 2.0, 1.0], vec![0, 2, 3, 1])
    );
    assert_eq!(top_k::<T>(0, &x, &[4]).unwrap(), (vec![], vec![]));
    // NaN above +inf, NaNs among themselves by index; -inf last.
    let x = [1.0, NAN, INF, NAN, -INF];
    let (v, i) = top_k::<T>(5, &x, &[5]).unwrap();
    assert_eq!(i, [1, 3, 2, 0, 4], "{}", T::NAME);
    assert!(v[0].is_nan() && v[1].is_nan());
    assert_eq!(&v[2..], &[INF, 1.0, -INF]);
    // All equal: indices in order.
    assert_eq!(top_k::<T>(3, &[5.0; 4], &[4]).unwrap().1, [0, 1, 2]);
    // -0 and +0 compare equal: the lower index wins.
    assert_eq!(top_k::<T>(2, &[-0.0, 0.0], &[2]).unwrap().1, [0, 1]);
    // k > n.
    let e = top_k::<T>(5, &x[..4], &[4]).unwrap_err();
    assert!(matches!(e, Error::Param { arg: "k", .. }), "{e:?}");
    let e = top_k::<T>(1, &[], &[0]).unwrap_err();
    assert!(matches!(e, Error::Param { arg: "k", .. }), "{e:?}");
    // Rows.
    let x = [
        0.5, 2.0, -1.0, 2.0, //
        9.0, 8.0, 7.0, 6.0, //
        -1.0, -2.0, -3.0, 0.0,
    ];
    let (v, i) = top_k::<T>(2, &x, &[3, 4]).unwrap();
    assert_eq!(v, [2.0, 2.0, 9.0, 8.0, 0.0, -1.0]);
    assert_eq!(i, [1, 3, 0, 1, 3, 0]);
    // Empty batch of rows and k = 0 on empty rows.
    assert_eq!(top_k::<T>(0, &[], &[3, 0]).unwrap(), (vec![], vec![]));
    assert_eq!(top_k::<T>(2, &[], &[0, 4]).unwrap(), (vec![], vec![]));
}

#[test]
fn top_k_values() {
    top_k_cases::<f64>();
    top_k_cases::<f32>();
    top_k_cases::<f16>();
    top_k_cases::<bf16>();
}

#[test]
fn top_k_strided_rows() {
    // The columns of a row-major [4, 3] matrix are the rows of its transpose.
    let x = [
        1.0f32, 10.0, 0.0, //
        4.0, 10.0, 5.0, //
        2.0, 30.0, 5.0, //
        3.0, 20.0, 5.0,
    ];
    let xv = B.view(&x, &[4, 3]).unwrap().transpose(0, 1).unwrap();
    // Outputs transposed as well: stored [2, 3], seen as [3, 2].
    let mut v = [0.0f32; 6];
    let mut i = [0u32; 6];
    B.top_k(
        2,
        xv,
        B.view_mut(&mut v, &[2, 3])
            .unwrap()
            .transpose(0, 1)
            .unwrap(),
        B.view_mut(&mut i, &[2, 3])
            .unwrap()
            .transpose(0, 1)
            .unwrap(),
    )
    .unwrap();
    // Column 0: [1, 4, 2, 3] -> 4 (1), 3 (3); column 1: [10, 10, 30, 20] -> 30 (2), 20 (3);
    // column 2: [0, 5, 5, 5] -> 5 (1), 5 (2).
    assert_eq!(v, [4.0, 30.0, 5.0, 3.0, 20.0, 5.0]);
    assert_eq!(i, [1, 2, 1, 3, 3, 2]);
    // A narrowed row.
    let row = B
        .view(&x, &[4, 3])
        .unwrap()
        .select(1, 1)
        .unwrap()
        .narrow(0, 1, 3)
        .unwrap(); // [10, 30, 20]
    let mut v = [0.0f32; 3];
    let mut i = [0u32; 3];
    B.top_k(
        3,
        row,
        B.view_mut(&mut v, &[3]).unwrap(),
        B.view_mut(&mut i, &[3]).unwrap(),
    )
    .unwrap();
    assert_eq!((v, i), ([30.0, 20.0, 10.0], [1, 2, 0]));
}

#[test]
fn top_k_errors() {
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let mut v = [0.0f32; 8];
    let mut i = [0u32; 8];
    let e = B.top_k(
        2,
        B.view(&x, &[2, 2]).unwrap(),
        B.view_mut(&mut v, &[2, 3]).unwrap(),
        B.view_mut(&mut i, &[2, 2]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(Error::Shape {
                arg: "values",
                axis: 1,
                got: 3,
                expected: 2,
                ..
            })
        ),
        "{e:?}"
    );
    let e = B.top_k(
        2,
        B.view(&x, &[2, 2]).unwrap(),
        B.view_mut(&mut v, &[2, 2]).unwrap(),
        B.view_mut(&mut i, &[4]).unwrap(),
    );
    assert!(
        matches!(e, Err(Error::Rank { arg: "indices", .. })),
        "{e:?}"
    );
    let e = B.top_k(
        1,
        B.view(&x, &[]).unwrap(),
        B.view_mut(&mut v, &[1]).unwrap(),
        B.view_mut(&mut i, &[1]).unwrap(),
    );
    assert!(
        matches!(
            e,
            Err(Error::Rank {
                arg: "x",
                got: 0,
                ..
            })
        ),
        "{e:?}"
    );
}
