//! `c = alpha * a @ b + beta * c` (BLAS `gemm`): packed panels, a register-blocked micro-kernel
//! and cache blocking, after Goto & van de Geijn, "Anatomy of high-performance matrix
//! multiplication" (ACM TOMS 34(3), 2008), in the loop structure BLIS names (Van Zee & van de
//! Geijn, ACM TOMS 41(3), 2015).
//!
//! # Algorithm
//!
//! For each batch entry, five loops around a micro-kernel:
//!
//! ```text
//! for jc in 0..n step NC                 (B block: KC x NC, kept in L3)
//!   for pc in 0..k step KC
//!     pack B[pc.., jc..] into NR-column panels        (widened to T::Acc)
//!     for ic in 0..m step MC             (A block: MC x KC, kept in L2)
//!       pack A[ic.., pc..] into MR-row panels          (widened to T::Acc)
//!       for jr in 0..NC step NR          (one B panel: KC x NR, kept in L1)
//!         for ir in 0..MC step MR
//!           MR x NR tile of C += A panel . B panel    (micro-kernel, in registers)
//! ```
//!
//! Packing reads any strides (row-major, transposed, padded, offset, zero-stride broadcast), so
//! the micro-kernel only ever sees contiguous panels of the accumulation type (f32 for f32, f16
//! and bf16; f64 for f64): `MR` broadcasts of A times `NV` vectors of B, `MR * NV` fused
//! multiply-adds per step of k into `MR * NV` vector accumulators ([`MR`], [`NV`]). Tails in m
//! and n are zero-padded in the panels and the padded part of the tile is never stored; k needs
//! no padding.
//!
//! # Numerics
//!
//! Each `c_ij` is a sum of products in `T::Acc` (in k order within a `KC` block). For f32 and f64
//! a `k > KC` adds the block sums into `c` (`c = alpha s_1 + beta c`, then `c += alpha s_p`),
//! which stays within the reference's `gamma_k` bound. For f16 and bf16 the result is rounded to
//! `T` once: the k loop is never split (`KC = k`, with `MC` and `NC` shrunk to keep the blocks'
//! size), so no partial sum is rounded to the storage type. `beta == 0` never reads `c`.
//!
//! # Memory
//!
//! `Backend::gemm` takes no workspace. With the `alloc` feature the packed blocks are heap
//! buffers sized to the problem (at most `MC x KC` and `KC x NC` elements of `T::Acc`, about
//! 128 KiB and 4 MiB for f32), allocated once per call. Without `alloc` they are fixed stack
//! arrays of [`STACK_A`] + [`STACK_B`] elements (64 KiB for f32, 128 KiB for f64), with `MC` and
//! `NC` shrunk to fit; an f16/bf16 product whose k is too long for one stack panel then takes the
//! reference kernel.

use seqcore::check::GemmDims;
use seqcore::{Backend, DType, Element, Error, Layout, Real, Reference, Result, View, ViewMut};

use crate::lanes::{Lanes, Vector};

/// Rows of A in one register tile.
const MR: usize = 6;
/// Vectors of B (columns `NV * LANES`) in one register tile: 2 where the build has 256-bit (or
/// 512-bit) registers, so the `MR x NV` accumulators plus `NV` B vectors and one broadcast fit the
/// 16 (32) registers; 1 on SSE2, where `wide` splits each vector into two 128-bit halves.
const NV: usize = if cfg!(target_feature = "avx") { 2 } else { 1 };
/// The k block: one B panel (`KC x NR`) stays in L1 (16 KiB for f32 and for f64 on AVX2).
const KC: usize = 256;
/// Bytes of the packed A block (`MC x KC`), sized for L2.
#[cfg(feature = "alloc")]
const A_BYTES: usize = 128 * 1024;
/// Columns of the packed B block (`KC x NC`), sized for L3.
#[cfg(feature = "alloc")]
const NC: usize = 4096;
/// Elements of the stack A block when the build has no allocator.
#[cfg(not(feature = "alloc"))]
const STACK_A: usize = 4 * 1024;
/// Elements of the stack B block when the build has no allocator.
#[cfg(not(feature = "alloc"))]
const STACK_B: usize = 4 * 1024;

