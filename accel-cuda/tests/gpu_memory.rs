//! The linear-memory kernels (`linear_memory_recurrent`, `linear_memory_chunkwise`) on a real GPU
//! against seqcore's reference recurrence in f64 on the same (rounded) inputs. On a machine
//! without a GPU every test prints `SKIPPED` and passes.
//!
//! Tolerance: the conformance suite's rule for linear attention / DeltaNet
//! (`conformance/src/mechanisms/memory/properties.rs`, A2 of the numerics notes, fla's ceiling):
//! relative L2 `r` = 1e-12 in f64, 1e-5 in f32, 5e-3 in f16 and bf16, checked per element as
//! `|a - b| <= floor + r max|b| + 2u |b|` (`b` the f64 reference rounded to the stored type) and
//! as the normalised error `sum (a-b)^2 / sum b^2 <= r^2`. The state is held in the accumulation
//! type, so it is checked with that type's `r` (f32's for f16 and bf16).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

mod support;

use seq_accel_cuda::{CudaBackend, CudaMem};
use seqcore::portable::linear_memory::{FeatureMap, LinearMemorySpec, MemoryInputs, MemoryRule};
use seqcore::{
    Allocate, Backend, DType, Element, Error, Layout, Reference, View, ViewMut, bf16, f16,
};
use support::rng::Rng;
use support::{down, gpu, up};

#[derive(Clone, Copy, Debug)]
struct Case {
    rule: MemoryRule,
    phi: FeatureMap,
    beta: bool,
    decay: bool,
    /// `L, H, Dk, Dv`.
    dims: [usize; 4],
    /// Strided, offset, transposed and broadcast views instead of contiguous ones.
    strided: bool,
    with_o: bool,
    /// Every log-decay -20 (a = 2e-9) instead of random in (-1, 0).
    strong_decay: bool,
    seed: u64,
}

impl Case {
    fn spec(&self) -> LinearMemorySpec {
        LinearMemorySpec {
            rule: self.rule,
            feature_map: self.phi,
        }
    }
}

/// The layouts of a case: `q, k, v, beta, g, state, o`.
struct Lays {
    q: Layout,
    k: Layout,
    v: Layout,
    beta: Layout,
    g: Layout,
    s: Layout,
    o: Layout,
}

fn layouts(c: &Case) -> Lays {
    let [l, h, dk, dv] = c.dims;
    if !c.strided {
        return Lays {
            q: Layout::contiguous(&[l, h, dk]).unwrap(),
            k: Layout::contiguous(&[l, h, dk]).unwrap(),
            v: Layout::contiguous(&[l, h, dv]).unwrap(),
            beta: Layout::contiguous(&[l, h]).unwrap(),
            g: Layout::contiguous(&[l, h]).unwrap(),
            s: Layout::contiguous(&[h, dv, dk]).unwrap(),
            o: Layout::contiguous(&[l, h, dv]).unwrap(),
        };
    }
    Lays {
        // stored [H, L, Dk] from offset 2
        q: Layout::contiguous_at(2, &[h, l, dk])
            .unwrap()
            .transpose(0, 1)
            .unwrap(),
        // one key per token, broadcast over the heads
        k: Layout::new(1, &[l, h, dk], &[dk, 0, 1]).unwrap(),
        // padded rows
        v: Layout::new(3, &[l, h, dv], &[h * (dv + 2), dv + 2, 1]).unwrap(),
        // stored [H, L]
        beta: Layout::contiguous(&[h, l])
            .unwrap()
            .transpose(0, 1)
            .unwrap(),
        // one log-decay per token, broadcast over the heads
        g: Layout::new(0, &[l, h], &[1, 0]).unwrap(),
        // stored [H, Dk, Dv]
        s: Layout::contiguous(&[h, dk, dv])
            .unwrap()
            .transpose(1, 2)
            .unwrap(),
        // stored [H, L, Dv] from offset 5
        o: Layout::contiguous_at(5, &[h, l, dv])
            .unwrap()
            .transpose(0, 1)
            .unwrap(),
    }
}

/// Storage for a layout (at least its end), plus a little.
fn storage(l: &Layout) -> usize {
    l.end() + 2
}

