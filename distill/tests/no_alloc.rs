//! The losses allocate nothing: a counting global allocator (this file is its own test binary)
//! must not move while every kernel of the crate runs on stack arrays.
#![allow(clippy::unwrap_used, missing_docs)]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use seq_distill::{
    Atlas, CeConfig, Divergence, KdConfig, Span, align, aligned_kd_loss, kd_loss,
    sequence_cross_entropy, sparse_kd_loss,
};
use seqcore::{Backend, Reference};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System` unchanged; the counter is a relaxed atomic increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_kernel_allocates() -> Result<(), seqcore::Error> {
    let b = Reference;
    let t = [0.5f32, -1.0, 2.0, 0.0, 1.0, 3.0, -2.0, 0.25];
    let s = [1.0f32, 0.0, -1.0, 0.5, 0.0, 2.0, 1.0, -0.5];
    let mask = [1u8, 0];
    let (mut l, mut g) = ([0.0f32; 1], [0.0f32; 8]);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for d in [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::Jsd { beta: 0.5 },
        Divergence::TotalVariation,
        Divergence::SkewForwardKl { alpha: 0.1 },
        Divergence::SkewReverseKl { alpha: 0.1 },
    ] {
        let cfg = KdConfig::new(d, 2.0);
        kd_loss(
            &b,
            &cfg,
            b.view(&t, &[2, 4])?,
            b.view(&s, &[2, 4])?,
            Some(b.view(&mask, &[2])?),
            b.view_mut(&mut l, &[])?,
            Some(b.view_mut(&mut g, &[2, 4])?),
        )?;
        let (vals, idx, tail) = ([2.0f32, 0.5, 3.0, 1.0], [2u32, 0, 1, 0], [0.1f32, 0.2]);
        sparse_kd_loss(
            &b,
            &cfg,
            b.view(&vals, &[2, 2])?,
            b.view(&idx, &[2, 2])?,
            Some(b.view(&tail, &[2])?),
            b.view(&s, &[2, 4])?,
            None,
            b.view_mut(&mut l, &[])?,
            Some(b.view_mut(&mut g, &[2, 4])?),
        )?;
        let spans = [Span {
            teacher_start: 0,
            student_start: 0,
            len: 1,
        }; 2];
        let mut l2 = [0.0f32; 2];
        aligned_kd_loss(
            &b,
            &cfg,
            &spans,
            b.view(&t, &[2, 1, 4])?,
            b.view(&s, &[2, 1, 4])?,
            b.view_mut(&mut l2, &[2])?,
            Some(b.view_mut(&mut g, &[2, 1, 4])?),
        )?;
    }
    let targets = [3i32, -100];
    sequence_cross_entropy(
        &b,
        &CeConfig::new(0.1),
        b.view(&s, &[2, 4])?,
        b.view(&targets, &[2])?,
        b.view_mut(&mut l, &[])?,
        Some(b.view_mut(&mut g, &[2, 4])?),
    )?;
    let mut spans = [Span::default(); 1];
    align(&[0, 1, 1, 1], 4, &[2], &[1, 0], 2, &mut spans)?;
    let base: [&[f32]; 1] = [&t];
    let tasks = [&base[..]];
    let atlas = Atlas::new(&base, &tasks, &[0.5])?;
    let mut scratch = [0.0f32; 8];
    atlas.block(0, &mut scratch)?;
    let mut cg = [0.0f64; 1];
    atlas.coefficient_grad(&base, &mut cg)?;
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), before);
    Ok(())
}
