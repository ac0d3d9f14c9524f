//! The kernels' own mathematical identities, checked by proptest on [`Reference`] with views
//! built directly (transposes and broadcasts by strides, no copies), not through the harness.
//!
//! Most identities hold *exactly* for a reason stated beside them (integer-valued gemm operands,
//! shifts and scalings that introduce no rounding, the same floating-point operations in the same
//! order); those are compared bitwise. The others carry a tolerance derived from a rounding-error
//! analysis written out in a comment, never a number found by trying.
//!
//! Notation: `u` is the unit round-off of the accumulation type (`2^-53` for f64, `2^-24` for f32),
//! `eps = 2u` its machine epsilon. The accumulation type's `exp` and `ln` (seqcore's `libm`) and
//! this file's (`std`) are faithful: within one ulp, a relative error below `2u`. Sums are
//! sequential, so a sum of `n` terms has a relative error of at most `gamma_(n-1) ~ (n-1) u`
//! (Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 3-4). For the softmax of a row
//! `z`, `m = max z`, `d_j = z_j - m <= 0`, `D = max_j |d_j|`, `S = sum_j e^(d_j)` (so
//! `1 <= S <= n`), `y_j = e^(d_j) / S` and `L_j = d_j - ln S`. Bounds are first order in `u`; each
//! carries a spare `u` or two that covers the second-order terms (below `1e-20` relative here).

use proptest::prelude::*;
use seq_conformance::strategies::{Specials, value};
use seqcore::{Backend, Binary, Element, Reduce, Reference, SoftmaxKind, View, bf16, f16};

const R: Reference = Reference;

/// `u` of `T`'s accumulation type.
fn u<T: Element>() -> f64 {
    T::DTYPE.accumulator().unit_roundoff()
}

/// `rows x n` values, each from `values`.
fn matrix(
    rows: impl Strategy<Value = usize>,
    n: impl Strategy<Value = usize>,
    values: BoxedStrategy<f64>,
) -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    (rows, n).prop_flat_map(move |(r, n)| {
        (
            Just(r),
            Just(n),
            proptest::collection::vec(values.clone(), r * n),
        )
    })
}

/// Any f64 in `lo..hi`.
fn uniform(lo: f64, hi: f64) -> BoxedStrategy<f64> {
    (lo..hi).boxed()
}

/// 1 to 4 rows of 1 to 140 logits, each in `lo..hi`.
fn logits(lo: f64, hi: f64) -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    matrix(1usize..5, 1usize..=140, uniform(lo, hi))
}

/// 1 to 4 rows of `n` values from [`grid`]`(40)`, and one shift per row: a multiple of `2^-6`
/// with magnitude at most 100.
fn grid_rows_and_shifts(
    n: core::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = ((usize, usize, Vec<f64>), Vec<f64>)> {
    (1usize..5).prop_flat_map(move |rows| {
        let shift = (-6400i32..=6400).prop_map(|i| f64::from(i) / 64.0);
        (
            matrix(Just(rows), n.clone(), grid(40)),
            proptest::collection::vec(shift, rows),
        )
    })
}

/// A multiple of `2^-10` with magnitude at most `max` (< `2^8`): such values, their sums with a
/// multiple of `2^-6` of magnitude below `2^8`, and their differences are exact in f32 and f64.
fn grid(max: i32) -> BoxedStrategy<f64> {
    (-max * 1024..=max * 1024)
        .prop_map(|i| f64::from(i) / 1024.0)
        .boxed()
}

fn to<T: Element>(x: &[f64]) -> Vec<T> {
    x.iter().map(|&v| T::from_f64(v)).collect()
}

fn wide<T: Element>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// A seqcore error as a proptest failure.
fn ok<V>(r: seqcore::Result<V>) -> Result<V, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("seqcore error: {e}")))
}

/// Bitwise equality of element slices (through their bytes).
fn same_bits<T: Element>(a: &[T], b: &[T]) -> bool {
    bytemuck::cast_slice::<T, u8>(a) == bytemuck::cast_slice::<T, u8>(b)
}

// ---------------------------------------------------------------------------------------------
// softmax

/// Softmax or log-softmax of `x [rows, n]` with an optional mask view.
fn softmax<T: Element>(
    kind: SoftmaxKind,
    x: &[T],
    rows: usize,
    n: usize,
    mask: Option<View<'_, Reference, T>>,
) -> Result<Vec<T>, TestCaseError> {
    let mut y = vec![T::default(); rows * n];
    ok(R.softmax(
        kind,
        ok(R.view(x, &[rows, n]))?,
        mask,
        ok(R.view_mut(&mut y, &[rows, n]))?,
    ))?;
    Ok(y)
}

/// Rows sum to 1 within `n * 4 * eps`, and every entry lies in `[0, 1]`.
///
/// Derivation: the kernel stores `y_j = fl(e_j / S')` with `e_j` the computed exponentials and
/// `S' = sum_k e_k (1 + theta_k)`, `|theta_k| <= gamma_(n-1)`. The errors of `exp` (and of
/// `d_j`) appear alike in every numerator and in the denominator, so they cancel from the sum:
/// `sum_j y_j = (sum_j e_j (1 + delta_j)) / S'`, `|delta_j| <= u`, which is within
/// `u + gamma_(n-1) ~ n u` of 1. Summing the row here (in f64, `gamma_(n-1)` of f64 more,
/// negligible for f32) and the absolute error of f32 results that underflow (`n 2^-149` at most)
/// stay far inside the `n * 4 * eps = 8 n u` asserted. `[0, 1]` is exact: `d_j <= 0` so
/// `exp(d_j) <= 1 <= S'` (the maximum contributes `exp(0) = 1`), and a correctly rounded quotient
/// of `e <= S'` is at most 1.
fn check_sums_to_one<T: Element>(rows: usize, n: usize, x: &[f64]) -> Result<(), TestCaseError> {
    let y = wide(&softmax(SoftmaxKind::Softmax, &to::<T>(x), rows, n, None)?);
    let eps = 2.0 * u::<T>();
    for (r, row) in y.chunks(n).enumerate() {
        let sum: f64 = row.iter().sum();
        let tol = n as f64 * 4.0 * eps;
        prop_assert!(
            (sum - 1.0).abs() <= tol,
            "row {r}: sum {sum:e} is {:e} from 1, above {tol:e}",
            (sum - 1.0).abs()
        );
        prop_assert!(
            row.iter().all(|v| (0.0..=1.0).contains(v)),
            "row {r} leaves [0, 1]: {row:?}"
        );
    }
    Ok(())
}

