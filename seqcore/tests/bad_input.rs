//! Bad input is an `Err`, never a panic: random shapes, strides, offsets, ranks (past
//! `MAX_RANK` too), buffer lengths (too short too), `k`, non-finite constants and mismatched
//! arguments, fed to every public entry point. A panic anywhere fails the property.
//!
//! The properties run through `TestRunner` by hand so that each test can also check afterwards
//! that both outcomes (a kernel that ran and one that refused) were actually reached.

// Helpers of a test crate unwrap and index as freely as the tests themselves (clippy.toml
// allows it inside `#[test]` functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use core::cell::Cell;
use core::time::Duration;
use std::sync::mpsc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
#[cfg(feature = "alloc")]
use seqcore::Allocate;
use seqcore::{
    Backend, Binary, Dims, Element, Error, Layout, MAX_RANK, Reduce, Reference, SoftmaxKind, Unary,
    View, ViewMut, bf16, check, f16,
};

const B: Reference = Reference;
/// Kernels are only run when their work is at most this many element-steps (a valid broadcast
/// view may stand for 2^64 elements: that is a lot of work, not an error).
const WORK: usize = 20_000;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// strategies

/// Mostly small, sometimes at or near the top of `usize`.
fn wild() -> impl Strategy<Value = usize> {
    prop_oneof![
        10 => 0usize..6,
        1 => Just(usize::MAX),
        1 => Just(usize::MAX - 1),
        1 => Just(usize::MAX / 2 + 1),
        1 => Just(1usize << 33),
        1 => any::<usize>(),
    ]
}

fn extent() -> impl Strategy<Value = usize> {
    prop_oneof![20 => 0usize..4, 1 => Just(usize::MAX), 1 => Just(1usize << 40)]
}

/// Ranks 0 to 4 mostly, up to 8 (past `MAX_RANK`) sometimes.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        10 => prop::collection::vec(extent(), 0..=4),
        1 => prop::collection::vec(extent(), 5..=8),
    ]
}

fn wild_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -3.0f64..3.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(1e300),
        1 => Just(-1e-310),
    ]
}

/// How one kernel argument is laid out over how much memory.
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
    (
        any::<u8>(),
        prop_oneof![20 => 0usize..3, 1 => Just(usize::MAX), 1 => any::<usize>()],
        prop::collection::vec(
            prop_oneof![8 => 0usize..6, 1 => Just(usize::MAX), 1 => any::<usize>()],
            0..=7,
        ),
        prop_oneof![12 => 0i64..3, 1 => -3i64..0],
        prop::option::weighted(0.08, shape()),
    )
        .prop_map(|(form, offset, strides, slack, shape)| Arg {
            form,
            offset,
            strides,
            slack,
            shape,
        })
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

    /// A buffer for `layout`, filled from a palette holding NaN, infinities and signed zeros.
    fn buffer<T: Element>(&self, layout: &Result<Layout, Error>, seed: usize) -> Vec<T> {
        let len = match layout {
            Ok(l) if l.end() <= 4096 => {
                usize::try_from((i64::try_from(l.end()).unwrap() + self.slack).max(0)).unwrap()
            }
            _ => 8,
        };
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
        (0..len)
            .map(|i| T::from_f64(PALETTE[(i * 7 + seed) % PALETTE.len()]))
            .collect()
    }
}

/// Outcome counters of one property.
#[derive(Default, Debug)]
struct Tally {
    ran_ok: Cell<usize>,
    ran_err: Cell<usize>,
    no_view: Cell<usize>,
    too_big: Cell<usize>,
}

impl Tally {
    fn record<T>(&self, r: Result<T, Error>) {
        match r {
            Ok(_) => self.ran_ok.set(self.ran_ok.get() + 1),
            Err(e) => {
                // Every error can be printed and names something.
                assert!(!e.to_string().is_empty());
                self.ran_err.set(self.ran_err.get() + 1);
            }
        }
    }
    fn skip_view(&self) {
        self.no_view.set(self.no_view.get() + 1);
    }
    fn skip_big(&self) {
        self.too_big.set(self.too_big.get() + 1);
    }
    #[track_caller]
    fn assert_both(&self, what: &str) {
        println!("{what}: {self:?}");
        assert!(self.ran_ok.get() > 0, "{what}: no call succeeded: {self:?}");
        assert!(self.ran_err.get() > 0, "{what}: no call failed: {self:?}");
    }
}

