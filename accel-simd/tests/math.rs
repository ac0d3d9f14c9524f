//! Accuracy of the vectorised `exp` and `ln` (and `ln_1p`, `sigmoid`) against the exact result,
//! measured in ULPs of the result type.
//!
//! f32: the oracle is `libm`'s f64 function (error below 2^-52 relative, i.e. below 2^-29 f32
//! ULP), so the measured error is the distance to the exact value within 1e-8 ULP. The f32
//! sweeps visit every 2^k-th bit pattern of the finite domain (k = 6 here; the `#[ignore]`d
//! `exhaustive_*` tests visit every pattern in release builds).
//! f64: the oracle is `libm` itself (its `exp` and `log` are within 1 ULP of the exact value,
//! FreeBSD/musl), so the f64 tests assert a distance of at most 1 ULP to `libm` over 4e6
//! random inputs; the error against the exact value (mpmath, 50 digits, on a 2e5 sample) is in
//! the README.
//!
//! Bounds asserted: 1 ULP from the exact value for f32 `exp` and `ln` (so within 1 ULP of the
//! correctly rounded result), 2 ULP for `ln_1p`, 3 ULP for `sigmoid`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    clippy::float_cmp,
    missing_docs
)]

use seq_accel_simd::lanes::{F32_LANES, F32s, F64_LANES, F64s, Vector};
use seq_accel_simd::math;

/// Spacing of f32 at `r` (the ULP of the binade holding `r`, subnormal spacing below).
fn ulp32(r: f64) -> f64 {
    let a = r.abs().max(f64::from(f32::MIN_POSITIVE));
    let e = a.log2().floor();
    // Guard the floor of log2 at binade edges.
    let mut p = 2f64.powf(e);
    if p > a {
        p /= 2.0;
    }
    if p * 2.0 <= a {
        p *= 2.0;
    }
    p * 2f64.powi(-23)
}

fn ulp64(r: f64) -> f64 {
    let a = r.abs().max(f64::MIN_POSITIVE);
    let bits = a.to_bits() & 0x7ff0_0000_0000_0000;
    f64::from_bits(bits) * 2f64.powi(-52)
}

