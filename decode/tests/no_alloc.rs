//! No decoder allocates per step: a counting global allocator (this file is its own test binary)
//! must not move while beam, diverse beam, greedy/sampling, backspace, pointer and tree search run
//! on scratch made beforehand.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    missing_docs
)]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use seq_decode::{
    BackspaceDecoding, BeamSearch, DiverseBeamSearch, EarlyStopping, NBest, Processors, Sampling,
    StepTable, TreeSearch, WorkspaceBuf,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` unchanged; the counter is a relaxed atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoders_do_not_allocate() {
    let (v, steps) = (16, 6);
    let table: Vec<f32> = (0..steps * v * v)
        .map(|i| ((i * 7919) % 23) as f32 * 0.25 - 2.0)
        .collect();
    let mut model = StepTable::new(&table, steps, v).unwrap();
    let procs = Processors {
        repetition_penalty: 1.2,
        no_repeat_ngram_size: 2,
        ..Processors::default()
    };
    let beam = BeamSearch {
        beams: 4,
        max_new_tokens: steps,
        eos: Some(1),
        length_penalty: 1.0,
        early_stopping: EarlyStopping::Never,
        num_return: 4,
        processors: procs,
    };
    let dbs = DiverseBeamSearch {
        beams: 4,
        groups: 2,
        diversity_penalty: 0.5,
        max_new_tokens: steps,
        eos: Some(1),
        length_penalty: 1.0,
        early_stopping: EarlyStopping::False,
        num_return: 4,
        processors: procs,
    };
    let samp = Sampling {
        max_new_tokens: steps,
        eos: Some(1),
        do_sample: true,
        seed: 3,
        processors: Processors {
            top_k: 5,
            top_p: 0.9,
            temperature: 0.8,
            ..procs
        },
    };
    let bk = BackspaceDecoding {
        backspace: 2,
        max_new_tokens: steps,
        max_backspaces: 3,
        eos: Some(1),
        do_sample: false,
        seed: 0,
        processors: procs,
    };
    let tree = TreeSearch {
        branch: 3,
        n: 3,
        budget: 30,
        max_nodes: 100,
        max_new_tokens: steps,
        eos: Some(1),
    };
    let mut ws = WorkspaceBuf::new(seq_decode::WorkspaceLen {
        f32s: 10_000,
        u32s: 10_000,
    });
    let mut tokens = vec![0u32; 4 * steps];
    let mut lengths = vec![0usize; 4];
    let mut scores = vec![0f32; 4];
    let mut out = vec![0u32; steps];

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..3 {
        beam.run(
            &mut model,
            &[0],
            ws.workspace(),
            NBest {
                tokens: &mut tokens,
                lengths: &mut lengths,
                scores: &mut scores,
            },
        )
        .unwrap();
        dbs.run(
            &mut model,
            &[0],
            ws.workspace(),
            NBest {
                tokens: &mut tokens,
                lengths: &mut lengths,
                scores: &mut scores,
            },
        )
        .unwrap();
        samp.run(&mut model, &[0], ws.workspace(), &mut out)
            .unwrap();
        bk.run(&mut model, &[0], ws.workspace(), &mut out).unwrap();
        tree.run(
            &mut model,
            &[0],
            ws.workspace(),
            NBest {
                tokens: &mut tokens,
                lengths: &mut lengths,
                scores: &mut scores,
            },
        )
        .unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(after, before, "a decoder allocated");
}
