//! The S4 block (the official code's `S4Block` around an SSM kernel): `H` channels of an S4D
//! state-space model with skip `D`, optionally bidirectional, then GELU and an output linear map
//! `H -> 2H` with a GLU:
//!
//! `y = SSM(u)` (+ the anti-causal direction), `z = GELU(y)`, `o = z W^T + b`,
//! `out = o[:, :H] * sigmoid(o[:, H:])` (PyTorch's `nn.GLU(dim=-1)`).
//!
//! The bidirectional direction follows the official code: its kernel `k_b` acts on the future
//! with lag one, `y_b[t] = sum_{s > t} k_b[s - t - 1] u[s]`. It is computed as a causal
//! convolution of the time-reversed input, and time reversal needs host memory: on a backend
//! whose memory is elsewhere it answers [`Error::Unsupported`].

use seqcore::{Backend, Binary, Element, Error, Layout, Result, Unary, View, ViewMut};

use crate::s4d::S4d;

/// Output stage of the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// `GELU`, then `W: H -> 2H` and a GLU (the S4 block's default `postact='glu'`).
    GeluGlu,
    /// `GELU` only (no output linear map).
    Gelu,
}

/// The output map's weights in backend memory: `W [2H, H]` (row-major, as PyTorch's
/// `nn.Linear(H, 2H).weight`) and `b [2H]`.
pub type Linear<'m, B, T> = (&'m <B as Backend>::Mem<T>, &'m <B as Backend>::Mem<T>);

/// An S4 block over models and weights already in backend memory.
pub struct S4Layer<'m, B: Backend + ?Sized, T: Element> {
    forward: S4d<'m, B, T::Acc>,
    backward: Option<S4d<'m, B, T::Acc>>,
    /// `W [2H, H]` and `b [2H]`, for [`Output::GeluGlu`].
    linear: Option<Linear<'m, B, T>>,
}

impl<B: Backend + ?Sized, T: Element> core::fmt::Debug for S4Layer<'_, B, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("S4Layer")
            .field("forward", &self.forward)
            .field("bidirectional", &self.backward.is_some())
            .field("glu", &self.linear.is_some())
            .finish()
    }
}

/// Caller-provided scratch of [`S4Layer::forward`], each of at least the length given by
/// [`S4Layer::scratch_lens`]: `k [H, L]`, `y`, `a`, `b` (`[L, H]` each) and `o [L, 2H]` in `T`,
/// and the convolution's `workspace` in the accumulation type.
#[derive(Debug)]
pub struct Scratch<'s, B: Backend + ?Sized, T: Element> {
    /// Kernel.
    pub k: &'s mut B::Mem<T>,
    /// SSM output.
    pub y: &'s mut B::Mem<T>,
    /// Scratch `[L, H]`.
    pub a: &'s mut B::Mem<T>,
    /// Scratch `[L, H]`.
    pub b: &'s mut B::Mem<T>,
    /// Linear output `[L, 2H]`.
    pub o: &'s mut B::Mem<T>,
    /// Convolution workspace ([`Backend::ssm_conv_workspace_len`]).
    pub workspace: &'s mut B::Mem<T::Acc>,
}

fn view_mut<'a, B: Backend + ?Sized, T: Element>(
    arg: &'static str,
    mem: &'a mut B::Mem<T>,
    shape: &[usize],
) -> Result<ViewMut<'a, B, T>> {
    let l = Layout::contiguous(shape)?;
    if B::mem_len(mem) < l.numel() {
        return Err(Error::Shape {
            arg,
            axis: 0,
            got: B::mem_len(mem),
            expected: l.numel(),
            shape: seqcore::Dims::new(&[B::mem_len(mem)]),
        });
    }
    ViewMut::new(mem, l)
}

fn view<'a, B: Backend + ?Sized, T: Element>(
    mem: &'a B::Mem<T>,
    shape: &[usize],
) -> Result<View<'a, B, T>> {
    View::new(mem, Layout::contiguous(shape)?)
}

