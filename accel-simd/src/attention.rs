//! Fused scaled-dot-product attention (Vaswani et al. 2017, eq. 1) with an online softmax over
//! key tiles (FlashAttention, Dao et al. 2022, Algorithm 1); the merge of partial results is
//! [`crate::attention_merge`]'s.
//!
//! The kernel takes a block of `QB = 2 x LANES` query rows of one (batch, head) at a time and puts
//! the rows in the vector lanes: the block's queries are transposed once into `Qt [D, QB]`, so that
//! the scores of a key tile, `S [TILE, QB]`, are outer-product updates
//! `S[j, :] += K[j, d] Qt[d, :]` (one broadcast per key and feature, register-blocked over 4 keys
//! and 2 vectors of rows, the scheme of a gemm micro-kernel, Goto & van de Geijn 2008), and the
//! online softmax's running maximum `m`, sum `l` and rescaling factor are themselves vectors over
//! the rows: no horizontal reduction anywhere. The output accumulates transposed,
//! `Ot [Dv, QB] = alpha Ot + sum_j V[j, :]^T P[j, :]`, register-blocked over 4 value features and 2
//! vectors of rows, and is transposed back when the block is written.
//!
//! Query blocks go in groups of `NB = 4` consecutive blocks of one (batch, head), each with its
//! own `Qt`, `Ot` and running `m`, `l` in the workspace (the score tile is shared, one block at a
//! time): each key/value tile of `TILE = 128` keys is read (or widened) once for the group and
//! serves every block of it, each on its own part of the tile (causal and window rows see
//! different keys; a block skips a tile it does not see), so K/V streams from memory once per group
//! rather than once per block. Measured (x86-64-v3 build, f32, one thread, causal H8 D64, batch
//! 1, on this project's 2-core Zen 1 EPYC, 2026-11-27, medians of 3 side-by-side runs under a
//! load average of 7.5): L = 512 24.3 ms (one block per pass and 64-key tiles: 25.1 ms; torch
//! SDPA 36.8 ms, 1.52x), L = 2048 359 ms (366 ms; torch 390 ms, 1.09x); at a load average of 3,
//! 13.3 ms and 178 ms against 13.6 ms and 191 ms. The gain is the 128-key tile (one block per
//! pass with 128-key tiles measured 181 ms); the grouping itself measured within the noise
//! (+-3 %): this core streams K/V from L3 about as fast as it uses them, the kernel is bound by
//! its multiply-adds and exponentials (about 24 GFLOP/s of a 36 GFLOP/s gemm).
//!
//! Semantics are exactly [`seqcore::portable::attention`]'s: scale, soft cap, bias, then the
//! causal / window / key masks; a row with no visible key gives zeros and `lse = -inf`; NaN in a
//! visible logit gives a NaN row; a hidden key's value row never reaches an output (a tile that
//! hides a key while holding a non-finite value takes a per-row path that skips it, as the
//! portable kernel does). Every lane is an independent row, so padding lanes of a short block never
//! touch the real rows. f16/bf16 key/value tiles are widened to f32 in the workspace; layouts whose
//! feature axis is not unit-stride take the portable kernel.

use core::ops::Range;

use seqcore::portable::attention as portable;
use seqcore::{
    AttentionDims, AttentionMasks, AttentionParams, AttentionPlan, Backend, DType, Element, Error,
    Layout, Reference, Result, Scalar, View, ViewMut,
};

use crate::lanes::{F32_LANES, F32s, F64_LANES, F64s, Lanes, Vector, widen};

/// Keys scored per tile.
const TILE: usize = 128;
/// Keys (score kernel) and value features (output kernel) per register block.
const KB: usize = 4;
/// Query blocks that share each pass over the key/value tiles.
const NB: usize = 4;
/// The largest query block of any build (`2 x` the f32 lanes).
const MAX_QB: usize = 2 * F32_LANES;

/// Lane masks the kernel needs beyond [`Vector`]: which lanes are NaN, and their union.
pub(crate) trait Flags<A>: Vector<A> {
    /// All bits set in the lanes that are NaN, zero elsewhere.
    fn nan_lanes(self) -> Self;
    /// Bitwise or of two masks.
    fn or(self, b: Self) -> Self;
    /// The most negative finite value of `A`.
    fn lowest() -> A;
}

impl Flags<f32> for F32s {
    #[inline(always)]
    fn nan_lanes(self) -> Self {
        self.is_nan()
    }
    #[inline(always)]
    fn or(self, b: Self) -> Self {
        self | b
    }
    #[inline(always)]
    fn lowest() -> f32 {
        f32::MIN
    }
}

impl Flags<f64> for F64s {
    #[inline(always)]
    fn nan_lanes(self) -> Self {
        self.is_nan()
    }
    #[inline(always)]
    fn or(self, b: Self) -> Self {
        self | b
    }
    #[inline(always)]
    fn lowest() -> f64 {
        f64::MIN
    }
}

/// Rows of the query block for `T` (two vectors of the accumulation type).
fn block_rows<T: Element>() -> usize {
    2 * if T::DTYPE == DType::F64 {
        F64_LANES
    } else {
        F32_LANES
    }
}

