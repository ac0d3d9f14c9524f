//! No per-token allocation: a counting global allocator (this file is its own test binary) must not
//! move while linear memories and Miras memories stream tokens on stack buffers, in both forms.
//!
//! Everything is in one `#[test]`, so no other test of this binary allocates at the same time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    missing_docs
)]

use core::alloc::{GlobalAlloc, Layout as AllocLayout};
use core::hint::black_box;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use seq_memory::miras::Gates;
use seq_memory::{FeatureMap, LinearMemory, MemoryInputs, Miras};
use seqcore::{Backend, Reference, bf16};

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

const L: usize = 8;
const D: usize = 4;

fn stream() -> seqcore::Result<f64> {
    let b = Reference;
    let q: [bf16; L * D] = core::array::from_fn(|i| bf16::from_f64(((i % 7) as f64 - 3.0) / 4.0));
    let k: [bf16; L * D] =
        core::array::from_fn(|i| bf16::from_f64(if i % D == i / D % D { 1.0 } else { 0.0 }));
    let v: [bf16; L * D] = core::array::from_fn(|i| bf16::from_f64((i % 5) as f64 - 2.0));
    let beta = [bf16::from_f64(0.5); L];
    let g = [bf16::from_f64(-0.1); L];
    let mut state = [0.0f32; D * D];
    let mut o = [bf16::from_f64(0.0); L * D];
    let mut ws = [0.0f32; 128];
    let mut sum = 0.0;
    for m in [
        LinearMemory::linear_attention(FeatureMap::Elu1),
        LinearMemory::gated_delta_net(),
        LinearMemory::gated_delta_net().chunkwise(4),
    ] {
        for t in 0..L {
            let x = MemoryInputs {
                q: b.view(&q, &[L, 1, D])?.narrow(0, t, 1)?,
                k: b.view(&k, &[L, 1, D])?.narrow(0, t, 1)?,
                v: b.view(&v, &[L, 1, D])?.narrow(0, t, 1)?,
                beta: (m.gates != seq_memory::Gates::None)
                    .then_some(b.view(&beta, &[L, 1])?.narrow(0, t, 1)?),
                log_decay: (m.gates != seq_memory::Gates::None)
                    .then_some(b.view(&g, &[L, 1])?.narrow(0, t, 1)?),
            };
            let ol = b.view_mut(&mut o, &[L, 1, D])?.narrow(0, t, 1)?;
            let wsv = match m.form {
                seq_memory::Form::Recurrent => None,
                seq_memory::Form::Chunkwise { .. } => Some(b.view_mut(&mut ws, &[128])?),
            };
            m.forward(&b, x, b.view_mut(&mut state, &[1, D, D])?, Some(ol), wsv)?;
        }
        sum += state.iter().map(|&x| f64::from(x)).sum::<f64>();
    }
    // Miras memories, one token per call.
    let (qf, kf, vf) = (
        q.map(|x| x.to_f32()),
        k.map(|x| x.to_f32()),
        v.map(|x| x.to_f32()),
    );
    let lr = [0.1f32; L];
    let keep = [0.9f32; L];
    for m in [
        Miras::titans(8),
        Miras::moneta(8, 3.0, 4.0),
        Miras::yaad(8, 1.0),
        Miras::memora(8, 1.0),
    ] {
        let mut state = [0.0f32; 3 * 2 * 8 * D];
        let p0 = [1.0f32 / 8.0; 2 * 8 * D];
        let p0 = core::array::from_fn::<f32, { 2 * 8 * D }, _>(|i| {
            if i < 8 * D { 1.0 / D as f32 } else { p0[i] }
        });
        m.init(D, D, &p0, &mut state)?;
        let mut o = [0.0f32; D];
        let mut ws = [0.0f32; 2 * 8 * D + D + 24];
        for t in 0..L {
            let r = t * D..(t + 1) * D;
            let gates = Gates {
                lr: &lr[t..=t],
                keep: Some(&keep[t..=t]),
                momentum: Some(&keep[t..=t]),
            };
            m.recurrent(
                D,
                D,
                &qf[r.clone()],
                &kf[r.clone()],
                &vf[r],
                gates,
                &mut state,
                &mut o,
                &mut ws,
            )?;
        }
        sum += o.iter().map(|&x| f64::from(x)).sum::<f64>();
    }
    Ok(sum)
}

#[test]
fn streaming_does_not_allocate() {
    // Warm up (lazy statics of the test harness), then count.
    let _ = black_box(stream());
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let r = black_box(stream());
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(after, before, "allocations while streaming");
    assert!(r.unwrap().is_finite());
}
