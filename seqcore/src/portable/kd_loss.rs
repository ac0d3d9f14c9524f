//! Token-level distillation losses with their analytic gradients with respect to the student
//! logits, fused: one pass over both logit rows for the two log-sum-exps (online, Milakov &
//! Gimelshein 2018), one for the loss, and (for every divergence but forward KL, whose gradient
//! needs no row total) one to write the gradient.
//!
//! With `p = softmax(teacher / T)`, `q = softmax(student / T)` over the last axis:
//!
//! | divergence | per-row loss `l` | `g_i = dl/dq_i` |
//! | --- | --- | --- |
//! | forward KL (Hinton et al. 2015) | `sum_i p_i (ln p_i - ln q_i)` | `-p_i / q_i` |
//! | reverse KL | `sum_i q_i (ln q_i - ln p_i)` | `ln q_i - ln p_i + 1` |
//! | generalised JSD (Agarwal et al. 2024, GKD eq. 4; TRL `generalized_jsd_loss`) | `beta KL(p, m) + (1 - beta) KL(q, m)`, `m = beta p + (1 - beta) q` | `(1 - beta) (ln q_i - ln m_i)` |
//! | total variation | `sum_i abs(p_i - q_i) / 2` | `sign(q_i - p_i) / 2` |
//! | skew forward KL (Ko et al. 2024, DistiLLM eq. 2) | `KL(p, alpha p + (1 - alpha) q)` | `-(1 - alpha) p_i / m_i` |
//! | skew reverse KL (DistiLLM) | `KL(q, alpha q + (1 - alpha) p)` | `ln q_i - ln m_i + 1 - alpha q_i / m_i` |
//!
//! and through the softmax `dl/dz_j = q_j (g_j - sum_i q_i g_i)` for the student's scaled logits
//! `z = student / T` (forward KL: `q_j - p_j`). `0 ln 0 = 0` throughout. A row's loss is
//! multiplied by `T^2` (Hinton et al.: the gradients then keep their size as `T` changes; off with
//! [`KdConfig::t_squared`]) and by [`KdConfig::scale`], then reduced over the rows the mask keeps.

use crate::check;
use crate::element::{Element, Real};
use crate::error::{Error, Result};
use crate::layout::{Layout, Offsets};
use crate::reference::Reference;
use crate::view::{View, ViewMut};

/// The divergence between the teacher's distribution `p` and the student's `q`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Divergence {
    /// `KL(p || q)`, the classic distillation loss (Hinton et al. 2015, eq. 1 with `T^2`).
    ForwardKl,
    /// `KL(q || p)`, mode-seeking (MiniLLM, Gu et al. 2024).
    ReverseKl,
    /// Generalised Jensen-Shannon divergence (GKD, Agarwal et al. 2024, eq. 4), as TRL's
    /// `generalized_jsd_loss`: `beta KL(p || m) + (1 - beta) KL(q || m)` with the mixture
    /// `m = beta p + (1 - beta) q`; `beta = 0` is forward KL, `beta = 1` reverse KL, exactly.
    Jsd {
        /// Weight of the teacher in the mixture, in `[0, 1]`.
        beta: f64,
    },
    /// Total variation distance `sum |p - q| / 2`; its gradient takes `sign(0) = 0`.
    TotalVariation,
    /// Skew KL `KL(p || alpha p + (1 - alpha) q)` (DistiLLM, Ko et al. 2024, eq. 2).
    SkewForwardKl {
        /// Skew, in `[0, 1]` (0: forward KL).
        alpha: f64,
    },
    /// Skew reverse KL `KL(q || alpha q + (1 - alpha) p)` (DistiLLM, eq. 3).
    SkewReverseKl {
        /// Skew, in `[0, 1]` (0: reverse KL).
        alpha: f64,
    },
}

impl Divergence {
    /// The name used by reports and by the `kd_loss` golden vectors (`forward_kl`, `reverse_kl`,
    /// `jsd`, `total_variation`, `skew_forward_kl`, `skew_reverse_kl`).
    pub const fn name(&self) -> &'static str {
        match self {
            Divergence::ForwardKl => "forward_kl",
            Divergence::ReverseKl => "reverse_kl",
            Divergence::Jsd { .. } => "jsd",
            Divergence::TotalVariation => "total_variation",
            Divergence::SkewForwardKl { .. } => "skew_forward_kl",
            Divergence::SkewReverseKl { .. } => "skew_reverse_kl",
        }
    }

    /// The divergence named `name`; `param` is `beta` for `jsd`, `alpha` for the skew KLs and
    /// ignored otherwise.
    pub fn from_name(name: &str, param: f64) -> Option<Divergence> {
        Some(match name {
            "forward_kl" => Divergence::ForwardKl,
            "reverse_kl" => Divergence::ReverseKl,
            "jsd" => Divergence::Jsd { beta: param },
            "total_variation" => Divergence::TotalVariation,
            "skew_forward_kl" => Divergence::SkewForwardKl { alpha: param },
            "skew_reverse_kl" => Divergence::SkewReverseKl { alpha: param },
            _ => return None,
        })
    }
}

/// How per-row losses become the output (PyTorch's `reduction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KdReduction {
    /// The mean over the rows the mask keeps (`loss` has shape `[]`); no row kept gives 0.
    /// PyTorch `kl_div(reduction="batchmean")` over the flattened rows; TRL's `batchmean` with
    /// labels.
    Mean,
    /// The sum over the kept rows (`loss` has shape `[]`).
    Sum,
    /// One loss per row (`loss` has the rows' shape; masked rows hold 0); the gradient is the
    /// gradient of their sum.
    None,
}

