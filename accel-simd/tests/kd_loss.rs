//! The vectorised distillation kernels (`kd_loss`, `kd_loss_sparse`, `cross_entropy`) against the
//! Reference backend: at f64 and at the same dtype (f32, f16, bf16), every divergence, reduction
//! and mask, row lengths 0..=3*LANES+1 and primes (tails), `-inf` / `+inf` / NaN logits, masked
//! NaN rows, T = 0.05 in f16, strided layouts (the portable fallback), and bad input answering
//! the same `Err`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_arguments,
    clippy::needless_range_loop,
    clippy::type_complexity,
    clippy::vec_init_then_push,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::portable::kd_loss::{CeConfig, Divergence, KdConfig, KdReduction};
use seqcore::{
    Backend, DType, Element, Error, Layout, Reference, Scalar, View, ViewMut, bf16, f16,
};

/// Host backends: views straight over slices.
trait Host: Backend {
    fn v<T: Scalar>(m: &[T], l: Layout) -> Result<View<'_, Self, T>, Error>;
    fn vm<T: Scalar>(m: &mut [T], l: Layout) -> Result<ViewMut<'_, Self, T>, Error>;
}

macro_rules! host {
    ($b:ty) => {
        impl Host for $b {
            fn v<T: Scalar>(m: &[T], l: Layout) -> Result<View<'_, Self, T>, Error> {
                View::new(m, l)
            }
            fn vm<T: Scalar>(m: &mut [T], l: Layout) -> Result<ViewMut<'_, Self, T>, Error> {
                ViewMut::new(m, l)
            }
        }
    };
}
host!(Simd);
host!(Reference);

fn simd() -> Option<Simd> {
    Simd::new().ok()
}

fn to<T: Element>(x: &[f64]) -> Vec<T> {
    x.iter().map(|&v| T::from_f64(v)).collect()
}

fn back<T: Element>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

/// Unit roundoff of the accumulation type and of the storage type.
fn units<T: Element>() -> (f64, f64) {
    match T::DTYPE {
        DType::F64 => (f64::EPSILON / 2.0, f64::EPSILON / 2.0),
        DType::F32 => (f64::from(f32::EPSILON) / 2.0, f64::from(f32::EPSILON) / 2.0),
        DType::F16 => (f64::from(f32::EPSILON) / 2.0, 2f64.powi(-11)),
        _ => (f64::from(f32::EPSILON) / 2.0, 2f64.powi(-8)),
    }
}

/// The outputs of one call: loss elements and gradient (f64), or the error.
type Out = Result<(Vec<f64>, Vec<f64>), Error>;

#[derive(Clone, Debug)]
struct Kd {
    cfg: KdConfig,
    n: usize,
    v: usize,
    teacher: Vec<f64>,
    student: Vec<f64>,
    mask: Option<Vec<u8>>,
    grad: bool,
    /// Teacher stored transposed (`[v, n]` memory read as `[n, v]` with strides `(1, n)`).
    strided: bool,
}

fn loss_shape(cfg: &KdConfig, n: usize) -> Vec<usize> {
    if cfg.reduction == KdReduction::None {
        vec![n]
    } else {
        vec![]
    }
}

fn run_kd<B: Host, T: Element>(b: &B, c: &Kd) -> Out {
    let (n, v) = (c.n, c.v);
    let tmem: Vec<T> = if c.strided {
        let mut m = vec![T::from_f64(0.0); n * v];
        for i in 0..n {
            for j in 0..v {
                m[j * n + i] = T::from_f64(c.teacher[i * v + j]);
            }
        }
        m
    } else {
        to::<T>(&c.teacher)
    };
    let smem = to::<T>(&c.student);
    let tl = if c.strided {
        Layout::new(0, &[n, v], &[1, n.max(1)]).unwrap()
    } else {
        Layout::contiguous(&[n, v]).unwrap()
    };
    let ls = loss_shape(&c.cfg, n);
    let mut loss = vec![T::from_f64(7.0); ls.iter().product()];
    let mut grad = vec![T::from_f64(7.0); n * v];
    {
        let tv = B::v(&tmem[..], tl)?;
        let sv = B::v(&smem[..], Layout::contiguous(&[n, v])?)?;
        let mv = match &c.mask {
            Some(m) => Some(B::v(&m[..], Layout::contiguous(&[n])?)?),
            None => None,
        };
        let lv = B::vm(&mut loss[..], Layout::contiguous(&ls)?)?;
        let gv = if c.grad {
            Some(B::vm(&mut grad[..], Layout::contiguous(&[n, v])?)?)
        } else {
            None
        };
        b.kd_loss(&c.cfg, tv, sv, mv, lv, gv)?;
    }
    Ok((back(&loss), if c.grad { back(&grad) } else { vec![] }))
}