/// Host data of a case, as f64 (already rounded to `T`, the state to `T::Acc`).
struct Data {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    beta: Vec<f64>,
    g: Vec<f64>,
    s0: Vec<f64>,
}

fn round<T: Element>(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| T::from_f64(v).to_f64()).collect()
}

fn data<T: Element>(c: &Case, ls: &Lays) -> Data {
    let [l, h, dk, _] = c.dims;
    let mut rng = Rng(c.seed);
    let q = rng.vec(storage(&ls.q), 1.0);
    let mut k = rng.vec(storage(&ls.k), 1.0);
    // Unit-norm key rows (as the conformance cases), through the layout (a broadcast row is
    // normalised again, harmlessly).
    for t in 0..l {
        for hh in 0..h {
            let idx: Vec<usize> = (0..dk)
                .map(|j| {
                    ls.k.offset()
                        + t * ls.k.strides()[0]
                        + hh * ls.k.strides()[1]
                        + j * ls.k.strides()[2]
                })
                .collect();
            let n = idx.iter().map(|&i| k[i] * k[i]).sum::<f64>().sqrt();
            if n > 0.0 {
                idx.iter().for_each(|&i| k[i] /= n);
            }
        }
    }
    let v = rng.vec(storage(&ls.v), 1.0);
    // beta in (0, 1); with elu+1 keys (entries in (e^-1, 2)) the delta rule's step is scaled by
    // 1 / (2 Dk) so that `beta |phi(k)|^2 <= 2` (a non-expanding update).
    let bscale = if c.rule == MemoryRule::Delta && c.phi == FeatureMap::Elu1 {
        0.5 / dk.max(1) as f64
    } else {
        1.0
    };
    let beta: Vec<f64> = rng
        .vec(storage(&ls.beta), 1.0)
        .iter()
        .map(|x| (x + 1.0) / 2.0 * bscale)
        .collect();
    let g: Vec<f64> = rng
        .vec(storage(&ls.g), 1.0)
        .iter()
        .map(|x| {
            if c.strong_decay {
                -20.0
            } else {
                -(x + 1.0) / 2.0
            }
        })
        .collect();
    let s0 = rng.vec(storage(&ls.s), 1.0);
    Data {
        q: round::<T>(&q),
        k: round::<T>(&k),
        v: round::<T>(&v),
        beta: round::<T>(&beta),
        g: round::<T>(&g),
        s0: round::<T::Acc>(&s0),
    }
}

/// The reference in f64 on `d`: returns (o storage, state storage); `o` starts NaN everywhere.
fn reference(c: &Case, ls: &Lays, d: &Data) -> (Vec<f64>, Vec<f64>) {
    let r = Reference;
    let mut s = d.s0.clone();
    let mut o = vec![f64::NAN; storage(&ls.o)];
    let x = MemoryInputs {
        q: View::new(d.q.as_slice(), ls.q).unwrap(),
        k: View::new(d.k.as_slice(), ls.k).unwrap(),
        v: View::new(d.v.as_slice(), ls.v).unwrap(),
        beta: c
            .beta
            .then(|| View::new(d.beta.as_slice(), ls.beta).unwrap()),
        log_decay: c.decay.then(|| View::new(d.g.as_slice(), ls.g).unwrap()),
    };
    r.linear_memory_recurrent(
        c.spec(),
        x,
        ViewMut::new(s.as_mut_slice(), ls.s).unwrap(),
        c.with_o
            .then(|| ViewMut::new(o.as_mut_slice(), ls.o).unwrap()),
    )
    .unwrap();
    (o, s)
}

/// Device copies of a case's inputs.
struct Dev<T: Element> {
    q: CudaMem<T>,
    k: CudaMem<T>,
    v: CudaMem<T>,
    beta: CudaMem<T>,
    g: CudaMem<T>,
}

fn to<T: Element>(x: &[f64]) -> Vec<T> {
    x.iter().map(|&v| T::from_f64(v)).collect()
}

fn upload<T: Element>(b: &CudaBackend, d: &Data) -> Dev<T> {
    Dev {
        q: up(b, &to::<T>(&d.q)),
        k: up(b, &to::<T>(&d.k)),
        v: up(b, &to::<T>(&d.v)),
        beta: up(b, &to::<T>(&d.beta)),
        g: up(b, &to::<T>(&d.g)),
    }
}