fn run<S: Strategy>(cases: u32, s: S, f: impl Fn(S::Value)) {
    let mut runner = TestRunner::new(config(cases));
    runner
        .run(&s, |v| {
            f(v);
            Ok(())
        })
        .unwrap();
}

/// The view of an argument, or `None` (counted) when its layout or bounds are refused.
macro_rules! view {
    ($tally:expr, $buf:expr, $layout:expr) => {
        match $layout.and_then(|l| View::<Reference, _>::new(&$buf[..], l)) {
            Ok(v) => v,
            Err(_) => {
                $tally.skip_view();
                return;
            }
        }
    };
}
macro_rules! view_mut {
    ($tally:expr, $buf:expr, $layout:expr) => {
        match $layout.and_then(|l| ViewMut::<Reference, _>::new(&mut $buf[..], l)) {
            Ok(v) => v,
            Err(_) => {
                $tally.skip_view();
                return;
            }
        }
    };
}

fn numel(l: &Result<Layout, Error>) -> usize {
    l.as_ref().map_or(0, Layout::numel)
}

// ---------------------------------------------------------------------------------------------
// layouts

/// Consistency of any layout that was handed out: addresses in bounds, counts right.
fn check_layout(l: &Layout) {
    assert!(l.rank() <= MAX_RANK);
    assert_eq!(l.shape().len(), l.rank());
    assert_eq!(l.strides().len(), l.rank());
    assert_eq!(l.dims().as_slice(), l.shape());
    let n = l
        .shape()
        .iter()
        .try_fold(1usize, |a, &x| a.checked_mul(x))
        .unwrap_or_else(|| {
            assert!(l.shape().contains(&0), "element count of {l:?} overflows");
            0
        });
    assert_eq!(l.numel(), n);
    assert_eq!(l.offsets().len(), n);
    let end = l.end();
    if n == 0 {
        assert_eq!(end, 0);
    }
    for o in l.offsets().take(64) {
        assert!(o < end, "{l:?}: address {o} past end {end}");
    }
    if n <= 256 {
        let all: Vec<usize> = l.offsets().collect();
        assert_eq!(all.len(), n);
        if let Some(m) = all.iter().max() {
            assert_eq!(m + 1, end, "{l:?}");
        }
        if l.is_non_overlapping() {
            let mut d = all.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), n, "{l:?} claims no overlap");
        }
        if l.is_contiguous() && n > 0 {
            assert!(
                all.windows(2).all(|w| w[1] == w[0] + 1),
                "{l:?} claims contiguity"
            );
        }
    }
    let (rows, len, _) = l.split_last();
    if l.rank() > 0 {
        assert_eq!(rows.rank() + 1, l.rank());
        assert_eq!(len, l.shape()[l.rank() - 1]);
    }
    for a in 0..=l.rank() + 1 {
        let _ = l.extent(a);
    }
    let _ = format!("{l:?}");
}

#[derive(Clone, Debug)]
struct Op {
    kind: u8,
    a: usize,
    b: usize,
    c: usize,
    shape: Vec<usize>,
    order: Vec<usize>,
}

fn op() -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        wild(),
        wild(),
        wild(),
        shape(),
        prop::collection::vec(prop_oneof![8 => 0usize..6, 1 => Just(usize::MAX)], 0..=7),
    )
        .prop_map(|(kind, a, b, c, shape, order)| Op {
            kind,
            a,
            b,
            c,
            shape,
            order,
        })
}

fn apply(l: &Layout, o: &Op) -> Result<Layout, Error> {
    let other = Layout::contiguous(&o.shape);
    match o.kind % 10 {
        0 => l.select(o.a % 8, o.b),
        1 => l.narrow(o.a % 8, o.b, o.c),
        2 => l.transpose(o.a % 8, o.b % 8),
        3 => l.permute(&o.order),
        4 => l.unsqueeze(o.a % 8),
        5 => l.expand(&o.shape),
        6 => l.reshape(&o.shape),
        7 => {
            let _ = check::shape("x", l, &o.shape);
            let _ = other.map(|x| check::rows(l, "y", &x, Some(o.a)));
            let _ = other.map(|x| check::rows(l, "y", &x, None));
            let _ = other.map(|x| check::gemm(l, &x, l));
            let _ = other.map(|x| check::gemm(&x, l, &x));
            Err(Error::Param {
                arg: "op",
                reason: "no layout",
            })
        }
        8 => l.select(o.a, o.b).and_then(|x| x.narrow(0, o.c % 4, 1)),
        _ => l.narrow(o.a % 8, o.b % 4, o.c % 4),
    }
}