/// Does `T` compute in itself (f32, f64), so that its slices are read without widening?
fn is_acc<T: Element>() -> bool {
    matches!(T::DTYPE, DType::F32 | DType::F64)
}

/// Workspace (accumulation-type elements): the `NB` transposed query blocks `NB x QB x D`, the
/// score tile `QB x TILE`, the `NB` transposed output blocks `NB x QB x Dv`, and for f16/bf16 the
/// widened key and value tiles `TILE x (D + Dv)`: `QB (NB (D + Dv) + TILE)` (+ `TILE (D + Dv)`).
/// Independent of the sequence lengths, and never less than the portable kernel's `Dv + 64`
/// (which the strided fallback uses).
///
/// # Errors
/// [`Error::Overflow`] naming `head_dim` or `value_dim` when the size overflows `usize`.
pub(crate) fn workspace_len<T: Element>(dims: &AttentionDims) -> Result<usize> {
    let qb = block_rows::<T>();
    let over = |arg| Error::Overflow { arg };
    let per_row = dims
        .head_dim
        .checked_add(dims.value_dim)
        .and_then(|x| x.checked_mul(NB))
        .and_then(|x| x.checked_add(TILE))
        .ok_or(over("value_dim"))?;
    let mut need = per_row.checked_mul(qb).ok_or(over("value_dim"))?;
    if !is_acc::<T>() {
        let tile = dims
            .head_dim
            .checked_add(dims.value_dim)
            .and_then(|x| x.checked_mul(TILE))
            .ok_or(over("value_dim"))?;
        need = need.checked_add(tile).ok_or(over("value_dim"))?;
    }
    // The portable fallback's need, in case a future change made it larger.
    Ok(need.max(portable::workspace_len(dims.value_dim)?))
}

/// The answer when a slice cannot be seen as its concrete type: never for seqcore's element
/// types, whose tag names the type.
fn unsupported(op: &'static str) -> Error {
    Error::Unsupported {
        op,
        backend: "simd",
    }
}

/// `s` as `U` (the same type under its concrete name).
pub(crate) fn cast<'a, T: Scalar, U: Scalar>(s: &'a [T], op: &'static str) -> Result<&'a [U]> {
    bytemuck::try_cast_slice(s).map_err(|_| unsupported(op))
}

/// `s` as `U`, writable.
pub(crate) fn cast_mut<'a, T: Scalar, U: Scalar>(
    s: &'a mut [T],
    op: &'static str,
) -> Result<&'a mut [U]> {
    bytemuck::try_cast_slice_mut(s).map_err(|_| unsupported(op))
}

/// `v` as a view of `U`.
pub(crate) fn conv<'a, T: Scalar, U: Scalar>(
    v: View<'a, Reference, T>,
    op: &'static str,
) -> Result<View<'a, Reference, U>> {
    View::new(cast(v.mem(), op)?, *v.layout())
}

/// `v` as a writable view of `U`.
pub(crate) fn conv_mut<'a, T: Scalar, U: Scalar>(
    v: ViewMut<'a, Reference, T>,
    op: &'static str,
) -> Result<ViewMut<'a, Reference, U>> {
    let (mem, layout) = v.into_parts();
    ViewMut::new(cast_mut(mem, op)?, layout)
}

/// `s` as `U` when `T` is `U` (same tag and size): f32 or f64 operands read in place.
fn same<T: Element, U: Element>(s: &[T]) -> Option<&[U]> {
    if T::DTYPE == U::DTYPE && size_of::<T>() == size_of::<U>() {
        bytemuck::try_cast_slice(s).ok()
    } else {
        None
    }
}

/// Is the last axis of `l` unit-stride (or of extent at most 1)?
pub(crate) fn unit_rows(l: &Layout) -> bool {
    matches!((l.shape().last(), l.strides().last()), (Some(&n), Some(&s)) if n <= 1 || s == 1)
}

fn oob(arg: &'static str, end: usize, len: usize) -> Error {
    Error::OutOfBounds { arg, end, len }
}

/// Offset and strides of a rank-`N` layout (checked by the plan).
fn parts<const N: usize>(l: &Layout, arg: &'static str) -> Result<(usize, [usize; N])> {
    let s = <[usize; N]>::try_from(l.strides()).map_err(|_| Error::Rank {
        arg,
        got: l.rank(),
        min: N,
        max: N,
    })?;
    Ok((l.offset(), s))
}

/// `len` elements of `mem` from `at` (empty when `len` is 0, wherever `at` points).
#[inline(always)]
fn row<'a, X>(mem: &'a [X], at: usize, len: usize, arg: &'static str) -> Result<&'a [X]> {
    if len == 0 {
        return Ok(&[]);
    }
    mem.get(at..at + len)
        .ok_or_else(|| oob(arg, at + len, mem.len()))
}

/// Splits `n` elements off the front of `ws`.
fn take<A>(ws: &mut [A], n: usize, need: usize) -> Result<(&mut [A], &mut [A])> {
    if ws.len() < n {
        return Err(Error::Capacity {
            arg: "workspace",
            needed: need,
            capacity: ws.len(),
        });
    }
    Ok(ws.split_at_mut(n))
}

