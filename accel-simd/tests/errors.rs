//! Identical bad input, identical `Err`: every kernel of the `Backend` trait, base and fused, is
//! fed the same (often wrong) arguments on the simd backend and on the Reference, and the two
//! answers must be equal as `Result<(), Error>` (issue 8, "Bad input"). Neither may panic.
//!
//! Arguments are built as seqcore's `bad_input` fuzz test builds them: a base shape from extents
//! that agree, then per argument a layout that is usually right and sometimes offset, transposed,
//! strided, zero-strided, of its own (wrong) shape or over a buffer that is too short; parameters
//! that are sometimes NaN, infinite, zero or out of range. Each property counts how many calls
//! succeeded and how many were refused, and asserts both happened, so it cannot pass vacuously.
//!
//! Workspaces: a backend may ask for more scratch than the Reference (it may override
//! `*_workspace_len`), so each backend gets a workspace sized from its OWN query: long enough,
//! longer, or one element short. A short one must be refused by both with a `Capacity` error naming
//! `workspace` (its `needed`/`capacity` are each backend's own), unless an earlier check refuses
//! the call, in which case the errors must be identical.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::too_many_arguments,
    clippy::type_complexity,
    missing_docs,
    reason = "test code: clippy.toml allows these in #[test] functions, and the helpers here are \
              test code too"
)]

use core::cell::Cell;
use core::time::Duration;
use std::sync::mpsc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use seq_accel_simd::Simd;
use seqcore::portable::kd_loss::{CeConfig, Divergence, KdConfig, KdReduction};
use seqcore::portable::linear_memory::{FeatureMap, LinearMemorySpec, MemoryInputs, MemoryRule};
use seqcore::portable::relative::{RelativeIndex, RelativeParams};
use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::{
    AttentionDims, AttentionMasks, AttentionParams, Backend, Binary, Element, Error, Layout,
    Reduce, Reference, SoftmaxKind, Unary, View, ViewMut, bf16, f16,
};

const R: Reference = Reference;

/// Calls are only run when every argument's extents multiply to at most this (a valid broadcast
/// view may stand for 2^64 elements: a lot of work, not an error, and not this test's subject).
const WORK: usize = 20_000;

/// Cases per property: few under Miri, where each costs thousands of times more.
fn cases() -> u32 {
    if cfg!(miri) { 1 } else { 128 }
}

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

/// Runs `f` on `cases()` values of `s`, from a fixed seed so that a CI failure replays
/// exactly; `SEQ_ERRORS_SEED=<u64>` draws from another seed (`for s in $(seq 100); do
/// SEQ_ERRORS_SEED=$s cargo test -p seq-accel-simd --test errors; done` explores).
fn run<S: Strategy>(s: S, f: impl Fn(S::Value)) {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let rng = match std::env::var("SEQ_ERRORS_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            proptest::test_runner::TestRng::from_seed(config.rng_algorithm, &bytes)
        }
        None => proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm),
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner
        .run(&s, |v| {
            f(v);
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// strategies

/// A base extent: small, with the odd sizes around the vector widths now and then.
fn ext() -> impl Strategy<Value = usize> {
    prop_oneof![12 => 0usize..5, 1 => Just(7usize), 1 => Just(9usize), 1 => Just(17usize)]
}

/// A few base extents (the kernel picks the ones it needs).
fn dims() -> impl Strategy<Value = [usize; 8]> {
    prop::array::uniform8(ext())
}

fn wild_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -3.0f64..3.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(1e300),
        1 => Just(1e-300),
    ]
}

/// Mostly a good value `good`, sometimes any of [`wild_f64`].
fn mostly(good: f64) -> impl Strategy<Value = f64> {
    prop_oneof![4 => Just(good), 1 => wild_f64()]
}

/// A shape of its own: ranks 0 to 5 (past `MAX_RANK` now and then), extents mostly small.
fn own_shape() -> impl Strategy<Value = Vec<usize>> {
    let e = prop_oneof![20 => 0usize..5, 1 => Just(usize::MAX), 1 => Just(1usize << 40)];
    prop_oneof![
        10 => prop::collection::vec(e.clone(), 0..=5),
        1 => prop::collection::vec(e, 7..=9),
    ]
}

/// How one argument is laid out over how much memory.
#[derive(Clone, Debug)]
struct Arg {
    form: u8,
    offset: usize,
    strides: Vec<usize>,
    /// Buffer length relative to the layout's `end()`; negative is too short.
    slack: i64,
    /// A shape of its own instead of the one the other arguments imply.
    shape: Option<Vec<usize>>,
}

fn arg() -> impl Strategy<Value = Arg> {
    let good = Just(Arg {
        form: 0,
        offset: 0,
        strides: Vec::new(),
        slack: 0,
        shape: None,
    });
    let wild = (
        any::<u8>(),
        prop_oneof![20 => 0usize..3, 1 => Just(usize::MAX)],
        prop::collection::vec(prop_oneof![8 => 0usize..6, 1 => Just(usize::MAX)], 0..=6),
        prop_oneof![10 => 0i64..3, 1 => -2i64..0],
        prop::option::weighted(0.2, own_shape()),
    )
        .prop_map(|(form, offset, strides, slack, shape)| Arg {
            form,
            offset,
            strides,
            slack,
            shape,
        });
    prop_oneof![4 => good, 1 => wild]
}

/// An optional argument: present (mostly) or absent.
fn opt_arg() -> impl Strategy<Value = Option<Arg>> {
    prop::option::weighted(0.6, arg())
}

impl Arg {
    fn layout(&self, base: &[usize]) -> Result<Layout, Error> {
        let shape = self.shape.as_deref().unwrap_or(base);
        let r = shape.len();
        match self.form % 16 {
            0..=10 => Layout::contiguous_at(self.offset, shape),
            11 | 12 => {
                let l = Layout::contiguous_at(self.offset, shape)?;
                if r >= 2 { l.transpose(0, r - 1) } else { Ok(l) }
            }
            13 => {
                let s: Vec<usize> = (0..r)
                    .map(|i| self.strides.get(i).copied().unwrap_or(1))
                    .collect();
                Layout::new(self.offset, shape, &s)
            }
            14 => Layout::new(self.offset, shape, &self.strides),
            _ => Layout::new(self.offset, shape, &vec![0; r]),
        }
    }

    /// Buffer length for `layout` (8 when the layout was refused or reaches too far).
    fn len(&self, layout: &Result<Layout, Error>) -> usize {
        match layout {
            Ok(l) if l.end() <= 4096 => {
                usize::try_from((i64::try_from(l.end()).unwrap() + self.slack).max(0)).unwrap()
            }
            _ => 8,
        }
    }
}

const PALETTE: [f64; 10] = [
    0.5,
    -1.0,
    f64::NAN,
    3.0,
    f64::INFINITY,
    -0.0,
    0.0,
    -2.5,
    f64::NEG_INFINITY,
    1e30,
];

fn floats<T: Element>(len: usize, seed: usize) -> Vec<T> {
    (0..len)
        .map(|i| T::from_f64(PALETTE[(i * 7 + seed) % PALETTE.len()]))
        .collect()
}

/// Outcome counters of one property.
#[derive(Default, Debug)]
struct Tally {
    ok: Cell<usize>,
    err: Cell<usize>,
    skipped: Cell<usize>,
}

impl Tally {
    fn skip(&self) {
        self.skipped.set(self.skipped.get() + 1);
    }

    /// The two answers must be the same.
    #[track_caller]
    fn same(&self, what: &str, simd: Result<(), Error>, reference: Result<(), Error>) {
        assert_eq!(simd, reference, "{what}: simd vs reference");
        self.count(&reference);
    }

    fn count(&self, r: &Result<(), Error>) {
        match r {
            Ok(()) => self.ok.set(self.ok.get() + 1),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                self.err.set(self.err.get() + 1);
            }
        }
    }

    #[track_caller]
    fn assert_both(&self, what: &str) {
        println!("{what}: {self:?}");
        if cfg!(miri) {
            return;
        }
        assert!(self.ok.get() > 0, "{what}: no call succeeded: {self:?}");
        assert!(self.err.get() > 0, "{what}: no call was refused: {self:?}");
    }
}

/// The largest element count (extents of at least 1) among the layouts that were made: cases
/// above [`WORK`] are skipped to keep the test fast.
fn work(layouts: &[&Result<Layout, Error>]) -> usize {
    layouts
        .iter()
        .filter_map(|l| l.as_ref().ok())
        .map(|l| {
            l.shape()
                .iter()
                .fold(1usize, |a, &d| a.saturating_mul(d.max(1)))
        })
        .max()
        .unwrap_or(1)
}

/// The same view of `buf` for both backends, or return from the case (counted) when the layout
/// or its bounds are refused (which does not depend on the backend).
macro_rules! pair {
    ($t:expr, $buf:expr, $l:expr) => {
        match $l.and_then(|l| {
            Ok((
                View::<Simd, _>::new(&$buf[..], l)?,
                View::<Reference, _>::new(&$buf[..], l)?,
            ))
        }) {
            Ok(p) => p,
            Err(_) => {
                $t.skip();
                return;
            }
        }
    };
}

