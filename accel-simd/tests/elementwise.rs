//! `unary`, `binary` and `cast` on the SIMD backend against the Reference: every unary map
//! exhaustively over all 65536 f16 inputs (and bf16), a dense f32 sweep, every length from 0 to
//! 3 vectors + 1, strided and broadcast layouts, and the same `Err` for the same bad input.
//!
//! Transcendental maps are held to the conformance bound against the f64 reference
//! (`conformance/src/tolerance.rs`: `floor + (2u + 4 ua k(x)) |b|`, NaN and infinities at the same
//! places); maps that are one IEEE operation in the accumulation type (`relu`, `abs`, `neg`,
//! `sqrt`, `recip`, `square`, `scale`, `add_scalar`), every binary map and every cast must equal
//! the Reference at the same element type bit for bit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::float_cmp,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::{
    Backend, Binary, DType, Element, Layout, Reference, Unary, View, ViewMut, bf16, f16,
};

fn simd() -> Option<Simd> {
    Simd::new().ok()
}

const ALL_UNARY: [Unary; 17] = [
    Unary::Exp,
    Unary::Log,
    Unary::Sigmoid,
    Unary::Silu,
    Unary::Gelu,
    Unary::GeluTanh,
    Unary::Softplus,
    Unary::Elu1,
    Unary::Tanh,
    Unary::Relu,
    Unary::Sqrt,
    Unary::Recip,
    Unary::Square,
    Unary::Abs,
    Unary::Neg,
    Unary::Scale(-1.7),
    Unary::AddScalar(0.3),
];

/// Maps that are one correctly rounded operation in the accumulation type.
fn one_op(op: Unary) -> bool {
    matches!(
        op,
        Unary::Relu
            | Unary::Abs
            | Unary::Neg
            | Unary::Sqrt
            | Unary::Recip
            | Unary::Square
            | Unary::Scale(_)
            | Unary::AddScalar(_)
    )
}

/// The backends under test, both with host-slice memory.
trait Host: Backend {
    fn run<T: Element>(&self, op: Unary, x: &[T]) -> Vec<T>;
}

macro_rules! host {
    ($b:ty) => {
        impl Host for $b {
            fn run<T: Element>(&self, op: Unary, x: &[T]) -> Vec<T> {
                let mut y = vec![T::default(); x.len()];
                self.unary(
                    op,
                    self.view(x, &[x.len()]).unwrap(),
                    self.view_mut(&mut y[..], &[x.len()]).unwrap(),
                )
                .unwrap();
                y
            }
        }
    };
}
host!(Simd);
host!(Reference);

fn unary_on<B: Host, T: Element>(b: &B, op: Unary, x: &[T]) -> Vec<T> {
    b.run(op, x)
}

fn unit_roundoff(d: DType) -> f64 {
    d.unit_roundoff()
}

/// The conformance bound of `unary` (tolerance.rs), per element.
fn unary_ok<T: Element>(op: Unary, x: f64, got: f64, want: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() {
        return got == want;
    }
    if !got.is_finite() {
        return false;
    }
    if got == want {
        return true;
    }
    let u = unit_roundoff(T::DTYPE);
    let ua = unit_roundoff(T::DTYPE.accumulator());
    let floor = match T::DTYPE {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 5.960_464_477_539_063e-8,
        _ => f64::from(f32::MIN_POSITIVE),
    };
    let k = match op {
        Unary::Gelu => 1.0 + x * x,
        Unary::GeluTanh => 1.0 + x * x + x.abs().powi(3) / 8.0,
        _ => 1.0,
    };
    let c = match op {
        Unary::AddScalar(c) => 2.0 * ua * c.abs(),
        _ => 0.0,
    };
    (got - want).abs() <= floor + c + (2.0 * u + 4.0 * ua * k) * want.abs()
}

