//! Distillation losses with their gradients (Hinton et al. 2015; GKD, Agarwal et al. 2024) and
//! cross-entropy.
//!
//! Stub: the portable kernels until the vectorised ones land.

use seqcore::portable::kd_loss::{CeConfig, KdConfig};
use seqcore::{Backend, Element, Reference, Result, View, ViewMut};

pub(crate) fn kd_loss<T: Element>(
    cfg: &KdConfig,
    teacher: View<'_, Reference, T>,
    student: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, u8>>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    Reference.kd_loss(cfg, teacher, student, mask, loss, grad)
}

#[allow(clippy::too_many_arguments)] // the kernel's operands
pub(crate) fn kd_loss_sparse<T: Element>(
    cfg: &KdConfig,
    values: View<'_, Reference, T>,
    indices: View<'_, Reference, u32>,
    tail: Option<View<'_, Reference, T>>,
    student: View<'_, Reference, T>,
    mask: Option<View<'_, Reference, u8>>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    Reference.kd_loss_sparse(cfg, values, indices, tail, student, mask, loss, grad)
}

pub(crate) fn cross_entropy<T: Element>(
    cfg: &CeConfig,
    logits: View<'_, Reference, T>,
    targets: View<'_, Reference, i32>,
    loss: ViewMut<'_, Reference, T>,
    grad: Option<ViewMut<'_, Reference, T>>,
) -> Result<()> {
    Reference.cross_entropy(cfg, logits, targets, loss, grad)
}
