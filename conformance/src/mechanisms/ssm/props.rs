//! Property rows of seq-ssm, on any backend and element type, against the f64 reference:
//!
//! | row | property |
//! | --- | --- |
//! | `ssm_scan` | recurrent mode (diagonal complex scan) vs the reference at f64 |
//! | `ssm_conv` | FFT convolution + skip vs the direct convolution at f64 |
//! | `ssm_kernel` | S4D Vandermonde kernel vs the reference at f64 |
//! | `ssm_conv_eq_scan` | convolution mode == recurrent mode on the backend (ZOH and bilinear, L up to 4096, odd and prime lengths) |
//! | `ssm_chunked` | chunked streaming == one scan over the whole sequence, chunk sizes 1, 2, 7, L/3, L |
//! | `ssm_conv_direct_l64`, `ssm_conv_direct_l512` | the portable direct convolution (host) in `T` vs itself at f64; times it at H = 256 |
//! | `ssm_conv_fft_l64`, `ssm_conv_fft_l512` | FFT convolution vs the direct sum at these lengths; times it at H = 256 |
//! | `s4_cauchy_kernel` | S4 DPLR kernel by Cauchy + Woodbury == dense powers of `Abar` (host f64) |
//!
//! Parameters are discretised in f64 and rounded once to the accumulation type, which is what both
//! the backend and the reference then run on; inputs are rounded to the element type. Bounds are
//! rounding-error bounds of the computation (see each `bound_*`), twice the first-order estimate.

// Every index below is bounded by the case's own extents, which `validate` checks against the
// lengths of its vectors before anything is indexed.
#![allow(clippy::indexing_slicing)]

use proptest::prelude::*;
use seq_ssm::{Complex, Discretization, Stability, discretize};
use seqcore::portable::ssm::conv::{conv_direct, fft_len};
use seqcore::{Allocate, Backend, Element, Layout, Reference, View, ViewMut};

use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, Tensor, round, widen};
use crate::properties::{Bench, Work};
use crate::suite::{Config, Row, sample};
use crate::{Failure, tolerance};

/// Row names, in report order (timing-only rows last).
pub const KERNELS: &[&str] = &[
    "ssm_scan",
    "ssm_conv",
    "ssm_kernel",
    "ssm_conv_eq_scan",
    "ssm_chunked",
    "ssm_conv_direct_l64",
    "ssm_conv_fft_l64",
    "ssm_conv_direct_l512",
    "ssm_conv_fft_l512",
    "s4_cauchy_kernel",
];

/// One diagonal SSM and an input.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Channels.
    pub h: usize,
    /// Complex modes per channel.
    pub n: usize,
    /// Tokens.
    pub l: usize,
    /// ZOH (else bilinear).
    pub zoh: bool,
    /// `log dt [H]`.
    pub log_dt: Vec<f64>,
    /// `a [H, N]` (complex, `Re < 0`).
    pub a: Vec<(f64, f64)>,
    /// `b [H, N]`.
    pub b: Vec<(f64, f64)>,
    /// `c [H, N]`.
    pub c: Vec<(f64, f64)>,
    /// `d [H]`.
    pub d: Vec<f64>,
    /// `u [L, H]`.
    pub u: Vec<f64>,
}

/// The discretised model, each value rounded to the accumulation type (held as f64).
struct Disc {
    abar: Vec<f64>,
    bbar: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
    log_abar: Vec<f64>,
    w: Vec<f64>,
    /// `(|Abar|, |Bbar|, |C|, |C Bbar|, |ln Abar|)` per mode, from the rounded values.
    mags: Vec<(f64, f64, f64, f64, f64)>,
}

/// Checks that the case's vectors have the lengths its extents say.
fn validate(case: &Case) -> Result<(), Failure> {
    let hn = case.h * case.n;
    let ok = case.log_dt.len() == case.h
        && case.a.len() == hn
        && case.b.len() == hn
        && case.c.len() == hn
        && case.d.len() == case.h
        && case.u.len() == case.h * case.l;
    if ok {
        Ok(())
    } else {
        Err(Failure::Setup(format!(
            "case vectors do not match H = {}, N = {}, L = {}",
            case.h, case.n, case.l
        )))
    }
}

fn disc<T: Element>(case: &Case) -> Result<Disc, Failure> {
    validate(case)?;
    let r = |x: f64| round::<T::Acc>(x);
    let method = if case.zoh {
        Discretization::Zoh
    } else {
        Discretization::Bilinear
    };
    let mut o = Disc {
        abar: vec![],
        bbar: vec![],
        c: vec![],
        d: case.d.iter().map(|&x| r(x)).collect(),
        log_abar: vec![],
        w: vec![],
        mags: vec![],
    };
    for hh in 0..case.h {
        let dt = r(case.log_dt[hh]).exp();
        for nn in 0..case.n {
            let i = hh * case.n + nn;
            let cx = |v: &[(f64, f64)]| Complex::new(r(v[i].0), r(v[i].1));
            let (a, b, c) = (cx(&case.a), cx(&case.b), cx(&case.c));
            let m = discretize(method, dt, a, b, Stability::Strict).map_err(Failure::setup)?;
            let w = c * m.bbar;
            let push = |v: &mut Vec<f64>, z: Complex| v.extend([r(z.re), r(z.im)]);
            push(&mut o.abar, m.abar);
            push(&mut o.bbar, m.bbar);
            push(&mut o.c, c);
            push(&mut o.log_abar, m.log_abar);
            push(&mut o.w, w);
            o.mags.push((
                m.abar.abs(),
                m.bbar.abs(),
                c.abs(),
                w.abs(),
                m.log_abar.abs(),
            ));
        }
    }
    Ok(o)
}

