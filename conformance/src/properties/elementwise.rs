//! Elementwise maps of one and two operands, and casts.

use proptest::prelude::*;
use seqcore::{Allocate, Backend, Binary, Element, Reference, Unary};

use super::{Bench, Work, bytes, expected_in, gate, out_layout};
use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, Tensor, round, widen};
use crate::strategies::{Specials, Storage, dim, storage, tensor};
use crate::{Failure, tolerance};

/// One `y = op(x)` call.
#[derive(Clone, Debug, PartialEq)]
pub struct UnaryCase {
    /// The map.
    pub op: Unary,
    /// The operand.
    pub x: Tensor,
    /// How `y` is laid out.
    pub y: Storage,
}

/// Runs `case` on `b` in `T` and compares with the f64 reference.
///
/// # Errors
/// The first [`Failure`].
pub fn check_unary<B: Allocate, T: Element>(b: &B, case: &UnaryCase) -> Result<Agreement, Failure> {
    let shape = case.x.shape().to_vec();
    let x = case.x.rounded::<T>();
    let r = Reference;
    let mut want = vec![0.0f64; x.len()];
    r.unary(
        case.op,
        r.view(&x, &shape).map_err(Failure::setup)?,
        r.view_mut(&mut want, &shape).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let xin = Input::<B, T>::new(b, &case.x)?;
    let mut out = Output::<B, T>::new(b, &out_layout(&shape, case.y)?, None)?;
    b.unary(case.op, xin.view()?, out.view()?)
        .map_err(Failure::Kernel)?;
    let got = widen(&out.finish(b, "y")?);
    let bound = |i: usize| tolerance::unary::<T>(case.op, x.get(i).copied().unwrap_or(0.0));
    let a = compare("y", &got, &expected_in::<T>(&want), bound)?;
    gate("y", a, tolerance::nmse_max::<T>())
}

/// One `y = op(a, b)` call.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryCase {
    /// The map.
    pub op: Binary,
    /// First operand.
    pub a: Tensor,
    /// Second operand, possibly broadcast (zero strides).
    pub b: Tensor,
    /// How `y` is laid out.
    pub y: Storage,
}

/// Runs `case` on `bk` in `T` and compares with the f64 reference.
///
/// # Errors
/// The first [`Failure`].
pub fn check_binary<B: Allocate, T: Element>(
    bk: &B,
    case: &BinaryCase,
) -> Result<Agreement, Failure> {
    let shape = case.a.shape().to_vec();
    let (a, b) = (case.a.rounded::<T>(), case.b.rounded::<T>());
    let r = Reference;
    let mut want = vec![0.0f64; a.len()];
    r.binary(
        case.op,
        r.view(&a, &shape).map_err(Failure::setup)?,
        r.view(&b, &shape).map_err(Failure::setup)?,
        r.view_mut(&mut want, &shape).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let ain = Input::<B, T>::new(bk, &case.a)?;
    let bin = Input::<B, T>::new(bk, &case.b)?;
    let mut out = Output::<B, T>::new(bk, &out_layout(&shape, case.y)?, None)?;
    bk.binary(case.op, ain.view()?, bin.view()?, out.view()?)
        .map_err(Failure::Kernel)?;
    let got = widen(&out.finish(bk, "y")?);
    let bd = tolerance::binary::<T>();
    let a = compare("y", &got, &expected_in::<T>(&want), |_| bd)?;
    gate("y", a, tolerance::nmse_max::<T>())
}

/// Converts `case.x` from `S` to `D` on `b`: every element must equal the once-rounded value.
///
/// # Errors
/// The first [`Failure`].
pub fn check_cast<B: Allocate, S: Element, D: Element>(
    b: &B,
    x: &Tensor,
    y: Storage,
) -> Result<Agreement, Failure> {
    let xs = x.rounded::<S>();
    let xin = Input::<B, S>::new(b, x)?;
    let mut out = Output::<B, D>::new(b, &out_layout(x.shape(), y)?, None)?;
    b.cast(xin.view()?, out.view()?).map_err(Failure::Kernel)?;
    let got = widen(&out.finish(b, "y")?);
    let want: Vec<f64> = xs.iter().map(|&v| round::<D>(v)).collect();
    compare("y", &got, &want, |_| Bound::EXACT)
}

/// Every parameterless map, and the two with a constant.
pub fn unary_op() -> impl Strategy<Value = Unary> {
    prop_oneof![
        8 => proptest::sample::select(Unary::ALL.to_vec()),
        1 => (-4.0f64..4.0).prop_map(Unary::Scale),
        1 => (-4.0f64..4.0).prop_map(Unary::AddScalar),
    ]
}

/// Shapes of rank 1 to 3, awkward extents.
pub fn shape() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(dim(40), 1..=3)
}

/// Values that reach every special: NaN, infinities, huge, tiny, subnormal.
pub const ALL_SPECIALS: Specials = Specials {
    neg_inf: true,
    pos_inf: true,
    nan: true,
    huge: true,
};