/// Writable views of the simd and the reference copies of an output.
macro_rules! pair_mut {
    ($t:expr, $bs:expr, $br:expr, $l:expr) => {
        match $l.and_then(|l| {
            Ok((
                ViewMut::<Simd, _>::new(&mut $bs[..], l)?,
                ViewMut::<Reference, _>::new(&mut $br[..], l)?,
            ))
        }) {
            Ok(p) => p,
            Err(_) => {
                $t.skip();
                return;
            }
        }
    };
}

/// An optional input pair.
macro_rules! opt_pair {
    ($t:expr, $buf:expr, $l:expr) => {
        match $l {
            Some(l) => {
                let (s, r) = pair!($t, $buf, l);
                (Some(s), Some(r))
            }
            None => (None, None),
        }
    };
}

/// An optional output pair.
macro_rules! opt_pair_mut {
    ($t:expr, $bs:expr, $br:expr, $l:expr) => {
        match $l {
            Some(l) => {
                let (s, r) = pair_mut!($t, $bs, $br, l);
                (Some(s), Some(r))
            }
            None => (None, None),
        }
    };
}

/// An input argument: its layout and its buffer of `T`.
fn input<T: Element>(a: &Arg, base: &[usize], seed: usize) -> (Result<Layout, Error>, Vec<T>) {
    let l = a.layout(base);
    let b = floats::<T>(a.len(&l), seed);
    (l, b)
}

/// An output argument: its layout and two equal buffers (simd's, the reference's).
fn output<T: Element>(
    a: &Arg,
    base: &[usize],
    seed: usize,
) -> (Result<Layout, Error>, Vec<T>, Vec<T>) {
    let (l, b) = input::<T>(a, base, seed);
    (l, b.clone(), b)
}

fn opt_input<T: Element>(
    a: &Option<Arg>,
    base: &[usize],
    seed: usize,
) -> (Option<Result<Layout, Error>>, Vec<T>) {
    match a {
        Some(a) => {
            let (l, b) = input::<T>(a, base, seed);
            (Some(l), b)
        }
        None => (None, Vec::new()),
    }
}

fn opt_output<T: Element>(
    a: &Option<Arg>,
    base: &[usize],
    seed: usize,
) -> (Option<Result<Layout, Error>>, Vec<T>, Vec<T>) {
    let (l, b) = opt_input::<T>(a, base, seed);
    (l, b.clone(), b)
}

/// Runs `f` once per element type (the accumulation type differs: f64 for f64, f32 otherwise);
/// under Miri in f32 and f16 only.
macro_rules! each_dtype {
    ($f:ident ( $($a:expr),* )) => {
        $f::<f32>($($a),*);
        $f::<f16>($($a),*);
        if !cfg!(miri) {
            $f::<f64>($($a),*);
            $f::<bf16>($($a),*);
        }
    };
}

/// How long a workspace is, relative to what the backend asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ws {
    Exact,
    Longer,
    /// One element short (when the backend asked for any).
    Short,
}

fn ws_mode() -> impl Strategy<Value = Ws> {
    prop_oneof![3 => Just(Ws::Exact), 1 => Just(Ws::Longer), 2 => Just(Ws::Short)]
}

impl Ws {
    fn len(self, asked: usize) -> usize {
        match self {
            Ws::Exact => asked,
            Ws::Longer => asked + 3,
            Ws::Short => asked.saturating_sub(1),
        }
    }
}

/// Compares the two answers of a call that received a workspace sized from each backend's own
/// query: equal, except that a too-short workspace is a `Capacity` (or, for the convolution's
/// workspace view, `Shape`) error naming `workspace` on each side with that side's own numbers.
#[track_caller]
fn same_ws(
    t: &Tally,
    what: &str,
    ws: Ws,
    (simd, simd_len): (Result<(), Error>, usize),
    (reference, ref_len): (Result<(), Error>, usize),
) {
    // `Capacity`, or the `Shape` error naming `workspace` with which the convolution refuses a
    // short workspace view (seqcore's portable kernel does the same).
    let short = |r: &Result<(), Error>, given: usize| match r {
        Err(Error::Capacity {
            arg: "workspace",
            needed,
            capacity,
        }) => *capacity == given && *needed > given,
        Err(Error::Shape {
            arg: "workspace",
            got,
            expected,
            ..
        }) => *got == given && *expected > given,
        _ => false,
    };
    // A workspace view (sized from each backend's own query) refused by both as shorter than
    // each one's own length: the lengths differ by design, so the numbers in the errors do too.
    let view_short = |r: &Result<(), Error>| match r {
        Err(Error::Shape {
            arg: "workspace",
            got,
            expected,
            ..
        }) => Some(*got).filter(|g| expected > g),
        _ => None,
    };
    if view_short(&simd).is_some() && view_short(&reference).is_some() {
        t.count(&reference);
    } else if ws == Ws::Short && (short(&simd, simd_len) || short(&reference, ref_len)) {
        assert!(
            short(&simd, simd_len) && short(&reference, ref_len),
            "{what}: a workspace one short of each backend's own length: simd {simd:?} \
             (given {simd_len}), reference {reference:?} (given {ref_len})"
        );
        t.count(&reference);
    } else {
        t.same(what, simd, reference);
    }
}

// ---------------------------------------------------------------------------------------------
// base kernels

fn gemm_case<T: Element>(
    t: &Tally,
    s: &Simd,
    batch: Option<usize>,
    d: &[usize; 8],
    (aa, ab, ac): &(Arg, Arg, Arg),
    alpha: f64,
    beta: f64,
) {
    let (m, n, k) = (d[0], d[1], d[2]);
    let dims = |x: usize, y: usize| match batch {
        Some(b) => vec![b, x, y],
        None => vec![x, y],
    };
    let (la, ba) = input::<T>(aa, &dims(m, k), 1);
    let (lb, bb) = input::<T>(ab, &dims(k, n), 2);
    let (lc, mut cs, mut cr) = output::<T>(ac, &dims(m, n), 3);
    if work(&[&la, &lb, &lc]) > WORK {
        return t.skip();
    }
    let (a_s, a_r) = pair!(t, ba, la);
    let (b_s, b_r) = pair!(t, bb, lb);
    let (c_s, c_r) = pair_mut!(t, cs, cr, lc);
    t.same(
        "gemm",
        s.gemm(alpha, a_s, b_s, beta, c_s),
        R.gemm(alpha, a_r, b_r, beta, c_r),
    );
}

#[test]
fn gemm_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (
        prop::option::of(ext()),
        dims(),
        (arg(), arg(), arg()),
        mostly(1.5),
        prop_oneof![Just(0.0), mostly(0.5)],
    );
    run(st, |(batch, d, args, alpha, beta)| {
        each_dtype!(gemm_case(&t, &s, batch, &d, &args, alpha, beta));
    });
    t.assert_both("gemm");
}

fn shape_of(d: &[usize; 8], rank: usize) -> Vec<usize> {
    d[..rank].to_vec()
}

fn softmax_case<T: Element>(
    t: &Tally,
    s: &Simd,
    shape: &[usize],
    (ax, am, ay): &(Arg, Option<Arg>, Arg),
    log: bool,
) {
    let kind = if log {
        SoftmaxKind::LogSoftmax
    } else {
        SoftmaxKind::Softmax
    };
    let (lx, bx) = input::<T>(ax, shape, 1);
    let (lm, bm) = opt_input::<T>(am, shape, 2);
    let (ly, mut ys, mut yr) = output::<T>(ay, shape, 3);
    if work(&[&lx, &ly, lm.as_ref().unwrap_or(&lx)]) > WORK {
        return t.skip();
    }
    let (x_s, x_r) = pair!(t, bx, lx);
    let (m_s, m_r) = opt_pair!(t, bm, lm);
    let (y_s, y_r) = pair_mut!(t, ys, yr, ly);
    t.same(
        "softmax",
        s.softmax(kind, x_s, m_s, y_s),
        R.softmax(kind, x_r, m_r, y_r),
    );
}

#[test]
fn softmax_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (dims(), 0usize..=4, (arg(), opt_arg(), arg()), any::<bool>());
    run(st, |(d, rank, args, log)| {
        let shape = shape_of(&d, rank);
        each_dtype!(softmax_case(&t, &s, &shape, &args, log));
    });
    t.assert_both("softmax");
}

fn unary_op(i: u8, c: f64) -> Unary {
    let all = Unary::ALL;
    match usize::from(i) % (all.len() + 2) {
        j if j < all.len() => all[j],
        j if j == all.len() => Unary::Scale(c),
        _ => Unary::AddScalar(c),
    }
}