/// Largest scaled logit magnitude (finite ones) plus `ln v`: the `Z` of the error bound.
fn zmax(x: &[f64], scale: f64, v: usize) -> f64 {
    x.iter()
        .filter(|a| a.is_finite())
        .fold(0.0f64, |m, a| m.max((a * scale).abs()))
        + (v.max(1) as f64).ln()
}

/// Holds the simd result `got` against the exact result `exact` (the f64 reference on the same
/// rounded inputs), allowing twice the same-dtype reference's own error (`want - exact`) plus
/// `abs + rel |exact|` (the rule: within 2x the same-dtype reference's error); NaN and
/// infinities where the same-dtype reference has them.
fn close(what: &str, got: &[f64], want: &[f64], exact: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    assert_eq!(got.len(), exact.len(), "{what}: lengths");
    for (i, ((g, w), e)) in got.iter().zip(want).zip(exact).enumerate() {
        if w.is_nan() || g.is_nan() {
            assert!(w.is_nan() && g.is_nan(), "{what}[{i}]: got {g}, want {w}");
        } else if w.is_infinite() || g.is_infinite() {
            assert_eq!(g, w, "{what}[{i}]");
        } else {
            // Where the f64 result is not finite (its range differs), the same-dtype one is the
            // yardstick.
            let e = if e.is_finite() { e } else { w };
            let tol = 2.0 * (w - e).abs() + abs + rel * e.abs();
            assert!(
                (g - e).abs() <= tol,
                "{what}[{i}]: got {g}, same-dtype reference {w}, exact {e}: |diff| {} > {tol}",
                (g - e).abs()
            );
        }
    }
}

/// The inputs of a case rounded to `T`, as f64 (what every backend sees).
fn rounded<T: Element>(x: &[f64]) -> Vec<f64> {
    back(&to::<T>(x))
}

/// Simd against Reference for `c` in `T`: both computed from the same rounded inputs. Each
/// log-probability carries about `ua (v + Z)` of absolute error in either backend (different
/// summation orders, FMA, the exponential's few ULPs); a loss sums `v` such terms weighted by
/// probabilities (so `ua (v + Z) (1 + Z)` times the row factor), a gradient element
/// `q (g - G) c / T` inherits `(1 + Z)` of it; outputs round once to `T` (one unit of `T`
/// between two results that straddle a rounding boundary).
fn agree<T: Element>(c: &Kd) {
    let Some(s) = simd() else { return };
    let got = run_kd::<Simd, T>(&s, c);
    let want = run_kd::<Reference, T>(&Reference, c);
    let exact = run_kd::<Reference, f64>(
        &Reference,
        &Kd {
            teacher: rounded::<T>(&c.teacher),
            student: rounded::<T>(&c.student),
            ..c.clone()
        },
    )
    .expect("the f64 reference accepts what the same-dtype one does");
    let (got, want) = match (got, want) {
        (Ok(g), Ok(w)) => (g, w),
        (Err(g), Err(w)) => {
            assert_eq!(g, w, "same error");
            return;
        }
        (g, w) => panic!("simd {g:?} vs reference {w:?}"),
    };
    let (ua, ut) = units::<T>();
    let inv_t = 1.0 / c.cfg.temperature;
    let z = zmax(&c.teacher, inv_t, c.v).max(zmax(&c.student, inv_t, c.v));
    let t2 = if c.cfg.t_squared {
        c.cfg.temperature * c.cfg.temperature
    } else {
        1.0
    };
    let rows = c.n.max(1) as f64;
    let err = 16.0 * ua * (c.v as f64 + z + 8.0) * (1.0 + z);
    let lscale = t2
        * c.cfg.scale.abs()
        * if c.cfg.reduction == KdReduction::Mean {
            1.0
        } else {
            rows
        };
    close("loss", &got.0, &want.0, &exact.0, err * lscale, 2.0 * ut);
    let gscale = t2 * c.cfg.scale.abs() * inv_t;
    close("grad", &got.1, &want.1, &exact.1, err * gscale, 2.0 * ut);
}

fn divergence() -> impl Strategy<Value = Divergence> {
    prop_oneof![
        Just(Divergence::ForwardKl),
        Just(Divergence::ReverseKl),
        prop_oneof![Just(0.0), Just(1.0), Just(0.5), 0.0..=1.0f64]
            .prop_map(|beta| Divergence::Jsd { beta }),
        Just(Divergence::TotalVariation),
        prop_oneof![Just(0.0), Just(0.1), 0.0..=1.0f64]
            .prop_map(|alpha| Divergence::SkewForwardKl { alpha }),
        prop_oneof![Just(0.0), Just(0.1), 0.0..=1.0f64]
            .prop_map(|alpha| Divergence::SkewReverseKl { alpha }),
    ]
}