#[test]
fn layouts_never_panic() {
    let tally = Tally::default();
    let s = (
        wild(),
        prop_oneof![10 => prop::collection::vec(wild(), 0..=6), 1 => prop::collection::vec(wild(), 7..=8)],
        prop::collection::vec(wild(), 0..=8),
        prop::collection::vec(op(), 0..6),
    );
    run(400, s, |(off, shape, strides, ops)| {
        let made = [
            Layout::new(off, &shape, &strides),
            Layout::contiguous(&shape),
            Layout::contiguous_at(off, &shape),
            Layout::new(off, &shape, &vec![0; shape.len()]),
        ];
        for l in made {
            let mut l = match l {
                Ok(l) => l,
                Err(e) => {
                    tally.record::<()>(Err(e));
                    continue;
                }
            };
            tally.record(Ok(()));
            check_layout(&l);
            for o in &ops {
                match apply(&l, o) {
                    Ok(next) => {
                        check_layout(&next);
                        // A cut never reaches further than what it was cut from (broadcasts
                        // and reshapes are checked afresh).
                        if matches!(o.kind % 10, 0 | 1 | 2 | 3 | 8 | 9) && next.numel() > 0 {
                            assert!(next.end() <= l.end(), "{o:?}: {l:?} -> {next:?}");
                        }
                        tally.record(Ok(()));
                        l = next;
                    }
                    Err(e) => tally.record::<()>(Err(e)),
                }
            }
        }
    });
    tally.assert_both("layouts");
}

#[test]
fn views_never_panic() {
    let tally = Tally::default();
    let s = (
        0usize..40,
        wild(),
        shape(),
        prop::collection::vec(wild(), 0..=7),
        prop::collection::vec(op(), 0..4),
    );
    run(400, s, |(len, off, shape, strides, ops)| {
        let mut buf = vec![0.0f32; len];
        let layouts = [
            Layout::new(off, &shape, &strides),
            Layout::new(off % 4, &shape, &strides),
            Layout::contiguous_at(off % 4, &shape),
            Layout::contiguous(&shape),
        ];
        for l in layouts.into_iter().flatten() {
            let v = View::<Reference, f32>::new(&buf[..], l);
            if let Ok(v) = &v {
                assert!(v.layout().end() <= len);
                for o in &ops {
                    let cut = match o.kind % 5 {
                        0 => v.select(o.a % 8, o.b),
                        1 => v.narrow(o.a % 8, o.b, o.c),
                        2 => v.transpose(o.a % 8, o.b % 8),
                        3 => v.expand(&o.shape),
                        _ => v.map_layout(|x| apply(x, o)),
                    };
                    if let Ok(c) = &cut {
                        assert!(c.layout().end() <= len);
                        check_layout(c.layout());
                    }
                    tally.record(cut);
                }
                let _ = format!("{v:?}");
            }
            tally.record(v);
            let w = ViewMut::<Reference, f32>::new(&mut buf[..], l);
            if let Ok(mut w) = w {
                assert!(w.layout().end() <= len);
                assert!(w.layout().is_non_overlapping());
                for o in &ops {
                    let cut = match o.kind % 4 {
                        0 => w.reborrow().select(o.a % 8, o.b),
                        1 => w.reborrow().narrow(o.a % 8, o.b, o.c),
                        2 => w.reborrow().transpose(o.a % 8, o.b % 8),
                        _ => w.reborrow().map_layout(|x| apply(x, o)),
                    };
                    if let Ok(c) = &cut {
                        assert!(c.layout().end() <= len);
                        assert!(c.layout().is_non_overlapping());
                    }
                    tally.record(cut);
                }
                let _ = w.as_view();
                let _ = w.parts();
                tally.record(Ok(()));
            } else {
                tally.record(w);
            }
        }
        tally.record(View::<Reference, f32>::contiguous(&buf[..], &shape));
        tally.record(ViewMut::<Reference, f32>::contiguous(&mut buf[..], &shape));
        tally.record(B.view(&buf[..], &shape));
        tally.record(B.view_mut(&mut buf[..], &shape));
    });
    tally.assert_both("views");
}

