//! seq-distill in the suite (see [`super`]): the fused distillation kernels `kd_loss`
//! (every divergence, masks, temperatures) and `cross_entropy`, against the f64 reference and the
//! golden vectors of `vectors/kd_loss.json`.

use core::borrow::{Borrow, BorrowMut};

use proptest::prelude::*;
use seqcore::portable::kd_loss::{CeConfig, Divergence, KdConfig, KdReduction};
use seqcore::{Allocate, Backend, Element, Layout, Reference, View};

use crate::Failure;
use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, Tensor, widen};
use crate::properties::{Bench, Work};
use crate::strategies::{Specials, dim, tensor};
use crate::suite::{Config, Row, sample};
use crate::tolerance;
use crate::vectors::{Case as VCase, bad, out};

/// Row names, in report order.
pub const KERNELS: &[&str] = &["kd_loss", "cross_entropy"];

/// Vector-format mechanisms run here.
pub const VECTORS: &[&str] = &["kd_loss", "kd_loss_sparse", "cross_entropy"];

/// One `kd_loss` call: teacher and student logits `[n, v]`, an optional row mask.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// The divergence.
    pub divergence: Divergence,
    /// Temperature.
    pub temperature: f64,
    /// Teacher logits (may hold `-inf`).
    pub teacher: Tensor,
    /// Student logits.
    pub student: Tensor,
    /// Row mask (nonzero keeps).
    pub mask: Option<Vec<u8>>,
}

/// A u8 buffer on `b` holding `host`.
fn upload_u8<B: Allocate>(b: &B, host: &[u8]) -> Result<B::Buffer<u8>, Failure> {
    let mut buf = b.alloc::<u8>(host.len()).map_err(Failure::setup)?;
    b.write(host, buf.borrow_mut()).map_err(Failure::setup)?;
    Ok(buf)
}

fn softmax_rows(x: &[f64], v: usize, t: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(v.max(1)) {
        let m = row.iter().map(|a| a / t).fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|a| (a / t - m).exp()).sum();
        out.extend(row.iter().map(|a| {
            if m.is_finite() {
                (a / t - m).exp() / s
            } else {
                0.0
            }
        }));
    }
    out
}

/// Runs `case` on `b` in `T` and compares loss and gradient with the f64 reference.
///
/// The bound is derived as in [`crate::tolerance`]: every log-probability carries an absolute
/// error of about `ua (4 v + 4 Z + 8)`, `Z` the largest scaled logit magnitude of the row plus
/// `ln v`; a gradient element `c/T q (g - G)` inherits it times `(p + q)(3 + 4 Z)`, the loss
/// that summed over the row; each output is rounded once to `T` (`2u`).
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let shape = case.teacher.shape().to_vec();
    let (n, v) = match *shape.as_slice() {
        [n, v] => (n, v),
        _ => return Err(Failure::Setup("rank 2 cases only".into())),
    };
    let cfg = KdConfig::new(case.divergence, case.temperature);
    let (t, s) = (case.teacher.rounded::<T>(), case.student.rounded::<T>());
    let r = Reference;
    let (mut want_l, mut want_g) = ([0.0f64], vec![0.0f64; n * v]);
    {
        let mv = match &case.mask {
            Some(m) => Some(r.view(m, &[n]).map_err(Failure::setup)?),
            None => None,
        };
        r.kd_loss(
            &cfg,
            r.view(&t, &shape).map_err(Failure::setup)?,
            r.view(&s, &shape).map_err(Failure::setup)?,
            mv,
            r.view_mut(&mut want_l, &[]).map_err(Failure::setup)?,
            Some(r.view_mut(&mut want_g, &shape).map_err(Failure::setup)?),
        )
        .map_err(Failure::setup)?;
    }
    let ti = Input::<B, T>::new(b, &case.teacher)?;
    let si = Input::<B, T>::new(b, &case.student)?;
    let mbuf = match &case.mask {
        Some(m) => Some(upload_u8(b, m)?),
        None => None,
    };
    let mview = match &mbuf {
        Some(m) => Some(
            View::new(
                m.borrow(),
                Layout::contiguous(&[n]).map_err(Failure::setup)?,
            )
            .map_err(Failure::setup)?,
        ),
        None => None,
    };
    let mut lo = Output::<B, T>::new(b, &Layout::contiguous(&[]).map_err(Failure::setup)?, None)?;
    let mut go = Output::<B, T>::new(
        b,
        &Layout::contiguous(&shape).map_err(Failure::setup)?,
        None,
    )?;
    b.kd_loss(
        &cfg,
        ti.view()?,
        si.view()?,
        mview,
        lo.view()?,
        Some(go.view()?),
    )
    .map_err(Failure::Kernel)?;
    let got_l = widen(&lo.finish(b, "loss")?);
    let got_g = widen(&go.finish(b, "grad")?);

    let temp = case.temperature;
    let (p, q) = (softmax_rows(&t, v, temp), softmax_rows(&s, v, temp));
    let kept = case
        .mask
        .as_ref()
        .map_or(n, |m| m.iter().filter(|&&x| x != 0).count());
    let c = temp * temp / kept.max(1) as f64;
    let (ua, u, fl) = (
        tolerance::ua::<T>(),
        tolerance::u::<T>(),
        tolerance::floor::<T>(),
    );
    let zrow: Vec<f64> = (0..n)
        .map(|r| {
            let row = |x: &[f64]| {
                x.get(r * v..(r + 1) * v)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|a| a.is_finite())
                    .fold(0.0f64, |m, a| m.max((a / temp).abs()))
            };
            row(&t).max(row(&s)) + (v.max(1) as f64).ln()
        })
        .collect();
    let k = |r: usize| {
        let z = zrow.get(r).copied().unwrap_or(0.0);
        ua * (4.0 * v as f64 + 4.0 * z + 8.0) * (3.0 + 4.0 * z)
    };
    let gbound = |i: usize| {
        let r = i / v.max(1);
        let pq = p.get(i).copied().unwrap_or(1.0) + q.get(i).copied().unwrap_or(1.0);
        Bound {
            atol: fl + c / temp * k(r) * pq,
            rtol: 2.0 * u,
        }
    };
    let lsum: f64 = (0..n).map(|r| 2.0 * c * k(r)).sum();
    let lbound = Bound {
        atol: fl + lsum,
        rtol: 2.0 * u + ua * (n as f64 + 2.0),
    };
    let al = compare("loss", &got_l, &want_l, |_| lbound)?;
    let ag = compare("grad", &got_g, &want_g, gbound)?;
    Ok(al.worst(ag))
}