/// Parameters of [`kd_loss`] and [`kd_loss_sparse`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KdConfig {
    /// The divergence.
    pub divergence: Divergence,
    /// Softmax temperature `T > 0`, dividing both teacher and student logits.
    pub temperature: f64,
    /// The reduction over rows.
    pub reduction: KdReduction,
    /// Multiply each row's loss by `T^2` (Hinton et al. 2015; the `kd_loss` vector format). TRL's
    /// `generalized_jsd_loss` and torchtune's `ForwardKLLoss` do not: set `false` to match them.
    pub t_squared: bool,
    /// A finite factor on the loss and the gradient (1 by default), for combining calls, e.g. one
    /// per example of a batch with `1 / total_tokens`.
    pub scale: f64,
}

impl KdConfig {
    /// `divergence` at `temperature`, mean reduction, with `T^2`, scale 1.
    pub const fn new(divergence: Divergence, temperature: f64) -> KdConfig {
        KdConfig {
            divergence,
            temperature,
            reduction: KdReduction::Mean,
            t_squared: true,
            scale: 1.0,
        }
    }

    /// The same with `reduction`.
    pub const fn with_reduction(self, reduction: KdReduction) -> KdConfig {
        KdConfig { reduction, ..self }
    }

    /// The same with or without the `T^2` factor.
    pub const fn with_t_squared(self, t_squared: bool) -> KdConfig {
        KdConfig { t_squared, ..self }
    }

    /// The same with `scale`.
    pub const fn with_scale(self, scale: f64) -> KdConfig {
        KdConfig { scale, ..self }
    }

    /// Checks every parameter for computation in `R`.
    ///
    /// # Errors
    /// [`Error::Param`] naming `temperature` (not finite or `<= 0`), `beta` or `alpha` (outside
    /// `[0, 1]` or NaN), `scale` (not finite).
    pub fn check<R: Real>(&self) -> Result<()> {
        let t = self.temperature;
        if !(t > 0.0 && t.is_finite()) {
            return Err(Error::Param {
                arg: "temperature",
                reason: "must be finite and > 0",
            });
        }
        let inv: R = R::one() / R::lit(t);
        if R::lit(t) <= R::zero() || !inv.is_finite() {
            return Err(Error::Param {
                arg: "temperature",
                reason: "must be > 0 and its reciprocal finite in the accumulation type",
            });
        }
        check::finite_in::<R>("scale", self.scale)?;
        let unit = |arg, x: f64| {
            if (0.0..=1.0).contains(&x) {
                Ok(())
            } else {
                Err(Error::Param {
                    arg,
                    reason: "must lie in [0, 1]",
                })
            }
        };
        match self.divergence {
            Divergence::Jsd { beta } => unit("beta", beta),
            Divergence::SkewForwardKl { alpha } | Divergence::SkewReverseKl { alpha } => {
                unit("alpha", alpha)
            }
            _ => Ok(()),
        }
    }
}

/// The divergence resolved for computation in `R` (JSD at 0 and 1 and skew 0 become the KLs),
/// with its per-element term: shared with the backends that vectorise these kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind<R> {
    /// Forward KL `KL(p || q)` (Hinton et al. 2015).
    Fwd,
    /// Reverse KL `KL(q || p)`.
    Rev,
    /// Generalised JSD with weight `beta` on `p` (GKD, Agarwal et al. 2024, eq. 3).
    Jsd(R),
    /// Total variation `1/2 sum |p - q|`.
    Tv,
    /// Skew forward KL `KL(p || a p + (1 - a) q)` (DistiLLM, Ko et al. 2024, eq. 4).
    SkewF(R),
    /// Skew reverse KL `KL(q || a q + (1 - a) p)` (DistiLLM, eq. 5).
    SkewR(R),
}

impl<R: Real> Kind<R> {
    /// `d` in `R`.
    pub fn of(d: Divergence) -> Kind<R> {
        match d {
            Divergence::ForwardKl => Kind::Fwd,
            Divergence::ReverseKl => Kind::Rev,
            Divergence::Jsd { beta: 0.0 } => Kind::Fwd,
            Divergence::Jsd { beta: 1.0 } => Kind::Rev,
            Divergence::Jsd { beta } => Kind::Jsd(R::lit(beta)),
            Divergence::TotalVariation => Kind::Tv,
            Divergence::SkewForwardKl { alpha: 0.0 } => Kind::Fwd,
            Divergence::SkewForwardKl { alpha } => Kind::SkewF(R::lit(alpha)),
            Divergence::SkewReverseKl { alpha: 0.0 } => Kind::Rev,
            Divergence::SkewReverseKl { alpha } => Kind::SkewR(R::lit(alpha)),
        }
    }

