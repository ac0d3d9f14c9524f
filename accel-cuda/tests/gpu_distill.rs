//! GPU tests of the distillation kernels (`kd_loss`, `kd_loss_sparse`, `cross_entropy`) against
//! `seqcore::Reference` in the same element type, on seeded random inputs in every dtype, with
//! strided and broadcast views, empty and length-1 extents, special values and bad input. Every
//! test prints `SKIPPED` and passes without a GPU.
//!
//! Tolerances. Both sides compute the same formulas in the same accumulation type and differ only
//! in summation order and in `exp` / `ln` (libm against CUDA's, each within 2 ulp). The
//! conformance suite's bound (`conformance/src/mechanisms/distill.rs`) limits each side's
//! distance to the exact value: a log-probability carries `ua (4 V + 4 Z + 8)`, `Z` the largest
//! scaled logit magnitude plus `ln V`, a gradient element that times `c/T (p + q)(3 + 4 Z)`
//! (`<= 2 (3 + 4 Z)`), the loss the sum over rows; plus one rounding to `T` (`2u`) on each side.
//! The distance between the two sides is at most the sum of both bounds, which is what
//! [`Tol`] allows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    clippy::cast_precision_loss,
    clippy::too_many_arguments,
    clippy::type_complexity
)]

mod support;