#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
pub(crate) fn attention<T: Element>(
    params: &AttentionParams,
    q: View<'_, Reference, T>,
    k: View<'_, Reference, T>,
    v: View<'_, Reference, T>,
    masks: AttentionMasks<'_, Reference, T>,
    o: ViewMut<'_, Reference, T>,
    lse: Option<ViewMut<'_, Reference, T::Acc>>,
    workspace: &mut [T::Acc],
) -> Result<()> {
    const OP: &str = "attention";
    macro_rules! go {
        ($u:ty) => {
            run::<$u>(
                params,
                conv(q, OP)?,
                conv(k, OP)?,
                conv(v, OP)?,
                AttentionMasks {
                    key_mask: masks.key_mask,
                    bias: masks.bias.map(|b| conv(b, OP)).transpose()?,
                },
                conv_mut(o, OP)?,
                lse.map(|l| conv_mut(l, OP)).transpose()?,
                cast_mut(workspace, OP)?,
            )
        };
    }
    match T::DTYPE {
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
        DType::F16 => go!(half::f16),
        DType::BF16 => go!(half::bf16),
        _ => Reference.attention(params, q, k, v, masks, o, lse, workspace),
    }
}

/// The checks (the plan, then the workspace), then the vectorised kernel, or the portable one for
/// a layout whose feature axis is strided.
#[allow(clippy::too_many_arguments)]
fn run<T: Element>(
    params: &AttentionParams,
    q: View<'_, Reference, T>,
    k: View<'_, Reference, T>,
    v: View<'_, Reference, T>,
    masks: AttentionMasks<'_, Reference, T>,
    o: ViewMut<'_, Reference, T>,
    lse: Option<ViewMut<'_, Reference, T::Acc>>,
    workspace: &mut [T::Acc],
) -> Result<()>
where
    T::Acc: Lanes,
    <T::Acc as Lanes>::V: Flags<T::Acc>,
{
    let plan = AttentionPlan::<T::Acc>::check(
        params,
        q.layout(),
        k.layout(),
        v.layout(),
        masks.key_mask.as_ref().map(View::layout),
        masks.bias.as_ref().map(View::layout),
        o.layout(),
        lse.as_ref().map(ViewMut::layout),
    )?;
    let need = workspace_len::<T>(&plan.dims)?;
    if workspace.len() < need {
        return Err(Error::Capacity {
            arg: "workspace",
            needed: need,
            capacity: workspace.len(),
        });
    }
    let ops = portable::Operands {
        q,
        k,
        v,
        key_mask: masks.key_mask,
        bias: masks.bias,
        o,
        lse,
    };
    // Empty operands (no keys, a zero feature axis) have nothing to vectorise, and their
    // layouts may hold any strides: the portable kernel takes them.
    let filled = [
        ops.q.layout(),
        ops.k.layout(),
        ops.v.layout(),
        ops.o.layout(),
    ]
    .iter()
    .all(|l| l.numel() > 0);
    if filled
        && unit_rows(ops.q.layout())
        && unit_rows(ops.k.layout())
        && unit_rows(ops.v.layout())
        && unit_rows(ops.o.layout())
    {
        fast::<T, T::Acc>(&plan, ops, workspace, need)
    } else {
        portable::attention(&plan, ops, workspace)
    }
}

/// A rank-`N` operand: its memory, offset and strides.
type Operand<'a, X, const N: usize> = (&'a [X], usize, [usize; N]);

/// A writable rank-`N` operand.
type OperandMut<'a, X, const N: usize> = (&'a mut [X], usize, [usize; N]);

/// The read-only operands of one call.
struct Inputs<'a, T: Element> {
    plan: &'a AttentionPlan<T::Acc>,
    q: Operand<'a, T, 4>,
    k: Operand<'a, T, 4>,
    v: Operand<'a, T, 4>,
    /// `k` and `v` as the accumulation type when `T` is it (read in place).
    k_acc: Option<&'a [T::Acc]>,
    v_acc: Option<&'a [T::Acc]>,
    mask: Option<Operand<'a, u8, 2>>,
    bias: Option<Operand<'a, T, 4>>,
}

/// The workspace, split.
struct Scratch<'w, A> {
    /// `NB` transposed query blocks `Qt [D, QB]`.
    qt: &'w mut [A],
    /// `S [TILE, QB]` (scores, then weights), shared by the blocks of a group in turn.
    s: &'w mut [A],
    /// `NB` transposed output blocks `Ot [Dv, QB]`.
    ot: &'w mut [A],
    /// Widened key tile `[TILE, D]` (f16/bf16 only).
    kbuf: &'w mut [A],
    /// Widened value tile `[TILE, Dv]` (f16/bf16 only).
    vbuf: &'w mut [A],
}

/// Where one block's rows go.
struct Out<'o, T: Element> {
    o: &'o mut [T],
    o0: usize,
    os: [usize; 4],
    lse: Option<OperandMut<'o, T::Acc, 3>>,
}