// ---------------------------------------------------------------------------------------------
// kernels

type Args3 = (Arg, Arg, Arg);

fn args3() -> impl Strategy<Value = Args3> {
    (arg(), arg(), arg())
}

fn gemm_case<T: Element>(
    t: &Tally,
    batch: Option<usize>,
    (m, n, k): (usize, usize, usize),
    (aa, ab, ac): &Args3,
    alpha: f64,
    beta: f64,
) {
    let dims = |x: usize, y: usize| match batch {
        Some(b) => vec![b, x, y],
        None => vec![x, y],
    };
    let (la, lb, lc) = (
        aa.layout(&dims(m, k)),
        ab.layout(&dims(k, n)),
        ac.layout(&dims(m, n)),
    );
    let work = numel(&lc).saturating_mul(k.max(1));
    let (ba, bb, mut bc) = (
        aa.buffer::<T>(&la, 1),
        ab.buffer::<T>(&lb, 2),
        ac.buffer::<T>(&lc, 3),
    );
    let (a, b, c) = (view!(t, ba, la), view!(t, bb, lb), view_mut!(t, bc, lc));
    if work > WORK {
        return t.skip_big();
    }
    t.record(B.gemm(alpha, a, b, beta, c));
}

#[test]
fn gemm_never_panics() {
    let t = Tally::default();
    let s = (
        prop::option::of(extent()),
        (extent(), extent(), extent()),
        args3(),
        wild_f64(),
        wild_f64(),
    );
    run(300, s, |(batch, mnk, args, alpha, beta)| {
        gemm_case::<f32>(&t, batch, mnk, &args, alpha, beta);
        gemm_case::<f16>(&t, batch, mnk, &args, alpha, beta);
    });
    t.assert_both("gemm");
}

fn softmax_case<T: Element>(
    t: &Tally,
    shape: &[usize],
    (ax, am, ay): &Args3,
    masked: bool,
    log: bool,
) {
    let kind = if log {
        SoftmaxKind::LogSoftmax
    } else {
        SoftmaxKind::Softmax
    };
    let (lx, lm, ly) = (ax.layout(shape), am.layout(shape), ay.layout(shape));
    let work = numel(&ly).max(numel(&lx));
    let (bx, bm, mut by) = (
        ax.buffer::<T>(&lx, 1),
        am.buffer::<T>(&lm, 2),
        ay.buffer::<T>(&ly, 3),
    );
    let x = view!(t, bx, lx);
    let m = if masked { Some(view!(t, bm, lm)) } else { None };
    let y = view_mut!(t, by, ly);
    if work > WORK {
        return t.skip_big();
    }
    t.record(B.softmax(kind, x, m, y));
}

#[test]
fn softmax_never_panics() {
    let t = Tally::default();
    run(
        300,
        (shape(), args3(), any::<bool>(), any::<bool>()),
        |(shape, args, masked, log)| {
            softmax_case::<f32>(&t, &shape, &args, masked, log);
            softmax_case::<f16>(&t, &shape, &args, masked, log);
        },
    );
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
    shape: &[usize],
    (ax, ab, ay): &Args3,
    which: u8,
    c: f64,
) {
    let (lx, lb, ly) = (ax.layout(shape), ab.layout(shape), ay.layout(shape));
    let work = numel(&ly).max(numel(&lx));
    let (bx, bbuf, mut by) = (
        ax.buffer::<T>(&lx, 1),
        ab.buffer::<T>(&lb, 2),
        ay.buffer::<T>(&ly, 3),
    );
    let x = view!(t, bx, lx);
    let b = view!(t, bbuf, lb);
    let mut y = view_mut!(t, by, ly);
    if work > WORK {
        return t.skip_big();
    }
    let op = unary_op(which, c);
    // The scalar definitions themselves take any value.
    let _ = op.validate::<f32>();
    let _ = op.apply(c);
    t.record(B.unary(op, x, y.reborrow()));
    let bop = Binary::ALL[usize::from(which) % Binary::ALL.len()];
    let _ = bop.apply(c, -c);
    t.record(B.binary(bop, x, b, y.reborrow()));
    // Casts to every element type (the output shares y's layout).
    let n = y.layout().end();
    let l = *y.layout();
    let mut y32 = vec![0.0f32; n];
    let mut y64 = vec![0.0f64; n];
    let mut y16 = vec![f16::ZERO; n];
    let mut yb = vec![bf16::ZERO; n];
    t.record(ViewMut::new(&mut y32[..], l).and_then(|y| B.cast(x, y)));
    t.record(ViewMut::new(&mut y64[..], l).and_then(|y| B.cast(x, y)));
    t.record(ViewMut::new(&mut y16[..], l).and_then(|y| B.cast(x, y)));
    t.record(ViewMut::new(&mut yb[..], l).and_then(|y| B.cast(x, y)));
    t.record(B.cast(x, y));
}