fn reduction() -> impl Strategy<Value = KdReduction> {
    prop_oneof![
        Just(KdReduction::Mean),
        Just(KdReduction::Sum),
        Just(KdReduction::None)
    ]
}

/// A logit: mostly moderate, sometimes large, sometimes `-inf`.
fn logit() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -8.0..8.0f64,
        1 => -60.0..60.0f64,
        1 => Just(f64::NEG_INFINITY),
    ]
}

fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![
        0..=3 * F32_LANES + 1,
        Just(37usize),
        Just(101usize),
        Just(1031usize)
    ]
}

fn kd_case() -> impl Strategy<Value = Kd> {
    (
        0usize..5,
        lengths(),
        divergence(),
        prop_oneof![Just(0.05), Just(0.5), Just(1.0), Just(2.0), 0.3..7.0f64],
        reduction(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(n, v, d, t, r, t2, masked, strided)| {
            (
                proptest::collection::vec(logit(), n * v),
                proptest::collection::vec(logit(), n * v),
                proptest::collection::vec(0u8..3, n),
                Just((n, v, d, t, r, t2, masked, strided)),
                any::<bool>(),
            )
        })
        .prop_map(
            |(teacher, student, mask, (n, v, d, t, r, t2, masked, strided), grad)| Kd {
                cfg: KdConfig::new(d, t).with_reduction(r).with_t_squared(t2),
                n,
                v,
                teacher,
                student,
                mask: masked.then_some(mask),
                grad,
                strided,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn kd_matches_reference_f64(c in kd_case()) {
        agree::<f64>(&c);
    }

    #[test]
    fn kd_matches_reference_f32(c in kd_case()) {
        agree::<f32>(&c);
    }

    #[test]
    fn kd_matches_reference_f16_bf16(c in kd_case()) {
        agree::<f16>(&c);
        agree::<bf16>(&c);
    }
}

/// A deterministic logit in [-10, 10): quadratic in `i`, so rows with different salts are not
/// shifts of each other (their distributions differ).
fn pseudo(i: usize, salt: usize) -> f64 {
    (((i * i * (31 + salt) + i * 7919 + salt * 104_729) % 2003) as f64) / 100.0 - 10.0
}

/// Every row length from 0 to 3 vector widths + 1, every divergence, both with a gradient.
#[test]
fn every_tail_length() {
    let divs = [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::Jsd { beta: 0.3 },
        Divergence::TotalVariation,
        Divergence::SkewForwardKl { alpha: 0.2 },
        Divergence::SkewReverseKl { alpha: 0.2 },
    ];
    for v in 0..=3 * F32_LANES + 1 {
        for d in divs {
            let n = 3;
            let c = Kd {
                cfg: KdConfig::new(d, 1.5).with_reduction(KdReduction::None),
                n,
                v,
                teacher: (0..n * v).map(|i| pseudo(i, 1)).collect(),
                student: (0..n * v).map(|i| pseudo(i, 2)).collect(),
                mask: None,
                grad: true,
                strided: false,
            };
            agree::<f64>(&c);
            agree::<f32>(&c);
            agree::<f16>(&c);
        }
    }
}

/// Masked rows are not read: NaN there changes nothing, the rows get loss 0 and gradient 0.
#[test]
fn masked_rows_with_nan_are_not_read() {
    let Some(s) = simd() else { return };
    let (n, v) = (4, 2 * F32_LANES + 3);
    let mut teacher: Vec<f64> = (0..n * v).map(|i| pseudo(i, 3)).collect();
    let mut student: Vec<f64> = (0..n * v).map(|i| pseudo(i, 4)).collect();
    // Row 1: one NaN in the teacher; row 3: all NaN in the student (a kept all-NaN row has no
    // finite logit and, as all -inf, contributes nothing).
    teacher[v + 2] = f64::NAN;
    for j in 0..v {
        student[3 * v + j] = f64::NAN;
    }
    for d in [Divergence::ForwardKl, Divergence::Jsd { beta: 0.5 }] {
        for r in [KdReduction::Mean, KdReduction::None] {
            let c = Kd {
                cfg: KdConfig::new(d, 2.0).with_reduction(r),
                n,
                v,
                teacher: teacher.clone(),
                student: student.clone(),
                mask: Some(vec![1, 0, 1, 0]),
                grad: true,
                strided: false,
            };
            let (l, g) = run_kd::<Simd, f32>(&s, &c).unwrap();
            assert!(l.iter().all(|x| x.is_finite()), "{l:?}");
            assert!(g[v..2 * v].iter().chain(&g[3 * v..]).all(|&x| x == 0.0));
            assert!(g[..v].iter().all(|x| x.is_finite()));
            agree::<f32>(&c);
            agree::<f64>(&c);
        }
    }
    // The same NaN rows kept: NaN where the reference has NaN.
    let c = Kd {
        cfg: KdConfig::new(Divergence::ForwardKl, 2.0).with_reduction(KdReduction::None),
        n,
        v,
        teacher,
        student,
        mask: None,
        grad: true,
        strided: false,
    };
    let (l, _) = run_kd::<Simd, f32>(&s, &c).unwrap();
    assert!(l[1].is_nan() && l[3] == 0.0 && l[0].is_finite(), "{l:?}");
    agree::<f32>(&c);
}

/// Rows of `-inf` (no distribution), `+inf` logits and a single NaN follow the reference.
#[test]
fn special_logits_follow_the_reference() {
    let v = F32_LANES + 5;
    let n = 6;
    let mut teacher: Vec<f64> = (0..n * v).map(|i| pseudo(i, 5)).collect();
    let mut student: Vec<f64> = (0..n * v).map(|i| pseudo(i, 6)).collect();
    for j in 0..v {
        teacher[j] = f64::NEG_INFINITY; // row 0: teacher has no distribution
    }
    teacher[v + 3] = f64::INFINITY; // row 1: one +inf
    student[2 * v + 1] = f64::INFINITY; // row 2: +inf twice
    student[2 * v + 7] = f64::INFINITY;
    teacher[3 * v + v - 1] = f64::NAN; // row 3: a NaN in the tail lanes
    student[4 * v] = f64::NAN; // row 4: NaN first
    for j in 0..v {
        student[5 * v + j] = if j % 2 == 0 {
            f64::NEG_INFINITY
        } else {
            f64::NAN
        };
    }
    for d in [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::Jsd { beta: 0.5 },
        Divergence::TotalVariation,
        Divergence::SkewReverseKl { alpha: 0.3 },
    ] {
        let c = Kd {
            cfg: KdConfig::new(d, 1.0).with_reduction(KdReduction::None),
            n,
            v,
            teacher: teacher.clone(),
            student: student.clone(),
            mask: None,
            grad: true,
            strided: false,
        };
        agree::<f64>(&c);
        agree::<f32>(&c);
    }
}

/// T = 0.05 in f16: logits scaled by 20 in f32, rounded once to f16; the simd result is as close
/// to the exact (f64) loss as the same-dtype reference is, within f16's rounding.
#[test]
fn small_temperature_in_f16() {
    let Some(s) = simd() else { return };
    let (n, v) = (3, 3 * F32_LANES + 1);
    let teacher: Vec<f64> = (0..n * v).map(|i| pseudo(i, 7) / 10.0).collect();
    let student: Vec<f64> = (0..n * v).map(|i| pseudo(i, 8) / 10.0).collect();
    // Inputs representable in f16, so every backend sees the same numbers.
    let teacher = back(&to::<f16>(&teacher));
    let student = back(&to::<f16>(&student));
    for d in [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::Jsd { beta: 0.5 },
    ] {
        let c = Kd {
            cfg: KdConfig::new(d, 0.05).with_reduction(KdReduction::None),
            n,
            v,
            teacher: teacher.clone(),
            student: student.clone(),
            mask: None,
            grad: true,
            strided: false,
        };
        agree::<f16>(&c);
        let (l16, g16) = run_kd::<Simd, f16>(&s, &c).unwrap();
        let (l64, g64) = run_kd::<Reference, f64>(&Reference, &c).unwrap();
        let (r16, rg16) = run_kd::<Reference, f16>(&Reference, &c).unwrap();
        for (i, ((a, b), r)) in l16.iter().zip(&l64).zip(&r16).enumerate() {
            assert!(a.is_finite(), "loss {i} {a}");
            // f16 rounding of the result (2^-11 relative) plus the reference's own error.
            let ref_err = (r - b).abs();
            assert!(
                (a - b).abs() <= 2.0 * ref_err + 2f64.powi(-10) * b.abs() + 1e-3,
                "loss {i}: {a} vs {b}"
            );
        }
        let gmax = g64.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for (i, ((a, b), r)) in g16.iter().zip(&g64).zip(&rg16).enumerate() {
            let ref_err = (r - b).abs();
            assert!(
                (a - b).abs() <= 2.0 * ref_err + 2f64.powi(-10) * gmax,
                "grad {i}: {a} vs {b}"
            );
        }
    }
}

/// Logits far apart (up to 3e4, f16's range) at T = 0.05: each row's largest logit has
/// probability exactly 1 in f32, so `x / T - z` must be exactly 0 there. A fused `x * (1/T) - z`
/// leaves the rounding error of the maximum (up to 0.03 at 6e5) in it, `p = 0.99`, and the loss
/// 0.8% off: the `kd_loss/*/T0.05/f32` vectors at x86-64-v3 caught that. Every row length up to
/// two vectors and a tail; the loss and gradient within the vectors' tolerance of the f64
/// reference.
#[test]
fn huge_logits_small_temperature_in_f32() {
    let Some(s) = simd() else { return };
    for v in 1..=2 * F32_LANES + 1 {
        let n = 2;
        let big = |i: usize, salt: usize| f64::from((pseudo(i, salt) * 2987.123) as f32);
        let teacher: Vec<f64> = (0..n * v).map(|i| big(i, 11)).collect();
        let student: Vec<f64> = (0..n * v).map(|i| big(i, 12)).collect();
        for d in [
            Divergence::ForwardKl,
            Divergence::ReverseKl,
            Divergence::Jsd { beta: 0.5 },
            Divergence::SkewForwardKl { alpha: 0.1 },
            Divergence::SkewReverseKl { alpha: 0.1 },
        ] {
            let c = Kd {
                cfg: KdConfig::new(d, 0.05).with_reduction(KdReduction::None),
                n,
                v,
                teacher: teacher.clone(),
                student: student.clone(),
                mask: None,
                grad: true,
                strided: false,
            };
            let (l32, g32) = run_kd::<Simd, f32>(&s, &c).unwrap();
            let (l64, g64) = run_kd::<Reference, f64>(&Reference, &c).unwrap();
            for (i, (a, b)) in l32.iter().zip(&l64).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                    "{d:?} v={v} loss {i}: {a} vs {b}"
                );
            }
            for (i, (a, b)) in g32.iter().zip(&g64).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                    "{d:?} v={v} grad {i}: {a} vs {b}"
                );
            }
        }
    }
}

