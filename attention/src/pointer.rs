//! Pointer attention (Vinyals, Fortunato & Jaitly 2015, "Pointer Networks", section 2.3,
//! eq. (3)): additive (Bahdanau-style) scores of decoder states against encoder states, turned
//! into a distribution over input positions.
//!
//! ```text
//! u_j^i = v^T tanh(W1 e_j + W2 d_i)        j in 1..n          (3)
//! p(C_i | C_1..C_{i-1}, P) = softmax(u^i)
//! ```
//!
//! Weights are `nn.Linear`-shaped without bias, as in the paper: `W1 [H, De]`, `W2 [H, Dd]`,
//! `v [H]`. [`PointerAttention::encode`] computes `W1 e_j` once per input sequence;
//! [`PointerAttention::log_probs`] then scores any number of decoder states (one decoding step of
//! a batch of hypotheses, or all steps of teacher forcing) with an additive mask (`0` keeps a
//! position, `-inf` removes it: padding, or positions already pointed at) and a log-softmax over
//! positions. A query whose every position is masked gets `-inf` everywhere (seqcore's
//! convention, PyTorch's `log_softmax` of an all `-inf` row gives NaN instead).

use seqcore::{Backend, Binary, Element, Error, Result, SoftmaxKind, Unary, View, ViewMut};

use crate::set_encoder::ops::{check_finite, check_workspace, expect_shape, max_of, mul, vm, vw};

/// The pointer scoring module of Pointer Networks (Vinyals et al. 2015, eq. 3).
#[derive(Debug)]
pub struct PointerAttention<'w, B: Backend + ?Sized, T: Element> {
    w1: View<'w, B, T>,
    w2: View<'w, B, T>,
    v: View<'w, B, T>,
}

impl<B: Backend + ?Sized, T: Element> Clone for PointerAttention<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for PointerAttention<'_, B, T> {}

impl<'w, B: Backend + ?Sized, T: Element> PointerAttention<'w, B, T> {
    /// Scratch buffers [`PointerAttention::log_probs`] takes ([`PointerAttention::scores`] needs
    /// one fewer and accepts more).
    pub const BUFFERS: usize = 4;

    /// From `w1 [H, De]` (applied to encoder states), `w2 [H, Dd]` (applied to decoder states)
    /// and `v [H]`.
    ///
    /// # Errors
    /// Rank and shape errors naming `w1`, `w2` or `v` (`H` is `w1`'s first extent); a
    /// non-finite weight naming its argument (host memory only: device memory is not read back).
    pub fn new(w1: View<'w, B, T>, w2: View<'w, B, T>, v: View<'w, B, T>) -> Result<Self> {
        let (h, de) = match *w1.shape() {
            [h, de] => (h, de),
            _ => {
                return Err(Error::Rank {
                    arg: "w1",
                    got: w1.shape().len(),
                    min: 2,
                    max: 2,
                });
            }
        };
        let dd = if w2.shape().len() == 2 {
            w2.shape().get(1).copied().unwrap_or(0)
        } else {
            0
        };
        expect_shape("w1", &w1, &[h, de])?;
        expect_shape("w2", &w2, &[h, dd])?;
        expect_shape("v", &v, &[h])?;
        check_finite("w1", &w1)?;
        check_finite("w2", &w2)?;
        check_finite("v", &v)?;
        Ok(PointerAttention { w1, w2, v })
    }

    /// The attention size `H`.
    pub fn hidden(&self) -> usize {
        self.w1.shape().first().copied().unwrap_or(0)
    }

    /// The encoder state size `De`.
    pub fn encoder_dim(&self) -> usize {
        self.w1.shape().get(1).copied().unwrap_or(0)
    }

    /// The decoder state size `Dd`.
    pub fn decoder_dim(&self) -> usize {
        self.w2.shape().get(1).copied().unwrap_or(0)
    }

    /// `keys [n, H] = e [n, De] W1^T`: the encoder half of eq. 3, once per input sequence.
    ///
    /// # Errors
    /// Shape errors naming `e` or `keys`.
    pub fn encode(&self, b: &B, e: View<'_, B, T>, keys: ViewMut<'_, B, T>) -> Result<()> {
        let n = rows("e", &e, self.encoder_dim())?;
        seqcore::check::shape("keys", keys.layout(), &[n, self.hidden()])?;
        b.gemm(1.0, e, self.w1.transpose(0, 1)?, 0.0, keys)
    }