/// The vectorised kernel over blocks of query rows (unit-stride feature axes).
fn fast<T, A>(
    plan: &AttentionPlan<A>,
    ops: portable::Operands<'_, T>,
    ws: &mut [A],
    need: usize,
) -> Result<()>
where
    T: Element<Acc = A>,
    A: Lanes,
    A::V: Flags<A>,
{
    let d = plan.dims;
    let portable::Operands {
        q,
        k,
        v,
        key_mask,
        bias,
        mut o,
        mut lse,
    } = ops;
    let (q0, qs) = parts::<4>(q.layout(), "q")?;
    let (k0, ks) = parts::<4>(k.layout(), "k")?;
    let (v0, vs) = parts::<4>(v.layout(), "v")?;
    let (o0, os) = parts::<4>(o.layout(), "o")?;
    let mask = match &key_mask {
        Some(m) => {
            let (m0, ms) = parts::<2>(m.layout(), "key_mask")?;
            Some((m.mem(), m0, ms))
        }
        None => None,
    };
    let bias = match &bias {
        Some(b) => {
            let (b0, bs) = parts::<4>(b.layout(), "bias")?;
            Some((b.mem(), b0, bs))
        }
        None => None,
    };
    let lse_parts = match &lse {
        Some(l) => Some(parts::<3>(l.layout(), "lse")?),
        None => None,
    };
    let inputs = Inputs::<T> {
        plan,
        q: (q.mem(), q0, qs),
        k: (k.mem(), k0, ks),
        v: (v.mem(), v0, vs),
        k_acc: same::<T, A>(k.mem()),
        v_acc: same::<T, A>(v.mem()),
        mask,
        bias,
    };
    let qb = 2 * A::LANES;
    let (qt, rest) = take(ws, NB * qb * d.head_dim, need)?;
    let (s, rest) = take(rest, qb * TILE, need)?;
    let (ot, rest) = take(rest, NB * qb * d.value_dim, need)?;
    let kn = if inputs.k_acc.is_none() {
        TILE * d.head_dim
    } else {
        0
    };
    let (kbuf, rest) = take(rest, kn, need)?;
    let vn = if inputs.v_acc.is_none() {
        TILE * d.value_dim
    } else {
        0
    };
    let (vbuf, _) = take(rest, vn, need)?;
    let mut scratch = Scratch {
        qt,
        s,
        ot,
        kbuf,
        vbuf,
    };
    let mut out = Out::<T> {
        o: o.mem_mut(),
        o0,
        os,
        lse: match (lse.as_mut(), lse_parts) {
            (Some(l), Some((l0, ls))) => Some((l.mem_mut(), l0, ls)),
            _ => None,
        },
    };
    for b in 0..d.batch {
        for h in 0..d.heads_q {
            let mut i0 = 0;
            while i0 < d.len_q {
                let rows = (d.len_q - i0).min(NB * qb);
                let at = Rows { b, h, i0, rows };
                if rows > A::LANES {
                    group::<T, A, 2>(&inputs, &mut scratch, &mut out, at)?;
                } else {
                    group::<T, A, 1>(&inputs, &mut scratch, &mut out, at)?;
                }
                i0 += rows;
            }
        }
    }
    Ok(())
}

/// Loads vector `hh` of a block of `H` vectors.
#[inline(always)]
fn load<A: Lanes>(c: &[A], hh: usize) -> A::V {
    A::V::load_or(c.get(hh * A::LANES..).unwrap_or(&[]), A::zero())
}

/// Stores vector `hh` of a block of `H` vectors.
#[inline(always)]
fn store<A: Lanes>(x: A::V, c: &mut [A], hh: usize) {
    x.store(c.get_mut(hh * A::LANES..).unwrap_or(&mut []));
}

/// The lanes of `H` vectors, as one array.
#[inline(always)]
fn spill<A: Lanes, const H: usize>(x: &[A::V; H]) -> [A; MAX_QB] {
    let mut a = [A::zero(); MAX_QB];
    for (hh, v) in x.iter().enumerate() {
        store::<A>(*v, &mut a, hh);
    }
    a
}

/// The rows `0 .. n` of a tile starting at `mem[off]`, `stride` apart, `len` long.
fn tile_rows<'a, A>(
    rows: &mut [&'a [A]; TILE],
    mem: &'a [A],
    off: usize,
    stride: usize,
    n: usize,
    len: usize,
    arg: &'static str,
) -> Result<()> {
    for (t, slot) in rows.iter_mut().enumerate().take(n) {
        *slot = row(mem, off + t * stride, len, arg)?;
    }
    Ok(())
}

