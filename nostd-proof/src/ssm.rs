//! seq-ssm without std or alloc: an S4D model discretised into a static-sized stack buffer, its
//! kernel, the convolution mode and a streaming step, all on the reference backend.

use seq_ssm::{Discretization, S4d, S4dParams, Stability};
use seqcore::{Backend, Reference, Result};

const H: usize = 2;
const N: usize = 2;
const L: usize = 8;
/// `S4d::mem_len(H, N)` = 12 H N + H.
const MEM: usize = 12 * H * N + H;
/// The convolution's workspace for L = 8: 5 * 16.
const WS: usize = 80;

static LOG_DT: [f32; H] = [-4.6, -2.3];
static A: [f32; 2 * H * N] = [-0.5, 0.0, -0.5, 3.0, -0.5, 0.0, -0.5, 3.0];
static B: [f32; 2 * H * N] = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
static C: [f32; 2 * H * N] = [0.5, -0.1, 0.25, 0.3, -0.2, 0.4, 0.1, 0.1];
static D: [f32; H] = [1.0, 0.5];
static U: [f32; L * H] = [
    1.0, 0.0, 0.5, 1.0, -1.0, 0.25, 0.0, 0.0, 2.0, -1.0, 0.5, 0.5, 0.0, 1.0, 1.0, -0.5,
];

/// Runs seq-ssm on static and stack buffers; returns a checksum.
///
/// # Errors
/// Whatever a kernel returns (nothing, for these inputs).
pub fn ssm_on_static_buffers() -> Result<f32> {
    let b = Reference;
    let params = S4dParams {
        h: H,
        n: N,
        log_dt: &LOG_DT,
        a: &A,
        b: &B,
        c: &C,
        d: &D,
    };
    let mut mem = [0.0f32; MEM];
    let mut host = [0.0f32; MEM];
    let model = S4d::<Reference, f32>::new(
        &b,
        &params,
        Discretization::Zoh,
        Stability::Strict,
        &mut mem,
        &mut host,
    )?;
    let mut k = [0.0f32; H * L];
    model.kernel::<f32>(&b, b.view_mut(&mut k, &[H, L])?)?;
    let mut ws = [0.0f32; WS];
    let mut y = [0.0f32; L * H];
    model.conv::<f32>(
        &b,
        b.view(&k, &[H, L])?,
        b.view(&U, &[L, H])?,
        b.view_mut(&mut y, &[L, H])?,
        b.view_mut(&mut ws, &[WS])?,
    )?;
    // Streaming: one token at a time on a state in a stack array.
    let mut state = [0.0f32; 2 * H * N];
    let mut step = [0.0f32; H];
    for t in U.chunks_exact(H) {
        model.scan::<f32>(
            &b,
            b.view(t, &[1, H])?,
            b.view_mut(&mut state, &[H, N, 2])?,
            Some(b.view_mut(&mut step, &[1, H])?),
        )?;
    }
    Ok(y.iter().sum::<f32>() + step.iter().sum::<f32>())
}
