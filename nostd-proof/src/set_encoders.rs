//! seq-attention's structure modules (pointer attention, a Set Transformer block,
//! Read-Process-Write, ACT halting) on static and stack buffers.

use seq_attention::act::Ponder;
use seq_attention::{
    Act, Linear, LstmCell, Mab, MultiheadAttention, PointerAttention, ReadProcessWrite, Sab,
};
use seqcore::{Backend, Reference, Result, Unary, View, ViewMut};

// Evaluated at compile time: an index out of range fails the build, never a run.
#[allow(clippy::indexing_slicing)]
static W: [f32; 64] = {
    let mut w = [0.0f32; 64];
    let mut i = 0;
    while i < 64 {
        // A fixed, non-degenerate pattern in [-0.5, 0.5].
        w[i] = ((i * 37 % 64) as f32 - 31.5) / 64.0;
        i += 1;
    }
    w
};

fn w(len: usize, shape: &[usize]) -> Result<View<'static, Reference, f32>> {
    Reference.view(W.get(..len).unwrap_or(&[]), shape)
}

/// Scores a pointer step, runs one SAB and a Read-Process-Write encoder over a set of three, and
/// one ACT loop; returns a checksum.
///
/// # Errors
/// Whatever a module returns (nothing, for these inputs).
pub fn structure_on_static_buffers() -> Result<f32> {
    let b = Reference;
    // Pointer attention: H = 4, De = Dd = 2, three inputs, one decoder state.
    let ptr = PointerAttention::new(w(8, &[4, 2])?, w(8, &[4, 2])?, w(4, &[4])?)?;
    let mut keys = [0.0f32; 12];
    ptr.encode(&b, w(6, &[3, 2])?, b.view_mut(&mut keys, &[3, 4])?)?;
    let (mut s0, mut s1, mut s2, mut s3) = ([0.0f32; 12], [0.0f32; 12], [0.0f32; 12], [0.0f32; 12]);
    let mut logp = [0.0f32; 3];
    let mask = [0.0f32, f32::NEG_INFINITY, 0.0];
    ptr.log_probs(
        &b,
        b.view(&keys, &[3, 4])?,
        w(2, &[1, 2])?,
        Some(b.view(&mask, &[1, 3])?),
        b.view_mut(&mut logp, &[1, 3])?,
        &mut [&mut s0, &mut s1, &mut s2, &mut s3],
    )?;

    // SAB with d = 4, two heads, no layer norms, over a set of three.
    let attn = MultiheadAttention::new(4, 2, w(48, &[12, 4])?, None, w(16, &[4, 4])?, None)?;
    let sab = Sab {
        mab: Mab::new(
            attn,
            None,
            Linear::new("ff", w(16, &[4, 4])?, None, 4, 4)?,
            None,
        )?,
    };
    let mut bufs = [[0.0f32; 24]; 6];
    let [b0, b1, b2, b3, b4, b5] = &mut bufs;
    let mut y = [0.0f32; 12];
    sab.forward(
        &b,
        w(12, &[3, 4])?,
        b.view_mut(&mut y, &[3, 4])?,
        &mut [b0, b1, b2, b3, b4, b5],
    )?;

    // Read-Process-Write, d = 2, over the SAB's output read by a 2 x 4 layer.
    let lstm = LstmCell::new(
        4,
        2,
        w(32, &[8, 4])?,
        w(16, &[8, 2])?,
        w(8, &[8])?,
        w(8, &[8])?,
    )?;
    let rpw = ReadProcessWrite::new(
        Some(Linear::new("read", w(8, &[2, 4])?, None, 2, 4)?),
        lstm,
        2,
    )?;
    let mut q = [0.0f32; 4];
    let mut rb = [[0.0f32; 8]; 7];
    let [r0, r1, r2, r3, r4, r5, r6] = &mut rb;
    rpw.forward(
        &b,
        b.view(&y, &[3, 4])?,
        b.view_mut(&mut q, &[4])?,
        &mut [r0, r1, r2, r3, r4, r5, r6],
    )?;

    // ACT over the two halves of q* as positions, step tanh, halting 0.5 per step.
    let act = Act::universal_transformer(4)?;
    let half = [0.5f32; 2];
    let mut step = |_t: usize,
                    s: View<'_, Reference, f32>,
                    n: ViewMut<'_, Reference, f32>,
                    h: ViewMut<'_, Reference, f32>|
     -> Result<()> {
        b.unary(Unary::Tanh, s, n)?;
        b.unary(Unary::Scale(1.0), b.view(&half, &[2])?, h)
    };
    let (mut a0, mut a1, mut a2, mut a3, mut a4) = (
        [0.0f32; 4],
        [0.0f32; 4],
        [0.0f32; 4],
        [0.0f32; 2],
        [0.0f32; 4],
    );
    let (mut hp, mut rem, mut nu) = ([0.0f32; 2], [0.0f32; 2], [0.0f32; 2]);
    let mut host = [0.0f32; 6];
    let mut out = [0.0f32; 4];
    let (_steps, cost) = act.run(
        &b,
        &mut step,
        b.view(&q, &[2, 2])?,
        b.view_mut(&mut out, &[2, 2])?,
        Ponder {
            halting: &mut hp,
            remainders: &mut rem,
            updates: &mut nu,
        },
        &mut [&mut a0, &mut a1, &mut a2, &mut a3, &mut a4],
        &mut host,
    )?;
    Ok(logp.iter().copied().filter(|x| x.is_finite()).sum::<f32>()
        + out.iter().sum::<f32>()
        + cost as f32)
}