fn t3(h: usize, n: usize, v: &[f64]) -> Result<Tensor, Failure> {
    Tensor::contiguous(&[h, n, 2], v.to_vec())
}

fn upload_acc<B: Allocate, T: Element>(b: &B, t: &Tensor) -> Result<Input<B, T::Acc>, Failure> {
    Input::<B, T::Acc>::new(b, t)
}

fn alloc_view<'a, B: Allocate, R: Element>(
    buf: &'a mut B::Buffer<R>,
    shape: &[usize],
) -> Result<ViewMut<'a, B, R>, Failure> {
    ViewMut::new(
        core::borrow::BorrowMut::borrow_mut(buf),
        Layout::contiguous(shape).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)
}

/// Runs the scan on `b` in `T`: `y [L, H]` (widened).
fn backend_scan<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
    m: &Disc,
) -> Result<Vec<f64>, Failure> {
    let (h, n, l) = (case.h, case.n, case.l);
    let ab = upload_acc::<B, T>(b, &t3(h, n, &m.abar)?)?;
    let bb = upload_acc::<B, T>(b, &t3(h, n, &m.bbar)?)?;
    let cc = upload_acc::<B, T>(b, &t3(h, n, &m.c)?)?;
    let dd = upload_acc::<B, T>(b, &Tensor::contiguous(&[h], m.d.clone())?)?;
    let u = Input::<B, T>::new(b, &Tensor::contiguous(&[l, h], case.u.clone())?)?;
    let mut st = b.alloc::<T::Acc>(2 * h * n).map_err(Failure::setup)?;
    let mut y = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[l, h]).map_err(Failure::setup)?,
        None,
    )?;
    b.ssm_scan::<T>(
        ab.view()?,
        bb.view()?,
        cc.view()?,
        dd.view()?,
        u.view()?,
        alloc_view::<B, T::Acc>(&mut st, &[h, n, 2])?,
        Some(y.view()?),
    )
    .map_err(Failure::Kernel)?;
    Ok(widen(&y.finish(b, "y")?))
}

/// The reference scan at f64 on the same (rounded) values.
fn reference_scan<T: Element>(case: &Case, m: &Disc) -> Result<Vec<f64>, Failure> {
    let (h, n, l) = (case.h, case.n, case.l);
    let r = Reference;
    let u: Vec<f64> = case.u.iter().map(|&x| round::<T>(x)).collect();
    let mut st = vec![0.0; 2 * h * n];
    let mut y = vec![0.0; l * h];
    fn s(v: &[f64], h: usize, n: usize) -> seqcore::Result<View<'_, Reference, f64>> {
        View::contiguous(v, &[h, n, 2])
    }
    r.ssm_scan::<f64>(
        s(&m.abar, h, n).map_err(Failure::setup)?,
        s(&m.bbar, h, n).map_err(Failure::setup)?,
        s(&m.c, h, n).map_err(Failure::setup)?,
        r.view(&m.d, &[h]).map_err(Failure::setup)?,
        r.view(&u, &[l, h]).map_err(Failure::setup)?,
        r.view_mut(&mut st, &[h, n, 2]).map_err(Failure::setup)?,
        Some(r.view_mut(&mut y, &[l, h]).map_err(Failure::setup)?),
    )
    .map_err(Failure::setup)?;
    Ok(y)
}

fn umax(case: &Case) -> f64 {
    case.u.iter().fold(0.0f64, |a, &x| a.max(x.abs()))
}

/// Recurrence bound at token `t` of channel `hh`: each step rounds `Abar x + Bbar u` (<= 4 u_acc
/// |x|), accumulated over `min(t + 1, 1/(1 - |Abar|))` steps; the output sum of `n` modes adds
/// `(n + 2) u_acc sum 2|C||x|`; the skip `2 u_acc |D u|`. Twice that, plus `2u |y|` for the store.
fn bound_scan<T: Element>(case: &Case, m: &Disc, hh: usize, t: usize, y: f64) -> Bound {
    let ua = tolerance::ua::<T>();
    let um = umax(case);
    let mut s = 0.0;
    for nn in 0..case.n {
        let (aa, bb, cc, _, _) = m.mags[hh * case.n + nn];
        let steps = (1.0 / (1.0 - aa).max(1e-300)).min((t + 1) as f64);
        let x = bb * um * steps;
        s += 2.0 * cc * x * (8.0 * steps + 2.0 * case.n as f64 + 4.0);
    }
    let ut = round::<T>(case.u[t * case.h + hh]).abs();
    let skip = 4.0 * m.d[hh].abs() * ut;
    Bound {
        atol: tolerance::floor::<T>() + ua * (s + skip),
        rtol: 2.0 * tolerance::u::<T>() + 0.0 * y,
    }
}

/// `ssm_scan`: the backend's recurrent mode vs the reference at f64.
///
/// # Errors
/// The first [`Failure`].
pub fn check_scan<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let m = disc::<T>(case)?;
    let got = backend_scan::<B, T>(b, case, &m)?;
    let want = reference_scan::<T>(case, &m)?;
    let h = case.h.max(1);
    let a = compare("y", &got, &want, |i| {
        bound_scan::<T>(case, &m, i % h, i / h, want[i])
    })?;
    gate::<T>(a, &want)
}