/// `c = alpha * a @ b + beta * c`, with the reference's checks in the reference's order.
pub(crate) fn gemm<T: Element>(
    alpha: f64,
    a: View<'_, Reference, T>,
    b: View<'_, Reference, T>,
    beta: f64,
    c: ViewMut<'_, Reference, T>,
) -> Result<()> {
    seqcore::check::finite_in::<T::Acc>("alpha", alpha)?;
    let beta_f = seqcore::check::finite("beta", beta)?;
    seqcore::check::finite_in::<T::Acc>("beta", beta_f)?;
    let d = seqcore::check::gemm(a.layout(), b.layout(), c.layout())?;
    if c.layout().numel() == 0 {
        return Ok(());
    }
    let done = match T::DTYPE {
        DType::F32 => typed::<T, f32>(alpha, &a, &b, beta_f, c, d)?,
        DType::F64 => typed::<T, f64>(alpha, &a, &b, beta_f, c, d)?,
        DType::F16 => typed::<T, half::f16>(alpha, &a, &b, beta_f, c, d)?,
        DType::BF16 => typed::<T, half::bf16>(alpha, &a, &b, beta_f, c, d)?,
        _ => Some(c),
    };
    match done {
        None => Ok(()),
        Some(c) => Reference.gemm(alpha, a, b, beta, c),
    }
}

/// Runs the product on the concrete element type `E` (`T` itself, seen through `bytemuck`).
/// Answers the untouched `c` when it cannot (the caller then takes the reference kernel).
fn typed<'c, T: Element, E: Element>(
    alpha: f64,
    a: &View<'_, Reference, T>,
    b: &View<'_, Reference, T>,
    beta: f64,
    c: ViewMut<'c, Reference, T>,
    d: GemmDims,
) -> Result<Option<ViewMut<'c, Reference, T>>>
where
    E::Acc: Lanes,
{
    let (Ok(am), Ok(bm), true) = (
        bytemuck::try_cast_slice::<T, E>(a.mem()),
        bytemuck::try_cast_slice::<T, E>(b.mem()),
        bytemuck::try_cast_slice::<T, E>(c.as_view().mem()).is_ok() && fits::<E>(d.k),
    ) else {
        return Ok(Some(c));
    };
    let (cmem, cl) = c.into_parts();
    let cl = Strided::of(&cl);
    let cm: &mut [E] = bytemuck::try_cast_slice_mut::<T, E>(cmem).map_err(|_| oob(0, 0))?;
    let (sa, sb) = (Strided::of(a.layout()), Strided::of(b.layout()));
    let alpha = <E::Acc as Real>::lit(alpha);
    run::<E>(alpha, beta, d, (am, sa), (bm, sb), (cm, cl))?;
    Ok(None)
}

/// Whether the packing buffers hold one panel of the k block: always with `alloc`; without it,
/// an f16/bf16 k (never split) must fit the stack panels.
fn fits<E: Element>(k: usize) -> bool
where
    E::Acc: Lanes,
{
    #[cfg(feature = "alloc")]
    {
        let _ = k;
        true
    }
    #[cfg(not(feature = "alloc"))]
    {
        let kc = kc_for::<E>(k).max(1);
        STACK_A / kc >= MR && STACK_B / kc >= NV * <E::Acc as Lanes>::LANES
    }
}

/// The k block: KC for f32/f64; all of k for f16/bf16 (one rounding to `E`).
fn kc_for<E: Element>(k: usize) -> usize {
    if E::DTYPE == <E::Acc as Element>::DTYPE {
        k.min(KC)
    } else {
        k
    }
}

/// Offset and strides of a (batched) matrix operand; `batch` is 0 for rank 2.
#[derive(Clone, Copy, Debug)]
struct Strided {
    off: usize,
    batch: usize,
    row: usize,
    col: usize,
}

impl Strided {
    fn of(l: &Layout) -> Strided {
        let (batch, row, col) = match *l.strides() {
            [r, c] => (0, r, c),
            [p, r, c] => (p, r, c),
            _ => (0, 0, 0),
        };
        Strided {
            off: l.offset(),
            batch,
            row,
            col,
        }
    }
}

/// The error for an address outside an operand's memory (unreachable: the views were checked).
fn oob(len: usize, i: usize) -> Error {
    Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len,
    }
}