fn divergence() -> impl Strategy<Value = Divergence> {
    prop_oneof![
        Just(Divergence::ForwardKl),
        Just(Divergence::ReverseKl),
        (0.0f64..=1.0).prop_map(|beta| Divergence::Jsd { beta }),
        Just(Divergence::Jsd { beta: 0.5 }),
        Just(Divergence::TotalVariation),
        (0.0f64..=1.0).prop_map(|alpha| Divergence::SkewForwardKl { alpha }),
        (0.0f64..=1.0).prop_map(|alpha| Divergence::SkewReverseKl { alpha }),
    ]
}

/// Random cases: rows of awkward lengths, strided storage, temperatures from 0.25 to 4, masks.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        divergence(),
        1usize..5,
        dim(140),
        prop_oneof![Just(1.0), Just(2.0), 0.25f64..4.0],
        any::<bool>(),
    )
        .prop_flat_map(|(d, n, v, temp, masked)| {
            let v = v.max(1);
            let mask = if masked {
                proptest::collection::vec(0u8..2, n).prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            };
            (
                tensor(vec![n, v], 3.0, Specials::default()),
                tensor(vec![n, v], 3.0, Specials::default()),
                mask,
            )
                .prop_map(move |(teacher, student, mask)| Case {
                    divergence: d,
                    temperature: temp,
                    teacher,
                    student,
                    mask,
                })
        })
}

