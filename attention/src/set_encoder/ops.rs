//! Building blocks composed from seqcore's kernels (`gemm`, `softmax`, `unary`, `binary`,
//! `reduce`) over any [`Backend`]: linear maps, layer normalisation, multi-head attention, and the
//! workspace checks shared by the pointer, set-encoder and ACT modules.
//!
//! Every intermediate is stored in the element type `T` (each kernel accumulates in `T::Acc` and
//! rounds once on store), as PyTorch's eager mode does for f16 and bf16 modules.

use seqcore::{
    Backend, Binary, Element, Error, Real, Reduce, Result, SoftmaxKind, Unary, View, ViewMut,
};

/// Checks that `ws` holds at least `count` buffers, each (extra ones too) of at least `len`
/// elements.
pub(crate) fn check_workspace<B: Backend + ?Sized, T: Element>(
    ws: &[&mut B::Mem<T>],
    count: usize,
    len: usize,
) -> Result<()> {
    if ws.len() < count {
        return Err(Error::Capacity {
            arg: "workspace",
            needed: count,
            capacity: ws.len(),
        });
    }
    for m in ws.iter() {
        let have = B::mem_len::<T>(m);
        if have < len {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: len,
                capacity: have,
            });
        }
    }
    Ok(())
}

/// `a * b`, or [`Error::Overflow`] naming `arg`.
pub(crate) fn mul(arg: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::Overflow { arg })
}

/// The largest of `xs`.
pub(crate) fn max_of(xs: &[usize]) -> usize {
    xs.iter().copied().max().unwrap_or(0)
}

/// A row-major view of `shape` at the start of `mem`.
pub(crate) fn vw<'a, B: Backend + ?Sized, T: Element>(
    mem: &'a B::Mem<T>,
    shape: &[usize],
) -> Result<View<'a, B, T>> {
    View::contiguous(mem, shape)
}

/// A row-major writable view of `shape` at the start of `mem`.
pub(crate) fn vm<'a, B: Backend + ?Sized, T: Element>(
    mem: &'a mut B::Mem<T>,
    shape: &[usize],
) -> Result<ViewMut<'a, B, T>> {
    ViewMut::contiguous(mem, shape)
}

/// Rejects a parameter tensor holding NaN or an infinity, when its memory is on the host
/// ([`Backend::host`]); device memory is not read back (that would be a transfer per call).
pub(crate) fn check_finite<B: Backend + ?Sized, T: Element>(
    arg: &'static str,
    v: &View<'_, B, T>,
) -> Result<()> {
    if let Some(h) = B::host(v.mem()) {
        for o in v.layout().offsets() {
            if h.get(o).is_some_and(|x| !x.to_f64().is_finite()) {
                return Err(Error::Param {
                    arg,
                    reason: "must hold finite values (found NaN or an infinity)",
                });
            }
        }
    }
    Ok(())
}

/// Checks that `v` has exactly `shape` (rank and extents), naming `arg`.
pub(crate) fn expect_shape<B: Backend + ?Sized, T: Element>(
    arg: &'static str,
    v: &View<'_, B, T>,
    shape: &[usize],
) -> Result<()> {
    seqcore::check::shape(arg, v.layout(), shape)
}

/// `y = x` (a multiplication by one: exact, NaN stays NaN).
pub(crate) fn copy<B: Backend + ?Sized, T: Element>(
    b: &B,
    x: View<'_, B, T>,
    y: ViewMut<'_, B, T>,
) -> Result<()> {
    b.unary(Unary::Scale(1.0), x, y)
}

/// A fully connected layer with PyTorch's `nn.Linear` layout: `weight [out, in]`, optional
/// `bias [out]`, `y = x weight^T + bias` (as `torch.addmm(bias, x, weight.T)`).
#[derive(Debug)]
pub struct Linear<'w, B: Backend + ?Sized, T: Element> {
    /// `[out, in]`.
    pub weight: View<'w, B, T>,
    /// `[out]`, or none.
    pub bias: Option<View<'w, B, T>>,
}

impl<B: Backend + ?Sized, T: Element> Clone for Linear<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for Linear<'_, B, T> {}

impl<'w, B: Backend + ?Sized, T: Element> Linear<'w, B, T> {
    /// A layer `in -> out` from `weight [out, in]` and `bias [out]`; `arg` names the weight in
    /// errors (the bias error names the same argument).
    ///
    /// # Errors
    /// [`Error::Rank`] / [`Error::Shape`] naming `arg` for a misshapen weight or bias,
    /// [`Error::Param`] naming `arg` for a non-finite value (host memory only).
    pub fn new(
        arg: &'static str,
        weight: View<'w, B, T>,
        bias: Option<View<'w, B, T>>,
        out: usize,
        inp: usize,
    ) -> Result<Self> {
        expect_shape(arg, &weight, &[out, inp])?;
        check_finite(arg, &weight)?;
        if let Some(bv) = &bias {
            expect_shape(arg, bv, &[out])?;
            check_finite(arg, bv)?;
        }
        Ok(Linear { weight, bias })
    }