fn elementwise_case<T: Element>(
    t: &Tally,
    s: &Simd,
    shape: &[usize],
    (ax, ab, ay): &(Arg, Arg, Arg),
    which: u8,
    c: f64,
) {
    let (lx, bx) = input::<T>(ax, shape, 1);
    let (lb, bb) = input::<T>(ab, shape, 2);
    let (ly, mut ys, mut yr) = output::<T>(ay, shape, 3);
    if work(&[&lx, &lb, &ly]) > WORK {
        return t.skip();
    }
    let (x_s, x_r) = pair!(t, bx, lx);
    let (b_s, b_r) = pair!(t, bb, lb);
    let (mut y_s, mut y_r) = pair_mut!(t, ys, yr, ly);
    let op = unary_op(which, c);
    t.same(
        "unary",
        s.unary(op, x_s, y_s.reborrow()),
        R.unary(op, x_r, y_r.reborrow()),
    );
    let bop = Binary::ALL[usize::from(which) % Binary::ALL.len()];
    t.same(
        "binary",
        s.binary(bop, x_s, b_s, y_s.reborrow()),
        R.binary(bop, x_r, b_r, y_r.reborrow()),
    );
}

#[test]
fn unary_and_binary_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (
        dims(),
        0usize..=4,
        (arg(), arg(), arg()),
        any::<u8>(),
        mostly(0.75),
    );
    run(st, |(d, rank, args, which, c)| {
        let shape = shape_of(&d, rank);
        each_dtype!(elementwise_case(&t, &s, &shape, &args, which, c));
    });
    t.assert_both("unary/binary");
}

fn reduce_case<T: Element>(t: &Tally, s: &Simd, shape: &[usize], (ax, ay): &(Arg, Arg), which: u8) {
    let op = Reduce::ALL[usize::from(which) % Reduce::ALL.len()];
    let rows = &shape[..shape.len().saturating_sub(1)];
    let (lx, bx) = input::<T>(ax, shape, 1);
    let (ly, mut ys, mut yr) = output::<T>(ay, rows, 3);
    if work(&[&lx, &ly]) > WORK {
        return t.skip();
    }
    let (x_s, x_r) = pair!(t, bx, lx);
    let (y_s, y_r) = pair_mut!(t, ys, yr, ly);
    t.same("reduce", s.reduce(op, x_s, y_s), R.reduce(op, x_r, y_r));
}

#[test]
fn reduce_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (dims(), 0usize..=4, (arg(), arg()), any::<u8>());
    run(st, |(d, rank, args, which)| {
        let shape = shape_of(&d, rank);
        each_dtype!(reduce_case(&t, &s, &shape, &args, which));
    });
    t.assert_both("reduce");
}

fn cast_to<S: Element, D: Element>(t: &Tally, s: &Simd, shape: &[usize], (ax, ay): &(Arg, Arg)) {
    let (lx, bx) = input::<S>(ax, shape, 1);
    let (ly, mut ys, mut yr) = output::<D>(ay, shape, 3);
    if work(&[&lx, &ly]) > WORK {
        return t.skip();
    }
    let (x_s, x_r) = pair!(t, bx, lx);
    let (y_s, y_r) = pair_mut!(t, ys, yr, ly);
    t.same("cast", s.cast(x_s, y_s), R.cast(x_r, y_r));
}

fn cast_case<S: Element>(t: &Tally, s: &Simd, shape: &[usize], args: &(Arg, Arg)) {
    cast_to::<S, f32>(t, s, shape, args);
    cast_to::<S, f64>(t, s, shape, args);
    cast_to::<S, f16>(t, s, shape, args);
    cast_to::<S, bf16>(t, s, shape, args);
}

#[test]
fn cast_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    run((dims(), 0usize..=4, (arg(), arg())), |(d, rank, args)| {
        let shape = shape_of(&d, rank);
        each_dtype!(cast_case(&t, &s, &shape, &args));
    });
    t.assert_both("cast");
}

fn top_k_case<T: Element>(
    t: &Tally,
    s: &Simd,
    shape: &[usize],
    (ax, av, ai): &(Arg, Arg, Arg),
    k: usize,
) {
    let mut out = shape.to_vec();
    if let Some(l) = out.last_mut() {
        *l = k;
    }
    let (lx, bx) = input::<T>(ax, shape, 1);
    let (lv, mut vs, mut vr) = output::<T>(av, &out, 2);
    let li = ai.layout(&out);
    let mut is = vec![7u32; ai.len(&li)];
    let mut ir = is.clone();
    if work(&[&lx, &lv, &li]) > WORK {
        return t.skip();
    }
    let (x_s, x_r) = pair!(t, bx, lx);
    let (v_s, v_r) = pair_mut!(t, vs, vr, lv);
    let (i_s, i_r) = pair_mut!(t, is, ir, li);
    t.same(
        "top_k",
        s.top_k(k, x_s, v_s, i_s),
        R.top_k(k, x_r, v_r, i_r),
    );
}

#[test]
fn top_k_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (
        dims(),
        0usize..=3,
        (arg(), arg(), arg()),
        prop_oneof![0usize..6, Just(usize::MAX)],
    );
    run(st, |(d, rank, args, k)| {
        let shape = shape_of(&d, rank);
        each_dtype!(top_k_case(&t, &s, &shape, &args, k));
    });
    t.assert_both("top_k");
}

// ---------------------------------------------------------------------------------------------
// attention

#[derive(Clone, Debug)]
struct AttnArgs {
    q: Arg,
    k: Arg,
    v: Arg,
    key_mask: Option<Arg>,
    bias: Option<Arg>,
    o: Arg,
    lse: Option<Arg>,
}

fn attn_args() -> impl Strategy<Value = AttnArgs> {
    (arg(), arg(), arg(), opt_arg(), opt_arg(), arg(), opt_arg()).prop_map(
        |(q, k, v, key_mask, bias, o, lse)| AttnArgs {
            q,
            k,
            v,
            key_mask,
            bias,
            o,
            lse,
        },
    )
}

fn attn_params() -> impl Strategy<Value = AttentionParams> {
    (
        prop::option::of(mostly(0.3)),
        any::<bool>(),
        prop::option::weighted(0.3, prop_oneof![0usize..4, Just(usize::MAX)]),
        prop::option::weighted(0.3, mostly(5.0)),
        prop::option::weighted(0.3, prop_oneof![-3i64..4, Just(i64::MIN), Just(i64::MAX)]),
    )
        .prop_map(
            |(scale, causal, window, softcap, query_offset)| AttentionParams {
                scale,
                causal,
                window,
                softcap,
                query_offset,
            },
        )
}

fn attention_case<T: Element>(
    t: &Tally,
    s: &Simd,
    d: &[usize; 8],
    heads_kv: usize,
    a: &AttnArgs,
    p: &AttentionParams,
    ws: Ws,
) {
    let [b, hq, lq, lk, dk, dv, ..] = *d;
    let hkv = heads_kv;
    let (lq_, bq) = input::<T>(&a.q, &[b, hq, lq, dk], 1);
    let (lk_, bk) = input::<T>(&a.k, &[b, hkv, lk, dk], 2);
    let (lv_, bv) = input::<T>(&a.v, &[b, hkv, lk, dv], 3);
    let (lm_, bm) = match &a.key_mask {
        Some(m) => {
            let l = m.layout(&[b, lk]);
            let buf: Vec<u8> = (0..m.len(&l)).map(|i| u8::from(i % 3 != 0)).collect();
            (Some(l), buf)
        }
        None => (None, Vec::new()),
    };
    let (lb_, bb) = opt_input::<T>(&a.bias, &[b, hq, lq, lk], 4);
    let (lo_, mut os, mut or) = output::<T>(&a.o, &[b, hq, lq, dv], 5);
    let (ll_, mut ls, mut lr) = opt_output::<T::Acc>(&a.lse, &[b, hq, lq], 6);
    let all = [&lq_, &lk_, &lv_, &lo_];
    if work(&all) > WORK
        || [&lm_, &lb_, &ll_]
            .iter()
            .any(|l| l.as_ref().is_some_and(|l| work(&[l]) > WORK))
    {
        return t.skip();
    }
    let (q_s, q_r) = pair!(t, bq, lq_);
    let (k_s, k_r) = pair!(t, bk, lk_);
    let (v_s, v_r) = pair!(t, bv, lv_);
    let (m_s, m_r) = opt_pair!(t, bm, lm_);
    let (b_s, b_r) = opt_pair!(t, bb, lb_);
    let (o_s, o_r) = pair_mut!(t, os, or, lo_);
    let (l_s, l_r) = opt_pair_mut!(t, ls, lr, ll_);
    // Each backend's own workspace length, for the extents the operands state (or, when they
    // disagree, the base extents: then an earlier check refuses the call on both).
    let dims =
        AttentionDims::of(q_r.layout(), k_r.layout(), v_r.layout()).unwrap_or(AttentionDims {
            batch: b,
            heads_q: hq,
            heads_kv: hkv,
            len_q: lq,
            len_k: lk,
            head_dim: dk,
            value_dim: dv,
        });
    let (qs, qr) = (
        s.attention_workspace_len::<T>(&dims),
        R.attention_workspace_len::<T>(&dims),
    );
    assert_eq!(qs.err(), qr.err(), "attention_workspace_len({dims:?})");
    let (Ok(need_s), Ok(need_r)) = (qs, qr) else {
        return t.skip();
    };
    if ws == Ws::Short && (need_s == 0 || need_r == 0) {
        return t.skip();
    }
    let (n_s, n_r) = (ws.len(need_s), ws.len(need_r));
    if n_s.max(n_r) > 1 << 16 {
        return t.skip();
    }
    let mut ws_s = vec![T::Acc::from_f64(f64::NAN); n_s];
    let mut ws_r = vec![T::Acc::from_f64(f64::NAN); n_r];
    let got = s.attention(
        p,
        q_s,
        k_s,
        v_s,
        AttentionMasks {
            key_mask: m_s,
            bias: b_s,
        },
        o_s,
        l_s,
        &mut ws_s,
    );
    let want = R.attention(
        p,
        q_r,
        k_r,
        v_r,
        AttentionMasks {
            key_mask: m_r,
            bias: b_r,
        },
        o_r,
        l_r,
        &mut ws_r,
    );
    same_ws(t, "attention", ws, (got, n_s), (want, n_r));
}