fn inputs<'a, T: Element>(
    c: &Case,
    ls: &Lays,
    dev: &'a Dev<T>,
) -> MemoryInputs<'a, CudaBackend, T> {
    MemoryInputs {
        q: View::new(&dev.q, ls.q).unwrap(),
        k: View::new(&dev.k, ls.k).unwrap(),
        v: View::new(&dev.v, ls.v).unwrap(),
        beta: c.beta.then(|| View::new(&dev.beta, ls.beta).unwrap()),
        log_decay: c.decay.then(|| View::new(&dev.g, ls.g).unwrap()),
    }
}

/// Runs the case on the GPU (recurrent, or chunkwise with `chunk`): (o storage, state storage),
/// `o` starting NaN everywhere.
fn run_gpu<T: Element>(
    b: &CudaBackend,
    c: &Case,
    ls: &Lays,
    d: &Data,
    chunk: Option<usize>,
) -> (Vec<T>, Vec<T::Acc>) {
    let dev = upload::<T>(b, d);
    let mut sm = up(b, &to::<T::Acc>(&d.s0));
    let mut om = up(b, &vec![T::from_f64(f64::NAN); storage(&ls.o)]);
    let x = inputs(c, ls, &dev);
    let state = ViewMut::new(&mut sm, ls.s).unwrap();
    let o = c.with_o.then(|| ViewMut::new(&mut om, ls.o).unwrap());
    match chunk {
        None => b.linear_memory_recurrent(c.spec(), x, state, o).unwrap(),
        Some(ch) => {
            let [_, _, dk, dv] = c.dims;
            let wl = b.linear_memory_chunkwise_workspace_len(ch, dk, dv).unwrap();
            let mut ws = b.alloc::<T::Acc>(wl).unwrap();
            let wsv = b.view_mut(&mut ws, &[wl]).unwrap();
            b.linear_memory_chunkwise(c.spec(), ch, x, state, o, wsv)
                .unwrap();
        }
    }
    (down(b, &om), down(b, &sm))
}

fn rel<T: Element>() -> f64 {
    match T::DTYPE {
        DType::F64 => 1e-12,
        DType::F32 => 1e-5,
        _ => 5e-3,
    }
}

fn floor<T: Element>() -> f64 {
    match T::DTYPE {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 5.960_464_477_539_063e-8,
        _ => f64::from(f32::MIN_POSITIVE),
    }
}

/// `got` (in `T`) against the f64 `want` rounded to `T` (see the module docs); NaN where the
/// reference has NaN, equal infinities.
fn check_close<T: Element>(what: &str, c: &Case, got: &[T], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    let want = round::<T>(want);
    let got: Vec<f64> = got.iter().map(|x| x.to_f64()).collect();
    let r = rel::<T>();
    let u = T::DTYPE.unit_roundoff();
    let scale = want
        .iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |a, &x| a.max(x.abs()));
    let (mut num, mut den) = (0.0, 0.0);
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let ok = g == w
            || (g.is_nan() && w.is_nan())
            || (g - w).abs() <= floor::<T>() + r * scale + 2.0 * u * w.abs();
        assert!(ok, "{} {what}[{i}] = {g}, reference {w}; {c:?}", T::NAME);
        if w.is_finite() {
            num += (g - w) * (g - w);
            den += w * w;
        }
    }
    if den > 0.0 {
        assert!(
            num / den <= r * r,
            "{} {what}: normalised error {} > {}; {c:?}",
            T::NAME,
            num / den,
            r * r
        );
    }
}

fn check_case<T: Element>(b: &CudaBackend, c: &Case, chunk: Option<usize>) {
    let ls = layouts(c);
    let d = data::<T>(c, &ls);
    let (want_o, want_s) = reference(c, &ls, &d);
    let (got_o, got_s) = run_gpu::<T>(b, c, &ls, &d, chunk);
    check_close::<T>("o", c, &got_o, &want_o);
    check_close::<T::Acc>("state", c, &got_s, &want_s);
}

