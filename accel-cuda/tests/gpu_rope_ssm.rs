//! The GPU RoPE and state-space kernels against the Reference backend (seqcore's portable
//! kernels), every element type, on seeded random inputs: strided and broadcast (stride 0) views,
//! lengths 0 and 1, special values, and bad input giving the reference's `Err`.
//!
//! What must be exact and what may differ (each bound derived from the computation, never tuned):
//! - `ssm_conv` is the direct causal sum in the same order and roundings as
//!   `seqcore::portable::ssm::conv::conv_direct`: bit for bit equal to it.
//! - `ssm_scan`: the state update is the reference's operations one by one, so the state is bit
//!   for bit equal; `y` differs only by the order of the sum over the `n` modes (a warp
//!   reduction): `|dy| <= floor + 4 (n + 1) ua S + 4u |y|`, `S = sum_n |c_r x_r| + |c_i x_i|`
//!   (each order's error is within `gamma_n S`, doubled by `2 acc`, then one rounding of the skip
//!   sum and one of the store).
//! - `ssm_vandermonde` and `rope`: the same operations as the reference except CUDA's f64
//!   `exp`, `sin`, `cos` (within 2 ulp of libm, whose error is below 1 ulp): see the bounds at
//!   `vandermonde_bound` and `rope_bounds`.
//!
//! Non-finite values must match exactly (NaN for NaN, infinities with their sign). These tests run
//! only where there is a GPU; elsewhere they print SKIPPED and pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    clippy::too_many_arguments,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

mod support;

use core::f64::consts::PI;
use seq_accel_cuda::{CudaBackend, CudaMem};
use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::portable::ssm::conv::conv_direct;
use seqcore::{
    Allocate, Backend, DType, Element, Error, Layout, Reference, View, ViewMut, bf16, f16,
};
use support::rng::Rng;
use support::{down, gpu, up};

// ---- shared helpers ----

fn cvt<T: Element>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn wide<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

fn u_of<T: Element>() -> f64 {
    T::DTYPE.unit_roundoff()
}

fn ua_of<T: Element>() -> f64 {
    T::DTYPE.accumulator().unit_roundoff()
}

/// The absolute floor of conformance's tolerance table (`conformance/src/tolerance.rs`).
fn floor_of<T: Element>() -> f64 {
    match T::DTYPE {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 5.960_464_477_539_063e-8,
        _ => f64::from(f32::MIN_POSITIVE),
    }
}

/// Unit round-off of f64 (the Vandermonde kernel and RoPE's angles work in f64).
const U64: f64 = f64::EPSILON / 2.0;

fn exact(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: gpu {g:e} reference {w:e} (must be equal)"
        );
    }
}

fn close(what: &str, got: &[f64], want: &[f64], bound: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if g.is_finite() && w.is_finite() {
            (g - w).abs() <= bound(i)
        } else {
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
        };
        assert!(
            ok,
            "{what}[{i}]: gpu {g:e} reference {w:e} (bound {:e})",
            bound(i)
        );
    }
}

/// Memory `[T]` on the GPU from f64 values.
fn dev<T: Element>(b: &CudaBackend, v: &[f64]) -> CudaMem<T> {
    up(b, &cvt::<T>(v))
}

/// Runs `f` for every element type.
macro_rules! each_type {
    ($f:ident $(, $a:expr)*) => {
        $f::<f64>($($a),*);
        $f::<f32>($($a),*);
        $f::<f16>($($a),*);
        $f::<bf16>($($a),*);
    };
}

// ---- RoPE ----

#[derive(Clone, Debug)]
enum Pos {
    Offset(u64),
    /// `[L]`.
    Ids1(Vec<u32>),
    /// `[B, L]`, stored `[L, B]` and viewed transposed.
    Ids2(Vec<u32>),
}

#[derive(Clone, Debug)]
struct RopeCase {
    shape: [usize; 4],
    pairs: usize,
    layout: RopeLayout,
    in_place: bool,
    /// 0 head-major, 1 token-major `[B, L, H, D]` viewed transposed, 2 feature stride 2,
    /// 3 `x` broadcast over the heads (stride 0; out of place only, `y` head-major).
    storage: u8,
    pos: Pos,
    factor: f64,
    specials: bool,
    seed: u64,
}

fn rope_layouts(c: &RopeCase) -> ((usize, Layout), (usize, Layout)) {
    let [b, h, l, d] = c.shape;
    let n = b * h * l * d;
    let y = match c.storage {
        1 => (
            n,
            Layout::contiguous(&[b, l, h, d])
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
        ),
        2 => (
            2 * n,
            Layout::new(0, &c.shape, &[2 * h * l * d, 2 * l * d, 2 * d, 2]).unwrap(),
        ),
        _ => (n, Layout::contiguous(&c.shape).unwrap()),
    };
    let x = if c.storage == 3 {
        (
            b * l * d,
            Layout::contiguous(&[b, 1, l, d])
                .unwrap()
                .expand(&c.shape)
                .unwrap(),
        )
    } else {
        y
    };
    (x, y)
}

fn inv_freq(pairs: usize) -> Vec<f64> {
    (0..pairs)
        .map(|i| 10000f64.powf(-2.0 * i as f64 / (2 * pairs.max(1)) as f64))
        .collect()
}

/// The x memory and the initial y memory (the x memory itself in place, a sentinel elsewhere).
fn rope_memory(c: &RopeCase) -> (Vec<f64>, Vec<f64>) {
    let ((nx, _), (ny, _)) = rope_layouts(c);
    let mut rng = Rng(c.seed);
    let mut x = rng.vec_in(nx, -2.0, 2.0);
    if c.specials {
        let sp = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1e30,
            1e-30,
        ];
        for (k, v) in sp.iter().enumerate() {
            if nx > 0 {
                let i = (rng.bits() as usize + k) % nx;
                x[i] = *v;
            }
        }
    }
    let y = if c.in_place {
        x.clone()
    } else {
        vec![-3.0; ny]
    };
    (x, y)
}

