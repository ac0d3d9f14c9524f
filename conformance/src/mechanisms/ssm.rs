//! seq-ssm in the suite (see [`super`]): the golden-vector mechanisms `s4d_kernel`, `s4_kernel`
//! and `ssm_conv`, and the property rows of [`props`].

pub mod props;

use seq_ssm::s4::{self, Dplr};
use seq_ssm::{Complex, Discretization, S4d, S4dParams, Stability};
use seqcore::{Allocate, Element, Layout, ViewMut};

use crate::Failure;
use crate::compare::Agreement;
use crate::harness::{Input, Tensor, round, widen};
use crate::suite::{Config, Row};
use crate::vectors::{Case, bad, out};

/// Row names, in report order.
pub const KERNELS: &[&str] = props::KERNELS;

/// Vector-format mechanisms run here.
pub const VECTORS: &[&str] = &["s4d_kernel", "s4_kernel", "ssm_conv"];

/// Appends this crate's rows (see [`super::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    props::rows::<B, T>(b, config, seed, n, rows);
}

/// Runs a case whose mechanism is in [`VECTORS`]; `None` for any other.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    match case.mechanism.as_str() {
        "s4d_kernel" => Some(s4d_kernel::<B, T>(b, case)),
        "s4_kernel" => Some(s4_kernel::<T>(case)),
        "ssm_conv" => Some(ssm_conv::<B, T>(b, case)),
        _ => None,
    }
}

fn discretization(case: &Case) -> Result<Discretization, Failure> {
    let name = case.param_str("discretization")?;
    Discretization::from_name(name).ok_or_else(|| bad(format!("unknown discretization `{name}`")))
}

fn length(case: &Case) -> Result<usize, Failure> {
    let l = case.param_f64("length", None)?;
    if !(l >= 0.0 && l.fract() == 0.0 && l <= 1e8) {
        return Err(bad(format!("`length` = {l} is not a count")));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // integral, 0..=1e8
    Ok(l as usize)
}

/// `(H, N)` of a `[H, N, 2]` input.
fn hn(case: &Case, name: &str) -> Result<(usize, usize), Failure> {
    match *case.input(name)?.shape() {
        [h, n, 2] => Ok((h, n)),
        ref s => Err(bad(format!("`{name}` has shape {s:?}, expected [H, N, 2]"))),
    }
}

fn rounded<T: Element>(case: &Case, name: &str) -> Result<Vec<T>, Failure> {
    Ok(case
        .input(name)?
        .values
        .iter()
        .map(|&v| T::from_f64(v))
        .collect())
}

fn s4d_kernel<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let method = discretization(case)?;
    let l = length(case)?;
    let (h, n) = hn(case, "a")?;
    let (log_dt, a, bb, c) = (
        rounded::<T>(case, "log_dt")?,
        rounded::<T>(case, "a")?,
        rounded::<T>(case, "b")?,
        rounded::<T>(case, "c")?,
    );
    let d = vec![T::from_f64(0.0); h];
    let params = S4dParams {
        h,
        n,
        log_dt: &log_dt,
        a: &a,
        b: &bb,
        c: &c,
        d: &d,
    };
    let len = S4d::<B, T::Acc>::mem_len(h, n).map_err(Failure::setup)?;
    let mut mem = b.alloc::<T::Acc>(len).map_err(Failure::setup)?;
    let mut host = vec![T::Acc::from_f64(0.0); len];
    let model = S4d::<B, T::Acc>::new(
        b,
        &params,
        method,
        Stability::Strict,
        core::borrow::BorrowMut::borrow_mut(&mut mem),
        &mut host,
    )
    .map_err(Failure::Kernel)?;
    let mut k = out::<B, T>(b, case, "k")?;
    if case.expected("k")?.shape != [h, l] {
        return Err(bad("expected `k` is not [H, length]"));
    }
    model.kernel::<T>(b, k.view()?).map_err(Failure::Kernel)?;
    case.check("k", &widen(&k.finish(b, "k")?))
}