/// Bad input: the same `Err` from both backends, before anything is written.
#[test]
fn bad_input_same_error() {
    let Some(s) = simd() else { return };
    let base = Kd {
        cfg: KdConfig::new(Divergence::ForwardKl, 1.0),
        n: 2,
        v: 9,
        teacher: (0..18).map(|i| pseudo(i, 9)).collect(),
        student: (0..18).map(|i| pseudo(i, 10)).collect(),
        mask: None,
        grad: true,
        strided: false,
    };
    let cfgs = [
        KdConfig::new(Divergence::ForwardKl, 0.0),
        KdConfig::new(Divergence::ForwardKl, -1.0),
        KdConfig::new(Divergence::ForwardKl, f64::NAN),
        KdConfig::new(Divergence::ForwardKl, f64::INFINITY),
        KdConfig::new(Divergence::ForwardKl, 1e-300),
        KdConfig::new(Divergence::Jsd { beta: 1.5 }, 1.0),
        KdConfig::new(Divergence::Jsd { beta: f64::NAN }, 1.0),
        KdConfig::new(Divergence::SkewForwardKl { alpha: -0.1 }, 1.0),
        KdConfig::new(Divergence::SkewReverseKl { alpha: 2.0 }, 1.0),
        KdConfig::new(Divergence::ForwardKl, 1.0).with_scale(f64::INFINITY),
        KdConfig::new(Divergence::ForwardKl, 1.0).with_scale(1e300),
    ];
    for cfg in cfgs {
        for dt in 0..2 {
            let c = Kd {
                cfg,
                ..base.clone()
            };
            let (a, b) = if dt == 0 {
                (
                    run_kd::<Simd, f32>(&s, &c),
                    run_kd::<Reference, f32>(&Reference, &c),
                )
            } else {
                (
                    run_kd::<Simd, f64>(&s, &c),
                    run_kd::<Reference, f64>(&Reference, &c),
                )
            };
            // Every one is bad in f32; a tiny temperature or a huge scale is fine in f64.
            assert!(dt == 1 || a.is_err(), "{cfg:?}");
            assert_eq!(a.is_err(), b.is_err(), "{cfg:?}");
            if a.is_err() {
                assert_eq!(a, b, "{cfg:?}");
            }
        }
    }
    // Shapes: student, mask, loss, grad, rank 0.
    let t = to::<f32>(&base.teacher);
    let m = [1u8, 1, 1];
    let shapes: Vec<(
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        KdReduction,
    )> = vec![
        (
            vec![2, 9],
            vec![9, 2],
            vec![2],
            vec![],
            vec![2, 9],
            KdReduction::Mean,
        ),
        (
            vec![2, 9],
            vec![2, 9],
            vec![3],
            vec![],
            vec![2, 9],
            KdReduction::Mean,
        ),
        (
            vec![2, 9],
            vec![2, 9],
            vec![2],
            vec![2],
            vec![2, 9],
            KdReduction::Mean,
        ),
        (
            vec![2, 9],
            vec![2, 9],
            vec![2],
            vec![],
            vec![2, 9],
            KdReduction::None,
        ),
        (
            vec![2, 9],
            vec![2, 9],
            vec![2],
            vec![],
            vec![18],
            KdReduction::Mean,
        ),
        (vec![], vec![], vec![], vec![], vec![], KdReduction::Mean),
    ];
    for (ts, ss, ms, ls, gs, r) in shapes {
        let cfg = KdConfig::new(Divergence::Jsd { beta: 0.5 }, 1.0).with_reduction(r);
        let mut outs = Vec::new();
        for which in 0..2 {
            let mut loss = [0f32; 2];
            let mut grad = [0f32; 18];
            let mk = |sh: &[usize]| Layout::contiguous(sh).unwrap();
            let res = if which == 0 {
                s.kd_loss(
                    &cfg,
                    View::new(&t[..], mk(&ts)).unwrap(),
                    View::new(&t[..], mk(&ss)).unwrap(),
                    Some(View::new(&m[..], mk(&ms)).unwrap()),
                    ViewMut::new(&mut loss[..], mk(&ls)).unwrap(),
                    Some(ViewMut::new(&mut grad[..], mk(&gs)).unwrap()),
                )
            } else {
                Reference.kd_loss(
                    &cfg,
                    View::new(&t[..], mk(&ts)).unwrap(),
                    View::new(&t[..], mk(&ss)).unwrap(),
                    Some(View::new(&m[..], mk(&ms)).unwrap()),
                    ViewMut::new(&mut loss[..], mk(&ls)).unwrap(),
                    Some(ViewMut::new(&mut grad[..], mk(&gs)).unwrap()),
                )
            };
            assert!(res.is_err(), "{ts:?} {ss:?} {ms:?} {ls:?} {gs:?}");
            assert!(
                grad.iter().all(|&x| x == 0.0) && loss == [0.0; 2],
                "wrote before failing"
            );
            outs.push(res);
        }
        assert_eq!(outs[0], outs[1]);
    }
}

