//! Set Transformer blocks (Lee et al. 2019, "Set Transformer: A Framework for Attention-based
//! Permutation-Invariant Neural Networks", section 3.1-3.2, eq. (6)-(11)).
//!
//! - `MAB(X, Y) = LayerNorm(H + rFF(H))`, `H = LayerNorm(X + Multihead(X, Y, Y))` (eq. 6-7),
//! - `SAB(X) = MAB(X, X)` (eq. 8),
//! - `ISAB_m(X) = MAB(X, H)`, `H = MAB(I, X)` with `m` learned inducing points `I` (eq. 9-10),
//! - `PMA_k(Z) = MAB(S, rFF(Z))` with `k` learned seed vectors `S` (eq. 11).
//!
//! `rFF` is one row-wise layer `relu(Linear(x))`, as `fc_o` in the authors' code
//! (`juho-lee/set_transformer`, `modules.py`); the layer norms are optional there (`ln=False`) and
//! here (`None`), with PyTorch's default `eps = 1e-5` when present. Multi-head attention takes
//! `nn.MultiheadAttention`'s weights (see [`MultiheadAttention`]); unlike the authors' `MAB`, which
//! adds the *projected* queries back and scales by `1/sqrt(dim_V)`, this follows the paper's
//! equations: the residual is `X` itself and the scale is `1/sqrt(d/H)` (PyTorch's).

use seqcore::{Backend, Binary, Element, Error, Result, Unary, View, ViewMut};

use super::ops::{
    LayerNorm, Linear, MultiheadAttention, check_finite, check_workspace, expect_shape, max_of,
    maybe_layer_norm, mul, vm, vw,
};

/// Multihead Attention Block `MAB(X, Y)` (Lee et al. 2019, eq. 6-7).
#[derive(Debug)]
pub struct Mab<'w, B: Backend + ?Sized, T: Element> {
    attn: MultiheadAttention<'w, B, T>,
    ln0: Option<LayerNorm<'w, B, T>>,
    ff: Linear<'w, B, T>,
    ln1: Option<LayerNorm<'w, B, T>>,
}

impl<B: Backend + ?Sized, T: Element> Clone for Mab<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for Mab<'_, B, T> {}

impl<'w, B: Backend + ?Sized, T: Element> Mab<'w, B, T> {
    /// Scratch buffers [`Mab::forward`] takes.
    pub const BUFFERS: usize = 6;

    /// A block of model dimension `attn.dim()`: attention, the first layer norm (`ln0`, or none),
    /// the row-wise layer `ff` (`relu(x W^T + b)`, `W [d, d]`) and the second layer norm.
    ///
    /// # Errors
    /// Shape errors naming `ff`, `ln0` or `ln1` when a dimension differs from the attention's.
    pub fn new(
        attn: MultiheadAttention<'w, B, T>,
        ln0: Option<LayerNorm<'w, B, T>>,
        ff: Linear<'w, B, T>,
        ln1: Option<LayerNorm<'w, B, T>>,
    ) -> Result<Self> {
        let d = attn.dim();
        expect_shape("ff", &ff.weight, &[d, d])?;
        if let Some(ln) = &ln0 {
            expect_shape("ln0", &ln.weight, &[d])?;
        }
        if let Some(ln) = &ln1 {
            expect_shape("ln1", &ln.weight, &[d])?;
        }
        Ok(Mab { attn, ln0, ff, ln1 })
    }

    /// The model dimension.
    pub fn dim(&self) -> usize {
        self.attn.dim()
    }

    /// Elements each scratch buffer needs for `n` queries against a set of `m`:
    /// `max(n d, m d, H n m)`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `workspace`.
    pub fn workspace_len(&self, n: usize, m: usize) -> Result<usize> {
        let d = self.dim();
        let hnm = mul("workspace", mul("workspace", self.attn.heads(), n)?, m)?;
        Ok(max_of(&[
            mul("workspace", n, d)?,
            mul("workspace", m, d)?,
            hnm,
        ]))
    }