fn ssm_conv<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let k = Input::<B, T>::new(b, &case.input("k")?)?;
    let u = Input::<B, T>::new(b, &case.input("u")?)?;
    let dt = case.input("d")?;
    // `d` is rounded to the case's type, then held in the accumulation type (exact).
    let d_rounded = Tensor::contiguous(dt.shape(), dt.rounded::<T>())?;
    let d = Input::<B, T::Acc>::new(b, &d_rounded)?;
    let (h, l) = match *case.input("k")?.shape() {
        [h, l] => (h, l),
        ref s => return Err(bad(format!("`k` has shape {s:?}, expected [H, L]"))),
    };
    let wl = b.ssm_conv_workspace_len(h, l).map_err(Failure::setup)?;
    let mut ws = b.alloc::<T::Acc>(wl).map_err(Failure::setup)?;
    let mut y = out::<B, T>(b, case, "y")?;
    b.ssm_conv::<T>(
        k.view()?,
        u.view()?,
        Some(d.view()?),
        y.view()?,
        ViewMut::new(
            core::borrow::BorrowMut::borrow_mut(&mut ws),
            Layout::contiguous(&[wl]).map_err(Failure::setup)?,
        )
        .map_err(Failure::setup)?,
    )
    .map_err(Failure::Kernel)?;
    case.check("y", &widen(&y.finish(b, "y")?))
}

/// S4 (DPLR) kernels are computed on the host in f64 (the Cauchy kernel has no backend kernel
/// yet); the inputs are rounded to the case's type first and the output once on the way out, as
/// a backend would store it.
fn s4_kernel<T: Element>(case: &Case) -> Result<Agreement, Failure> {
    let method = discretization(case)?;
    let l = length(case)?;
    let (h, n) = hn(case, "lambda")?;
    let cx = |name: &str| -> Result<Vec<Complex>, Failure> {
        let v = case.input(name)?.rounded::<T>();
        if v.len() != 2 * h * n {
            return Err(bad(format!("`{name}` is not [H, N, 2]")));
        }
        Ok(v.chunks_exact(2)
            .map(|z| match *z {
                [re, im] => Complex::new(re, im),
                _ => Complex::ZERO,
            })
            .collect())
    };
    let (lambda, p, bb, c) = (cx("lambda")?, cx("p")?, cx("b")?, cx("c")?);
    let log_dt = case.input("log_dt")?.rounded::<T>();
    if log_dt.len() != h {
        return Err(bad("`log_dt` is not [H]"));
    }
    let mut k = vec![0.0f64; h * l];
    for (hh, kh) in k.chunks_mut(l.max(1)).enumerate().take(h) {
        let sl = |v: &[Complex]| v.get(hh * n..(hh + 1) * n).unwrap_or(&[]).to_vec();
        let (lam, pp, b1, c1) = (sl(&lambda), sl(&p), sl(&bb), sl(&c));
        let m = Dplr {
            lambda: &lam,
            p: &pp,
            b: &b1,
            c: &c1,
        };
        let ldt = log_dt.get(hh).copied().unwrap_or(f64::NAN);
        let dt = seq_ssm::discretization::dt_from_log(ldt).map_err(Failure::Kernel)?;
        match method {
            Discretization::Bilinear => {
                let (nc, nf) = s4::cauchy_workspace_len(n, l).map_err(Failure::setup)?;
                let mut wc = vec![Complex::ZERO; nc];
                let mut wf = vec![0.0; nf];
                s4::kernel_cauchy(dt, &m, kh, &mut wc, &mut wf).map_err(Failure::Kernel)?;
            }
            Discretization::Zoh => {
                let mut ws =
                    vec![Complex::ZERO; s4::dense_workspace_len(n).map_err(Failure::setup)?];
                s4::kernel_dense(method, dt, &m, kh, &mut ws).map_err(Failure::Kernel)?;
            }
        }
    }
    let got: Vec<f64> = k.iter().map(|&v| round::<T>(v)).collect();
    case.check("k", &got)
}