#[test]
fn elementwise_never_panics() {
    let t = Tally::default();
    run(
        300,
        (shape(), args3(), any::<u8>(), wild_f64()),
        |(shape, args, which, c)| {
            elementwise_case::<f32>(&t, &shape, &args, which, c);
            elementwise_case::<f16>(&t, &shape, &args, which, c);
        },
    );
    t.assert_both("elementwise");
}

fn reduce_case<T: Element>(t: &Tally, shape: &[usize], (ax, ay, _): &Args3, which: u8) {
    let out: &[usize] = shape.split_last().map_or(&[], |(_, rest)| rest);
    let (lx, ly) = (ax.layout(shape), ay.layout(out));
    let work = numel(&lx).max(numel(&ly));
    let (bx, mut by) = (ax.buffer::<T>(&lx, 1), ay.buffer::<T>(&ly, 2));
    let x = view!(t, bx, lx);
    let y = view_mut!(t, by, ly);
    if work > WORK {
        return t.skip_big();
    }
    let op = Reduce::ALL[usize::from(which) % Reduce::ALL.len()];
    t.record(B.reduce(op, x, y));
}

#[test]
fn reduce_never_panics() {
    let t = Tally::default();
    run(
        300,
        (shape(), args3(), any::<u8>()),
        |(shape, args, which)| {
            reduce_case::<f32>(&t, &shape, &args, which);
            reduce_case::<f16>(&t, &shape, &args, which);
        },
    );
    t.assert_both("reduce");
}

fn top_k_case<T: Element>(t: &Tally, shape: &[usize], (ax, av, ai): &Args3, k: usize) {
    let mut out = shape.to_vec();
    match out.last_mut() {
        Some(last) => *last = k,
        None => out.push(k),
    }
    let n = shape.last().copied().unwrap_or(1);
    let (lx, lv, li) = (ax.layout(shape), av.layout(&out), ai.layout(&out));
    let work = numel(&lv)
        .saturating_mul(n)
        .max(numel(&li).saturating_mul(n));
    let (bx, mut bv) = (ax.buffer::<T>(&lx, 1), av.buffer::<T>(&lv, 2));
    let mut bi: Vec<u32> = vec![7; ai.buffer::<f32>(&li, 0).len()];
    let x = view!(t, bx, lx);
    let v = view_mut!(t, bv, lv);
    let i = view_mut!(t, bi, li);
    if work > WORK {
        return t.skip_big();
    }
    t.record(B.top_k(k, x, v, i));
}

#[test]
fn top_k_never_panics() {
    let t = Tally::default();
    let k = prop_oneof![8 => 0usize..6, 1 => Just(usize::MAX), 1 => Just(1usize << 33)];
    run(300, (shape(), args3(), k), |(shape, args, k)| {
        top_k_case::<f32>(&t, &shape, &args, k);
        top_k_case::<f16>(&t, &shape, &args, k);
    });
    t.assert_both("top_k");
}