#[test]
fn attention_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (
        dims(),
        prop_oneof![3 => Just(None), 1 => prop_oneof![0usize..4].prop_map(Some)],
        attn_args(),
        attn_params(),
        ws_mode(),
    );
    run(st, |(d, hkv, a, p, ws)| {
        // Grouped heads mostly right (Hkv = Hq), sometimes anything.
        let hkv = hkv.unwrap_or(d[1]);
        each_dtype!(attention_case(&t, &s, &d, hkv, &a, &p, ws));
    });
    t.assert_both("attention");
}

fn merge_case<T: Element>(
    t: &Tally,
    s: &Simd,
    shape: &[usize],
    (oa, la, ob, lb, o, l): &(Arg, Arg, Arg, Arg, Arg, Option<Arg>),
) {
    let rows = &shape[..shape.len().saturating_sub(1)];
    let (l_oa, b_oa) = input::<T>(oa, shape, 1);
    let (l_la, b_la) = input::<T::Acc>(la, rows, 2);
    let (l_ob, b_ob) = input::<T>(ob, shape, 3);
    let (l_lb, b_lb) = input::<T::Acc>(lb, rows, 4);
    let (l_o, mut os, mut or) = output::<T>(o, shape, 5);
    let (l_l, mut ls, mut lr) = opt_output::<T::Acc>(l, rows, 6);
    if work(&[
        &l_oa,
        &l_la,
        &l_ob,
        &l_lb,
        &l_o,
        l_l.as_ref().unwrap_or(&l_o),
    ]) > WORK
    {
        return t.skip();
    }
    let (oa_s, oa_r) = pair!(t, b_oa, l_oa);
    let (la_s, la_r) = pair!(t, b_la, l_la);
    let (ob_s, ob_r) = pair!(t, b_ob, l_ob);
    let (lb_s, lb_r) = pair!(t, b_lb, l_lb);
    let (o_s, o_r) = pair_mut!(t, os, or, l_o);
    let (l_s, l_r) = opt_pair_mut!(t, ls, lr, l_l);
    t.same(
        "attention_merge",
        s.attention_merge(oa_s, la_s, ob_s, lb_s, o_s, l_s),
        R.attention_merge(oa_r, la_r, ob_r, lb_r, o_r, l_r),
    );
}

#[test]
fn attention_merge_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (
        dims(),
        0usize..=4,
        (arg(), arg(), arg(), arg(), arg(), opt_arg()),
    );
    run(st, |(d, rank, args)| {
        let shape = shape_of(&d, rank);
        each_dtype!(merge_case(&t, &s, &shape, &args));
    });
    t.assert_both("attention_merge");
}

// ---------------------------------------------------------------------------------------------
// positions

#[derive(Clone, Debug)]
enum Pos {
    Offset(u64),
    /// `[L]` (false) or `[B, L]` (true) ids.
    Ids(bool, Arg),
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        2 => prop_oneof![4 => 0u64..100, 1 => (0u64..4).prop_map(|d| u64::MAX - d)].prop_map(Pos::Offset),
        2 => (any::<bool>(), arg()).prop_map(|(b, a)| Pos::Ids(b, a)),
    ]
}

fn rope_case<T: Element>(
    t: &Tally,
    s: &Simd,
    d: &[usize; 8],
    half: bool,
    (inv_freq, factor): &(Vec<f64>, f64),
    p: &Pos,
    (ax, ay): &(Option<Arg>, Arg),
) {
    let layout = if half {
        RopeLayout::Half
    } else {
        RopeLayout::Interleaved
    };
    let [b, h, l, dd, ..] = *d;
    let shape = [b, h, l, dd];
    let (lx, bx) = opt_input::<T>(ax, &shape, 1);
    let (ly, mut ys, mut yr) = output::<T>(ay, &shape, 2);
    let (lp, bp) = match p {
        Pos::Offset(_) => (None, Vec::new()),
        Pos::Ids(batched, a) => {
            let base: &[usize] = if *batched { &[b, l] } else { &[l] };
            let lp = a.layout(base);
            let buf: Vec<u32> = (0..a.len(&lp))
                .map(|i| [3, 0, 17, u32::MAX, 1][i % 5])
                .collect();
            (Some(lp), buf)
        }
    };
    if work(&[&ly, lx.as_ref().unwrap_or(&ly), lp.as_ref().unwrap_or(&ly)]) > WORK {
        return t.skip();
    }
    let (x_s, x_r) = opt_pair!(t, bx, lx);
    let (p_s, p_r) = match (p, lp) {
        (Pos::Offset(o), _) => (RopePositions::Offset(*o), RopePositions::Offset(*o)),
        (Pos::Ids(..), Some(lp)) => {
            let (ps, pr) = pair!(t, bp, lp);
            (RopePositions::Ids(ps), RopePositions::Ids(pr))
        }
        (Pos::Ids(..), None) => unreachable!(),
    };
    let (y_s, y_r) = pair_mut!(t, ys, yr, ly);
    t.same(
        "rope",
        s.rope(layout, inv_freq, *factor, p_s, x_s, y_s),
        R.rope(layout, inv_freq, *factor, p_r, x_r, y_r),
    );
}

#[test]
fn rope_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let freqs = (
        prop::collection::vec(prop_oneof![8 => 0.0f64..2.0, 1 => wild_f64()], 0..=6),
        mostly(1.0),
    );
    let st = (dims(), any::<bool>(), freqs, pos(), (opt_arg(), arg()));
    run(st, |(d, half, f, p, args)| {
        // Mostly a head dimension that holds the frequencies (2 * len <= D).
        let mut d = d;
        d[3] = d[3].max(2 * f.0.len().saturating_sub(usize::from(d[5] == 0)));
        each_dtype!(rope_case(&t, &s, &d, half, &f, &p, &args));
    });
    t.assert_both("rope");
}

fn rel_index() -> impl Strategy<Value = RelativeIndex> {
    prop_oneof![
        (0usize..4, 0usize..4)
            .prop_map(|(max_back, max_fwd)| RelativeIndex::Clipped { max_back, max_fwd }),
        (
            any::<bool>(),
            prop_oneof![0usize..6, Just(usize::MAX)],
            prop_oneof![0usize..9, Just(usize::MAX)]
        )
            .prop_map(|(bidirectional, num_buckets, max_distance)| {
                RelativeIndex::Buckets {
                    bidirectional,
                    num_buckets,
                    max_distance,
                }
            }),
    ]
}

#[derive(Clone, Debug)]
struct RelArgs {
    q: Arg,
    k: Arg,
    v: Arg,
    rel_k: Option<Arg>,
    rel_v: Option<Arg>,
    rel_bias: Option<Arg>,
    o: Arg,
}

fn rel_args() -> impl Strategy<Value = RelArgs> {
    (arg(), arg(), arg(), opt_arg(), opt_arg(), opt_arg(), arg()).prop_map(
        |(q, k, v, rel_k, rel_v, rel_bias, o)| RelArgs {
            q,
            k,
            v,
            rel_k,
            rel_v,
            rel_bias,
            o,
        },
    )
}

