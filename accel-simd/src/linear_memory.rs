//! Linear-memory updates: linear attention (Katharopoulos et al. 2020, Eq. 4-6), RetNet decay
//! (Sun et al. 2023, Eq. 1-4), DeltaNet (Schlag et al. 2021; Yang et al. 2024, Eq. 1) and Gated
//! DeltaNet (Yang, Kautz & Hatamizadeh 2025, Eq. 10), recurrent and chunkwise (WY form).
//!
//! Semantics, checks and errors are those of `seqcore::portable::linear_memory`. The recurrent
//! update is a sequence of rank-1 row operations on the state `S [Dv, Dk]`: for each row `i`,
//! `u_i = beta (v_i - [Delta] a S_i . k)`, `S_i <- a S_i + u_i k`, `o_i = S_i . q`, each a
//! vector `mul_add` sweep over the contiguous row (the [`vec`] helpers). The feature-mapped `k`,
//! `q` and the row of `v` of a token are widened once into stack buffers of the accumulation type
//! ([`MAX_FEATURES`] each); wider heads, or a state whose rows are not contiguous, take the
//! portable kernel.

pub(crate) mod chunk;
pub(crate) mod vec;

use seqcore::portable::linear_memory::{FeatureMap, LinearMemorySpec, MemoryInputs, MemoryRule};
use seqcore::{Backend, DType, Element, Error, Layout, Real, Reference, Result, View, ViewMut};

use crate::lanes::{Lanes, widen};

/// Features per head (`Dk` and `Dv`) the vector path holds in stack buffers of the accumulation
/// type; wider heads take the portable kernel.
pub(crate) const MAX_FEATURES: usize = 512;

/// The recurrent update (see the module docs): the portable kernel's semantics, vectorised over
/// the rows of the state.
pub(crate) fn recurrent<T: Element>(
    spec: LinearMemorySpec,
    inputs: MemoryInputs<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    o: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    let d = inputs.dims(state.layout(), o.as_ref().map(ViewMut::layout))?;
    // An empty extent has nothing to vectorise; the portable kernel handles its odd layouts.
    let empty = d.len == 0 || d.heads == 0 || d.dk == 0 || d.dv == 0;
    let fast =
        !empty && d.dk <= MAX_FEATURES && d.dv <= MAX_FEATURES && rows_contiguous(state.layout());
    match <T::Acc as Element>::DTYPE {
        DType::F32 if fast => recurrent_lanes::<T, f32>(spec, d, inputs, state, o),
        DType::F64 if fast => recurrent_lanes::<T, f64>(spec, d, inputs, state, o),
        _ => Reference.linear_memory_recurrent(spec, inputs, state, o),
    }
}

/// Whether the last axis of a rank-3 layout has unit stride (or at most one element).
pub(crate) fn rows_contiguous(l: &Layout) -> bool {
    match (l.shape().last(), l.strides().last()) {
        (Some(&n), Some(&s)) => n <= 1 || s == 1,
        _ => false,
    }
}

/// `x` (an accumulation-type value of `T`) as `A`, the same type in the vector path.
#[inline(always)]
pub(crate) fn acc_as<T: Element, A: Lanes>(x: T::Acc) -> A {
    bytemuck::try_cast::<T::Acc, A>(x).unwrap_or_else(|_| A::nan())
}

/// `x` as `T::Acc` (the inverse of [`acc_as`]).
#[inline(always)]
pub(crate) fn as_acc<T: Element, A: Lanes>(x: A) -> T::Acc {
    bytemuck::try_cast::<A, T::Acc>(x).unwrap_or_else(|_| T::Acc::nan())
}

/// A read-only strided accessor over a host view of rank <= 3.
#[derive(Clone, Copy)]
pub(crate) struct Rd<'a, T> {
    pub(crate) s: &'a [T],
    pub(crate) off: usize,
    pub(crate) st: [usize; 3],
}

impl<'a, T: Element> Rd<'a, T> {
    pub(crate) fn new(v: &View<'a, Reference, T>) -> Self {
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

    /// Element `[a, b, c]` widened to `A`.
    #[inline]
    pub(crate) fn at<A: Lanes>(&self, a: usize, b: usize, c: usize) -> Result<A> {
        let [s0, s1, s2] = self.st;
        let i = self.off + a * s0 + b * s1 + c * s2;
        self.s
            .get(i)
            .map(|x| acc_as::<T, A>(x.to_acc()))
            .ok_or(oob(self.s.len(), i))
    }

    /// Row `[a, b, ..n]` widened into `dst` (`n = dst.len()`), then mapped by `phi`.
    pub(crate) fn row<A: Lanes>(
        &self,
        a: usize,
        b: usize,
        dst: &mut [A],
        phi: FeatureMap,
    ) -> Result<()> {
        let [s0, s1, s2] = self.st;
        let start = self.off + a * s0 + b * s1;
        let n = dst.len();
        match (s2 == 1 || n <= 1, self.s.get(start..start + n)) {
            (true, Some(src)) => match bytemuck::try_cast_slice_mut::<A, T::Acc>(dst) {
                Ok(d) => widen::<T>(src, d),
                Err(_) => return Err(oob(0, 0)),
            },
            _ => {
                for (j, x) in dst.iter_mut().enumerate() {
                    *x = self.at(a, b, j)?;
                }
            }
        }
        if phi == FeatureMap::Elu1 {
            for x in dst.iter_mut() {
                *x = phi.apply(*x);
            }
        }
        Ok(())
    }
}

/// The portable kernel's out-of-bounds error (never reached after the shape checks).
pub(crate) fn oob(len: usize, i: usize) -> Error {
    Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len,
    }
}

