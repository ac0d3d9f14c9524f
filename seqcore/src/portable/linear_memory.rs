//! Linear associative memories: the recurrent update of a matrix state `S [Dv, Dk]` per head, and
//! its chunkwise-parallel form.
//!
//! One token `t` of head `h` (with `a_t = exp(g_t)`, `g_t` the log-decay, 1 without decay, and
//! `beta_t` the write strength, 1 without one):
//!
//! - [`MemoryRule::Additive`], linear attention (Katharopoulos et al. 2020, Eq. 4-6) and decayed
//!   linear attention (RetNet, Sun et al. 2023, Eq. 1-4; LASP-2 Eq. 1):
//!   `S_t = a_t S_{t-1} + beta_t v_t phi(k_t)^T`.
//! - [`MemoryRule::Delta`], DeltaNet (Schlag et al. 2021; Yang et al. 2024, Eq. 1) and Gated
//!   DeltaNet (Yang, Kautz & Hatamizadeh 2025, Eq. 10):
//!   `S_t = a_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T`
//!   `= a_t S_{t-1} + beta_t (v_t - a_t S_{t-1} k_t) k_t^T`.
//!
//! The read is post-update: `o_t = S_t phi(q_t)`, with no scale (scale `q` beforehand for
//! `1/sqrt(Dk)`). `phi` is the [`FeatureMap`], applied to `q` and `k`.
//!
//! The chunkwise form splits the sequence into chunks of `C` tokens. Within a chunk, with
//! `G_s` the cumulative log-decay from the chunk start and `S_0` the state at the chunk start,
//! every token's write is `u_s k_s^T` with
//!
//! `u_s = beta_s v_s - [Delta] beta_s (exp(G_s) S_0 k_s + sum_{r<s} exp(G_s - G_r) (k_s.k_r) u_r)`,
//!
//! a unit lower-triangular system (the WY / UT-transform form of DeltaNet, Yang et al. 2024,
//! §3.2; Gated DeltaNet §3.3) solved by forward substitution. Then
//! `o_t = exp(G_t) S_0 q_t + sum_{s<=t} exp(G_t - G_s) (k_s.q_t) u_s` and
//! `S_C = exp(G_C) S_0 + sum_s exp(G_C - G_s) u_s k_s^T`. Decay ratios are always exponentials of
//! differences of cumulative logs, never quotients of products, so a log-decay of -20 per token
//! underflows to an exact 0 instead of giving `0/0`.

use crate::backend::Backend;
use crate::check;
use crate::element::{Element, Real};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::reference::Reference;
use crate::view::{View, ViewMut};

/// How a linear memory writes a token (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemoryRule {
    /// `S_t = a_t S_{t-1} + beta_t v_t k_t^T` (linear attention, decayed linear attention).
    Additive,
    /// `S_t = a_t S_{t-1} + beta_t (v_t - a_t S_{t-1} k_t) k_t^T` (DeltaNet, Gated DeltaNet):
    /// one step of gradient descent on `||S k_t - v_t||^2 / 2` taken at the decayed state.
    Delta,
}

/// The feature map `phi` applied to queries and keys before they reach the memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FeatureMap {
    /// `phi(x) = x`.
    Identity,
    /// `phi(x) = elu(x) + 1` (`x + 1` for `x > 0`, `exp(x)` otherwise): Katharopoulos et al.
    /// 2020, Eq. 7.
    Elu1,
}

impl FeatureMap {
    /// `phi(x)`.
    pub fn apply<R: Real>(self, x: R) -> R {
        match self {
            FeatureMap::Identity => x,
            FeatureMap::Elu1 => {
                if x > R::zero() {
                    x + R::one()
                } else {
                    x.exp()
                }
            }
        }
    }
}

/// What a linear-memory kernel computes: the write rule and the feature map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearMemorySpec {
    /// The write rule.
    pub rule: MemoryRule,
    /// Applied to `q` and `k`.
    pub feature_map: FeatureMap,
}