    /// `out [n, d] = MAB(x [n, d], y [m, d])`; `ws` holds [`Mab::BUFFERS`] buffers of
    /// [`Mab::workspace_len`] elements.
    ///
    /// # Errors
    /// Shape errors naming `x`, `y` or `out`; [`Error::Capacity`] naming `workspace`.
    pub fn forward(
        &self,
        b: &B,
        x: View<'_, B, T>,
        y: View<'_, B, T>,
        out: ViewMut<'_, B, T>,
        ws: &mut [&mut B::Mem<T>],
    ) -> Result<()> {
        let d = self.dim();
        let n = rows("x", &x, d)?;
        let m = rows("y", &y, d)?;
        seqcore::check::shape("out", out.layout(), &[n, d])?;
        check_workspace::<B, T>(ws, Self::BUFFERS, self.workspace_len(n, m)?)?;
        let [b0, b1, b2, b3, b4, b5, ..] = ws else {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: Self::BUFFERS,
                capacity: ws.len(),
            });
        };
        let (b0, b1, b2, b3, b4, b5) = (
            &mut **b0, &mut **b1, &mut **b2, &mut **b3, &mut **b4, &mut **b5,
        );
        let nd = [n, d];
        // a = Multihead(X, Y, Y) -> b0; X + a -> b1; H = LayerNorm(.) -> b2.
        self.attn
            .forward(b, x, y, vm(b0, &nd)?, [b1, b2, b3, b4, b5])?;
        b.binary(Binary::Add, x, vw(b0, &nd)?, vm(b1, &nd)?)?;
        maybe_layer_norm(
            b,
            self.ln0.as_ref(),
            vw(b1, &nd)?,
            vm(b2, &nd)?,
            [b3, b4, b5],
        )?;
        // rFF(H) -> b1; H + rFF(H) -> b3; LayerNorm(.) -> out.
        self.ff.forward(b, vw(b2, &nd)?, vm(b0, &nd)?)?;
        b.unary(Unary::Relu, vw(b0, &nd)?, vm(b1, &nd)?)?;
        b.binary(Binary::Add, vw(b2, &nd)?, vw(b1, &nd)?, vm(b3, &nd)?)?;
        maybe_layer_norm(b, self.ln1.as_ref(), vw(b3, &nd)?, out, [b0, b1, b4])
    }
}

/// The row count of a `[rows, d]` set, naming `arg` when the shape is wrong.
fn rows<B: Backend + ?Sized, T: Element>(
    arg: &'static str,
    v: &View<'_, B, T>,
    d: usize,
) -> Result<usize> {
    let n = if v.shape().len() == 2 {
        v.shape().first().copied().unwrap_or(0)
    } else {
        0
    };
    seqcore::check::shape(arg, v.layout(), &[n, d])?;
    Ok(n)
}

/// Set Attention Block `SAB(X) = MAB(X, X)` (Lee et al. 2019, eq. 8): permutation equivariant.
#[derive(Clone, Copy, Debug)]
pub struct Sab<'w, B: Backend + ?Sized, T: Element> {
    /// The block.
    pub mab: Mab<'w, B, T>,
}

impl<B: Backend + ?Sized, T: Element> Sab<'_, B, T> {
    /// Scratch buffers [`Sab::forward`] takes.
    pub const BUFFERS: usize = Mab::<B, T>::BUFFERS;

    /// Elements each scratch buffer needs for a set of `n`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `workspace`.
    pub fn workspace_len(&self, n: usize) -> Result<usize> {
        self.mab.workspace_len(n, n)
    }

    /// `out [n, d] = SAB(x [n, d])`.
    ///
    /// # Errors
    /// As [`Mab::forward`].
    pub fn forward(
        &self,
        b: &B,
        x: View<'_, B, T>,
        out: ViewMut<'_, B, T>,
        ws: &mut [&mut B::Mem<T>],
    ) -> Result<()> {
        self.mab.forward(b, x, x, out, ws)
    }
}

/// Induced Set Attention Block `ISAB_m(X) = MAB(X, MAB(I, X))` (Lee et al. 2019, eq. 9-10):
/// permutation equivariant, `O(n m)` instead of `O(n^2)`.
#[derive(Debug)]
pub struct Isab<'w, B: Backend + ?Sized, T: Element> {
    inducing: View<'w, B, T>,
    mab0: Mab<'w, B, T>,
    mab1: Mab<'w, B, T>,
}

impl<B: Backend + ?Sized, T: Element> Clone for Isab<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for Isab<'_, B, T> {}

impl<'w, B: Backend + ?Sized, T: Element> Isab<'w, B, T> {
    /// Scratch buffers [`Isab::forward`] takes.
    pub const BUFFERS: usize = Mab::<B, T>::BUFFERS + 1;

    /// From the inducing points `inducing [m, d]` (the authors' `I`), the block that summarises
    /// the set into them (`mab0`: `H = MAB(I, X)`) and the block that reads it back (`mab1`).
    ///
    /// # Errors
    /// Shape errors naming `inducing` or `mab1`; a non-finite inducing point naming
    /// `inducing` (host memory only).
    pub fn new(inducing: View<'w, B, T>, mab0: Mab<'w, B, T>, mab1: Mab<'w, B, T>) -> Result<Self> {
        let d = mab0.dim();
        let m = rows("inducing", &inducing, d)?;
        let _ = m;
        check_finite("inducing", &inducing)?;
        if mab1.dim() != d {
            return Err(Error::Shape {
                arg: "mab1",
                axis: 0,
                got: mab1.dim(),
                expected: d,
                shape: seqcore::Dims::new(&[mab1.dim()]),
            });
        }
        Ok(Isab {
            inducing,
            mab0,
            mab1,
        })
    }