/// Fixed edge cases: V = 1, a fully masked batch, teacher zeros (`-inf`), temperature 0.05 with
/// logits near the f16 maximum, a 4096-wide row.
///
/// # Errors
/// Never for these shapes.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let inf = f64::NEG_INFINITY;
    let mut v = Vec::new();
    for d in [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::Jsd { beta: 0.5 },
        Divergence::TotalVariation,
        Divergence::SkewForwardKl { alpha: 0.1 },
        Divergence::SkewReverseKl { alpha: 0.1 },
    ] {
        let c = |temperature, teacher, student, mask| Case {
            divergence: d,
            temperature,
            teacher,
            student,
            mask,
        };
        v.push(c(
            1.0,
            Tensor::contiguous(&[2, 1], vec![1.0, -3.0])?,
            Tensor::contiguous(&[2, 1], vec![0.0, 2.0])?,
            None,
        ));
        v.push(c(
            2.0,
            Tensor::contiguous(&[2, 3], vec![f64::NAN; 6])?,
            Tensor::contiguous(&[2, 3], vec![f64::NAN; 6])?,
            Some(vec![0, 0]),
        ));
        if !matches!(d, Divergence::ReverseKl | Divergence::SkewReverseKl { .. }) {
            v.push(c(
                1.0,
                Tensor::contiguous(&[1, 4], vec![1.0, inf, 0.5, inf])?,
                Tensor::contiguous(&[1, 4], vec![0.2, 3.0, -1.0, 0.0])?,
                None,
            ));
        }
        v.push(c(
            0.05,
            Tensor::contiguous(&[2, 3], vec![6e4, -6e4, 1e3, 3.0, 2.9, -1.0])?,
            Tensor::contiguous(&[2, 3], vec![-6e4, 6.5e4, 0.0, 2.0, 3.0, 0.5])?,
            None,
        ));
        let wide: Vec<f64> = (0..4096)
            .map(|i| f64::from((i * 7919) % 1000) / 200.0 - 2.5)
            .collect();
        let wide2: Vec<f64> = (0..4096)
            .map(|i| f64::from((i * 104_729) % 1000) / 200.0 - 2.5)
            .collect();
        v.push(c(
            1.0,
            Tensor::contiguous(&[1, 4096], wide)?,
            Tensor::contiguous(&[1, 4096], wide2)?,
            None,
        ));
    }
    Ok(v)
}