/// `S[t, :] = scale * sum_d K[t, d] Qt[d, :]` for the keys of a tile, 4 keys x `H` vectors of
/// rows at a time, the features in order (one fused multiply-add each).
#[inline(always)]
fn scores<A: Lanes, const H: usize>(qt: &[A], krows: &[&[A]], scale: A, s: &mut [A]) -> Result<()> {
    let qb = H * A::LANES;
    let zero = A::V::splat(A::zero());
    let sc = A::V::splat(scale);
    let mut outs = s.chunks_exact_mut(qb);
    let mut keys = krows.iter();
    loop {
        let group: [&[A]; KB] = match (keys.next(), keys.next(), keys.next(), keys.next()) {
            (Some(a), Some(b), Some(c), Some(d)) => [a, b, c, d],
            (first, second, third, _) => {
                for r in [first, second, third].into_iter().flatten() {
                    let mut acc = [zero; H];
                    for (qc, &kx) in qt.chunks_exact(qb).zip(r.iter()) {
                        let kv = A::V::splat(kx);
                        for (hh, a) in acc.iter_mut().enumerate() {
                            *a = load::<A>(qc, hh).mul_add(kv, *a);
                        }
                    }
                    let out = outs.next().ok_or_else(|| oob("workspace", 0, 0))?;
                    for (hh, a) in acc.iter().enumerate() {
                        store::<A>(*a * sc, out, hh);
                    }
                }
                return Ok(());
            }
        };
        let [r0, r1, r2, r3] = group;
        let mut acc = [[zero; H]; KB];
        for ((((qc, &x0), &x1), &x2), &x3) in qt.chunks_exact(qb).zip(r0).zip(r1).zip(r2).zip(r3) {
            let kv = [
                A::V::splat(x0),
                A::V::splat(x1),
                A::V::splat(x2),
                A::V::splat(x3),
            ];
            let qv: [A::V; H] = core::array::from_fn(|hh| load::<A>(qc, hh));
            for (accs, k) in acc.iter_mut().zip(kv) {
                for (a, qx) in accs.iter_mut().zip(qv) {
                    *a = qx.mul_add(k, *a);
                }
            }
        }
        for accs in &acc {
            let out = outs.next().ok_or_else(|| oob("workspace", 0, 0))?;
            for (hh, a) in accs.iter().enumerate() {
                store::<A>(*a * sc, out, hh);
            }
        }
    }
}

/// `Ot[e, :] = alpha Ot[e, :] + sum_t V[t, e] P[t, :]` over the keys of a tile, in key order,
/// 4 features x `H` vectors of rows at a time.
#[inline(always)]
fn weighted_values<A: Lanes, const H: usize>(
    p: &[A],
    vrows: &[&[A]],
    alpha: [A::V; H],
    ot: &mut [A],
) -> Result<()> {
    let qb = H * A::LANES;
    let mut e = 0;
    let mut chunks = ot.chunks_exact_mut(qb);
    loop {
        match (chunks.next(), chunks.next(), chunks.next(), chunks.next()) {
            (Some(c0), Some(c1), Some(c2), Some(c3)) => {
                let mut cs = [c0, c1, c2, c3];
                let mut acc: [[A::V; H]; KB] =
                    core::array::from_fn(|_| [A::V::splat(A::zero()); H]);
                for (accs, c) in acc.iter_mut().zip(cs.iter()) {
                    for ((hh, a), al) in accs.iter_mut().enumerate().zip(alpha) {
                        *a = load::<A>(c, hh) * al;
                    }
                }
                for (pc, vr) in p.chunks_exact(qb).zip(vrows.iter()) {
                    let Some(&[x0, x1, x2, x3]) = vr.get(e..e + KB) else {
                        return Err(oob("v", e + KB, vr.len()));
                    };
                    let pv: [A::V; H] = core::array::from_fn(|hh| load::<A>(pc, hh));
                    let vv = [
                        A::V::splat(x0),
                        A::V::splat(x1),
                        A::V::splat(x2),
                        A::V::splat(x3),
                    ];
                    for (accs, x) in acc.iter_mut().zip(vv) {
                        for (a, pp) in accs.iter_mut().zip(pv) {
                            *a = pp.mul_add(x, *a);
                        }
                    }
                }
                for (accs, c) in acc.iter().zip(cs.iter_mut()) {
                    for (hh, a) in accs.iter().enumerate() {
                        store::<A>(*a, c, hh);
                    }
                }
                e += KB;
            }
            (c0, c1, c2, _) => {
                for c in [c0, c1, c2].into_iter().flatten() {
                    let mut acc: [A::V; H] = core::array::from_fn(|hh| load::<A>(c, hh));
                    for (a, al) in acc.iter_mut().zip(alpha) {
                        *a = *a * al;
                    }
                    for (pc, vr) in p.chunks_exact(qb).zip(vrows.iter()) {
                        let x = A::V::splat(vr.get(e).copied().unwrap_or_else(A::nan));
                        for (hh, a) in acc.iter_mut().enumerate() {
                            *a = load::<A>(pc, hh).mul_add(x, *a);
                        }
                    }
                    for (hh, a) in acc.iter().enumerate() {
                        store::<A>(*a, c, hh);
                    }
                    e += 1;
                }
                return Ok(());
            }
        }
    }
}

/// The query rows `i0 .. i0 + rows` of batch row `b`, head `h`: a group of up to `NB` blocks.
#[derive(Clone, Copy)]
struct Rows {
    b: usize,
    h: usize,
    i0: usize,
    rows: usize,
}

