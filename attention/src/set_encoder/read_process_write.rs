//! The Read-Process-Write set encoder (Vinyals, Bengio & Kudlur 2016, "Order Matters: Sequence to
//! sequence for sets", section 4.2, eq. (3)-(7)).
//!
//! Read: each element `x_i` is embedded into a memory vector `m_i` (here an optional
//! [`Linear`] layer; without one, `m_i = x_i`). Process: `T` steps of an LSTM that takes no input
//! from the set, only its own previous output `q*_{t-1}`, then reads the memories by content:
//!
//! ```text
//! q_t     = LSTM(q*_{t-1})                       (3)
//! e_{i,t} = f(m_i, q_t) = m_i . q_t              (4)
//! a_{i,t} = exp(e_{i,t}) / sum_j exp(e_{j,t})    (5)
//! r_t     = sum_i a_{i,t} m_i                    (6)
//! q*_t    = [q_t, r_t]                           (7)
//! ```
//!
//! with `q*_0 = 0` and a zero initial LSTM state. The output `q*_T` does not depend on the order
//! of the set. Write (a pointer network over the memories) is [`crate::PointerAttention`].
//! This is also PyTorch Geometric's `Set2Set` (an `LSTM(2d, d)` fed `q*`, dot-product scores).

use seqcore::{Backend, Binary, Element, Error, Result, SoftmaxKind, Unary, View, ViewMut};

use super::ops::{Linear, check_finite, check_workspace, expect_shape, max_of, mul, vm, vw};

/// An LSTM cell with PyTorch's `nn.LSTMCell` weights and gate order (Hochreiter & Schmidhuber
/// 1997; the form of Graves 2013 without peepholes): `weight_ih [4h, in]`, `weight_hh [4h, h]`,
/// `bias_ih [4h]`, `bias_hh [4h]`, rows in the order input gate `i`, forget gate `f`, cell
/// candidate `g`, output gate `o`:
///
/// ```text
/// [i, f, g, o] = x W_ih^T + b_ih + h W_hh^T + b_hh
/// c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
/// h' = sigmoid(o) * tanh(c')
/// ```
#[derive(Debug)]
pub struct LstmCell<'w, B: Backend + ?Sized, T: Element> {
    ih: Linear<'w, B, T>,
    hh: Linear<'w, B, T>,
    hidden: usize,
}

impl<B: Backend + ?Sized, T: Element> Clone for LstmCell<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for LstmCell<'_, B, T> {}

impl<'w, B: Backend + ?Sized, T: Element> LstmCell<'w, B, T> {
    /// From `nn.LSTMCell(input, hidden)`'s four tensors.
    ///
    /// # Errors
    /// [`Error::Param`] naming `hidden` when it is 0; shape errors and non-finite values naming
    /// `weight_ih`, `weight_hh` (their biases included).
    pub fn new(
        input: usize,
        hidden: usize,
        weight_ih: View<'w, B, T>,
        weight_hh: View<'w, B, T>,
        bias_ih: View<'w, B, T>,
        bias_hh: View<'w, B, T>,
    ) -> Result<Self> {
        if hidden == 0 {
            return Err(Error::Param {
                arg: "hidden",
                reason: "must be positive",
            });
        }
        let four = mul("hidden", hidden, 4)?;
        Ok(LstmCell {
            ih: Linear::new("weight_ih", weight_ih, Some(bias_ih), four, input)?,
            hh: Linear::new("weight_hh", weight_hh, Some(bias_hh), four, hidden)?,
            hidden,
        })
    }

    /// The hidden size `h`.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The input size.
    pub fn input(&self) -> usize {
        self.ih.weight.shape().get(1).copied().unwrap_or(0)
    }
}