/// Timing setup: forward-KL loss + gradient over `rows x v`. Work: both logit arrays read once
/// and the gradient written once (the floor of any implementation).
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(
    b: &'a B,
    rows: usize,
    v: usize,
) -> Result<Bench<'a>, Failure> {
    let t: Vec<f64> = (0..rows * v)
        .map(|i| ((i * 7919) % 1000) as f64 / 100.0 - 5.0)
        .collect();
    let s: Vec<f64> = (0..rows * v)
        .map(|i| ((i * 104_729) % 1000) as f64 / 100.0 - 5.0)
        .collect();
    let ti = Input::<B, T>::new(b, &Tensor::contiguous(&[rows, v], t)?)?;
    let si = Input::<B, T>::new(b, &Tensor::contiguous(&[rows, v], s)?)?;
    let mut lo = Output::<B, T>::new(b, &Layout::contiguous(&[]).map_err(Failure::setup)?, None)?;
    let mut go = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[rows, v]).map_err(Failure::setup)?,
        None,
    )?;
    let cfg = KdConfig::new(Divergence::ForwardKl, 2.0);
    Ok(Bench {
        run: Box::new(move || {
            b.kd_loss(
                &cfg,
                ti.view()?,
                si.view()?,
                None,
                lo.view()?,
                Some(go.view()?),
            )
            .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(3.0 * (rows * v * size_of::<T>()) as f64),
        size: format!("{rows}x{v}"),
    })
}

/// One `cross_entropy` call: logits `[n, v]`, targets (`-100` ignored), label smoothing.
#[derive(Clone, Debug, PartialEq)]
pub struct CeCase {
    /// Logits.
    pub logits: Tensor,
    /// Target token per row.
    pub targets: Vec<i32>,
    /// Label smoothing.
    pub eps: f64,
}

/// Runs `case` on `b` in `T` against the f64 reference. Bound as [`check`]'s: each
/// log-probability carries `ua (4 v + 4 Z + 8)` (`Z` = largest logit magnitude + `ln v`), a
/// gradient element `c q` times it, the loss twice it per kept row; outputs rounded once (`2u`).
///
/// # Errors
/// The first [`Failure`].
pub fn check_ce<B: Allocate, T: Element>(b: &B, case: &CeCase) -> Result<Agreement, Failure> {
    let shape = case.logits.shape().to_vec();
    let (n, v) = match *shape.as_slice() {
        [n, v] => (n, v),
        _ => return Err(Failure::Setup("rank 2 cases only".into())),
    };
    let cfg = CeConfig::new(case.eps);
    let x = case.logits.rounded::<T>();
    let r = Reference;
    let (mut want_l, mut want_g) = ([0.0f64], vec![0.0f64; n * v]);
    r.cross_entropy(
        &cfg,
        r.view(&x, &shape).map_err(Failure::setup)?,
        r.view(&case.targets, &[n]).map_err(Failure::setup)?,
        r.view_mut(&mut want_l, &[]).map_err(Failure::setup)?,
        Some(r.view_mut(&mut want_g, &shape).map_err(Failure::setup)?),
    )
    .map_err(Failure::setup)?;
    let xi = Input::<B, T>::new(b, &case.logits)?;
    let mut ybuf = b.alloc::<i32>(n).map_err(Failure::setup)?;
    b.write(&case.targets, ybuf.borrow_mut())
        .map_err(Failure::setup)?;
    let yv = View::new(
        ybuf.borrow(),
        Layout::contiguous(&[n]).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let mut lo = Output::<B, T>::new(b, &Layout::contiguous(&[]).map_err(Failure::setup)?, None)?;
    let mut go = Output::<B, T>::new(
        b,
        &Layout::contiguous(&shape).map_err(Failure::setup)?,
        None,
    )?;
    b.cross_entropy(&cfg, xi.view()?, yv, lo.view()?, Some(go.view()?))
        .map_err(Failure::Kernel)?;
    let got_l = widen(&lo.finish(b, "loss")?);
    let got_g = widen(&go.finish(b, "grad")?);
    let q = softmax_rows(&x, v, 1.0);
    let kept = case.targets.iter().filter(|&&y| y != -100).count();
    let c = 1.0 / kept.max(1) as f64;
    let (ua, u, fl) = (
        tolerance::ua::<T>(),
        tolerance::u::<T>(),
        tolerance::floor::<T>(),
    );
    let k = |r: usize| {
        let row = x.get(r * v..(r + 1) * v).unwrap_or(&[]);
        let z = row.iter().fold(0.0f64, |m, a| m.max(a.abs())) + (v.max(1) as f64).ln();
        ua * (4.0 * v as f64 + 4.0 * z + 8.0)
    };
    // The smoothed target `t_i = (1 - eps) [i = y] + eps / V` of element `i` (0 on ignored rows,
    // whose gradient is exactly 0).
    let t = |i: usize| {
        let (r, j) = (i / v.max(1), i % v.max(1));
        match case.targets.get(r).and_then(|&y| usize::try_from(y).ok()) {
            Some(y) => case.eps / v.max(1) as f64 + if j == y { 1.0 - case.eps } else { 0.0 },
            None => 0.0,
        }
    };
    // `c (q - t)` in the accumulation type: besides the error of `q` (`k q`) and the store
    // (`2u |ref|`), the roundings of `c = 1 / kept`, of `t` (`eps / V`, `1 - eps` and their sum:
    // 3) and of the difference and the product: `ua c (3 |q - t| + 3 t) <= ua c (3 q + 6 t)`.
    let gb = |i: usize| {
        let qi = q.get(i).copied().unwrap_or(1.0);
        Bound {
            atol: fl + c * k(i / v.max(1)) * qi + c * ua * (3.0 * qi + 6.0 * t(i)),
            rtol: 2.0 * u,
        }
    };
    let lsum: f64 = (0..n).map(|r| 2.0 * c * k(r)).sum();
    let lb = Bound {
        atol: fl + lsum,
        rtol: 2.0 * u + ua * (n as f64 + 2.0),
    };
    let al = compare("loss", &got_l, &want_l, |_| lb)?;
    let ag = compare("grad", &got_g, &want_g, gb)?;
    Ok(al.worst(ag))
}

/// Random cross-entropy cases: awkward row lengths, strided storage, ignored targets, smoothing
/// in `[0, 1]`.
pub fn ce_cases() -> impl Strategy<Value = CeCase> {
    (
        1usize..6,
        dim(140),
        prop_oneof![Just(0.0), Just(0.1), 0.0f64..=1.0],
    )
        .prop_flat_map(|(n, v, eps)| {
            let v = v.max(1);
            let vi = i32::try_from(v).unwrap_or(i32::MAX);
            (
                tensor(vec![n, v], 3.0, Specials::default()),
                proptest::collection::vec(prop_oneof![4 => 0..vi, 1 => Just(-100)], n),
            )
                .prop_map(move |(logits, targets)| CeCase {
                    logits,
                    targets,
                    eps,
                })
        })
}

/// Appends this crate's rows (see [`super::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    if !(config.wants("kd_loss") || config.wants("cross_entropy")) || !supported::<B, T>(b) {
        // An optional capability this backend lacks: it answers `Unsupported`, never a wrong
        // result (DESIGN), and has no row.
        return;
    }
    if config.wants("kd_loss") {
        kd_row::<B, T>(b, config, seed, n, rows);
    }
    if config.wants("cross_entropy") {
        let mut row = Row::new::<B, T>(b, "cross_entropy");
        for c in sample(&ce_cases(), n, seed ^ 0xCE) {
            row.add(&c, check_ce::<B, T>(b, &c));
        }
        rows.push(row);
    }
}