/// Unary cases.
pub fn unary_cases() -> impl Strategy<Value = UnaryCase> {
    (unary_op(), shape(), storage()).prop_flat_map(|(op, s, y)| {
        tensor(s, 6.0, ALL_SPECIALS).prop_map(move |x| UnaryCase { op, x, y })
    })
}

/// Binary cases; `b` is sometimes broadcast along its last axis.
pub fn binary_cases() -> impl Strategy<Value = BinaryCase> {
    (
        proptest::sample::select(Binary::ALL.to_vec()),
        shape(),
        storage(),
        any::<bool>(),
    )
        .prop_flat_map(|(op, s, y, bcast)| {
            let mut bs = s.clone();
            if bcast {
                if let Some(l) = bs.last_mut() {
                    *l = 1;
                }
            }
            let full = s.clone();
            (tensor(s, 4.0, ALL_SPECIALS), tensor(bs, 4.0, ALL_SPECIALS)).prop_map(move |(a, b)| {
                let b = if bcast {
                    expand(&b, &full).unwrap_or(b)
                } else {
                    b
                };
                BinaryCase { op, a, b, y }
            })
        })
}

fn expand(t: &Tensor, shape: &[usize]) -> Option<Tensor> {
    let layout = t.layout.expand(shape).ok()?;
    let n = t.shape().last().copied().unwrap_or(1);
    let last = shape.last().copied().unwrap_or(1);
    // Only the last axis is broadcast here: each value repeats `last` times.
    let values = if n == 1 {
        t.values
            .iter()
            .flat_map(|&v| core::iter::repeat_n(v, last))
            .collect()
    } else {
        t.values.clone()
    };
    Tensor::with_layout(layout, t.buffer_len, values).ok()
}

/// Cast inputs: any values, any layout.
pub fn cast_inputs() -> impl Strategy<Value = (Tensor, Storage)> {
    (shape(), storage())
        .prop_flat_map(|(s, y)| tensor(s, 1e3, ALL_SPECIALS).prop_map(move |x| (x, y)))
}

/// Fixed unary edge cases: every map over a sweep of [-20, 20] and the specials.
///
/// # Errors
/// Never.
pub fn unary_edge_cases() -> Result<Vec<UnaryCase>, Failure> {
    let mut xs: Vec<f64> = (0..=160).map(|i| -20.0 + f64::from(i) * 0.25).collect();
    xs.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        1e-40,
        100.0,
        -100.0,
        1e4,
        -1e4,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ]);
    let n = xs.len();
    let mut v = Vec::new();
    for op in Unary::ALL
        .into_iter()
        .chain([Unary::Scale(0.37), Unary::AddScalar(-1.5)])
    {
        v.push(UnaryCase {
            op,
            x: Tensor::contiguous(&[n], xs.clone())?,
            y: Storage::Contiguous,
        });
    }
    Ok(v)
}

/// Timing setup: GELU over `n` elements.
///
/// # Errors
/// Setup failures.
pub fn bench_unary<'a, B: Allocate, T: Element>(b: &'a B, n: usize) -> Result<Bench<'a>, Failure> {
    let x = Input::<B, T>::new(
        b,
        &Tensor::contiguous(&[n], (0..n).map(|i| (i % 97) as f64 / 10.0 - 4.0).collect())?,
    )?;
    let mut y = Output::<B, T>::new(b, &out_layout(&[n], Storage::Contiguous)?, None)?;
    Ok(Bench {
        run: Box::new(move || {
            b.unary(Unary::Gelu, x.view()?, y.view()?)
                .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(2.0 * bytes::<T>(n)),
        size: format!("{n}"),
    })
}

/// Timing setup: `a + b` over `n` elements.
///
/// # Errors
/// Setup failures.
pub fn bench_binary<'a, B: Allocate, T: Element>(
    bk: &'a B,
    n: usize,
) -> Result<Bench<'a>, Failure> {
    let t = Tensor::contiguous(&[n], (0..n).map(|i| (i % 89) as f64).collect())?;
    let (a, b) = (Input::<B, T>::new(bk, &t)?, Input::<B, T>::new(bk, &t)?);
    let mut y = Output::<B, T>::new(bk, &out_layout(&[n], Storage::Contiguous)?, None)?;
    Ok(Bench {
        run: Box::new(move || {
            bk.binary(Binary::Add, a.view()?, b.view()?, y.view()?)
                .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(3.0 * bytes::<T>(n)),
        size: format!("{n}"),
    })
}

/// Timing setup: a cast from `T` to f32 over `n` elements.
///
/// # Errors
/// Setup failures.
pub fn bench_cast<'a, B: Allocate, T: Element>(b: &'a B, n: usize) -> Result<Bench<'a>, Failure> {
    let x = Input::<B, T>::new(
        b,
        &Tensor::contiguous(&[n], (0..n).map(|i| i as f64 * 0.01).collect())?,
    )?;
    let mut y = Output::<B, f32>::new(b, &out_layout(&[n], Storage::Contiguous)?, None)?;
    Ok(Bench {
        run: Box::new(move || b.cast(x.view()?, y.view()?).map_err(Failure::Kernel)),
        work: Work::Bytes(bytes::<T>(n) + (4 * n) as f64),
        size: format!("{n}"),
    })
}