/// `dst[t] = src[L - 1 - t]` along the first axis of `[L, H]` views (host memory only).
fn reverse_time<B: Backend + ?Sized, T: Element>(
    backend: &B,
    src: View<'_, B, T>,
    dst: ViewMut<'_, B, T>,
) -> Result<()> {
    let op = "s4_layer (bidirectional)";
    let src = seqcore::portable::host_view(backend, op, src)?;
    let mut dst = seqcore::portable::host_view_mut(backend, op, dst)?;
    let [l, h] = *src.shape() else {
        return Err(Error::Rank {
            arg: "u",
            got: src.shape().len(),
            min: 2,
            max: 2,
        });
    };
    seqcore::check::shape("y", dst.layout(), &[l, h])?;
    let (sl, dl) = (*src.layout(), *dst.layout());
    let (ss, ds) = (sl.strides(), dl.strides());
    let (s0, s1) = (
        ss.first().copied().unwrap_or(0),
        ss.get(1).copied().unwrap_or(0),
    );
    let (d0, d1) = (
        ds.first().copied().unwrap_or(0),
        ds.get(1).copied().unwrap_or(0),
    );
    let sm = src.mem();
    let dm = dst.mem_mut();
    for t in 0..l {
        for c in 0..h {
            let v = sm
                .get(sl.offset() + (l - 1 - t) * s0 + c * s1)
                .copied()
                .ok_or(Error::OutOfBounds {
                    arg: "u",
                    end: sl.end(),
                    len: sm.len(),
                })?;
            let len = dm.len();
            let slot = dm
                .get_mut(dl.offset() + t * d0 + c * d1)
                .ok_or(Error::OutOfBounds {
                    arg: "y",
                    end: dl.end(),
                    len,
                })?;
            *slot = v;
        }
    }
    Ok(())
}

impl<'m, B: Backend + ?Sized, T: Element> S4Layer<'m, B, T> {
    /// A block from its parts: the forward model, an optional backward model (bidirectional), and
    /// for [`Output::GeluGlu`] the output weights `w [2H, H]` (row-major, as PyTorch's
    /// `nn.Linear(H, 2H).weight`) and `bias [2H]`, in backend memory (plain slices on a host
    /// backend).
    ///
    /// # Errors
    /// [`Error::Shape`] naming `backward`, `w` or `bias` when their sizes do not match the forward
    /// model; [`Error::Param`] naming `w` when [`Output::GeluGlu`] comes without weights.
    pub fn new(
        forward: S4d<'m, B, T::Acc>,
        backward: Option<S4d<'m, B, T::Acc>>,
        output: Output,
        weights: Option<Linear<'m, B, T>>,
    ) -> Result<Self> {
        let h = forward.channels();
        if let Some(bw) = &backward {
            if bw.channels() != h {
                return Err(Error::Shape {
                    arg: "backward",
                    axis: 0,
                    got: bw.channels(),
                    expected: h,
                    shape: seqcore::Dims::new(&[bw.channels(), bw.modes()]),
                });
            }
        }
        let linear = match (output, weights) {
            (Output::Gelu, _) => None,
            (Output::GeluGlu, None) => {
                return Err(Error::Param {
                    arg: "w",
                    reason: "the GLU output needs weights",
                });
            }
            (Output::GeluGlu, Some((w, bias))) => {
                for (arg, mem, want) in [("w", w, 2 * h * h), ("bias", bias, 2 * h)] {
                    if B::mem_len(mem) != want {
                        return Err(Error::Shape {
                            arg,
                            axis: 0,
                            got: B::mem_len(mem),
                            expected: want,
                            shape: seqcore::Dims::new(&[B::mem_len(mem)]),
                        });
                    }
                }
                Some((w, bias))
            }
        };
        Ok(S4Layer {
            forward,
            backward,
            linear,
        })
    }

    /// Lengths of the [`Scratch`] buffers for `l` tokens, in its field order.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `l`.
    pub fn scratch_lens(&self, backend: &B, l: usize) -> Result<[usize; 6]> {
        let h = self.forward.channels();
        let lh = l.checked_mul(h).ok_or(Error::Overflow { arg: "l" })?;
        Ok([
            lh,
            lh,
            lh,
            lh,
            2 * lh,
            backend.ssm_conv_workspace_len(h, l)?,
        ])
    }

