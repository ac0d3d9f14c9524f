//! `gemm` through cuBLAS (`cublasGemmStridedBatchedEx`), loaded at run time like the driver and
//! NVRTC: when `libcublas.so` is there, every `gemm` whose operands cuBLAS can address (each
//! matrix with a unit stride on one axis and a leading dimension that does not overlap its
//! rows, batch strides anything, zero included) runs there; otherwise, and for the cases cuBLAS
//! treats differently from the reference (`alpha = 0`, `k = 0`), the crate's own kernel
//! (`kernels/gemm.cu`) runs.
//!
//! Numerics as the reference: f16 / bf16 / f32 accumulate in f32 (`CUBLAS_COMPUTE_32F`, no TF32;
//! `CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION`, so split-k partial sums stay f32 too), f64
//! in f64; `alpha * AB + beta * C` in the accumulation type, rounded once; `beta = 0` never reads
//! `C`.

use core::ffi::c_void;
use std::sync::Arc;

use cudarc::cublas::{CudaBlas, result, sys};
use cudarc::driver::CudaStream;
use seqcore::check::GemmDims;
use seqcore::{DType, Element, Layout};

/// cuBLAS on the backend's stream, or `None` where it could not be loaded.
pub(crate) struct Blas {
    blas: CudaBlas,
}

impl core::fmt::Debug for Blas {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("cuBLAS")
    }
}

impl Blas {
    /// A cuBLAS handle bound to `stream`; `None` when the library is missing or the handle
    /// cannot be made (never a panic: cudarc's loader panics on a missing library or symbol).
    pub(crate) fn new(stream: &Arc<CudaStream>) -> Option<Blas> {
        // SAFETY: only tries to dlopen cuBLAS under its usual names.
        if !unsafe { sys::is_culib_present() } {
            return None;
        }
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let blas = CudaBlas::new(stream.clone()).ok()?;
            // SAFETY: `blas`'s handle is live; the mode is a plain enum value.
            unsafe {
                sys::cublasSetMathMode(
                    *blas.handle(),
                    sys::cublasMath_t::CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION,
                )
            }
            .result()
            .ok()?;
            Some(Blas { blas })
        }))
        .ok()
        .flatten()
    }
}

/// One operand as cuBLAS sees it: a column-major stored matrix, transposed or not.
#[derive(Clone, Copy, Debug)]
struct Operand {
    op: sys::cublasOperation_t,
    ld: i32,
    batch_stride: i64,
    offset: usize,
}

/// The logical `r x c` matrix with row stride `rs` and column stride `cs` (in elements) as a
/// cuBLAS operand, when cuBLAS can address it: column-major (`rs = 1`, `ld = cs >= r`) as is, or
/// row-major (`cs = 1`, `ld = rs >= c`) transposed. An axis of extent 1 has any stride.
fn operand(r: usize, c: usize, rs: usize, cs: usize, bs: usize, offset: usize) -> Option<Operand> {
    let batch_stride = i64::try_from(bs).ok()?;
    let (rs1, cs1) = (rs == 1 || r == 1, cs == 1 || c == 1);
    let ld_n = if c == 1 { r.max(1) } else { cs };
    let ld_t = if r == 1 { c.max(1) } else { rs };
    let (op, ld) = if rs1 && ld_n >= r.max(1) {
        (sys::cublasOperation_t::CUBLAS_OP_N, ld_n)
    } else if cs1 && ld_t >= c.max(1) {
        (sys::cublasOperation_t::CUBLAS_OP_T, ld_t)
    } else {
        return None;
    };
    Some(Operand {
        op,
        ld: i32::try_from(ld).ok()?,
        batch_stride,
        offset,
    })
}

/// `(row stride, column stride, batch stride)` of a rank-2 or rank-3 matrix view.
fn strides(l: &Layout) -> Option<(usize, usize, usize)> {
    match *l.strides() {
        [r, c] => Some((r, c, 0)),
        [b, r, c] => Some((r, c, b)),
        _ => None,
    }
}

/// The cuBLAS call of one `gemm`: `(m, n, k)` as cuBLAS counts them and its two operands, or
/// `None` when cuBLAS cannot address the views (or `k = 0`, whose result cuBLAS may not write as
/// the reference does).
pub(crate) struct Plan {
    m: i32,
    n: i32,
    k: i32,
    batch: i32,
    first: Operand,
    second: Operand,
    c: Operand,
    /// Planned as `C^T = B^T A^T` (`first` is `b`).
    transposed: bool,
    /// cuBLAS's storage and compute types for the element type.
    dt: sys::cudaDataType,
    ct: sys::cublasComputeType_t,
}