/// The project's normalised-error ceiling of `T`, after the per-element bounds. Outputs whose RMS
/// lies below `T`'s smallest normal (an f16 kernel with `dt = 1e-6`) are stored as subnormals with
/// few significant bits: there only the per-element bounds apply.
fn gate<T: Element>(a: Agreement, want: &[f64]) -> Result<Agreement, Failure> {
    let max = tolerance::nmse_max::<T>();
    let rms = (want.iter().map(|x| x * x).sum::<f64>() / want.len().max(1) as f64).sqrt();
    let min_normal = match T::DTYPE {
        seqcore::DType::F16 => 6.103_515_625e-5,
        seqcore::DType::F64 => f64::MIN_POSITIVE,
        _ => f64::from(f32::MIN_POSITIVE),
    };
    if a.nmse > max && rms >= min_normal {
        Err(Failure::Nmse {
            arg: "y",
            nmse: a.nmse,
            max,
        })
    } else {
        Ok(a)
    }
}

/// Convolution bound of channel `hh`: the normwise FFT bound `12 log2(n) u_acc ||k_h|| ||u_h||`
/// (three transforms and a product, Higham ch. 24: `6 log2(n)`; doubled for two signals sharing
/// one transform at matched norms), the skip `4 u_acc |D u|`, and `2u |y|` for the store.
fn bound_conv<T: Element>(
    k: &[f64],
    u: &[f64],
    d: &[f64],
    h: usize,
    l: usize,
    hh: usize,
    t: usize,
) -> Bound {
    let ua = tolerance::ua::<T>();
    let n = fft_len(l).unwrap_or(1) as f64;
    let kn = (0..l).map(|j| k[hh * l + j].powi(2)).sum::<f64>().sqrt();
    let un = (0..l).map(|j| u[j * h + hh].powi(2)).sum::<f64>().sqrt();
    Bound {
        atol: tolerance::floor::<T>()
            + 12.0 * n.log2().max(1.0) * ua * kn * un
            + 4.0 * ua * d[hh].abs() * u[t * h + hh].abs(),
        rtol: 2.0 * tolerance::u::<T>(),
    }
}

/// Runs the FFT convolution on `b` in `T` (inputs already rounded to `T`, `d` to `T` then held in
/// the accumulation type).
fn backend_conv<B: Allocate, T: Element>(
    b: &B,
    k: &[f64],
    u: &[f64],
    d: &[f64],
    h: usize,
    l: usize,
) -> Result<Vec<f64>, Failure> {
    let kin = Input::<B, T>::new(b, &Tensor::contiguous(&[h, l], k.to_vec())?)?;
    let uin = Input::<B, T>::new(b, &Tensor::contiguous(&[l, h], u.to_vec())?)?;
    let din = upload_acc::<B, T>(b, &Tensor::contiguous(&[h], d.to_vec())?)?;
    let wl = b.ssm_conv_workspace_len(h, l).map_err(Failure::setup)?;
    let mut ws = b.alloc::<T::Acc>(wl).map_err(Failure::setup)?;
    let mut y = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[l, h]).map_err(Failure::setup)?,
        None,
    )?;
    b.ssm_conv::<T>(
        kin.view()?,
        uin.view()?,
        Some(din.view()?),
        y.view()?,
        alloc_view::<B, T::Acc>(&mut ws, &[wl])?,
    )
    .map_err(Failure::Kernel)?;
    Ok(widen(&y.finish(b, "y")?))
}

/// `ssm_conv`: FFT convolution on the backend vs the direct sum at f64. The case's `c` plays the
/// kernel (its real parts, `[H, L]` cycled), `u` the input, `d` the skip.
///
/// # Errors
/// The first [`Failure`].
pub fn check_conv<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    validate(case)?;
    let (h, l) = (case.h, case.l);
    let k = conv_kernel::<T>(case);
    let u: Vec<f64> = case.u.iter().map(|&x| round::<T>(x)).collect();
    let d: Vec<f64> = case.d.iter().map(|&x| round::<T>(x)).collect();
    let got = backend_conv::<B, T>(b, &k, &u, &d, h, l)?;
    let r = Reference;
    let mut want = vec![0.0; l * h];
    conv_direct::<f64>(
        r.view(&k, &[h, l]).map_err(Failure::setup)?,
        r.view(&u, &[l, h]).map_err(Failure::setup)?,
        Some(r.view(&d, &[h]).map_err(Failure::setup)?),
        r.view_mut(&mut want, &[l, h]).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let hh = h.max(1);
    let a = compare("y", &got, &want, |i| {
        bound_conv::<T>(&k, &u, &d, h, l, i % hh, i / hh)
    })?;
    gate::<T>(a, &want)
}

/// A decaying kernel `[H, L]` in `T` from the case's numbers.
fn conv_kernel<T: Element>(case: &Case) -> Vec<f64> {
    let (h, l) = (case.h, case.l);
    let src: Vec<f64> = case
        .c
        .iter()
        .flat_map(|&(a, b)| [a, b])
        .chain(case.u.iter().copied())
        .collect();
    (0..h * l)
        .map(|i| {
            let v = src.get(i % src.len().max(1)).copied().unwrap_or(0.5);
            let j = (i % l.max(1)) as f64;
            round::<T>(v * (-j / (l as f64 / 4.0 + 1.0)).exp())
        })
        .collect()
}

/// Kernel bound at `(hh, j)`: parameter rounding and the power recurrence,
/// `sum_n 2|w||z|^j (4 (1 + j |ln z|) + 2 * 64 + 4) u_acc`, twice; `2u |k|` for the store.
fn bound_kernel<T: Element>(case: &Case, m: &Disc, hh: usize, j: usize) -> Bound {
    let ua = tolerance::ua::<T>();
    let mut s = 0.0;
    for nn in 0..case.n {
        let (aa, _, _, ww, lz) = m.mags[hh * case.n + nn];
        let jf = j as f64;
        s += 2.0 * ww * aa.powf(jf) * (4.0 * (1.0 + jf * lz) + 132.0);
    }
    Bound {
        atol: tolerance::floor::<T>() + 2.0 * ua * s,
        rtol: 2.0 * tolerance::u::<T>(),
    }
}