    /// `y [n, out] = x [n, in] weight^T + bias`.
    ///
    /// # Errors
    /// Shape errors from the kernels.
    pub fn forward(&self, b: &B, x: View<'_, B, T>, mut y: ViewMut<'_, B, T>) -> Result<()> {
        let wt = self.weight.transpose(0, 1)?;
        match self.bias {
            Some(bias) => {
                let shape = [
                    y.shape().first().copied().unwrap_or(0),
                    y.shape().get(1).copied().unwrap_or(0),
                ];
                copy(b, bias.expand(&shape)?, y.reborrow())?;
                b.gemm(1.0, x, wt, 1.0, y)
            }
            None => b.gemm(1.0, x, wt, 0.0, y),
        }
    }
}

/// Layer normalisation over the last axis (Ba et al. 2016), PyTorch's `nn.LayerNorm`:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, `var` the biased variance.
#[derive(Debug)]
pub struct LayerNorm<'w, B: Backend + ?Sized, T: Element> {
    /// `[d]` (PyTorch `weight`, the gain).
    pub weight: View<'w, B, T>,
    /// `[d]`.
    pub bias: View<'w, B, T>,
    /// Added to the variance; PyTorch's default (and the Set Transformer code's) is `1e-5`.
    pub eps: f64,
}

impl<B: Backend + ?Sized, T: Element> Clone for LayerNorm<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for LayerNorm<'_, B, T> {}

/// PyTorch's `nn.LayerNorm` default `eps`.
pub const LAYER_NORM_EPS: f64 = 1e-5;

impl<'w, B: Backend + ?Sized, T: Element> LayerNorm<'w, B, T> {
    /// A layer norm over `d` features.
    ///
    /// # Errors
    /// Shape errors naming `arg`; [`Error::Param`] naming `eps` unless it is finite and
    /// positive, naming `arg` for a non-finite weight (host memory only).
    pub fn new(
        arg: &'static str,
        weight: View<'w, B, T>,
        bias: View<'w, B, T>,
        eps: f64,
        d: usize,
    ) -> Result<Self> {
        expect_shape(arg, &weight, &[d])?;
        expect_shape(arg, &bias, &[d])?;
        check_finite(arg, &weight)?;
        check_finite(arg, &bias)?;
        if !(eps.is_finite() && eps > 0.0 && T::Acc::lit(eps) > T::Acc::zero()) {
            return Err(Error::Param {
                arg: "eps",
                reason: "must be finite and positive in the accumulation type",
            });
        }
        Ok(LayerNorm { weight, bias, eps })
    }

    /// `y [n, d] = LayerNorm(x [n, d])`, with three scratch buffers of `n * d` elements.
    fn forward(
        &self,
        b: &B,
        x: View<'_, B, T>,
        y: ViewMut<'_, B, T>,
        s: [&mut B::Mem<T>; 3],
    ) -> Result<()> {
        let [s0, s1, s2] = s;
        let n = x.shape().first().copied().unwrap_or(0);
        let d = x.shape().get(1).copied().unwrap_or(0);
        let nd = [n, d];
        // mean [n] -> s0; centred [n, d] -> s1; squares -> s2; variance [n] -> s0.
        b.reduce(Reduce::Mean, x, vm(s0, &[n])?)?;
        let mean = vw::<B, T>(s0, &[n, 1])?.expand(&nd)?;
        b.binary(Binary::Sub, x, mean, vm(s1, &nd)?)?;
        b.unary(Unary::Square, vw(s1, &nd)?, vm(s2, &nd)?)?;
        b.reduce(Reduce::Mean, vw(s2, &nd)?, vm(s0, &[n])?)?;
        // 1 / sqrt(var + eps) -> s0 (via s2).
        b.unary(Unary::AddScalar(self.eps), vw(s0, &[n])?, vm(s2, &[n])?)?;
        b.unary(Unary::Sqrt, vw(s2, &[n])?, vm(s0, &[n])?)?;
        b.unary(Unary::Recip, vw(s0, &[n])?, vm(s2, &[n])?)?;
        let rstd = vw::<B, T>(s2, &[n, 1])?.expand(&nd)?;
        b.binary(Binary::Mul, vw(s1, &nd)?, rstd, vm(s0, &nd)?)?;
        b.binary(
            Binary::Mul,
            vw(s0, &nd)?,
            self.weight.expand(&nd)?,
            vm(s1, &nd)?,
        )?;
        b.binary(Binary::Add, vw(s1, &nd)?, self.bias.expand(&nd)?, y)
    }
}

/// `y = LayerNorm(x)` when `ln` is given, else `y = x`.
pub(crate) fn maybe_layer_norm<B: Backend + ?Sized, T: Element>(
    b: &B,
    ln: Option<&LayerNorm<'_, B, T>>,
    x: View<'_, B, T>,
    y: ViewMut<'_, B, T>,
    s: [&mut B::Mem<T>; 3],
) -> Result<()> {
    match ln {
        Some(ln) => ln.forward(b, x, y, s),
        None => copy(b, x, y),
    }
}