/// Plans `c = a b` (row-major views) as a column-major cuBLAS product: `C` itself when it is
/// column-major (`C = A B`), or `C^T = B^T A^T` when it is row-major.
pub(crate) fn plan<T: Element>(d: &GemmDims, a: &Layout, b: &Layout, c: &Layout) -> Option<Plan> {
    if d.k == 0 || d.m == 0 || d.n == 0 || d.batch == 0 {
        return None;
    }
    let (dt, ct) = types::<T>()?;
    let (ar, ac, ab) = strides(a)?;
    let (br, bc, bb) = strides(b)?;
    let (cr, cc, cb) = strides(c)?;
    // C as stored column-major, no transpose (cuBLAS writes C only as is).
    let direct = operand(d.m, d.n, cr, cc, cb, c.offset())
        .filter(|o| o.op == sys::cublasOperation_t::CUBLAS_OP_N);
    let (m, n, first, second, cop, transposed) = if let Some(co) = direct {
        (
            d.m,
            d.n,
            operand(d.m, d.k, ar, ac, ab, a.offset())?,
            operand(d.k, d.n, br, bc, bb, b.offset())?,
            co,
            false,
        )
    } else {
        // C^T (n x m) is column-major when C is row-major.
        let co = operand(d.n, d.m, cc, cr, cb, c.offset())
            .filter(|o| o.op == sys::cublasOperation_t::CUBLAS_OP_N)?;
        (
            d.n,
            d.m,
            operand(d.n, d.k, bc, br, bb, b.offset())?,
            operand(d.k, d.m, ac, ar, ab, a.offset())?,
            co,
            true,
        )
    };
    Some(Plan {
        m: i32::try_from(m).ok()?,
        n: i32::try_from(n).ok()?,
        k: i32::try_from(d.k).ok()?,
        batch: i32::try_from(d.batch).ok()?,
        first,
        second,
        c: cop,
        transposed,
        dt,
        ct,
    })
}

/// The cuBLAS type codes of `T`: storage, compute.
fn types<T: Element>() -> Option<(sys::cudaDataType, sys::cublasComputeType_t)> {
    use sys::cublasComputeType_t::{CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_64F};
    use sys::cudaDataType::{CUDA_R_16BF, CUDA_R_16F, CUDA_R_32F, CUDA_R_64F};
    Some(match T::DTYPE {
        DType::F64 => (CUDA_R_64F, CUBLAS_COMPUTE_64F),
        DType::F32 => (CUDA_R_32F, CUBLAS_COMPUTE_32F),
        DType::F16 => (CUDA_R_16F, CUBLAS_COMPUTE_32F),
        DType::BF16 => (CUDA_R_16BF, CUBLAS_COMPUTE_32F),
        _ => return None,
    })
}