fn kd_row<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    let mut row = Row::new::<B, T>(b, "kd_loss");
    let cases =
        row.fixed(config, edge_cases())
            .into_iter()
            .chain(sample(&cases(), n, seed ^ 0xD157));
    for c in cases {
        row.add(&c, check::<B, T>(b, &c));
    }
    // The size (N = 4096, V = 32000) in f32, the type training runs in, in perf mode
    // and full reports; a quick report times 256 rows of the same V (the same per-row work, 16
    // times less of it). Other types: small.
    let long = config
        .timing
        .is_some_and(|t| t >= std::time::Duration::from_millis(200));
    if T::DTYPE == seqcore::DType::F32 {
        let n = if long || !config.checks { 4096 } else { 256 };
        row.time(config, bench::<B, T>(b, n, 32000));
    } else {
        row.time(config, bench::<B, T>(b, 64, 4096));
    }
    rows.push(row);
}

/// False when `b` answers [`seqcore::Error::Unsupported`] for `kd_loss` (memory not on the host
/// and no override).
fn supported<B: Allocate, T: Element>(b: &B) -> bool {
    let probe = || -> Result<bool, Failure> {
        let x = Input::<B, T>::new(b, &Tensor::contiguous(&[1, 1], vec![0.0])?)?;
        let mut l =
            Output::<B, T>::new(b, &Layout::contiguous(&[]).map_err(Failure::setup)?, None)?;
        let cfg = KdConfig::new(Divergence::ForwardKl, 1.0);
        Ok(!matches!(
            b.kd_loss(&cfg, x.view()?, x.view()?, None, l.view()?, None),
            Err(seqcore::Error::Unsupported { .. })
        ))
    };
    // A probe that cannot even be set up is left to the row, which reports it.
    probe().unwrap_or(true)
}

fn divergence_of(case: &VCase) -> Result<Divergence, Failure> {
    let kind = case.param_str("kind")?;
    let param = match kind {
        "jsd" => case.param_f64("beta", None)?,
        "skew_forward_kl" | "skew_reverse_kl" => case.param_f64("alpha", None)?,
        _ => 0.0,
    };
    Divergence::from_name(kind, param).ok_or_else(|| bad(format!("unknown kd_loss kind `{kind}`")))
}