    /// Elements each scratch buffer needs for `queries` decoder states over `inputs` positions:
    /// `max(Q H, n H, Q n)` (the work is done one query at a time, so it does not grow as
    /// `Q n H`).
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `workspace`.
    pub fn workspace_len(&self, queries: usize, inputs: usize) -> Result<usize> {
        let h = self.hidden();
        Ok(max_of(&[
            mul("workspace", queries, h)?,
            mul("workspace", inputs, h)?,
            mul("workspace", queries, inputs)?,
        ]))
    }

    /// The raw scores `u [Q, n]`, `u_j^i = v^T tanh(keys_j + W2 d_i)`, for decoder states
    /// `d [Q, Dd]` against `keys [n, H]` from [`PointerAttention::encode`]. `ws` holds
    /// [`PointerAttention::BUFFERS`] buffers of [`PointerAttention::workspace_len`] elements.
    ///
    /// # Errors
    /// Shape errors naming `keys`, `d` or `u`; [`Error::Capacity`] naming `workspace`.
    pub fn scores(
        &self,
        b: &B,
        keys: View<'_, B, T>,
        d: View<'_, B, T>,
        mut u: ViewMut<'_, B, T>,
        ws: &mut [&mut B::Mem<T>],
    ) -> Result<()> {
        let h = self.hidden();
        let n = rows("keys", &keys, h)?;
        let q = rows("d", &d, self.decoder_dim())?;
        seqcore::check::shape("u", u.layout(), &[q, n])?;
        check_workspace::<B, T>(ws, Self::BUFFERS - 1, self.workspace_len(q, n)?)?;
        let [qb, hid, act, ..] = ws else {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: Self::BUFFERS - 1,
                capacity: ws.len(),
            });
        };
        let (qb, hid, act) = (&mut **qb, &mut **hid, &mut **act);
        let nh = [n, h];
        b.gemm(1.0, d, self.w2.transpose(0, 1)?, 0.0, vm(qb, &[q, h])?)?;
        let v = self.v.map_layout(|l| l.unsqueeze(1))?; // [H, 1]
        for i in 0..q {
            let di = vw::<B, T>(qb, &[q, h])?.narrow(0, i, 1)?.expand(&nh)?;
            b.binary(Binary::Add, keys, di, vm(hid, &nh)?)?;
            b.unary(Unary::Tanh, vw(hid, &nh)?, vm(act, &nh)?)?;
            let ui = u.reborrow().narrow(0, i, 1)?.transpose(0, 1)?; // [n, 1]
            b.gemm(1.0, vw(act, &nh)?, v, 0.0, ui)?;
        }
        Ok(())
    }

    /// `out [Q, n] = log_softmax_j(u_j^i + mask_ij)`: eq. 3's distribution over input positions,
    /// in log space, with an additive `mask [Q, n]` (`0` or `-inf`; broadcast a smaller one with
    /// [`View::expand`]). A fully masked query gives `-inf` everywhere.
    ///
    /// # Errors
    /// As [`PointerAttention::scores`], and shape errors naming `mask` or `out`.
    pub fn log_probs(
        &self,
        b: &B,
        keys: View<'_, B, T>,
        d: View<'_, B, T>,
        mask: Option<View<'_, B, T>>,
        out: ViewMut<'_, B, T>,
        ws: &mut [&mut B::Mem<T>],
    ) -> Result<()> {
        let h = self.hidden();
        let n = rows("keys", &keys, h)?;
        let q = rows("d", &d, self.decoder_dim())?;
        seqcore::check::shape("out", out.layout(), &[q, n])?;
        if let Some(m) = &mask {
            seqcore::check::shape("mask", m.layout(), &[q, n])?;
        }
        check_workspace::<B, T>(ws, Self::BUFFERS, self.workspace_len(q, n)?)?;
        let Some((ub, rest)) = ws.split_last_mut() else {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: Self::BUFFERS,
                capacity: 0,
            });
        };
        let ub: &mut B::Mem<T> = ub;
        self.scores(b, keys, d, vm(ub, &[q, n])?, rest)?;
        b.softmax(SoftmaxKind::LogSoftmax, vw(ub, &[q, n])?, mask, out)
    }
}

/// The row count of a `[rows, dim]` matrix, naming `arg` when the shape is wrong.
fn rows<B: Backend + ?Sized, T: Element>(
    arg: &'static str,
    v: &View<'_, B, T>,
    dim: usize,
) -> Result<usize> {
    let n = if v.shape().len() == 2 {
        v.shape().first().copied().unwrap_or(0)
    } else {
        0
    };
    seqcore::check::shape(arg, v.layout(), &[n, dim])?;
    Ok(n)
}