#[test]
fn host_transfers_and_checks_never_panic() {
    let t = Tally::default();
    let s = (
        0usize..20,
        0usize..20,
        wild_f64(),
        shape(),
        shape(),
        any::<String>(),
    );
    run(300, s, |(ls, ld, x, s1, s2, name)| {
        let src = vec![1.5f32; ls];
        let mut dst = vec![0.0f32; ld];
        let r = B.write(&src[..], &mut dst[..]);
        assert_eq!(r.is_ok(), ls == ld);
        t.record(r);
        let r = B.read(&src[..], &mut dst[..]);
        assert_eq!(r.is_ok(), ls == ld);
        if ls == ld {
            assert_eq!(src, dst);
        }
        t.record(r);
        let r = check::finite("x", x);
        assert_eq!(r.is_ok(), x.is_finite());
        t.record(r);
        if let (Ok(a), Ok(b)) = (Layout::contiguous(&s1), Layout::contiguous(&s2)) {
            t.record(check::shape("a", &a, &s2));
            t.record(check::rows(&a, "b", &b, None));
            t.record(check::rows(&a, "b", &b, Some(s2.len())));
            t.record(check::gemm(&a, &b, &a));
            t.record(check::gemm(&a, &a, &a));
        }
        let d = Dims::new(&s1);
        assert_eq!(d.as_slice(), &s1[..s1.len().min(MAX_RANK)]);
        let _ = format!("{d} {d:?}");
        let _ = seqcore::DType::from_name(&name);
        let _ = Unary::from_name(&name);
        let _ = Reduce::from_name(&name);
        let _ = Unary::Scale(x).validate::<f32>();
        let _ = Unary::AddScalar(x).validate::<f64>().map(|u| u.apply(x));
    });
    t.assert_both("host transfers and checks");
}

#[cfg(feature = "alloc")]
#[test]
fn allocation_failure_is_an_error() {
    for len in [usize::MAX, usize::MAX / 2, usize::MAX / 4 + 1] {
        assert!(
            matches!(B.alloc::<f32>(len), Err(Error::OutOfMemory { .. })),
            "{len}"
        );
        assert!(
            matches!(B.alloc::<f64>(len), Err(Error::OutOfMemory { .. })),
            "{len}"
        );
    }
    assert_eq!(B.alloc::<f16>(0).unwrap().len(), 0);
    assert_eq!(B.alloc::<u32>(5).unwrap(), vec![0; 5]);
}

/// Empty outputs with a huge number of (empty) rows: answered at once. Each call runs on a thread
/// that must finish within the deadline (the process ends the thread if it does not).
#[test]
fn empty_outputs_with_huge_extents_return_at_once() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let m = usize::MAX;
        let e: [f32; 0] = [];
        let mut y: [f32; 0] = [];
        let mut iy: [u32; 0] = [];
        let x3 = [1.0f32, 2.0, 3.0];
        for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
            B.softmax(
                kind,
                B.view(&e, &[m, 0]).unwrap(),
                None,
                B.view_mut(&mut y, &[m, 0]).unwrap(),
            )
            .unwrap();
            B.softmax(
                kind,
                B.view(&e, &[3, m, 0]).unwrap(),
                Some(B.view(&e, &[3, m, 0]).unwrap()),
                B.view_mut(&mut y, &[3, m, 0]).unwrap(),
            )
            .unwrap();
        }
        let xb = B.view(&x3, &[3]).unwrap().expand(&[m / 4, 3]).unwrap();
        B.top_k(
            0,
            xb,
            B.view_mut(&mut y, &[m / 4, 0]).unwrap(),
            B.view_mut(&mut iy, &[m / 4, 0]).unwrap(),
        )
        .unwrap();
        B.gemm(
            1.0,
            B.view(&e, &[m, 2, 0]).unwrap(),
            B.view(&e, &[m, 0, 0]).unwrap(),
            0.0,
            B.view_mut(&mut y, &[m, 2, 0]).unwrap(),
        )
        .unwrap();
        let xb = B
            .view(&x3, &[1, 3])
            .unwrap()
            .expand(&[m / 16, 5, 3])
            .unwrap();
        let bb = B
            .view(&x3, &[3, 1])
            .unwrap()
            .expand(&[m / 16, 3, 0])
            .unwrap();
        B.gemm(
            1.0,
            xb,
            bb,
            1.0,
            B.view_mut(&mut y, &[m / 16, 5, 0]).unwrap(),
        )
        .unwrap();
        B.reduce(
            Reduce::Sum,
            B.view(&e, &[0, m]).unwrap(),
            B.view_mut(&mut y, &[0]).unwrap(),
        )
        .unwrap();
        B.unary(
            Unary::Exp,
            B.view(&e, &[m, 0]).unwrap(),
            B.view_mut(&mut y, &[m, 0]).unwrap(),
        )
        .unwrap();
        B.cast(
            B.view(&e, &[m, 0, m]).unwrap(),
            B.view_mut(&mut y, &[m, 0, m]).unwrap(),
        )
        .unwrap();
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a kernel walked 2^64 empty rows (or panicked)");
}