/// The per-token inputs as accessors.
pub(crate) struct Inputs<'a, T> {
    pub(crate) q: Rd<'a, T>,
    pub(crate) k: Rd<'a, T>,
    pub(crate) v: Rd<'a, T>,
    pub(crate) beta: Option<Rd<'a, T>>,
    pub(crate) g: Option<Rd<'a, T>>,
}

impl<'a, T: Element> Inputs<'a, T> {
    pub(crate) fn new(x: &MemoryInputs<'a, Reference, T>) -> Self {
        Inputs {
            q: Rd::new(&x.q),
            k: Rd::new(&x.k),
            v: Rd::new(&x.v),
            beta: x.beta.as_ref().map(Rd::new),
            g: x.log_decay.as_ref().map(Rd::new),
        }
    }

    /// `beta_t` of head `h` (1 without one).
    #[inline]
    pub(crate) fn beta<A: Lanes>(&self, t: usize, h: usize) -> Result<A> {
        self.beta.as_ref().map_or(Ok(A::one()), |b| b.at(t, h, 0))
    }

    /// `g_t` of head `h` (0 without decay).
    #[inline]
    pub(crate) fn g<A: Lanes>(&self, t: usize, h: usize) -> Result<A> {
        self.g.as_ref().map_or(Ok(A::zero()), |g| g.at(t, h, 0))
    }
}

/// Writes `src` into row `[a, b, ..]` of a rank-3 output view of `T`, rounding once.
pub(crate) fn store_row<T: Element, A: Lanes>(
    o: &mut ViewMut<'_, Reference, T>,
    a: usize,
    b: usize,
    src: &[A],
) -> Result<()> {
    let l = *o.layout();
    let st = l.strides();
    let (s0, s1, s2) = (
        st.first().copied().unwrap_or(0),
        st.get(1).copied().unwrap_or(0),
        st.get(2).copied().unwrap_or(0),
    );
    let start = l.offset() + a * s0 + b * s1;
    let n = src.len();
    let mem = o.mem_mut();
    let len = mem.len();
    let src_acc = bytemuck::try_cast_slice::<A, T::Acc>(src).map_err(|_| oob(0, 0))?;
    if s2 == 1 || n <= 1 {
        let dst = mem.get_mut(start..start + n).ok_or(oob(len, start + n))?;
        crate::lanes::narrow::<T>(src_acc, dst);
    } else {
        for (j, &x) in src_acc.iter().enumerate() {
            let i = start + j * s2;
            *mem.get_mut(i).ok_or(oob(len, i))? = T::from_acc(x);
        }
    }
    Ok(())
}

fn recurrent_lanes<T: Element, A: Lanes>(
    spec: LinearMemorySpec,
    d: seqcore::portable::linear_memory::MemoryDims,
    x: MemoryInputs<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    mut o: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    let inp = Inputs::new(&x);
    let (smem, sl) = state.into_parts();
    let smem = bytemuck::try_cast_slice_mut::<T::Acc, A>(smem).map_err(|_| oob(0, 0))?;
    let (s0, s1) = (
        sl.strides().first().copied().unwrap_or(0),
        sl.strides().get(1).copied().unwrap_or(0),
    );
    let (dk, dv) = (d.dk, d.dv);
    let mut kbuf = [A::zero(); MAX_FEATURES];
    let mut qbuf = [A::zero(); MAX_FEATURES];
    let mut vbuf = [A::zero(); MAX_FEATURES];
    let kb = kbuf.get_mut(..dk).ok_or(oob(MAX_FEATURES, dk))?;
    let qb = qbuf.get_mut(..dk).ok_or(oob(MAX_FEATURES, dk))?;
    let vb = vbuf.get_mut(..dv).ok_or(oob(MAX_FEATURES, dv))?;
    let delta = spec.rule == MemoryRule::Delta;
    let phi = spec.feature_map;
    let slen = smem.len();
    for t in 0..d.len {
        for h in 0..d.heads {
            let a = inp.g::<A>(t, h)?.exp();
            let beta = inp.beta::<A>(t, h)?;
            inp.k.row(t, h, kb, phi)?;
            inp.q.row(t, h, qb, phi)?;
            inp.v.row(t, h, vb, FeatureMap::Identity)?;
            for (i, vi) in vb.iter_mut().enumerate() {
                let start = sl.offset() + h * s0 + i * s1;
                let srow = smem
                    .get_mut(start..start + dk)
                    .ok_or(oob(slen, start + dk))?;
                let mut u = *vi;
                if delta {
                    u = u - a * vec::dot(srow, kb);
                }
                // The read of row i replaces v_i in the buffer (written to `o` below).
                *vi = vec::update_read(srow, a, beta * u, kb, qb);
            }
            if let Some(o) = o.as_mut() {
                store_row::<T, A>(o, t, h, vb)?;
            }
        }
    }
    Ok(())
}

/// The chunkwise workspace length (the portable kernel's).
pub(crate) fn chunkwise_workspace_len(chunk: usize, dk: usize, dv: usize) -> Result<usize> {
    Reference.linear_memory_chunkwise_workspace_len(chunk, dk, dv)
}

/// The chunkwise form (see [`chunk`]).
pub(crate) fn chunkwise<T: Element>(
    spec: LinearMemorySpec,
    chunk: usize,
    inputs: MemoryInputs<'_, Reference, T>,
    state: ViewMut<'_, Reference, T::Acc>,
    o: Option<ViewMut<'_, Reference, T>>,
    workspace: ViewMut<'_, Reference, T::Acc>,
) -> Result<()> {
    chunk::chunkwise(spec, chunk, inputs, state, o, workspace)
}
