//! Bad input: every backend must reject the calls below, with the error the reference gives
//! (PyTorch's `error_inputs` idea). All checks go through `seqcore::check`, so a backend that uses
//! it rejects exactly what the reference rejects.

use seqcore::{Allocate, Binary, Element, Error, Reduce, Reference, SoftmaxKind, Unary};

use crate::Failure;
use crate::harness::{Input, Output, Tensor};

/// One bad call: its name and a runner generic over the backend.
type Call<B, T> = (
    &'static str,
    fn(&B) -> Result<Result<(), Error>, Failure>,
    core::marker::PhantomData<T>,
);

fn input<B: Allocate, T: Element>(b: &B, shape: &[usize]) -> Result<Input<B, T>, Failure> {
    let n = shape.iter().product();
    Input::new(
        b,
        &Tensor::contiguous(shape, (0..n).map(|i| i as f64).collect())?,
    )
}

fn output<B: Allocate, T: Element>(b: &B, shape: &[usize]) -> Result<Output<B, T>, Failure> {
    Output::new(
        b,
        &seqcore::Layout::contiguous(shape).map_err(Failure::setup)?,
        None,
    )
}

fn output_u32<B: Allocate>(b: &B, shape: &[usize]) -> Result<Output<B, u32>, Failure> {
    Output::new(
        b,
        &seqcore::Layout::contiguous(shape).map_err(Failure::setup)?,
        None,
    )
}

macro_rules! calls {
    ($( $name:literal => |$b:ident| $body:expr ),* $(,)?) => {
        fn table<B: Allocate, T: Element>() -> Vec<Call<B, T>> {
            vec![$( ($name, |$b: &B| -> Result<Result<(), Error>, Failure> { Ok($body) }, core::marker::PhantomData) ),*]
        }
    };
}

calls! {
    "softmax: y of another shape" => |b| {
        let x = input::<B, T>(b, &[2, 3])?; let mut y = output::<B, T>(b, &[3, 2])?;
        b.softmax(SoftmaxKind::Softmax, x.view()?, None, y.view()?)
    },
    "softmax: mask of another shape" => |b| {
        let x = input::<B, T>(b, &[2, 3])?; let m = input::<B, T>(b, &[2, 4])?; let mut y = output::<B, T>(b, &[2, 3])?;
        b.softmax(SoftmaxKind::LogSoftmax, x.view()?, Some(m.view()?), y.view()?)
    },
    "gemm: k differs" => |b| {
        let a = input::<B, T>(b, &[2, 3])?; let x = input::<B, T>(b, &[4, 2])?; let mut c = output::<B, T>(b, &[2, 2])?;
        b.gemm(1.0, a.view()?, x.view()?, 0.0, c.view()?)
    },
    "gemm: rank 1" => |b| {
        let a = input::<B, T>(b, &[3])?; let x = input::<B, T>(b, &[3])?; let mut c = output::<B, T>(b, &[1])?;
        b.gemm(1.0, a.view()?, x.view()?, 0.0, c.view()?)
    },
    "gemm: batch differs" => |b| {
        let a = input::<B, T>(b, &[2, 2, 3])?; let x = input::<B, T>(b, &[3, 3, 2])?; let mut c = output::<B, T>(b, &[2, 2, 2])?;
        b.gemm(1.0, a.view()?, x.view()?, 0.0, c.view()?)
    },
    "gemm: NaN alpha" => |b| {
        let a = input::<B, T>(b, &[2, 3])?; let x = input::<B, T>(b, &[3, 2])?; let mut c = output::<B, T>(b, &[2, 2])?;
        b.gemm(f64::NAN, a.view()?, x.view()?, 0.0, c.view()?)
    },
    "gemm: infinite beta" => |b| {
        let a = input::<B, T>(b, &[2, 3])?; let x = input::<B, T>(b, &[3, 2])?; let mut c = output::<B, T>(b, &[2, 2])?;
        b.gemm(1.0, a.view()?, x.view()?, f64::INFINITY, c.view()?)
    },
    "unary: NaN scale" => |b| {
        let x = input::<B, T>(b, &[4])?; let mut y = output::<B, T>(b, &[4])?;
        b.unary(Unary::Scale(f64::NAN), x.view()?, y.view()?)
    },
    "unary: y of another shape" => |b| {
        let x = input::<B, T>(b, &[4])?; let mut y = output::<B, T>(b, &[2, 2])?;
        b.unary(Unary::Exp, x.view()?, y.view()?)
    },
    "binary: b of another shape" => |b| {
        let x = input::<B, T>(b, &[2, 3])?; let z = input::<B, T>(b, &[3, 2])?; let mut y = output::<B, T>(b, &[2, 3])?;
        b.binary(Binary::Add, x.view()?, z.view()?, y.view()?)
    },
    "reduce: y keeps the reduced axis" => |b| {
        let x = input::<B, T>(b, &[2, 3])?; let mut y = output::<B, T>(b, &[2, 3])?;
        b.reduce(Reduce::Sum, x.view()?, y.view()?)
    },
    "cast: y of another shape" => |b| {
        let x = input::<B, T>(b, &[2, 3])?; let mut y = output::<B, f32>(b, &[6])?;
        b.cast(x.view()?, y.view()?)
    },
    "top_k: k above n" => |b| {
        let x = input::<B, T>(b, &[2, 3])?; let mut v = output::<B, T>(b, &[2, 4])?; let mut i = output_u32(b, &[2, 4])?;
        b.top_k(4, x.view()?, v.view()?, i.view()?)
    },
    "top_k: indices of another shape" => |b| {
        let x = input::<B, T>(b, &[2, 3])?; let mut v = output::<B, T>(b, &[2, 2])?; let mut i = output_u32(b, &[2, 3])?;
        b.top_k(2, x.view()?, v.view()?, i.view()?)
    },
}

/// Runs every bad call on `b` in `T`: each must be rejected with the reference's error.
///
/// # Errors
/// [`Failure::Rejection`] for the first call answered otherwise.
pub fn check<B: Allocate, T: Element>(b: &B) -> Result<usize, Failure> {
    let theirs = table::<B, T>();
    let ours = table::<Reference, T>();
    for ((call, run, _), (_, reference, _)) in theirs.iter().zip(&ours) {
        let got = run(b)?.err();
        let expected = reference(&Reference)?.err();
        if expected.is_none() || got != expected {
            let text = |e: Option<Error>| e.map(|e| e.to_string());
            return Err(Failure::Rejection {
                call,
                expected: text(expected),
                got: text(got),
            });
        }
    }
    Ok(theirs.len())
}