fn backend_kernel<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
    m: &Disc,
) -> Result<Vec<f64>, Failure> {
    let (h, n, l) = (case.h, case.n, case.l);
    let lz = upload_acc::<B, T>(b, &t3(h, n, &m.log_abar)?)?;
    let w = upload_acc::<B, T>(b, &t3(h, n, &m.w)?)?;
    let mut k = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[h, l]).map_err(Failure::setup)?,
        None,
    )?;
    b.ssm_vandermonde::<T>(lz.view()?, w.view()?, None, k.view()?)
        .map_err(Failure::Kernel)?;
    Ok(widen(&k.finish(b, "k")?))
}

/// `ssm_kernel`: the S4D Vandermonde kernel on the backend vs the reference at f64.
///
/// # Errors
/// The first [`Failure`].
pub fn check_kernel<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let m = disc::<T>(case)?;
    let got = backend_kernel::<B, T>(b, case, &m)?;
    let r = Reference;
    let (h, n, l) = (case.h, case.n, case.l);
    let mut want = vec![0.0; h * l];
    r.ssm_vandermonde::<f64>(
        r.view(&m.log_abar, &[h, n, 2]).map_err(Failure::setup)?,
        r.view(&m.w, &[h, n, 2]).map_err(Failure::setup)?,
        None,
        r.view_mut(&mut want, &[h, l]).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let ll = l.max(1);
    let a = compare("k", &got, &want, |i| {
        bound_kernel::<T>(case, &m, i / ll, i % ll)
    })?;
    gate::<T>(a, &want)
}

/// The bound between two backend results of the same sequence (convolution mode vs recurrent
/// mode): both modes' bounds, plus the kernel's store and generation errors carried through the
/// convolution, `sum_s (u |k_{t-s}| + kbound_{t-s}) |u_s|`.
fn bound_modes<T: Element>(
    case: &Case,
    m: &Disc,
    k: &[f64],
    u: &[f64],
    kb: &[f64],
    hh: usize,
    t: usize,
) -> Bound {
    let (h, l) = (case.h, case.l);
    let bs = bound_scan::<T>(case, m, hh, t, 0.0);
    let bc = bound_conv::<T>(k, u, &m.d, h, l, hh, t);
    let mut carry = 0.0;
    for s in 0..=t {
        carry += (tolerance::u::<T>() * k[hh * l + t - s].abs() + kb[hh * l + t - s])
            * u[s * h + hh].abs();
    }
    Bound {
        atol: bs.atol + bc.atol + carry,
        rtol: bs.rtol + bc.rtol,
    }
}

/// `ssm_conv_eq_scan`: on the backend, the convolution mode (kernel, then FFT convolution)
/// equals the recurrent mode.
///
/// # Errors
/// The first [`Failure`].
pub fn check_conv_eq_scan<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Result<Agreement, Failure> {
    let m = disc::<T>(case)?;
    let (h, l) = (case.h, case.l);
    let k = backend_kernel::<B, T>(b, case, &m)?;
    let u: Vec<f64> = case.u.iter().map(|&x| round::<T>(x)).collect();
    let yc = backend_conv::<B, T>(b, &k, &u, &m.d, h, l)?;
    let ys = backend_scan::<B, T>(b, case, &m)?;
    let ll = l.max(1);
    let kb: Vec<f64> = (0..h * l)
        .map(|i| bound_kernel::<T>(case, &m, i / ll, i % ll).atol)
        .collect();
    let hh = h.max(1);
    let a = compare("y", &yc, &ys, |i| {
        bound_modes::<T>(case, &m, &k, &u, &kb, i % hh, i / hh)
    })?;
    gate::<T>(a, &ys)
}

/// `ssm_chunked`: chunked streaming (convolution per chunk, state carried) equals one scan over
/// the whole sequence, for several chunk sizes, on the backend.
///
/// # Errors
/// The first [`Failure`].
pub fn check_chunked<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let m = disc::<T>(case)?;
    let (h, n, l) = (case.h, case.n, case.l);
    let whole = backend_scan::<B, T>(b, case, &m)?;
    let u: Vec<f64> = case.u.iter().map(|&x| round::<T>(x)).collect();
    let mut worst = Agreement::default();
    let mut sizes = vec![1, 2, 7, l / 3, l];
    sizes.retain(|&s| s >= 1 && s <= l);
    sizes.dedup();
    for chunk in sizes {
        let got = backend_chunked::<B, T>(b, case, &m, chunk)?;
        let mut kfull = vec![0.0; h * chunk];
        {
            let r = Reference;
            r.ssm_vandermonde::<f64>(
                r.view(&m.log_abar, &[h, n, 2]).map_err(Failure::setup)?,
                r.view(&m.w, &[h, n, 2]).map_err(Failure::setup)?,
                None,
                r.view_mut(&mut kfull, &[h, chunk])
                    .map_err(Failure::setup)?,
            )
            .map_err(Failure::setup)?;
        }
        let hh = h.max(1);
        let um = umax(case);
        let a = compare("y", &got, &whole, |i| {
            let (c, t) = (i % hh, i / hh);
            let bs = bound_scan::<T>(case, &m, c, t, 0.0);
            // Per chunk: its convolution (kernel of the chunk's length), the state response
            // (stored in T, <= sum 2|C||x|), and one more store and add in T.
            let kn = (0..chunk)
                .map(|j| kfull[c * chunk + j].powi(2))
                .sum::<f64>()
                .sqrt();
            let un = um * (chunk as f64).sqrt();
            let n_fft = fft_len(chunk).unwrap_or(1) as f64;
            let resp: f64 = (0..n)
                .map(|nn| {
                    let (aa, bb, cc, _, _) = m.mags[c * n + nn];
                    2.0 * cc * bb * um * (1.0 / (1.0 - aa).max(1e-300)).min((t + 1) as f64)
                })
                .sum();
            let ksum: f64 = (0..chunk).map(|j| kfull[c * chunk + j].abs()).sum::<f64>() * um;
            let extra = 12.0 * n_fft.log2().max(1.0) * tolerance::ua::<T>() * kn * un
                + 4.0 * tolerance::u::<T>() * (ksum + resp + whole[i].abs())
                + 2.0 * tolerance::ua::<T>() * resp * (132.0 + 8.0 * chunk as f64);
            Bound {
                atol: 2.0 * bs.atol + extra,
                rtol: 2.0 * bs.rtol,
            }
        })?;
        worst = worst.worst(gate::<T>(a, &whole)?);
    }
    let _ = u;
    Ok(worst)
}

