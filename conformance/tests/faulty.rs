//! The suite catches broken backends. Each backend here hands every call to the reference but
//! breaks one kernel the way a real bug would; `check_backend` must fail that kernel's row with
//! the kind of failure the fault calls for, and pass every other row.
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

use seq_conformance::{Config, Failure, check_backend};
use seqcore::{
    Backend, Binary, DType, Element, Reduce, Reference, Result, Scalar, SoftmaxKind, Unary, View,
    ViewMut,
};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// softmax writes one element past its output view.
    SoftmaxWritesPastEnd,
    /// unary leaves the last element unwritten.
    UnarySkipsLast,
    /// gemm is off by a relative 1e-4 (f32 needs 1e-7).
    GemmInaccurate,
    /// gemm rounds every partial sum to the element type (f16 overflows).
    GemmAccumulatesInT,
    /// top_k breaks ties towards the higher index.
    TopKTiesHigh,
    /// max reduction drops NaN.
    MaxDropsNan,
    /// softmax gives NaN on a fully masked row, as plain `torch.softmax` does.
    SoftmaxNanOnMaskedRow,
    /// binary accepts operands of different shapes.
    BinaryAcceptsMismatch,
}

#[derive(Debug)]
struct Faulty(Fault);

fn r<'a, T: Scalar>(v: View<'a, Faulty, T>) -> View<'a, Reference, T> {
    View::new(v.mem(), *v.layout()).expect("same memory")
}

fn rm<'a, T: Scalar>(v: ViewMut<'a, Faulty, T>) -> ViewMut<'a, Reference, T> {
    let (mem, l) = v.into_parts();
    ViewMut::new(mem, l).expect("same memory")
}

impl Backend for Faulty {
    type Mem<T: Scalar> = [T];
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn mem_len<T: Scalar>(mem: &[T]) -> usize {
        mem.len()
    }
    fn write<T: Scalar>(&self, src: &[T], dst: &mut [T]) -> Result<()> {
        Reference.write(src, dst)
    }
    fn read<T: Scalar>(&self, src: &[T], dst: &mut [T]) -> Result<()> {
        Reference.read(src, dst)
    }
    // Host memory: the fused kernels' portable bodies run on it (as on the reference).
    fn host<T: Scalar>(mem: &[T]) -> Option<&[T]> {
        Some(mem)
    }
    fn host_mut<T: Scalar>(mem: &mut [T]) -> Option<&mut [T]> {
        Some(mem)
    }

    fn gemm<T: Element>(
        &self,
        alpha: f64,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        beta: f64,
        c: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        let (mem, l) = c.into_parts();
        match self.0 {
            Fault::GemmInaccurate => {
                Reference.gemm(alpha, r(a), r(b), beta, ViewMut::new(&mut *mem, l)?)?;
                for o in l.offsets() {
                    mem[o] = T::from_f64(mem[o].to_f64() * (1.0 + 1e-4));
                }
                Ok(())
            }
            Fault::GemmAccumulatesInT if a.shape().len() == 2 => {
                seqcore::check::finite("alpha", alpha)?;
                seqcore::check::finite("beta", beta)?;
                seqcore::check::gemm(a.layout(), b.layout(), &l)?;
                // c[i][j] = alpha * sum_k a[i][k] b[k][j], every partial sum stored as T.
                let (m, k) = (a.shape()[0], a.shape()[1]);
                let n = b.shape()[1];
                for i in 0..m {
                    for j in 0..n {
                        let mut s = T::from_f64(0.0);
                        for kk in 0..k {
                            let av = a.mem()[a.layout().select(0, i)?.select(0, kk)?.offset()];
                            let bv = b.mem()[b.layout().select(0, kk)?.select(0, j)?.offset()];
                            s = T::from_f64(s.to_f64() + av.to_f64() * bv.to_f64());
                        }
                        let o = l.select(0, i)?.select(0, j)?.offset();
                        let prev = if beta != 0.0 {
                            beta * mem[o].to_f64()
                        } else {
                            0.0
                        };
                        mem[o] = T::from_f64(alpha * s.to_f64() + prev);
                    }
                }
                Ok(())
            }
            _ => Reference.gemm(alpha, r(a), r(b), beta, ViewMut::new(mem, l)?),
        }
    }