// ---------------------------------------------------------------------------------------------
// Sparse teacher.

#[derive(Clone, Debug)]
struct Sparse {
    cfg: KdConfig,
    n: usize,
    v: usize,
    k: usize,
    values: Vec<f64>,
    indices: Vec<u32>,
    tail: Option<Vec<f64>>,
    student: Vec<f64>,
    mask: Option<Vec<u8>>,
}

fn run_sparse<B: Host, T: Element>(b: &B, c: &Sparse) -> Out {
    let (n, v, k) = (c.n, c.v, c.k);
    let vals = to::<T>(&c.values);
    let st = to::<T>(&c.student);
    let tl = c.tail.as_ref().map(|t| to::<T>(t));
    let ls = loss_shape(&c.cfg, n);
    let mut loss = vec![T::from_f64(7.0); ls.iter().product()];
    let mut grad = vec![T::from_f64(7.0); n * v];
    {
        let tv = match &tl {
            Some(t) => Some(B::v(&t[..], Layout::contiguous(&[n])?)?),
            None => None,
        };
        let mv = match &c.mask {
            Some(m) => Some(B::v(&m[..], Layout::contiguous(&[n])?)?),
            None => None,
        };
        b.kd_loss_sparse(
            &c.cfg,
            B::v(&vals[..], Layout::contiguous(&[n, k])?)?,
            B::v(&c.indices[..], Layout::contiguous(&[n, k])?)?,
            tv,
            B::v(&st[..], Layout::contiguous(&[n, v])?)?,
            mv,
            B::vm(&mut loss[..], Layout::contiguous(&ls)?)?,
            Some(B::vm(&mut grad[..], Layout::contiguous(&[n, v])?)?),
        )?;
    }
    Ok((back(&loss), back(&grad)))
}