    /// One term `(phi, g)` of a row: its share of the loss and `d phi / d q`, from the teacher's
    /// and student's probabilities and their logarithms. `g` is only used multiplied by a `q`,
    /// where `q = 0` gives 0 (the caller skips it).
    pub fn term(self, p: R, q: R, lp: R, lq: R) -> (R, R) {
        let zero = R::zero();
        // x (ln x - ln y), with 0 ln 0 = 0 whatever y.
        let xlog = |x: R, lx: R, ly: R| if x == zero { zero } else { x * (lx - ly) };
        match self {
            Kind::Fwd => (xlog(p, lp, lq), if p == zero { zero } else { -p / q }),
            Kind::Rev => (xlog(q, lq, lp), lq - lp + R::one()),
            Kind::Jsd(beta) => {
                let m = beta * p + (R::one() - beta) * q;
                let lm = m.ln();
                let phi = beta * xlog(p, lp, lm) + (R::one() - beta) * xlog(q, lq, lm);
                (phi, (R::one() - beta) * (lq - lm))
            }
            Kind::Tv => {
                let d = q - p;
                let half = R::lit(0.5);
                let s = if d > zero {
                    half
                } else if d < zero {
                    -half
                } else {
                    zero
                };
                (d.abs() * half, s)
            }
            Kind::SkewF(a) => {
                let m = a * p + (R::one() - a) * q;
                let g = if p == zero {
                    zero
                } else {
                    -(R::one() - a) * p / m
                };
                (xlog(p, lp, m.ln()), g)
            }
            Kind::SkewR(a) => {
                let m = a * q + (R::one() - a) * p;
                let lm = m.ln();
                let g = if q == zero {
                    zero
                } else {
                    lq - lm + R::one() - a * q / m
                };
                (xlog(q, lq, lm), g)
            }
        }
    }
}

/// The elements of one row of a host view, converted to the accumulation type.
#[derive(Clone)]
struct Row<'a, T> {
    mem: &'a [T],
    at: usize,
    stride: usize,
    left: usize,
}

impl<'a, T: Element> Row<'a, T> {
    fn new(mem: &'a [T], at: usize, stride: usize, len: usize) -> Row<'a, T> {
        Row {
            mem,
            at,
            stride,
            left: len,
        }
    }
}

impl<T: Element> Iterator for Row<'_, T> {
    type Item = T::Acc;

    fn next(&mut self) -> Option<T::Acc> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // In bounds: the view's layout was checked against its memory when it was made.
        let v = self.mem.get(self.at).copied().map(Element::to_acc);
        self.at = self.at.wrapping_add(self.stride);
        v
    }
}

/// Writes `f(j)` to the `len` elements of a row of a host view.
fn write_row<T: Element>(
    mem: &mut [T],
    at: usize,
    stride: usize,
    len: usize,
    mut f: impl FnMut(usize) -> T::Acc,
) -> Result<()> {
    let mut o = at;
    for j in 0..len {
        let mlen = mem.len();
        let slot = mem.get_mut(o).ok_or(Error::OutOfBounds {
            arg: "grad",
            end: o.saturating_add(1),
            len: mlen,
        })?;
        *slot = T::from_acc(f(j));
        o = o.wrapping_add(stride);
    }
    Ok(())
}

/// Online log-sum-exp state: running maximum and the sum of `exp(x - max)`.
#[derive(Clone, Copy)]
struct Lse<R> {
    m: R,
    l: R,
}

impl<R: Real> Lse<R> {
    fn new() -> Self {
        Lse {
            m: R::neg_infinity(),
            l: R::zero(),
        }
    }

    fn push(&mut self, x: R) {
        if x > self.m {
            self.l = self.l * (self.m - x).exp() + R::one();
            self.m = x;
        } else if x != R::neg_infinity() {
            // NaN lands here and poisons the sum, as it should.
            self.l += (x - self.m).exp();
        }
    }

    /// `ln sum exp(x)`, `-inf` for no finite element, NaN for NaN.
    fn value(self) -> R {
        if self.m == R::neg_infinity() {
            R::neg_infinity()
        } else {
            self.m + self.l.ln()
        }
    }
}

/// The shape of the rows of `x` (all axes but the last), the row length and the row stride.
///
/// # Errors
/// [`Error::Rank`] naming `arg` for a rank-0 layout.
pub fn rows_of(arg: &'static str, x: &Layout) -> Result<(Layout, usize, usize)> {
    if x.rank() == 0 {
        return Err(Error::Rank {
            arg,
            got: 0,
            min: 1,
            max: crate::MAX_RANK,
        });
    }
    Ok(x.split_last())
}

/// The output shape of the loss: `[]` for mean and sum, the rows' shape for none.
///
/// # Errors
/// [`Error::Shape`] naming `loss`.
pub fn check_loss(reduction: KdReduction, loss: &Layout, rows: &Layout) -> Result<()> {
    match reduction {
        KdReduction::None => check::shape("loss", loss, rows.shape()),
        _ => check::shape("loss", loss, &[]),
    }
}

/// The rows the mask keeps (all of `rows` without a mask).
pub fn count_kept(mask: Option<&View<'_, Reference, u8>>, rows: &Layout) -> usize {
    match mask {
        Some(m) => m
            .layout()
            .offsets()
            .filter(|&o| m.mem().get(o).is_some_and(|&v| v != 0))
            .count(),
        None => rows.numel(),
    }
}

/// Whether the mask keeps its next row (`moffs` walks its offsets; every row without a mask).
pub fn next_kept(moffs: &mut Option<Offsets>, mask: Option<&View<'_, Reference, u8>>) -> bool {
    match (moffs.as_mut(), mask) {
        (Some(it), Some(m)) => it
            .next()
            .and_then(|o| m.mem().get(o))
            .is_some_and(|&b| b != 0),
        _ => true,
    }
}

/// Per-row weight of the reduction (before `T^2` and `scale`).
pub fn row_weight<R: Real>(reduction: KdReduction, kept: usize) -> R {
    match reduction {
        // 0 rows kept: nothing contributes and nothing is divided by zero.
        KdReduction::Mean if kept > 0 => R::one() / R::lit(usize_f64(kept)),
        KdReduction::Mean => R::zero(),
        _ => R::one(),
    }
}

#[allow(clippy::cast_precision_loss)] // counts of rows: exact below 2^53
fn usize_f64(n: usize) -> f64 {
    n as f64
}

