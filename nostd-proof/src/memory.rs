//! seq-memory on static and stack buffers: a Gated DeltaNet stream (recurrent and chunkwise) on
//! the reference backend, and a Titans memory step.

use seq_memory::miras::Gates;
use seq_memory::{LinearMemory, MemoryInputs, Miras};
use seqcore::{Backend, Reference, Result};

static Q: [f32; 8] = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, -1.0, 0.0];
static K: [f32; 8] = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8, 0.0, 1.0];
static V: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
static BETA: [f32; 4] = [0.5, 0.5, 1.0, 0.25];
static G: [f32; 4] = [0.0, -0.1, -20.0, -1e-4];

/// Runs seq-memory's kernels and a Miras memory on static and stack buffers; returns a checksum.
///
/// # Errors
/// Whatever a call returns (nothing, for these inputs).
pub fn memory_on_static_buffers() -> Result<f64> {
    let b = Reference;
    let x = MemoryInputs {
        q: b.view(&Q, &[4, 1, 2])?,
        k: b.view(&K, &[4, 1, 2])?,
        v: b.view(&V, &[4, 1, 2])?,
        beta: Some(b.view(&BETA, &[4, 1])?),
        log_decay: Some(b.view(&G, &[4, 1])?),
    };
    let mut state = [0.0f32; 4];
    let mut o = [0.0f32; 8];
    let m = LinearMemory::gated_delta_net();
    m.forward(
        &b,
        x,
        b.view_mut(&mut state, &[1, 2, 2])?,
        Some(b.view_mut(&mut o, &[4, 1, 2])?),
        None,
    )?;
    let mut ws = [0.0f32; 22];
    let mut state2 = [0.0f32; 4];
    m.chunkwise(2).forward(
        &b,
        x,
        b.view_mut(&mut state2, &[1, 2, 2])?,
        None,
        Some(b.view_mut(&mut ws, &[22])?),
    )?;

    let t = Miras::titans(4);
    let p0 = [0.125f32; 16];
    let mut st = [0.0f32; 48];
    t.init(2, 2, &p0, &mut st)?;
    let (mut y, mut w) = ([0.0f32; 8], [0.0f32; 32]);
    let lr = [0.1f32; 4];
    let gates = Gates {
        lr: &lr,
        keep: Some(&BETA),
        momentum: Some(&BETA),
    };
    t.recurrent(2, 2, &Q, &K, &V, gates, &mut st, &mut y, &mut w)?;
    Ok(f64::from(o[7] + state2[0] + y[7]))
}