/// `softmax(x + c) == softmax(x)` bitwise, `c` one constant per row, when `x + c` is exact: the
/// kernel sees the same differences `z_j - m` (exact real numbers, rounded the same way), so every
/// later operation repeats.
fn check_shift_exact<T: Element>(
    rows: usize,
    n: usize,
    x: &[f64],
    c: &[f64],
) -> Result<(), TestCaseError> {
    // `max(1)`: an empty row (n = 0) has nothing to shift.
    let shifted: Vec<f64> = x
        .chunks(n.max(1))
        .zip(c)
        .flat_map(|(row, &c)| row.iter().map(move |&v| v + c))
        .collect();
    for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
        let a = softmax(kind, &to::<T>(x), rows, n, None)?;
        let b = softmax(kind, &to::<T>(&shifted), rows, n, None)?;
        prop_assert!(
            same_bits(&a, &b),
            "{kind:?}: {:?} != {:?}",
            wide(&a),
            wide(&b)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn softmax_rows_sum_to_one_f64((rows, n, x) in logits(-40.0, 40.0)) {
        check_sums_to_one::<f64>(rows, n, &x)?;
    }

    #[test]
    fn softmax_rows_sum_to_one_f32((rows, n, x) in logits(-40.0, 40.0)) {
        check_sums_to_one::<f32>(rows, n, &x)?;
    }

    /// Grid values: `|x| <= 40` in steps of `2^-10`, `|c| <= 100` in steps of `2^-6`, so `x + c`
    /// needs at most 18 significant bits and is exact in f32 and f64.
    #[test]
    fn softmax_is_shift_invariant_exactly(((rows, n, x), c) in grid_rows_and_shifts(0..=70)) {
        check_shift_exact::<f64>(rows, n, &x, &c)?;
        check_shift_exact::<f32>(rows, n, &x, &c)?;
    }

    /// Any `x` in `[-40, 40)` and `c` in `[-100, 100)` (f64): `w = fl(x + c)` is `x + c + e`,
    /// `|e_j| <= u A`, `A = max |x| + |c|`. Softmax depends on differences only, and a
    /// perturbation `e` changes `ln y_j` by `e_j - ln sum_k y_k e^(e_k)`, at most `2 u A`. The
    /// kernel's own relative error in `y_j` is at most `u (|d_j| + 2)` (rounding of `d_j`, then
    /// `exp`) plus `u (D + 2) + gamma_(n-1)` (the sum, a weighted mean of such terms) plus `u` (the
    /// division): `u (|d_j| + D + n + 4)`, for each of the two runs (whose `d` differ by less than
    /// 1). Together: `|y'_j - y_j| <= y_j u (2A + 2|d_j| + 2D + 2n + 10)`; we assert that with 12.
    /// No `y_j` is below `e^-80`, far from f64's subnormals.
    #[test]
    fn softmax_is_shift_invariant_up_to_rounding(
        ((rows, n, x), c) in (1usize..5).prop_flat_map(|rows| (
            matrix(Just(rows), 1usize..=100, uniform(-40.0, 40.0)),
            proptest::collection::vec(-100.0f64..100.0, rows),
        ))
    ) {
        let shifted: Vec<f64> = x
            .chunks(n)
            .zip(&c)
            .flat_map(|(row, &c)| row.iter().map(move |&v| v + c))
            .collect();
        let a = softmax(SoftmaxKind::Softmax, &x, rows, n, None)?;
        let b = softmax(SoftmaxKind::Softmax, &shifted, rows, n, None)?;
        let u = u::<f64>();
        let rows_of = x.chunks(n).zip(a.chunks(n).zip(b.chunks(n))).zip(&c);
        for (r, ((xr, (ar, br)), &c)) in rows_of.enumerate() {
            let m = xr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let big_d = xr.iter().map(|&v| m - v).fold(0.0, f64::max);
            let big_a = xr.iter().map(|v| v.abs()).fold(0.0, f64::max) + c.abs();
            for (j, ((&xv, &y), &y2)) in xr.iter().zip(ar).zip(br).enumerate() {
                let d = m - xv;
                let tol = y * u * (2.0 * big_a + 2.0 * d + 2.0 * big_d + 2.0 * n as f64 + 12.0);
                prop_assert!(
                    (y2 - y).abs() <= tol,
                    "row {r} [{j}]: {y2:e} vs {y:e}, |diff| {:e} > {tol:e}",
                    (y2 - y).abs()
                );
            }
        }
    }

    /// `log_softmax_j == ln(softmax_j)` where `softmax_j > 1e-300` (a normal number, so relative
    /// bounds hold), for logits in `[-400, 400)` (`D` up to 800, so some entries underflow).
    ///
    /// `ln(y'_j)` computed here: `y'_j` has the relative error `u (|d_j| + D + n + 4)` above,
    /// which `ln` turns into the same absolute error, plus `2u |L_j|` for rounding `ln`.
    /// The kernel's `fl(fl(d_j) - fl(ln S'))`: `u |d_j|` (rounding `d_j`), `u (D + n + 1)` (the
    /// relative error of `S'`, absolute after `ln`), `2u ln n` (rounding `ln S`, `S <= n`),
    /// `u |L_j|` (the subtraction). Sum: `u (2|d_j| + 2D + 2n + 5 + 3|L_j| + 2 ln n)`; asserted
    /// with 7.
    #[test]
    fn log_softmax_is_ln_of_softmax((rows, n, x) in logits(-400.0, 400.0)) {
        let y = softmax(SoftmaxKind::Softmax, &x, rows, n, None)?;
        let l = softmax(SoftmaxKind::LogSoftmax, &x, rows, n, None)?;
        let u = u::<f64>();
        let nf = n as f64;
        for (r, ((xr, yr), lr)) in x.chunks(n).zip(y.chunks(n)).zip(l.chunks(n)).enumerate() {
            let m = xr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let big_d = xr.iter().map(|&v| m - v).fold(0.0, f64::max);
            for (j, ((&xv, &yv), &lv)) in xr.iter().zip(yr).zip(lr).enumerate() {
                if yv <= 1e-300 {
                    continue;
                }
                let d = m - xv;
                let tol =
                    u * (2.0 * d + 2.0 * big_d + 2.0 * nf + 7.0 + 3.0 * lv.abs() + 2.0 * nf.ln());
                prop_assert!(
                    (yv.ln() - lv).abs() <= tol,
                    "row {r} [{j}]: ln {yv:e} = {:e}, log_softmax {lv:e}, |diff| {:e} > {tol:e}",
                    yv.ln(),
                    (yv.ln() - lv).abs()
                );
            }
        }
    }

    /// `sum_j exp(log_softmax_j) == 1`. With `b_j = L_j + beta_j`, `|beta_j| <= u (|d_j| + D + n
    /// + 1 + 2 ln n + |L_j|)` (the kernel's error above), `exp(b_j)` here is
    /// `y_j (1 + beta_j) (1 + 2u)`; summing in order adds `gamma_(n-1)`. Since `sum_j y_j = 1`,
    /// `sum_j y_j |d_j| <= D` and `sum_j y_j |L_j| <= D + ln n`, the sum is within
    /// `u (3D + 2n + 3 ln n + 2)` of 1, plus `n 2^-1074` for terms that underflow; asserted with
    /// `+ 4` in place of `+ 2`.
    #[test]
    fn exp_of_log_softmax_sums_to_one((rows, n, x) in logits(-400.0, 400.0)) {
        let l = softmax(SoftmaxKind::LogSoftmax, &x, rows, n, None)?;
        let u = u::<f64>();
        let nf = n as f64;
        for (r, (xr, lr)) in x.chunks(n).zip(l.chunks(n)).enumerate() {
            let m = xr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let big_d = xr.iter().map(|&v| m - v).fold(0.0, f64::max);
            let sum: f64 = lr.iter().map(|v| v.exp()).sum();
            let tol = u * (3.0 * big_d + 2.0 * nf + 3.0 * nf.ln() + 4.0) + nf * f64::from_bits(1);
            prop_assert!(
                (sum - 1.0).abs() <= tol,
                "row {r}: sum {sum:e}, |diff| {:e} > {tol:e}",
                (sum - 1.0).abs()
            );
        }
    }

    /// A `-inf` mask entry at `j` gives exactly 0 (log-softmax: `-inf`) there, and every other
    /// entry is bitwise the softmax of the row without `j`: `exp(-inf) = 0` adds nothing to the
    /// sum, and the other `z_k = x_k + 0` are the `x_k` (`-0.0` may become `+0.0`, which changes no
    /// difference `z_k - m`).
    #[test]
    fn masked_entry_is_zero_and_the_rest_is_the_shorter_softmax(
        ((rows, n, x), hide) in (1usize..5, 2usize..=70).prop_flat_map(|(rows, n)| (
            matrix(Just(rows), Just(n), uniform(-40.0, 40.0)),
            proptest::collection::vec(0..n, rows),
        ))
    ) {
        let mut mask = vec![0.0f64; rows * n];
        for (r, &j) in hide.iter().enumerate() {
            mask[r * n + j] = f64::NEG_INFINITY;
        }
        let mv = R.view(&mask, &[rows, n]).unwrap();
        for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
            let y = softmax(kind, &x, rows, n, Some(mv))?;
            for (r, &j) in hide.iter().enumerate() {
                let row = &y[r * n..(r + 1) * n];
                let hidden = match kind {
                    SoftmaxKind::Softmax => 0.0,
                    SoftmaxKind::LogSoftmax => f64::NEG_INFINITY,
                };
                prop_assert_eq!(row[j], hidden, "{:?} row {} at the masked {}", kind, r, j);
                let mut rest: Vec<f64> = x[r * n..(r + 1) * n].to_vec();
                rest.remove(j);
                let want = softmax(kind, &rest, 1, n - 1, None)?;
                let mut got = row.to_vec();
                got.remove(j);
                prop_assert_eq!(bits(&got), bits(&want), "{:?} row {}", kind, r);
            }
        }
    }

    /// A mask `[n]` broadcast with `View::expand` to `[rows, n]` (stride 0 over the rows) gives
    /// bitwise the result of the mask copied into every row.
    #[test]
    fn broadcast_mask_equals_materialised_mask(
        ((rows, n, x), m) in (1usize..6, 0usize..=70).prop_flat_map(|(rows, n)| (
            matrix(Just(rows), Just(n), uniform(-20.0, 20.0)),
            proptest::collection::vec(
                prop_oneof![2 => Just(0.0), 1 => Just(f64::NEG_INFINITY), 2 => -3.0f64..3.0],
                n,
            ),
        ))
    ) {
        let full: Vec<f64> = (0..rows).flat_map(|_| m.iter().copied()).collect();
        for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
            let bcast = R.view(&m, &[n]).unwrap().expand(&[rows, n]).unwrap();
            // An empty layout (n = 0) is stored with zero strides.
            let strides: &[usize] = if n == 0 { &[0, 0] } else { &[0, 1] };
            prop_assert_eq!(bcast.layout().strides(), strides);
            let a = softmax(kind, &x, rows, n, Some(bcast))?;
            let b = softmax(kind, &x, rows, n, Some(R.view(&full, &[rows, n]).unwrap()))?;
            prop_assert_eq!(bits(&a), bits(&b), "{:?}", kind);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gemm

/// `shape[.., x, y]`: rank 2 without a batch, rank 3 with one.
fn lead(batch: Option<usize>, x: usize, y: usize) -> Vec<usize> {
    match batch {
        None => vec![x, y],
        Some(b) => vec![b, x, y],
    }
}

/// Small integers: every product and every sum of up to 16 of them (`|sum| <= 16 * 64`) is an
/// exact integer in f32 and f64, whatever the order of summation.
fn small_int() -> BoxedStrategy<f64> {
    (-8i32..=8).prop_map(f64::from).boxed()
}

/// Operands of a (batched) product with extents `0..=max` and values from `v`.
#[derive(Clone, Debug)]
struct Operands {
    batch: Option<usize>,
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
}

fn operands(max: usize, v: BoxedStrategy<f64>) -> impl Strategy<Value = Operands> {
    (
        prop_oneof![Just(None), (1usize..4).prop_map(Some)],
        0..=max,
        0..=max,
        0..=max,
    )
        .prop_flat_map(move |(batch, m, k, n)| {
            let p = batch.unwrap_or(1);
            let vec = |len| proptest::collection::vec(v.clone(), len);
            (vec(p * m * k), vec(p * k * n), vec(p * m * n)).prop_map(move |(a, b, c)| Operands {
                batch,
                m,
                k,
                n,
                a,
                b,
                c,
            })
        })
}

/// `(A B)^T == B^T A^T`, both transposes being views with swapped strides, exactly (integer
/// operands: every sum is exact). Also writes `A B` through a transposed output view, which must
/// fill memory exactly as `B^T A^T` into a plain view does.
fn check_transpose<T: Element>(o: &Operands) -> Result<(), TestCaseError> {
    let Operands { batch, m, k, n, .. } = *o;
    let (a, b) = (to::<T>(&o.a), to::<T>(&o.b));
    let r = lead(batch, 0, 0).len();
    let (t0, t1) = (r - 2, r - 1);
    let av = ok(R.view(&a, &lead(batch, m, k)))?;
    let bv = ok(R.view(&b, &lead(batch, k, n)))?;
    let p = batch.unwrap_or(1);

    let mut ab = vec![T::default(); p * m * n];
    let c = ok(R.view_mut(&mut ab, &lead(batch, m, n)))?;
    ok(R.gemm(1.0, av, bv, 0.0, c))?;
    let mut bt_at = vec![T::default(); p * n * m];
    let c = ok(R.view_mut(&mut bt_at, &lead(batch, n, m)))?;
    ok(R.gemm(
        1.0,
        ok(bv.transpose(t0, t1))?,
        ok(av.transpose(t0, t1))?,
        0.0,
        c,
    ))?;
    let want = transposed(&wide(&ab), p, m, n);
    prop_assert_eq!(bits(&wide(&bt_at)), bits(&want), "B^T A^T != (A B)^T");

    let mut through_t = vec![T::default(); p * n * m];
    let out = ok(ok(R.view_mut(&mut through_t, &lead(batch, n, m)))?.transpose(t0, t1))?;
    ok(R.gemm(1.0, av, bv, 0.0, out))?;
    prop_assert!(
        same_bits(&through_t, &bt_at),
        "A B written through a transposed view: {:?} != {:?}",
        wide(&through_t),
        wide(&bt_at)
    );
    Ok(())
}

/// `v [p, rows, cols]` with its last two axes swapped, copied (NaN for a missing element).
fn transposed(v: &[f64], p: usize, rows: usize, cols: usize) -> Vec<f64> {
    (0..p)
        .flat_map(|q| {
            (0..cols).flat_map(move |j| (0..rows).map(move |i| (q * rows + i) * cols + j))
        })
        .map(|at| v.get(at).copied().unwrap_or(f64::NAN))
        .collect()
}

/// `A B` by the definition, in f64 (exact for integer operands; NaN for a missing element).
fn product(o: &Operands) -> Vec<f64> {
    let Operands { m, k, n, .. } = *o;
    let p = o.batch.unwrap_or(1);
    let get = |v: &[f64], at: usize| v.get(at).copied().unwrap_or(f64::NAN);
    (0..p)
        .flat_map(|q| (0..m).flat_map(move |i| (0..n).map(move |j| (q, i, j))))
        .map(|(q, i, j)| {
            (0..k)
                .map(|kk| get(&o.a, (q * m + i) * k + kk) * get(&o.b, (q * k + kk) * n + j))
                .sum()
        })
        .collect()
}

const COEFS: [f64; 4] = [1.0, 2.0, -1.0, 0.5];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn gemm_transpose_identity_is_exact(o in operands(16, small_int())) {
        check_transpose::<f64>(&o)?;
        check_transpose::<f32>(&o)?;
    }

    /// `gemm(alpha, A, B, beta, C) == alpha (A B) + beta C` exactly: with integer operands the
    /// product is an exact integer (at most `2^10` in magnitude), and scaling by 1, 2, -1 or 0.5
    /// and adding two such values are exact too.
    #[test]
    fn gemm_alpha_beta_is_exact(
        o in operands(16, small_int()),
        alpha in proptest::sample::select(&COEFS[..]),
        beta in proptest::sample::select(&COEFS[..]),
    ) {
        let Operands { batch, m, k, n, .. } = o;
        let mut c = o.c.clone();
        R.gemm(
            alpha,
            R.view(&o.a, &lead(batch, m, k)).unwrap(),
            R.view(&o.b, &lead(batch, k, n)).unwrap(),
            beta,
            R.view_mut(&mut c, &lead(batch, m, n)).unwrap(),
        )
        .unwrap();
        let want: Vec<f64> = product(&o)
            .iter()
            .zip(&o.c)
            .map(|(&ab, &c0)| alpha * ab + beta * c0)
            .collect();
        prop_assert_eq!(c, want);
    }

    /// With `beta = 0`, `c` is not read: NaN there does not reach the result (as BLAS).
    #[test]
    fn gemm_beta_zero_ignores_c(
        o in operands(12, small_int()),
        alpha in proptest::sample::select(&COEFS[..]),
    ) {
        let Operands { batch, m, k, n, .. } = o;
        let mut c = vec![f64::NAN; o.c.len()];
        R.gemm(
            alpha,
            R.view(&o.a, &lead(batch, m, k)).unwrap(),
            R.view(&o.b, &lead(batch, k, n)).unwrap(),
            0.0,
            R.view_mut(&mut c, &lead(batch, m, n)).unwrap(),
        )
        .unwrap();
        let want: Vec<f64> = product(&o).iter().map(|&ab| alpha * ab).collect();
        prop_assert_eq!(c, want);
    }

    /// An operand shared across the batch through a zero batch stride (`View::expand` of
    /// `[1, .., ..]`) gives bitwise the result of the operand copied into every batch entry: the
    /// same products summed in the same order. Any values. (With `batch = 1`, `expand` keeps the
    /// stored stride: nothing is broadcast.)
    #[test]
    fn gemm_batch_broadcast_equals_repetition(
        ((batch, m, k, n, share_a, share_b), a, b) in
            (1usize..5, 0usize..=12, 0usize..=12, 0usize..=12, any::<bool>(), any::<bool>())
                .prop_flat_map(|(batch, m, k, n, share_a, share_b)| {
                    let len = |shared: bool, x: usize, y: usize| {
                        if shared { x * y } else { batch * x * y }
                    };
                    (
                        Just((batch, m, k, n, share_a, share_b)),
                        proptest::collection::vec(-1.0f64..1.0, len(share_a, m, k)),
                        proptest::collection::vec(-1.0f64..1.0, len(share_b, k, n)),
                    )
                })
    ) {
        let repeat = |v: &[f64], shared: bool| -> Vec<f64> {
            if shared {
                (0..batch).flat_map(|_| v.iter().copied()).collect()
            } else {
                v.to_vec()
            }
        };
        let stored = |shared: bool, x: usize, y: usize| [if shared { 1 } else { batch }, x, y];
        let av = R.view(&a, &stored(share_a, m, k)).unwrap().expand(&[batch, m, k]).unwrap();
        let bv = R.view(&b, &stored(share_b, k, n)).unwrap().expand(&[batch, k, n]).unwrap();
        prop_assert!(!share_a || batch == 1 || av.layout().strides()[0] == 0);
        prop_assert!(!share_b || batch == 1 || bv.layout().strides()[0] == 0);
        let mut got = vec![0.0; batch * m * n];
        R.gemm(1.0, av, bv, 0.0, R.view_mut(&mut got, &[batch, m, n]).unwrap()).unwrap();
        let (a_full, b_full) = (repeat(&a, share_a), repeat(&b, share_b));
        let mut want = vec![0.0; batch * m * n];
        R.gemm(
            1.0,
            R.view(&a_full, &[batch, m, k]).unwrap(),
            R.view(&b_full, &[batch, k, n]).unwrap(),
            0.0,
            R.view_mut(&mut want, &[batch, m, n]).unwrap(),
        )
        .unwrap();
        prop_assert_eq!(bits(&got), bits(&want));
    }
}

// ---------------------------------------------------------------------------------------------
// reduce

/// `op` over the last axis of `x [rows, n]`.
fn reduce<T: Element>(op: Reduce, x: &[T], rows: usize, n: usize) -> Result<Vec<T>, TestCaseError> {
    let mut y = vec![T::default(); rows];
    ok(R.reduce(
        op,
        ok(R.view(x, &[rows, n]))?,
        ok(R.view_mut(&mut y, &[rows]))?,
    ))?;
    Ok(y)
}

/// A value of magnitude in `[1e-3, 1e3)` (log-uniform) with either sign, or zero.
fn moderate() -> BoxedStrategy<f64> {
    prop_oneof![
        8 => (-3.0f64..3.0, any::<bool>())
            .prop_map(|(e, neg)| if neg { -1.0 } else { 1.0 } * 10f64.powf(e)),
        1 => Just(0.0),
    ]
    .boxed()
}

/// `l2norm(c x) == |c| l2norm(x)` bitwise for `c = ±2^e` when no value leaves the normal range:
/// the kernel divides by the largest magnitude first, and `c x_j / |c| max|x|` is `±x_j / max|x|`
/// as real numbers, so rounds alike; the final `max * sqrt(..)` scales by `|c|` exactly.
fn check_l2norm_scaling<T: Element>(
    rows: usize,
    n: usize,
    x: &[f64],
    e: i32,
    neg: bool,
) -> Result<(), TestCaseError> {
    let xt = to::<T>(x);
    let c = if neg { -1.0 } else { 1.0 } * 2f64.powi(e);
    // Exact in T: |x| in [1e-3, 1e3] times 2^[-30, 30] stays normal in f32 and f64.
    let scaled: Vec<T> = xt.iter().map(|v| T::from_f64(v.to_f64() * c)).collect();
    let a = wide(&reduce(Reduce::L2Norm, &xt, rows, n)?);
    let b = wide(&reduce(Reduce::L2Norm, &scaled, rows, n)?);
    let want: Vec<f64> = a.iter().map(|v| v * c.abs()).collect();
    prop_assert_eq!(bits(&b), bits(&want), "c = {}", c);
    Ok(())
}

/// `mean * n == sum` up to rounding. The kernel's mean is `fl(S / n)` of the very sum `S` that
/// `sum` returns (same terms, same order; `n` is exact in the accumulation type), so
/// `|fl(S / n) n - S| <= u |S|`. In f32 the product `mean * n` is formed here in f64 exactly
/// (24 + 8 bits), so the bound is `u |S|`; in f64 rounding the product adds another `u |S|`.
/// A mean that falls among the subnormals has an absolute error of up to half their spacing,
/// `n` times that after the product.
fn check_mean_times_n<T: Element>(rows: usize, n: usize, x: &[f64]) -> Result<(), TestCaseError> {
    let xt = to::<T>(x);
    let sums = wide(&reduce(Reduce::Sum, &xt, rows, n)?);
    let means = wide(&reduce(Reduce::Mean, &xt, rows, n)?);
    let u = u::<T>();
    let (rounds, spacing) = if T::DTYPE == seqcore::DType::F64 {
        (2.0, f64::from_bits(1))
    } else {
        (1.0, f64::from(f32::from_bits(1)))
    };
    let nf = n as f64;
    for (r, (&s, &mean)) in sums.iter().zip(&means).enumerate() {
        let tol = rounds * u * s.abs() * (1.0 + 2.0 * u) + nf * spacing;
        prop_assert!(
            (mean * nf - s).abs() <= tol,
            "row {r}: mean {mean:e} * {n} = {:e}, sum {s:e}, |diff| {:e} > {tol:e}",
            mean * nf,
            (mean * nf - s).abs()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `logsumexp(x) == m + ln(sum_j exp(x_j - m))` computed here in f64 with `std`'s `exp` and
    /// `ln`, which may differ from seqcore's `libm` by an ulp. Each side against the exact value:
    /// `exp(fl(x_j - m))` is `e^(d_j) (1 + eta_j)`, `|eta_j| <= u (|d_j| + 2)`; the sum's relative
    /// error is at most `u (sum_j e^(d_j) |d_j| / S + 2) + gamma_(n-1) <= u (2n + 1)`, since
    /// `S >= 1` and `t e^-t <= 1/e`; `ln` adds `2u ln S <= 2u ln n`; the final addition
    /// `u |lse|`. Two sides: `2u (2n + 1 + 2 ln n + |lse|)`, asserted with `2n + 2`.
    #[test]
    fn logsumexp_is_max_plus_ln_sum_exp((rows, n, x) in logits(-50.0, 50.0)) {
        let got = reduce(Reduce::LogSumExp, &x, rows, n)?;
        let u = u::<f64>();
        let nf = n as f64;
        for (r, (row, &g)) in x.chunks(n).zip(&got).enumerate() {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|&v| (v - m).exp()).sum();
            let want = m + s.ln();
            let tol = 2.0 * u * (2.0 * nf + 2.0 + 2.0 * nf.ln() + want.abs());
            prop_assert!(
                (g - want).abs() <= tol,
                "row {r}: {g:e} vs {want:e}, |diff| {:e} > {tol:e}",
                (g - want).abs()
            );
        }
    }

    /// `logsumexp(x + c) == logsumexp(x) + c` on grid values (`x + c` exact, as for softmax): both
    /// runs compute the same `lambda = fl(ln S)` from the same exact differences, then
    /// `r2 = fl((m + c) + lambda)` against `r3 = fl(fl(m + lambda) + c)` formed here. With
    /// `V = m + c + lambda`: `|r2 - V| <= u |V|`, `|r3 - V| <= u |m + lambda| + u |V|`, so
    /// `|r2 - r3| <= u (2 |r3| + |r1|)`, `r1 = fl(m + lambda)`; `(1 + 4u)` covers second order.
    #[test]
    fn logsumexp_shifts_with_its_input(
        ((rows, n, x), c) in grid_rows_and_shifts(1..=140)
    ) {
        let shifted: Vec<f64> = x
            .chunks(n)
            .zip(&c)
            .flat_map(|(row, &c)| row.iter().map(move |&v| v + c))
            .collect();
        let r1 = reduce(Reduce::LogSumExp, &x, rows, n)?;
        let r2 = reduce(Reduce::LogSumExp, &shifted, rows, n)?;
        let u = u::<f64>();
        for (r, ((&r1, &r2), &c)) in r1.iter().zip(&r2).zip(&c).enumerate() {
            let r3 = r1 + c;
            let tol = u * (2.0 * r3.abs() + r1.abs()) * (1.0 + 4.0 * u);
            prop_assert!(
                (r2 - r3).abs() <= tol,
                "row {r}: lse(x + {c}) = {r2:e}, lse(x) + c = {r3:e}, |diff| {:e} > {tol:e}",
                (r2 - r3).abs()
            );
        }
    }

    #[test]
    fn l2norm_scales_exactly_by_powers_of_two(
        (rows, n, x) in matrix(1usize..5, 0usize..=140, moderate()),
        e in -30i32..=30,
        neg in any::<bool>(),
    ) {
        check_l2norm_scaling::<f64>(rows, n, &x, e, neg)?;
        check_l2norm_scaling::<f32>(rows, n, &x, e, neg)?;
    }

    #[test]
    fn mean_times_n_is_sum_f64((rows, n, x) in logits(-100.0, 100.0)) {
        check_mean_times_n::<f64>(rows, n, &x)?;
    }

    #[test]
    fn mean_times_n_is_sum_f32((rows, n, x) in logits(-100.0, 100.0)) {
        check_mean_times_n::<f32>(rows, n, &x)?;
    }

    /// The maximum is at least every element and is bitwise one of them (signed zeros included),
    /// over values with infinities and huge magnitudes but no NaN; a NaN anywhere gives NaN.
    #[test]
    fn max_bounds_the_row_and_is_an_element(
        (rows, n, x) in matrix(
            1usize..5,
            1usize..=70,
            value(4.0, Specials { neg_inf: true, pos_inf: true, nan: false, huge: true }),
        ),
        nan_at in proptest::option::of(any::<proptest::sample::Index>()),
    ) {
        let got = reduce(Reduce::Max, &x, rows, n)?;
        for (r, (row, &mx)) in x.chunks(n).zip(&got).enumerate() {
            prop_assert!(
                row.iter().all(|&v| mx >= v),
                "row {r}: max {mx:e} below an element of {row:?}"
            );
            prop_assert!(
                row.iter().any(|v| v.to_bits() == mx.to_bits()),
                "row {r}: max {mx:e} is not an element of {row:?}"
            );
        }
        if let Some(at) = nan_at {
            let mut with_nan = x.clone();
            with_nan[at.index(x.len())] = f64::NAN;
            let got = reduce(Reduce::Max, &with_nan, rows, n)?;
            for (row, &mx) in with_nan.chunks(n).zip(&got) {
                prop_assert_eq!(mx.is_nan(), row.iter().any(|v| v.is_nan()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// top_k

/// Values and indices of the top `k` of each row of `x [rows, n]`.
fn top_k(
    k: usize,
    x: &[f64],
    rows: usize,
    n: usize,
) -> Result<(Vec<f64>, Vec<u32>), TestCaseError> {
    let (mut v, mut i) = (vec![0.0; rows * k], vec![0u32; rows * k]);
    ok(R.top_k(
        k,
        ok(R.view(x, &[rows, n]))?,
        ok(R.view_mut(&mut v, &[rows, k]))?,
        ok(R.view_mut(&mut i, &[rows, k]))?,
    ))?;
    Ok((v, i))
}

/// Rows with ties (small integers), NaN and infinities.
fn top_k_rows() -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    let sp = Specials {
        neg_inf: true,
        pos_inf: true,
        nan: true,
        huge: false,
    };
    let v = prop_oneof![2 => (-2i32..3).prop_map(f64::from), 3 => value(1.0, sp)].boxed();
    matrix(1usize..4, 1usize..=48, v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Values are non-increasing in `torch.topk`'s order (NaN above `+inf`), ties in increasing
    /// index order; `values[i]` is bitwise `x[indices[i]]`; indices are distinct and in range.
    #[test]
    fn top_k_is_sorted_and_points_at_its_values(
        ((rows, n, x), k) in top_k_rows().prop_flat_map(|(rows, n, x)| (Just((rows, n, x)), 0..=n))
    ) {
        let (v, ix) = top_k(k, &x, rows, n)?;
        // `max(1)`: with k = 0 there is nothing to check (and the outputs are empty).
        let per_row = x.chunks(n).zip(v.chunks(k.max(1))).zip(ix.chunks(k.max(1)));
        for (r, ((row, vr), ir)) in per_row.enumerate() {
            for (i, (&val, &j)) in vr.iter().zip(ir).enumerate() {
                let j = usize::try_from(j).unwrap();
                prop_assert!(j < n, "row {r}: index {j} past {n}");
                prop_assert_eq!(val.to_bits(), row[j].to_bits(), "row {} [{}]", r, i);
            }
            for (i, (pair, ip)) in vr.windows(2).zip(ir.windows(2)).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                prop_assert!(a.is_nan() || (!b.is_nan() && a >= b), "row {r} [{i}]: {a} then {b}");
                if a == b || (a.is_nan() && b.is_nan()) {
                    prop_assert!(
                        ip[0] < ip[1],
                        "row {r} [{i}]: tie at indices {} then {}",
                        ip[0],
                        ip[1]
                    );
                }
            }
            let mut seen = ir.to_vec();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), ir.len(), "row {}: repeated index in {:?}", r, ir);
        }
    }

    /// With `k = n` the indices are a permutation of `0..n`.
    #[test]
    fn top_k_of_everything_is_a_permutation((rows, n, x) in top_k_rows()) {
        let (_, ix) = top_k(n, &x, rows, n)?;
        let want: Vec<u32> = (0..u32::try_from(n).unwrap()).collect();
        for (r, ir) in ix.chunks(n).enumerate() {
            let mut sorted = ir.to_vec();
            sorted.sort_unstable();
            prop_assert_eq!(&sorted, &want, "row {}", r);
        }
    }

    /// Without NaN, the top-1 value is the `max` reduction, bitwise except at a zero maximum:
    /// `max` follows IEEE 754-2019 `maximum` (`+0` above `-0`), while top-k, as `torch.topk`,
    /// compares `-0 == +0` and keeps the first of equal values, so there the top-1 value is the
    /// row's first zero, of either sign.
    #[test]
    fn top_1_is_the_max((rows, n, x) in top_k_rows()) {
        let (v, _) = top_k(1, &x, rows, n)?;
        let mx = reduce(Reduce::Max, &x, rows, n)?;
        for (r, row) in x.chunks(n).enumerate() {
            if row.iter().any(|v| v.is_nan()) {
                continue;
            }
            let want = if mx[r] == 0.0 {
                row.iter().copied().find(|&e| e == 0.0).unwrap_or(mx[r])
            } else {
                mx[r]
            };
            prop_assert_eq!(
                v[r].to_bits(),
                want.to_bits(),
                "row {}: top-1 {} vs max {}",
                r,
                v[r],
                mx[r]
            );
            if mx[r] == 0.0 {
                // The maximum is +0 exactly when the row holds a +0.
                let has_pos = row.iter().any(|&e| e.to_bits() == 0);
                prop_assert_eq!(mx[r].is_sign_positive(), has_pos, "row {}", r);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cast

/// `x [len]` converted to `D`.
fn cast<S: Element, D: Element>(x: &[S]) -> Result<Vec<D>, TestCaseError> {
    let mut y = vec![D::default(); x.len()];
    ok(R.cast(
        ok(R.view(x, &[x.len()]))?,
        ok(R.view_mut(&mut y, &[x.len()]))?,
    ))?;
    Ok(y)
}

/// `S -> W -> S` over every 16-bit pattern of `S`: bitwise the identity for every non-NaN, and
/// NaN stays NaN. Exhaustive rather than sampled: all 65536 patterns take milliseconds.
fn check_round_trip_16<S: Element, W: Element>(
    from_bits: fn(u16) -> S,
) -> Result<(), TestCaseError> {
    let all: Vec<S> = (0..=u16::MAX).map(from_bits).collect();
    let there: Vec<W> = cast(&all)?;
    let back: Vec<S> = cast(&there)?;
    for ((x, w), y) in all.iter().zip(&there).zip(&back) {
        let xf = x.to_f64();
        if xf.is_nan() {
            prop_assert!(
                w.to_f64().is_nan() && y.to_f64().is_nan(),
                "NaN {x:?} became {w:?}, {y:?}"
            );
        } else {
            prop_assert_eq!(
                w.to_f64().to_bits(),
                xf.to_bits(),
                "{:?} widened to {:?}",
                x,
                w
            );
            prop_assert!(same_bits(&[*x], &[*y]), "{x:?} came back as {y:?}");
        }
    }
    Ok(())
}

#[test]
fn f16_round_trips_through_f32_bitwise() -> Result<(), TestCaseError> {
    check_round_trip_16::<f16, f32>(f16::from_bits)
}

#[test]
fn bf16_round_trips_through_f64_bitwise() -> Result<(), TestCaseError> {
    check_round_trip_16::<bf16, f64>(bf16::from_bits)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// An f64 that f32 represents (any f32 bit pattern, subnormals and infinities included)
    /// survives f64 -> f32 -> f64 exactly, and its f32 is the pattern it came from.
    #[test]
    fn f32_representable_f64_round_trips(raw in proptest::collection::vec(any::<u32>(), 1..512)) {
        let singles: Vec<f32> = raw.iter().map(|&b| f32::from_bits(b)).collect();
        let doubles: Vec<f64> = singles.iter().map(|&s| f64::from(s)).collect();
        let narrowed: Vec<f32> = cast(&doubles)?;
        let back: Vec<f64> = cast(&narrowed)?;
        for ((&s, &d), (&n, &b)) in singles.iter().zip(&doubles).zip(narrowed.iter().zip(&back)) {
            if s.is_nan() {
                prop_assert!(n.is_nan() && b.is_nan());
            } else {
                prop_assert_eq!(n.to_bits(), s.to_bits(), "{:e}", d);
                prop_assert_eq!(b.to_bits(), d.to_bits(), "{:e}", d);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// binary

/// `op(a, b)` elementwise over `[len]`.
fn binary(op: Binary, a: &[f64], b: &[f64]) -> Result<Vec<f64>, TestCaseError> {
    let mut y = vec![0.0; a.len()];
    let s = [a.len()];
    ok(R.binary(
        op,
        ok(R.view(a, &s))?,
        ok(R.view(b, &s))?,
        ok(R.view_mut(&mut y, &s))?,
    ))?;
    Ok(y)
}

/// Pairs of any f64 bit patterns (every NaN payload, subnormal, zero and infinity), and of
/// values with the specials the other tests draw.
fn pairs() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    let special = value(
        2.0,
        Specials {
            neg_inf: true,
            pos_inf: true,
            nan: true,
            huge: true,
        },
    );
    let any_bits = any::<u64>().prop_map(f64::from_bits).boxed();
    let zero = prop_oneof![Just(0.0), Just(-0.0)].boxed();
    let one = prop_oneof![3 => special, 2 => any_bits, 1 => zero];
    proptest::collection::vec((one.clone(), one), 0..256).prop_map(|p| p.into_iter().unzip())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `a + b` and `b + a` are bitwise equal (IEEE addition is commutative, signed zeros
    /// included). A NaN result is only required to be NaN both ways: neither IEEE 754 nor Rust
    /// fixes which operand's payload a NaN result carries (x86 keeps the first operand's).
    #[test]
    fn add_is_commutative_bitwise((a, b) in pairs()) {
        let (ab, ba) = (binary(Binary::Add, &a, &b)?, binary(Binary::Add, &b, &a)?);
        for (i, (&x, &y)) in ab.iter().zip(&ba).enumerate() {
            if x.is_nan() || y.is_nan() {
                prop_assert!(
                    x.is_nan() && y.is_nan(),
                    "[{i}] {:e} + {:e}: {x:e}, {y:e}",
                    a[i],
                    b[i]
                );
            } else {
                prop_assert_eq!(x.to_bits(), y.to_bits(), "[{}] {:e} + {:e}", i, a[i], b[i]);
            }
        }
    }

    /// `max(a, b)` and `max(b, a)` are bitwise equal (signed zeros included), both NaN when
    /// either operand is; the same for `min`.
    #[test]
    fn max_and_min_are_commutative_bitwise((a, b) in pairs()) {
        for op in [Binary::Max, Binary::Min] {
            let (ab, ba) = (binary(op, &a, &b)?, binary(op, &b, &a)?);
            for (i, (&x, &y)) in ab.iter().zip(&ba).enumerate() {
                let (p, q) = (a[i], b[i]);
                if p.is_nan() || q.is_nan() {
                    prop_assert!(
                        x.is_nan() && y.is_nan(),
                        "[{i}] {op:?}({p:e}, {q:e}): {x:e}, {y:e}"
                    );
                } else {
                    prop_assert_eq!(x.to_bits(), y.to_bits(), "[{}] {:?}({:e}, {:e})", i, op, p, q);
                }
            }
        }
    }
}

/// `max(+0, -0)` and `max(-0, +0)` are the same bits: IEEE 754-2019 `maximum` orders `-0 < +0`
/// and gives `+0`; `minimum` gives `-0`.
#[test]
fn signed_zeros_do_not_make_max_and_min_order_dependent() -> Result<(), TestCaseError> {
    let (a, b) = ([0.0, -0.0], [-0.0, 0.0]);
    for (op, want) in [(Binary::Max, 0.0f64), (Binary::Min, -0.0)] {
        let (ab, ba) = (binary(op, &a, &b)?, binary(op, &b, &a)?);
        assert_eq!(bits(&ab), bits(&ba), "{op:?}: {ab:?} vs {ba:?}");
        assert_eq!(bits(&ab), bits(&[want; 2]), "{op:?}: {ab:?}");
    }
    Ok(())
}