/// The per-token inputs of a linear memory, token-major: `q, k [L, H, Dk]`, `v [L, H, Dv]`,
/// optional `beta [L, H]` (write strength; 1 when absent) and `log_decay [L, H]` (`g_t`, the
/// decay being `exp(g_t)`; no decay when absent).
#[derive(Debug)]
pub struct MemoryInputs<'a, B: Backend + ?Sized, T: Element> {
    /// Queries `[L, H, Dk]`.
    pub q: View<'a, B, T>,
    /// Keys `[L, H, Dk]`.
    pub k: View<'a, B, T>,
    /// Values `[L, H, Dv]`.
    pub v: View<'a, B, T>,
    /// Write strengths `[L, H]`, or 1.
    pub beta: Option<View<'a, B, T>>,
    /// Log-decays `[L, H]`, or 0.
    pub log_decay: Option<View<'a, B, T>>,
}

impl<B: Backend + ?Sized, T: Element> Clone for MemoryInputs<'_, B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized, T: Element> Copy for MemoryInputs<'_, B, T> {}

/// The extents of a linear-memory call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryDims {
    /// Tokens.
    pub len: usize,
    /// Heads.
    pub heads: usize,
    /// Key (and query) features per head.
    pub dk: usize,
    /// Value features per head.
    pub dv: usize,
}

/// Checks the shapes of a linear-memory call: `q, k [L, H, Dk]`, `v [L, H, Dv]`,
/// `beta, log_decay [L, H]`, `state [H, Dv, Dk]`, `o [L, H, Dv]`.
///
/// # Errors
/// [`Error::Rank`] or [`Error::Shape`] naming the argument at fault.
pub fn check_dims(
    q: &Layout,
    k: &Layout,
    v: &Layout,
    beta: Option<&Layout>,
    log_decay: Option<&Layout>,
    state: &Layout,
    o: Option<&Layout>,
) -> Result<MemoryDims> {
    let [len, heads, dk] = *k.shape() else {
        return Err(Error::Rank {
            arg: "k",
            got: k.rank(),
            min: 3,
            max: 3,
        });
    };
    check::shape("q", q, &[len, heads, dk])?;
    let dv = match *v.shape() {
        [_, _, dv] => dv,
        _ => {
            return Err(Error::Rank {
                arg: "v",
                got: v.rank(),
                min: 3,
                max: 3,
            });
        }
    };
    check::shape("v", v, &[len, heads, dv])?;
    if let Some(b) = beta {
        check::shape("beta", b, &[len, heads])?;
    }
    if let Some(g) = log_decay {
        check::shape("log_decay", g, &[len, heads])?;
    }
    check::shape("state", state, &[heads, dv, dk])?;
    if let Some(o) = o {
        check::shape("o", o, &[len, heads, dv])?;
    }
    Ok(MemoryDims { len, heads, dk, dv })
}

/// Elements of accumulation-type workspace that [`chunkwise`] needs for chunks of `chunk` tokens
/// and `dv` value features: `chunk * (dv + 2)`.
///
/// # Errors
/// [`Error::Param`] naming `chunk` when it is 0; [`Error::Overflow`].
pub fn chunkwise_workspace_len(chunk: usize, dv: usize) -> Result<usize> {
    if chunk == 0 {
        return Err(Error::Param {
            arg: "chunk",
            reason: "must be at least 1",
        });
    }
    dv.checked_add(2)
        .and_then(|w| w.checked_mul(chunk))
        .ok_or(Error::Overflow { arg: "chunk" })
}

fn oob(len: usize, i: usize) -> Error {
    Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len,
    }
}

/// A read-only rank-<=3 accessor over a host view (strides, offset).
#[derive(Clone, Copy)]
struct Rd<'a, T> {
    s: &'a [T],
    off: usize,
    st: [usize; 3],
}

impl<'a, T: Element> Rd<'a, T> {
    fn new(v: &View<'a, Reference, T>) -> Self {
        let mut st = [0; 3];
        for (d, &s) in st.iter_mut().zip(v.layout().strides()) {
            *d = s;
        }
        Rd {
            s: v.mem(),
            off: v.layout().offset(),
            st,
        }
    }

    /// Element `[a, b, c]` (indices in range: checked shapes) in the accumulation type.
    fn at(&self, a: usize, b: usize, c: usize) -> Result<T::Acc> {
        let [s0, s1, s2] = self.st;
        let i = self.off + a * s0 + b * s1 + c * s2;
        self.s
            .get(i)
            .map(|x| x.to_acc())
            .ok_or(oob(self.s.len(), i))
    }
}