/// How a tile is written into `c`.
#[derive(Clone, Copy, Debug)]
enum Store<A> {
    /// `c = alpha s` (`beta == 0`: `c` is not read).
    Set,
    /// `c = alpha s + beta c`.
    Scale(A),
    /// `c += alpha s` (a later k block).
    Add,
}

/// The blocked product on element type `E`, packing buffers chosen per build (the caller has
/// checked [`fits`]).
fn run<E: Element>(
    alpha: E::Acc,
    beta: f64,
    d: GemmDims,
    a: (&[E], Strided),
    b: (&[E], Strided),
    c: (&mut [E], Strided),
) -> Result<()>
where
    E::Acc: Lanes,
{
    let nr = NV * <E::Acc as Lanes>::LANES;
    let mode = if beta == 0.0 {
        Store::Set
    } else {
        Store::Scale(<E::Acc as Real>::lit(beta))
    };
    if d.k == 0 {
        scale_only::<E>(alpha, mode, d, c);
        return Ok(());
    }
    let kc = kc_for::<E>(d.k);
    let zero = <E::Acc as Real>::zero();
    #[cfg(feature = "alloc")]
    {
        let size = size_of::<E::Acc>();
        let mc_max = (A_BYTES / (KC * size)).max(MR);
        // Keep the blocks' element counts when `kc` exceeds KC (f16/bf16 with a long k).
        let mc = (mc_max * KC / kc).max(MR) / MR * MR;
        let nc = ((NC * KC / kc).max(nr) / nr * nr).min(NC);
        let mc = mc.min(d.m.div_ceil(MR) * MR);
        let nc = nc.min(d.n.div_ceil(nr) * nr);
        let mut pa = alloc::vec![zero; mc * kc];
        let mut pb = alloc::vec![zero; kc * nc];
        blocked::<E>(alpha, mode, d, kc, mc, nc, &mut pa, &mut pb, a, b, c)
    }
    #[cfg(not(feature = "alloc"))]
    {
        let mc = (STACK_A / kc) / MR * MR;
        let nc = (STACK_B / kc) / nr * nr;
        let mut pa = [zero; STACK_A];
        let mut pb = [zero; STACK_B];
        blocked::<E>(alpha, mode, d, kc, mc, nc, &mut pa, &mut pb, a, b, c)
    }
}

/// `k == 0`: every `c_ij = alpha * 0 (+ beta c_ij)`, as the reference computes it.
fn scale_only<E: Element>(alpha: E::Acc, mode: Store<E::Acc>, d: GemmDims, c: (&mut [E], Strided))
where
    E::Acc: Lanes,
{
    let (cm, sc) = c;
    let base = alpha * <E::Acc as Real>::zero();
    for p in 0..d.batch {
        for i in 0..d.m {
            for j in 0..d.n {
                let o = sc.off + p * sc.batch + i * sc.row + j * sc.col;
                if let Some(x) = cm.get_mut(o) {
                    let mut out = base;
                    if let Store::Scale(beta) = mode {
                        out += beta * x.to_acc();
                    }
                    *x = E::from_acc(out);
                }
            }
        }
    }
}