    fn softmax<T: Element>(
        &self,
        kind: SoftmaxKind,
        x: View<'_, Self, T>,
        mask: Option<View<'_, Self, T>>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        let (mem, l) = y.into_parts();
        Reference.softmax(kind, r(x), mask.map(r), ViewMut::new(&mut *mem, l)?)?;
        match self.0 {
            Fault::SoftmaxWritesPastEnd => {
                if let Some(v) = mem.get_mut(l.end()) {
                    *v = T::from_f64(0.0);
                }
            }
            Fault::SoftmaxNanOnMaskedRow => {
                let (rows, n, s) = l.split_last();
                for o in rows.offsets() {
                    if n > 0
                        && (0..n).all(|j| {
                            mem[o + j * s].to_f64() == 0.0
                                || mem[o + j * s].to_f64() == f64::NEG_INFINITY
                        })
                    {
                        for j in 0..n {
                            mem[o + j * s] = T::from_f64(f64::NAN);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn unary<T: Element>(
        &self,
        op: Unary,
        x: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        if self.0 == Fault::UnarySkipsLast {
            seqcore::check::shape("y", y.layout(), x.shape())?;
            let n = x.layout().numel();
            if n > 0 {
                // Flatten by narrowing the first axis; if rank 0, there is nothing to skip.
                let (mem, l) = y.into_parts();
                let first = l.shape().first().copied().unwrap_or(1);
                if first > 1 {
                    return Reference.unary(
                        op,
                        r(x).narrow(0, 0, first - 1)?,
                        ViewMut::new(mem, l.narrow(0, 0, first - 1)?)?,
                    );
                }
                return Ok(());
            }
            return Reference.unary(op, r(x), rm(y));
        }
        Reference.unary(op, r(x), rm(y))
    }

    fn binary<T: Element>(
        &self,
        op: Binary,
        a: View<'_, Self, T>,
        b: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        if self.0 == Fault::BinaryAcceptsMismatch && a.shape() != b.shape() {
            return Ok(());
        }
        Reference.binary(op, r(a), r(b), rm(y))
    }

    fn reduce<T: Element>(
        &self,
        op: Reduce,
        x: View<'_, Self, T>,
        y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        if self.0 == Fault::MaxDropsNan && op == Reduce::Max {
            // NaN never compares greater, so a plain running max skips it.
            let (mem, l) = y.into_parts();
            seqcore::check::rows(x.layout(), "y", &l, None)?;
            let (rows, n, s) = x.layout().split_last();
            for (xo, yo) in rows.offsets().zip(l.offsets()) {
                let mut m = f64::NEG_INFINITY;
                for j in 0..n {
                    let v = x.mem()[xo + j * s].to_f64();
                    if v > m {
                        m = v;
                    }
                }
                mem[yo] = T::from_f64(m);
            }
            return Ok(());
        }
        Reference.reduce(op, r(x), rm(y))
    }

    fn cast<S: Element, D: Element>(
        &self,
        x: View<'_, Self, S>,
        y: ViewMut<'_, Self, D>,
    ) -> Result<()> {
        Reference.cast(r(x), rm(y))
    }

    fn top_k<T: Element>(
        &self,
        k: usize,
        x: View<'_, Self, T>,
        values: ViewMut<'_, Self, T>,
        indices: ViewMut<'_, Self, u32>,
    ) -> Result<()> {
        if self.0 != Fault::TopKTiesHigh {
            return Reference.top_k(k, r(x), rm(values), rm(indices));
        }
        // Reverse each row, take the reference's top-k, and map indices back: ties now go high.
        let last = x.layout().rank().saturating_sub(1);
        let n = x.shape().get(last).copied().unwrap_or(0);
        let xr = x.layout();
        let s = xr.strides().get(last).copied().unwrap_or(0);
        if n == 0 || x.layout().rank() == 0 {
            return Reference.top_k(k, r(x), rm(values), rm(indices));
        }
        let mut st = xr.strides().to_vec();
        st[last] = 0;
        // A reversed view needs a negative stride; copy the rows instead.
        let mut rev = vec![T::from_f64(0.0); xr.numel()];
        let (rows, _, _) = xr.split_last();
        for (ri, o) in rows.offsets().enumerate() {
            for j in 0..n {
                rev[ri * n + (n - 1 - j)] = x.mem()[o + j * s];
            }
        }
        let rv = View::<Reference, T>::new(&rev, seqcore::Layout::contiguous(x.shape())?)?;
        let (imem, il) = indices.into_parts();
        Reference.top_k(k, rv, rm(values), ViewMut::new(&mut *imem, il)?)?;
        for o in il.offsets() {
            imem[o] = (n - 1) as u32 - imem[o];
        }
        Ok(())
    }
}

impl seqcore::Allocate for Faulty {
    type Buffer<T: Scalar> = Vec<T>;
    fn alloc<T: Scalar>(&self, len: usize) -> Result<Vec<T>> {
        Reference.alloc(len)
    }
}

/// Runs the suite on `fault` and returns the failing rows as (kernel, dtype, failure).
fn failing(fault: Fault, dtypes: &[DType]) -> Vec<(&'static str, DType, Failure)> {
    let report = check_backend(
        &Faulty(fault),
        &Config {
            cases: 24,
            dtypes: dtypes.to_vec(),
            ..Config::default()
        },
    );
    report
        .rows
        .into_iter()
        .filter(|r| !r.passed())
        .map(|r| {
            (
                r.kernel,
                r.dtype,
                r.first_failure.expect("a failing row names its failure").1,
            )
        })
        .collect()
}

fn only(fault: Fault, dtypes: &[DType], kernel: &str, what: impl Fn(&Failure) -> bool) {
    let rows = failing(fault, dtypes);
    assert!(!rows.is_empty(), "{fault:?} went unnoticed");
    for (k, dt, f) in &rows {
        assert!(k.contains(kernel), "{fault:?} failed `{k}` {dt} too: {f}");
        assert!(
            what(f),
            "{fault:?} failed `{k}` {dt} for another reason: {f}"
        );
    }
}

#[test]
fn a_write_past_the_output_is_caught_by_the_guard() {
    only(Fault::SoftmaxWritesPastEnd, &[DType::F32], "softmax", |f| {
        matches!(f, Failure::Guard { .. })
    });
    // Also for log_softmax, which shares the kernel.
    let rows = failing(Fault::SoftmaxWritesPastEnd, &[DType::F32]);
    assert!(rows.iter().any(|r| r.0 == "log_softmax"));
}

#[test]
fn an_unwritten_element_is_caught_by_the_poison() {
    only(Fault::UnarySkipsLast, &[DType::BF16], "unary", |f| {
        matches!(f, Failure::Unwritten { .. })
    });
}

#[test]
fn an_inaccurate_gemm_fails_its_tolerance() {
    only(
        Fault::GemmInaccurate,
        &[DType::F32, DType::F64],
        "gemm",
        |f| matches!(f, Failure::Tolerance { .. }),
    );
    // bf16 rounding (2^-8) hides a 1e-4 error: the bound is per type, not one constant.
    assert!(failing(Fault::GemmInaccurate, &[DType::BF16]).is_empty());
}

#[test]
fn accumulating_f16_in_f16_is_caught() {
    only(Fault::GemmAccumulatesInT, &[DType::F16], "gemm", |f| {
        matches!(
            f,
            Failure::Structure { .. } | Failure::Tolerance { .. } | Failure::Nmse { .. }
        )
    });
}

#[test]
fn wrong_tie_breaking_is_caught_exactly() {
    only(Fault::TopKTiesHigh, &[DType::F32], "top_k", |f| {
        matches!(f, Failure::Discrete { .. })
    });
}

#[test]
fn dropping_nan_is_caught_structurally() {
    only(Fault::MaxDropsNan, &[DType::F64], "reduce", |f| {
        matches!(f, Failure::Structure { .. })
    });
}

#[test]
fn nan_on_a_fully_masked_row_is_caught() {
    only(
        Fault::SoftmaxNanOnMaskedRow,
        &[DType::F32],
        "softmax",
        |f| matches!(f, Failure::Structure { .. }),
    );
}

#[test]
fn accepting_bad_input_is_caught() {
    only(
        Fault::BinaryAcceptsMismatch,
        &[DType::F16],
        "rejection",
        |f| matches!(f, Failure::Rejection { .. }),
    );
}
