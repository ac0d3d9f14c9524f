//! Tails: every base kernel in every element type, at every length `n` from 0 to three vector
//! widths plus one on the last axis (the widths of this build: `F32_LANES` for f32, f16 and bf16,
//! whose kernels compute in f32, and `F64_LANES` for f64), held against the f64 reference within
//! the conformance suite's bounds (`seq_conformance::tolerance`, through the suite's own per-kernel
//! checks).
//!
//! Every call goes through `seq_conformance::harness`: inputs sit in buffers whose unreached
//! elements are NaN (a kernel that reads past a row shows it), and each output is written through
//! an offset (and sometimes padded) view into a larger buffer poisoned with a NaN bit pattern no
//! kernel produces, with 16 guard elements before and after: afterwards every element of the view
//! must have been written and every other address must still hold the poison. Rows are three, so
//! that every row but the first starts off a vector boundary when `n` is not a multiple of the
//! width, and the specials (NaN, infinities, huge and subnormal values) sit in the last lanes,
//! where a tail loop handles them.
//!
//! Under Miri the lengths shrink to those either side of each width (see [`lengths`]).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    reason = "test code: clippy.toml allows these in #[test] functions, and the helpers here are \
              test code too"
)]

use seq_accel_simd::Simd;
use seq_accel_simd::lanes::{F32_LANES, F64_LANES};
use seq_conformance::Failure;
use seq_conformance::compare::Agreement;
use seq_conformance::harness::Tensor;
use seq_conformance::properties::{elementwise, gemm, reduce, softmax, top_k};
use seq_conformance::strategies::{Storage, layout};
use seqcore::{Binary, DType, Element, Layout, Reduce, SoftmaxKind, Unary, bf16, f16};

/// Rows of every case.
const ROWS: usize = 3;

/// The simd backend, or `None` (with a line saying why) on a CPU without the build's level.
fn simd() -> Option<Simd> {
    match Simd::new() {
        Ok(s) => Some(s),
        Err(e) => {
            println!("simd backend unavailable, test skipped: {e}");
            None
        }
    }
}

/// The vector width a kernel in `T` computes with.
fn lanes<T: Element>() -> usize {
    match T::DTYPE {
        DType::F64 => F64_LANES,
        _ => F32_LANES,
    }
}

/// Every length from 0 to `3 * lanes + 1`; under Miri those either side of each multiple of the
/// width (and 0, 1), which still runs every tail-loop path once per multiple.
fn lengths<T: Element>() -> Vec<usize> {
    let w = lanes::<T>();
    if cfg!(miri) {
        let mut v = vec![0, 1, w - 1, w, w + 1, 3 * w + 1];
        v.dedup();
        v
    } else {
        (0..=3 * w + 1).collect()
    }
}

/// A tiny deterministic generator (SplitMix64), so that failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-scale, scale)`.
    fn uniform(&mut self, scale: f64) -> f64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (2.0 * u - 1.0) * scale
    }
}

/// Which values fill a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// Finite values in `[-3, 3)`.
    Plain,
    /// As `Plain`, with the last element of row `r` replaced by NaN, `+inf`, `-inf` (r = 0, 1, 2)
    /// and the one before it by a subnormal, a signed zero or a value past f16's range.
    Specials,
    /// Magnitudes near 1e4 (f16 overflow in exp-like maps, large logits).
    Huge,
}

const FILLS: [Fill; 3] = [Fill::Plain, Fill::Specials, Fill::Huge];