/// ULP error of `y` against the exact `r` (f64), for an f32 result: special values must match.
fn err32(y: f32, r: f64) -> f64 {
    let rf = r as f32;
    if r.is_nan() {
        return if y.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if rf.is_infinite() || !y.is_finite() {
        // Past the overflow threshold the correctly rounded result is inf.
        return if y == rf { 0.0 } else { f64::INFINITY };
    }
    (f64::from(y) - r).abs() / ulp32(r)
}

fn map32(xs: &[f32], f: impl Fn(F32s) -> F32s, out: &mut Vec<f32>) {
    out.clear();
    for c in xs.chunks(F32_LANES) {
        let v = f(F32s::load_or(c, 1.0));
        out.extend_from_slice(&v.lanes()[..c.len()]);
    }
}

/// Max ULP error of `f` over the f32 inputs `xs` against `oracle`; returns (max, argmax).
fn sweep32(
    xs: impl Iterator<Item = f32>,
    f: impl Fn(F32s) -> F32s + Copy,
    oracle: impl Fn(f64) -> f64,
) -> (f64, f32) {
    let mut worst = (0.0, 0.0f32);
    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    let mut flush = |buf: &mut Vec<f32>, worst: &mut (f64, f32)| {
        map32(buf, f, &mut out);
        for (&x, &y) in buf.iter().zip(&out) {
            let e = err32(y, oracle(f64::from(x)));
            if e > worst.0 || e.is_nan() {
                *worst = (e, x);
            }
        }
        buf.clear();
    };
    for x in xs {
        buf.push(x);
        if buf.len() == 4096 {
            flush(&mut buf, &mut worst);
        }
    }
    flush(&mut buf, &mut worst);
    worst
}

/// Every `step`-th f32 bit pattern between `lo` and `hi` (both finite, same sign or spanning 0).
fn patterns(lo: f32, hi: f32, step: u32) -> impl Iterator<Item = f32> {
    // Monotone integer image of the f32 order.
    let key = |x: f32| -> i64 {
        let b = x.to_bits();
        if b >> 31 == 1 {
            -i64::from(b & 0x7fff_ffff)
        } else {
            i64::from(b)
        }
    };
    let unkey = |k: i64| -> f32 {
        if k < 0 {
            f32::from_bits((-k) as u32 | 0x8000_0000)
        } else {
            f32::from_bits(k as u32)
        }
    };
    (key(lo)..=key(hi))
        .step_by(step as usize)
        .map(unkey)
        .chain(core::iter::once(hi))
}

fn exp32(v: F32s) -> F32s {
    math::exp::<f32>(v)
}
fn ln32(v: F32s) -> F32s {
    math::ln::<f32>(v)
}

#[test]
fn exp_f32_special_values() {
    let xs = [
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        0.0,
        -0.0,
        89.0,
        88.8,
        1e30,
        -1e30,
        -104.0,
        -103.9,
        f32::MAX,
        f32::MIN,
    ];
    let mut out = Vec::new();
    map32(&xs, exp32, &mut out);
    assert_eq!(out[0], 0.0);
    assert_eq!(out[1], f32::INFINITY);
    assert!(out[2].is_nan());
    assert_eq!(out[3], 1.0);
    assert_eq!(out[4], 1.0);
    assert_eq!(out[5], f32::INFINITY);
    assert_eq!(out[6], f32::INFINITY);
    assert_eq!(out[7], f32::INFINITY);
    assert_eq!(out[8], 0.0);
    assert_eq!(out[9], 0.0);
    // exp(-103.9) = 8.1e-46 lies between 0 and the smallest subnormal 1.4e-45: rounds to it.
    assert_eq!(out[10], f32::from_bits(1));
    assert_eq!(out[11], f32::INFINITY);
    assert_eq!(out[12], 0.0);
}

#[test]
fn exp_f32_dense() {
    // The whole finite domain of exp (results from the smallest subnormal to f32::MAX), every
    // 64th pattern (~3.5e7 inputs), then the overflow/underflow edges pattern by pattern.
    let step = if cfg!(debug_assertions) { 4096 } else { 64 };
    let (e, x) = sweep32(patterns(-104.0, 89.0, step), exp32, libm::exp);
    println!("exp f32: max error {e:.4} ULP at {x:e}");
    assert!(e <= 1.0, "exp f32: {e} ULP at {x:e}");
    let (e2, x2) = sweep32(patterns(88.0, 89.0, 1), exp32, libm::exp);
    let (e3, x3) = sweep32(patterns(-104.0, -87.0, 7), exp32, libm::exp);
    println!("exp f32 edges: {e2:.4} ULP at {x2:e}, {e3:.4} ULP at {x3:e}");
    assert!(e2 <= 1.0 && e3 <= 1.0);
}

#[test]
#[ignore = "every f32 (~2.2e9 inputs): run with --release -- --ignored"]
fn exhaustive_exp_f32() {
    let (e, x) = sweep32(patterns(-104.0, 89.0, 1), exp32, libm::exp);
    println!("exp f32 exhaustive: max error {e:.4} ULP at {x:e}");
    assert!(e <= 1.0);
}

#[test]
fn ln_f32_special_values() {
    let xs = [
        0.0,
        -0.0,
        -1.0,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        1.0,
        f32::from_bits(1),
        f32::MAX,
        f32::MIN_POSITIVE,
        -f32::from_bits(1),
    ];
    let mut out = Vec::new();
    map32(&xs, ln32, &mut out);
    assert_eq!(out[0], f32::NEG_INFINITY);
    assert_eq!(out[1], f32::NEG_INFINITY);
    assert!(out[2].is_nan());
    assert!(out[3].is_nan());
    assert_eq!(out[4], f32::INFINITY);
    assert!(out[5].is_nan());
    assert_eq!(out[6], 0.0);
    assert_eq!(out[7], libm::log(f64::from(f32::from_bits(1))) as f32);
    assert_eq!(out[8], libm::log(f64::from(f32::MAX)) as f32);
    assert_eq!(out[9], libm::log(f64::from(f32::MIN_POSITIVE)) as f32);
    assert!(out[10].is_nan());
}

#[test]
fn ln_f32_dense() {
    // Every positive finite f32 (subnormals included), every 64th pattern.
    let step = if cfg!(debug_assertions) { 4096 } else { 64 };
    let (e, x) = sweep32(patterns(f32::from_bits(1), f32::MAX, step), ln32, libm::log);
    println!("ln f32: max error {e:.4} ULP at {x:e}");
    assert!(e <= 1.0, "ln f32: {e} ULP at {x:e}");
    // Around 1, where the result is small, pattern by pattern.
    let (e2, x2) = sweep32(patterns(0.9, 1.1, 3), ln32, libm::log);
    println!("ln f32 near 1: {e2:.4} ULP at {x2:e}");
    assert!(e2 <= 1.0);
}

#[test]
#[ignore = "every positive f32: run with --release -- --ignored"]
fn exhaustive_ln_f32() {
    let (e, x) = sweep32(patterns(f32::from_bits(1), f32::MAX, 1), ln32, libm::log);
    println!("ln f32 exhaustive: max error {e:.4} ULP at {x:e}");
    assert!(e <= 1.0);
}

#[test]
fn ln_1p_and_sigmoid_f32() {
    let step = if cfg!(debug_assertions) { 4096 } else { 64 };
    let (e, x) = sweep32(patterns(0.0, 1e30, step), math::ln_1p::<f32>, libm::log1p);
    println!("ln_1p f32: max error {e:.4} ULP at {x:e}");
    assert!(e <= 2.0, "ln_1p f32: {e} at {x:e}");
    let sig = |x: f64| 1.0 / (1.0 + libm::exp(-x));
    let (e, x) = sweep32(patterns(-104.0, 104.0, step), math::sigmoid::<f32>, sig);
    println!("sigmoid f32: max error {e:.4} ULP at {x:e}");
    assert!(e <= 3.0, "sigmoid f32: {e} at {x:e}");
}

#[test]
fn erfc_f32() {
    // Every 64th pattern of [-11, 11]; the error is measured where the result is normal.
    let step = if cfg!(debug_assertions) { 4096 } else { 64 };
    let (e, x) = sweep32(
        patterns(-11.0, 11.0, step).filter(|&x| x.abs() < 9.1),
        math::erfc::<f32>,
        libm::erfc,
    );
    println!("erfc f32: max error {e:.4} ULP at {x:e}");
    // Worst near |x| = 0.84, where `1 - erf x` cancels (0.77 / 0.23: a factor 3.3 on erf's error).
    assert!(e <= 8.5, "erfc f32: {e} at {x:e}");
    let mut out = Vec::new();
    map32(
        &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, 30.0, -30.0],
        math::erfc::<f32>,
        &mut out,
    );
    assert!(out[0].is_nan());
    assert_eq!(&out[1..], &[0.0, 2.0, 1.0, 0.0, 2.0]);
}