fn sparse_case() -> impl Strategy<Value = Sparse> {
    (
        0usize..4,
        1usize..=3 * F32_LANES + 1,
        divergence(),
        prop_oneof![Just(0.05), Just(1.0), 0.3..5.0f64],
        reduction(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(n, v, d, t, r, with_tail, masked)| {
            (
                Just((n, v, d, t, r, with_tail, masked)),
                1..=v,
                proptest::collection::vec(-8.0..8.0f64, n * v),
                proptest::collection::vec(0.0..=1.0f64, n),
                proptest::collection::vec(0u8..3, n),
                any::<u64>(),
            )
        })
        .prop_map(
            |((n, v, d, t, r, with_tail, masked), k, student, tail, mask, seed)| {
                // Distinct indices per row: a rotation of 0..v.
                let mut indices = Vec::new();
                let mut values = Vec::new();
                for i in 0..n {
                    let start = (seed as usize).wrapping_add(i * 31) % v;
                    for a in 0..k {
                        indices.push(((start + a * 7) % v) as u32);
                        values.push(pseudo(i * k + a, 11) / 2.0);
                    }
                }
                // A rotation by 7 repeats when gcd(7, v) > 1: fall back to consecutive positions.
                if v % 7 == 0 {
                    indices = (0..n)
                        .flat_map(|i| (0..k).map(move |a| ((i + a) % v) as u32))
                        .collect();
                }
                Sparse {
                    cfg: KdConfig::new(d, t).with_reduction(r),
                    n,
                    v,
                    k,
                    values,
                    indices,
                    tail: with_tail.then_some(tail),
                    student,
                    mask: masked.then_some(mask),
                }
            },
        )
}

fn agree_sparse<T: Element>(c: &Sparse) {
    let Some(s) = simd() else { return };
    let got = run_sparse::<Simd, T>(&s, c);
    let want = run_sparse::<Reference, T>(&Reference, c);
    let exact = run_sparse::<Reference, f64>(
        &Reference,
        &Sparse {
            values: rounded::<T>(&c.values),
            student: rounded::<T>(&c.student),
            tail: c.tail.as_ref().map(|t| rounded::<T>(t)),
            ..c.clone()
        },
    )
    .expect("the f64 reference accepts what the same-dtype one does");
    let (got, want) = match (got, want) {
        (Ok(g), Ok(w)) => (g, w),
        (Err(g), Err(w)) => {
            assert_eq!(g, w, "same error");
            return;
        }
        (g, w) => panic!("simd {g:?} vs reference {w:?}"),
    };
    let (ua, ut) = units::<T>();
    let inv_t = 1.0 / c.cfg.temperature;
    let z = zmax(&c.student, inv_t, c.v).max(zmax(&c.values, inv_t, c.v));
    let t2 = c.cfg.temperature * c.cfg.temperature;
    // The student's tail mass `1 - sum_k q` cancels: its relative error, and that of every
    // quantity derived from it, is amplified by `1 / q_tail` (the problem's conditioning).
    let mut amp = 1.0f64;
    let st = rounded::<T>(&c.student);
    for i in 0..c.n {
        let row = &st[i * c.v..(i + 1) * c.v];
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x * inv_t));
        let sum: f64 = row.iter().map(|&x| (x * inv_t - m).exp()).sum();
        let qk: f64 = c.indices[i * c.k..(i + 1) * c.k]
            .iter()
            .map(|&j| (row[j as usize] * inv_t - m).exp() / sum)
            .sum();
        if c.k < c.v && qk < 1.0 {
            amp = amp.max(1.0 / (1.0 - qk));
        }
    }
    let err = 16.0 * ua * (c.v as f64 + z + 8.0) * (1.0 + z) * amp;
    let rows = c.n.max(1) as f64;
    // Reverse-KL-like divergences can be +inf on a tail with no teacher mass: compared exactly.
    let lscale = t2
        * if c.cfg.reduction == KdReduction::Mean {
            1.0
        } else {
            rows
        };
    close("loss", &got.0, &want.0, &exact.0, err * lscale, 2.0 * ut);
    close(
        "grad",
        &got.1,
        &want.1,
        &exact.1,
        err * t2 * inv_t,
        2.0 * ut,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn sparse_matches_reference(c in sparse_case()) {
        agree_sparse::<f64>(&c);
        agree_sparse::<f32>(&c);
        agree_sparse::<f16>(&c);
    }
}