/// Checks `simd` against the Reference on `xs`: bit-equal for one-operation maps, else within
/// the bound of the f64 reference rounded to `T`. Returns the worst error in units of the bound.
fn check_unary<T: Element>(s: &Simd, op: Unary, xs: &[T]) -> f64 {
    let got = unary_on(s, op, xs);
    let same = unary_on(&Reference, op, xs);
    let x64: Vec<f64> = xs.iter().map(|v| v.to_f64()).collect();
    let want64 = unary_on(&Reference, op, &x64);
    let mut worst = 0.0f64;
    for i in 0..xs.len() {
        let (g, w) = (got[i].to_f64(), T::from_f64(want64[i]).to_f64());
        if one_op(op) {
            assert!(
                got[i].to_f64().to_bits() == same[i].to_f64().to_bits()
                    || (g.is_nan() && same[i].to_f64().is_nan()),
                "{} {}: x = {:e}: simd {g:e}, reference {:e}",
                op.name(),
                T::DTYPE,
                x64[i],
                same[i].to_f64()
            );
        }
        assert!(
            unary_ok::<T>(op, x64[i], g, w),
            "{} {}: x = {:e}: simd {g:e}, f64 reference {w:e}",
            op.name(),
            T::DTYPE,
            x64[i]
        );
        let normal = match T::DTYPE {
            DType::F64 => f64::MIN_POSITIVE,
            DType::F16 => 6.103_515_625e-5,
            _ => f64::from(f32::MIN_POSITIVE),
        };
        if w.is_finite() && g != w && w.abs() >= normal {
            worst = worst.max((g - w).abs() / w.abs().max(f64::MIN_POSITIVE));
        }
    }
    worst
}

#[test]
fn every_unary_map_over_every_f16() {
    let Some(s) = simd() else { return };
    let xs: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    for op in ALL_UNARY {
        let w = check_unary(&s, op, &xs);
        println!("{} f16: worst relative error {w:.3e}", op.name());
    }
}

#[test]
fn every_unary_map_over_every_bf16() {
    let Some(s) = simd() else { return };
    let xs: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    for op in ALL_UNARY {
        check_unary(&s, op, &xs);
    }
}

#[test]
fn every_unary_map_dense_f32() {
    let Some(s) = simd() else { return };
    // Every 2^k-th f32 bit pattern, both signs: subnormals, the overflow edges, inf and NaN.
    let step = if cfg!(debug_assertions) {
        1 << 14
    } else {
        1 << 10
    };
    let xs: Vec<f32> = (0..=u32::MAX)
        .step_by(step)
        .map(f32::from_bits)
        .chain([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            88.72,
            -103.9,
            0.0,
            -0.0,
        ])
        .collect();
    for op in ALL_UNARY {
        let w = check_unary(&s, op, &xs);
        println!(
            "{} f32: worst relative error {w:.3e} ({:.2} u)",
            op.name(),
            w / f64::from(f32::EPSILON / 2.0)
        );
    }
}

#[test]
fn every_unary_map_f64() {
    let Some(s) = simd() else { return };
    let mut xs: Vec<f64> = vec![
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        0.0,
        -0.0,
        5e-324,
        -5e-324,
        709.7,
        -745.1,
        f64::MAX,
        f64::MIN,
        1e-300,
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..100_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Log-uniform magnitudes over [1e-8, 1e3], both signs, and raw bit patterns.
        let t = (state >> 11) as f64 / (1u64 << 53) as f64;
        let mag = 10f64.powf(-8.0 + 11.0 * t);
        xs.push(if state & 1 == 0 { mag } else { -mag });
        xs.push(f64::from_bits(state.rotate_left(17)));
    }
    for op in ALL_UNARY {
        let w = check_unary(&s, op, &xs);
        println!(
            "{} f64: worst relative error {w:.3e} ({:.2} u)",
            op.name(),
            w / (f64::EPSILON / 2.0)
        );
    }
}