impl Blas {
    /// Enqueues `c = alpha a b + beta c` as planned, on the handle's stream. `a`, `b`, `c` are
    /// the device addresses of element 0 of each view's memory.
    ///
    /// # Errors
    /// cuBLAS's status name.
    pub(crate) fn gemm<T: Element>(
        &self,
        p: &Plan,
        alpha: f64,
        beta: f64,
        a: u64,
        b: u64,
        c: u64,
    ) -> Result<(), &'static str> {
        let (dt, ct) = (p.dt, p.ct);
        let size = size_of::<T>() as u64;
        let at = |base: u64, o: &Operand| base.wrapping_add((o.offset as u64).wrapping_mul(size));
        // The product is `first * second` in cuBLAS's column-major terms: `a b` when C was
        // planned as itself, `b^T a^T` when as its transpose.
        let (first, second) = if p.transposed { (b, a) } else { (a, b) };
        let (pf, ps, pc) = (at(first, &p.first), at(second, &p.second), at(c, &p.c));
        let (alpha32, beta32) = (f32::from_f64(alpha), f32::from_f64(beta));
        let (al, be): (*const c_void, *const c_void) = if T::DTYPE == DType::F64 {
            ((&raw const alpha).cast(), (&raw const beta).cast())
        } else {
            ((&raw const alpha32).cast(), (&raw const beta32).cast())
        };
        // SAFETY: the handle is live and bound to the backend's stream; `pa`, `pb`, `pc` are
        // addresses inside live allocations of the views' memories, and the plan's extents,
        // leading dimensions and batch strides are those of views whose every element was checked
        // to lie inside its allocation (`View` construction), so cuBLAS reads and writes only
        // those elements; `c`'s view never addresses an element twice; `alpha` / `beta` are host
        // scalars of the compute type (pointer mode host, cuBLAS's default) that outlive the call
        // (cuBLAS reads them before it returns).
        unsafe {
            result::gemm_strided_batched_ex(
                *self.blas.handle(),
                p.first.op,
                p.second.op,
                p.m,
                p.n,
                p.k,
                al,
                pf as *const c_void,
                dt,
                p.first.ld,
                p.first.batch_stride,
                ps as *const c_void,
                dt,
                p.second.ld,
                p.second.batch_stride,
                be,
                pc as *mut c_void,
                dt,
                p.c.ld,
                p.c.batch_stride,
                p.batch,
                ct,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| crate::error::intern(std::format!("cuBLAS: {:?}", e.0)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    use super::*;
    use seqcore::{Backend, Reference, View, ViewMut};

    /// What cuBLAS computes for `p` (its column-major definition), on the host.
    fn emulate(p: &Plan, a: &[f64], b: &[f64], c: &mut [f64], alpha: f64, beta: f64) {
        let (first, second) = if p.transposed { (b, a) } else { (a, b) };
        let at = |x: &[f64], o: &Operand, batch: usize, r: usize, col: usize| {
            let base = o.offset + batch * o.batch_stride as usize;
            let ld = o.ld as usize;
            if o.op == sys::cublasOperation_t::CUBLAS_OP_N {
                x[base + r + col * ld]
            } else {
                x[base + col + r * ld]
            }
        };
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        for batch in 0..p.batch as usize {
            for i in 0..m {
                for j in 0..n {
                    let s: f64 = (0..k)
                        .map(|l| {
                            at(first, &p.first, batch, i, l) * at(second, &p.second, batch, l, j)
                        })
                        .sum();
                    let ci =
                        p.c.offset + batch * p.c.batch_stride as usize + i + j * p.c.ld as usize;
                    c[ci] = alpha * s + if beta == 0.0 { 0.0 } else { beta * c[ci] };
                }
            }
        }
    }

    fn layout(shape: [usize; 3], transposed: bool, offset: usize) -> Layout {
        let [bt, r, c] = shape;
        let l = if transposed {
            Layout::contiguous(&[bt, c, r])
                .unwrap()
                .transpose(1, 2)
                .unwrap()
        } else {
            Layout::contiguous(&[bt, r, c]).unwrap()
        };
        Layout::new(offset, l.shape(), l.strides()).unwrap()
    }

    #[test]
    fn every_plan_computes_the_reference_product() {
        let mut planned = 0;
        for (bt, m, n, k) in [
            (1, 1, 1, 1),
            (1, 7, 5, 3),
            (3, 4, 9, 6),
            (2, 6, 1, 5),
            (1, 1, 8, 2),
            (2, 3, 4, 1),
        ] {
            for flags in 0..16u32 {
                let bit = |i: u32| flags & (1 << i) != 0;
                let la = layout([bt, m, k], bit(0), 3);
                let lb = if bit(3) {
                    let one = layout([1, k, n], bit(1), 5);
                    let s = one.strides();
                    Layout::new(one.offset(), &[bt, k, n], &[0, s[1], s[2]]).unwrap()
                } else {
                    layout([bt, k, n], bit(1), 5)
                };
                let lc = layout([bt, m, n], bit(2), 1);
                let vals = |len: usize, seed: usize| -> Vec<f64> {
                    (0..len)
                        .map(|i| ((i * 31 + seed * 17) % 13) as f64 - 6.0)
                        .collect()
                };
                let a = vals(bt * m * k + 3, 1);
                let b = vals(bt * k * n + 5, 2);
                let c0 = vals(bt * m * n + 1, 3);
                let d = seqcore::check::gemm(&la, &lb, &lc).unwrap();
                let p = plan::<f64>(&d, &la, &lb, &lc).expect("a layout cuBLAS takes");
                planned += 1;
                let mut want = c0.clone();
                let r = Reference;
                r.gemm(
                    0.5,
                    View::new(a.as_slice(), la).unwrap(),
                    View::new(b.as_slice(), lb).unwrap(),
                    2.0,
                    ViewMut::new(want.as_mut_slice(), lc).unwrap(),
                )
                .unwrap();
                let mut got = c0.clone();
                emulate(&p, &a, &b, &mut got, 0.5, 2.0);
                assert_eq!(got, want, "bt={bt} m={m} n={n} k={k} flags={flags:04b}");
            }
        }
        assert_eq!(planned, 6 * 16);
        // Overlapping rows (a row stride smaller than the row) and two non-unit strides are
        // left to the crate's kernel.
        let la = Layout::new(0, &[4, 3], &[1, 2]).unwrap();
        let lb = Layout::contiguous(&[3, 2]).unwrap();
        let lc = Layout::contiguous(&[4, 2]).unwrap();
        let d = seqcore::check::gemm(&la, &lb, &lc).unwrap();
        assert!(plan::<f64>(&d, &la, &lb, &lc).is_none());
        let la = Layout::new(0, &[4, 3], &[6, 2]).unwrap();
        assert!(plan::<f64>(&d, &la, &lb, &lc).is_none());
    }
}