/// Factors of a configuration in `R`: `(1/T, T, T^2 or 1 times scale)`.
pub fn factors<R: Real>(cfg: &KdConfig) -> (R, R, R) {
    let t = R::lit(cfg.temperature);
    let f = if cfg.t_squared { t * t } else { R::one() };
    (R::one() / t, t, f * R::lit(cfg.scale))
}

// ---------------------------------------------------------------------------------------------
// The checks of each kernel, in its order: public so that a backend that vectorises a kernel runs
// the same ones and answers the same `Err` for the same input.

/// The rows of a [`kd_loss`] call, as [`check_kd`] found them.
#[derive(Clone, Copy, Debug)]
pub struct KdRows {
    /// The teacher's rows (every axis but the last).
    pub teacher: Layout,
    /// The student's rows.
    pub student: Layout,
    /// The row length `V`.
    pub len: usize,
    /// The stride of the teacher's last axis.
    pub teacher_stride: usize,
    /// The stride of the student's last axis.
    pub student_stride: usize,
}

/// The argument checks of [`kd_loss`], in its order, for accumulation type `R`.
///
/// # Errors
/// As [`kd_loss`].
pub fn check_kd<R: Real>(
    cfg: &KdConfig,
    teacher: &Layout,
    student: &Layout,
    mask: Option<&Layout>,
    loss: &Layout,
    grad: Option<&Layout>,
) -> Result<KdRows> {
    cfg.check::<R>()?;
    let (trows, v, ts) = rows_of("teacher", teacher)?;
    check::shape("student", student, teacher.shape())?;
    if let Some(m) = mask {
        check::shape("mask", m, trows.shape())?;
    }
    check_loss(cfg.reduction, loss, &trows)?;
    if let Some(g) = grad {
        check::shape("grad", g, teacher.shape())?;
    }
    let (srows, _, ss) = student.split_last();
    Ok(KdRows {
        teacher: trows,
        student: srows,
        len: v,
        teacher_stride: ts,
        student_stride: ss,
    })
}

/// The rows of a [`kd_loss_sparse`] call, as [`check_sparse`] found them.
#[derive(Clone, Copy, Debug)]
pub struct SparseRows {
    /// The rows of `values`.
    pub values: Layout,
    /// The teacher's `k` logits per row.
    pub k: usize,
    /// The stride of the last axis of `values`.
    pub values_stride: usize,
    /// The rows of `indices`.
    pub indices: Layout,
    /// The stride of the last axis of `indices`.
    pub indices_stride: usize,
    /// The student's rows.
    pub student: Layout,
    /// The vocabulary size `V`.
    pub len: usize,
    /// The stride of the student's last axis.
    pub student_stride: usize,
}

/// The checks of [`kd_loss_sparse`], in its order: the arguments, then the data of every kept
/// row (indices below `V` and distinct, tail mass in `[0, 1]`), before anything is written.
///
/// # Errors
/// As [`kd_loss_sparse`].
#[allow(clippy::too_many_arguments)] // the kernel's operands
pub fn check_sparse<T: Element>(
    cfg: &KdConfig,
    values: &Layout,
    indices: &View<'_, Reference, u32>,
    tail: Option<&View<'_, Reference, T>>,
    student: &Layout,
    mask: Option<&View<'_, Reference, u8>>,
    loss: &Layout,
    grad: Option<&Layout>,
) -> Result<SparseRows> {
    cfg.check::<T::Acc>()?;
    let (vrows, k, vs) = rows_of("values", values)?;
    check::shape("indices", indices.layout(), values.shape())?;
    let (srows, v, ss) = rows_of("student", student)?;
    check::shape("student", &srows, vrows.shape())?;
    if let Some(tv) = tail {
        check::shape("tail", tv.layout(), vrows.shape())?;
    }
    if let Some(m) = mask {
        check::shape("mask", m.layout(), vrows.shape())?;
    }
    check_loss(cfg.reduction, loss, &vrows)?;
    if let Some(g) = grad {
        check::shape("grad", g, student.shape())?;
    }
    if k == 0 || k > v {
        return Err(Error::Param {
            arg: "k",
            reason: "must be at least 1 and at most the vocabulary size",
        });
    }
    let (irows, _, is) = indices.layout().split_last();
    let mut moffs = mask.map(|m| m.layout().offsets());
    let mut toffs = tail.map(|t| t.layout().offsets());
    for io in irows.offsets() {
        let to = toffs.as_mut().and_then(Iterator::next);
        if !next_kept(&mut moffs, mask) {
            continue;
        }
        if let (Some(o), Some(tv)) = (to, tail) {
            let r = get(tv.mem(), o, "tail")?.to_f64();
            if !r.is_nan() && !(0.0..=1.0).contains(&r) {
                return Err(Error::Param {
                    arg: "tail",
                    reason: "must lie in [0, 1]",
                });
            }
        }
        for a in 0..k {
            let ia = get(indices.mem(), io + a * is, "indices")?;
            if usize::try_from(ia).map_or(true, |i| i >= v) {
                return Err(Error::Param {
                    arg: "indices",
                    reason: "must be below the vocabulary size",
                });
            }
            for b in 0..a {
                if get(indices.mem(), io + b * is, "indices")? == ia {
                    return Err(Error::Param {
                        arg: "indices",
                        reason: "must be distinct within a row",
                    });
                }
            }
        }
    }
    Ok(SparseRows {
        values: vrows,
        k,
        values_stride: vs,
        indices: irows,
        indices_stride: is,
        student: srows,
        len: v,
        student_stride: ss,
    })
}