#[test]
fn unary_tails_and_layouts() {
    let Some(s) = simd() else { return };
    for n in 0..=3 * F32_LANES + 1 {
        let xs: Vec<f32> = (0..n).map(|i| (i as f32 - 7.5) * 1.37).collect();
        let xd: Vec<f64> = xs.iter().map(|&v| f64::from(v)).collect();
        let xh: Vec<f16> = xs.iter().map(|&v| f16::from_f32(v)).collect();
        for op in ALL_UNARY {
            check_unary(&s, op, &xs);
            check_unary(&s, op, &xd);
            check_unary(&s, op, &xh);
        }
    }
    // A transposed (non-contiguous) input and an offset output take the fallback: same values.
    let x: Vec<f32> = (0..35).map(|i| (i as f32) * 0.25 - 3.0).collect();
    let xl = Layout::new(0, &[5, 7], &[1, 5]).unwrap();
    for op in ALL_UNARY {
        let mut a = [0f32; 40];
        let mut r = [0f32; 40];
        let yl = Layout::contiguous_at(3, &[5, 7]).unwrap();
        s.unary(
            op,
            View::new(&x[..], xl).unwrap(),
            ViewMut::new(&mut a[..], yl).unwrap(),
        )
        .unwrap();
        Reference
            .unary(
                op,
                View::new(&x[..], xl).unwrap(),
                ViewMut::new(&mut r[..], yl).unwrap(),
            )
            .unwrap();
        for (g, w) in a.iter().zip(&r) {
            assert!(unary_ok::<f32>(op, 0.0, f64::from(*g), f64::from(*w)));
        }
        assert_eq!(&a[..3], &[0.0; 3]);
        assert_eq!(&a[38..], &[0.0; 2]);
    }
}

#[test]
fn unary_errors_match() {
    let Some(s) = simd() else { return };
    let x = [1.0f32; 6];
    for op in [Unary::Scale(f64::NAN), Unary::AddScalar(1e300), Unary::Exp] {
        let mut a = [0f32; 5];
        let mut r = [0f32; 5];
        let es = s.unary(
            op,
            s.view(&x, &[6]).unwrap(),
            s.view_mut(&mut a, &[5]).unwrap(),
        );
        let er = Reference.unary(
            op,
            Reference.view(&x, &[6]).unwrap(),
            Reference.view_mut(&mut r, &[5]).unwrap(),
        );
        assert_eq!(format!("{es:?}"), format!("{er:?}"));
        assert!(es.is_err());
    }
}

// ---- binary ----

fn binary_both<T: Element>(
    s: &Simd,
    op: Binary,
    a: &[T],
    al: Layout,
    b: &[T],
    bl: Layout,
    shape: &[usize],
) {
    let n: usize = shape.iter().product();
    let mut g = vec![T::default(); n];
    let mut w = vec![T::default(); n];
    let rg = s.binary(
        op,
        View::new(a, al).unwrap(),
        View::new(b, bl).unwrap(),
        s.view_mut(&mut g[..], shape).unwrap(),
    );
    let rw = Reference.binary(
        op,
        View::new(a, al).unwrap(),
        View::new(b, bl).unwrap(),
        Reference.view_mut(&mut w[..], shape).unwrap(),
    );
    assert_eq!(format!("{rg:?}"), format!("{rw:?}"));
    for i in 0..n {
        let (x, y) = (g[i].to_f64(), w[i].to_f64());
        assert!(
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            "{} {}: [{i}] simd {x:e} reference {y:e}",
            op.name(),
            T::DTYPE
        );
    }
}

fn specials() -> Vec<f64> {
    vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e-40,
        -3e38,
        65504.0,
        70000.0,
        6e-8,
        2.5,
    ]
}

fn binary_all<T: Element>(s: &Simd, av: &[f64], bv: &[f64]) {
    let a: Vec<T> = av.iter().map(|&v| T::from_f64(v)).collect();
    let b: Vec<T> = bv.iter().map(|&v| T::from_f64(v)).collect();
    let n = a.len();
    let l = Layout::contiguous(&[n]).unwrap();
    for op in Binary::ALL {
        binary_both(s, op, &a, l, &b, l, &[n]);
    }
}