fn specs() -> Vec<(MemoryRule, FeatureMap)> {
    let mut v = Vec::new();
    for rule in [MemoryRule::Additive, MemoryRule::Delta] {
        for phi in [FeatureMap::Identity, FeatureMap::Elu1] {
            v.push((rule, phi));
        }
    }
    v
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut seed = 1;
    let shapes = [
        [1, 1, 4, 4],
        [7, 2, 5, 3],
        [33, 3, 32, 8],
        [40, 2, 33, 17],
        [67, 1, 70, 5],
        [20, 4, 1, 1],
    ];
    for (rule, phi) in specs() {
        for (si, &dims) in shapes.iter().enumerate() {
            for strided in [false, true] {
                seed += 1;
                v.push(Case {
                    rule,
                    phi,
                    beta: si % 2 == 0 || rule == MemoryRule::Delta,
                    decay: si % 3 != 0,
                    dims,
                    strided,
                    with_o: true,
                    strong_decay: si == 4 && strided,
                    seed,
                });
            }
        }
    }
    v
}

fn every_case<T: Element>(b: &CudaBackend) {
    for c in cases() {
        check_case::<T>(b, &c, None);
    }
}

#[test]
fn recurrent_matches_the_reference_in_every_type() {
    let Some(b) = gpu() else { return };
    every_case::<f64>(b);
    every_case::<f32>(b);
    every_case::<f16>(b);
    every_case::<bf16>(b);
}

#[test]
fn chunkwise_matches_the_reference_in_every_type() {
    let Some(b) = gpu() else { return };
    fn run<T: Element>(b: &CudaBackend) {
        for (i, c) in cases().iter().enumerate() {
            let chunk = [1, 2, 3, 5, 16, 64][i % 6];
            check_case::<T>(b, c, Some(chunk));
        }
    }
    run::<f64>(b);
    run::<f32>(b);
    run::<f16>(b);
    run::<bf16>(b);
}

fn bits<T: Element>(x: &[T]) -> Vec<u64> {
    x.iter()
        .map(|v| {
            let f = v.to_f64();
            if f.is_nan() { 1 } else { f.to_bits() }
        })
        .collect()
}

/// Token-by-token calls equal one call of the whole sequence bit for bit (the conformance
/// suite's streaming row asks for this); without `o` the state is the same; the chunkwise form
/// is the recurrent kernel, so it is bitwise the recurrence for every chunk size.
#[test]
fn streaming_chunking_and_no_output_are_bitwise_the_whole_call() {
    let Some(b) = gpu() else { return };
    fn run<T: Element>(b: &CudaBackend) {
        for (rule, phi) in specs() {
            let c = Case {
                rule,
                phi,
                beta: true,
                decay: true,
                dims: [13, 2, 40, 6],
                strided: true,
                with_o: true,
                strong_decay: false,
                seed: 99,
            };
            let ls = layouts(&c);
            let d = data::<T>(&c, &ls);
            let (whole_o, whole_s) = run_gpu::<T>(b, &c, &ls, &d, None);
            // token by token
            let dev = upload::<T>(b, &d);
            let mut sm = up(b, &to::<T::Acc>(&d.s0));
            let mut om = up(b, &vec![T::from_f64(f64::NAN); storage(&ls.o)]);
            for t in 0..13 {
                let x = inputs(&c, &ls, &dev);
                let x = MemoryInputs {
                    q: x.q.narrow(0, t, 1).unwrap(),
                    k: x.k.narrow(0, t, 1).unwrap(),
                    v: x.v.narrow(0, t, 1).unwrap(),
                    beta: x.beta.map(|v| v.narrow(0, t, 1).unwrap()),
                    log_decay: x.log_decay.map(|v| v.narrow(0, t, 1).unwrap()),
                };
                let o = ViewMut::new(&mut om, ls.o)
                    .unwrap()
                    .narrow(0, t, 1)
                    .unwrap();
                b.linear_memory_recurrent(
                    c.spec(),
                    x,
                    ViewMut::new(&mut sm, ls.s).unwrap(),
                    Some(o),
                )
                .unwrap();
            }
            assert_eq!(bits(&down(b, &om)), bits(&whole_o), "{} {c:?}", T::NAME);
            assert_eq!(bits(&down(b, &sm)), bits(&whole_s), "{} {c:?}", T::NAME);
            // no output
            let c2 = Case { with_o: false, ..c };
            let (no_o, s2) = run_gpu::<T>(b, &c2, &ls, &d, None);
            assert!(no_o.iter().all(|x| x.to_f64().is_nan()), "o untouched");
            assert_eq!(bits(&s2), bits(&whole_s), "{} {c:?}", T::NAME);
            // chunkwise
            for ch in [1, 4, 64] {
                let (co, cs) = run_gpu::<T>(b, &c, &ls, &d, Some(ch));
                assert_eq!(bits(&co), bits(&whole_o), "{} chunk {ch} {c:?}", T::NAME);
                assert_eq!(bits(&cs), bits(&whole_s), "{} chunk {ch} {c:?}", T::NAME);
            }
        }
    }
    run::<f64>(b);
    run::<f32>(b);
    run::<f16>(b);
    run::<bf16>(b);
}