/// `ROWS x n` values (row-major) of `fill`.
fn values(n: usize, fill: Fill, seed: u64) -> Vec<f64> {
    let mut g = Gen(seed ^ (n as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut v = Vec::with_capacity(ROWS * n);
    for r in 0..ROWS {
        for j in 0..n {
            let x = match fill {
                Fill::Plain => g.uniform(3.0),
                Fill::Huge => 1e4 + g.uniform(500.0),
                Fill::Specials if j + 1 == n => [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][r],
                Fill::Specials if j + 2 == n => [1e-40, -0.0, 7e4][r],
                Fill::Specials => g.uniform(3.0),
            };
            v.push(x);
        }
    }
    v
}

/// A `ROWS x n` tensor of `values` stored as `st`.
fn tensor(shape: &[usize], vals: Vec<f64>, st: Storage) -> Tensor {
    let (l, len) = layout(shape, st).expect("a layout for a small shape");
    Tensor::with_layout(l, len, vals).expect("a tensor")
}

/// Input and output storages tried at every length: packed, and off a vector boundary with a
/// padded row stride.
const STORAGES: [(Storage, Storage); 2] = [
    (Storage::Contiguous, Storage::Offset(1)),
    (Storage::Padded(3), Storage::Padded(1)),
];

/// Collects failures (all of them, so one run shows the pattern over lengths).
struct Failures(Vec<String>, usize, usize, usize);

impl Failures {
    /// Under Miri, where each call costs about a second, one call in `miri_stride` runs (a prime
    /// that does not divide the loops' sizes, so the calls kept still spread over the
    /// operations, dtypes, lengths and storages: about a dozen per test, four for unary and
    /// top-k, whose calls cost the most there).
    fn new(miri_stride: usize) -> Failures {
        Failures(Vec::new(), 0, 0, miri_stride)
    }

    /// Whether to run the next call: always natively, one in `miri_stride` under Miri.
    fn want(&mut self) -> bool {
        self.2 += 1;
        !cfg!(miri) || self.2 % self.3 == 1
    }

    fn check<T: Element>(&mut self, what: &str, n: usize, r: Result<Agreement, Failure>) {
        self.1 += 1;
        if let Err(f) = r {
            self.0.push(format!("{what} {} n={n}: {f}", T::DTYPE));
        }
    }

    #[track_caller]
    fn assert_none(self, what: &str) {
        println!(
            "{what}: {} calls (of {}), {} failed",
            self.1,
            self.2,
            self.0.len()
        );
        assert!(self.1 > 0, "{what}: no call ran");
        assert!(
            self.0.is_empty(),
            "{what}: {} of {} calls failed:\n{}",
            self.0.len(),
            self.1,
            self.0
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

macro_rules! each_dtype {
    ($f:ident ( $($a:expr),* )) => {
        $f::<f32>($($a),*);
        $f::<f64>($($a),*);
        $f::<f16>($($a),*);
        $f::<bf16>($($a),*);
    };
}

// ---------------------------------------------------------------------------------------------
// elementwise

fn unary_ops() -> Vec<Unary> {
    let mut v = Unary::ALL.to_vec();
    v.push(Unary::Scale(-0.75));
    v.push(Unary::AddScalar(1.25));
    v
}

fn unary_in<T: Element>(s: &Simd, f: &mut Failures) {
    for n in lengths::<T>() {
        for (i, &(sx, sy)) in STORAGES.iter().enumerate() {
            for fill in FILLS {
                for op in unary_ops() {
                    if !f.want() {
                        continue;
                    }
                    let case = elementwise::UnaryCase {
                        op,
                        x: tensor(&[ROWS, n], values(n, fill, 1), sx),
                        y: sy,
                    };
                    let what = format!("unary {op:?} {fill:?} storage#{i}");
                    f.check::<T>(&what, n, elementwise::check_unary::<Simd, T>(s, &case));
                }
            }
        }
    }
}

#[test]
fn unary_tails() {
    let Some(s) = simd() else { return };
    let mut f = Failures::new(613);
    each_dtype!(unary_in(&s, &mut f));
    f.assert_none("unary");
}

fn binary_in<T: Element>(s: &Simd, f: &mut Failures) {
    for n in lengths::<T>() {
        for (i, &(sx, sy)) in STORAGES.iter().enumerate() {
            for fill in FILLS {
                for op in Binary::ALL {
                    let a = tensor(&[ROWS, n], values(n, fill, 2), sx);
                    // `b` packed, and `b` one row broadcast over the rows (a zero stride).
                    let b_full = tensor(&[ROWS, n], values(n, Fill::Plain, 3), sy);
                    let row: Vec<f64> = values(n, fill, 4).into_iter().take(n).collect();
                    let b_bcast = Tensor::with_layout(
                        Layout::contiguous(&[n])
                            .and_then(|l| l.unsqueeze(0))
                            .and_then(|l| l.expand(&[ROWS, n]))
                            .unwrap(),
                        n,
                        (0..ROWS).flat_map(|_| row.iter().copied()).collect(),
                    )
                    .unwrap();
                    for b in [b_full, b_bcast] {
                        if !f.want() {
                            continue;
                        }
                        let case = elementwise::BinaryCase {
                            op,
                            a: a.clone(),
                            b,
                            y: sy,
                        };
                        let what = format!("binary {op:?} {fill:?} storage#{i}");
                        f.check::<T>(&what, n, elementwise::check_binary::<Simd, T>(s, &case));
                    }
                }
            }
        }
    }
}

#[test]
fn binary_tails() {
    let Some(s) = simd() else { return };
    let mut f = Failures::new(139);
    each_dtype!(binary_in(&s, &mut f));
    f.assert_none("binary");
}

fn cast_to<S: Element, D: Element>(s: &Simd, f: &mut Failures) {
    // The lengths of the wider of the two widths' kernels (f64 on either side has fewer lanes).
    let n_max = 3 * F32_LANES + 1;
    let ns: Vec<usize> = if cfg!(miri) {
        lengths::<f32>()
    } else {
        (0..=n_max).collect()
    };
    for n in ns {
        for (i, &(sx, sy)) in STORAGES.iter().enumerate() {
            for fill in FILLS {
                if !f.want() {
                    continue;
                }
                let x = tensor(&[ROWS, n], values(n, fill, 5), sx);
                let what = format!("cast {}->{} {fill:?} storage#{i}", S::DTYPE, D::DTYPE);
                f.check::<S>(&what, n, elementwise::check_cast::<Simd, S, D>(s, &x, sy));
            }
        }
    }
}

fn cast_from<S: Element>(s: &Simd, f: &mut Failures) {
    cast_to::<S, f32>(s, f);
    cast_to::<S, f64>(s, f);
    cast_to::<S, f16>(s, f);
    cast_to::<S, bf16>(s, f);
}

#[test]
fn cast_tails() {
    let Some(s) = simd() else { return };
    let mut f = Failures::new(47);
    each_dtype!(cast_from(&s, &mut f));
    f.assert_none("cast");
}

// ---------------------------------------------------------------------------------------------
// rows: softmax, reductions, top-k

fn softmax_in<T: Element>(s: &Simd, f: &mut Failures) {
    for n in lengths::<T>() {
        for (i, &(sx, sy)) in STORAGES.iter().enumerate() {
            for fill in FILLS {
                for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
                    // No mask; then a mask hiding the last key of row 0 and all of row 1.
                    let mvals: Vec<f64> = (0..ROWS * n)
                        .map(|k| {
                            let (r, j) = (k / n.max(1), k % n.max(1));
                            if (r == 0 && j + 1 == n) || r == 1 {
                                f64::NEG_INFINITY
                            } else {
                                0.25 * j as f64
                            }
                        })
                        .collect();
                    for mask in [None, Some(tensor(&[ROWS, n], mvals, sx))] {
                        let masked = mask.is_some();
                        if !f.want() {
                            continue;
                        }
                        let case = softmax::Case {
                            kind,
                            x: tensor(&[ROWS, n], values(n, fill, 6), sx),
                            mask,
                            y: sy,
                        };
                        let what = format!("{kind:?} {fill:?} masked={masked} storage#{i}");
                        f.check::<T>(&what, n, softmax::check::<Simd, T>(s, &case));
                    }
                }
            }
        }
    }
}

#[test]
fn softmax_tails() {
    let Some(s) = simd() else { return };
    let mut f = Failures::new(47);
    each_dtype!(softmax_in(&s, &mut f));
    f.assert_none("softmax");
}

fn reduce_in<T: Element>(s: &Simd, f: &mut Failures) {
    for n in lengths::<T>() {
        for (i, &(sx, sy)) in STORAGES.iter().enumerate() {
            for fill in FILLS {
                for op in Reduce::ALL {
                    // Sums of huge values would overflow f16's output, not the accumulator:
                    // fine, the reference rounds the same way.
                    if !f.want() {
                        continue;
                    }
                    let case = reduce::Case {
                        op,
                        x: tensor(&[ROWS, n], values(n, fill, 7), sx),
                        y: sy,
                    };
                    let what = format!("reduce {op:?} {fill:?} storage#{i}");
                    f.check::<T>(&what, n, reduce::check::<Simd, T>(s, &case));
                }
            }
        }
    }
}

#[test]
fn reduce_tails() {
    let Some(s) = simd() else { return };
    let mut f = Failures::new(71);
    each_dtype!(reduce_in(&s, &mut f));
    f.assert_none("reduce");
}

fn top_k_in<T: Element>(s: &Simd, f: &mut Failures) {
    for n in lengths::<T>() {
        for (i, &(sx, sy)) in STORAGES.iter().enumerate() {
            for fill in FILLS {
                // Ties: values on a coarse grid (and the specials of the fill).
                let vals: Vec<f64> = values(n, fill, 8)
                    .into_iter()
                    .map(|v| if v.is_finite() { (v * 2.0).round() } else { v })
                    .collect();
                let mut ks = vec![0, 1, n / 2, n.saturating_sub(1), n];
                ks.retain(|&k| k <= n);
                ks.sort_unstable();
                ks.dedup();
                for k in ks {
                    if !f.want() {
                        continue;
                    }
                    let case = top_k::Case {
                        k,
                        x: tensor(&[ROWS, n], vals.clone(), sx),
                        out: sy,
                    };
                    let what = format!("top_k k={k} {fill:?} storage#{i}");
                    f.check::<T>(&what, n, top_k::check::<Simd, T>(s, &case));
                }
            }
        }
    }
}

#[test]
fn top_k_tails() {
    let Some(s) = simd() else { return };
    let mut f = Failures::new(151);
    each_dtype!(top_k_in(&s, &mut f));
    f.assert_none("top_k");
}

// ---------------------------------------------------------------------------------------------
// gemm

/// One product `c [m, n] = alpha a [m, k] b [k, n] + beta c` in every operand storage.
fn gemm_at<T: Element>(s: &Simd, f: &mut Failures, (m, n, k): (usize, usize, usize), seed: u64) {
    let storages: &[(Storage, Storage, Storage)] = if cfg!(miri) {
        &[(Storage::Contiguous, Storage::Contiguous, Storage::Offset(1))]
    } else {
        &[
            (Storage::Contiguous, Storage::Contiguous, Storage::Offset(1)),
            (Storage::Transposed, Storage::Contiguous, Storage::Padded(1)),
            (
                Storage::Contiguous,
                Storage::Transposed,
                Storage::Contiguous,
            ),
            (Storage::Padded(2), Storage::Padded(3), Storage::Offset(3)),
        ]
    };
    let mut g = Gen(seed);
    for (i, &(sa, sb, sc)) in storages.iter().enumerate() {
        for (alpha, beta) in [(1.0, 0.0), (-0.75, 0.5)] {
            let a: Vec<f64> = (0..m * k).map(|_| g.uniform(2.0)).collect();
            let b: Vec<f64> = (0..k * n).map(|_| g.uniform(2.0)).collect();
            let c: Vec<f64> = (0..m * n).map(|_| g.uniform(2.0)).collect();
            if !f.want() {
                continue;
            }
            let case = gemm::Case {
                a: tensor(&[m, k], a, sa),
                b: tensor(&[k, n], b, sb),
                c: tensor(&[m, n], c, Storage::Contiguous),
                alpha,
                beta,
                c_storage: sc,
            };
            let what = format!("gemm m={m} k={k} alpha={alpha} beta={beta} storage#{i}");
            f.check::<T>(&what, n, gemm::check::<Simd, T>(s, &case));
        }
    }
}

fn gemm_in<T: Element>(s: &Simd, f: &mut Failures) {
    // Each extent in turn through every length, the others at a small prime and at a width + 1
    // (so that the register tile has a tail on the other axis too).
    let w = lanes::<T>();
    let others = if cfg!(miri) { vec![3] } else { vec![3, w + 1] };
    for x in lengths::<T>() {
        for &o in &others {
            gemm_at::<T>(s, f, (o, x, 5), 1); // n
            gemm_at::<T>(s, f, (x, o, 5), 2); // m
            gemm_at::<T>(s, f, (o, 5, x), 3); // k
        }
    }
}

#[test]
fn gemm_tails() {
    let Some(s) = simd() else { return };
    let mut f = Failures::new(11);
    each_dtype!(gemm_in(&s, &mut f));
    f.assert_none("gemm");
}

/// Sizes either side of the usual cache-block and panel boundaries (64, 128, 256 along `k`;
/// 4 to 6 vector widths along `m` and `n`), in f32 and f64.
#[test]
#[cfg_attr(miri, ignore = "large products: minutes under Miri")]
fn gemm_block_edges() {
    let Some(s) = simd() else { return };
    let mut f = Failures::new(1);
    let w = F32_LANES;
    for k in [63, 64, 65, 127, 129, 255, 256, 257] {
        gemm_at::<f32>(&s, &mut f, (7, 2 * w + 3, k), 10);
        gemm_at::<f64>(&s, &mut f, (5, w + 3, k), 11);
    }
    for x in [4 * w - 1, 4 * w + 1, 6 * w + 5] {
        gemm_at::<f32>(&s, &mut f, (x, x + 2, 17), 12);
        gemm_at::<f16>(&s, &mut f, (x + 1, x, 9), 13);
    }
    f.assert_none("gemm block edges");
}
