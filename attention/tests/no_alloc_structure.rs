//! No per-step allocation: a pointer-scoring step, a SAB, a Read-Process-Write encoding and an
//! ACT loop, on stack buffers, under a counting global allocator (this file is its own test
//! binary; everything runs in one `#[test]` so no other test allocates meanwhile).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    missing_docs
)]

use core::alloc::{GlobalAlloc, Layout as AllocLayout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use seq_attention::act::Ponder;
use seq_attention::{
    Act, Linear, LstmCell, Mab, MultiheadAttention, PointerAttention, ReadProcessWrite, Sab,
};
use seqcore::{Backend, Reference, Result, Unary, View, ViewMut};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` unchanged; the counter is a relaxed atomic.
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

fn w<const N: usize>() -> [f32; N] {
    core::array::from_fn(|i| ((i * 37 % 64) as f32 - 31.5) / 64.0)
}

fn everything(
    wts: &[f32; 64],
    ws: &mut [[f32; 32]; 8],
    out: &mut [f32; 32],
    act_ws: &mut [[f32; 12]; 5],
) -> Result<f32> {
    let b = Reference;
    let v = |len: usize, shape: &[usize]| -> Result<View<'_, Reference, f32>> {
        b.view(&wts[..len], shape)
    };
    let [w0, w1, w2, w3, w4, w5, w6, w7] = ws;
    // One pointer decoding step: 1 decoder state over 6 encoded inputs.
    let ptr = PointerAttention::new(v(8, &[4, 2])?, v(12, &[4, 3])?, v(4, &[4])?)?;
    ptr.encode(&b, v(12, &[6, 2])?, b.view_mut(&mut w4[..24], &[6, 4])?)?;
    ptr.log_probs(
        &b,
        b.view(&w4[..24], &[6, 4])?,
        v(3, &[1, 3])?,
        None,
        b.view_mut(&mut out[..6], &[1, 6])?,
        &mut [&mut *w0, &mut *w1, &mut *w2, &mut *w3],
    )?;
    // A SAB over four elements of size 4.
    let attn = MultiheadAttention::new(4, 2, v(48, &[12, 4])?, None, v(16, &[4, 4])?, None)?;
    let sab = Sab {
        mab: Mab::new(
            attn,
            None,
            Linear::new("ff", v(16, &[4, 4])?, None, 4, 4)?,
            None,
        )?,
    };
    sab.forward(
        &b,
        v(16, &[4, 4])?,
        b.view_mut(&mut out[..16], &[4, 4])?,
        &mut [&mut *w0, &mut *w1, &mut *w2, &mut *w3, &mut *w4, &mut *w5],
    )?;
    // Read-Process-Write with d = 2 over the SAB's output.
    let lstm = LstmCell::new(
        4,
        2,
        v(32, &[8, 4])?,
        v(16, &[8, 2])?,
        v(8, &[8])?,
        v(8, &[8])?,
    )?;
    let read = Linear::new("read", v(8, &[2, 4])?, None, 2, 4)?;
    let rpw = ReadProcessWrite::new(Some(read), lstm, 3)?;
    w7[..16].copy_from_slice(&out[..16]);
    rpw.forward(
        &b,
        b.view(&w7[..16], &[4, 4])?,
        b.view_mut(&mut out[..4], &[4])?,
        &mut [
            &mut *w0, &mut *w1, &mut *w2, &mut *w3, &mut *w4, &mut *w5, &mut *w6,
        ],
    )?;
    // ACT over 3 positions of 4 features.
    let act = Act::universal_transformer(5)?;
    let p = [0.3f32, 0.6, 0.995];
    let mut step = |_t: usize,
                    s: View<'_, Reference, f32>,
                    n: ViewMut<'_, Reference, f32>,
                    h: ViewMut<'_, Reference, f32>|
     -> Result<()> {
        b.unary(Unary::Tanh, s, n)?;
        b.unary(Unary::Scale(1.0), b.view(&p, &[3])?, h)
    };
    let (mut hp, mut rem, mut nu) = ([0.0f32; 3], [0.0f32; 3], [0.0f32; 3]);
    let mut host = [0.0f32; 9];
    let [a0, a1, a2, a3, a4] = act_ws;
    let (_, cost) = act.run(
        &b,
        &mut step,
        v(12, &[3, 4])?,
        b.view_mut(&mut out[16..28], &[3, 4])?,
        Ponder {
            halting: &mut hp,
            remainders: &mut rem,
            updates: &mut nu,
        },
        &mut [&mut *a0, &mut *a1, &mut *a2, &mut a3[..3], &mut a4[..6]],
        &mut host,
    )?;
    Ok(cost as f32)
}

#[test]
fn structure_modules_do_not_allocate() {
    let wts: [f32; 64] = w();
    let mut ws = [[0.0f32; 32]; 8];
    let mut out = [0.0f32; 32];
    let mut act_ws = [[0.0f32; 12]; 5];
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let r = everything(&wts, &mut ws, &mut out, &mut act_ws);
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        after - before,
        0,
        "allocations during the structure modules"
    );
    assert!(out.iter().all(|x| x.is_finite()));
}