/// Empty extents (`L`, `H`, `Dk` or `Dv` zero) and one token: as the reference, which for
/// `Dk = 0` writes zeros to `o` and for `L = 0` leaves the state alone.
#[test]
fn empty_extents_and_one_token() {
    let Some(b) = gpu() else { return };
    fn run<T: Element>(b: &CudaBackend) {
        for dims in [
            [0, 2, 3, 2],
            [3, 0, 3, 2],
            [3, 2, 0, 2],
            [3, 2, 3, 0],
            [0, 0, 0, 0],
            [1, 1, 1, 1],
            [1, 3, 4, 4],
        ] {
            for (rule, phi) in specs() {
                for strided in [false, true] {
                    for chunk in [None, Some(2)] {
                        let c = Case {
                            rule,
                            phi,
                            beta: true,
                            decay: true,
                            dims,
                            strided,
                            with_o: true,
                            strong_decay: false,
                            seed: 7,
                        };
                        let ls = layouts(&c);
                        let d = data::<T>(&c, &ls);
                        let (want_o, want_s) = reference(&c, &ls, &d);
                        let (got_o, got_s) = run_gpu::<T>(b, &c, &ls, &d, chunk);
                        check_close::<T>("o", &c, &got_o, &want_o);
                        check_close::<T::Acc>("state", &c, &got_s, &want_s);
                        if dims[0] == 0 {
                            assert_eq!(bits(&got_s), bits(&to::<T::Acc>(&d.s0)));
                        }
                        if dims[2] == 0 {
                            // every element o reaches is exactly 0
                            let n = got_o.iter().filter(|x| x.to_f64() == 0.0).count();
                            assert_eq!(n, ls.o.numel(), "{c:?}");
                        }
                    }
                }
            }
        }
    }
    run::<f64>(b);
    run::<f32>(b);
    run::<f16>(b);
    run::<bf16>(b);
}

/// NaN, infinities, a log-decay of -inf (a = 0, the state reset) and beta = 0, against the f64
/// reference: NaN exactly where it has NaN (the rows of the state evolve independently, so a NaN
/// value poisons one row of one head only).
#[test]
fn special_values_as_the_reference() {
    let Some(b) = gpu() else { return };
    fn run<T: Element>(b: &CudaBackend) {
        for (rule, phi) in specs() {
            let c = Case {
                rule,
                phi,
                beta: true,
                decay: true,
                dims: [6, 2, 5, 3],
                strided: false,
                with_o: true,
                strong_decay: false,
                seed: 3,
            };
            let ls = layouts(&c);
            let mut d = data::<T>(&c, &ls);
            let [_, h, dk, dv] = c.dims;
            // v[1, 0, 0] = NaN
            d.v[h * dv] = f64::NAN;
            // log_decay[3, 1] = -inf, [4, 0] = -inf
            d.g[3 * h + 1] = f64::NEG_INFINITY;
            d.g[4 * h] = f64::NEG_INFINITY;
            // beta[2, 1] = 0
            d.beta[2 * h + 1] = 0.0;
            // q[4, 1, 2] = inf, q[5, 0, 1] = -inf
            d.q[(4 * h + 1) * dk + 2] = f64::INFINITY;
            d.q[(5 * h) * dk + 1] = f64::NEG_INFINITY;
            // state[1, 2, 0] = inf
            d.s0[(dv + 2) * dk] = f64::INFINITY;
            let (want_o, want_s) = reference(&c, &ls, &d);
            for chunk in [None, Some(4)] {
                let (got_o, got_s) = run_gpu::<T>(b, &c, &ls, &d, chunk);
                check_close::<T>("o", &c, &got_o, &want_o);
                check_close::<T::Acc>("state", &c, &got_s, &want_s);
            }
        }
    }
    run::<f64>(b);
    run::<f32>(b);
    run::<f16>(b);
    run::<bf16>(b);
}

