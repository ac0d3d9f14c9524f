//! Nothing in seq-ssm's per-token path allocates: a counting global allocator (this file is its
//! own test binary) must not move while an S4D model is discretised into caller memory, its
//! kernel generated, a sequence convolved and streamed token by token, and a chunk run, at f32 and
//! f64. H = 256, N = 64 for the streaming step, as the benchmark.
//!
//! Everything is in one `#[test]`, so no other test of this binary allocates at the same time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss
)]

use core::alloc::{GlobalAlloc, Layout as AllocLayout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use seq_ssm::{Discretization, S4d, S4dParams, Stability};
use seqcore::{Backend, Element, Real, Reference};

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

const B: Reference = Reference;
const H: usize = 256;
const N: usize = 64;
const L: usize = 64;

/// Buffers, allocated before the count starts.
struct Bufs<T: Element> {
    log_dt: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
    mem: Vec<T::Acc>,
    host: Vec<T::Acc>,
    k: Vec<T>,
    u: Vec<T>,
    y: Vec<T>,
    ws: Vec<T::Acc>,
    state: Vec<T::Acc>,
    scratch: Vec<T>,
}

fn bufs<T: Element>() -> Bufs<T> {
    let len = S4d::<Reference, T::Acc>::mem_len(H, N).unwrap();
    let z = T::Acc::zero();
    Bufs {
        log_dt: (0..H).map(|i| -4.0 - (i % 5) as f64 * 0.3).collect(),
        a: (0..H * N)
            .flat_map(|i| [-0.5, core::f64::consts::PI * (i % N) as f64])
            .collect(),
        b: vec![1.0; 2 * H * N],
        c: (0..2 * H * N)
            .map(|i| ((i % 7) as f64 - 3.0) * 0.1)
            .collect(),
        d: vec![0.5; H],
        mem: vec![z; len],
        host: vec![z; len],
        k: vec![T::from_f64(0.0); H * L],
        u: (0..L * H)
            .map(|i| T::from_f64(((i % 11) as f64 - 5.0) * 0.1))
            .collect(),
        y: vec![T::from_f64(0.0); L * H],
        ws: vec![z; B.ssm_conv_workspace_len(H, L).unwrap()],
        state: vec![z; 2 * H * N],
        scratch: vec![T::from_f64(0.0); 2 * H * L],
    }
}

fn run<T: Element>(x: &mut Bufs<T>) -> seqcore::Result<()> {
    let p = S4dParams {
        h: H,
        n: N,
        log_dt: &x.log_dt,
        a: &x.a,
        b: &x.b,
        c: &x.c,
        d: &x.d,
    };
    let m = S4d::<Reference, T::Acc>::new(
        &B,
        &p,
        Discretization::Zoh,
        Stability::Strict,
        &mut x.mem,
        &mut x.host,
    )?;
    m.kernel::<T>(&B, B.view_mut(&mut x.k, &[H, L])?)?;
    let wl = x.ws.len();
    m.conv::<T>(
        &B,
        B.view(&x.k, &[H, L])?,
        B.view(&x.u, &[L, H])?,
        B.view_mut(&mut x.y, &[L, H])?,
        B.view_mut(&mut x.ws, &[wl])?,
    )?;
    // Streaming: one token per step.
    for t in 0..L {
        m.scan::<T>(
            &B,
            B.view(&x.u[t * H..(t + 1) * H], &[1, H])?,
            B.view_mut(&mut x.state, &[H, N, 2])?,
            Some(B.view_mut(&mut x.y[t * H..(t + 1) * H], &[1, H])?),
        )?;
    }
    // A chunk carried from that state.
    m.chunk::<T>(
        &B,
        B.view(&x.k, &[H, L])?,
        B.view(&x.u, &[L, H])?,
        B.view_mut(&mut x.state, &[H, N, 2])?,
        B.view_mut(&mut x.y, &[L, H])?,
        &mut x.scratch,
        B.view_mut(&mut x.ws, &[wl])?,
    )
}

#[test]
fn nothing_allocates_per_token() {
    let mut f32s = bufs::<f32>();
    let mut f64s = bufs::<f64>();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let r32 = run(&mut f32s);
    let r64 = run(&mut f64s);
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(r32.is_ok() && r64.is_ok(), "{r32:?} {r64:?}");
    assert_eq!(after, before, "seq-ssm allocated {} times", after - before);
    assert!(f32s.y.iter().all(|v| v.is_finite()));
}