fn backend_chunked<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
    m: &Disc,
    chunk: usize,
) -> Result<Vec<f64>, Failure> {
    let (h, n, l) = (case.h, case.n, case.l);
    // The model's buffer, as S4d lays it out: Abar, Bbar, C, ln Abar, C Bbar, C Abar, D.
    let cabar: Vec<f64> =
        m.c.chunks_exact(2)
            .zip(m.abar.chunks_exact(2))
            .flat_map(|(c, a)| {
                let z = Complex::new(c[0], c[1]) * Complex::new(a[0], a[1]);
                [round::<T::Acc>(z.re), round::<T::Acc>(z.im)]
            })
            .collect();
    let mut host: Vec<T::Acc> = Vec::new();
    for part in [&m.abar, &m.bbar, &m.c, &m.log_abar, &m.w, &cabar, &m.d] {
        host.extend(part.iter().map(|&x| T::Acc::from_f64(x)));
    }
    let mut mem = b.alloc::<T::Acc>(host.len()).map_err(Failure::setup)?;
    b.write(&host, core::borrow::BorrowMut::borrow_mut(&mut mem))
        .map_err(Failure::setup)?;
    let model =
        seq_ssm::S4d::<B, T::Acc>::from_discretized(h, n, core::borrow::Borrow::borrow(&mem))
            .map_err(Failure::setup)?;
    let mut k = b.alloc::<T>(h * chunk).map_err(Failure::setup)?;
    model
        .kernel::<T>(b, alloc_view::<B, T>(&mut k, &[h, chunk])?)
        .map_err(Failure::Kernel)?;
    let u = Input::<B, T>::new(b, &Tensor::contiguous(&[l, h], case.u.clone())?)?;
    let mut st = b.alloc::<T::Acc>(2 * h * n).map_err(Failure::setup)?;
    let mut scratch = b
        .alloc::<T>(model.chunk_scratch_len(chunk).map_err(Failure::setup)?)
        .map_err(Failure::setup)?;
    let wl = b.ssm_conv_workspace_len(h, chunk).map_err(Failure::setup)?;
    let mut ws = b.alloc::<T::Acc>(wl).map_err(Failure::setup)?;
    let mut y = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[l, h]).map_err(Failure::setup)?,
        None,
    )?;
    let mut t0 = 0;
    while t0 < l {
        let t = chunk.min(l - t0);
        let kv = View::new(
            core::borrow::Borrow::borrow(&k),
            Layout::contiguous(&[h, chunk]).map_err(Failure::setup)?,
        )
        .map_err(Failure::setup)?;
        let uv = u.view()?.narrow(0, t0, t).map_err(Failure::setup)?;
        let yv = y.view()?.narrow(0, t0, t).map_err(Failure::setup)?;
        model
            .chunk::<T>(
                b,
                kv,
                uv,
                alloc_view::<B, T::Acc>(&mut st, &[h, n, 2])?,
                yv,
                core::borrow::BorrowMut::borrow_mut(&mut scratch),
                alloc_view::<B, T::Acc>(&mut ws, &[wl])?,
            )
            .map_err(Failure::Kernel)?;
        t0 += t;
    }
    Ok(widen(&y.finish(b, "y")?))
}

/// Lengths of the random cases: small, odd, prime, powers of two and not.
const LENGTHS: [usize; 12] = [1, 2, 3, 5, 16, 17, 31, 64, 97, 128, 251, 1000];

/// Random stable models: `H <= 3`, `N <= 8`, `dt` log-uniform in `[1e-3, 1e-1]`, S4D-Lin-like
/// imaginary parts, random `b`, `c`, `d`, `u`.
pub fn cases() -> impl Strategy<Value = Case> {
    (1usize..4, 1usize..9, 0usize..LENGTHS.len(), any::<bool>()).prop_flat_map(|(h, n, li, zoh)| {
        let l = LENGTHS[li];
        let z = || (-1.0f64..1.0, -1.0f64..1.0);
        (
            prop::collection::vec((1e-3f64).ln()..(1e-1f64).ln(), h),
            prop::collection::vec((0.1f64..0.9, -1.0f64..1.0), h * n),
            prop::collection::vec(z(), h * n),
            prop::collection::vec(z(), h * n),
            prop::collection::vec(-1.0f64..1.0, h),
            prop::collection::vec(-1.0f64..1.0, h * l),
        )
            .prop_map(move |(log_dt, ar, b, c, d, u)| Case {
                h,
                n,
                l,
                zoh,
                log_dt,
                a: ar
                    .iter()
                    .enumerate()
                    .map(|(i, &(re, im))| (-re, core::f64::consts::PI * (i % n) as f64 + im))
                    .collect(),
                b,
                c,
                d,
                u,
            })
    })
}

