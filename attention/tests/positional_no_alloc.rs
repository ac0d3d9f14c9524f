//! A RoPE decode step and a relative-attention decode step allocate nothing: a counting global
//! allocator (this file is its own test binary) must not move while they run on stack arrays.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use core::alloc::{GlobalAlloc, Layout as AllocLayout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use seq_attention::relative::shaw::ShawAttention;
use seq_attention::relative::skew::SkewedAttention;
use seq_attention::rope::{RopeConfig, RopeScaling, Yarn};
use seqcore::portable::rope::RopePositions;
use seqcore::{Backend, Reference};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter is
// a relaxed atomic increment and does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decode_steps_do_not_allocate() {
    let b = Reference;
    let mut yarn = Yarn::new(4.0);
    yarn.original_max_position_embeddings = Some(64);
    let cfg = RopeConfig::new(10_000.0, 8)
        .with_max_position_embeddings(256)
        .with_scaling(RopeScaling::Yarn(yarn));
    let mut table = [0.0f64; 4];
    let mut q = [0.25f32; 2 * 8]; // [1, 2, 1, 8]: one token, two heads
    let k = [0.5f32; 2 * 5 * 8]; // [1, 2, 5, 8]
    let v = [1.0f32; 2 * 5 * 8];
    let er = [0.1f32; 2 * 5 * 8]; // [2, 5, 8]
    let ak = [0.1f32; 3 * 8]; // [3, 8]
    let mut o = [0.0f32; 2 * 8];
    let mut ws = [0.0f32; 8];
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for step in 0..4u64 {
        // RoPE of the new token at its position (the table once per step, as a caller would).
        cfg.apply(
            &b,
            (100 + step + 1) as usize,
            RopePositions::Offset(100 + step),
            None,
            b.view_mut(&mut q, &[1, 2, 1, 8]).unwrap(),
            &mut table,
        )
        .unwrap();
        SkewedAttention { scale: None }
            .forward(
                &b,
                b.view(&q, &[1, 2, 1, 8]).unwrap(),
                b.view(&k, &[1, 2, 5, 8]).unwrap(),
                b.view(&v, &[1, 2, 5, 8]).unwrap(),
                b.view(&er, &[2, 5, 8]).unwrap(),
                b.view_mut(&mut o, &[1, 2, 1, 8]).unwrap(),
                &mut ws,
            )
            .unwrap();
        ShawAttention {
            clip: 1,
            scale: None,
            causal: true,
        }
        .forward(
            &b,
            b.view(&q, &[1, 2, 1, 8]).unwrap(),
            b.view(&k, &[1, 2, 5, 8]).unwrap(),
            b.view(&v, &[1, 2, 5, 8]).unwrap(),
            b.view(&ak, &[3, 8]).unwrap(),
            None,
            b.view_mut(&mut o, &[1, 2, 1, 8]).unwrap(),
            &mut ws,
        )
        .unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(after, before, "a decode step allocated");
    assert!(o.iter().all(|x| x.is_finite()));
}