/// The label-smoothing mass each class receives, `eps / V` (0 for `V = 0`).
pub fn smoothing_share<R: Real>(cfg: &CeConfig, v: usize) -> R {
    if v == 0 {
        R::zero()
    } else {
        R::lit(cfg.label_smoothing) / R::lit(usize_f64(v))
    }
}

/// The rows of a [`cross_entropy`] call, as [`check_ce`] found them.
#[derive(Clone, Copy, Debug)]
pub struct CeRows {
    /// The rows of `logits`.
    pub logits: Layout,
    /// The number of classes `V`.
    pub len: usize,
    /// The stride of the last axis of `logits`.
    pub logits_stride: usize,
    /// The rows whose target is not `ignore_index`.
    pub kept: usize,
}

/// The checks of [`cross_entropy`], in its order (the targets: each in `0..V` or
/// `ignore_index`), for accumulation type `R`.
///
/// # Errors
/// As [`cross_entropy`].
pub fn check_ce<R: Real>(
    cfg: &CeConfig,
    logits: &Layout,
    targets: &View<'_, Reference, i32>,
    loss: &Layout,
    grad: Option<&Layout>,
) -> Result<CeRows> {
    if !(0.0..=1.0).contains(&cfg.label_smoothing) {
        return Err(Error::Param {
            arg: "label_smoothing",
            reason: "must lie in [0, 1]",
        });
    }
    check::finite_in::<R>("scale", cfg.scale)?;
    let (xrows, v, xs) = rows_of("logits", logits)?;
    check::shape("targets", targets.layout(), xrows.shape())?;
    check_loss(cfg.reduction, loss, &xrows)?;
    if let Some(g) = grad {
        check::shape("grad", g, logits.shape())?;
    }
    let mut kept = 0usize;
    for o in targets.layout().offsets() {
        let y = get(targets.mem(), o, "targets")?;
        if y == cfg.ignore_index {
            continue;
        }
        if usize::try_from(y).map_or(true, |y| y >= v) {
            return Err(Error::Param {
                arg: "targets",
                reason: "must be in 0..V or equal to ignore_index",
            });
        }
        kept += 1;
    }
    Ok(CeRows {
        logits: xrows,
        len: v,
        logits_stride: xs,
        kept,
    })
}

/// The writable outputs of a call, walked row by row.
struct Outputs<'a, 'b, T: Element> {
    loss: ViewMut<'a, Reference, T>,
    loss_rows: Option<Offsets>,
    grad: Option<(ViewMut<'b, Reference, T>, Offsets, usize)>,
    total: T::Acc,
}

impl<T: Element> Outputs<'_, '_, T> {
    /// Records the next row's loss `l` (already weighted).
    fn loss(&mut self, l: T::Acc) -> Result<()> {
        match self.loss_rows.as_mut() {
            Some(it) => {
                if let Some(o) = it.next() {
                    let (mem, _) = self.loss.parts();
                    let len = mem.len();
                    *mem.get_mut(o).ok_or(Error::OutOfBounds {
                        arg: "loss",
                        end: o.saturating_add(1),
                        len,
                    })? = T::from_acc(l);
                }
            }
            None => self.total += l,
        }
        Ok(())
    }

    /// True when a gradient is asked for.
    fn wants_grad(&self) -> bool {
        self.grad.is_some()
    }

    /// Writes the next gradient row, element `j` being `f(j)` (nothing without a gradient).
    fn grad(&mut self, v: usize, f: impl FnMut(usize) -> T::Acc) -> Result<()> {
        if let Some((g, it, gs)) = self.grad.as_mut() {
            if let Some(o) = it.next() {
                write_row(g.mem_mut(), o, *gs, v, f)?;
            }
        }
        Ok(())
    }

    /// A row that contributes nothing: loss 0, gradient 0.
    fn nothing(&mut self, v: usize) -> Result<()> {
        self.loss(T::Acc::zero())?;
        self.grad(v, |_| T::Acc::zero())
    }