#[test]
fn binary_specials_every_pair() {
    let Some(s) = simd() else { return };
    let sp = specials();
    let a: Vec<f64> = sp.iter().flat_map(|&x| sp.iter().map(move |_| x)).collect();
    let b: Vec<f64> = sp.iter().flat_map(|_| sp.iter().copied()).collect();
    binary_all::<f32>(&s, &a, &b);
    binary_all::<f64>(&s, &a, &b);
    binary_all::<f16>(&s, &a, &b);
    binary_all::<bf16>(&s, &a, &b);
}

#[test]
fn binary_broadcast_rows_and_tails() {
    let Some(s) = simd() else { return };
    for n in 0..=3 * F32_LANES + 1 {
        let rows = 3;
        let a: Vec<f32> = (0..rows * n).map(|i| (i as f32) * 0.7 - 5.0).collect();
        let b: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 0.5)).collect();
        let al = Layout::contiguous(&[rows, n]).unwrap();
        // b broadcast over rows (stride 0), then a scalar broadcast over everything.
        let bl = Layout::new(0, &[rows, n], &[0, 1]).unwrap();
        let sl = Layout::new(0, &[rows, n], &[0, 0]).unwrap();
        let ah: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
        let bh: Vec<f16> = b.iter().map(|&v| f16::from_f32(v)).collect();
        for op in Binary::ALL {
            binary_both(&s, op, &a, al, &b, bl, &[rows, n]);
            binary_both(&s, op, &b, bl, &a, al, &[rows, n]);
            binary_both(&s, op, &a, al, &b, sl, &[rows, n]);
            binary_both(&s, op, &ah, al, &bh, bl, &[rows, n]);
            // Transposed a: the fallback.
            if n > 0 {
                let at = Layout::new(0, &[n, rows], &[1, n]).unwrap();
                let bt = Layout::new(0, &[n, rows], &[1, 0]).unwrap();
                binary_both(&s, op, &a, at, &b, bt, &[n, rows]);
            }
        }
        binary_all::<f64>(
            &s,
            &a.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            &a.iter().rev().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        );
    }
    // Empty views whose offset lies past the end of an empty buffer.
    let e: [f32; 0] = [];
    let el = Layout::contiguous_at(7, &[0]).unwrap();
    let mut y0: [f32; 0] = [];
    for op in Binary::ALL {
        s.binary(
            op,
            View::new(&e[..], el).unwrap(),
            View::new(&e[..], el).unwrap(),
            ViewMut::new(&mut y0[..], el).unwrap(),
        )
        .unwrap();
    }
    s.unary(
        Unary::Exp,
        View::new(&e[..], el).unwrap(),
        ViewMut::new(&mut y0[..], el).unwrap(),
    )
    .unwrap();
    // Shape errors: the same Err.
    let a = [1.0f32; 6];
    let l6 = Layout::contiguous(&[6]).unwrap();
    let l5 = Layout::contiguous(&[5]).unwrap();
    let mut y = [0f32; 6];
    let e1 = s.binary(
        Binary::Add,
        View::new(&a[..], l6).unwrap(),
        View::new(&a[..], l5).unwrap(),
        s.view_mut(&mut y, &[6]).unwrap(),
    );
    let e2 = Reference.binary(
        Binary::Add,
        View::new(&a[..], l6).unwrap(),
        View::new(&a[..], l5).unwrap(),
        Reference.view_mut(&mut y, &[6]).unwrap(),
    );
    assert!(e1.is_err());
    assert_eq!(format!("{e1:?}"), format!("{e2:?}"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn binary_random(v in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..70)) {
        let Some(s) = simd() else { return Ok(()) };
        let a: Vec<f64> = v.iter().map(|p| f64::from(f32::from_bits(p.0))).collect();
        let b: Vec<f64> = v.iter().map(|p| f64::from(f32::from_bits(p.1))).collect();
        binary_all::<f32>(&s, &a, &b);
        binary_all::<f64>(&s, &a, &b);
        binary_all::<f16>(&s, &a, &b);
        binary_all::<bf16>(&s, &a, &b);
    }

    #[test]
    fn unary_random_f32(v in proptest::collection::vec(any::<u32>(), 0..70)) {
        let Some(s) = simd() else { return Ok(()) };
        let x: Vec<f32> = v.iter().map(|&b| f32::from_bits(b)).collect();
        for op in ALL_UNARY {
            check_unary(&s, op, &x);
        }
    }

    #[test]
    fn unary_random_f64(v in proptest::collection::vec(-800.0f64..800.0, 0..40)) {
        let Some(s) = simd() else { return Ok(()) };
        for op in ALL_UNARY {
            check_unary(&s, op, &v);
        }
    }
}

