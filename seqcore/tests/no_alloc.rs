//! No kernel of the reference backend allocates: a counting global allocator (this file is its
//! own test binary) must not move while every kernel runs on stack arrays, at every element type.
//!
//! Everything is in one `#[test]`, so no other test of this binary runs (and allocates) at the same
//! time; the count is taken between two reads inside it.

// Helpers of a test crate unwrap and index as freely as the tests themselves (clippy.toml
// allows it inside `#[test]` functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use core::alloc::{GlobalAlloc, Layout as AllocLayout};
use core::hint::black_box;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use seqcore::{
    Backend, Binary, Element, Reduce, Reference, SoftmaxKind, Unary, View, ViewMut, bf16, f16,
};

/// `System`, counting every allocation and reallocation.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are ours; the counter is a relaxed atomic increment and does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` was allocated by this allocator, i.e. by `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: forwarded unchanged; `ptr` was allocated by this allocator, i.e. by `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::SeqCst)
}

const B: Reference = Reference;

/// Fixed inputs (with a NaN, infinities and a tie) as `T`.
fn arr<T: Element, const N: usize>(f: impl Fn(usize) -> f64) -> [T; N] {
    core::array::from_fn(|i| T::from_f64(f(i)))
}

/// Results of every call, kept in a fixed array so that nothing is formatted or collected while
/// the count runs.
struct Log {
    ok: [bool; 128],
    n: usize,
}

impl Log {
    fn push<E>(&mut self, r: Result<(), E>) {
        if let Some(slot) = self.ok.get_mut(self.n) {
            *slot = r.is_ok();
        }
        self.n += 1;
    }
}