// ---------------------------------------------------------------------------------------------
// specific errors and their messages

#[test]
fn specific_error_variants() {
    let a = [0.0f32; 12];
    let b = [0.0f32; 12];
    let mut c = [0.0f32; 12];
    // gemm with mismatched k.
    let e = B
        .gemm(
            1.0,
            B.view(&a, &[2, 3]).unwrap(),
            B.view(&b, &[4, 2]).unwrap(),
            0.0,
            B.view_mut(&mut c, &[2, 2]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::Shape {
            arg: "b",
            axis: 0,
            got: 4,
            expected: 3,
            shape: Dims::new(&[4, 2])
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("`b`") && msg.contains("[4, 2]") && msg.contains('3'),
        "{msg}"
    );
    // softmax with a mask of another shape.
    let e = B
        .softmax(
            SoftmaxKind::Softmax,
            B.view(&a, &[3, 4]).unwrap(),
            Some(B.view(&b, &[4, 3]).unwrap()),
            B.view_mut(&mut c, &[3, 4]).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Shape { arg: "mask", .. }), "{e:?}");
    assert!(e.to_string().contains("`mask`"));
    let e = B
        .softmax(
            SoftmaxKind::LogSoftmax,
            B.view(&a, &[3, 4]).unwrap(),
            Some(B.view(&b, &[12]).unwrap()),
            B.view_mut(&mut c, &[3, 4]).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Rank {
                arg: "mask",
                got: 1,
                min: 2,
                max: 2
            }
        ),
        "{e:?}"
    );
    // top_k with k > n.
    let mut v = [0.0f32; 15];
    let mut i = [0u32; 15];
    let e = B
        .top_k(
            5,
            B.view(&a, &[3, 4]).unwrap(),
            B.view_mut(&mut v, &[3, 5]).unwrap(),
            B.view_mut(&mut i, &[3, 5]).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Param { arg: "k", .. }), "{e:?}");
    assert!(e.to_string().contains("`k`"));
    // unary with a non-finite constant, gemm with a NaN alpha.
    let e = B
        .unary(
            Unary::Scale(f64::NAN),
            B.view(&a, &[12]).unwrap(),
            B.view_mut(&mut c, &[12]).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Param { arg: "op", .. }), "{e:?}");
    let e = B
        .gemm(
            f64::NAN,
            B.view(&a, &[2, 3]).unwrap(),
            B.view(&b, &[3, 2]).unwrap(),
            0.0,
            B.view_mut(&mut c, &[2, 2]).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Param { arg: "alpha", .. }), "{e:?}");
    // Shape errors name the output or the second operand.
    let e = B
        .binary(
            Binary::Add,
            B.view(&a, &[3, 4]).unwrap(),
            B.view(&b, &[4, 3]).unwrap(),
            B.view_mut(&mut c, &[3, 4]).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Shape { arg: "b", .. }), "{e:?}");
    let e = B
        .reduce(
            Reduce::Max,
            B.view(&a, &[3, 4]).unwrap(),
            B.view_mut(&mut c, &[4]).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                arg: "y",
                got: 4,
                expected: 3,
                ..
            }
        ),
        "{e:?}"
    );
    let mut h = [f16::ZERO; 12];
    let e = B
        .cast(
            B.view(&a, &[3, 4]).unwrap(),
            B.view_mut(&mut h, &[2, 6]).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Shape { arg: "y", .. }), "{e:?}");
    // Views and transfers.
    let e = B.view(&a, &[13]).unwrap_err();
    assert_eq!(
        e,
        Error::OutOfBounds {
            arg: "view",
            end: 13,
            len: 12
        }
    );
    let e = ViewMut::<Reference, f32>::new(&mut c[..], Layout::new(0, &[4], &[0]).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Overlap { arg: "view", .. }), "{e:?}");
    let e = B.write(&a[..3], &mut c[..]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                arg: "dst",
                got: 12,
                expected: 3,
                ..
            }
        ),
        "{e:?}"
    );
    let e = Layout::contiguous(&[1; 7]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Rank {
                arg: "shape",
                got: 7,
                ..
            }
        ),
        "{e:?}"
    );
    let e = Layout::new(usize::MAX, &[], &[]).unwrap_err();
    assert!(matches!(e, Error::Overflow { .. }), "{e:?}");
}

