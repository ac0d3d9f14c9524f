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

impl<B: Backend + ?Sized, T: Element> MemoryInputs<'_, B, T> {
    /// The extents of a call on these inputs with `state` and output `o` ([`check_dims`]).
    ///
    /// # Errors
    /// As [`check_dims`].
    pub fn dims(&self, state: &Layout, o: Option<&Layout>) -> Result<MemoryDims> {
        check_dims(
            self.q.layout(),
            self.k.layout(),
            self.v.layout(),
            self.beta.as_ref().map(View::layout),
            self.log_decay.as_ref().map(View::layout),
            state,
            o,
        )
    }
}

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

/// Elements of accumulation-type workspace that [`chunkwise`] needs for chunks of `chunk` tokens,
/// `dk` key and `dv` value features: `chunk * (2 + dv + 2 dk) + dv * (dk + 1)`.
///
/// # Errors
/// [`Error::Param`] naming `chunk` when it is 0; [`Error::Overflow`].
pub fn chunkwise_workspace_len(chunk: usize, dk: usize, dv: usize) -> Result<usize> {
    if chunk == 0 {
        return Err(Error::Param {
            arg: "chunk",
            reason: "must be at least 1",
        });
    }
    let ov = Error::Overflow { arg: "chunk" };
    let per = dk
        .checked_mul(2)
        .and_then(|x| x.checked_add(dv))
        .and_then(|x| x.checked_add(2))
        .ok_or(ov)?;
    chunk
        .checked_mul(per)
        .and_then(|x| x.checked_add(dv.checked_mul(dk.checked_add(1)?)?))
        .ok_or(ov)
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
    let d = x.dims(state.layout(), o.as_ref().map(ViewMut::layout))?;
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

/// The checks of [`chunkwise`], in its order: `chunk`, the shapes, then the workspace. Returns the
/// extents and the workspace elements the call uses.
///
/// # Errors
/// As [`chunkwise`] (all but [`Error::Unsupported`]).
pub fn check_chunkwise<B: Backend + ?Sized, T: Element>(
    chunk: usize,
    x: &MemoryInputs<'_, B, T>,
    state: &Layout,
    o: Option<&Layout>,
    workspace: &Layout,
) -> Result<(MemoryDims, usize)> {
    chunkwise_workspace_len(chunk, 0, 0)?;
    let d = x.dims(state, o)?;
    let need = chunkwise_workspace_len(chunk, d.dk, d.dv)?;
    if workspace.rank() != 1 || (workspace.numel() > 1 && workspace.strides() != [1]) {
        return Err(Error::Param {
            arg: "workspace",
            reason: "must be a contiguous rank-1 view",
        });
    }
    if workspace.numel() < need {
        return Err(Error::Capacity {
            arg: "workspace",
            needed: need,
            capacity: workspace.numel(),
        });
    }
    Ok((d, need))
}

/// The portable body of [`Backend::linear_memory_chunkwise`] (see the [module docs](self)).
///
/// The workspace holds, per chunk, the cumulative log-decays, one row of coefficients, the writes
/// `U [C, Dv]`, the chunk's feature-mapped keys and queries `[C, Dk]` each, one output row `[Dv]`
/// and one head's state `[Dv, Dk]`, all in the accumulation type, so the inner loops run over contiguous slices.
///
/// # Errors
/// [`Error::Param`] for `chunk` 0, or a `workspace` that is not a contiguous rank-1 view; shape
/// errors from [`check_dims`]; [`Error::Capacity`] naming `workspace` when it holds fewer than
/// [`chunkwise_workspace_len`] elements; [`Error::Unsupported`] when `B`'s memory is not on the
/// host.
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
    let (d, need) = check_chunkwise(
        chunk,
        &x,
        state.layout(),
        o.as_ref().map(ViewMut::layout),
        workspace.layout(),
    )?;
    let wl = *workspace.layout();
    let inp = host_inputs(b, OP, spec, x)?;
    let mut s = Wr::<T::Acc>::new(super::host_view_mut(b, OP, state)?);
    let mut o = match o {
        Some(o) => Some(Wr::<T>::new(super::host_view_mut(b, OP, o)?)),
        None => None,
    };
    let (wmem, _) = super::host_view_mut(b, OP, workspace)?.into_parts();
    let wlen = wmem.len();
    let ws = wmem
        .get_mut(wl.offset()..wl.offset() + need)
        .ok_or(oob(wlen, wl.offset() + need))?;
    let (dk, dv) = (d.dk, d.dv);
    let (g, rest) = ws.split_at_mut(chunk);
    let (wrow, rest) = rest.split_at_mut(chunk);
    let (u, rest) = rest.split_at_mut(chunk * dv);
    let (kc, rest) = rest.split_at_mut(chunk * dk);
    let (qc, rest) = rest.split_at_mut(chunk * dk);
    let (yrow, sb) = rest.split_at_mut(dv);
    let delta = spec.rule == MemoryRule::Delta;
    let zero = T::Acc::zero();
    for h in 0..d.heads {
        // This head's state, contiguous.
        for (i, row) in sb.chunks_mut(dk.max(1)).enumerate().take(dv) {
            for (j, x) in row.iter_mut().enumerate() {
                *x = s.get(h, i, j)?;
            }
        }
        let mut c0 = 0;
        while c0 < d.len {
            let n = chunk.min(d.len - c0);
            // Cumulative log-decay, feature-mapped keys and queries of the chunk.
            let mut acc = zero;
            for (si, gs) in g.iter_mut().enumerate().take(n) {
                acc += inp.g(c0 + si, h)?;
                *gs = acc;
            }
            for si in 0..n {
                let (kr, qr) = (row_mut(kc, si, dk)?, row_mut(qc, si, dk)?);
                for (j, (kx, qx)) in kr.iter_mut().zip(qr.iter_mut()).enumerate() {
                    *kx = inp.k(c0 + si, h, j)?;
                    *qx = inp.q(c0 + si, h, j)?;
                }
            }
            // u_s by forward substitution (the identity system for the additive rule).
            for si in 0..n {
                let t = c0 + si;
                let beta = inp.beta(t, h)?;
                let gs = at(g, si)?;
                let ks = row(kc, si, dk)?;
                if delta {
                    for (r, wr) in wrow.iter_mut().enumerate().take(si) {
                        *wr = beta * (gs - at(g, r)?).exp() * dot(ks, row(kc, r, dk)?);
                    }
                }
                let eg = gs.exp();
                let (prev, cur) = u.split_at_mut(si * dv);
                let cur = cur.get_mut(..dv).ok_or(oob(0, dv))?;
                for (i, ui) in cur.iter_mut().enumerate() {
                    let mut y = beta * inp.v.at(t, h, i)?;
                    if delta {
                        y = y - beta * eg * dot(row(sb, i, dk)?, ks);
                    }
                    *ui = y;
                }
                if delta {
                    for (r, &wr) in wrow.iter().enumerate().take(si) {
                        for (ui, &ur) in cur.iter_mut().zip(row(prev, r, dv)?) {
                            *ui = *ui - wr * ur;
                        }
                    }
                }
            }
            // Outputs, from the chunk-start state and the chunk's writes.
            if let Some(o) = o.as_mut() {
                for ti in 0..n {
                    let gt = at(g, ti)?;
                    let qt = row(qc, ti, dk)?;
                    for (si, wr) in wrow.iter_mut().enumerate().take(ti + 1) {
                        *wr = (gt - at(g, si)?).exp() * dot(row(kc, si, dk)?, qt);
                    }
                    let eg = gt.exp();
                    for (i, y) in yrow.iter_mut().enumerate() {
                        *y = eg * dot(row(sb, i, dk)?, qt);
                    }
                    for (si, &wr) in wrow.iter().enumerate().take(ti + 1) {
                        for (y, &us) in yrow.iter_mut().zip(row(u, si, dv)?) {
                            *y += wr * us;
                        }
                    }
                    for (i, &y) in yrow.iter().enumerate() {
                        o.set(c0 + ti, h, i, T::from_acc(y))?;
                    }
                }
            }
            // The state at the chunk end.
            let gn = if n > 0 { at(g, n - 1)? } else { zero };
            for (si, wr) in wrow.iter_mut().enumerate().take(n) {
                *wr = (gn - at(g, si)?).exp();
            }
            let en = gn.exp();
            for i in 0..dv {
                let srow = row_mut(sb, i, dk)?;
                srow.iter_mut().for_each(|x| *x *= en);
                for (si, &wr) in wrow.iter().enumerate().take(n) {
                    let coef = wr * at(u, si * dv + i)?;
                    for (x, &kx) in srow.iter_mut().zip(row(kc, si, dk)?) {
                        *x += coef * kx;
                    }
                }
            }
            c0 += n;
        }
        for (i, r) in sb.chunks(dk.max(1)).enumerate().take(dv) {
            for (j, &x) in r.iter().enumerate() {
                s.set(h, i, j, x)?;
            }
        }
    }
    Ok(())
}

fn at<R: Copy>(x: &[R], i: usize) -> Result<R> {
    x.get(i).copied().ok_or(oob(x.len(), i))
}

fn row<R>(x: &[R], r: usize, d: usize) -> Result<&[R]> {
    let len = x.len();
    x.get(r * d..(r + 1) * d).ok_or(oob(len, (r + 1) * d))
}

fn row_mut<R>(x: &mut [R], r: usize, d: usize) -> Result<&mut [R]> {
    let len = x.len();
    x.get_mut(r * d..(r + 1) * d).ok_or(oob(len, (r + 1) * d))
}

fn dot<R: Real>(a: &[R], b: &[R]) -> R {
    let mut s = R::zero();
    for (&x, &y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}
