//! Kernel parameters as the CUDA sources declare them, and launch shapes.

use cudarc::driver::{DeviceRepr, LaunchConfig};
use seqcore::{Error, Layout, MAX_RANK, Result};

/// `struct Lay` of `kernels/common.cuh`: a strided layout in elements, every field 64-bit so that
/// the C and Rust layouts agree without padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Lay {
    off: i64,
    rank: i64,
    shape: [i64; MAX_RANK],
    stride: [i64; MAX_RANK],
}

// SAFETY: `Lay` is `repr(C)`, made of `i64`s only (no padding, no pointers), and matches
// `struct Lay` in `kernels/common.cuh` field for field; the driver copies it by value.
unsafe impl DeviceRepr for Lay {}

/// `struct GemmP` of `kernels/gemm.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GemmP {
    pub(crate) a: [i64; 4],
    pub(crate) b: [i64; 4],
    pub(crate) c: [i64; 4],
    pub(crate) batch: i64,
    pub(crate) m: i64,
    pub(crate) n: i64,
    pub(crate) k: i64,
    pub(crate) alpha: f64,
    pub(crate) beta: f64,
}

// SAFETY: `repr(C)`, 8-byte fields only (no padding), field for field `struct GemmP` of
// `kernels/gemm.cu` (the arrays are its `off, bs, rs, cs` quadruples).
unsafe impl DeviceRepr for GemmP {}

/// `x` as the kernels' signed 64-bit index.
pub(crate) fn i(x: usize) -> Result<i64> {
    i64::try_from(x).map_err(|_| Error::Overflow { arg: "layout" })
}

/// The kernel form of `l`.
pub(crate) fn lay(l: &Layout) -> Result<Lay> {
    let mut out = Lay {
        off: i(l.offset())?,
        rank: i(l.rank())?,
        ..Lay::default()
    };
    for ((d, s), (&n, &st)) in out
        .shape
        .iter_mut()
        .zip(out.stride.iter_mut())
        .zip(l.shape().iter().zip(l.strides()))
    {
        *d = i(n)?;
        *s = i(st)?;
    }
    Ok(out)
}

/// The kernel form of `l` for the elementwise kernels, which address element `i` of an operand
/// by `offset_of`: a contiguous layout is passed as rank 0 (`offset_of` is then `off + i`, no
/// index division per element), any other as [`lay`].
pub(crate) fn flat(l: &Layout) -> Result<Lay> {
    if l.is_contiguous() {
        Ok(Lay {
            off: i(l.offset())?,
            ..Lay::default()
        })
    } else {
        lay(l)
    }
}

/// Threads per block of every kernel.
pub(crate) const THREADS: u32 = 256;

/// Most blocks along one grid axis (the kernels loop over the rest).
const MAX_BLOCKS: usize = 65_535;

fn blocks(n: usize) -> u32 {
    u32::try_from(n.clamp(1, MAX_BLOCKS)).unwrap_or(1)
}

/// One thread per element (grid-stride beyond the grid).
pub(crate) fn elementwise(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks(n.div_ceil(256)), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row.
pub(crate) fn rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks(rows), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per 64 x 64 tile of `c`, per batch entry.
pub(crate) fn gemm(batch: usize, m: usize, n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (
            blocks(n.div_ceil(64)),
            blocks(m.div_ceil(64)),
            blocks(batch),
        ),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `struct AttnP` of `kernels/attention.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AttnP {
    pub(crate) q: Lay,
    pub(crate) k: Lay,
    pub(crate) v: Lay,
    pub(crate) o: Lay,
    pub(crate) mask: Lay,
    pub(crate) bias: Lay,
    pub(crate) lse: Lay,
    /// `batch, hq, hkv, lq, lk, d, dv, query_offset, window (0: none), causal, has_mask,
    /// has_bias, has_lse, has_cap`, in this order.
    pub(crate) ints: [i64; 14],
    pub(crate) scale: f64,
    pub(crate) cap: f64,
}

// SAFETY: `repr(C)`, 8-byte fields only (no padding), field for field `struct AttnP` of
// `kernels/attention.cu` (`ints` are its fourteen `i64`s, in order).
unsafe impl DeviceRepr for AttnP {}

/// Largest dynamic shared memory a block may ask for without opting in.
pub(crate) const SHARED_DEFAULT: usize = 48 * 1024;

/// The generic attention kernel: warps of one query row each, `per_warp` bytes of shared
/// memory per warp. `None` when even one warp's share does not fit.
pub(crate) fn attention(rows: usize, per_warp: usize) -> Option<LaunchConfig> {
    let warps = if per_warp.saturating_mul(4) <= SHARED_DEFAULT {
        4
    } else if per_warp <= SHARED_DEFAULT {
        1
    } else {
        return None;
    };
    Some(LaunchConfig {
        grid_dim: (blocks(rows.div_ceil(warps)), 1, 1),
        block_dim: (u32::try_from(32 * warps).unwrap_or(32), 1, 1),
        shared_mem_bytes: u32::try_from(per_warp * warps).unwrap_or(0),
    })
}

/// The tensor-core attention kernel: one block of 128 threads per 64 query rows of one head.
pub(crate) fn flash(batch_heads: usize, len_q: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks(len_q.div_ceil(64)), blocks(batch_heads), 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    }
}