/// A writable accessor (see [`Rd`]).
struct Wr<'a, T> {
    s: &'a mut [T],
    off: usize,
    st: [usize; 3],
}

impl<'a, T: Copy> Wr<'a, T> {
    fn new<U: crate::Scalar>(v: ViewMut<'a, Reference, U>) -> Wr<'a, U> {
        let (mem, layout) = v.into_parts();
        let mut st = [0; 3];
        for (d, &s) in st.iter_mut().zip(layout.strides()) {
            *d = s;
        }
        Wr {
            s: mem,
            off: layout.offset(),
            st,
        }
    }

    fn slot(&mut self, a: usize, b: usize, c: usize) -> Result<&mut T> {
        let [s0, s1, s2] = self.st;
        let i = self.off + a * s0 + b * s1 + c * s2;
        let len = self.s.len();
        self.s.get_mut(i).ok_or(oob(len, i))
    }

    fn get(&mut self, a: usize, b: usize, c: usize) -> Result<T> {
        self.slot(a, b, c).map(|x| *x)
    }

    fn set(&mut self, a: usize, b: usize, c: usize, x: T) -> Result<()> {
        *self.slot(a, b, c)? = x;
        Ok(())
    }
}

struct Host<'a, T: Element> {
    q: Rd<'a, T>,
    k: Rd<'a, T>,
    v: Rd<'a, T>,
    beta: Option<Rd<'a, T>>,
    g: Option<Rd<'a, T>>,
    phi: FeatureMap,
}

impl<T: Element> Host<'_, T> {
    fn q(&self, t: usize, h: usize, j: usize) -> Result<T::Acc> {
        Ok(self.phi.apply(self.q.at(t, h, j)?))
    }
    fn k(&self, t: usize, h: usize, j: usize) -> Result<T::Acc> {
        Ok(self.phi.apply(self.k.at(t, h, j)?))
    }
    fn beta(&self, t: usize, h: usize) -> Result<T::Acc> {
        self.beta
            .as_ref()
            .map_or(Ok(T::Acc::one()), |b| b.at(t, h, 0))
    }
    fn g(&self, t: usize, h: usize) -> Result<T::Acc> {
        self.g
            .as_ref()
            .map_or(Ok(T::Acc::zero()), |g| g.at(t, h, 0))
    }
}

fn host_inputs<'a, B: Backend + ?Sized, T: Element>(
    b: &B,
    op: &'static str,
    spec: LinearMemorySpec,
    x: MemoryInputs<'a, B, T>,
) -> Result<Host<'a, T>> {
    let hv = |v| super::host_view(b, op, v);
    let q = hv(x.q)?;
    let k = hv(x.k)?;
    let v = hv(x.v)?;
    let beta = x.beta.map(hv).transpose()?;
    let g = x.log_decay.map(hv).transpose()?;
    Ok(Host {
        q: Rd::new(&q),
        k: Rd::new(&k),
        v: Rd::new(&v),
        beta: beta.as_ref().map(Rd::new),
        g: g.as_ref().map(Rd::new),
        phi: spec.feature_map,
    })
}

fn layouts<B: Backend + ?Sized, T: Element>(
    x: &MemoryInputs<'_, B, T>,
    state: &Layout,
    o: Option<&Layout>,
) -> Result<MemoryDims> {
    check_dims(
        x.q.layout(),
        x.k.layout(),
        x.v.layout(),
        x.beta.as_ref().map(View::layout),
        x.log_decay.as_ref().map(View::layout),
        state,
        o,
    )
}