// ---- cast ----

fn cast_both<S: Element, D: Element>(s: &Simd, x: &[S]) {
    let n = x.len();
    let mut g = vec![D::default(); n];
    let mut w = vec![D::default(); n];
    s.cast(
        s.view(x, &[n]).unwrap(),
        s.view_mut(&mut g[..], &[n]).unwrap(),
    )
    .unwrap();
    Reference
        .cast(
            Reference.view(x, &[n]).unwrap(),
            Reference.view_mut(&mut w[..], &[n]).unwrap(),
        )
        .unwrap();
    for i in 0..n {
        let (a, b) = (g[i].to_f64(), w[i].to_f64());
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "cast {} -> {}: x = {:e}: simd {a:e} reference {b:e}",
            S::DTYPE,
            D::DTYPE,
            x[i].to_f64()
        );
    }
}

fn cast_to_all<S: Element>(s: &Simd, x: &[S]) {
    cast_both::<S, f32>(s, x);
    cast_both::<S, f64>(s, x);
    cast_both::<S, f16>(s, x);
    cast_both::<S, bf16>(s, x);
}

#[test]
fn casts_every_pair() {
    let Some(s) = simd() else { return };
    let h: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let b: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    cast_to_all(&s, &h);
    cast_to_all(&s, &b);
    let f: Vec<f32> = (0..=u32::MAX)
        .step_by(1 << 12)
        .map(f32::from_bits)
        .collect();
    cast_to_all(&s, &f);
    // f64 values just past an f16 tie: rounding through f32 would land on the tie and round to
    // even, the wrong way; the single rounding must see the low bits.
    let mut d: Vec<f64> = f.iter().map(|&v| f64::from(v)).collect();
    for k in 0..2000u64 {
        let base = f64::from(f16::from_bits((k * 31) as u16 & 0x7bff).to_f32());
        let ulp16 = f64::from(f16::from_bits(((k * 31) as u16 & 0x7bff) + 1).to_f32()) - base;
        d.push(base + ulp16 / 2.0 + base.abs() * 1e-12);
        d.push(base + ulp16 / 2.0);
        d.push(-(base + ulp16 / 2.0 - 1e-300));
    }
    cast_to_all(&s, &d);
    // 1 + 2^-11 + 2^-40: halfway for f16 in f32 after rounding, above the tie in f64.
    let tie: f64 = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
    let mut y = [f16::ZERO];
    s.cast(
        s.view(&[tie], &[1]).unwrap(),
        s.view_mut(&mut y, &[1]).unwrap(),
    )
    .unwrap();
    assert_eq!(y[0].to_f64(), 1.0 + 2f64.powi(-10));
    // Tails and a strided source (fallback).
    for n in 0..=3 * F32_LANES + 1 {
        let v: Vec<f64> = (0..n).map(|i| (i as f64) * 1.1e-3 - 0.01).collect();
        cast_to_all(&s, &v);
    }
}