fn relative_case<T: Element>(
    t: &Tally,
    s: &Simd,
    d: &[usize; 8],
    p: &RelativeParams,
    a: &RelArgs,
    ws: Ws,
) {
    let [b, h, lq, lk, dk, dv, ..] = *d;
    let rows = p.index.rows();
    let (l_q, bq) = input::<T>(&a.q, &[b, h, lq, dk], 1);
    let (l_k, bk) = input::<T>(&a.k, &[b, h, lk, dk], 2);
    let (l_v, bv) = input::<T>(&a.v, &[b, h, lk, dv], 3);
    let (l_rk, brk) = opt_input::<T>(&a.rel_k, &[h, rows, dk], 4);
    let (l_rv, brv) = opt_input::<T>(&a.rel_v, &[h, rows, dv], 5);
    let (l_rb, brb) = opt_input::<T>(&a.rel_bias, &[h, rows], 6);
    let (l_o, mut os, mut or) = output::<T>(&a.o, &[b, h, lq, dv], 7);
    if work(&[&l_q, &l_k, &l_v, &l_o]) > WORK
        || [&l_rk, &l_rv, &l_rb]
            .iter()
            .any(|l| l.as_ref().is_some_and(|l| work(&[l]) > WORK))
    {
        return t.skip();
    }
    let (q_s, q_r) = pair!(t, bq, l_q);
    let (k_s, k_r) = pair!(t, bk, l_k);
    let (v_s, v_r) = pair!(t, bv, l_v);
    let (rk_s, rk_r) = opt_pair!(t, brk, l_rk);
    let (rv_s, rv_r) = opt_pair!(t, brv, l_rv);
    let (rb_s, rb_r) = opt_pair!(t, brb, l_rb);
    let (o_s, o_r) = pair_mut!(t, os, or, l_o);
    // The trait has no workspace query for this kernel: both take the portable length.
    let dv_seen = v_r.shape().get(3).copied().unwrap_or(dv);
    let need = seqcore::portable::relative::workspace_len(dv_seen);
    if ws == Ws::Short && need == 0 {
        return t.skip();
    }
    let n = ws.len(need);
    let mut ws_s = vec![T::Acc::from_f64(f64::NAN); n];
    let mut ws_r = ws_s.clone();
    t.same(
        "relative_attention",
        s.relative_attention(p, q_s, k_s, v_s, rk_s, rv_s, rb_s, o_s, &mut ws_s),
        R.relative_attention(p, q_r, k_r, v_r, rk_r, rv_r, rb_r, o_r, &mut ws_r),
    );
}

#[test]
fn relative_attention_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let params = (mostly(0.5), any::<bool>(), rel_index()).prop_map(|(scale, causal, index)| {
        RelativeParams {
            scale,
            causal,
            index,
        }
    });
    run((dims(), params, rel_args(), ws_mode()), |(d, p, a, ws)| {
        each_dtype!(relative_case(&t, &s, &d, &p, &a, ws));
    });
    t.assert_both("relative_attention");
}

// ---------------------------------------------------------------------------------------------
// state-space models

fn scan_case<T: Element>(
    t: &Tally,
    s: &Simd,
    d: &[usize; 8],
    (aa, ab, ac, ad, au, ast, ay): &(Arg, Arg, Arg, Arg, Arg, Arg, Option<Arg>),
) {
    let [h, n, l, ..] = *d;
    let (l_a, ba) = input::<T::Acc>(aa, &[h, n, 2], 1);
    let (l_b, bb) = input::<T::Acc>(ab, &[h, n, 2], 2);
    let (l_c, bc) = input::<T::Acc>(ac, &[h, n, 2], 3);
    let (l_d, bd) = input::<T::Acc>(ad, &[h], 4);
    let (l_u, bu) = input::<T>(au, &[l, h], 5);
    let (l_st, mut sts, mut str_) = output::<T::Acc>(ast, &[h, n, 2], 6);
    let (l_y, mut ys, mut yr) = opt_output::<T>(ay, &[l, h], 7);
    if work(&[
        &l_a,
        &l_b,
        &l_c,
        &l_d,
        &l_u,
        &l_st,
        l_y.as_ref().unwrap_or(&l_u),
    ]) > WORK
    {
        return t.skip();
    }
    let (a_s, a_r) = pair!(t, ba, l_a);
    let (b_s, b_r) = pair!(t, bb, l_b);
    let (c_s, c_r) = pair!(t, bc, l_c);
    let (d_s, d_r) = pair!(t, bd, l_d);
    let (u_s, u_r) = pair!(t, bu, l_u);
    let (st_s, st_r) = pair_mut!(t, sts, str_, l_st);
    let (y_s, y_r) = opt_pair_mut!(t, ys, yr, l_y);
    t.same(
        "ssm_scan",
        s.ssm_scan::<T>(a_s, b_s, c_s, d_s, u_s, st_s, y_s),
        R.ssm_scan::<T>(a_r, b_r, c_r, d_r, u_r, st_r, y_r),
    );
}

#[test]
fn ssm_scan_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (
        dims(),
        (arg(), arg(), arg(), arg(), arg(), arg(), opt_arg()),
    );
    run(st, |(d, args)| {
        each_dtype!(scan_case(&t, &s, &d, &args));
    });
    t.assert_both("ssm_scan");
}

fn conv_case<T: Element>(
    t: &Tally,
    s: &Simd,
    d: &[usize; 8],
    (ak, au, ad, ay, aw): &(Arg, Arg, Option<Arg>, Arg, Arg),
    ws: Ws,
) {
    let [h, l, ..] = *d;
    let (l_k, bk) = input::<T>(ak, &[h, l], 1);
    let (l_u, bu) = input::<T>(au, &[l, h], 2);
    let (l_d, bd) = opt_input::<T::Acc>(ad, &[h], 3);
    let (l_y, mut ys, mut yr) = output::<T>(ay, &[l, h], 4);
    if work(&[&l_k, &l_u, &l_y, l_d.as_ref().unwrap_or(&l_y)]) > WORK {
        return t.skip();
    }
    // Each backend's own workspace length for the extents `k` states.
    let (hh, ll) = match &l_k {
        Ok(k) if k.rank() == 2 => (k.shape()[0], k.shape()[1]),
        _ => (h, l),
    };
    let (qs, qr) = (
        s.ssm_conv_workspace_len(hh, ll),
        R.ssm_conv_workspace_len(hh, ll),
    );
    assert_eq!(qs.err(), qr.err(), "ssm_conv_workspace_len({hh}, {ll})");
    let (Ok(need_s), Ok(need_r)) = (qs, qr) else {
        return t.skip();
    };
    if (ws == Ws::Short && (need_s == 0 || need_r == 0)) || need_s.max(need_r) > 1 << 16 {
        return t.skip();
    }
    let (n_s, n_r) = (ws.len(need_s), ws.len(need_r));
    // The workspace view: rank 1 of the asked length, usually contiguous.
    let (l_ws_s, l_ws_r) = (aw.layout(&[n_s]), aw.layout(&[n_r]));
    let (mut w_s, mut w_r) = (
        floats::<T::Acc>(aw.len(&l_ws_s), 8),
        floats::<T::Acc>(aw.len(&l_ws_r), 8),
    );
    let (k_s, k_r) = pair!(t, bk, l_k);
    let (u_s, u_r) = pair!(t, bu, l_u);
    let (d_s, d_r) = opt_pair!(t, bd, l_d);
    let (y_s, y_r) = pair_mut!(t, ys, yr, l_y);
    let (Ok(ws_s), Ok(ws_r)) = (
        l_ws_s.and_then(|l| ViewMut::<Simd, _>::new(&mut w_s[..], l)),
        l_ws_r.and_then(|l| ViewMut::<Reference, _>::new(&mut w_r[..], l)),
    ) else {
        return t.skip();
    };
    let got = s.ssm_conv::<T>(k_s, u_s, d_s, y_s, ws_s);
    let want = R.ssm_conv::<T>(k_r, u_r, d_r, y_r, ws_r);
    same_ws(t, "ssm_conv", ws, (got, n_s), (want, n_r));
}

#[test]
fn ssm_conv_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (dims(), (arg(), arg(), opt_arg(), arg(), arg()), ws_mode());
    run(st, |(d, args, ws)| {
        each_dtype!(conv_case(&t, &s, &d, &args, ws));
    });
    t.assert_both("ssm_conv");
}

fn vandermonde_case<T: Element>(
    t: &Tally,
    s: &Simd,
    d: &[usize; 8],
    (az, aw, av, ak): &(Arg, Arg, Option<Arg>, Arg),
) {
    let [h, n, l, ..] = *d;
    let (l_z, bz) = input::<T::Acc>(az, &[h, n, 2], 1);
    let (l_w, bw) = input::<T::Acc>(aw, &[h, n, 2], 2);
    let (l_v, bv) = opt_input::<T::Acc>(av, &[h, n, 2], 3);
    let (l_k, mut ks, mut kr) = output::<T>(ak, &[h, l], 4);
    if work(&[&l_z, &l_w, &l_k, l_v.as_ref().unwrap_or(&l_k)]) > WORK {
        return t.skip();
    }
    let (z_s, z_r) = pair!(t, bz, l_z);
    let (w_s, w_r) = pair!(t, bw, l_w);
    let (v_s, v_r) = opt_pair!(t, bv, l_v);
    let (k_s, k_r) = pair_mut!(t, ks, kr, l_k);
    t.same(
        "ssm_vandermonde",
        s.ssm_vandermonde::<T>(z_s, w_s, v_s, k_s),
        R.ssm_vandermonde::<T>(z_r, w_r, v_r, k_r),
    );
}

#[test]
fn ssm_vandermonde_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    run((dims(), (arg(), arg(), opt_arg(), arg())), |(d, args)| {
        each_dtype!(vandermonde_case(&t, &s, &d, &args));
    });
    t.assert_both("ssm_vandermonde");
}