fn fixed(h: usize, n: usize, l: usize, zoh: bool, log_dt: f64, re: f64) -> Case {
    let v = |i: usize, s: f64| ((i as f64 * 0.618_034 + s).fract() - 0.5) * 2.0;
    Case {
        h,
        n,
        l,
        zoh,
        log_dt: vec![log_dt; h],
        a: (0..h * n)
            .map(|i| (re, core::f64::consts::PI * (i % n) as f64))
            .collect(),
        b: (0..h * n).map(|i| (v(i, 0.1), v(i, 0.2))).collect(),
        c: (0..h * n).map(|i| (v(i, 0.3), v(i, 0.4))).collect(),
        d: (0..h).map(|i| v(i, 0.5)).collect(),
        u: (0..h * l).map(|i| v(i, 0.6)).collect(),
    }
}

/// Fixed edge cases: L = 0 and 1, Re(A) = -1e-9, dt = 1e-6 and 10, a prime length and L = 4096.
pub fn edge_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for zoh in [true, false] {
        v.push(fixed(2, 3, 0, zoh, -4.0, -0.5));
        v.push(fixed(2, 3, 1, zoh, -4.0, -0.5));
        v.push(fixed(1, 4, 300, zoh, -4.0, -1e-9));
        v.push(fixed(2, 4, 64, zoh, (1e-6f64).ln(), -0.5));
        v.push(fixed(2, 4, 64, zoh, (10.0f64).ln(), -0.5));
        v.push(fixed(1, 4, 1021, zoh, -5.0, -0.5));
        v.push(fixed(2, 4, 4096, zoh, -6.0, -0.5));
    }
    v
}

/// Appends the rows.
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    type Check<B> = fn(&B, &Case) -> Result<Agreement, Failure>;
    let checks: [(&'static str, Check<B>); 5] = [
        ("ssm_scan", check_scan::<B, T>),
        ("ssm_conv", check_conv::<B, T>),
        ("ssm_kernel", check_kernel::<B, T>),
        ("ssm_conv_eq_scan", check_conv_eq_scan::<B, T>),
        ("ssm_chunked", check_chunked::<B, T>),
    ];
    for (i, (name, check)) in checks.into_iter().enumerate() {
        if !config.wants(name) {
            continue;
        }
        let mut row = Row::new::<B, T>(b, name);
        let edge = row.fixed(config, Ok(edge_cases()));
        let random = sample(&cases(), n, seed ^ (0x55_0000 + i as u64));
        for c in edge.into_iter().chain(random) {
            // The chunked row runs five chunkings: keep its long cases few.
            if name == "ssm_chunked" && c.l > 300 {
                continue;
            }
            row.add(&c, check(b, &c));
        }
        let bench = match name {
            "ssm_scan" => bench_step::<B, T>(b, 256, 64),
            "ssm_conv" => bench_conv::<B, T>(b, 256, 4096, false),
            "ssm_kernel" => bench_kernel::<B, T>(b, 64, 32, 4096),
            _ => Err(Failure::Setup("no benchmark".into())),
        };
        if bench.is_ok() {
            row.time(config, bench);
        }
        rows.push(row);
    }
    for (name, l, direct) in [
        ("ssm_conv_direct_l64", 64, true),
        ("ssm_conv_fft_l64", 64, false),
        ("ssm_conv_direct_l512", 512, true),
        ("ssm_conv_fft_l512", 512, false),
    ] {
        if !config.wants(name) {
            continue;
        }
        let mut row = Row::new::<B, T>(b, name);
        // The random cases at this length: the FFT path on the backend against the direct sum
        // at f64, or the direct path (host, portable) in `T` against the same.
        let cases = sample(&cases(), n.div_ceil(4), seed ^ (0x56_0000 + l as u64));
        for c in cases {
            let c = with_length(c, l);
            let r = if direct {
                check_direct::<T>(&c)
            } else {
                check_conv::<B, T>(b, &c)
            };
            row.add(&c, r);
        }
        row.time(config, bench_conv::<B, T>(b, 256, l, direct));
        rows.push(row);
    }
    if config.wants("s4_cauchy_kernel") {
        let mut row = Row::new::<B, T>(b, "s4_cauchy_kernel");
        for c in sample(&cases(), n.div_ceil(2), seed ^ 0x57_0000) {
            let len = c.l.min(257);
            let c = with_length(c, len);
            row.add(&c, check_cauchy::<T>(&c));
        }
        row.time(config, bench_cauchy(64, 4096));
        rows.push(row);
    }
}

/// The case with `l` tokens (its input cycled or cut).
fn with_length(mut c: Case, l: usize) -> Case {
    let h = c.h;
    let src = if c.u.is_empty() {
        vec![0.5]
    } else {
        c.u.clone()
    };
    c.u = (0..l * h).map(|i| src[i % src.len()]).collect();
    c.l = l;
    c
}