fn ids_layout(c: &RopeCase) -> Option<(Vec<u32>, Layout)> {
    let [b, _, l, _] = c.shape;
    match &c.pos {
        Pos::Offset(_) => None,
        Pos::Ids1(v) => Some((v.clone(), Layout::contiguous(&[v.len()]).unwrap())),
        Pos::Ids2(v) => Some((
            v.clone(),
            Layout::contiguous(&[l, b])
                .unwrap()
                .transpose(0, 1)
                .unwrap(),
        )),
    }
}

fn rope_ref<T: Element>(
    c: &RopeCase,
    inv: &[f64],
    xmem: &[f64],
    ymem: &[f64],
) -> Result<Vec<f64>, Error> {
    let ((_, xl), (_, yl)) = rope_layouts(c);
    let xs = cvt::<T>(xmem);
    let mut ys = cvt::<T>(ymem);
    let ids = ids_layout(c);
    let positions = match (&c.pos, &ids) {
        (Pos::Offset(s), _) => RopePositions::<Reference>::Offset(*s),
        (_, Some((v, l))) => RopePositions::Ids(View::new(v.as_slice(), *l)?),
        _ => unreachable!(),
    };
    let x = if c.in_place {
        None
    } else {
        Some(View::<Reference, T>::new(xs.as_slice(), xl)?)
    };
    Reference.rope(
        c.layout,
        inv,
        c.factor,
        positions,
        x,
        ViewMut::new(ys.as_mut_slice(), yl)?,
    )?;
    Ok(wide(&ys))
}

fn rope_gpu<T: Element>(
    b: &CudaBackend,
    c: &RopeCase,
    inv: &[f64],
    xmem: &[f64],
    ymem: &[f64],
) -> Result<Vec<f64>, Error> {
    let ((_, xl), (_, yl)) = rope_layouts(c);
    let xd = dev::<T>(b, xmem);
    let mut yd = dev::<T>(b, ymem);
    let ids = ids_layout(c);
    let idm = ids.as_ref().map(|(v, l)| (up(b, v), *l));
    let positions = match (&c.pos, &idm) {
        (Pos::Offset(s), _) => RopePositions::<CudaBackend>::Offset(*s),
        (_, Some((m, l))) => RopePositions::Ids(View::new(m, *l)?),
        _ => unreachable!(),
    };
    let x = if c.in_place {
        None
    } else {
        Some(View::<CudaBackend, T>::new(&xd, xl)?)
    };
    b.rope(
        c.layout,
        inv,
        c.factor,
        positions,
        x,
        ViewMut::new(&mut yd, yl)?,
    )?;
    Ok(wide(&down(b, &yd)))
}

/// Per element of y's memory: the bound of a rotated element, 0 (exact) elsewhere.
///
/// `c` and `s` are f64 values within about 3 ulp (f64) of the reference's (CUDA's sin / cos
/// within 2 ulp, libm's below 1), so after rounding to the accumulation type they differ by at
/// most 4 units of `ua` relative (one ulp of f32, or 3 ulp of f64), times `|factor|`. The
/// rotation's two products and one sum each round values so perturbed, adding at most one unit
/// each on either side, and the store may round to a neighbouring element of `T`:
/// `|dy| <= floor + 16 ua (|x_a| + |x_b|) |factor| + 2u |y|`.
fn rope_bounds<T: Element>(c: &RopeCase, xmem: &[f64], want: &[f64]) -> Vec<f64> {
    let ((_, xl), (ny, yl)) = rope_layouts(c);
    let xl = if c.in_place { yl } else { xl };
    let mut out = vec![0.0; ny];
    let [bb, hh, ll, _] = c.shape;
    let (a_step, b_off) = match c.layout {
        RopeLayout::Half => (1, c.pairs),
        _ => (2, 1),
    };
    let at = |l: &Layout, ix: [usize; 4]| -> usize {
        l.offset()
            + ix.iter()
                .zip(l.strides())
                .map(|(i, s)| i * s)
                .sum::<usize>()
    };
    let xt: Vec<f64> = xmem.iter().map(|&v| T::from_f64(v).to_f64()).collect();
    for b in 0..bb {
        for h in 0..hh {
            for l in 0..ll {
                for i in 0..c.pairs {
                    let (ia, ib) = (i * a_step, i * a_step + b_off);
                    let (xa, xb) = (xt[at(&xl, [b, h, l, ia])], xt[at(&xl, [b, h, l, ib])]);
                    let m = 16.0 * ua_of::<T>() * (xa.abs() + xb.abs()) * c.factor.abs();
                    for e in [ia, ib] {
                        let o = at(&yl, [b, h, l, e]);
                        out[o] = floor_of::<T>() + m + 2.0 * u_of::<T>() * want[o].abs();
                    }
                }
            }
        }
    }
    out
}

fn rope_check<T: Element>(b: &CudaBackend, c: &RopeCase) {
    let inv = inv_freq(c.pairs);
    let (x, y0) = rope_memory(c);
    let want = rope_ref::<T>(c, &inv, &x, &y0).unwrap();
    let got = rope_gpu::<T>(b, c, &inv, &x, &y0).unwrap();
    let bound = rope_bounds::<T>(c, &x, &want);
    close(&format!("rope {} {c:?}", T::NAME), &got, &want, |i| {
        bound[i]
    });
}