    fn finish(mut self) -> Result<()> {
        if self.loss_rows.is_none() {
            let o = self.loss.layout().offset();
            let (mem, _) = self.loss.parts();
            let len = mem.len();
            *mem.get_mut(o).ok_or(Error::OutOfBounds {
                arg: "loss",
                end: o.saturating_add(1),
                len,
            })? = T::from_acc(self.total);
        }
        Ok(())
    }
}

fn outputs<'a, 'b, T: Element>(
    reduction: KdReduction,
    loss: ViewMut<'a, Reference, T>,
    grad: Option<ViewMut<'b, Reference, T>>,
) -> Outputs<'a, 'b, T> {
    let loss_rows = (reduction == KdReduction::None).then(|| loss.layout().offsets());
    let grad = grad.map(|g| {
        let (rows, _, s) = g.layout().split_last();
        (g, rows.offsets(), s)
    });
    Outputs {
        loss,
        loss_rows,
        grad,
        total: T::Acc::zero(),
    }
}

/// Distillation loss of `student` logits against `teacher` logits (both `[.., V]`), over the
/// last axis, and its gradient with respect to the student logits.
///
/// `mask` (the rows' shape; nonzero keeps a row) drops padding: a dropped row is not read,
/// contributes 0 and gets a zero gradient. A row with no finite teacher or student logit (every
/// logit `-inf`) has no distribution: it also contributes 0 with a zero gradient (as seqcore's
/// softmax gives zeros for such rows), but still counts in the mean. NaN in a kept row gives NaN.
/// `loss` is `[]` (mean, sum) or the rows' shape (none); `grad` (optional) has the student's shape
/// and is the gradient of `loss` (of the sum of the per-row losses for [`KdReduction::None`]).
/// No workspace.
///
/// # Errors
/// As [`KdConfig::check`]; [`Error::Rank`] / [`Error::Shape`] naming `student` (its shape
/// differs from the teacher's), `mask`, `loss` or `grad`.
pub fn kd_loss<T: Element>(
    cfg: &KdConfig,
    teacher: View<'_, Reference, T>,
    student: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, u8>>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    let KdRows {
        teacher: trows,
        student: srows,
        len: v,
        teacher_stride: ts,
        student_stride: ss,
    } = check_kd::<T::Acc>(
        cfg,
        teacher.layout(),
        student.layout(),
        mask.as_ref().map(View::layout),
        loss.layout(),
        grad.as_ref().map(ViewMut::layout),
    )?;
    let kind = Kind::<T::Acc>::of(cfg.divergence);
    let (inv_t, t, f) = factors::<T::Acc>(cfg);
    let w = row_weight::<T::Acc>(cfg.reduction, count_kept(mask.as_ref(), &trows));
    let mut out = outputs(cfg.reduction, loss, grad);
    let mut moffs = mask.as_ref().map(|m| m.layout().offsets());
    let (tm, sm) = (teacher.mem(), student.mem());
    let zero = T::Acc::zero();
    for (to, so) in trows.offsets().zip(srows.offsets()) {
        if !next_kept(&mut moffs, mask.as_ref()) {
            out.nothing(v)?;
            continue;
        }
        let trow = Row::new(tm, to, ts, v).map(|x| x / t);
        let srow = Row::new(sm, so, ss, v).map(|x| x / t);
        // Pass 1: both log-sum-exps.
        let (mut lt, mut ls) = (Lse::new(), Lse::new());
        for (a, b) in trow.clone().zip(srow.clone()) {
            lt.push(a);
            ls.push(b);
        }
        let (zt, zs) = (lt.value(), ls.value());
        if zt == T::Acc::neg_infinity() || zs == T::Acc::neg_infinity() {
            out.nothing(v)?;
            continue;
        }
        let probs = move |(a, b): (T::Acc, T::Acc)| {
            let (lp, lq) = (a - zt, b - zs);
            (lp.exp(), lp, lq.exp(), lq)
        };
        let c = f * w;
        let cg = c * inv_t;
        let mut l = zero;
        if let (Kind::Fwd, true) = (kind, out.wants_grad()) {
            // Pass 2 writes the gradient at once: q - p needs no row total.
            let mut pairs = trow.zip(srow);
            out.grad(v, |_| {
                let (p, lp, q, lq) = probs(pairs.next().unwrap_or((T::Acc::nan(), T::Acc::nan())));
                l += kind.term(p, q, lp, lq).0;
                cg * (q - p)
            })?;
            out.loss(c * l)?;
            continue;
        }
        // Pass 2: the loss and sum_i q_i g_i.
        let mut gq = zero;
        for pair in trow.clone().zip(srow.clone()) {
            let (p, lp, q, lq) = probs(pair);
            let (phi, g) = kind.term(p, q, lp, lq);
            l += phi;
            if q != zero {
                gq += q * g;
            }
        }
        out.loss(c * l)?;
        // Pass 3: the gradient q_j (g_j - sum_i q_i g_i).
        let mut pairs = trow.zip(srow);
        out.grad(v, |_| {
            let (p, lp, q, lq) = probs(pairs.next().unwrap_or((T::Acc::nan(), T::Acc::nan())));
            if q == zero {
                zero
            } else {
                cg * q * (kind.term(p, q, lp, lq).1 - gq)
            }
        })?;
    }
    out.finish()
}

/// `(p, ln p, q, ln q)` of one term.
pub type Probs<R> = (R, R, R, R);

/// The totals of one sparse-teacher row over its `k + 1` buckets ([`sparse_buckets`]).
#[derive(Clone, Copy, Debug)]
pub struct SparseBuckets<R> {
    /// The row's divergence (before the reduction's weight, `T^2` and `scale`).
    pub loss: R,
    /// `sum_b Q_b g_b` over the buckets.
    pub gq: R,
    /// The student's tail mass `Q_tail = 1 - sum_top-k q` (exactly 0 with `k = V`).
    pub qt: R,
    /// `g` of the tail bucket.
    pub g_t: R,
}

/// Sums one sparse-teacher row over its buckets: `bucket(a)` gives `(P, ln P, Q, ln Q)` of top-k
/// bucket `a`, `r` is the teacher's tail mass. The student's tail is `1 - sum Q` (0 when that
/// rounds below 0, and exactly 0 with `k = V`, not a rounding residue).
///
/// # Errors
/// What `bucket` returns.
pub fn sparse_buckets<R: Real>(
    kind: Kind<R>,
    k: usize,
    v: usize,
    r: R,
    bucket: impl Fn(usize) -> Result<Probs<R>>,
) -> Result<SparseBuckets<R>> {
    let (zero, one) = (R::zero(), R::one());
    let mut qk = zero;
    let (mut l, mut gq) = (zero, zero);
    for a in 0..k {
        let (p, lp, q, lq) = bucket(a)?;
        qk += q;
        let (phi, g) = kind.term(p, q, lp, lq);
        l += phi;
        if q != zero {
            gq += q * g;
        }
    }
    let qt = if k == v || qk >= one { zero } else { one - qk };
    let (phi_t, g_t) = kind.term(r, qt, r.ln(), qt.ln());
    l += phi_t;
    if qt != zero {
        gq += qt * g_t;
    }
    Ok(SparseBuckets {
        loss: l,
        gq,
        qt,
        g_t,
    })
}

/// The gradient at the student logit of a top-k bucket: `c/T (q - p)` for forward KL,
/// `c/T q (g - gq)` otherwise (0 where `q = 0`); `cg` is `c/T`.
pub fn sparse_top_grad<R: Real>(kind: Kind<R>, cg: R, gq: R, (p, lp, q, lq): Probs<R>) -> R {
    if matches!(kind, Kind::Fwd) {
        cg * (q - p)
    } else if q == R::zero() {
        R::zero()
    } else {
        cg * q * (kind.term(p, q, lp, lq).1 - gq)
    }
}

/// Reads element `o` of a host slice (checked; views were checked when made, so it holds).
///
/// # Errors
/// [`Error::OutOfBounds`] naming `arg` past the slice.
pub fn get<T: Copy>(mem: &[T], o: usize, arg: &'static str) -> Result<T> {
    mem.get(o).copied().ok_or(Error::OutOfBounds {
        arg,
        end: o.saturating_add(1),
        len: mem.len(),
    })
}

/// Distillation from a sparse teacher that gives only its top-k logits per row
/// (`values [.., k]` at vocabulary positions `indices [.., k]`), and optionally its tail mass
/// `tail [..]`: the probability (at the loss temperature) of every token outside the top k.
///
/// The teacher's distribution is `p_i = (1 - r) softmax(values / T)_i` on the top-k positions and
/// the rest of the vocabulary is one bucket of mass `r` (`r = 0` without `tail`: the top-k logits
/// renormalised, as most sparse-KD pipelines store them). The student's distribution is collapsed
/// onto the same `k + 1` buckets (its top-k probabilities and its tail mass `1 - sum`), and the
/// divergence of [`kd_loss`] is taken between the two bucket distributions. Its gradient reaches
/// every student logit: `dl/dz_j = q_j (g_b(j) - sum_b Q_b g_b)`, `b(j)` the bucket of `j`. With
/// `k = V` the tail is empty (`tail` is ignored) and this is [`kd_loss`] exactly; as `k` grows with the true tail mass
/// given, it tends to the dense loss. Reverse-KL-like divergences are `+inf` when `r = 0` and the
/// student puts mass on the tail (the teacher gives that mass no support), as the dense loss is
/// for a teacher probability 0.
///
/// Masks, reductions, `T^2`, `scale` and degenerate rows are as in [`kd_loss`]. No workspace.
///
/// # Errors
/// As [`KdConfig::check`]; [`Error::Param`] naming `k` when `k = 0` or `k > V`, `indices` when an
/// index is `>= V` or repeats within a row (checked in `O(k^2)` per kept row), `tail` when a
/// value is outside `[0, 1]` (NaN passes and propagates); shape errors naming `indices`,
/// `student`, `tail`, `mask`, `loss` or `grad`.
#[allow(clippy::too_many_arguments)] // the kernel's operands, as its dense sibling plus three
pub fn kd_loss_sparse<T: Element>(
    cfg: &KdConfig,
    values: View<'_, Reference, T>,
    indices: View<'_, Reference, u32>,
    tail: Option<View<'_, Reference, T>>,
    student: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, u8>>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    let SparseRows {
        values: vrows,
        k,
        values_stride: vs,
        indices: irows,
        indices_stride: is,
        student: srows,
        len: v,
        student_stride: ss,
    } = check_sparse(
        cfg,
        values.layout(),
        &indices,
        tail.as_ref(),
        student.layout(),
        mask.as_ref(),
        loss.layout(),
        grad.as_ref().map(ViewMut::layout),
    )?;
    let kind = Kind::<T::Acc>::of(cfg.divergence);
    let (inv_t, t, f) = factors::<T::Acc>(cfg);
    let w = row_weight::<T::Acc>(cfg.reduction, count_kept(mask.as_ref(), &vrows));
    let mut out = outputs(cfg.reduction, loss, grad);
    let mut moffs = mask.as_ref().map(|m| m.layout().offsets());
    let mut toffs = tail.as_ref().map(|t| t.layout().offsets());
    let (vm, im, sm) = (values.mem(), indices.mem(), student.mem());
    let zero = T::Acc::zero();
    let one = T::Acc::one();
    for ((vo, io), so) in vrows.offsets().zip(irows.offsets()).zip(srows.offsets()) {
        let tail_off = toffs.as_mut().and_then(Iterator::next);
        if !next_kept(&mut moffs, mask.as_ref()) {
            out.nothing(v)?;
            continue;
        }
        let r = match (tail_off, &tail) {
            // With k = V there is no tail: its mass is 0 whatever the caller rounded it to.
            (Some(o), Some(tv)) if k < v => get(tv.mem(), o, "tail")?.to_acc(),
            _ => zero,
        };
        let (mut lk, mut ls) = (Lse::new(), Lse::new());
        for a in Row::new(vm, vo, vs, k) {
            lk.push(a / t);
        }
        for b in Row::new(sm, so, ss, v) {
            ls.push(b / t);
        }
        let (zk, zs) = (lk.value(), ls.value());
        if zk == T::Acc::neg_infinity() || zs == T::Acc::neg_infinity() {
            out.nothing(v)?;
            continue;
        }
        let l1r = (one - r).ln();
        // Bucket `a` of the top k: (P, ln P, Q, ln Q).
        let bucket = |a: usize| -> Result<Probs<T::Acc>> {
            let x = get(vm, vo + a * vs, "values")?.to_acc() / t;
            let i = usize::try_from(get(im, io + a * is, "indices")?).unwrap_or(usize::MAX);
            let y = get(sm, so.wrapping_add(i.wrapping_mul(ss)), "student")?.to_acc() / t;
            let (lp, lq) = (l1r + x - zk, y - zs);
            Ok((lp.exp(), lp, lq.exp(), lq))
        };
        let SparseBuckets {
            loss: l,
            gq,
            qt,
            g_t,
        } = sparse_buckets(kind, k, v, r, bucket)?;
        let c = f * w;
        out.loss(c * l)?;
        let cg = c * inv_t;
        let fwd = matches!(kind, Kind::Fwd);
        if let Some((g, it, gs)) = out.grad.as_mut() {
            let Some(go) = it.next() else { continue };
            let gs = *gs;
            // Every position as a tail token, then the top-k positions overwritten.
            let mut srow = Row::new(sm, so, ss, v);
            write_row(g.mem_mut(), go, gs, v, |_| {
                let q = (srow.next().unwrap_or(T::Acc::nan()) / t - zs).exp();
                if q == zero || qt == zero {
                    zero
                } else if fwd {
                    cg * q * (one - r / qt)
                } else {
                    cg * q * (g_t - gq)
                }
            })?;
            for a in 0..k {
                let (p, lp, q, lq) = bucket(a)?;
                let i = usize::try_from(get(im, io + a * is, "indices")?).unwrap_or(usize::MAX);
                let val = sparse_top_grad(kind, cg, gq, (p, lp, q, lq));
                write_row(
                    g.mem_mut(),
                    go.wrapping_add(i.wrapping_mul(gs)),
                    1,
                    1,
                    |_| val,
                )?;
            }
        }
    }
    out.finish()
}

/// Parameters of [`cross_entropy`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CeConfig {
    /// Label smoothing `eps` in `[0, 1]` (Szegedy et al. 2016, sec. 7): the target is
    /// `(1 - eps) onehot(y) + eps / V`, as PyTorch's `cross_entropy(label_smoothing=eps)`.
    pub label_smoothing: f64,
    /// The reduction over rows whose target is not `ignore_index`.
    pub reduction: KdReduction,
    /// Targets equal to this are padding (PyTorch's default `-100`).
    pub ignore_index: i32,
    /// A finite factor on the loss and the gradient (1 by default).
    pub scale: f64,
}