#[test]
fn sparse_bad_input_same_error() {
    let Some(s) = simd() else { return };
    let base = Sparse {
        cfg: KdConfig::new(Divergence::ForwardKl, 1.0),
        n: 2,
        v: 10,
        k: 3,
        values: (0..6).map(|i| pseudo(i, 12)).collect(),
        indices: vec![0, 4, 9, 1, 2, 3],
        tail: Some(vec![0.1, 0.2]),
        student: (0..20).map(|i| pseudo(i, 13)).collect(),
        mask: None,
    };
    let mut cases = Vec::new();
    cases.push(Sparse {
        indices: vec![0, 4, 10, 1, 2, 3],
        ..base.clone()
    });
    cases.push(Sparse {
        indices: vec![0, 4, 4, 1, 2, 3],
        ..base.clone()
    });
    cases.push(Sparse {
        tail: Some(vec![0.1, 1.5]),
        ..base.clone()
    });
    cases.push(Sparse {
        tail: Some(vec![-0.1, 0.5]),
        ..base.clone()
    });
    cases.push(Sparse {
        cfg: KdConfig::new(Divergence::ForwardKl, 0.0),
        ..base.clone()
    });
    cases.push(Sparse {
        k: 0,
        values: vec![],
        indices: vec![],
        ..base.clone()
    });
    cases.push(Sparse {
        v: 2,
        student: vec![0.0; 4],
        ..base.clone()
    });
    // A bad index in a masked row is not checked (the reference skips it too).
    cases.push(Sparse {
        indices: vec![0, 4, 10, 1, 2, 3],
        mask: Some(vec![0, 1]),
        ..base.clone()
    });
    for c in cases {
        let a = run_sparse::<Simd, f32>(&s, &c);
        let b = run_sparse::<Reference, f32>(&Reference, &c);
        assert_eq!(a.is_err(), b.is_err(), "{c:?}");
        if a.is_err() {
            assert_eq!(a, b, "{c:?}");
        }
    }
    agree_sparse::<f32>(&base);
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy.

#[derive(Clone, Debug)]
struct Ce {
    cfg: CeConfig,
    n: usize,
    v: usize,
    logits: Vec<f64>,
    targets: Vec<i32>,
    grad: bool,
}

fn run_ce<B: Host, T: Element>(b: &B, c: &Ce) -> Out {
    let (n, v) = (c.n, c.v);
    let x = to::<T>(&c.logits);
    let ls: Vec<usize> = if c.cfg.reduction == KdReduction::None {
        vec![n]
    } else {
        vec![]
    };
    let mut loss = vec![T::from_f64(7.0); ls.iter().product()];
    let mut grad = vec![T::from_f64(7.0); n * v];
    {
        let gv = if c.grad {
            Some(B::vm(&mut grad[..], Layout::contiguous(&[n, v])?)?)
        } else {
            None
        };
        b.cross_entropy(
            &c.cfg,
            B::v(&x[..], Layout::contiguous(&[n, v])?)?,
            B::v(&c.targets[..], Layout::contiguous(&[n])?)?,
            B::vm(&mut loss[..], Layout::contiguous(&ls)?)?,
            gv,
        )?;
    }
    Ok((back(&loss), if c.grad { back(&grad) } else { vec![] }))
}

fn ce_case() -> impl Strategy<Value = Ce> {
    (
        0usize..5,
        1usize..=3 * F32_LANES + 1,
        prop_oneof![Just(0.0), Just(0.1), 0.0..=1.0f64],
        reduction(),
        any::<bool>(),
    )
        .prop_flat_map(|(n, v, eps, r, grad)| {
            (
                Just((n, v, eps, r, grad)),
                proptest::collection::vec(logit(), n * v),
                proptest::collection::vec(prop_oneof![3 => 0..v as i32, 1 => Just(-100)], n),
            )
        })
        .prop_map(|((n, v, eps, r, grad), logits, targets)| {
            let mut cfg = CeConfig::new(eps);
            cfg.reduction = r;
            Ce {
                cfg,
                n,
                v,
                logits,
                targets,
                grad,
            }
        })
}

fn agree_ce<T: Element>(c: &Ce) {
    let Some(s) = simd() else { return };
    let got = run_ce::<Simd, T>(&s, c);
    let want = run_ce::<Reference, T>(&Reference, c);
    let exact = run_ce::<Reference, f64>(
        &Reference,
        &Ce {
            logits: rounded::<T>(&c.logits),
            ..c.clone()
        },
    )
    .expect("the f64 reference accepts what the same-dtype one does");
    let (got, want) = match (got, want) {
        (Ok(g), Ok(w)) => (g, w),
        (Err(g), Err(w)) => {
            assert_eq!(g, w, "same error");
            return;
        }
        (g, w) => panic!("simd {g:?} vs reference {w:?}"),
    };
    let (ua, ut) = units::<T>();
    let z = zmax(&c.logits, 1.0, c.v);
    let err = 16.0 * ua * (c.v as f64 + z + 8.0) * (1.0 + z);
    let rows = c.n.max(1) as f64;
    close("loss", &got.0, &want.0, &exact.0, err * rows, 2.0 * ut);
    close("grad", &got.1, &want.1, &exact.1, err, 2.0 * ut);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn ce_matches_reference(c in ce_case()) {
        agree_ce::<f64>(&c);
        agree_ce::<f32>(&c);
        agree_ce::<bf16>(&c);
    }
}

#[test]
fn ce_bad_input_same_error() {
    let base = Ce {
        cfg: CeConfig::new(0.1),
        n: 2,
        v: 11,
        logits: (0..22).map(|i| pseudo(i, 14)).collect(),
        targets: vec![3, -100],
        grad: true,
    };
    let mut bad_scale = CeConfig::new(0.0);
    bad_scale.scale = f64::NAN;
    let cases = [
        Ce {
            cfg: CeConfig::new(1.5),
            ..base.clone()
        },
        Ce {
            cfg: CeConfig::new(-0.5),
            ..base.clone()
        },
        Ce {
            cfg: bad_scale,
            ..base.clone()
        },
        Ce {
            targets: vec![11, 0],
            ..base.clone()
        },
        Ce {
            targets: vec![-1, 0],
            ..base.clone()
        },
    ];
    let Some(s) = simd() else { return };
    for c in cases {
        let a = run_ce::<Simd, f32>(&s, &c);
        let b = run_ce::<Reference, f32>(&Reference, &c);
        assert!(a.is_err(), "{c:?}");
        assert_eq!(a, b, "{c:?}");
    }
    agree_ce::<f32>(&base);
}