/// `ssm_conv_direct_*`: the portable direct convolution (host) in `T` against itself at f64.
/// Bound: a sum of `t + 1` products, `(t + 3) u_acc sum_s |k_{t-s} u_s|` plus the skip and `2u |y|`,
/// twice.
///
/// # Errors
/// The first [`Failure`].
pub fn check_direct<T: Element>(case: &Case) -> Result<Agreement, Failure> {
    validate(case)?;
    let (h, l) = (case.h, case.l);
    let k = conv_kernel::<T>(case);
    let u: Vec<f64> = case.u.iter().map(|&x| round::<T>(x)).collect();
    let d: Vec<f64> = case.d.iter().map(|&x| round::<T>(x)).collect();
    let r = Reference;
    let kt: Vec<T> = k.iter().map(|&x| T::from_f64(x)).collect();
    let ut: Vec<T> = u.iter().map(|&x| T::from_f64(x)).collect();
    let dt: Vec<T::Acc> = d.iter().map(|&x| T::Acc::from_f64(x)).collect();
    let mut yt = vec![T::from_f64(f64::NAN); l * h];
    conv_direct::<T>(
        r.view(&kt, &[h, l]).map_err(Failure::setup)?,
        r.view(&ut, &[l, h]).map_err(Failure::setup)?,
        Some(r.view(&dt, &[h]).map_err(Failure::setup)?),
        r.view_mut(&mut yt, &[l, h]).map_err(Failure::setup)?,
    )
    .map_err(Failure::Kernel)?;
    let mut want = vec![0.0; l * h];
    conv_direct::<f64>(
        r.view(&k, &[h, l]).map_err(Failure::setup)?,
        r.view(&u, &[l, h]).map_err(Failure::setup)?,
        Some(r.view(&d, &[h]).map_err(Failure::setup)?),
        r.view_mut(&mut want, &[l, h]).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let got = widen(&yt);
    let hh = h.max(1);
    let ua = tolerance::ua::<T>();
    let a = compare("y", &got, &want, |i| {
        let (c, t) = (i % hh, i / hh);
        let s: f64 = (0..=t)
            .map(|j| (k[c * l + t - j] * u[j * h + c]).abs())
            .sum();
        Bound {
            atol: tolerance::floor::<T>()
                + 2.0 * ((t as f64 + 3.0) * ua * s + 4.0 * ua * (d[c] * u[t * h + c]).abs()),
            rtol: 2.0 * tolerance::u::<T>(),
        }
    })?;
    gate::<T>(a, &want)
}

/// `s4_cauchy_kernel`: the S4 DPLR kernel by Cauchy + Woodbury equals the dense powers-of-`Abar`
/// kernel (bilinear), on each channel of the case with `A = diag(a) - p p^*`, `p` from the case's
/// `b` scaled by 1/2. Host f64 on both sides (inputs rounded to the accumulation type); bound
/// `1e3 (N + L) u_64 sum 2|c||b|`, as the golden vectors'.
///
/// # Errors
/// The first [`Failure`].
pub fn check_cauchy<T: Element>(case: &Case) -> Result<Agreement, Failure> {
    use seq_ssm::s4::{self, Dplr};
    validate(case)?;
    let (h, n, l) = (case.h, case.n, case.l);
    let r = |x: f64| round::<T::Acc>(x);
    let mut got = Vec::with_capacity(h * l);
    let mut want = Vec::with_capacity(h * l);
    let mut scale = 0.0f64;
    for hh in 0..h {
        let pick = |v: &[(f64, f64)], f: f64| -> Vec<Complex> {
            (0..n)
                .map(|i| {
                    let z = v[hh * n + i];
                    Complex::new(r(z.0 * f), r(z.1 * f))
                })
                .collect()
        };
        let (lambda, p, bv, cv) = (
            pick(&case.a, 1.0),
            pick(&case.c, 0.5),
            pick(&case.b, 1.0),
            pick(&case.c, 1.0),
        );
        scale = scale.max(
            2.0 * cv
                .iter()
                .zip(&bv)
                .map(|(c, b)| c.abs() * b.abs())
                .sum::<f64>(),
        );
        let m = Dplr {
            lambda: &lambda,
            p: &p,
            b: &bv,
            c: &cv,
        };
        let dt = r(case.log_dt[hh]).exp();
        let (nc, nf) = s4::cauchy_workspace_len(n, l).map_err(Failure::setup)?;
        let mut wc = vec![Complex::ZERO; nc];
        let mut wf = vec![0.0; nf];
        let mut fast = vec![0.0; l];
        s4::kernel_cauchy(dt, &m, &mut fast, &mut wc, &mut wf).map_err(Failure::Kernel)?;
        let mut ws = vec![Complex::ZERO; s4::dense_workspace_len(n).map_err(Failure::setup)?];
        let mut slow = vec![0.0; l];
        s4::kernel_dense(Discretization::Bilinear, dt, &m, &mut slow, &mut ws)
            .map_err(Failure::setup)?;
        got.extend(fast);
        want.extend(slow);
    }
    let atol = 1e3 * (n + l) as f64 * f64::EPSILON / 2.0 * scale;
    compare("k", &got, &want, |_| Bound { atol, rtol: 0.0 })
}

fn bench_inputs(len: usize, s: f64) -> Vec<f64> {
    (0..len)
        .map(|i| (((i * 7919) % 1000) as f64 / 1000.0 - 0.5) * s)
        .collect()
}

/// Streaming step: `h x n` modes, one token per call. Bytes: the three `[H, N, 2]` parameters,
/// the state read and written, `u`, `y` and `d`.
fn bench_step<B: Allocate, T: Element>(b: &B, h: usize, n: usize) -> Result<Bench<'_>, Failure> {
    let case = fixed(h, n, 1, true, -4.0, -0.5);
    let m = disc::<T>(&case)?;
    let ab = upload_acc::<B, T>(b, &t3(h, n, &m.abar)?)?;
    let bb = upload_acc::<B, T>(b, &t3(h, n, &m.bbar)?)?;
    let cc = upload_acc::<B, T>(b, &t3(h, n, &m.c)?)?;
    let dd = upload_acc::<B, T>(b, &Tensor::contiguous(&[h], m.d.clone())?)?;
    let u = Input::<B, T>::new(b, &Tensor::contiguous(&[1, h], case.u.clone())?)?;
    let mut st = b.alloc::<T::Acc>(2 * h * n).map_err(Failure::setup)?;
    let mut y = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[1, h]).map_err(Failure::setup)?,
        None,
    )?;
    let acc = size_of::<T::Acc>() as f64;
    let bytes = (2 * h * n) as f64 * acc * 5.0 + h as f64 * (acc + 2.0 * size_of::<T>() as f64);
    Ok(Bench {
        run: Box::new(move || {
            b.ssm_scan::<T>(
                ab.view()?,
                bb.view()?,
                cc.view()?,
                dd.view()?,
                u.view()?,
                alloc_view::<B, T::Acc>(&mut st, &[h, n, 2])?,
                Some(y.view()?),
            )
            .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(bytes),
        size: format!("step H{h} N{n}"),
    })
}

/// Convolution of `h` channels of `l` tokens, by FFT or directly. Work: the direct sum's
/// `L (L + 1)` flops per channel for the direct path; for the FFT path its own count,
/// `1.5 * 5 n log2 n` (three complex FFTs per two channels) `+ 16 n` (split and product) per
/// channel, `n` the FFT length.
pub(crate) fn bench_conv<B: Allocate, T: Element>(
    b: &B,
    h: usize,
    l: usize,
    direct: bool,
) -> Result<Bench<'_>, Failure> {
    let k = Input::<B, T>::new(b, &Tensor::contiguous(&[h, l], bench_inputs(h * l, 0.1))?)?;
    let u = Input::<B, T>::new(b, &Tensor::contiguous(&[l, h], bench_inputs(h * l, 1.0))?)?;
    let d = upload_acc::<B, T>(b, &Tensor::contiguous(&[h], bench_inputs(h, 1.0))?)?;
    let wl = b.ssm_conv_workspace_len(h, l).map_err(Failure::setup)?;
    let mut ws = b.alloc::<T::Acc>(wl).map_err(Failure::setup)?;
    let mut y = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[l, h]).map_err(Failure::setup)?,
        None,
    )?;
    let n = fft_len(l).map_err(Failure::setup)? as f64;
    let work = if direct {
        (h * l * (l + 1)) as f64
    } else {
        h as f64 * (1.5 * 5.0 * n * n.log2() + 16.0 * n)
    };
    Ok(Bench {
        run: Box::new(move || {
            if direct {
                // The portable direct sum, on the host memory of the backend.
                let op = "ssm_conv_direct";
                conv_direct::<T>(
                    seqcore::portable::host_view(b, op, k.view()?).map_err(Failure::Kernel)?,
                    seqcore::portable::host_view(b, op, u.view()?).map_err(Failure::Kernel)?,
                    Some(seqcore::portable::host_view(b, op, d.view()?).map_err(Failure::Kernel)?),
                    seqcore::portable::host_view_mut(b, op, y.view()?).map_err(Failure::Kernel)?,
                )
                .map_err(Failure::Kernel)
            } else {
                b.ssm_conv::<T>(
                    k.view()?,
                    u.view()?,
                    Some(d.view()?),
                    y.view()?,
                    alloc_view::<B, T::Acc>(&mut ws, &[wl])?,
                )
                .map_err(Failure::Kernel)
            }
        }),
        work: Work::Flops(work),
        size: format!("H{h} L{l}{}", if direct { " direct" } else { " fft" }),
    })
}