    fn m(&self) -> usize {
        self.inducing.shape().first().copied().unwrap_or(0)
    }

    /// Elements each scratch buffer needs for a set of `n`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `workspace`.
    pub fn workspace_len(&self, n: usize) -> Result<usize> {
        let m = self.m();
        Ok(self
            .mab0
            .workspace_len(m, n)?
            .max(self.mab1.workspace_len(n, m)?))
    }

    /// `out [n, d] = ISAB(x [n, d])`.
    ///
    /// # Errors
    /// As [`Mab::forward`].
    pub fn forward(
        &self,
        b: &B,
        x: View<'_, B, T>,
        out: ViewMut<'_, B, T>,
        ws: &mut [&mut B::Mem<T>],
    ) -> Result<()> {
        let d = self.mab0.dim();
        let n = rows("x", &x, d)?;
        check_workspace::<B, T>(ws, Self::BUFFERS, self.workspace_len(n)?)?;
        let Some((h, rest)) = ws.split_last_mut() else {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: Self::BUFFERS,
                capacity: 0,
            });
        };
        let h: &mut B::Mem<T> = h;
        let md = [self.m(), d];
        self.mab0.forward(b, self.inducing, x, vm(h, &md)?, rest)?;
        self.mab1.forward(b, x, vw(h, &md)?, out, rest)
    }
}

/// Pooling by Multihead Attention `PMA_k(Z) = MAB(S, rFF(Z))` (Lee et al. 2019, eq. 11):
/// permutation invariant, `k` outputs for a set of any size.
#[derive(Debug)]
pub struct Pma<'w, B: Backend + ?Sized, T: Element> {
    seeds: View<'w, B, T>,
    ff: Linear<'w, B, T>,
    mab: Mab<'w, B, T>,
}

impl<B: Backend + ?Sized, T: Element> Clone for Pma<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for Pma<'_, B, T> {}

impl<'w, B: Backend + ?Sized, T: Element> Pma<'w, B, T> {
    /// Scratch buffers [`Pma::forward`] takes.
    pub const BUFFERS: usize = Mab::<B, T>::BUFFERS + 2;

    /// From the seed vectors `seeds [k, d]`, the row-wise layer applied to the set first
    /// (`ff`: `relu(z W^T + b)`, `W [d, d]`) and the block.
    ///
    /// # Errors
    /// Shape errors naming `seeds` or `ff`; a non-finite seed naming `seeds` (host memory only).
    pub fn new(seeds: View<'w, B, T>, ff: Linear<'w, B, T>, mab: Mab<'w, B, T>) -> Result<Self> {
        let d = mab.dim();
        rows("seeds", &seeds, d)?;
        check_finite("seeds", &seeds)?;
        expect_shape("ff", &ff.weight, &[d, d])?;
        Ok(Pma { seeds, ff, mab })
    }

    /// The number of outputs `k`.
    pub fn k(&self) -> usize {
        self.seeds.shape().first().copied().unwrap_or(0)
    }

    /// Elements each scratch buffer needs for a set of `n`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `workspace`.
    pub fn workspace_len(&self, n: usize) -> Result<usize> {
        let d = self.mab.dim();
        Ok(self
            .mab
            .workspace_len(self.k(), n)?
            .max(mul("workspace", n, d)?))
    }

    /// `out [k, d] = PMA(z [n, d])`.
    ///
    /// # Errors
    /// As [`Mab::forward`].
    pub fn forward(
        &self,
        b: &B,
        z: View<'_, B, T>,
        out: ViewMut<'_, B, T>,
        ws: &mut [&mut B::Mem<T>],
    ) -> Result<()> {
        let d = self.mab.dim();
        let n = rows("z", &z, d)?;
        seqcore::check::shape("out", out.layout(), &[self.k(), d])?;
        check_workspace::<B, T>(ws, Self::BUFFERS, self.workspace_len(n)?)?;
        let [rest @ .., f0, f1] = ws else {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: Self::BUFFERS,
                capacity: 0,
            });
        };
        let (f0, f1) = (&mut **f0, &mut **f1);
        let nd = [n, d];
        self.ff.forward(b, z, vm(f0, &nd)?)?;
        b.unary(Unary::Relu, vw(f0, &nd)?, vm(f1, &nd)?)?;
        self.mab.forward(b, self.seeds, vw(f1, &nd)?, out, rest)
    }
}