/// The Read-Process-Write set encoder's read and process blocks (Vinyals et al. 2016, section
/// 4.2, eq. 3-7): memories `m_i`, then `T` steps of content attention driven by an LSTM without
/// input, giving the permutation-invariant embedding `q*_T [2d]`.
#[derive(Debug)]
pub struct ReadProcessWrite<'w, B: Backend + ?Sized, T: Element> {
    read: Option<Linear<'w, B, T>>,
    lstm: LstmCell<'w, B, T>,
    steps: usize,
}

impl<B: Backend + ?Sized, T: Element> Clone for ReadProcessWrite<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for ReadProcessWrite<'_, B, T> {}

impl<'w, B: Backend + ?Sized, T: Element> ReadProcessWrite<'w, B, T> {
    /// Scratch buffers [`ReadProcessWrite::forward`] takes.
    pub const BUFFERS: usize = 7;

    /// `steps` process steps of `lstm` (an `LSTMCell(2d, d)`) over memories of size `d`, read
    /// from the elements by `read` (`[d, d_in]`, `m_i = read(x_i)`) or taken as they are.
    ///
    /// # Errors
    /// [`Error::Param`] naming `steps` when it is 0; shape errors naming `lstm` (its input must
    /// be twice its hidden size) or `read` (its output must be the hidden size).
    pub fn new(
        read: Option<Linear<'w, B, T>>,
        lstm: LstmCell<'w, B, T>,
        steps: usize,
    ) -> Result<Self> {
        if steps == 0 {
            return Err(Error::Param {
                arg: "steps",
                reason: "must be at least 1",
            });
        }
        let d = lstm.hidden();
        if lstm.input() != mul("lstm", d, 2)? {
            return Err(Error::Shape {
                arg: "lstm",
                axis: 1,
                got: lstm.input(),
                expected: d.saturating_mul(2),
                shape: lstm.ih.weight.layout().dims(),
            });
        }
        if let Some(r) = &read {
            let inp = r.weight.shape().get(1).copied().unwrap_or(0);
            expect_shape("read", &r.weight, &[d, inp])?;
            check_finite("read", &r.weight)?;
        }
        Ok(ReadProcessWrite { read, lstm, steps })
    }

    /// The memory size `d` (the output is `2d`).
    pub fn dim(&self) -> usize {
        self.lstm.hidden()
    }

    /// The size of an element of the set (`d_in` of `read`, else `d`).
    pub fn input_dim(&self) -> usize {
        match &self.read {
            Some(r) => r.weight.shape().get(1).copied().unwrap_or(0),
            None => self.dim(),
        }
    }

    /// Elements each scratch buffer needs for a set of `n`: `max(n d, 4d)`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `workspace`.
    pub fn workspace_len(&self, n: usize) -> Result<usize> {
        let d = self.dim();
        Ok(max_of(&[mul("workspace", n, d)?, mul("workspace", 4, d)?]))
    }