/// The five loops of Goto's algorithm over every batch entry.
#[allow(clippy::too_many_arguments)]
fn blocked<E: Element>(
    alpha: E::Acc,
    mode: Store<E::Acc>,
    d: GemmDims,
    kc: usize,
    mc: usize,
    nc: usize,
    pa: &mut [E::Acc],
    pb: &mut [E::Acc],
    (am, sa): (&[E], Strided),
    (bm, sb): (&[E], Strided),
    (cm, sc): (&mut [E], Strided),
) -> Result<()>
where
    E::Acc: Lanes,
{
    let nr = NV * <E::Acc as Lanes>::LANES;
    for p in 0..d.batch {
        let (ao, bo, co) = (
            sa.off + p * sa.batch,
            sb.off + p * sb.batch,
            sc.off + p * sc.batch,
        );
        for jc in (0..d.n).step_by(nc) {
            let ncb = nc.min(d.n - jc);
            for pc in (0..d.k).step_by(kc) {
                let kcb = kc.min(d.k - pc);
                let pb = pb.get_mut(..ncb.div_ceil(nr) * nr * kcb).ok_or(oob(0, 0))?;
                pack_b::<E>(pb, bm, bo + pc * sb.row + jc * sb.col, sb, kcb, ncb, nr)?;
                let how = if pc == 0 { mode } else { Store::Add };
                for ic in (0..d.m).step_by(mc) {
                    let mcb = mc.min(d.m - ic);
                    let pa = pa.get_mut(..mcb.div_ceil(MR) * MR * kcb).ok_or(oob(0, 0))?;
                    pack_a::<E>(pa, am, ao + ic * sa.row + pc * sa.col, sa, kcb, mcb)?;
                    for (jp, bpanel) in pb.chunks_exact(nr * kcb).enumerate() {
                        let jr = jp * nr;
                        let cols = nr.min(ncb - jr);
                        for (ip, apanel) in pa.chunks_exact(MR * kcb).enumerate() {
                            let ir = ip * MR;
                            let rows = MR.min(mcb - ir);
                            let acc = micro::<E::Acc>(apanel, bpanel);
                            let o = co + (ic + ir) * sc.row + (jc + jr) * sc.col;
                            store::<E>(&acc, cm, o, sc, rows, cols, alpha, how)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Packs rows `0..mcb` of A (from `base`, `kcb` columns) into MR-row panels: panel `q` holds
/// `a[q MR + i, kk]` at `kk * MR + i`, rows past `mcb` zero.
fn pack_a<E: Element>(
    dst: &mut [E::Acc],
    mem: &[E],
    base: usize,
    s: Strided,
    kcb: usize,
    mcb: usize,
) -> Result<()> {
    let zero = <E::Acc as Real>::zero();
    for (q, panel) in dst.chunks_exact_mut(MR * kcb).enumerate() {
        let i0 = q * MR;
        let rows = MR.min(mcb - i0);
        if rows < MR {
            panel.fill(zero);
        }
        if s.row == 1 && s.col != 1 {
            // A transposed: the panel's rows are contiguous for each kk.
            for (kk, chunk) in panel.chunks_exact_mut(MR).enumerate() {
                let at = base + i0 + kk * s.col;
                let src = mem.get(at..at + rows).ok_or(oob(mem.len(), at + rows))?;
                crate::lanes::widen::<E>(src, chunk);
            }
            continue;
        }
        for i in 0..rows {
            let r = base + (i0 + i) * s.row;
            let lane = panel.get_mut(i..).unwrap_or(&mut []);
            if s.col == 1 {
                let src = mem.get(r..r + kcb).ok_or(oob(mem.len(), r + kcb))?;
                spread::<E>(src, lane, MR);
            } else {
                for (kk, dv) in lane.iter_mut().step_by(MR).enumerate() {
                    let at = r + kk * s.col;
                    *dv = mem.get(at).ok_or(oob(mem.len(), at))?.to_acc();
                }
            }
        }
    }
    Ok(())
}

/// Packs columns `0..ncb` of B (from `base`, `kcb` rows) into `nr`-column panels: panel `q`
/// holds `b[kk, q nr + j]` at `kk * nr + j`, columns past `ncb` zero.
fn pack_b<E: Element>(
    dst: &mut [E::Acc],
    mem: &[E],
    base: usize,
    s: Strided,
    kcb: usize,
    ncb: usize,
    nr: usize,
) -> Result<()> {
    let zero = <E::Acc as Real>::zero();
    for (q, panel) in dst.chunks_exact_mut(nr * kcb).enumerate() {
        let j0 = q * nr;
        let cols = nr.min(ncb - j0);
        if cols < nr {
            panel.fill(zero);
        }
        if s.col == 1 {
            for (kk, chunk) in panel.chunks_exact_mut(nr).enumerate() {
                let at = base + kk * s.row + j0;
                let src = mem.get(at..at + cols).ok_or(oob(mem.len(), at + cols))?;
                crate::lanes::widen::<E>(src, chunk);
            }
            continue;
        }
        for j in 0..cols {
            let col = base + (j0 + j) * s.col;
            let lane = panel.get_mut(j..).unwrap_or(&mut []);
            if s.row == 1 {
                let src = mem.get(col..col + kcb).ok_or(oob(mem.len(), col + kcb))?;
                spread::<E>(src, lane, nr);
            } else {
                for (kk, dv) in lane.iter_mut().step_by(nr).enumerate() {
                    let at = col + kk * s.row;
                    *dv = mem.get(at).ok_or(oob(mem.len(), at))?.to_acc();
                }
            }
        }
    }
    Ok(())
}

/// Writes `src`, widened, to every `step`-th element of `dst` (one row or column of a panel):
/// a chunk at a time through [`crate::lanes::widen`] (F16C for f16 where the build has it).
#[inline]
fn spread<E: Element>(src: &[E], dst: &mut [E::Acc], step: usize) {
    let mut tmp = [<E::Acc as Real>::zero(); 64];
    let mut it = dst.iter_mut().step_by(step);
    for part in src.chunks(64) {
        crate::lanes::widen::<E>(part, &mut tmp);
        // `tmp` first: `zip` stops on it without taking one more slot of `it`.
        for (&x, d) in tmp.iter().take(part.len()).zip(&mut it) {
            *d = x;
        }
    }
}

/// The register tile: `acc[i][v] = sum_kk a[kk, i] * b[kk, v LANES ..]` over one packed A panel
/// (`kc x MR`) and one packed B panel (`kc x NV LANES`), `MR x NV` fused multiply-adds per kk.
#[inline(never)]
fn micro<A: Lanes>(a: &[A], b: &[A]) -> [[A::V; NV]; MR] {
    let l = A::LANES;
    let mut acc = [[A::V::splat(A::zero()); NV]; MR];
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NV * l)) {
        let bv: [A::V; NV] =
            core::array::from_fn(|v| A::V::load_or(bk.get(v * l..).unwrap_or(&[]), A::zero()));
        for (row, &x) in acc.iter_mut().zip(ak) {
            let xa = A::V::splat(x);
            for (r, &bvv) in row.iter_mut().zip(&bv) {
                *r = bvv.mul_add(xa, *r);
            }
        }
    }
    acc
}

/// Writes the `rows x cols` corner of a register tile into `c` at `o` (strides `s`):
/// `c = alpha acc (+ beta c | + c)`, rounded once to `E`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn store<E: Element>(
    acc: &[[<E::Acc as Lanes>::V; NV]; MR],
    cm: &mut [E],
    o: usize,
    s: Strided,
    rows: usize,
    cols: usize,
    alpha: E::Acc,
    how: Store<E::Acc>,
) -> Result<()>
where
    E::Acc: Lanes,
{
    let l = <E::Acc as Lanes>::LANES;
    let len = cm.len();
    // f32/f64 with unit column stride: whole vectors.
    if s.col == 1 && E::DTYPE == <E::Acc as Element>::DTYPE && cols == NV * l {
        let cm: &mut [E::Acc] = bytemuck::try_cast_slice_mut(cm).map_err(|_| oob(len, o))?;
        let va = <E::Acc as Lanes>::V::splat(alpha);
        for (i, row) in acc.iter().enumerate().take(rows) {
            let r = o + i * s.row;
            let dst = cm.get_mut(r..r + cols).ok_or(oob(len, r + cols))?;
            for (chunk, &x) in dst.chunks_exact_mut(l).zip(row) {
                let out = match how {
                    Store::Set => x * va,
                    Store::Scale(beta) => {
                        let old = <E::Acc as Lanes>::V::load_or(chunk, <E::Acc as Real>::zero());
                        old.mul_add(<E::Acc as Lanes>::V::splat(beta), x * va)
                    }
                    Store::Add => {
                        let old = <E::Acc as Lanes>::V::load_or(chunk, <E::Acc as Real>::zero());
                        x.mul_add(va, old)
                    }
                };
                out.store(chunk);
            }
        }
        return Ok(());
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        let r = o + i * s.row;
        for j in 0..cols {
            let x = row
                .get(j / l)
                .and_then(|v| v.lanes().get(j % l))
                .copied()
                .unwrap_or(<E::Acc as Real>::zero());
            let at = r + j * s.col;
            let slot = cm.get_mut(at).ok_or(oob(len, at))?;
            let mut out = alpha * x;
            match how {
                Store::Set => {}
                Store::Scale(beta) => out += beta * slot.to_acc(),
                Store::Add => out += slot.to_acc(),
            }
            *slot = E::from_acc(out);
        }
    }
    Ok(())
}