/// The portable body of [`Backend::linear_memory_recurrent`]: token by token, head by head, row
/// by row of the state (each row of `S` is updated independently, so no scratch is needed).
///
/// # Errors
/// Shape errors from [`check_dims`]; [`Error::Unsupported`] when `B`'s memory is not on the host.
pub fn recurrent<B: Backend + ?Sized, T: Element>(
    b: &B,
    spec: LinearMemorySpec,
    x: MemoryInputs<'_, B, T>,
    state: ViewMut<'_, B, T::Acc>,
    o: Option<ViewMut<'_, B, T>>,
) -> Result<()> {
    const OP: &str = "linear_memory_recurrent";
    let d = layouts(&x, state.layout(), o.as_ref().map(ViewMut::layout))?;
    let inp = host_inputs(b, OP, spec, x)?;
    let mut s = Wr::<T::Acc>::new(super::host_view_mut(b, OP, state)?);
    let mut o = match o {
        Some(o) => Some(Wr::<T>::new(super::host_view_mut(b, OP, o)?)),
        None => None,
    };
    let delta = spec.rule == MemoryRule::Delta;
    for t in 0..d.len {
        for h in 0..d.heads {
            let a = inp.g(t, h)?.exp();
            let beta = inp.beta(t, h)?;
            for i in 0..d.dv {
                let mut u = inp.v.at(t, h, i)?;
                if delta {
                    let mut sk = T::Acc::zero();
                    for j in 0..d.dk {
                        sk += s.get(h, i, j)? * inp.k(t, h, j)?;
                    }
                    u = u - a * sk;
                }
                let u = beta * u;
                let mut read = T::Acc::zero();
                for j in 0..d.dk {
                    let kj = inp.k(t, h, j)?;
                    let sij = a * s.get(h, i, j)? + u * kj;
                    s.set(h, i, j, sij)?;
                    read += sij * inp.q(t, h, j)?;
                }
                if let Some(o) = o.as_mut() {
                    o.set(t, h, i, T::from_acc(read))?;
                }
            }
        }
    }
    Ok(())
}

/// The portable body of [`Backend::linear_memory_chunkwise`] (see the [module docs](self)).
///
/// # Errors
/// [`Error::Param`] for `chunk` 0; shape errors from [`check_dims`]; [`Error::Capacity`] naming
/// `workspace` when it holds fewer than [`chunkwise_workspace_len`] elements;
/// [`Error::Unsupported`] when `B`'s memory is not on the host.
pub fn chunkwise<B: Backend + ?Sized, T: Element>(
    b: &B,
    spec: LinearMemorySpec,
    chunk: usize,
    x: MemoryInputs<'_, B, T>,
    state: ViewMut<'_, B, T::Acc>,
    o: Option<ViewMut<'_, B, T>>,
    workspace: ViewMut<'_, B, T::Acc>,
) -> Result<()> {
    const OP: &str = "linear_memory_chunkwise";
    let need = chunkwise_workspace_len(chunk, 0)?;
    let d = layouts(&x, state.layout(), o.as_ref().map(ViewMut::layout))?;
    let need = chunkwise_workspace_len(chunk, d.dv).unwrap_or(need);
    if workspace.layout().numel() < need {
        return Err(Error::Capacity {
            arg: "workspace",
            needed: need,
            capacity: workspace.layout().numel(),
        });
    }
    let inp = host_inputs(b, OP, spec, x)?;
    let mut s = Wr::<T::Acc>::new(super::host_view_mut(b, OP, state)?);
    let mut o = match o {
        Some(o) => Some(Wr::<T>::new(super::host_view_mut(b, OP, o)?)),
        None => None,
    };
    let mut w = Scratch::new(super::host_view_mut(b, OP, workspace)?, chunk, d.dv)?;
    let delta = spec.rule == MemoryRule::Delta;
    let (dk, dv) = (d.dk, d.dv);
    for h in 0..d.heads {
        let mut c0 = 0;
        while c0 < d.len {
            let n = chunk.min(d.len - c0);
            // Cumulative log-decay within the chunk.
            let mut acc = T::Acc::zero();
            for s_ in 0..n {
                acc += inp.g(c0 + s_, h)?;
                w.set_g(s_, acc)?;
            }
            // u_s by forward substitution.
            for si in 0..n {
                let t = c0 + si;
                let beta = inp.beta(t, h)?;
                let gs = w.g(si)?;
                if delta {
                    for r in 0..si {
                        let mut kk = T::Acc::zero();
                        for j in 0..dk {
                            kk += inp.k(t, h, j)? * inp.k(c0 + r, h, j)?;
                        }
                        let coef = beta * (gs - w.g(r)?).exp() * kk;
                        w.set_w(r, coef)?;
                    }
                }
                let eg = gs.exp();
                for i in 0..dv {
                    let mut u = beta * inp.v.at(t, h, i)?;
                    if delta {
                        let mut sk = T::Acc::zero();
                        for j in 0..dk {
                            sk += s.get(h, i, j)? * inp.k(t, h, j)?;
                        }
                        u = u - beta * eg * sk;
                        for r in 0..si {
                            u = u - w.w(r)? * w.u(r, i)?;
                        }
                    }
                    w.set_u(si, i, u)?;
                }
            }
            // Outputs, from the chunk-start state and the chunk's writes.
            if let Some(o) = o.as_mut() {
                for ti in 0..n {
                    let t = c0 + ti;
                    let gt = w.g(ti)?;
                    for si in 0..=ti {
                        let mut kq = T::Acc::zero();
                        for j in 0..dk {
                            kq += inp.k(c0 + si, h, j)? * inp.q(t, h, j)?;
                        }
                        let e = (gt - w.g(si)?).exp();
                        w.set_w(si, e * kq)?;
                    }
                    let eg = gt.exp();
                    for i in 0..dv {
                        let mut sq = T::Acc::zero();
                        for j in 0..dk {
                            sq += s.get(h, i, j)? * inp.q(t, h, j)?;
                        }
                        let mut y = eg * sq;
                        for si in 0..=ti {
                            y += w.w(si)? * w.u(si, i)?;
                        }
                        o.set(t, h, i, T::from_acc(y))?;
                    }
                }
            }
            // The state at the chunk end.
            let gn = if n > 0 { w.g(n - 1)? } else { T::Acc::zero() };
            for si in 0..n {
                let e = (gn - w.g(si)?).exp();
                w.set_w(si, e)?;
            }
            let en = gn.exp();
            for i in 0..dv {
                for j in 0..dk {
                    let mut y = en * s.get(h, i, j)?;
                    for si in 0..n {
                        y += w.w(si)? * w.u(si, i)? * inp.k(c0 + si, h, j)?;
                    }
                    s.set(h, i, j, y)?;
                }
            }
            c0 += n;
        }
    }
    Ok(())
}