impl CeConfig {
    /// `label_smoothing`, mean reduction, `ignore_index = -100`, scale 1.
    pub const fn new(label_smoothing: f64) -> CeConfig {
        CeConfig {
            label_smoothing,
            reduction: KdReduction::Mean,
            ignore_index: -100,
            scale: 1.0,
        }
    }
}

/// Cross-entropy of `logits [.., V]` against target tokens `targets [..]` with label smoothing:
/// the sequence-level distillation loss when the targets are teacher-generated sequences (Kim &
/// Rush 2016, eq. 6). Per row `l = -(1 - eps) ln q_y - (eps / V) sum_j ln q_j`, `q =
/// softmax(logits)`; gradient `q_j - (1 - eps) [j = y] - eps / V`. Rows whose target is
/// `ignore_index` are not read and get loss 0 and gradient 0; the mean is over the others (0 when
/// there are none), as PyTorch's `cross_entropy`. No workspace.
///
/// # Errors
/// [`Error::Param`] naming `label_smoothing` (outside `[0, 1]`), `scale` (not finite) or
/// `targets` (a target outside `0..V` that is not `ignore_index`); shape errors naming `targets`,
/// `loss` or `grad`.
pub fn cross_entropy<T: Element>(
    cfg: &CeConfig,
    logits: View<'_, Reference, T>,
    targets: View<'_, Reference, i32>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    let CeRows {
        logits: xrows,
        len: v,
        logits_stride: xs,
        kept,
    } = check_ce::<T::Acc>(
        cfg,
        logits.layout(),
        &targets,
        loss.layout(),
        grad.as_ref().map(ViewMut::layout),
    )?;
    let eps = cfg.label_smoothing;
    let w = row_weight::<T::Acc>(cfg.reduction, kept);
    let c = w * T::Acc::lit(cfg.scale);
    let (e, one, zero) = (T::Acc::lit(eps), T::Acc::one(), T::Acc::zero());
    let e_v = smoothing_share::<T::Acc>(cfg, v);
    let mut out = outputs(cfg.reduction, loss, grad);
    let xm = logits.mem();
    for (xo, yo) in xrows.offsets().zip(targets.layout().offsets()) {
        let y = get(targets.mem(), yo, "targets")?;
        let Ok(yi) = usize::try_from(y) else {
            out.nothing(v)?;
            continue;
        };
        if y == cfg.ignore_index {
            out.nothing(v)?;
            continue;
        }
        let mut lse = Lse::new();
        let mut sum = zero;
        for x in Row::new(xm, xo, xs, v) {
            lse.push(x);
            sum += x;
        }
        let z = lse.value();
        let xy = get(xm, xo + yi * xs, "logits")?.to_acc();
        // -(1 - eps) (x_y - z) - eps/V (sum_j x_j - V z); the smoothing term skipped at eps = 0
        // so that a -inf logit elsewhere does not make it 0 * inf.
        let mut l = -(one - e) * (xy - z);
        if e != zero {
            l += -(e_v * sum - e * z);
        }
        out.loss(c * l)?;
        let mut row = Row::new(xm, xo, xs, v);
        out.grad(v, |j| {
            let q = (row.next().unwrap_or(T::Acc::nan()) - z).exp();
            let target = if j == yi { one - e + e_v } else { e_v };
            c * (q - target)
        })?;
    }
    out.finish()
}