// ---------------------------------------------------------------------------------------------
// linear memories

#[derive(Clone, Debug)]
struct MemArgs {
    q: Arg,
    k: Arg,
    v: Arg,
    beta: Option<Arg>,
    log_decay: Option<Arg>,
    state: Arg,
    o: Option<Arg>,
    workspace: Arg,
}

fn mem_args() -> impl Strategy<Value = MemArgs> {
    (
        arg(),
        arg(),
        arg(),
        opt_arg(),
        opt_arg(),
        arg(),
        opt_arg(),
        arg(),
    )
        .prop_map(|(q, k, v, beta, log_decay, state, o, workspace)| MemArgs {
            q,
            k,
            v,
            beta,
            log_decay,
            state,
            o,
            workspace,
        })
}

fn spec() -> impl Strategy<Value = LinearMemorySpec> {
    (any::<bool>(), any::<bool>()).prop_map(|(delta, elu)| LinearMemorySpec {
        rule: if delta {
            MemoryRule::Delta
        } else {
            MemoryRule::Additive
        },
        feature_map: if elu {
            FeatureMap::Elu1
        } else {
            FeatureMap::Identity
        },
    })
}

/// `None`: the recurrent kernel; `Some((chunk, ws))`: the chunkwise one.
fn memory_case<T: Element>(
    t: &Tally,
    s: &Simd,
    d: &[usize; 8],
    spec: LinearMemorySpec,
    a: &MemArgs,
    chunked: Option<(usize, Ws)>,
) {
    let [l, h, dk, dv, ..] = *d;
    let (l_q, bq) = input::<T>(&a.q, &[l, h, dk], 1);
    let (l_k, bk) = input::<T>(&a.k, &[l, h, dk], 2);
    let (l_v, bv) = input::<T>(&a.v, &[l, h, dv], 3);
    let (l_b, bb) = opt_input::<T>(&a.beta, &[l, h], 4);
    let (l_g, bg) = opt_input::<T>(&a.log_decay, &[l, h], 5);
    let (l_st, mut sts, mut str_) = output::<T::Acc>(&a.state, &[h, dv, dk], 6);
    let (l_o, mut os, mut or) = opt_output::<T>(&a.o, &[l, h, dv], 7);
    let extra = [&l_b, &l_g, &l_o];
    if work(&[&l_q, &l_k, &l_v, &l_st]) > WORK
        || extra
            .iter()
            .any(|x| x.as_ref().is_some_and(|x| work(&[x]) > WORK))
    {
        return t.skip();
    }
    let (q_s, q_r) = pair!(t, bq, l_q);
    let (k_s, k_r) = pair!(t, bk, l_k);
    let (v_s, v_r) = pair!(t, bv, l_v);
    let (b_s, b_r) = opt_pair!(t, bb, l_b);
    let (g_s, g_r) = opt_pair!(t, bg, l_g);
    let (st_s, st_r) = pair_mut!(t, sts, str_, l_st);
    let (o_s, o_r) = opt_pair_mut!(t, os, or, l_o);
    let in_s = MemoryInputs {
        q: q_s,
        k: k_s,
        v: v_s,
        beta: b_s,
        log_decay: g_s,
    };
    let in_r = MemoryInputs {
        q: q_r,
        k: k_r,
        v: v_r,
        beta: b_r,
        log_decay: g_r,
    };
    let Some((chunk, ws)) = chunked else {
        t.same(
            "linear_memory_recurrent",
            s.linear_memory_recurrent(spec, in_s, st_s, o_s),
            R.linear_memory_recurrent(spec, in_r, st_r, o_r),
        );
        return;
    };
    // Each backend's own workspace length for the extents the keys and values state.
    let (kk, vv) = (
        k_r.shape().get(2).copied().unwrap_or(dk),
        v_r.shape().get(2).copied().unwrap_or(dv),
    );
    let (qs, qr) = (
        s.linear_memory_chunkwise_workspace_len(chunk, kk, vv),
        R.linear_memory_chunkwise_workspace_len(chunk, kk, vv),
    );
    assert_eq!(
        qs.err(),
        qr.err(),
        "linear_memory_chunkwise_workspace_len({chunk}, {kk}, {vv})"
    );
    let (need_s, need_r) = match (qs, qr) {
        (Ok(a), Ok(b)) => (a, b),
        // chunk = 0: the kernel must refuse it too; give both the same (empty) workspace.
        _ => (0, 0),
    };
    if (ws == Ws::Short && (need_s == 0 || need_r == 0)) || need_s.max(need_r) > 1 << 16 {
        return t.skip();
    }
    let (n_s, n_r) = (ws.len(need_s), ws.len(need_r));
    let (l_ws_s, l_ws_r) = (a.workspace.layout(&[n_s]), a.workspace.layout(&[n_r]));
    let (mut w_s, mut w_r) = (
        floats::<T::Acc>(a.workspace.len(&l_ws_s), 8),
        floats::<T::Acc>(a.workspace.len(&l_ws_r), 8),
    );
    let (Ok(ws_s), Ok(ws_r)) = (
        l_ws_s.and_then(|l| ViewMut::<Simd, _>::new(&mut w_s[..], l)),
        l_ws_r.and_then(|l| ViewMut::<Reference, _>::new(&mut w_r[..], l)),
    ) else {
        return t.skip();
    };
    let got = s.linear_memory_chunkwise(spec, chunk, in_s, st_s, o_s, ws_s);
    let want = R.linear_memory_chunkwise(spec, chunk, in_r, st_r, o_r, ws_r);
    same_ws(t, "linear_memory_chunkwise", ws, (got, n_s), (want, n_r));
}

#[test]
fn linear_memory_recurrent_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    run((dims(), spec(), mem_args()), |(d, sp, a)| {
        each_dtype!(memory_case(&t, &s, &d, sp, &a, None));
    });
    t.assert_both("linear_memory_recurrent");
}

#[test]
fn linear_memory_chunkwise_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let chunk = prop_oneof![1 => Just(0usize), 6 => 1usize..6, 1 => Just(usize::MAX)];
    run(
        (dims(), spec(), mem_args(), chunk, ws_mode()),
        |(d, sp, a, chunk, ws)| {
            each_dtype!(memory_case(&t, &s, &d, sp, &a, Some((chunk, ws))));
        },
    );
    t.assert_both("linear_memory_chunkwise");
}

// ---------------------------------------------------------------------------------------------
// distillation

fn unit_or_wild() -> impl Strategy<Value = f64> {
    prop_oneof![4 => 0.0f64..=1.0, 1 => wild_f64(), 1 => Just(1.5), 1 => Just(-0.25)]
}

fn divergence() -> impl Strategy<Value = Divergence> {
    prop_oneof![
        Just(Divergence::ForwardKl),
        Just(Divergence::ReverseKl),
        unit_or_wild().prop_map(|beta| Divergence::Jsd { beta }),
        Just(Divergence::TotalVariation),
        unit_or_wild().prop_map(|alpha| Divergence::SkewForwardKl { alpha }),
        unit_or_wild().prop_map(|alpha| Divergence::SkewReverseKl { alpha }),
    ]
}

fn reduction() -> impl Strategy<Value = KdReduction> {
    prop_oneof![
        Just(KdReduction::Mean),
        Just(KdReduction::Sum),
        Just(KdReduction::None)
    ]
}

fn kd_config() -> impl Strategy<Value = KdConfig> {
    (
        divergence(),
        prop_oneof![4 => Just(2.0), 1 => wild_f64(), 1 => Just(1e-300), 1 => Just(-1.0)],
        reduction(),
        any::<bool>(),
        mostly(1.0),
    )
        .prop_map(
            |(divergence, temperature, reduction, t_squared, scale)| KdConfig {
                divergence,
                temperature,
                reduction,
                t_squared,
                scale,
            },
        )
}

fn loss_shape(reduction: KdReduction, rows: &[usize]) -> Vec<usize> {
    match reduction {
        KdReduction::None => rows.to_vec(),
        _ => Vec::new(),
    }
}

fn mask_buffer(a: &Arg, l: &Result<Layout, Error>) -> Vec<u8> {
    (0..a.len(l)).map(|i| [1u8, 0, 1, 7][i % 4]).collect()
}