fn u8_mask(case: &VCase, n: usize) -> Result<Option<Vec<u8>>, Failure> {
    let Some(m) = case.inputs.get("mask") else {
        return Ok(None);
    };
    if m.shape != [n] {
        return Err(bad(format!(
            "`mask` has shape {:?}, expected [{n}]",
            m.shape
        )));
    }
    m.data
        .iter()
        .map(|&x| match x {
            0.0 => Ok(0u8),
            1.0 => Ok(1u8),
            _ => Err(bad(format!("mask value {x} is not 0 or 1"))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn run_kd<B: Allocate, T: Element>(b: &B, case: &VCase) -> Result<Agreement, Failure> {
    let cfg = KdConfig::new(divergence_of(case)?, case.param_f64("temperature", None)?);
    let teacher = case.input("teacher")?;
    let n = teacher.shape().first().copied().unwrap_or(0);
    let ti = Input::<B, T>::new(b, &teacher)?;
    let si = Input::<B, T>::new(b, &case.input("student")?)?;
    let mask = u8_mask(case, n)?;
    let mbuf = match &mask {
        Some(m) => Some(upload_u8(b, m)?),
        None => None,
    };
    let mview = match &mbuf {
        Some(m) => Some(
            View::new(
                m.borrow(),
                Layout::contiguous(&[n]).map_err(Failure::setup)?,
            )
            .map_err(Failure::setup)?,
        ),
        None => None,
    };
    let mut l = out::<B, T>(b, case, "loss")?;
    let mut g = out::<B, T>(b, case, "grad")?;
    b.kd_loss(
        &cfg,
        ti.view()?,
        si.view()?,
        mview,
        l.view()?,
        Some(g.view()?),
    )
    .map_err(Failure::Kernel)?;
    let al = case.check("loss", &widen(&l.finish(b, "loss")?))?;
    let ag = case.check("grad", &widen(&g.finish(b, "grad")?))?;
    Ok(al.worst(ag))
}

fn run_sparse<B: Allocate, T: Element>(b: &B, case: &VCase) -> Result<Agreement, Failure> {
    let cfg = KdConfig::new(divergence_of(case)?, case.param_f64("temperature", None)?);
    let values = case.input("values")?;
    let n = values.shape().first().copied().unwrap_or(0);
    let vi = Input::<B, T>::new(b, &values)?;
    let si = Input::<B, T>::new(b, &case.input("student")?)?;
    let ti = match case.inputs.get("tail") {
        Some(_) => Some(Input::<B, T>::new(b, &case.input("tail")?)?),
        None => None,
    };
    let ix = case
        .inputs
        .get("indices")
        .ok_or_else(|| bad("no input `indices`"))?;
    let ih = ix
        .data
        .iter()
        .map(|&i| {
            if i >= 0.0 && i.fract() == 0.0 && i <= f64::from(u32::MAX) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked
                Ok(i as u32)
            } else {
                Err(bad(format!("index {i}")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut ibuf = b.alloc::<u32>(ih.len()).map_err(Failure::setup)?;
    b.write(&ih, ibuf.borrow_mut()).map_err(Failure::setup)?;
    let iv = View::new(
        ibuf.borrow(),
        Layout::contiguous(&ix.shape).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let mask = u8_mask(case, n)?;
    let mbuf = match &mask {
        Some(m) => Some(upload_u8(b, m)?),
        None => None,
    };
    let mview = match &mbuf {
        Some(m) => Some(
            View::new(
                m.borrow(),
                Layout::contiguous(&[n]).map_err(Failure::setup)?,
            )
            .map_err(Failure::setup)?,
        ),
        None => None,
    };
    let tview = match &ti {
        Some(t) => Some(t.view()?),
        None => None,
    };
    let mut l = out::<B, T>(b, case, "loss")?;
    let mut g = out::<B, T>(b, case, "grad")?;
    b.kd_loss_sparse(
        &cfg,
        vi.view()?,
        iv,
        tview,
        si.view()?,
        mview,
        l.view()?,
        Some(g.view()?),
    )
    .map_err(Failure::Kernel)?;
    let al = case.check("loss", &widen(&l.finish(b, "loss")?))?;
    let ag = case.check("grad", &widen(&g.finish(b, "grad")?))?;
    Ok(al.worst(ag))
}

fn run_ce<B: Allocate, T: Element>(b: &B, case: &VCase) -> Result<Agreement, Failure> {
    let eps = case.param_f64("label_smoothing", Some(0.0))?;
    let ignore = case.param_f64("ignore_index", Some(-100.0))?;
    let as_i32 = |x: f64| {
        if x.fract() == 0.0 && x >= f64::from(i32::MIN) && x <= f64::from(i32::MAX) {
            #[allow(clippy::cast_possible_truncation)] // integral and in range
            Ok(x as i32)
        } else {
            Err(bad(format!("{x} is not an i32")))
        }
    };
    let cfg = CeConfig {
        ignore_index: as_i32(ignore)?,
        reduction: KdReduction::Mean,
        ..CeConfig::new(eps)
    };
    let xi = Input::<B, T>::new(b, &case.input("logits")?)?;
    let y = case
        .inputs
        .get("targets")
        .ok_or_else(|| bad("no input `targets`"))?;
    let yh = y
        .data
        .iter()
        .map(|&x| as_i32(x))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ybuf = b.alloc::<i32>(yh.len()).map_err(Failure::setup)?;
    b.write(&yh, ybuf.borrow_mut()).map_err(Failure::setup)?;
    let yv = View::new(
        ybuf.borrow(),
        Layout::contiguous(&y.shape).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let mut l = out::<B, T>(b, case, "loss")?;
    let mut g = out::<B, T>(b, case, "grad")?;
    b.cross_entropy(&cfg, xi.view()?, yv, l.view()?, Some(g.view()?))
        .map_err(Failure::Kernel)?;
    let al = case.check("loss", &widen(&l.finish(b, "loss")?))?;
    let ag = case.check("grad", &widen(&g.finish(b, "grad")?))?;
    Ok(al.worst(ag))
}

/// Runs a case whose mechanism is in [`VECTORS`]; `None` for any other.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &VCase,
) -> Option<Result<Agreement, Failure>> {
    match case.mechanism.as_str() {
        "kd_loss" => Some(run_kd::<B, T>(b, case)),
        "kd_loss_sparse" => Some(run_sparse::<B, T>(b, case)),
        "cross_entropy" => Some(run_ce::<B, T>(b, case)),
        _ => None,
    }
}