fn all_kernels<T: Element>(log: &mut Log) {
    let x: [T; 24] = arr(|i| (i as f64 - 11.0) * 0.375);
    let w: [T; 24] = arr(|i| ((i * 7) % 5) as f64 - 2.0);
    let mut out = [T::from_f64(0.0); 24];

    // gemm: rank 2, rank 3 with a batch-shared (stride 0) operand, transposed operands, beta.
    let mut run = || -> seqcore::Result<()> {
        let a = B.view(&x, &[4, 6])?;
        let b = B.view(&w, &[6, 4])?;
        B.gemm(1.0, a, b, 0.0, B.view_mut(&mut out[..16], &[4, 4])?)?;
        let a = B.view(&x, &[2, 3, 4])?;
        let b = B.view(&w[..8], &[4, 2])?.expand(&[2, 4, 2])?;
        B.gemm(0.5, a, b, 2.0, B.view_mut(&mut out[..12], &[2, 3, 2])?)?;
        let at = B.view(&x, &[6, 4])?.transpose(0, 1)?;
        let bt = B.view(&w, &[4, 6])?.transpose(0, 1)?;
        let ct = B.view_mut(&mut out[..16], &[4, 4])?.transpose(0, 1)?;
        B.gemm(-1.0, at, bt, 1.0, ct)?;
        // K = 0.
        B.gemm(
            1.0,
            B.view(&x[..0], &[3, 0])?,
            B.view(&w[..0], &[0, 2])?,
            1.0,
            B.view_mut(&mut out[..6], &[3, 2])?,
        )
    };
    log.push(run());

    // softmax and log-softmax, with and without a (broadcast) mask; fully masked rows.
    let mask: [T; 6] = arr(|i| if i % 4 == 3 { f64::NEG_INFINITY } else { 0.0 });
    let masked: [T; 6] = arr(|_| f64::NEG_INFINITY);
    for kind in [SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax] {
        let mut run = || -> seqcore::Result<()> {
            B.softmax(
                kind,
                B.view(&x, &[4, 6])?,
                None,
                B.view_mut(&mut out, &[4, 6])?,
            )?;
            let m = B.view(&mask, &[6])?.expand(&[4, 6])?;
            B.softmax(
                kind,
                B.view(&x, &[4, 6])?,
                Some(m),
                B.view_mut(&mut out, &[4, 6])?,
            )?;
            let m = B.view(&masked, &[1, 6])?.expand(&[4, 6])?;
            B.softmax(
                kind,
                B.view(&x, &[4, 6])?,
                Some(m),
                B.view_mut(&mut out, &[4, 6])?,
            )?;
            let xt = B.view(&x, &[6, 4])?.transpose(0, 1)?;
            B.softmax(kind, xt, None, B.view_mut(&mut out, &[4, 6])?)
        };
        log.push(run());
    }

    // Every unary map, the parameterised ones too.
    for op in Unary::ALL
        .into_iter()
        .chain([Unary::Scale(-1.5), Unary::AddScalar(0.25)])
    {
        log.push(B.unary(
            op,
            B.view(&x, &[2, 3, 4]).unwrap(),
            B.view_mut(&mut out, &[2, 3, 4]).unwrap(),
        ));
    }
    // Every binary map, one operand broadcast.
    for op in Binary::ALL {
        let mut run = || -> seqcore::Result<()> {
            let b = B.view(&w[..4], &[4])?.expand(&[6, 4])?;
            B.binary(op, B.view(&x, &[6, 4])?, b, B.view_mut(&mut out, &[6, 4])?)
        };
        log.push(run());
    }
    // Every reduction, over rows and over columns, and of empty rows.
    for op in Reduce::ALL {
        let mut run = || -> seqcore::Result<()> {
            B.reduce(op, B.view(&x, &[4, 6])?, B.view_mut(&mut out[..4], &[4])?)?;
            B.reduce(
                op,
                B.view(&x, &[4, 6])?.transpose(0, 1)?,
                B.view_mut(&mut out[..6], &[6])?,
            )?;
            B.reduce(
                op,
                B.view(&x[..0], &[3, 0])?,
                B.view_mut(&mut out[..3], &[3])?,
            )
        };
        log.push(run());
    }
    // Casts to every element type.
    let mut o32 = [0.0f32; 24];
    let mut o64 = [0.0f64; 24];
    let mut o16 = [f16::ZERO; 24];
    let mut ob = [bf16::ZERO; 24];
    log.push(B.cast(
        B.view(&x, &[4, 6]).unwrap(),
        B.view_mut(&mut o32, &[4, 6]).unwrap(),
    ));
    log.push(B.cast(
        B.view(&x, &[4, 6]).unwrap(),
        B.view_mut(&mut o64, &[4, 6]).unwrap(),
    ));
    log.push(B.cast(
        B.view(&x, &[4, 6]).unwrap(),
        B.view_mut(&mut o16, &[4, 6]).unwrap(),
    ));
    log.push(B.cast(
        B.view(&x, &[4, 6]).unwrap(),
        B.view_mut(&mut ob, &[4, 6]).unwrap(),
    ));
    log.push(B.cast(
        B.view(&o16, &[24]).unwrap(),
        B.view_mut(&mut out, &[24]).unwrap(),
    ));
    // top_k, with ties and NaN.
    let t: [T; 12] = arr(|i| match i {
        3 => f64::NAN,
        5 => f64::INFINITY,
        _ => (i % 3) as f64,
    });
    let mut vals = [T::from_f64(0.0); 8];
    let mut idx = [0u32; 8];
    let mut run = || -> seqcore::Result<()> {
        B.top_k(
            2,
            B.view(&t, &[4, 3])?,
            B.view_mut(&mut vals, &[4, 2])?,
            B.view_mut(&mut idx, &[4, 2])?,
        )?;
        // Rows of a transposed view, into transposed outputs.
        let xt = B.view(&t, &[4, 3])?.transpose(0, 1)?;
        let vt = B.view_mut(&mut vals[..6], &[2, 3])?.transpose(0, 1)?;
        let it = B.view_mut(&mut idx[..6], &[2, 3])?.transpose(0, 1)?;
        B.top_k(2, xt, vt, it)?;
        B.top_k(
            0,
            B.view(&t, &[4, 3])?,
            B.view_mut(&mut vals[..0], &[4, 0])?,
            B.view_mut(&mut idx[..0], &[4, 0])?,
        )
    };
    log.push(run());
    // Refused calls do not allocate either (the error is `Copy`).
    let bad = B.gemm(
        1.0,
        B.view(&x, &[4, 6]).unwrap(),
        B.view(&w, &[4, 6]).unwrap(),
        0.0,
        B.view_mut(&mut out[..16], &[4, 4]).unwrap(),
    );
    log.push(match bad {
        Err(_) => Ok(()),
        Ok(()) => Err(()),
    });
    let bad = View::<Reference, T>::new(&x, seqcore::Layout::contiguous(&[25]).unwrap());
    log.push(if bad.is_err() { Ok(()) } else { Err(()) });
    let bad = ViewMut::<Reference, T>::new(&mut out, seqcore::Layout::new(0, &[3], &[0]).unwrap());
    log.push(if bad.is_err() { Ok(()) } else { Err(()) });
    black_box((&out, &o32, &o64, &o16, &ob, &vals, &idx));
}

#[test]
fn kernels_do_not_allocate() {
    let mut logs = [
        Log {
            ok: [false; 128],
            n: 0,
        },
        Log {
            ok: [false; 128],
            n: 0,
        },
        Log {
            ok: [false; 128],
            n: 0,
        },
        Log {
            ok: [false; 128],
            n: 0,
        },
    ];
    // Warm up once (lazily initialised runtime state, if any), then count.
    {
        let mut warm = Log {
            ok: [false; 128],
            n: 0,
        };
        all_kernels::<f32>(&mut warm);
    }
    let [l64, l32, l16, lb] = &mut logs;
    let before = allocations();
    all_kernels::<f64>(l64);
    all_kernels::<f32>(l32);
    all_kernels::<f16>(l16);
    all_kernels::<bf16>(lb);
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "kernels allocated {} times",
        after - before
    );
    for (name, log) in ["f64", "f32", "f16", "bf16"].iter().zip(&logs) {
        assert!(log.n > 30 && log.n <= 128, "{name}: {} calls", log.n);
        for (i, ok) in log.ok[..log.n].iter().enumerate() {
            assert!(ok, "{name}: call group {i} failed");
        }
    }
    // The counter does count: an allocation between two reads moves it.
    let before = allocations();
    let v = black_box(vec![1u8; 64]);
    let after = allocations();
    drop(v);
    assert!(after > before, "the counting allocator is not installed");
}