/// More (head, row) pairs than one grid of 65535 blocks of 8 warps covers: the grid-stride loop.
#[test]
fn more_rows_than_the_grid() {
    let Some(b) = gpu() else { return };
    let c = Case {
        rule: MemoryRule::Delta,
        phi: FeatureMap::Identity,
        beta: true,
        decay: true,
        dims: [2, 2, 3, 300_000],
        strided: false,
        with_o: true,
        strong_decay: false,
        seed: 5,
    };
    check_case::<f32>(b, &c, None);
}

/// Bad input gives the reference's error, in the reference's order.
#[test]
fn bad_input_gives_the_reference_errors() {
    let Some(b) = gpu() else { return };
    let r = Reference;
    let spec = LinearMemorySpec {
        rule: MemoryRule::Delta,
        feature_map: FeatureMap::Identity,
    };
    let (l, h, dk, dv) = (3usize, 2usize, 4usize, 5usize);
    let host = vec![0.5f32; 256];
    let dm = up(b, &host);
    // (q, k, v, beta, g, state, o) shapes
    type Shapes = [Vec<usize>; 7];
    let good: Shapes = [
        vec![l, h, dk],
        vec![l, h, dk],
        vec![l, h, dv],
        vec![l, h],
        vec![l, h],
        vec![h, dv, dk],
        vec![l, h, dv],
    ];
    let mut bad: Vec<Shapes> = Vec::new();
    for (arg, shape) in [
        (1, vec![l, h]),        // k rank 2
        (1, vec![l, h, dk, 1]), // k rank 4
        (0, vec![l, h, dk + 1]),
        (0, vec![l + 1, h, dk]),
        (2, vec![l, h]), // v rank 2
        (2, vec![l, h + 1, dv]),
        (3, vec![l, h, 1]),
        (4, vec![l + 1, h]),
        (5, vec![h, dk, dv]),
        (6, vec![l, h, dv + 1]),
    ] {
        let mut s = good.clone();
        s[arg] = shape;
        bad.push(s);
    }
    // two faults at once: the first checked wins
    let mut two = good.clone();
    two[5] = vec![h, 1, 1];
    two[0] = vec![1, 1, 1];
    bad.push(two);
    for s in &bad {
        let mut st_h = vec![0.0f32; 256];
        let mut o_h = vec![0.0f32; 256];
        let mut st_d = b.alloc::<f32>(256).unwrap();
        let mut o_d = b.alloc::<f32>(256).unwrap();
        let xr = MemoryInputs {
            q: r.view(&host[..s[0].iter().product()], &s[0]).unwrap(),
            k: r.view(&host[..s[1].iter().product()], &s[1]).unwrap(),
            v: r.view(&host[..s[2].iter().product()], &s[2]).unwrap(),
            beta: Some(r.view(&host[..s[3].iter().product()], &s[3]).unwrap()),
            log_decay: Some(r.view(&host[..s[4].iter().product()], &s[4]).unwrap()),
        };
        let lay = |x: &Vec<usize>| Layout::contiguous(x).unwrap();
        let xd = MemoryInputs {
            q: View::new(&dm, lay(&s[0])).unwrap(),
            k: View::new(&dm, lay(&s[1])).unwrap(),
            v: View::new(&dm, lay(&s[2])).unwrap(),
            beta: Some(View::new(&dm, lay(&s[3])).unwrap()),
            log_decay: Some(View::new(&dm, lay(&s[4])).unwrap()),
        };
        let e_ref = r
            .linear_memory_recurrent(
                spec,
                xr,
                r.view_mut(&mut st_h[..s[5].iter().product()], &s[5])
                    .unwrap(),
                Some(
                    r.view_mut(&mut o_h[..s[6].iter().product()], &s[6])
                        .unwrap(),
                ),
            )
            .unwrap_err();
        let e_gpu = b
            .linear_memory_recurrent(
                spec,
                xd,
                ViewMut::new(&mut st_d, lay(&s[5])).unwrap(),
                Some(ViewMut::new(&mut o_d, lay(&s[6])).unwrap()),
            )
            .unwrap_err();
        assert_eq!(e_gpu, e_ref, "{s:?}");
        // chunkwise: the same shape errors (workspace large enough)
        let mut ws_h = vec![0.0f32; 256];
        let mut ws_d = b.alloc::<f32>(256).unwrap();
        let e_ref = r
            .linear_memory_chunkwise(
                spec,
                2,
                xr,
                r.view_mut(&mut st_h[..s[5].iter().product()], &s[5])
                    .unwrap(),
                Some(
                    r.view_mut(&mut o_h[..s[6].iter().product()], &s[6])
                        .unwrap(),
                ),
                r.view_mut(&mut ws_h, &[256]).unwrap(),
            )
            .unwrap_err();
        let e_gpu = b
            .linear_memory_chunkwise(
                spec,
                2,
                xd,
                ViewMut::new(&mut st_d, lay(&s[5])).unwrap(),
                Some(ViewMut::new(&mut o_d, lay(&s[6])).unwrap()),
                b.view_mut(&mut ws_d, &[256]).unwrap(),
            )
            .unwrap_err();
        assert_eq!(e_gpu, e_ref, "chunkwise {s:?}");
        // chunk 0 is checked before the shapes
        let e = b
            .linear_memory_chunkwise(
                spec,
                0,
                xd,
                ViewMut::new(&mut st_d, lay(&s[5])).unwrap(),
                Some(ViewMut::new(&mut o_d, lay(&s[6])).unwrap()),
                b.view_mut(&mut ws_d, &[256]).unwrap(),
            )
            .unwrap_err();
        assert!(matches!(e, Error::Param { arg: "chunk", .. }), "{e:?}");
    }
    // chunkwise workspace errors on good shapes: too small, rank 2, strided
    let need = b.linear_memory_chunkwise_workspace_len(2, dk, dv).unwrap();
    assert_eq!(
        need,
        r.linear_memory_chunkwise_workspace_len(2, dk, dv).unwrap()
    );
    let wss: [(Vec<usize>, Layout); 3] = [
        (vec![need - 1], Layout::contiguous(&[need - 1]).unwrap()),
        (vec![2, need], Layout::contiguous(&[2, need]).unwrap()),
        (vec![2 * need], Layout::new(0, &[need], &[2]).unwrap()),
    ];
    for (len, wl) in wss {
        let n: usize = len.iter().product();
        let mut st_h = vec![0.0f32; h * dv * dk];
        let mut ws_h = vec![0.0f32; n];
        let mut st_d = b.alloc::<f32>(h * dv * dk).unwrap();
        let mut ws_d = b.alloc::<f32>(n).unwrap();
        let xr = MemoryInputs {
            q: r.view(&host[..l * h * dk], &good[0]).unwrap(),
            k: r.view(&host[..l * h * dk], &good[1]).unwrap(),
            v: r.view(&host[..l * h * dv], &good[2]).unwrap(),
            beta: None,
            log_decay: None,
        };
        let xd = MemoryInputs {
            q: b.view(&dm, &good[0]).unwrap(),
            k: b.view(&dm, &good[1]).unwrap(),
            v: b.view(&dm, &good[2]).unwrap(),
            beta: None,
            log_decay: None,
        };
        let e_ref = r
            .linear_memory_chunkwise(
                spec,
                2,
                xr,
                r.view_mut(&mut st_h, &good[5]).unwrap(),
                None,
                ViewMut::new(ws_h.as_mut_slice(), wl).unwrap(),
            )
            .unwrap_err();
        let e_gpu = b
            .linear_memory_chunkwise(
                spec,
                2,
                xd,
                b.view_mut(&mut st_d, &good[5]).unwrap(),
                None,
                ViewMut::new(&mut ws_d, wl).unwrap(),
            )
            .unwrap_err();
        assert_eq!(e_gpu, e_ref, "{wl:?}");
    }
}