// ---- f64 ----

fn err64(y: f64, r: f64) -> f64 {
    if r.is_nan() {
        return if y.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if !r.is_finite() || !y.is_finite() {
        return if y == r { 0.0 } else { f64::INFINITY };
    }
    (y - r).abs() / ulp64(r)
}

fn sweep64(
    xs: impl Iterator<Item = f64>,
    f: impl Fn(F64s) -> F64s,
    oracle: impl Fn(f64) -> f64,
) -> (f64, f64) {
    let xs: Vec<f64> = xs.collect();
    let mut worst = (0.0, 0.0);
    for c in xs.chunks(F64_LANES) {
        let v = f(F64s::load_or(c, 1.0));
        for (&x, &y) in c.iter().zip(v.lanes()) {
            let e = err64(y, oracle(x));
            if e > worst.0 || e.is_nan() {
                worst = (e, x);
            }
        }
    }
    worst
}

/// A deterministic sample of `n` values uniform in `[lo, hi]`, plus the edges.
fn uniform(lo: f64, hi: f64, n: usize) -> impl Iterator<Item = f64> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(move |_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .chain([lo, hi])
}

#[test]
fn exp_f64() {
    let n = if cfg!(debug_assertions) {
        200_000
    } else {
        4_000_000
    };
    let (e, x) = sweep64(uniform(-745.2, 709.79, n), math::exp::<f64>, libm::exp);
    let (e2, x2) = sweep64(uniform(-1.0, 1.0, n / 4), math::exp::<f64>, libm::exp);
    println!("exp f64: max error {e:.4} ULP at {x:e}; on [-1, 1] {e2:.4} at {x2:e}");
    assert!(e <= 1.0 && e2 <= 1.0);
    let xs = [
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NAN,
        0.0,
        710.0,
        -746.0,
        -745.0,
    ];
    let mut out = Vec::new();
    for c in xs.chunks(F64_LANES) {
        out.extend_from_slice(&math::exp::<f64>(F64s::load_or(c, 0.0)).lanes()[..c.len()]);
    }
    assert_eq!(out[0], 0.0);
    assert_eq!(out[1], f64::INFINITY);
    assert!(out[2].is_nan());
    assert_eq!(out[3], 1.0);
    assert_eq!(out[4], f64::INFINITY);
    assert_eq!(out[5], 0.0);
    assert_eq!(out[6], libm::exp(-745.0));
}

#[test]
fn ln_f64() {
    let n = if cfg!(debug_assertions) {
        200_000
    } else {
        4_000_000
    };
    // Log-uniform over the positive doubles (subnormals included), and near 1.
    let (e, x) = sweep64(
        uniform(-1074.0, 1023.99, n).map(|t| 2f64.powf(t)),
        math::ln::<f64>,
        libm::log,
    );
    let (e2, x2) = sweep64(uniform(0.7, 1.5, n / 4), math::ln::<f64>, libm::log);
    println!("ln f64: max error {e:.4} ULP at {x:e}; on [0.7, 1.5] {e2:.4} at {x2:e}");
    assert!(e <= 1.0 && e2 <= 1.0);
    let xs = [0.0, -0.0, -1.0, f64::INFINITY, f64::NAN, 1.0, 5e-324];
    let mut out = Vec::new();
    for c in xs.chunks(F64_LANES) {
        out.extend_from_slice(&math::ln::<f64>(F64s::load_or(c, 1.0)).lanes()[..c.len()]);
    }
    assert_eq!(out[0], f64::NEG_INFINITY);
    assert_eq!(out[1], f64::NEG_INFINITY);
    assert!(out[2].is_nan());
    assert_eq!(out[3], f64::INFINITY);
    assert!(out[4].is_nan());
    assert_eq!(out[5], 0.0);
    assert!((out[6] - libm::log(5e-324)).abs() <= ulp64(out[6]));
}