    /// `q [2d] = q*_T` for the set `x [n, d_in]`; `ws` holds [`ReadProcessWrite::BUFFERS`]
    /// buffers of [`ReadProcessWrite::workspace_len`] elements. An empty set reads `r_t = 0`.
    ///
    /// # Errors
    /// Shape errors naming `x` or `q`; [`Error::Capacity`] naming `workspace`.
    pub fn forward(
        &self,
        b: &B,
        x: View<'_, B, T>,
        q: ViewMut<'_, B, T>,
        ws: &mut [&mut B::Mem<T>],
    ) -> Result<()> {
        let d = self.dim();
        let d_in = self.input_dim();
        let n = if x.shape().len() == 2 {
            x.shape().first().copied().unwrap_or(0)
        } else {
            0
        };
        seqcore::check::shape("x", x.layout(), &[n, d_in])?;
        let two = mul("q", d, 2)?;
        seqcore::check::shape("q", q.layout(), &[two])?;
        check_workspace::<B, T>(ws, Self::BUFFERS, self.workspace_len(n)?)?;
        let [mb, gi, act, ca, cb, s0, s1, ..] = ws else {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: Self::BUFFERS,
                capacity: ws.len(),
            });
        };
        let (mb, gi, act, ca, cb, s0, s1) = (
            &mut **mb, &mut **gi, &mut **act, &mut **ca, &mut **cb, &mut **s0, &mut **s1,
        );
        let mut q = q.map_layout(|l| l.unsqueeze(0))?; // [1, 2d]
        let (g4, gd) = ([1, 4 * d], [1, d]);
        // Read.
        if let Some(r) = &self.read {
            r.forward(b, x, vm(mb, &[n, d])?)?;
        }
        let (mut c, mut c_next): (&mut B::Mem<T>, &mut B::Mem<T>) = (ca, cb);
        for t in 0..self.steps {
            // Gates into s0: with q*_0 = 0 and h_0 = 0 they are the biases alone.
            if t == 0 {
                let bi = self.lstm.ih.bias.ok_or(Error::Param {
                    arg: "bias_ih",
                    reason: "missing",
                })?;
                let bh = self.lstm.hh.bias.ok_or(Error::Param {
                    arg: "bias_hh",
                    reason: "missing",
                })?;
                b.binary(Binary::Add, bi.expand(&g4)?, bh.expand(&g4)?, vm(s0, &g4)?)?;
            } else {
                let qv = q.as_view();
                let h = qv.narrow(1, 0, d)?;
                self.lstm.ih.forward(b, qv, vm(gi, &g4)?)?;
                self.lstm.hh.forward(b, h, vm(act, &g4)?)?;
                b.binary(Binary::Add, vw(gi, &g4)?, vw(act, &g4)?, vm(s0, &g4)?)?;
            }
            // Activations: sigmoid everywhere, then tanh over the cell candidate g.
            b.unary(Unary::Sigmoid, vw(s0, &g4)?, vm(act, &g4)?)?;
            b.unary(
                Unary::Tanh,
                vw::<B, T>(s0, &g4)?.narrow(1, 2 * d, d)?,
                vm::<B, T>(act, &g4)?.narrow(1, 2 * d, d)?,
            )?;
            let gate =
                |k: usize| -> Result<View<'_, B, T>> { vw::<B, T>(act, &g4)?.narrow(1, k * d, d) };
            // c' = f * c + i * g (c = 0 at the first step).
            if t == 0 {
                b.binary(Binary::Mul, gate(0)?, gate(2)?, vm(c_next, &gd)?)?;
            } else {
                b.binary(Binary::Mul, gate(1)?, vw(c, &gd)?, vm(gi, &gd)?)?;
                b.binary(Binary::Mul, gate(0)?, gate(2)?, vm(s1, &gd)?)?;
                b.binary(Binary::Add, vw(gi, &gd)?, vw(s1, &gd)?, vm(c_next, &gd)?)?;
            }
            core::mem::swap(&mut c, &mut c_next);
            // q_t = h' = o * tanh(c') into the first half of q*.
            b.unary(Unary::Tanh, vw(c, &gd)?, vm(gi, &gd)?)?;
            b.binary(
                Binary::Mul,
                gate(3)?,
                vw(gi, &gd)?,
                q.reborrow().narrow(1, 0, d)?,
            )?;
            // e = m q_t [n], a = softmax(e), r = a m into the second half of q*.
            let mem = match self.read {
                Some(_) => vw::<B, T>(mb, &[n, d])?,
                None => x,
            };
            let qt = q.as_view().narrow(1, 0, d)?.transpose(0, 1)?; // [d, 1]
            b.gemm(1.0, mem, qt, 0.0, vm(s0, &[n, 1])?)?;
            b.softmax(
                SoftmaxKind::Softmax,
                vw(s0, &[1, n])?,
                None,
                vm(s1, &[1, n])?,
            )?;
            b.gemm(
                1.0,
                vw(s1, &[1, n])?,
                mem,
                0.0,
                q.reborrow().narrow(1, d, d)?,
            )?;
        }
        Ok(())
    }
}