fn rope_cases() -> Vec<RopeCase> {
    let base = RopeCase {
        shape: [2, 3, 5, 8],
        pairs: 4,
        layout: RopeLayout::Half,
        in_place: false,
        storage: 0,
        pos: Pos::Offset(0),
        factor: 1.0,
        specials: false,
        seed: 1,
    };
    let mut v = Vec::new();
    let mut seed = 100;
    for layout in [RopeLayout::Half, RopeLayout::Interleaved] {
        for storage in 0..4u8 {
            for in_place in [false, true] {
                if in_place && storage == 3 {
                    continue;
                }
                for (pairs, d) in [(4, 8), (3, 10), (1, 6), (0, 4), (32, 64)] {
                    for pos in [
                        Pos::Offset(0),
                        Pos::Offset((1 << 24) + 3),
                        Pos::Ids1(vec![7, 0, 1 << 20, 3, 65_537]),
                        Pos::Ids2((0..10).map(|i| i * 1_000_003 % 40_000_000).collect()),
                    ] {
                        seed += 1;
                        v.push(RopeCase {
                            shape: [2, 3, 5, d],
                            pairs,
                            layout,
                            in_place,
                            storage,
                            pos,
                            factor: if seed % 3 == 0 { 1.25 } else { 1.0 },
                            specials: seed % 5 == 0,
                            seed,
                        });
                    }
                }
            }
        }
    }
    // Lengths 0 and 1, an empty batch, one head, a long frequency table (uploaded, not inline).
    for shape in [[1, 1, 1, 2], [2, 3, 0, 8], [0, 3, 5, 8], [1, 1, 1, 1]] {
        v.push(RopeCase {
            shape,
            pairs: shape[3] / 2,
            ..base.clone()
        });
    }
    for (pairs, in_place) in [(300, false), (300, true), (256, false), (257, false)] {
        v.push(RopeCase {
            shape: [1, 2, 3, 2 * pairs + 3],
            pairs,
            in_place,
            pos: Pos::Offset(12_345),
            ..base.clone()
        });
    }
    // Many rows: more items than one grid pass of 65535 blocks covers is not needed for
    // correctness of a grid-stride loop, but a longer run exercises it.
    v.push(RopeCase {
        shape: [4, 8, 257, 64],
        pairs: 32,
        seed: 9,
        ..base
    });
    v
}

#[test]
fn rope_matches_reference() {
    let Some(b) = gpu() else { return };
    for c in rope_cases() {
        each_type!(rope_check, b, &c);
    }
}

