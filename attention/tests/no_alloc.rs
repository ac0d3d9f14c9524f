//! No decode step of any cache allocates, nor a forward pass, nor a merge: a counting global
//! allocator (this file is its own test binary) must not move while they run. Only allocations
//! of the test's own thread are counted.
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
use core::cell::Cell;
use core::hint::black_box;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use seq_attention::{
    FixedKvCache, GrowableKvCache, KvCache, KvCacheDims, KvWorkspace, MultiHeadAttention,
    QuantizedKvCache, RingKvCache,
};
use seqcore::{AttentionMasks, AttentionParams, Backend, Reference};

/// `System`, counting every allocation and reallocation.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// Set on the test's own thread: the harness's other threads allocate when they please.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Counts an allocation made on a counted thread.
fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are ours; the counter is a relaxed atomic increment and does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        count();
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
const HQ: usize = 4;
const HKV: usize = 2;
const D: usize = 8;
const CAP: usize = 96;

/// 80 decode steps (past the int8 cache's tile and around the ring) through `cache`.
fn steps<C: KvCache<Reference, f32>>(cache: &mut C, ok: &mut usize) {
    let mut kernel = [0.0f32; 256];
    let mut state = [0.0f32; 64];
    let mut partial = [0.0f32; 2048];
    for t in 0..80 {
        let x: [f32; HKV * D] = core::array::from_fn(|i| ((i + t) % 7) as f32 * 0.25 - 0.5);
        let q: [f32; HQ * D] = core::array::from_fn(|i| ((i * 3 + t) % 5) as f32 * 0.5 - 1.0);
        let mut o = [0.0f32; HQ * D];
        let r = (|| -> seqcore::Result<()> {
            cache.append(&B, B.view(&x, &[1, HKV, D])?, B.view(&x, &[1, HKV, D])?)?;
            cache.attend(
                &B,
                &AttentionParams::causal(),
                B.view(&q, &[1, HQ, D])?,
                B.view_mut(&mut o, &[1, HQ, D])?,
                KvWorkspace {
                    kernel: &mut kernel,
                    state: &mut state,
                    partial: &mut partial,
                },
            )
        })();
        *ok += usize::from(r.is_ok());
        black_box(&o);
    }
}

#[test]
fn decode_steps_forward_and_merge_do_not_allocate() {
    let dims = KvCacheDims::new(HKV, D, D, CAP).unwrap();
    let mut growable = GrowableKvCache::<Reference, f32>::new(&B, dims).unwrap();
    growable.reserve(&B, 80).unwrap();
    let (mut kb, mut vb) = ([0.0f32; HKV * CAP * D], [0.0f32; HKV * CAP * D]);
    let (mut rk, mut rv) = ([0.0f32; HKV * 16 * D], [0.0f32; HKV * 16 * D]);
    let (mut qk, mut qv) = ([0i8; HKV * CAP * D], [0i8; HKV * CAP * D]);
    let (mut sk, mut sv) = ([0.0f32; HKV * CAP], [0.0f32; HKV * CAP]);
    let mha = MultiHeadAttention::new(HQ, HKV, D).unwrap().causal();
    let x = [0.25f32; 16 * HQ * D];
    let mut o = [0.0f32; 16 * HQ * D];
    let mut ws = [0.0f32; 256];

    COUNTED.with(|c| c.set(true));
    let before = allocations();
    let mut ok = 0;
    let mut fixed = FixedKvCache::<Reference, f32>::new(dims, &mut kb, &mut vb).unwrap();
    steps(&mut fixed, &mut ok);
    let ring_dims = KvCacheDims::new(HKV, D, D, 16).unwrap();
    let mut ring = RingKvCache::<Reference, f32>::new(ring_dims, 12, &mut rk, &mut rv).unwrap();
    steps(&mut ring, &mut ok);
    let mut int8 = QuantizedKvCache::new(dims, &mut qk, &mut sk, &mut qv, &mut sv).unwrap();
    steps(&mut int8, &mut ok);
    steps(&mut growable, &mut ok);
    let r = mha.forward(
        &B,
        B.view(&x, &[1, 16, HQ, D]).unwrap(),
        B.view(&x[..16 * HKV * D], &[1, 16, HKV, D]).unwrap(),
        B.view(&x[..16 * HKV * D], &[1, 16, HKV, D]).unwrap(),
        AttentionMasks::none(),
        B.view_mut(&mut o, &[1, 16, HQ, D]).unwrap(),
        &mut ws,
    );
    let after = allocations();
    assert_eq!(after, before, "allocations during decode steps");
    assert_eq!(ok, 4 * 80);
    assert!(r.is_ok());
}