use seq_accel_cuda::CudaBackend;
use seqcore::portable::kd_loss::{CeConfig, Divergence, KdConfig, KdReduction};
use seqcore::{
    Backend, DType, Element, Error, Layout, Reference, Result, View, ViewMut, bf16, f16,
};
use support::rng::Rng;
use support::{down, gpu, up};

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (((self.next() + 1.0) * 0.5 * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// The memory behind an operand (`layout.end()` long, or longer) and its layout.
#[derive(Clone)]
struct Op<X> {
    mem: Vec<X>,
    layout: Layout,
}

fn contiguous<X: Clone>(v: Vec<X>, shape: &[usize]) -> Op<X> {
    Op {
        mem: v,
        layout: Layout::contiguous(shape).unwrap(),
    }
}

/// An output buffer of `layout`, every element a sentinel (so untouched memory is compared too).
fn out_op(layout: Layout) -> Op<f64> {
    Op {
        mem: vec![7.25; layout.end().max(layout.offset() + 1)],
        layout,
    }
}

fn to_t<T: Element>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn to_f<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// The allowed distance between the GPU's and the reference's outputs (see the module docs).
#[derive(Clone, Copy, Debug)]
struct Tol {
    /// Absolute allowance of one gradient element.
    grad: f64,
    /// Absolute allowance of one loss (a row's or the total).
    loss: f64,
    /// Relative allowance (output rounding on both sides, and the loss's summation).
    rel: f64,
    floor: f64,
}

fn unit<T: Element>() -> (f64, f64, f64) {
    let u = T::DTYPE.unit_roundoff();
    let ua = T::DTYPE.accumulator().unit_roundoff();
    let floor = match T::DTYPE {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 5.960_464_477_539_063e-8,
        _ => f64::from(f32::MIN_POSITIVE),
    };
    (u, ua, floor)
}

/// `c` the largest `|loss factor|`, `temp` the temperature, `zmax` the largest finite scaled
/// logit magnitude, `v` the row length, `rows` the rows summed into one loss.
fn tol<T: Element>(c: f64, temp: f64, zmax: f64, v: usize, rows: usize) -> Tol {
    let (u, ua, floor) = unit::<T>();
    let z = zmax + (v.max(1) as f64).ln();
    let k = ua * (4.0 * v as f64 + 4.0 * z + 8.0) * (3.0 + 4.0 * z);
    Tol {
        grad: 2.0 * (c / temp * k * 2.0),
        loss: 2.0 * (rows.max(1) as f64 * 2.0 * c * k),
        rel: 4.0 * u + 2.0 * ua * (rows as f64 + 2.0),
        floor: 2.0 * floor,
    }
}

fn zmax(xs: &[&[f64]], temp: f64) -> f64 {
    xs.iter()
        .flat_map(|x| x.iter())
        .filter(|a| a.is_finite())
        .fold(0.0f64, |m, a| m.max((a / temp).abs()))
}

/// `got` against `want`, element by element: the same NaNs and infinities, else within
/// `abs + rel |want|`.
fn close(what: &str, got: &[f64], want: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() {
            assert!(w.is_nan() && g.is_nan(), "{what}[{i}]: got {g}, want {w}");
        } else if w.is_infinite() || g.is_infinite() {
            assert_eq!(g, w, "{what}[{i}]");
        } else {
            let d = (g - w).abs();
            assert!(
                d <= abs + rel * w.abs(),
                "{what}[{i}]: got {g}, want {w}, |diff| {d:e} > {:e}",
                abs + rel * w.abs()
            );
        }
    }
}

type Outs = Result<(Vec<f64>, Option<Vec<f64>>)>;

/// `kd_loss` on the GPU and on the reference, in `T`; the whole output memories.
fn kd_both<T: Element>(
    b: &CudaBackend,
    cfg: &KdConfig,
    teacher: &Op<f64>,
    student: &Op<f64>,
    mask: Option<&Op<u8>>,
    loss: &Op<f64>,
    grad: Option<&Op<f64>>,
) -> (Outs, Outs) {
    let (t, s) = (to_t::<T>(&teacher.mem), to_t::<T>(&student.mem));
    // Reference.
    let want = {
        let mut l = to_t::<T>(&loss.mem);
        let mut g = grad.map(|g| to_t::<T>(&g.mem));
        let r = Reference;
        let res = r.kd_loss(
            cfg,
            View::new(&t[..], teacher.layout).unwrap(),
            View::new(&s[..], student.layout).unwrap(),
            mask.map(|m| View::new(&m.mem[..], m.layout).unwrap()),
            ViewMut::new(&mut l[..], loss.layout).unwrap(),
            match (&mut g, grad) {
                (Some(gm), Some(go)) => Some(ViewMut::new(&mut gm[..], go.layout).unwrap()),
                _ => None,
            },
        );
        res.map(|()| (to_f(&l), g.map(|g| to_f(&g))))
    };
    let got = {
        let (td, sd) = (up(b, &t), up(b, &s));
        let md = mask.map(|m| up(b, &m.mem));
        let mut ld = up(b, &to_t::<T>(&loss.mem));
        let mut gd = grad.map(|g| up(b, &to_t::<T>(&g.mem)));
        let res = b.kd_loss(
            cfg,
            View::new(&td, teacher.layout).unwrap(),
            View::new(&sd, student.layout).unwrap(),
            match (&md, mask) {
                (Some(m), Some(mo)) => Some(View::new(m, mo.layout).unwrap()),
                _ => None,
            },
            ViewMut::new(&mut ld, loss.layout).unwrap(),
            match (&mut gd, grad) {
                (Some(gm), Some(go)) => Some(ViewMut::new(gm, go.layout).unwrap()),
                _ => None,
            },
        );
        res.map(|()| (to_f(&down(b, &ld)), gd.as_ref().map(|g| to_f(&down(b, g)))))
    };
    (got, want)
}

fn agree(what: &str, got: Outs, want: Outs, t: Tol) {
    match (got, want) {
        (Ok((gl, gg)), Ok((wl, wg))) => {
            close(&format!("{what} loss"), &gl, &wl, t.floor + t.loss, t.rel);
            if let (Some(gg), Some(wg)) = (gg, wg) {
                close(&format!("{what} grad"), &gg, &wg, t.floor + t.grad, t.rel);
            }
        }
        (Err(a), Err(e)) => assert_eq!(a, e, "{what}: errors differ"),
        (a, e) => panic!("{what}: got {a:?}, want {e:?}"),
    }
}

fn divergences() -> Vec<Divergence> {
    vec![
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::Jsd { beta: 0.5 },
        Divergence::Jsd { beta: 0.0 },
        Divergence::Jsd { beta: 1.0 },
        Divergence::Jsd { beta: 0.9 },
        Divergence::TotalVariation,
        Divergence::SkewForwardKl { alpha: 0.1 },
        Divergence::SkewReverseKl { alpha: 0.1 },
        Divergence::SkewReverseKl { alpha: 0.0 },
    ]
}

const REDUCTIONS: [KdReduction; 3] = [KdReduction::Mean, KdReduction::Sum, KdReduction::None];

fn loss_op(red: KdReduction, rows: &[usize]) -> Op<f64> {
    match red {
        KdReduction::None => out_op(Layout::contiguous(rows).unwrap()),
        _ => out_op(Layout::contiguous(&[]).unwrap()),
    }
}

fn kd_random<T: Element>(b: &CudaBackend, seed: u64) {
    let mut rng = Rng(seed);
    for &(n, v) in &[(5usize, 37usize), (3, 1), (2, 600), (1, 3000)] {
        for div in divergences() {
            for red in REDUCTIONS {
                for &(temp, scale) in &[(1.0, 3.0), (2.5, 1.0), (0.7, 10.0)] {
                    let cfg = KdConfig::new(div, temp).with_reduction(red).with_scale(0.5);
                    let t = contiguous(rng.vec(n * v, scale), &[n, v]);
                    let s = contiguous(rng.vec(n * v, scale), &[n, v]);
                    let mask: Vec<u8> = (0..n).map(|i| u8::from(i % 3 != 1)).collect();
                    let m = contiguous(mask, &[n]);
                    let lo = loss_op(red, &[n]);
                    let go = out_op(Layout::contiguous(&[n, v]).unwrap());
                    let tt = to_f(&to_t::<T>(&t.mem));
                    let st = to_f(&to_t::<T>(&s.mem));
                    let tl = tol::<T>(0.5 * temp * temp, temp, zmax(&[&tt, &st], temp), v, n);
                    for with_mask in [false, true] {
                        let mo = with_mask.then_some(&m);
                        let (got, want) = kd_both::<T>(b, &cfg, &t, &s, mo, &lo, Some(&go));
                        agree(
                            &format!(
                                "{} {div:?} {red:?} T={temp} n={n} v={v} mask={with_mask}",
                                T::NAME
                            ),
                            got,
                            want,
                            tl,
                        );
                    }
                    // Without a gradient.
                    let (got, want) = kd_both::<T>(b, &cfg, &t, &s, None, &lo, None);
                    agree(
                        &format!("{} {div:?} {red:?} no grad", T::NAME),
                        got,
                        want,
                        tl,
                    );
                }
            }
        }
    }
}

#[test]
fn kd_loss_random_every_dtype() {
    let Some(b) = gpu() else { return };
    kd_random::<f32>(b, 1);
    kd_random::<f64>(b, 2);
    kd_random::<f16>(b, 3);
    kd_random::<bf16>(b, 4);
}

/// Strided, transposed and broadcast views: the teacher broadcast over rows (stride 0), the
/// student a transposed (column-major) view at an offset, the gradient transposed, the per-row
/// loss and the mask strided.
fn kd_strided<T: Element>(b: &CudaBackend) {
    let mut rng = Rng(99);
    let (n, v) = (6usize, 50usize);
    let t = Op {
        mem: rng.vec(v, 4.0),
        layout: Layout::new(0, &[n, v], &[0, 1]).unwrap(),
    };
    let s = Op {
        mem: rng.vec(3 + n * v, 4.0),
        layout: Layout::new(3, &[n, v], &[1, n]).unwrap(),
    };
    let m = Op {
        mem: vec![1, 9, 0, 9, 1, 9, 1, 9, 1, 9, 0, 9],
        layout: Layout::new(0, &[n], &[2]).unwrap(),
    };
    let go = out_op(Layout::new(1, &[n, v], &[1, n]).unwrap());
    for div in divergences() {
        for red in REDUCTIONS {
            let lo = match red {
                KdReduction::None => out_op(Layout::new(2, &[n], &[3]).unwrap()),
                _ => out_op(Layout::new(4, &[], &[]).unwrap()),
            };
            let cfg = KdConfig::new(div, 1.5).with_reduction(red);
            let tt = to_f(&to_t::<T>(&t.mem));
            let st = to_f(&to_t::<T>(&s.mem));
            let tl = tol::<T>(1.5 * 1.5, 1.5, zmax(&[&tt, &st], 1.5), v, n);
            let (got, want) = kd_both::<T>(b, &cfg, &t, &s, Some(&m), &lo, Some(&go));
            agree(
                &format!("{} strided {div:?} {red:?}", T::NAME),
                got,
                want,
                tl,
            );
        }
    }
    // Rank 1 (one row, `loss` of shape [] for every reduction) and rank 3.
    let t1 = contiguous(rng.vec(7, 2.0), &[7]);
    let s1 = contiguous(rng.vec(7, 2.0), &[7]);
    let t3 = contiguous(rng.vec(2 * 3 * 5, 2.0), &[2, 3, 5]);
    let s3 = contiguous(rng.vec(2 * 3 * 5, 2.0), &[2, 3, 5]);
    for red in REDUCTIONS {
        let cfg = KdConfig::new(Divergence::Jsd { beta: 0.3 }, 1.0).with_reduction(red);
        let tl = tol::<T>(1.0, 1.0, 2.0, 7, 1);
        let lo = out_op(Layout::contiguous(&[]).unwrap());
        let go = out_op(Layout::contiguous(&[7]).unwrap());
        let (got, want) = kd_both::<T>(b, &cfg, &t1, &s1, None, &lo, Some(&go));
        agree(&format!("{} rank 1 {red:?}", T::NAME), got, want, tl);
        let lo = loss_op(red, &[2, 3]);
        let go = out_op(Layout::contiguous(&[2, 3, 5]).unwrap());
        let m = contiguous(vec![1, 0, 1, 1, 1, 0], &[2, 3]);
        let (got, want) = kd_both::<T>(b, &cfg, &t3, &s3, Some(&m), &lo, Some(&go));
        agree(&format!("{} rank 3 {red:?}", T::NAME), got, want, tl);
    }
}

#[test]
fn kd_loss_strided_and_broadcast_views() {
    let Some(b) = gpu() else { return };
    kd_strided::<f32>(b);
    kd_strided::<f64>(b);
    kd_strided::<f16>(b);
    kd_strided::<bf16>(b);
}

/// Special values: rows entirely `-inf` (no distribution: loss 0, gradient 0, still counted in
/// the mean), some `-inf` logits (probability 0), NaN, one and two `+inf`, NaN with `-inf` only,
/// fully masked input, and empty extents (no rows, `V = 0`).
fn kd_specials<T: Element>(b: &CudaBackend) {
    let (ni, nan, inf) = (f64::NEG_INFINITY, f64::NAN, f64::INFINITY);
    let v = 4;
    let trows: Vec<[f64; 4]> = vec![
        [ni, ni, ni, ni],
        [1.0, ni, 0.5, ni],
        [1.0, nan, 0.5, 2.0],
        [1.0, inf, 0.5, 2.0],
        [inf, inf, 0.5, 2.0],
        [nan, ni, ni, nan],
        [1.0, 2.0, 3.0, 4.0],
        [nan, inf, 0.0, 1.0],
        [0.5, 0.25, ni, 1.0],
    ];
    let srows: Vec<[f64; 4]> = vec![
        [1.0, 2.0, 3.0, 4.0],
        [1.0, 0.0, ni, 2.0],
        [1.0, 0.0, 0.5, 2.0],
        [0.0, 1.0, 0.5, 2.0],
        [0.0, 1.0, 0.5, 2.0],
        [0.0, 1.0, 0.5, 2.0],
        [ni, ni, ni, ni],
        [1.0, 2.0, 3.0, 4.0],
        [0.5, ni, ni, ni],
    ];
    let n = trows.len();
    let t = contiguous(trows.concat(), &[n, v]);
    let s = contiguous(srows.concat(), &[n, v]);
    let tl = tol::<T>(4.0, 2.0, 2.0, v, n);
    for div in divergences() {
        for red in REDUCTIONS {
            let cfg = KdConfig::new(div, 2.0).with_reduction(red);
            let lo = loss_op(red, &[n]);
            let go = out_op(Layout::contiguous(&[n, v]).unwrap());
            let (got, want) = kd_both::<T>(b, &cfg, &t, &s, None, &lo, Some(&go));
            agree(
                &format!("{} specials {div:?} {red:?}", T::NAME),
                got,
                want,
                tl,
            );
            // Every row masked: loss 0, gradient 0 (the mean of no rows is 0).
            let m = contiguous(vec![0u8; n], &[n]);
            let (got, want) = kd_both::<T>(b, &cfg, &t, &s, Some(&m), &lo, Some(&go));
            agree(
                &format!("{} all masked {div:?} {red:?}", T::NAME),
                got,
                want,
                tl,
            );
            // No rows; rows of length 0.
            for shape in [[0usize, 4], [3, 0]] {
                let e = contiguous(vec![0.0; shape[0] * shape[1]], &shape);
                let lo = loss_op(red, &shape[..1]);
                let go = out_op(Layout::contiguous(&shape).unwrap());
                let (got, want) = kd_both::<T>(b, &cfg, &e, &e, None, &lo, Some(&go));
                agree(
                    &format!("{} empty {shape:?} {div:?} {red:?}", T::NAME),
                    got,
                    want,
                    tl,
                );
            }
        }
    }
}

#[test]
fn kd_loss_special_values_and_empty() {
    let Some(b) = gpu() else { return };
    kd_specials::<f32>(b);
    kd_specials::<f64>(b);
    kd_specials::<f16>(b);
    kd_specials::<bf16>(b);
}

/// Temperature 0.05 with logits near 6e5 (the SIMD backend's lesson): `x / T` must be a rounded
/// division, then the maximum subtracted. The scaled logits 200 apart make the row's sum of
/// exponentials exactly 1, so its log-sum-exp is its maximum exactly and both sides compute the
/// same log-probabilities: they differ only by `exp` / `ln` rounding, 16 `ua` of the largest
/// term, plus the output roundings.
fn kd_huge<T: Element>(b: &CudaBackend) {
    let t = contiguous(
        vec![6e5, 6e5 - 10.0, 0.0, -6e5, 3.0, 2.0, 1.0, 0.0],
        &[2, 4],
    );
    let s = contiguous(
        vec![6e5 - 10.0, 6e5, 1.0, -6e5, 2.0, 3.0, 0.0, 1.0],
        &[2, 4],
    );
    let (u, ua, floor) = unit::<T>();
    for div in divergences() {
        let cfg = KdConfig::new(div, 0.05).with_reduction(KdReduction::None);
        let lo = loss_op(KdReduction::None, &[2]);
        let go = out_op(Layout::contiguous(&[2, 4]).unwrap());
        let (got, want) = kd_both::<T>(b, &cfg, &t, &s, None, &lo, Some(&go));
        let (got, want) = (got.unwrap(), want.unwrap());
        let rel = 4.0 * u + 16.0 * ua;
        // Absolute slack: 16 ua of the largest term, log-probabilities up to 64 in magnitude
        // (four per row) times `T^2 = 0.0025` for the loss, times `c/T = 0.05` for the gradient.
        close(
            "huge loss",
            &got.0,
            &want.0,
            floor + 16.0 * ua * 0.0025 * 64.0 * 4.0,
            rel,
        );
        close(
            "huge grad",
            got.1.as_ref().unwrap(),
            want.1.as_ref().unwrap(),
            floor + 16.0 * ua * 0.05 * 64.0,
            rel,
        );
    }
}

#[test]
fn kd_loss_small_temperature_huge_logits() {
    let Some(b) = gpu() else { return };
    kd_huge::<f32>(b);
    kd_huge::<f64>(b);
}

#[test]
fn kd_loss_bad_input_gives_the_reference_error() {
    let Some(b) = gpu() else { return };
    let t = contiguous(vec![0.0; 6], &[2, 3]);
    let lo = out_op(Layout::contiguous(&[]).unwrap());
    let go = out_op(Layout::contiguous(&[2, 3]).unwrap());
    let tl = tol::<f32>(1.0, 1.0, 1.0, 3, 2);
    let bad = [
        KdConfig::new(Divergence::ForwardKl, 0.0),
        KdConfig::new(Divergence::ForwardKl, f64::NAN),
        KdConfig::new(Divergence::ForwardKl, 1e-300),
        KdConfig::new(Divergence::Jsd { beta: 1.5 }, 1.0),
        KdConfig::new(Divergence::SkewForwardKl { alpha: -0.1 }, 1.0),
        KdConfig::new(Divergence::ForwardKl, 1.0).with_scale(f64::INFINITY),
    ];
    for cfg in bad {
        let (got, want) = kd_both::<f32>(b, &cfg, &t, &t, None, &lo, Some(&go));
        assert!(want.is_err());
        agree("bad cfg", got, want, tl);
    }
    let cfg = KdConfig::new(Divergence::ForwardKl, 1.0);
    // Student of another shape, a wrong mask, loss and gradient shapes, a rank-0 teacher.
    let s2 = contiguous(vec![0.0; 8], &[2, 4]);
    let (got, want) = kd_both::<f32>(b, &cfg, &t, &s2, None, &lo, Some(&go));
    assert!(want.is_err());
    agree("bad student", got, want, tl);
    let m3 = contiguous(vec![1u8; 3], &[3]);
    let (got, want) = kd_both::<f32>(b, &cfg, &t, &t, Some(&m3), &lo, Some(&go));
    assert!(want.is_err());
    agree("bad mask", got, want, tl);
    let l2 = out_op(Layout::contiguous(&[2]).unwrap());
    let (got, want) = kd_both::<f32>(b, &cfg, &t, &t, None, &l2, Some(&go));
    assert!(want.is_err());
    agree("bad loss", got, want, tl);
    let g2 = out_op(Layout::contiguous(&[3, 2]).unwrap());
    let (got, want) = kd_both::<f32>(b, &cfg, &t, &t, None, &lo, Some(&g2));
    assert!(want.is_err());
    agree("bad grad", got, want, tl);
    let t0 = contiguous(vec![0.0], &[]);
    let (got, want) = kd_both::<f32>(b, &cfg, &t0, &t0, None, &lo, None);
    assert!(want.is_err());
    agree("rank 0", got, want, tl);
}

// ---- sparse teacher ----

fn sparse_both<T: Element>(
    b: &CudaBackend,
    cfg: &KdConfig,
    values: &Op<f64>,
    indices: &Op<u32>,
    tail: Option<&Op<f64>>,
    student: &Op<f64>,
    mask: Option<&Op<u8>>,
    loss: &Op<f64>,
    grad: Option<&Op<f64>>,
) -> (Outs, Outs) {
    let (vv, s) = (to_t::<T>(&values.mem), to_t::<T>(&student.mem));
    let tt = tail.map(|t| to_t::<T>(&t.mem));
    let want = {
        let mut l = to_t::<T>(&loss.mem);
        let mut g = grad.map(|g| to_t::<T>(&g.mem));
        let res = Reference.kd_loss_sparse(
            cfg,
            View::new(&vv[..], values.layout).unwrap(),
            View::new(&indices.mem[..], indices.layout).unwrap(),
            match (&tt, tail) {
                (Some(h), Some(t)) => Some(View::new(&h[..], t.layout).unwrap()),
                _ => None,
            },
            View::new(&s[..], student.layout).unwrap(),
            mask.map(|m| View::new(&m.mem[..], m.layout).unwrap()),
            ViewMut::new(&mut l[..], loss.layout).unwrap(),
            match (&mut g, grad) {
                (Some(gm), Some(go)) => Some(ViewMut::new(&mut gm[..], go.layout).unwrap()),
                _ => None,
            },
        );
        res.map(|()| (to_f(&l), g.map(|g| to_f(&g))))
    };
    let got = {
        let (vd, id, sd) = (up(b, &vv), up(b, &indices.mem), up(b, &s));
        let td = tt.as_ref().map(|h| up(b, h));
        let md = mask.map(|m| up(b, &m.mem));
        let mut ld = up(b, &to_t::<T>(&loss.mem));
        let mut gd = grad.map(|g| up(b, &to_t::<T>(&g.mem)));
        let res = b.kd_loss_sparse(
            cfg,
            View::new(&vd, values.layout).unwrap(),
            View::new(&id, indices.layout).unwrap(),
            match (&td, tail) {
                (Some(h), Some(t)) => Some(View::new(h, t.layout).unwrap()),
                _ => None,
            },
            View::new(&sd, student.layout).unwrap(),
            match (&md, mask) {
                (Some(m), Some(mo)) => Some(View::new(m, mo.layout).unwrap()),
                _ => None,
            },
            ViewMut::new(&mut ld, loss.layout).unwrap(),
            match (&mut gd, grad) {
                (Some(gm), Some(go)) => Some(ViewMut::new(gm, go.layout).unwrap()),
                _ => None,
            },
        );
        res.map(|()| (to_f(&down(b, &ld)), gd.as_ref().map(|g| to_f(&down(b, g)))))
    };
    (got, want)
}

/// `k` distinct indices below `v` per row, and the teacher's logits there.
fn top_k(rng: &mut Rng, n: usize, v: usize, k: usize) -> (Vec<u32>, Vec<f64>) {
    let mut idx = Vec::new();
    for _ in 0..n {
        let mut row: Vec<u32> = Vec::new();
        while row.len() < k {
            let c = rng.below(v) as u32;
            if !row.contains(&c) {
                row.push(c);
            }
        }
        idx.extend(row);
    }
    let vals = rng.vec(n * k, 3.0);
    (idx, vals)
}

fn sparse_random<T: Element>(b: &CudaBackend, seed: u64) {
    let mut rng = Rng(seed);
    for &(n, v, k) in &[(4usize, 40usize, 5usize), (3, 9, 9), (2, 500, 1), (1, 1, 1)] {
        let (idx, vals) = top_k(&mut rng, n, v, k);
        let values = contiguous(vals, &[n, k]);
        let indices = contiguous(idx, &[n, k]);
        let student = contiguous(rng.vec(n * v, 3.0), &[n, v]);
        let tail = contiguous((0..n).map(|i| [0.0, 0.25, 0.9][i % 3]).collect(), &[n]);
        let mask = contiguous((0..n).map(|i| u8::from(i != 1)).collect(), &[n]);
        for div in divergences() {
            for red in REDUCTIONS {
                let cfg = KdConfig::new(div, 1.3).with_reduction(red);
                let lo = loss_op(red, &[n]);
                let go = out_op(Layout::contiguous(&[n, v]).unwrap());
                // ln(1 - r) up to ln 10 joins the scaled logits.
                let tl = tol::<T>(1.69, 1.3, 3.0 / 1.3 + 2.4, v, n);
                for (tv, mv) in [
                    (None, None),
                    (Some(&tail), None),
                    (Some(&tail), Some(&mask)),
                ] {
                    let (got, want) = sparse_both::<T>(
                        b,
                        &cfg,
                        &values,
                        &indices,
                        tv,
                        &student,
                        mv,
                        &lo,
                        Some(&go),
                    );
                    agree(
                        &format!(
                            "{} sparse {div:?} {red:?} n={n} v={v} k={k} tail={} mask={}",
                            T::NAME,
                            tv.is_some(),
                            mv.is_some()
                        ),
                        got,
                        want,
                        tl,
                    );
                }
            }
        }
    }
    // Strided views: values and indices transposed, the student at an offset with row stride
    // 2V, the gradient transposed.
    let (n, v, k) = (3usize, 12usize, 4usize);
    let (idx, vals) = top_k(&mut rng, n, v, k);
    let mut it = vec![0u32; n * k];
    let mut vt = vec![0.0f64; n * k];
    for r in 0..n {
        for a in 0..k {
            it[a * n + r] = idx[r * k + a];
            vt[a * n + r] = vals[r * k + a];
        }
    }
    let values = Op {
        mem: vt,
        layout: Layout::new(0, &[n, k], &[1, n]).unwrap(),
    };
    let indices = Op {
        mem: it,
        layout: Layout::new(0, &[n, k], &[1, n]).unwrap(),
    };
    let student = Op {
        mem: rng.vec(5 + 2 * n * v, 2.0),
        layout: Layout::new(5, &[n, v], &[2 * v, 1]).unwrap(),
    };
    let tail = Op {
        mem: vec![0.5; 1],
        layout: Layout::new(0, &[n], &[0]).unwrap(),
    };
    for div in divergences() {
        let cfg = KdConfig::new(div, 1.0).with_reduction(KdReduction::Mean);
        let lo = out_op(Layout::contiguous(&[]).unwrap());
        let go = out_op(Layout::new(0, &[n, v], &[1, n]).unwrap());
        let tl = tol::<T>(1.0, 1.0, 3.0 + 0.7, v, n);
        let (got, want) = sparse_both::<T>(
            b,
            &cfg,
            &values,
            &indices,
            Some(&tail),
            &student,
            None,
            &lo,
            Some(&go),
        );
        agree(
            &format!("{} sparse strided {div:?}", T::NAME),
            got,
            want,
            tl,
        );
    }
}

#[test]
fn kd_loss_sparse_random_and_strided() {
    let Some(b) = gpu() else { return };
    sparse_random::<f32>(b, 11);
    sparse_random::<f64>(b, 12);
    sparse_random::<f16>(b, 13);
    sparse_random::<bf16>(b, 14);
}

#[test]
fn kd_loss_sparse_specials_and_bad_input() {
    let Some(b) = gpu() else { return };
    let (ni, nan) = (f64::NEG_INFINITY, f64::NAN);
    let (n, v, k) = (5usize, 6usize, 2usize);
    let values = contiguous(
        vec![ni, ni, 1.0, ni, 1.0, nan, 1.0, 2.0, 30.0, 31.0],
        &[n, k],
    );
    let indices = contiguous(vec![0, 1, 2, 3, 4, 5, 0, 5, 1, 2], &[n, k]);
    let mut st = vec![0.5; n * v];
    st[3 * v..4 * v].fill(ni);
    st[4 * v] = 40.0;
    let student = contiguous(st, &[n, v]);
    let tail = contiguous(vec![0.1, 0.0, 0.2, 0.3, 0.0], &[n]);
    let tl = tol::<f32>(1.0, 1.0, 40.0, v, n);
    for div in divergences() {
        for red in REDUCTIONS {
            let cfg = KdConfig::new(div, 1.0).with_reduction(red);
            let lo = loss_op(red, &[n]);
            let go = out_op(Layout::contiguous(&[n, v]).unwrap());
            for tv in [None, Some(&tail)] {
                let (got, want) = sparse_both::<f32>(
                    b,
                    &cfg,
                    &values,
                    &indices,
                    tv,
                    &student,
                    None,
                    &lo,
                    Some(&go),
                );
                agree(&format!("sparse specials {div:?} {red:?}"), got, want, tl);
            }
        }
    }
    // Bad input: k > V, an index >= V, a repeated index, a tail outside [0, 1]; a bad index in
    // a masked row is not an error.
    let cfg = KdConfig::new(Divergence::ForwardKl, 1.0);
    let lo = out_op(Layout::contiguous(&[]).unwrap());
    let s2 = contiguous(vec![0.0; 2 * 3], &[2, 3]);
    let cases: Vec<(Vec<u32>, usize, Option<Vec<f64>>, Option<Vec<u8>>)> = vec![
        (vec![0, 1, 2, 0, 1, 2, 0, 1], 4, None, None),
        (vec![0, 3, 0, 1], 2, None, None),
        (vec![0, 1, 2, 2], 2, None, None),
        (vec![0, 1, 2, 0], 2, Some(vec![0.5, 1.5]), None),
        (vec![0, 1, 2, 0], 2, Some(vec![-0.5, 0.5]), None),
        (vec![0, 1, 2, 0], 2, Some(vec![nan, 0.5]), None),
        (vec![0, 1, 7, 7], 2, None, Some(vec![1, 0])),
        (vec![0, 1, 7, 7], 2, None, Some(vec![0, 1])),
    ];
    for (idx, kk, tail, mask) in cases {
        let values = contiguous(vec![1.0; 2 * kk], &[2, kk]);
        let indices = contiguous(idx, &[2, kk]);
        let tail = tail.map(|t| contiguous(t, &[2]));
        let mask = mask.map(|m| contiguous(m, &[2]));
        let (got, want) = sparse_both::<f32>(
            b,
            &cfg,
            &values,
            &indices,
            tail.as_ref(),
            &s2,
            mask.as_ref(),
            &lo,
            None,
        );
        agree(&format!("sparse bad input k={kk}"), got, want, tl);
    }
}

// ---- cross-entropy ----

fn ce_both<T: Element>(
    b: &CudaBackend,
    cfg: &CeConfig,
    logits: &Op<f64>,
    targets: &Op<i32>,
    loss: &Op<f64>,
    grad: Option<&Op<f64>>,
) -> (Outs, Outs) {
    let x = to_t::<T>(&logits.mem);
    let want = {
        let mut l = to_t::<T>(&loss.mem);
        let mut g = grad.map(|g| to_t::<T>(&g.mem));
        let res = Reference.cross_entropy(
            cfg,
            View::new(&x[..], logits.layout).unwrap(),
            View::new(&targets.mem[..], targets.layout).unwrap(),
            ViewMut::new(&mut l[..], loss.layout).unwrap(),
            match (&mut g, grad) {
                (Some(gm), Some(go)) => Some(ViewMut::new(&mut gm[..], go.layout).unwrap()),
                _ => None,
            },
        );
        res.map(|()| (to_f(&l), g.map(|g| to_f(&g))))
    };
    let got = {
        let (xd, td) = (up(b, &x), up(b, &targets.mem));
        let mut ld = up(b, &to_t::<T>(&loss.mem));
        let mut gd = grad.map(|g| up(b, &to_t::<T>(&g.mem)));
        let res = b.cross_entropy(
            cfg,
            View::new(&xd, logits.layout).unwrap(),
            View::new(&td, targets.layout).unwrap(),
            ViewMut::new(&mut ld, loss.layout).unwrap(),
            match (&mut gd, grad) {
                (Some(gm), Some(go)) => Some(ViewMut::new(gm, go.layout).unwrap()),
                _ => None,
            },
        );
        res.map(|()| (to_f(&down(b, &ld)), gd.as_ref().map(|g| to_f(&down(b, g)))))
    };
    (got, want)
}

fn ce_random<T: Element>(b: &CudaBackend, seed: u64) {
    let mut rng = Rng(seed);
    for &(n, v) in &[(6usize, 33usize), (2, 1), (3, 2000)] {
        let x = contiguous(rng.vec(n * v, 4.0), &[n, v]);
        let mut tg: Vec<i32> = (0..n).map(|_| rng.below(v) as i32).collect();
        tg[1] = -100;
        let targets = contiguous(tg, &[n]);
        let xt = to_f(&to_t::<T>(&x.mem));
        for red in REDUCTIONS {
            for eps in [0.0, 0.1, 1.0] {
                let mut cfg = CeConfig::new(eps);
                cfg.reduction = red;
                cfg.scale = 2.0;
                let lo = loss_op(red, &[n]);
                let go = out_op(Layout::contiguous(&[n, v]).unwrap());
                let tl = tol::<T>(2.0, 1.0, zmax(&[&xt], 1.0), v, n);
                let (got, want) = ce_both::<T>(b, &cfg, &x, &targets, &lo, Some(&go));
                agree(
                    &format!("{} ce {red:?} eps={eps} n={n} v={v}", T::NAME),
                    got,
                    want,
                    tl,
                );
            }
        }
    }
    // Strided logits (transposed), broadcast targets, a positive ignore index.
    let (n, v) = (4usize, 9usize);
    let x = Op {
        mem: rng.vec(n * v, 3.0),
        layout: Layout::new(0, &[n, v], &[1, n]).unwrap(),
    };
    let targets = Op {
        mem: vec![3],
        layout: Layout::new(0, &[n], &[0]).unwrap(),
    };
    let xt = to_f(&to_t::<T>(&x.mem));
    for ignore in [-100, 3] {
        let mut cfg = CeConfig::new(0.2);
        cfg.ignore_index = ignore;
        let lo = out_op(Layout::contiguous(&[]).unwrap());
        let go = out_op(Layout::new(2, &[n, v], &[v + 1, 1]).unwrap());
        let tl = tol::<T>(1.0, 1.0, zmax(&[&xt], 1.0), v, n);
        let (got, want) = ce_both::<T>(b, &cfg, &x, &targets, &lo, Some(&go));
        agree(
            &format!("{} ce strided ignore={ignore}", T::NAME),
            got,
            want,
            tl,
        );
    }
}

#[test]
fn cross_entropy_random_every_dtype() {
    let Some(b) = gpu() else { return };
    ce_random::<f32>(b, 21);
    ce_random::<f64>(b, 22);
    ce_random::<f16>(b, 23);
    ce_random::<bf16>(b, 24);
}

#[test]
fn cross_entropy_specials_and_bad_input() {
    let Some(b) = gpu() else { return };
    let (ni, nan, inf) = (f64::NEG_INFINITY, f64::NAN, f64::INFINITY);
    let x = contiguous(
        vec![
            ni, ni, ni, 1.0, ni, 2.0, 1.0, nan, 2.0, 1.0, inf, 2.0, 1e30, 1.0, -1e30, 0.0, 0.0, 0.0,
        ],
        &[6, 3],
    );
    let targets = contiguous(vec![0, 1, 0, 2, 2, -7], &[6]);
    let tl = tol::<f32>(1.0, 1.0, 2.0, 3, 6);
    for red in REDUCTIONS {
        for eps in [0.0, 0.3] {
            let mut cfg = CeConfig::new(eps);
            cfg.reduction = red;
            cfg.ignore_index = -7;
            let lo = loss_op(red, &[6]);
            let go = out_op(Layout::contiguous(&[6, 3]).unwrap());
            let (got, want) = ce_both::<f32>(b, &cfg, &x, &targets, &lo, Some(&go));
            agree(&format!("ce specials {red:?} eps={eps}"), got, want, tl);
            // Every target ignored; no rows.
            let all = contiguous(vec![-7; 6], &[6]);
            let (got, want) = ce_both::<f32>(b, &cfg, &x, &all, &lo, Some(&go));
            agree(&format!("ce all ignored {red:?}"), got, want, tl);
            let e = contiguous(Vec::<f64>::new(), &[0, 3]);
            let te = contiguous(Vec::<i32>::new(), &[0]);
            let lo = loss_op(red, &[0]);
            let go = out_op(Layout::contiguous(&[0, 3]).unwrap());
            let (got, want) = ce_both::<f32>(b, &cfg, &e, &te, &lo, Some(&go));
            agree(&format!("ce empty {red:?}"), got, want, tl);
        }
    }
    // Bad input.
    let lo = out_op(Layout::contiguous(&[]).unwrap());
    let x = contiguous(vec![0.0; 6], &[2, 3]);
    let bad: Vec<(CeConfig, Vec<i32>)> = vec![
        (CeConfig::new(1.5), vec![0, 1]),
        (CeConfig::new(0.1), vec![0, 3]),
        (CeConfig::new(0.1), vec![-1, 0]),
        (
            CeConfig {
                scale: f64::NAN,
                ..CeConfig::new(0.1)
            },
            vec![0, 1],
        ),
    ];
    for (cfg, tg) in bad {
        let targets = contiguous(tg, &[2]);
        let (got, want) = ce_both::<f32>(b, &cfg, &x, &targets, &lo, None);
        assert!(want.is_err());
        agree("ce bad input", got, want, tl);
    }
    let t3 = contiguous(vec![0, 1, 2], &[3]);
    let (got, want) = ce_both::<f32>(b, &CeConfig::new(0.0), &x, &t3, &lo, None);
    assert!(matches!(want, Err(Error::Shape { .. })));
    agree("ce bad targets shape", got, want, tl);
}