    /// Runs the block on `u [L, H]` into `out [L, H]`.
    ///
    /// # Errors
    /// Shape errors naming `u`, `out` or a scratch buffer; [`Error::Unsupported`] for a
    /// bidirectional block on a backend without host memory.
    pub fn forward(
        &self,
        backend: &B,
        u: View<'_, B, T>,
        out: ViewMut<'_, B, T>,
        s: Scratch<'_, B, T>,
    ) -> Result<()> {
        let h = self.forward.channels();
        let [l, uh] = *u.shape() else {
            return Err(Error::Rank {
                arg: "u",
                got: u.shape().len(),
                min: 2,
                max: 2,
            });
        };
        if uh != h {
            return Err(Error::Shape {
                arg: "u",
                axis: 1,
                got: uh,
                expected: h,
                shape: u.layout().dims(),
            });
        }
        seqcore::check::shape("out", out.layout(), &[l, h])?;
        let wl = backend.ssm_conv_workspace_len(h, l)?;
        // Causal direction: y = k * u + D u.
        self.forward
            .kernel::<T>(backend, view_mut("k", &mut *s.k, &[h, l])?)?;
        self.forward.conv::<T>(
            backend,
            view(&*s.k, &[h, l])?,
            u,
            view_mut("y", &mut *s.y, &[l, h])?,
            view_mut("workspace", &mut *s.workspace, &[wl])?,
        )?;
        let mut sum: &mut B::Mem<T> = s.y;
        let spare_a: &mut B::Mem<T> = s.a;
        let mut spare_b: &mut B::Mem<T> = s.b;
        if let Some(bw) = &self.backward {
            // Anti-causal direction on the reversed input, kernel shifted by one lag.
            if l > 0 {
                let kb = view_mut::<B, T>("k", &mut *s.k, &[h, l])?;
                let host =
                    seqcore::portable::host_view_mut(backend, "s4_layer (bidirectional)", kb)?;
                let (mem, lay) = host.into_parts();
                for c in 0..h {
                    if let Some(v) = mem.get_mut(lay.offset() + c * l) {
                        *v = T::from_f64(0.0);
                    }
                }
                if l > 1 {
                    bw.kernel::<T>(
                        backend,
                        view_mut("k", &mut *s.k, &[h, l])?.narrow(1, 1, l - 1)?,
                    )?;
                }
            }
            reverse_time(backend, u, view_mut("a", &mut *spare_a, &[l, h])?)?;
            backend.ssm_conv::<T>(
                view(&*s.k, &[h, l])?,
                view(&*spare_a, &[l, h])?,
                None,
                view_mut("b", &mut *spare_b, &[l, h])?,
                view_mut("workspace", &mut *s.workspace, &[wl])?,
            )?;
            reverse_time(
                backend,
                view(&*spare_b, &[l, h])?,
                view_mut("a", &mut *spare_a, &[l, h])?,
            )?;
            backend.binary(
                Binary::Add,
                view(&*sum, &[l, h])?,
                view(&*spare_a, &[l, h])?,
                view_mut("b", &mut *spare_b, &[l, h])?,
            )?;
            core::mem::swap(&mut sum, &mut spare_b);
        }
        let Some((w, bias)) = self.linear else {
            return backend.unary(Unary::Gelu, view(&*sum, &[l, h])?, out);
        };
        backend.unary(
            Unary::Gelu,
            view(&*sum, &[l, h])?,
            view_mut("a", &mut *spare_a, &[l, h])?,
        )?;
        // o = bias (broadcast), then o += z W^T.
        backend.cast::<T, T>(
            view(bias, &[2 * h])?.expand(&[l, 2 * h])?,
            view_mut("o", &mut *s.o, &[l, 2 * h])?,
        )?;
        backend.gemm(
            1.0,
            view(&*spare_a, &[l, h])?,
            view(w, &[2 * h, h])?.transpose(0, 1)?,
            1.0,
            view_mut("o", &mut *s.o, &[l, 2 * h])?,
        )?;
        // GLU: first half times the sigmoid of the second.
        let o: &B::Mem<T> = s.o;
        backend.unary(
            Unary::Sigmoid,
            view(o, &[l, 2 * h])?.narrow(1, h, h)?,
            view_mut("b", &mut *spare_b, &[l, h])?,
        )?;
        backend.binary(
            Binary::Mul,
            view(o, &[l, 2 * h])?.narrow(1, 0, h)?,
            view(&*spare_b, &[l, h])?,
            out,
        )
    }
}