/// Multi-head attention with PyTorch's `nn.MultiheadAttention` weights (Vaswani et al. 2017,
/// section 3.2.2): `in_proj_weight [3d, d]` (rows `0..d` project queries, `d..2d` keys, `2d..3d`
/// values), `in_proj_bias [3d]`, `out_proj.weight [d, d]`, `out_proj.bias [d]`; head `h` uses
/// features `h*d/H .. (h+1)*d/H`, scores are scaled by `1/sqrt(d/H)`.
#[derive(Debug)]
pub struct MultiheadAttention<'w, B: Backend + ?Sized, T: Element> {
    q: Linear<'w, B, T>,
    k: Linear<'w, B, T>,
    v: Linear<'w, B, T>,
    out: Linear<'w, B, T>,
    heads: usize,
    dim: usize,
}

impl<B: Backend + ?Sized, T: Element> Clone for MultiheadAttention<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for MultiheadAttention<'_, B, T> {}

impl<'w, B: Backend + ?Sized, T: Element> MultiheadAttention<'w, B, T> {
    /// From the `nn.MultiheadAttention` tensors (`embed_dim = dim`, `num_heads = heads`,
    /// `kdim = vdim = dim`); biases are optional as with `bias=False`.
    ///
    /// # Errors
    /// [`Error::Param`] naming `heads` when it is 0 or does not divide `dim`; shape errors and
    /// non-finite values naming `in_proj_weight`, `in_proj_bias`, `out_proj`.
    pub fn new(
        dim: usize,
        heads: usize,
        in_proj_weight: View<'w, B, T>,
        in_proj_bias: Option<View<'w, B, T>>,
        out_proj_weight: View<'w, B, T>,
        out_proj_bias: Option<View<'w, B, T>>,
    ) -> Result<Self> {
        if heads == 0 || dim % heads != 0 {
            return Err(Error::Param {
                arg: "heads",
                reason: "must be positive and divide the model dimension",
            });
        }
        let three = mul("in_proj_weight", dim, 3)?;
        expect_shape("in_proj_weight", &in_proj_weight, &[three, dim])?;
        check_finite("in_proj_weight", &in_proj_weight)?;
        if let Some(bv) = &in_proj_bias {
            expect_shape("in_proj_bias", bv, &[three])?;
        }
        let part = |i: usize| -> Result<Linear<'w, B, T>> {
            let w = in_proj_weight.narrow(0, i * dim, dim)?;
            let bias = match in_proj_bias {
                Some(bv) => Some(bv.narrow(0, i * dim, dim)?),
                None => None,
            };
            Linear::new("in_proj_bias", w, bias, dim, dim)
        };
        Ok(MultiheadAttention {
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out: Linear::new("out_proj", out_proj_weight, out_proj_bias, dim, dim)?,
            heads,
            dim,
        })
    }

    /// The model dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// `y [n, d] = MultiHead(x [n, d], kv [m, d], kv)`, with five scratch buffers holding
    /// `max(n d, m d, H n m)` elements each.
    pub(crate) fn forward(
        &self,
        b: &B,
        x: View<'_, B, T>,
        kv: View<'_, B, T>,
        y: ViewMut<'_, B, T>,
        s: [&mut B::Mem<T>; 5],
    ) -> Result<()> {
        let [q, k, v, sc, pr] = s;
        let (d, h) = (self.dim, self.heads);
        let dh = d / h;
        let n = x.shape().first().copied().unwrap_or(0);
        let m = kv.shape().first().copied().unwrap_or(0);
        self.q.forward(b, x, vm(q, &[n, d])?)?;
        self.k.forward(b, kv, vm(k, &[m, d])?)?;
        self.v.forward(b, kv, vm(v, &[m, d])?)?;
        // Heads as a batch axis: q [H, n, dh], k^T [H, dh, m], v [H, m, dh].
        let qh = vw::<B, T>(q, &[n, h, dh])?.map_layout(|l| l.permute(&[1, 0, 2]))?;
        let kt = vw::<B, T>(k, &[m, h, dh])?.map_layout(|l| l.permute(&[1, 2, 0]))?;
        let vh = vw::<B, T>(v, &[m, h, dh])?.map_layout(|l| l.permute(&[1, 0, 2]))?;
        let dh_f = f64::from(u32::try_from(dh).map_err(|_| Error::Overflow { arg: "dim" })?);
        b.gemm(1.0 / dh_f.sqrt(), qh, kt, 0.0, vm(sc, &[h, n, m])?)?;
        b.softmax(
            SoftmaxKind::Softmax,
            vw(sc, &[h, n, m])?,
            None,
            vm(pr, &[h, n, m])?,
        )?;
        // The queries are spent: the per-head context goes where they were.
        let ctx = vm::<B, T>(q, &[n, h, dh])?.map_layout(|l| l.permute(&[1, 0, 2]))?;
        b.gemm(1.0, vw(pr, &[h, n, m])?, vh, 0.0, ctx)?;
        self.out.forward(b, vw(q, &[n, d])?, y)
    }
}