fn kd_case<T: Element>(
    t: &Tally,
    s: &Simd,
    cfg: &KdConfig,
    rows: &[usize],
    v: usize,
    (at, ast, am, al, ag): &(Arg, Arg, Option<Arg>, Arg, Option<Arg>),
) {
    let mut shape = rows.to_vec();
    shape.push(v);
    let (l_t, bt) = input::<T>(at, &shape, 1);
    let (l_s, bs) = input::<T>(ast, &shape, 2);
    let (l_m, bm) = match am {
        Some(a) => {
            let l = a.layout(rows);
            let b = mask_buffer(a, &l);
            (Some(l), b)
        }
        None => (None, Vec::new()),
    };
    let (l_l, mut ls, mut lr) = output::<T>(al, &loss_shape(cfg.reduction, rows), 3);
    let (l_g, mut gs, mut gr) = opt_output::<T>(ag, &shape, 4);
    if work(&[&l_t, &l_s, &l_l]) > WORK
        || [&l_m, &l_g]
            .iter()
            .any(|x| x.as_ref().is_some_and(|x| work(&[x]) > WORK))
    {
        return t.skip();
    }
    let (t_s, t_r) = pair!(t, bt, l_t);
    let (s_s, s_r) = pair!(t, bs, l_s);
    let (m_s, m_r) = opt_pair!(t, bm, l_m);
    let (l_s_, l_r_) = pair_mut!(t, ls, lr, l_l);
    let (g_s, g_r) = opt_pair_mut!(t, gs, gr, l_g);
    t.same(
        "kd_loss",
        s.kd_loss(cfg, t_s, s_s, m_s, l_s_, g_s),
        R.kd_loss(cfg, t_r, s_r, m_r, l_r_, g_r),
    );
}

#[test]
fn kd_loss_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (
        kd_config(),
        dims(),
        0usize..=2,
        (arg(), arg(), opt_arg(), arg(), opt_arg()),
    );
    run(st, |(cfg, d, rank, args)| {
        let rows = shape_of(&d, rank);
        each_dtype!(kd_case(&t, &s, &cfg, &rows, d[7], &args));
    });
    t.assert_both("kd_loss");
}

#[derive(Clone, Debug)]
struct SparseArgs {
    values: Arg,
    indices: Arg,
    tail: Option<Arg>,
    student: Arg,
    mask: Option<Arg>,
    loss: Arg,
    grad: Option<Arg>,
}

fn sparse_args() -> impl Strategy<Value = SparseArgs> {
    (arg(), arg(), opt_arg(), arg(), opt_arg(), arg(), opt_arg()).prop_map(
        |(values, indices, tail, student, mask, loss, grad)| SparseArgs {
            values,
            indices,
            tail,
            student,
            mask,
            loss,
            grad,
        },
    )
}

fn sparse_case<T: Element>(
    t: &Tally,
    s: &Simd,
    cfg: &KdConfig,
    rows: &[usize],
    (k, v): (usize, usize),
    index_seed: u8,
    a: &SparseArgs,
) {
    let mut kshape = rows.to_vec();
    kshape.push(k);
    let mut vshape = rows.to_vec();
    vshape.push(v);
    let (l_v, bv) = input::<T>(&a.values, &kshape, 1);
    let l_i = a.indices.layout(&kshape);
    // Indices: a permutation of 0..V per row mostly (valid), sometimes `>= V` or repeated.
    let bi: Vec<u32> = (0..a.indices.len(&l_i))
        .map(|i| {
            let vv = u32::try_from(v.max(1)).unwrap();
            let i = u32::try_from(i).unwrap();
            match index_seed % 4 {
                0 => (i * 3 + u32::from(index_seed)) % (vv + 1),
                1 => u32::MAX - i,
                _ => (i * 5 + 1) % vv,
            }
        })
        .collect();
    let (l_t, mut bt) = opt_input::<T>(&a.tail, rows, 2);
    if index_seed % 8 < 6 {
        // Mostly tails in [0, 1].
        for (j, x) in bt.iter_mut().enumerate() {
            *x = T::from_f64([0.0, 0.25, 1.0, 0.5][j % 4]);
        }
    }
    let (l_st, bst) = input::<T>(&a.student, &vshape, 3);
    let (l_m, bm) = match &a.mask {
        Some(m) => {
            let l = m.layout(rows);
            let b = mask_buffer(m, &l);
            (Some(l), b)
        }
        None => (None, Vec::new()),
    };
    let (l_l, mut ls, mut lr) = output::<T>(&a.loss, &loss_shape(cfg.reduction, rows), 4);
    let (l_g, mut gs, mut gr) = opt_output::<T>(&a.grad, &vshape, 5);
    if work(&[&l_v, &l_i, &l_st, &l_l]) > WORK
        || [&l_t, &l_m, &l_g]
            .iter()
            .any(|x| x.as_ref().is_some_and(|x| work(&[x]) > WORK))
    {
        return t.skip();
    }
    let (v_s, v_r) = pair!(t, bv, l_v);
    let (i_s, i_r) = pair!(t, bi, l_i);
    let (t_s, t_r) = opt_pair!(t, bt, l_t);
    let (st_s, st_r) = pair!(t, bst, l_st);
    let (m_s, m_r) = opt_pair!(t, bm, l_m);
    let (l_s_, l_r_) = pair_mut!(t, ls, lr, l_l);
    let (g_s, g_r) = opt_pair_mut!(t, gs, gr, l_g);
    t.same(
        "kd_loss_sparse",
        s.kd_loss_sparse(cfg, v_s, i_s, t_s, st_s, m_s, l_s_, g_s),
        R.kd_loss_sparse(cfg, v_r, i_r, t_r, st_r, m_r, l_r_, g_r),
    );
}

#[test]
fn kd_loss_sparse_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let st = (kd_config(), dims(), 0usize..=2, any::<u8>(), sparse_args());
    run(st, |(cfg, d, rank, seed, a)| {
        let rows = shape_of(&d, rank);
        // k mostly within 1..=V.
        let v = d[7].max(1);
        let k = if seed % 5 == 0 { d[6] } else { 1 + d[6] % v };
        each_dtype!(sparse_case(&t, &s, &cfg, &rows, (k, v), seed, &a));
    });
    t.assert_both("kd_loss_sparse");
}

fn ce_case<T: Element>(
    t: &Tally,
    s: &Simd,
    cfg: &CeConfig,
    rows: &[usize],
    v: usize,
    target_seed: u8,
    (ax, at, al, ag): &(Arg, Arg, Arg, Option<Arg>),
) {
    let mut shape = rows.to_vec();
    shape.push(v);
    let (l_x, bx) = input::<T>(ax, &shape, 1);
    let l_t = at.layout(rows);
    let vi = i32::try_from(v).unwrap();
    let bt: Vec<i32> = (0..at.len(&l_t))
        .map(|i| {
            let i = i32::try_from(i).unwrap();
            match target_seed % 4 {
                0 => [-100, vi, -1, 0][usize::try_from(i).unwrap() % 4],
                _ if vi > 0 => (i * 3 + 1) % vi,
                _ => cfg.ignore_index,
            }
        })
        .collect();
    let (l_l, mut ls, mut lr) = output::<T>(al, &loss_shape(cfg.reduction, rows), 3);
    let (l_g, mut gs, mut gr) = opt_output::<T>(ag, &shape, 4);
    if work(&[&l_x, &l_t, &l_l, l_g.as_ref().unwrap_or(&l_x)]) > WORK {
        return t.skip();
    }
    let (x_s, x_r) = pair!(t, bx, l_x);
    let (t_s, t_r) = pair!(t, bt, l_t);
    let (l_s_, l_r_) = pair_mut!(t, ls, lr, l_l);
    let (g_s, g_r) = opt_pair_mut!(t, gs, gr, l_g);
    t.same(
        "cross_entropy",
        s.cross_entropy(cfg, x_s, t_s, l_s_, g_s),
        R.cross_entropy(cfg, x_r, t_r, l_r_, g_r),
    );
}

#[test]
fn cross_entropy_errors_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let t = Tally::default();
    let cfg = (
        unit_or_wild(),
        reduction(),
        prop_oneof![Just(-100i32), Just(0i32), Just(i32::MIN)],
        mostly(1.0),
    )
        .prop_map(
            |(label_smoothing, reduction, ignore_index, scale)| CeConfig {
                label_smoothing,
                reduction,
                ignore_index,
                scale,
            },
        );
    let st = (
        cfg,
        dims(),
        0usize..=2,
        any::<u8>(),
        (arg(), arg(), arg(), opt_arg()),
    );
    run(st, |(cfg, d, rank, seed, args)| {
        let rows = shape_of(&d, rank);
        each_dtype!(ce_case(&t, &s, &cfg, &rows, d[7], seed, &args));
    });
    t.assert_both("cross_entropy");
}

// ---------------------------------------------------------------------------------------------
// fixed cases