/// One query block of a group: its rows, the keys each row sees, its slices of the workspace and
/// its online-softmax state (one lane per row).
struct Blk<'w, A: Lanes, const H: usize> {
    /// The block's first row.
    i0: usize,
    /// Its rows (at most `H x LANES`).
    nq: usize,
    /// The keys each row sees (causal / window), `start..end`.
    ranges: [(usize, usize); MAX_QB],
    /// The union of the rows' keys, `lo..hi` (`lo > hi` when no row sees a key).
    lo: usize,
    hi: usize,
    /// The keys every row sees, `max_lo..min_hi`, unless a row sees none (`any_empty`).
    max_lo: usize,
    min_hi: usize,
    any_empty: bool,
    /// `Qt [D, QB]`.
    qt: &'w mut [A],
    /// `Ot [Dv, QB]`.
    ot: &'w mut [A],
    /// Running maximum of each row.
    m: [A::V; H],
    /// Running sum of each row.
    l: [A::V; H],
    /// NaN lanes seen.
    nan: [A::V; H],
}

/// A group of up to `NB` query blocks of `H x LANES` rows through every key tile any of them
/// sees: each key/value tile is read (or widened) once for the whole group and then serves each
/// block whose keys meet it, on that block's part of the tile, so K/V streams from memory once per
/// group rather than once per block (the blocking of FlashAttention-2's outer loop, Dao 2023,
/// turned around for one core's caches).
fn group<T, A, const H: usize>(
    inp: &Inputs<'_, T>,
    ws: &mut Scratch<'_, A>,
    out: &mut Out<'_, T>,
    at: Rows,
) -> Result<()>
where
    T: Element<Acc = A>,
    A: Lanes,
    A::V: Flags<A>,
{
    let d = inp.plan.dims;
    let (dk, dv) = (d.head_dim, d.value_dim);
    let qb = H * A::LANES;
    let Rows { b, h, i0, rows } = at;
    let g = d.kv_head(h);
    let Scratch {
        qt,
        s,
        ot,
        kbuf,
        vbuf,
    } = ws;
    let mut qts = qt.chunks_exact_mut((qb * dk).max(1));
    let mut ots = ot.chunks_exact_mut((qb * dv).max(1));
    let mut blks: [Option<Blk<'_, A, H>>; NB] = core::array::from_fn(|_| None);
    let (mut glo, mut ghi) = (usize::MAX, 0usize);
    let mut r0 = i0;
    for slot in &mut blks {
        if r0 >= i0 + rows {
            break;
        }
        let nq = (i0 + rows - r0).min(qb);
        let (Some(qt), Some(ot)) = (qts.next(), ots.next()) else {
            return Err(oob("workspace", NB * qb * (dk + dv), 0));
        };
        let blk = prepare::<T, A, H>(inp, qt, ot, b, h, r0, nq)?;
        glo = glo.min(blk.lo);
        ghi = ghi.max(blk.hi);
        *slot = Some(blk);
        r0 += nq;
    }

    let (km, k0, [ksb, ksh, ksj, _]) = inp.k;
    let (vm, v0, [vsb, vsh, vsj, _]) = inp.v;
    let kbase = k0 + b * ksb + g * ksh;
    let vbase = v0 + b * vsb + g * vsh;
    let mut t0 = glo;
    while t0 < ghi {
        let n = (ghi - t0).min(TILE);
        let mut krows: [&[A]; TILE] = [&[]; TILE];
        let mut vrows: [&[A]; TILE] = [&[]; TILE];
        // The tile's key and value rows, in place or widened.
        match inp.k_acc {
            Some(ka) => tile_rows(&mut krows, ka, kbase + t0 * ksj, ksj, n, dk, "k")?,
            None => {
                for (t, dst) in kbuf.chunks_exact_mut(dk.max(1)).enumerate().take(n) {
                    widen::<T>(row(km, kbase + (t0 + t) * ksj, dk, "k")?, dst);
                }
                tile_rows(&mut krows, kbuf, 0, dk, n, dk, "workspace")?;
            }
        }
        match inp.v_acc {
            Some(va) => tile_rows(&mut vrows, va, vbase + t0 * vsj, vsj, n, dv, "v")?,
            None => {
                for (t, dst) in vbuf.chunks_exact_mut(dv.max(1)).enumerate().take(n) {
                    widen::<T>(row(vm, vbase + (t0 + t) * vsj, dv, "v")?, dst);
                }
                tile_rows(&mut vrows, vbuf, 0, dv, n, dv, "workspace")?;
            }
        }
        // Each block on the part of the tile its rows see (none: skipped).
        for blk in blks.iter_mut().flatten() {
            let (a, e) = (blk.lo.max(t0), blk.hi.min(t0 + n));
            if a >= e {
                continue;
            }
            let (Some(ks), Some(vs)) = (krows.get(a - t0..e - t0), vrows.get(a - t0..e - t0))
            else {
                return Err(oob("workspace", e - t0, TILE));
            };
            step::<T, A, H>(inp, blk, s, ks, vs, (b, h, a))?;
        }
        t0 += n;
    }
    for blk in blks.iter().flatten() {
        finish::<T, A, H>(blk, out, b, h)?;
    }
    Ok(())
}

/// Block `i0 .. i0 + nq` of batch row `b`, head `h`: its queries transposed into `Qt [D, QB]`
/// (padding rows zero), `Ot` zeroed, the keys each row sees and their union.
#[allow(clippy::too_many_arguments)] // one block's coordinates and its workspace
fn prepare<'w, T, A, const H: usize>(
    inp: &Inputs<'_, T>,
    qt: &'w mut [A],
    ot: &'w mut [A],
    b: usize,
    h: usize,
    i0: usize,
    nq: usize,
) -> Result<Blk<'w, A, H>>
where
    T: Element<Acc = A>,
    A: Lanes,
    A::V: Flags<A>,
{
    let plan = inp.plan;
    let d = plan.dims;
    let (dk, dv) = (d.head_dim, d.value_dim);
    let qb = H * A::LANES;
    let qt = qt
        .get_mut(..qb * dk)
        .ok_or_else(|| oob("workspace", qb * dk, 0))?;
    qt.fill(A::zero());
    let (qm, q0, [qsb, qsh, qsi, _]) = inp.q;
    for r in 0..nq {
        let src = row(qm, q0 + b * qsb + h * qsh + (i0 + r) * qsi, dk, "q")?;
        for (x, dst) in src.iter().zip(qt.iter_mut().skip(r).step_by(qb)) {
            *dst = x.to_acc();
        }
    }
    let ot = ot
        .get_mut(..qb * dv)
        .ok_or_else(|| oob("workspace", qb * dv, 0))?;
    ot.fill(A::zero());

    // The keys each row sees (causal / window), and the block's union.
    let mut ranges = [(0usize, 0usize); MAX_QB];
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    let (mut max_lo, mut min_hi) = (0usize, usize::MAX);
    let mut any_empty = false;
    for (r, slot) in ranges.iter_mut().enumerate().take(nq) {
        let Range { start, end } = plan.keys(i0 + r);
        *slot = (start, end);
        if start >= end {
            any_empty = true;
        } else {
            lo = lo.min(start);
            hi = hi.max(end);
            max_lo = max_lo.max(start);
            min_hi = min_hi.min(end);
        }
    }
    Ok(Blk {
        i0,
        nq,
        ranges,
        lo,
        hi,
        max_lo,
        min_hi,
        any_empty,
        qt,
        ot,
        m: [A::V::splat(A::neg_infinity()); H],
        l: [A::V::splat(A::zero()); H],
        nan: [A::V::splat(A::zero()); H],
    })
}