#[test]
fn rope_bad_input_gives_the_reference_error() {
    let Some(b) = gpu() else { return };
    let base = RopeCase {
        shape: [1, 2, 3, 8],
        pairs: 4,
        layout: RopeLayout::Half,
        in_place: false,
        storage: 0,
        pos: Pos::Offset(0),
        factor: 1.0,
        specials: false,
        seed: 3,
    };
    let (x, y0) = rope_memory(&base);
    let cases: Vec<(RopeCase, Vec<f64>)> = vec![
        // more than D/2 frequencies
        (base.clone(), inv_freq(5)),
        // a frequency not finite
        (base.clone(), vec![1.0, f64::NAN, 0.5, 0.25]),
        // attention factor not finite
        (
            RopeCase {
                factor: f64::INFINITY,
                ..base.clone()
            },
            inv_freq(4),
        ),
        // start + L overflows
        (
            RopeCase {
                pos: Pos::Offset(u64::MAX - 1),
                ..base.clone()
            },
            inv_freq(4),
        ),
        // ids of the wrong length
        (
            RopeCase {
                pos: Pos::Ids1(vec![0, 1]),
                ..base.clone()
            },
            inv_freq(4),
        ),
    ];
    for (c, inv) in &cases {
        let (x, y0) = if matches!(c.pos, Pos::Ids1(_)) {
            (x.clone(), y0.clone())
        } else {
            rope_memory(c)
        };
        let want = rope_ref::<f32>(c, inv, &x, &y0).unwrap_err();
        let got = rope_gpu::<f32>(b, c, inv, &x, &y0).unwrap_err();
        assert_eq!(got, want, "{c:?}");
    }
    // x of another shape than y; y of rank 3.
    let xs = cvt::<f32>(&x);
    let mut ys = cvt::<f32>(&y0);
    let want = Reference
        .rope(
            RopeLayout::Half,
            &inv_freq(4),
            1.0,
            RopePositions::<Reference>::Offset(0),
            Some(Reference.view(&xs[..24], &[1, 3, 1, 8]).unwrap()),
            Reference.view_mut(&mut ys, &[1, 2, 3, 8]).unwrap(),
        )
        .unwrap_err();
    let xd = up(b, &xs);
    let mut yd = up(b, &cvt::<f32>(&y0));
    let got = b
        .rope(
            RopeLayout::Half,
            &inv_freq(4),
            1.0,
            RopePositions::<CudaBackend>::Offset(0),
            Some(View::new(&xd, Layout::contiguous(&[1, 3, 1, 8]).unwrap()).unwrap()),
            b.view_mut(&mut yd, &[1, 2, 3, 8]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(got, want);
    let want = Reference
        .rope(
            RopeLayout::Interleaved,
            &inv_freq(4),
            1.0,
            RopePositions::<Reference>::Offset(0),
            None,
            Reference.view_mut(&mut ys, &[6, 8]).unwrap(),
        )
        .unwrap_err();
    let got = b
        .rope(
            RopeLayout::Interleaved,
            &inv_freq(4),
            1.0,
            RopePositions::<CudaBackend>::Offset(0),
            None,
            b.view_mut(&mut yd, &[6, 8]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(got, want);
}

// ---- SSM operands ----

/// How a `[H, N, 2]` operand is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Store {
    /// Row-major.
    Dense,
    /// Stored `[N, H, 2]`, viewed transposed.
    Transposed,
    /// One `[1, N, 2]` row expanded over the channels (stride 0).
    Broadcast,
}

/// Memory and layout of a `[H, N, 2]` operand, each complex number from `make`.
fn hn2(
    rng: &mut Rng,
    st: Store,
    h: usize,
    n: usize,
    mut make: impl FnMut(&mut Rng) -> (f64, f64),
) -> (Vec<f64>, Layout) {
    let (count, layout) = match st {
        Store::Dense => (h * n, Layout::contiguous(&[h, n, 2]).unwrap()),
        Store::Transposed => (
            h * n,
            Layout::contiguous(&[n, h, 2])
                .unwrap()
                .transpose(0, 1)
                .unwrap(),
        ),
        Store::Broadcast => (
            n,
            Layout::contiguous(&[1, n, 2])
                .unwrap()
                .expand(&[h, n, 2])
                .unwrap(),
        ),
    };
    let mut m = Vec::with_capacity(2 * count);
    for _ in 0..count {
        let (re, im) = make(rng);
        m.push(re);
        m.push(im);
    }
    (m, layout)
}

/// A stable pole `r e^{i theta}`, `r` in [0.5, 0.999].
fn pole(rng: &mut Rng) -> (f64, f64) {
    let (r, t) = (rng.unif(0.5, 0.999), rng.unif(-PI, PI));
    (r * t.cos(), r * t.sin())
}

fn unit(rng: &mut Rng) -> (f64, f64) {
    (rng.unif(-1.0, 1.0), rng.unif(-1.0, 1.0))
}

/// `[L, H]` memory and layout: dense, or stored `[H, L]` viewed transposed.
fn lh(rng: &mut Rng, transposed: bool, l: usize, h: usize) -> (Vec<f64>, Layout) {
    let m = rng.vec_in(l * h, -1.0, 1.0);
    let layout = if transposed {
        Layout::contiguous(&[h, l])
            .unwrap()
            .transpose(0, 1)
            .unwrap()
    } else {
        Layout::contiguous(&[l, h]).unwrap()
    };
    (m, layout)
}

/// An `[L, H]` output: dense, or every other element (stride 2 along `h`), sentinels between.
fn out_lh(strided: bool, l: usize, h: usize) -> (Vec<f64>, Layout) {
    if strided {
        (
            vec![-7.0; 2 * l * h],
            Layout::new(0, &[l, h], &[2 * h, 2]).unwrap(),
        )
    } else {
        (vec![-7.0; l * h], Layout::contiguous(&[l, h]).unwrap())
    }
}

// ---- ssm_scan ----

#[derive(Clone, Debug)]
struct ScanCase {
    h: usize,
    n: usize,
    l: usize,
    with_y: bool,
    strided: bool,
    /// A NaN in `u` (channel 0), an infinity in `abar` of the last channel.
    specials: bool,
    seed: u64,
}

struct ScanData {
    a: (Vec<f64>, Layout),
    bb: (Vec<f64>, Layout),
    c: (Vec<f64>, Layout),
    d: (Vec<f64>, Layout),
    u: (Vec<f64>, Layout),
    s: (Vec<f64>, Layout),
    y: (Vec<f64>, Layout),
}

fn scan_data(k: &ScanCase) -> ScanData {
    let mut rng = Rng(k.seed);
    let (sa, sb, ss) = if k.strided {
        (Store::Transposed, Store::Broadcast, Store::Transposed)
    } else {
        (Store::Dense, Store::Dense, Store::Dense)
    };
    let mut a = hn2(&mut rng, sa, k.h, k.n, pole);
    let bb = hn2(&mut rng, sb, k.h, k.n, unit);
    let c = hn2(&mut rng, Store::Dense, k.h, k.n, unit);
    let s = hn2(&mut rng, ss, k.h, k.n, |r| {
        let (x, y) = unit(r);
        (0.5 * x, 0.5 * y)
    });
    let d = if k.strided {
        (
            vec![rng.unif(-1.0, 1.0)],
            Layout::contiguous(&[1]).unwrap().expand(&[k.h]).unwrap(),
        )
    } else {
        (
            rng.vec_in(k.h, -1.0, 1.0),
            Layout::contiguous(&[k.h]).unwrap(),
        )
    };
    let mut u = lh(&mut rng, k.strided, k.l, k.h);
    if k.specials && k.l > 1 && k.h > 0 {
        // u[1, 0] = NaN; abar[h-1, 0] real part = inf.
        let o = u.1.offset() + u.1.strides()[0];
        u.0[o] = f64::NAN;
        if k.n > 0 {
            let o = a.1.offset() + (k.h - 1) * a.1.strides()[0];
            a.0[o] = f64::INFINITY;
        }
    }
    let y = out_lh(k.strided, k.l, k.h);
    ScanData {
        a,
        bb,
        c,
        d,
        u,
        s,
        y,
    }
}

/// The reference, one token at a time (what it computes for the whole sequence: its tokens are
/// sequential), returning y's memory, the final state's memory and `S[t, h]` for the bound.
fn scan_ref<T: Element>(k: &ScanCase, dd: &ScanData) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let r = Reference;
    let acc = |v: &[f64]| cvt::<T::Acc>(v);
    let (a, bb, c, d) = (acc(&dd.a.0), acc(&dd.bb.0), acc(&dd.c.0), acc(&dd.d.0));
    let u = cvt::<T>(&dd.u.0);
    let mut s = acc(&dd.s.0);
    let mut y = cvt::<T>(&dd.y.0);
    let mut big_s = vec![0.0; k.l * k.h];
    for t in 0..k.l {
        let ut = dd.u.1.narrow(0, t, 1).unwrap();
        let yt = dd.y.1.narrow(0, t, 1).unwrap();
        r.ssm_scan::<T>(
            View::new(a.as_slice(), dd.a.1).unwrap(),
            View::new(bb.as_slice(), dd.bb.1).unwrap(),
            View::new(c.as_slice(), dd.c.1).unwrap(),
            View::new(d.as_slice(), dd.d.1).unwrap(),
            View::new(u.as_slice(), ut).unwrap(),
            ViewMut::new(s.as_mut_slice(), dd.s.1).unwrap(),
            if k.with_y {
                Some(ViewMut::new(y.as_mut_slice(), yt).unwrap())
            } else {
                None
            },
        )
        .unwrap();
        let (cl, sl) = (&dd.c.1, &dd.s.1);
        for hh in 0..k.h {
            let mut sum = 0.0;
            for nn in 0..k.n {
                let at = |l: &Layout, j: usize| {
                    l.offset() + hh * l.strides()[0] + nn * l.strides()[1] + j * l.strides()[2]
                };
                let (cr, ci) = (c[at(cl, 0)].to_f64(), c[at(cl, 1)].to_f64());
                let (xr, xi) = (s[at(sl, 0)].to_f64(), s[at(sl, 1)].to_f64());
                sum += (cr * xr).abs() + (ci * xi).abs();
            }
            big_s[t * k.h + hh] = sum;
        }
    }
    (wide(&y), wide(&s), big_s)
}

fn scan_gpu<T: Element>(b: &CudaBackend, k: &ScanCase, dd: &ScanData) -> (Vec<f64>, Vec<f64>) {
    let (a, bb, c, d) = (
        dev::<T::Acc>(b, &dd.a.0),
        dev::<T::Acc>(b, &dd.bb.0),
        dev::<T::Acc>(b, &dd.c.0),
        dev::<T::Acc>(b, &dd.d.0),
    );
    let u = dev::<T>(b, &dd.u.0);
    let mut s = dev::<T::Acc>(b, &dd.s.0);
    let mut y = dev::<T>(b, &dd.y.0);
    b.ssm_scan::<T>(
        View::new(&a, dd.a.1).unwrap(),
        View::new(&bb, dd.bb.1).unwrap(),
        View::new(&c, dd.c.1).unwrap(),
        View::new(&d, dd.d.1).unwrap(),
        View::new(&u, dd.u.1).unwrap(),
        ViewMut::new(&mut s, dd.s.1).unwrap(),
        if k.with_y {
            Some(ViewMut::new(&mut y, dd.y.1).unwrap())
        } else {
            None
        },
    )
    .unwrap();
    (wide(&down(b, &y)), wide(&down(b, &s)))
}

fn scan_check<T: Element>(b: &CudaBackend, k: &ScanCase) {
    let dd = scan_data(k);
    let (yw, sw, big_s) = scan_ref::<T>(k, &dd);
    let (yg, sg) = scan_gpu::<T>(b, k, &dd);
    let what = format!("ssm_scan {} {k:?}", T::NAME);
    exact(&format!("{what} state"), &sg, &sw);
    // y's memory: written elements within the bound, the sentinels between them untouched.
    let mut bound = vec![0.0; yw.len()];
    if k.with_y {
        let yl = &dd.y.1;
        for t in 0..k.l {
            for hh in 0..k.h {
                let o = yl.offset() + t * yl.strides()[0] + hh * yl.strides()[1];
                bound[o] = floor_of::<T>()
                    + 4.0 * (k.n as f64 + 1.0) * ua_of::<T>() * big_s[t * k.h + hh]
                    + 4.0 * u_of::<T>() * yw[o].abs();
            }
        }
    }
    close(&format!("{what} y"), &yg, &yw, |i| bound[i]);
}

#[test]
fn ssm_scan_matches_reference() {
    let Some(b) = gpu() else { return };
    let mut seed = 500;
    for (h, n, l) in [
        (3, 5, 17),
        (2, 40, 9),
        (70, 3, 5),
        (1, 1, 1),
        (4, 64, 33),
        (0, 4, 3),
        (3, 0, 4),
        (3, 4, 0),
        (5, 33, 1),
    ] {
        for with_y in [true, false] {
            for strided in [false, true] {
                for specials in [false, true] {
                    seed += 1;
                    let k = ScanCase {
                        h,
                        n,
                        l,
                        with_y,
                        strided,
                        specials,
                        seed,
                    };
                    each_type!(scan_check, b, &k);
                }
            }
        }
    }
}

#[test]
fn ssm_scan_bad_input_gives_the_reference_error() {
    let Some(b) = gpu() else { return };
    let (h, n, l) = (3usize, 4usize, 5usize);
    let hn = [h, n, 2];
    // (abar, bbar, c, d, u, state, y) shapes; each case breaks one.
    let cases: Vec<[Vec<usize>; 7]> = vec![
        [
            vec![h, n, 3],
            hn.to_vec(),
            hn.to_vec(),
            vec![h],
            vec![l, h],
            hn.to_vec(),
            vec![l, h],
        ],
        [
            vec![h, n],
            hn.to_vec(),
            hn.to_vec(),
            vec![h],
            vec![l, h],
            hn.to_vec(),
            vec![l, h],
        ],
        [
            hn.to_vec(),
            vec![h, n + 1, 2],
            hn.to_vec(),
            vec![h],
            vec![l, h],
            hn.to_vec(),
            vec![l, h],
        ],
        [
            hn.to_vec(),
            hn.to_vec(),
            vec![h + 1, n, 2],
            vec![h],
            vec![l, h],
            hn.to_vec(),
            vec![l, h],
        ],
        [
            hn.to_vec(),
            hn.to_vec(),
            hn.to_vec(),
            vec![h + 1],
            vec![l, h],
            hn.to_vec(),
            vec![l, h],
        ],
        [
            hn.to_vec(),
            hn.to_vec(),
            hn.to_vec(),
            vec![h],
            vec![l * h],
            hn.to_vec(),
            vec![l, h],
        ],
        [
            hn.to_vec(),
            hn.to_vec(),
            hn.to_vec(),
            vec![h],
            vec![l, h + 1],
            hn.to_vec(),
            vec![l, h],
        ],
        [
            hn.to_vec(),
            hn.to_vec(),
            hn.to_vec(),
            vec![h],
            vec![l, h],
            vec![h, n, 1],
            vec![l, h],
        ],
        [
            hn.to_vec(),
            hn.to_vec(),
            hn.to_vec(),
            vec![h],
            vec![l, h],
            hn.to_vec(),
            vec![l + 1, h],
        ],
    ];
    let big = vec![0.5f32; 64];
    let bigd = up(b, &big);
    for sh in &cases {
        let mut s = big.clone();
        let mut y = big.clone();
        let r = Reference;
        let want = r
            .ssm_scan::<f32>(
                r.view(&big, &sh[0]).unwrap(),
                r.view(&big, &sh[1]).unwrap(),
                r.view(&big, &sh[2]).unwrap(),
                r.view(&big, &sh[3]).unwrap(),
                r.view(&big, &sh[4]).unwrap(),
                r.view_mut(&mut s, &sh[5]).unwrap(),
                Some(r.view_mut(&mut y, &sh[6]).unwrap()),
            )
            .unwrap_err();
        let mut sd = up(b, &big);
        let mut yd = up(b, &big);
        let got = b
            .ssm_scan::<f32>(
                b.view(&bigd, &sh[0]).unwrap(),
                b.view(&bigd, &sh[1]).unwrap(),
                b.view(&bigd, &sh[2]).unwrap(),
                b.view(&bigd, &sh[3]).unwrap(),
                b.view(&bigd, &sh[4]).unwrap(),
                b.view_mut(&mut sd, &sh[5]).unwrap(),
                Some(b.view_mut(&mut yd, &sh[6]).unwrap()),
            )
            .unwrap_err();
        assert_eq!(got, want, "{sh:?}");
    }
}

// ---- ssm_vandermonde ----

#[derive(Clone, Debug)]
struct VdmCase {
    h: usize,
    n: usize,
    l: usize,
    with_v: bool,
    strided: bool,
    /// A NaN in `log_z` of channel 0.
    specials: bool,
    seed: u64,
}

struct VdmData {
    z: (Vec<f64>, Layout),
    w: (Vec<f64>, Layout),
    v: (Vec<f64>, Layout),
    k: (Vec<f64>, Layout),
}

fn vdm_data(c: &VdmCase) -> VdmData {
    let mut rng = Rng(c.seed);
    let (sz, sw) = if c.strided {
        (Store::Transposed, Store::Broadcast)
    } else {
        (Store::Dense, Store::Dense)
    };
    let mut z = hn2(&mut rng, sz, c.h, c.n, |r| {
        (r.unif(0.5f64, 0.999).ln(), r.unif(-PI, PI))
    });
    let w = hn2(&mut rng, sw, c.h, c.n, unit);
    let v = hn2(&mut rng, Store::Dense, c.h, c.n, unit);
    if c.specials && c.h > 0 && c.n > 0 {
        let o = z.1.offset();
        z.0[o] = f64::NAN;
    }
    // k [H, L]: dense, or stored [L, H] viewed transposed.
    let k = if c.strided {
        (
            vec![-7.0; c.h * c.l],
            Layout::contiguous(&[c.l, c.h])
                .unwrap()
                .transpose(0, 1)
                .unwrap(),
        )
    } else {
        (
            vec![-7.0; c.h * c.l],
            Layout::contiguous(&[c.h, c.l]).unwrap(),
        )
    };
    VdmData { z, w, v, k }
}

fn vdm_ref<T: Element>(c: &VdmCase, dd: &VdmData) -> Vec<f64> {
    let acc = |v: &[f64]| cvt::<T::Acc>(v);
    let (z, w, v) = (acc(&dd.z.0), acc(&dd.w.0), acc(&dd.v.0));
    let mut k = cvt::<T>(&dd.k.0);
    Reference
        .ssm_vandermonde::<T>(
            View::new(z.as_slice(), dd.z.1).unwrap(),
            View::new(w.as_slice(), dd.w.1).unwrap(),
            c.with_v.then(|| View::new(v.as_slice(), dd.v.1).unwrap()),
            ViewMut::new(k.as_mut_slice(), dd.k.1).unwrap(),
        )
        .unwrap();
    wide(&k)
}

fn vdm_gpu<T: Element>(b: &CudaBackend, c: &VdmCase, dd: &VdmData) -> Vec<f64> {
    let (z, w, v) = (
        dev::<T::Acc>(b, &dd.z.0),
        dev::<T::Acc>(b, &dd.w.0),
        dev::<T::Acc>(b, &dd.v.0),
    );
    let mut k = dev::<T>(b, &dd.k.0);
    b.ssm_vandermonde::<T>(
        View::new(&z, dd.z.1).unwrap(),
        View::new(&w, dd.w.1).unwrap(),
        c.with_v.then(|| View::new(&v, dd.v.1).unwrap()),
        ViewMut::new(&mut k, dd.k.1).unwrap(),
    )
    .unwrap();
    wide(&down(b, &k))
}

/// The bound of `k[h, l]`: both sides run the same f64 operations from values of
/// `exp(log_z)` and `exp(l0 log_z)` that differ by a few f64 ulp (CUDA's exp, sin, cos within
/// 2 ulp of libm's); each of the following products rounds the perturbed values once more. So the
/// bound of conformance's `ssm_kernel` row (`bound_kernel`), with f64's unit round-off:
/// `2 u64 sum_n 2 |w v| |z|^l (4 (1 + l |log z|) + 132)`, plus the store to `T` (a neighbouring
/// element: `2u |k|`).
fn vandermonde_bound<T: Element>(c: &VdmCase, dd: &VdmData, hh: usize, l: usize, want: f64) -> f64 {
    let mut s = 0.0;
    let at = |lay: &Layout, nn: usize, j: usize| {
        lay.offset() + hh * lay.strides()[0] + nn * lay.strides()[1] + j * lay.strides()[2]
    };
    let r = |x: f64| T::Acc::from_f64(x).to_f64();
    for nn in 0..c.n {
        let (lr, li) = (r(dd.z.0[at(&dd.z.1, nn, 0)]), r(dd.z.0[at(&dd.z.1, nn, 1)]));
        let (wr, wi) = (r(dd.w.0[at(&dd.w.1, nn, 0)]), r(dd.w.0[at(&dd.w.1, nn, 1)]));
        let mut wm = wr.hypot(wi);
        if c.with_v {
            wm *= r(dd.v.0[at(&dd.v.1, nn, 0)]).hypot(r(dd.v.0[at(&dd.v.1, nn, 1)]));
        }
        let lf = l as f64;
        s += 2.0 * wm * (lf * lr).exp() * (4.0 * (1.0 + lf * lr.hypot(li)) + 132.0);
    }
    floor_of::<T>() + 2.0 * U64 * s + 2.0 * u_of::<T>() * want.abs()
}

fn vdm_check<T: Element>(b: &CudaBackend, c: &VdmCase) {
    let dd = vdm_data(c);
    let want = vdm_ref::<T>(c, &dd);
    let got = vdm_gpu::<T>(b, c, &dd);
    let mut bound = vec![0.0; want.len()];
    let kl = &dd.k.1;
    for hh in 0..c.h {
        for l in 0..c.l {
            let o = kl.offset() + hh * kl.strides()[0] + l * kl.strides()[1];
            bound[o] = vandermonde_bound::<T>(c, &dd, hh, l, want[o]);
        }
    }
    close(
        &format!("ssm_vandermonde {} {c:?}", T::NAME),
        &got,
        &want,
        |i| bound[i],
    );
}

#[test]
fn ssm_vandermonde_matches_reference() {
    let Some(b) = gpu() else { return };
    let mut seed = 900;
    for (h, n, l) in [
        (3, 4, 150),
        (2, 40, 70),
        (1, 1, 1),
        (5, 3, 64),
        (4, 2, 65),
        (0, 3, 4),
        (3, 0, 5),
        (3, 4, 0),
        (64, 16, 300),
    ] {
        for with_v in [false, true] {
            for strided in [false, true] {
                for specials in [false, true] {
                    seed += 1;
                    let c = VdmCase {
                        h,
                        n,
                        l,
                        with_v,
                        strided,
                        specials,
                        seed,
                    };
                    each_type!(vdm_check, b, &c);
                }
            }
        }
    }
}

#[test]
fn ssm_vandermonde_bad_input_gives_the_reference_error() {
    let Some(b) = gpu() else { return };
    // (log_z, w, v, k) shapes; each case breaks one.
    let cases: Vec<[Vec<usize>; 4]> = vec![
        [vec![2, 3], vec![2, 3, 2], vec![2, 3, 2], vec![2, 4]],
        [vec![2, 3, 3], vec![2, 3, 2], vec![2, 3, 2], vec![2, 4]],
        [vec![2, 3, 2], vec![2, 4, 2], vec![2, 3, 2], vec![2, 4]],
        [vec![2, 3, 2], vec![2, 3, 2], vec![2, 3, 2], vec![8]],
        [vec![2, 3, 2], vec![2, 3, 2], vec![2, 3, 2], vec![3, 4]],
        [vec![2, 3, 2], vec![2, 3, 2], vec![1, 3, 2], vec![2, 4]],
    ];
    let big = vec![0.5f32; 64];
    let bigd = up(b, &big);
    for sh in &cases {
        let r = Reference;
        let mut k = big.clone();
        let want = r
            .ssm_vandermonde::<f32>(
                r.view(&big, &sh[0]).unwrap(),
                r.view(&big, &sh[1]).unwrap(),
                Some(r.view(&big, &sh[2]).unwrap()),
                r.view_mut(&mut k, &sh[3]).unwrap(),
            )
            .unwrap_err();
        let mut kd = up(b, &big);
        let got = b
            .ssm_vandermonde::<f32>(
                b.view(&bigd, &sh[0]).unwrap(),
                b.view(&bigd, &sh[1]).unwrap(),
                Some(b.view(&bigd, &sh[2]).unwrap()),
                b.view_mut(&mut kd, &sh[3]).unwrap(),
            )
            .unwrap_err();
        assert_eq!(got, want, "{sh:?}");
    }
}

// ---- ssm_conv ----

#[derive(Clone, Debug)]
struct ConvCase {
    h: usize,
    l: usize,
    with_d: bool,
    /// `k` stored `[L, H]` viewed transposed, `u` one column broadcast over the channels, `y`
    /// with stride 2.
    strided: bool,
    /// A NaN in `u` at token 1 of channel 0 (carried causally by the direct sum), an infinity in
    /// `k` of the last channel.
    specials: bool,
    seed: u64,
}

struct ConvData {
    k: (Vec<f64>, Layout),
    u: (Vec<f64>, Layout),
    d: (Vec<f64>, Layout),
    y: (Vec<f64>, Layout),
}

fn conv_data(c: &ConvCase) -> ConvData {
    let mut rng = Rng(c.seed);
    let (h, l) = (c.h, c.l);
    let mut k = if c.strided {
        (
            rng.vec_in(h * l, -1.0, 1.0),
            Layout::contiguous(&[l, h])
                .unwrap()
                .transpose(0, 1)
                .unwrap(),
        )
    } else {
        (
            rng.vec_in(h * l, -1.0, 1.0),
            Layout::contiguous(&[h, l]).unwrap(),
        )
    };
    let mut u = if c.strided {
        (
            rng.vec_in(l, -1.0, 1.0),
            Layout::contiguous(&[l, 1])
                .unwrap()
                .expand(&[l, h])
                .unwrap(),
        )
    } else {
        (
            rng.vec_in(l * h, -1.0, 1.0),
            Layout::contiguous(&[l, h]).unwrap(),
        )
    };
    let d = (rng.vec_in(h, -1.0, 1.0), Layout::contiguous(&[h]).unwrap());
    if c.specials && l > 1 && h > 0 {
        let o = u.1.offset() + u.1.strides()[0];
        u.0[o] = f64::NAN;
        let o = k.1.offset() + (h - 1) * k.1.strides()[0];
        k.0[o] = f64::INFINITY;
    }
    let y = out_lh(c.strided, l, h);
    ConvData { k, u, d, y }
}

fn conv_check<T: Element>(b: &CudaBackend, c: &ConvCase) {
    let dd = conv_data(c);
    let (kt, ut, dt) = (cvt::<T>(&dd.k.0), cvt::<T>(&dd.u.0), cvt::<T::Acc>(&dd.d.0));
    let mut want = cvt::<T>(&dd.y.0);
    conv_direct::<T>(
        View::new(kt.as_slice(), dd.k.1).unwrap(),
        View::new(ut.as_slice(), dd.u.1).unwrap(),
        c.with_d.then(|| View::new(dt.as_slice(), dd.d.1).unwrap()),
        ViewMut::new(want.as_mut_slice(), dd.y.1).unwrap(),
    )
    .unwrap();
    let (kd, ud, ddv) = (up(b, &kt), up(b, &ut), up(b, &dt));
    let mut yd = dev::<T>(b, &dd.y.0);
    let wl = b.ssm_conv_workspace_len(c.h, c.l).unwrap();
    assert_eq!(wl, 0);
    let mut ws = b.alloc::<T::Acc>(wl).unwrap();
    b.ssm_conv::<T>(
        View::new(&kd, dd.k.1).unwrap(),
        View::new(&ud, dd.u.1).unwrap(),
        c.with_d.then(|| View::new(&ddv, dd.d.1).unwrap()),
        ViewMut::new(&mut yd, dd.y.1).unwrap(),
        b.view_mut(&mut ws, &[wl]).unwrap(),
    )
    .unwrap();
    exact(
        &format!("ssm_conv {} {c:?}", T::NAME),
        &wide(&down(b, &yd)),
        &wide(&want),
    );
}

#[test]
fn ssm_conv_is_the_direct_sum() {
    let Some(b) = gpu() else { return };
    let mut seed = 1300;
    for (h, l) in [
        (3, 50),
        (1, 1),
        (0, 4),
        (5, 0),
        (33, 300),
        (2, 1000),
        (300, 70),
    ] {
        for with_d in [true, false] {
            for strided in [false, true] {
                for specials in [false, true] {
                    seed += 1;
                    let c = ConvCase {
                        h,
                        l,
                        with_d,
                        strided,
                        specials,
                        seed,
                    };
                    each_type!(conv_check, b, &c);
                }
            }
        }
    }
}

#[test]
fn ssm_conv_bad_input_gives_the_reference_error() {
    let Some(b) = gpu() else { return };
    let big = vec![0.5f32; 256];
    let bigd = up(b, &big);
    // (k, u, d, y) shapes; each case breaks one.
    let cases: Vec<[Vec<usize>; 4]> = vec![
        [vec![3, 5, 1], vec![5, 3], vec![3], vec![5, 3]],
        [vec![3, 5], vec![5, 4], vec![3], vec![5, 3]],
        [vec![3, 5], vec![5, 3], vec![4], vec![5, 3]],
        [vec![3, 5], vec![5, 3], vec![3], vec![3, 5]],
    ];
    for sh in &cases {
        let r = Reference;
        let mut y = big.clone();
        let mut ws = vec![0.0f32; 256];
        let want = r
            .ssm_conv::<f32>(
                r.view(&big, &sh[0]).unwrap(),
                r.view(&big, &sh[1]).unwrap(),
                Some(r.view(&big, &sh[2]).unwrap()),
                r.view_mut(&mut y, &sh[3]).unwrap(),
                r.view_mut(&mut ws, &[256]).unwrap(),
            )
            .unwrap_err();
        let mut yd = up(b, &big);
        let mut wsd = up(b, &big);
        let got = b
            .ssm_conv::<f32>(
                b.view(&bigd, &sh[0]).unwrap(),
                b.view(&bigd, &sh[1]).unwrap(),
                Some(b.view(&bigd, &sh[2]).unwrap()),
                b.view_mut(&mut yd, &sh[3]).unwrap(),
                b.view_mut(&mut wsd, &[256]).unwrap(),
            )
            .unwrap_err();
        assert_eq!(got, want, "{sh:?}");
    }
    // A workspace that is not a contiguous rank-1 view: the same `Param` error.
    let r = Reference;
    let mut y = big.clone();
    let mut ws = vec![0.0f32; 256];
    let want = r
        .ssm_conv::<f32>(
            r.view(&big, &[3, 5]).unwrap(),
            r.view(&big, &[5, 3]).unwrap(),
            None,
            r.view_mut(&mut y, &[5, 3]).unwrap(),
            r.view_mut(&mut ws, &[16, 16]).unwrap(),
        )
        .unwrap_err();
    let mut yd = up(b, &big);
    let mut wsd = up(b, &big);
    let got = b
        .ssm_conv::<f32>(
            b.view(&bigd, &[3, 5]).unwrap(),
            b.view(&bigd, &[5, 3]).unwrap(),
            None,
            b.view_mut(&mut yd, &[5, 3]).unwrap(),
            b.view_mut(&mut wsd, &[16, 16]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(got, want);
    assert!(matches!(
        got,
        Error::Param {
            arg: "workspace",
            ..
        }
    ));
}