/// Every kernel refuses the named bad inputs of the brief, with the reference's error, whatever
/// the random properties above happen to draw.
#[test]
fn named_bad_inputs_are_the_reference_errors() {
    let Some(s) = simd() else { return };
    let x = [1.0f32; 64];
    let (mut ys, mut yr) = ([0.0f32; 64], [0.0f32; 64]);
    macro_rules! both {
        ($what:literal, |$b:ident, $y:ident| $call:expr) => {{
            let got = {
                let $b = &s;
                let $y = &mut ys;
                $call
            };
            let want = {
                let $b = &R;
                let $y = &mut yr;
                $call
            };
            assert!(want.is_err(), "{}: the reference accepts it", $what);
            assert_eq!(got, want, "{}", $what);
        }};
    }
    both!("gemm k differs", |b, y| b.gemm(
        1.0,
        b.view(&x, &[2, 3]).unwrap(),
        b.view(&x, &[4, 2]).unwrap(),
        0.0,
        b.view_mut(y, &[2, 2]).unwrap()
    ));
    both!("gemm NaN alpha", |b, y| b.gemm(
        f64::NAN,
        b.view(&x, &[2, 3]).unwrap(),
        b.view(&x, &[3, 2]).unwrap(),
        0.0,
        b.view_mut(y, &[2, 2]).unwrap()
    ));
    both!("gemm alpha beyond f32", |b, y| b.gemm(
        1e300,
        b.view(&x, &[2, 3]).unwrap(),
        b.view(&x, &[3, 2]).unwrap(),
        0.0,
        b.view_mut(y, &[2, 2]).unwrap()
    ));
    both!("gemm rank 1", |b, y| b.gemm(
        1.0,
        b.view(&x, &[3]).unwrap(),
        b.view(&x, &[3]).unwrap(),
        0.0,
        b.view_mut(y, &[1]).unwrap()
    ));
    both!("softmax y of another shape", |b, y| b.softmax(
        SoftmaxKind::Softmax,
        b.view(&x, &[2, 3]).unwrap(),
        None,
        b.view_mut(y, &[3, 2]).unwrap()
    ));
    both!("unary infinite scale", |b, y| b.unary(
        Unary::Scale(f64::INFINITY),
        b.view(&x, &[9]).unwrap(),
        b.view_mut(y, &[9]).unwrap()
    ));
    both!("binary b of another shape", |b, y| b.binary(
        Binary::Mul,
        b.view(&x, &[2, 9]).unwrap(),
        b.view(&x, &[9, 2]).unwrap(),
        b.view_mut(y, &[2, 9]).unwrap()
    ));
    both!("reduce y keeps the axis", |b, y| b.reduce(
        Reduce::Sum,
        b.view(&x, &[2, 9]).unwrap(),
        b.view_mut(y, &[2, 9]).unwrap()
    ));
    both!("cast y of another shape", |b, y| b.cast(
        b.view(&x, &[2, 9]).unwrap(),
        b.view_mut(y, &[18]).unwrap()
    ));
    both!("rope inv_freq too long", |b, y| b.rope(
        RopeLayout::Half,
        &[1.0, 0.5, 0.25],
        1.0,
        RopePositions::Offset(0),
        Some(b.view(&x, &[1, 2, 3, 4]).unwrap()),
        b.view_mut(y, &[1, 2, 3, 4]).unwrap()
    ));
    both!("rope NaN frequency", |b, y| b.rope(
        RopeLayout::Interleaved,
        &[f64::NAN],
        1.0,
        RopePositions::Offset(0),
        None,
        b.view_mut(y, &[1, 2, 3, 4]).unwrap()
    ));
    both!("rope positions overflow", |b, y| b.rope(
        RopeLayout::Half,
        &[1.0],
        1.0,
        RopePositions::Offset(u64::MAX),
        None,
        b.view_mut(y, &[1, 2, 3, 4]).unwrap()
    ));
    let (mut vs, mut is) = ([0.0f32; 8], [0u32; 8]);
    let (mut vr, mut ir) = ([0.0f32; 8], [0u32; 8]);
    assert_eq!(
        s.top_k(
            4,
            s.view(&x, &[2, 3]).unwrap(),
            s.view_mut(&mut vs, &[2, 4]).unwrap(),
            s.view_mut(&mut is, &[2, 4]).unwrap()
        ),
        R.top_k(
            4,
            R.view(&x, &[2, 3]).unwrap(),
            R.view_mut(&mut vr, &[2, 4]).unwrap(),
            R.view_mut(&mut ir, &[2, 4]).unwrap()
        )
    );
    // Attention: 2 key/value heads do not divide 3 query heads; a workspace one short.
    let q = [0.5f32; 2 * 3 * 4 * 8];
    let (mut os, mut or) = ([0.0f32; 2 * 3 * 4 * 8], [0.0f32; 2 * 3 * 4 * 8]);
    let dims = AttentionDims {
        batch: 2,
        heads_q: 3,
        heads_kv: 3,
        len_q: 4,
        len_k: 4,
        head_dim: 8,
        value_dim: 8,
    };
    let (ns, nr) = (
        s.attention_workspace_len::<f32>(&dims).unwrap(),
        R.attention_workspace_len::<f32>(&dims).unwrap(),
    );
    let (mut ws_s, mut ws_r) = (vec![0.0f32; ns], vec![0.0f32; nr]);
    let got = s.attention(
        &AttentionParams::default(),
        s.view(&q, &[2, 3, 4, 8]).unwrap(),
        s.view(&q, &[2, 2, 4, 8]).unwrap(),
        s.view(&q, &[2, 2, 4, 8]).unwrap(),
        AttentionMasks::none(),
        s.view_mut(&mut os, &[2, 3, 4, 8]).unwrap(),
        None,
        &mut ws_s,
    );
    let want = R.attention(
        &AttentionParams::default(),
        R.view(&q, &[2, 3, 4, 8]).unwrap(),
        R.view(&q, &[2, 2, 4, 8]).unwrap(),
        R.view(&q, &[2, 2, 4, 8]).unwrap(),
        AttentionMasks::none(),
        R.view_mut(&mut or, &[2, 3, 4, 8]).unwrap(),
        None,
        &mut ws_r,
    );
    assert!(want.is_err());
    assert_eq!(got, want);
    for (b_ok, len) in [(true, ns), (false, nr)] {
        let mut w = vec![0.0f32; len - 1];
        let r = if b_ok {
            s.attention(
                &AttentionParams::causal(),
                s.view(&q, &[2, 3, 4, 8]).unwrap(),
                s.view(&q, &[2, 3, 4, 8]).unwrap(),
                s.view(&q, &[2, 3, 4, 8]).unwrap(),
                AttentionMasks::none(),
                s.view_mut(&mut os, &[2, 3, 4, 8]).unwrap(),
                None,
                &mut w,
            )
        } else {
            R.attention(
                &AttentionParams::causal(),
                R.view(&q, &[2, 3, 4, 8]).unwrap(),
                R.view(&q, &[2, 3, 4, 8]).unwrap(),
                R.view(&q, &[2, 3, 4, 8]).unwrap(),
                AttentionMasks::none(),
                R.view_mut(&mut or, &[2, 3, 4, 8]).unwrap(),
                None,
                &mut w,
            )
        };
        assert!(
            matches!(r, Err(Error::Capacity { arg: "workspace", needed, capacity })
                if needed == len && capacity == len - 1),
            "{} with a workspace of {} (asked {len}): {r:?}",
            if b_ok { "simd" } else { "reference" },
            len - 1
        );
    }
}

/// Empty outputs with a huge number of (empty) rows return at once on the simd backend too (a
/// kernel that walked them would never return). Each call runs on a thread with a deadline.
#[test]
fn empty_outputs_with_huge_extents_return_at_once() {
    let Some(s) = simd() else { return };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let m = usize::MAX;
        let e: [f32; 0] = [];
        let mut y: [f32; 0] = [];
        let mut iy: [u32; 0] = [];
        let x3 = [1.0f32, 2.0, 3.0];
        for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
            s.softmax(
                kind,
                s.view(&e, &[m, 0]).unwrap(),
                None,
                s.view_mut(&mut y, &[m, 0]).unwrap(),
            )
            .unwrap();
        }
        let xb = s.view(&x3, &[3]).unwrap().expand(&[m / 4, 3]).unwrap();
        s.top_k(
            0,
            xb,
            s.view_mut(&mut y, &[m / 4, 0]).unwrap(),
            s.view_mut(&mut iy, &[m / 4, 0]).unwrap(),
        )
        .unwrap();
        s.gemm(
            1.0,
            s.view(&e, &[m, 2, 0]).unwrap(),
            s.view(&e, &[m, 0, 0]).unwrap(),
            0.0,
            s.view_mut(&mut y, &[m, 2, 0]).unwrap(),
        )
        .unwrap();
        let xb = s
            .view(&x3, &[1, 3])
            .unwrap()
            .expand(&[m / 16, 5, 3])
            .unwrap();
        let bb = s
            .view(&x3, &[3, 1])
            .unwrap()
            .expand(&[m / 16, 3, 0])
            .unwrap();
        s.gemm(
            1.0,
            xb,
            bb,
            1.0,
            s.view_mut(&mut y, &[m / 16, 5, 0]).unwrap(),
        )
        .unwrap();
        s.reduce(
            Reduce::Sum,
            s.view(&e, &[0, m]).unwrap(),
            s.view_mut(&mut y, &[0]).unwrap(),
        )
        .unwrap();
        s.unary(
            Unary::Exp,
            s.view(&e, &[m, 0]).unwrap(),
            s.view_mut(&mut y, &[m, 0]).unwrap(),
        )
        .unwrap();
        s.cast(
            s.view(&e, &[m, 0, m]).unwrap(),
            s.view_mut(&mut y, &[m, 0, m]).unwrap(),
        )
        .unwrap();
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(if cfg!(miri) { 600 } else { 10 }))
        .expect("a simd kernel walked 2^64 empty rows (or panicked)");
}