/// One block through the keys `t0 .. t0 + n` of a tile (`krows`, `vrows`: their rows; `at`:
/// batch row, head, `t0`): scores, soft cap, bias, masks, then the online-softmax update of
/// `m`, `l` and `Ot`.
#[allow(clippy::too_many_lines)]
fn step<T, A, const H: usize>(
    inp: &Inputs<'_, T>,
    blk: &mut Blk<'_, A, H>,
    s: &mut [A],
    krows: &[&[A]],
    vrows: &[&[A]],
    at: (usize, usize, usize),
) -> Result<()>
where
    T: Element<Acc = A>,
    A: Lanes,
    A::V: Flags<A>,
{
    let plan = inp.plan;
    let qb = H * A::LANES;
    let (b, h, t0) = at;
    let n = krows.len();
    let (i0, nq) = (blk.i0, blk.nq);
    let neg_inf = A::neg_infinity();
    let lowest = A::V::splat(<A::V as Flags<A>>::lowest());
    let ot = &mut *blk.ot;

    // Scores, soft cap, bias, masks.
    scores::<A, H>(blk.qt, krows, plan.scale, s)?;
    let tile = s
        .get_mut(..n * qb)
        .ok_or_else(|| oob("workspace", n * qb, 0))?;
    if let Some(cap) = plan.softcap {
        for x in tile.iter_mut() {
            *x = cap * (*x / cap).tanh();
        }
    }
    if let Some((bm, b0, [bsb, bsh, bsi, bsj])) = inp.bias {
        for (t, sc) in tile.chunks_exact_mut(qb).enumerate() {
            for (r, x) in sc.iter_mut().enumerate().take(nq) {
                let at = b0 + b * bsb + h * bsh + (i0 + r) * bsi + (t0 + t) * bsj;
                *x += bm
                    .get(at)
                    .ok_or_else(|| oob("bias", at + 1, bm.len()))?
                    .to_acc();
            }
        }
    }
    let inside = !blk.any_empty && t0 >= blk.max_lo && t0 + n <= blk.min_hi;
    if !inside {
        for (t, sc) in tile.chunks_exact_mut(qb).enumerate() {
            let j = t0 + t;
            for (x, &(lo, hi)) in sc.iter_mut().zip(blk.ranges.iter()).take(nq) {
                if j < lo || j >= hi {
                    *x = neg_inf;
                }
            }
        }
    }
    if let Some((mm, m0, [msb, msj])) = inp.mask {
        for (t, sc) in tile.chunks_exact_mut(qb).enumerate() {
            let at = m0 + b * msb + (t0 + t) * msj;
            if *mm
                .get(at)
                .ok_or_else(|| oob("key_mask", at + 1, mm.len()))?
                == 0
            {
                sc.fill(neg_inf);
            }
        }
    }

    // The tile's maximum, minimum (is a key hidden?) and NaN lanes.
    let mut tmax = [A::V::splat(neg_inf); H];
    let mut tmin = [A::V::splat(A::infinity()); H];
    for sc in tile.chunks_exact(qb) {
        for hh in 0..H {
            let x = load::<A>(sc, hh);
            if let (Some(mx), Some(mn), Some(nn)) =
                (tmax.get_mut(hh), tmin.get_mut(hh), blk.nan.get_mut(hh))
            {
                *mx = mx.max(x);
                *mn = mn.min(x);
                *nn = nn.or(x.nan_lanes());
            }
        }
    }
    let hidden = spill::<A, H>(&tmin).iter().take(nq).any(|&x| x == neg_inf);
    // Online softmax: m' = max(m, tile max); alpha = exp(m - m'), with a row that has seen no
    // key yet (m' = -inf) exponentiated against the lowest finite value so that it stays
    // l = 0, acc = 0 and every hidden weight is exactly 0.
    let mut m_use = [lowest; H];
    let mut alpha = [lowest; H];
    for hh in 0..H {
        if let (Some(mv), Some(tm), Some(mu), Some(al), Some(lv)) = (
            blk.m.get_mut(hh),
            tmax.get(hh),
            m_use.get_mut(hh),
            alpha.get_mut(hh),
            blk.l.get_mut(hh),
        ) {
            let m_new = mv.max(*tm);
            *mu = m_new.max(lowest);
            *al = crate::math::exp::<A>(*mv - *mu);
            *mv = m_new;
            *lv = *lv * *al;
        }
    }
    let clean = !hidden || vrows.iter().all(|r| r.iter().all(|x| x.is_finite()));
    if clean {
        for sc in tile.chunks_exact_mut(qb) {
            for ((hh, lv), mu) in blk.l.iter_mut().enumerate().zip(m_use) {
                let p = crate::math::exp::<A>(load::<A>(sc, hh) - mu);
                store::<A>(p, sc, hh);
                *lv = *lv + p;
            }
        }
        weighted_values::<A, H>(tile, vrows, alpha, ot)?;
    } else {
        // A hidden key with a non-finite value: the portable kernel's order, row by row,
        // skipping hidden keys (0 * inf would be NaN).
        for oc in ot.chunks_exact_mut(qb) {
            for (hh, al) in alpha.iter().enumerate() {
                store::<A>(load::<A>(oc, hh) * *al, oc, hh);
            }
        }
        let mu = spill::<A, H>(&m_use);
        let mut la = spill::<A, H>(&blk.l);
        for (r, (lr, &mr)) in la.iter_mut().zip(mu.iter()).enumerate().take(nq) {
            for (sc, vr) in tile.chunks_exact(qb).zip(vrows.iter()) {
                let x = sc.get(r).copied().unwrap_or(neg_inf);
                if x == neg_inf {
                    continue;
                }
                let p = (x - mr).exp();
                *lr += p;
                for (oc, &ve) in ot.chunks_exact_mut(qb).zip(vr.iter()) {
                    if let Some(y) = oc.get_mut(r) {
                        *y += p * ve;
                    }
                }
            }
        }
        for (hh, lv) in blk.l.iter_mut().enumerate() {
            *lv = load::<A>(&la, hh);
        }
    }
    Ok(())
}

