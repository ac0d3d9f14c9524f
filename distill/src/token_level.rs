//! Token-level distillation: the divergence between the teacher's and the student's next-token
//! distributions at every position, with its analytic gradient with respect to the student
//! logits (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", eq. 1 with the
//! `T^2` factor; GKD, Agarwal et al. 2024, eq. 4; DistiLLM, Ko et al. 2024, eqs. 2-3).
//!
//! The computation is the fused [`Backend::kd_loss`] / [`Backend::kd_loss_sparse`] kernel of
//! seqcore (portable body in [`seqcore::portable::kd_loss`], where the formulas are tabulated);
//! these functions are the mechanism's entry points, generic over any backend.

use seqcore::{Backend, Element, Result, View, ViewMut};

use crate::KdConfig;

/// Loss and gradient of `student` logits `[.., V]` against `teacher` logits of the same shape:
/// see [`seqcore::portable::kd_loss::kd_loss`] for the divergences, masks (`mask` of the rows'
/// shape, nonzero keeps a row) and reductions. `loss` is `[]` for mean and sum, the rows' shape
/// for [`crate::KdReduction::None`]; `grad` has the student's shape.
///
/// ```
/// use seq_distill::{Divergence, KdConfig, kd_loss};
/// use seqcore::{Backend, Reference};
///
/// let b = Reference;
/// let teacher = [2.0f32, 0.0, -1.0, 0.5, 0.5, 0.5];
/// let student = [1.0f32, 1.0, -1.0, 0.0, 1.0, 0.0];
/// let (mut loss, mut grad) = ([0.0f32; 1], [0.0f32; 6]);
/// let cfg = KdConfig::new(Divergence::ForwardKl, 2.0);
/// kd_loss(&b, &cfg, b.view(&teacher, &[2, 3])?, b.view(&student, &[2, 3])?, None,
///         b.view_mut(&mut loss, &[])?, Some(b.view_mut(&mut grad, &[2, 3])?))?;
/// assert!(loss[0] > 0.0);
/// // Each gradient row of a KL through a softmax sums to zero.
/// assert!(grad[..3].iter().sum::<f32>().abs() < 1e-6);
/// # Ok::<(), seqcore::Error>(())
/// ```
///
/// # Errors
/// As [`Backend::kd_loss`]: bad parameters (`temperature`, `beta`, `alpha`, `scale`) and shapes
/// (`student`, `mask`, `loss`, `grad`) are an `Err` naming the argument.
pub fn kd_loss<B: Backend + ?Sized, T: Element>(
    backend: &B,
    cfg: &KdConfig,
    teacher: View<'_, B, T>,
    student: View<'_, B, T>,
    mask: Option<View<'_, B, u8>>,
    loss: ViewMut<'_, B, T>,
    grad: Option<ViewMut<'_, B, T>>,
) -> Result<()> {
    backend.kd_loss(cfg, teacher, student, mask, loss, grad)
}

/// Loss and gradient against a sparse teacher that kept only its top-k logits `values [.., k]`
/// at vocabulary positions `indices [.., k]`, and optionally its tail mass `tail [..]`: see
/// [`seqcore::portable::kd_loss::kd_loss_sparse`] for how the rest of the vocabulary is treated
/// (one bucket of mass `tail`, or 0: the top-k renormalised).
///
/// # Errors
/// As [`Backend::kd_loss_sparse`]: `k = 0` or `k > V` names `k`; bad or repeated indices name
/// `indices`; a tail mass outside `[0, 1]` names `tail`.
#[allow(clippy::too_many_arguments)] // the kernel's operands
pub fn sparse_kd_loss<B: Backend + ?Sized, T: Element>(
    backend: &B,
    cfg: &KdConfig,
    values: View<'_, B, T>,
    indices: View<'_, B, u32>,
    tail: Option<View<'_, B, T>>,
    student: View<'_, B, T>,
    mask: Option<View<'_, B, u8>>,
    loss: ViewMut<'_, B, T>,
    grad: Option<ViewMut<'_, B, T>>,
) -> Result<()> {
    backend.kd_loss_sparse(cfg, values, indices, tail, student, mask, loss, grad)
}