#[test]
fn every_error_message_names_its_argument() {
    let shape = Dims::new(&[2, 7]);
    let errs = [
        Error::Shape {
            arg: "alpha_arg",
            axis: 1,
            got: 7,
            expected: 3,
            shape,
        },
        Error::Rank {
            arg: "alpha_arg",
            got: 4,
            min: 2,
            max: 3,
        },
        Error::Rank {
            arg: "alpha_arg",
            got: 4,
            min: 2,
            max: 2,
        },
        Error::OutOfBounds {
            arg: "alpha_arg",
            end: 13,
            len: 12,
        },
        Error::Overflow { arg: "alpha_arg" },
        Error::Overlap {
            arg: "alpha_arg",
            shape,
        },
        Error::Axis {
            arg: "alpha_arg",
            axis: 5,
            rank: 2,
        },
        Error::Index {
            arg: "alpha_arg",
            end: 9,
            len: 4,
        },
        Error::Param {
            arg: "alpha_arg",
            reason: "must be finite",
        },
        Error::Capacity {
            arg: "alpha_arg",
            needed: 10,
            capacity: 8,
        },
    ];
    for e in errs {
        let msg = e.to_string();
        assert!(msg.contains("`alpha_arg`"), "{e:?} -> {msg}");
        let _: &dyn core::error::Error = &e;
    }
    // The numbers that matter are in the messages too.
    assert!(errs[0].to_string().contains("[2, 7]"));
    assert!(errs[0].to_string().contains('3') && errs[0].to_string().contains('7'));
    assert!(errs[1].to_string().contains("2 to 3"));
    assert!(errs[3].to_string().contains("13") && errs[3].to_string().contains("12"));
    assert!(errs[5].to_string().contains("[2, 7]"));
    assert!(errs[8].to_string().contains("must be finite"));
    assert!(errs[9].to_string().contains("10") && errs[9].to_string().contains('8'));
    // The variants without an argument name what they are about.
    let e = Error::OutOfMemory { bytes: 123_456 };
    assert!(e.to_string().contains("123456"));
    let e = Error::Unsupported {
        op: "fft_conv",
        backend: "cuda",
    };
    assert!(e.to_string().contains("fft_conv") && e.to_string().contains("cuda"));
    let e = Error::Unavailable {
        backend: "cuda",
        reason: "no driver",
    };
    assert!(e.to_string().contains("cuda") && e.to_string().contains("no driver"));
}

#[test]
fn parameters_must_be_finite_in_the_accumulation_type() {
    // 1e300 is a finite f64 but overflows the f32 that f32, f16 and bf16 compute in.
    let b = Reference;
    let (a, x) = ([1.0f32; 4], [1.0f32; 4]);
    let mut c = [0.0f32; 4];
    let r = b.gemm(
        1e300,
        b.view(&a, &[2, 2]).unwrap(),
        b.view(&x, &[2, 2]).unwrap(),
        0.0,
        b.view_mut(&mut c, &[2, 2]).unwrap(),
    );
    assert!(matches!(r, Err(Error::Param { arg: "alpha", .. })), "{r:?}");
    let mut y = [0.0f32; 4];
    let r = b.unary(
        Unary::Scale(1e300),
        b.view(&a, &[4]).unwrap(),
        b.view_mut(&mut y, &[4]).unwrap(),
    );
    assert!(matches!(r, Err(Error::Param { arg: "op", .. })), "{r:?}");
    // In f64 the same calls are fine.
    let (a, x) = ([1.0f64; 4], [1.0f64; 4]);
    let mut c = [0.0f64; 4];
    b.gemm(
        1e300,
        b.view(&a, &[2, 2]).unwrap(),
        b.view(&x, &[2, 2]).unwrap(),
        0.0,
        b.view_mut(&mut c, &[2, 2]).unwrap(),
    )
    .unwrap();
    assert_eq!(c, [2e300; 4]);
}