/// Writes a block's rows: acc / l, zeros for a row with no visible key, NaN for a NaN logit.
fn finish<T, A, const H: usize>(
    blk: &Blk<'_, A, H>,
    out: &mut Out<'_, T>,
    b: usize,
    h: usize,
) -> Result<()>
where
    T: Element<Acc = A>,
    A: Lanes,
    A::V: Flags<A>,
{
    let qb = H * A::LANES;
    let neg_inf = A::neg_infinity();
    let (l_a, m_a, nan_a) = (
        spill::<A, H>(&blk.l),
        spill::<A, H>(&blk.m),
        spill::<A, H>(&blk.nan),
    );
    let [osb, osh, osi, ose] = out.os;
    for r in 0..blk.nq {
        let (lr, mr, nr) = (
            l_a.get(r).copied().unwrap_or_else(A::nan),
            m_a.get(r).copied().unwrap_or_else(A::nan),
            nan_a.get(r).is_some_and(|x| x.is_nan()),
        );
        let (value, row_lse) = if nr {
            (Some(A::nan()), A::nan())
        } else if lr == A::zero() {
            (Some(A::zero()), neg_inf)
        } else {
            (None, mr + lr.ln())
        };
        let orow = out.o0 + b * osb + h * osh + (blk.i0 + r) * osi;
        let len = out.o.len();
        for (e, oc) in blk.ot.chunks_exact(qb).enumerate() {
            let y = match value {
                Some(z) => z,
                None => oc.get(r).copied().unwrap_or_else(A::nan) / lr,
            };
            let slot = out
                .o
                .get_mut(orow + e * ose)
                .ok_or_else(|| oob("o", orow + e * ose + 1, len))?;
            *slot = T::from_acc(y);
        }
        if let Some((lm, l0, ls)) = out.lse.as_mut() {
            let [lsb, lsh, lsi] = *ls;
            let at = *l0 + b * lsb + h * lsh + (blk.i0 + r) * lsi;
            let len = lm.len();
            *lm.get_mut(at).ok_or_else(|| oob("lse", at + 1, len))? = row_lse;
        }
    }
    Ok(())
}