/// S4D kernel generation (Vandermonde): `8 H N L` flops.
fn bench_kernel<B: Allocate, T: Element>(
    b: &B,
    h: usize,
    n: usize,
    l: usize,
) -> Result<Bench<'_>, Failure> {
    let case = fixed(h, n, 0, true, -4.0, -0.5);
    let m = disc::<T>(&case)?;
    let lz = upload_acc::<B, T>(b, &t3(h, n, &m.log_abar)?)?;
    let w = upload_acc::<B, T>(b, &t3(h, n, &m.w)?)?;
    let mut k = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[h, l]).map_err(Failure::setup)?,
        None,
    )?;
    Ok(Bench {
        run: Box::new(move || {
            b.ssm_vandermonde::<T>(lz.view()?, w.view()?, None, k.view()?)
                .map_err(Failure::Kernel)
        }),
        work: Work::Flops((8 * h * n * l) as f64),
        size: format!("H{h} N{n} L{l}"),
    })
}

/// S4 DPLR kernel by Cauchy + Woodbury (host, f64), one channel: about `40 N L` flops for
/// `(I - Abar^L)^T c`, `50 N L` for the Cauchy sums, and a Bluestein DFT (`3 * 5 m log2 m`).
fn bench_cauchy(n: usize, l: usize) -> Result<Bench<'static>, Failure> {
    use seq_ssm::s4::{self, Dplr};
    let lambda: Vec<Complex> = (0..n)
        .map(|i| Complex::new(-0.5, core::f64::consts::PI * i as f64))
        .collect();
    let p: Vec<Complex> = bench_inputs(n, 1.0)
        .into_iter()
        .map(|x| Complex::new(x, 0.3))
        .collect();
    let bv: Vec<Complex> = bench_inputs(n, 2.0)
        .into_iter()
        .map(|x| Complex::new(x, -0.2))
        .collect();
    let cv = bv.clone();
    let (nc, nf) = s4::cauchy_workspace_len(n, l).map_err(Failure::setup)?;
    let mut wc = vec![Complex::ZERO; nc];
    let mut wf = vec![0.0; nf];
    let mut k = vec![0.0; l];
    let m_len = seqcore::portable::ssm::fft::bluestein_len(l).map_err(Failure::setup)? as f64;
    Ok(Bench {
        run: Box::new(move || {
            let m = Dplr {
                lambda: &lambda,
                p: &p,
                b: &bv,
                c: &cv,
            };
            s4::kernel_cauchy(0.01, &m, &mut k, &mut wc, &mut wf).map_err(Failure::Kernel)
        }),
        work: Work::Flops((90 * n * l) as f64 + 15.0 * m_len * m_len.log2()),
        size: format!("host f64 N{n} L{l}"),
    })
}