/// The chunkwise workspace: `[G (chunk) | w (chunk) | U (chunk x Dv)]` over a rank-1 view.
struct Scratch<'a, R> {
    s: &'a mut [R],
    off: usize,
    stride: usize,
    chunk: usize,
    dv: usize,
}

impl<'a, R: Real> Scratch<'a, R> {
    fn new(v: ViewMut<'a, Reference, R>, chunk: usize, dv: usize) -> Result<Self> {
        let (s, l) = v.into_parts();
        let stride = match *l.strides() {
            [st] => st,
            _ => {
                return Err(Error::Rank {
                    arg: "workspace",
                    got: l.rank(),
                    min: 1,
                    max: 1,
                });
            }
        };
        Ok(Scratch {
            s,
            off: l.offset(),
            stride,
            chunk,
            dv,
        })
    }
    fn slot(&mut self, i: usize) -> Result<&mut R> {
        let a = self.off + i * self.stride;
        let len = self.s.len();
        self.s.get_mut(a).ok_or(oob(len, a))
    }
    fn read(&self, i: usize) -> Result<R> {
        let a = self.off + i * self.stride;
        self.s.get(a).copied().ok_or(oob(self.s.len(), a))
    }
    fn g(&self, s: usize) -> Result<R> {
        self.read(s)
    }
    fn set_g(&mut self, s: usize, x: R) -> Result<()> {
        *self.slot(s)? = x;
        Ok(())
    }
    fn w(&self, s: usize) -> Result<R> {
        self.read(self.chunk + s)
    }
    fn set_w(&mut self, s: usize, x: R) -> Result<()> {
        let c = self.chunk;
        *self.slot(c + s)? = x;
        Ok(())
    }
    fn u(&self, s: usize, i: usize) -> Result<R> {
        self.read(2 * self.chunk + s * self.dv + i)
    }
    fn set_u(&mut self, s: usize, i: usize, x: R) -> Result<()> {
        let (c, dv) = (self.chunk, self.dv);
        *self.slot(2 * c + s * dv + i)? = x;
        Ok(())
    }
}
