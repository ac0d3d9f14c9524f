//! Sequence-level distillation (Kim & Rush 2016, "Sequence-Level Knowledge Distillation", eq. 6):
//! the student is trained with cross-entropy on sequences the teacher generated (beam search or
//! sampling, for example with seq-decode; the sequences come from the caller), here with label
//! smoothing (Szegedy et al. 2016, sec. 7). The same loss is the sequence-MLE objective of
//! seq2seq reward modelling (Zhou et al. 2024, "Sequence to Sequence Reward Modeling", sec. 3).

use seqcore::{Backend, Element, Result, View, ViewMut};

use crate::CeConfig;

/// Cross-entropy of the student's `logits [.., V]` on the teacher-generated `targets [..]`
/// (token ids; `cfg.ignore_index` marks padding), with label smoothing, and its gradient: as
/// PyTorch's `cross_entropy(logits, targets, ignore_index, label_smoothing)`. See
/// [`seqcore::portable::kd_loss::cross_entropy`].
///
/// ```
/// use seq_distill::{CeConfig, sequence_cross_entropy};
/// use seqcore::{Backend, Reference};
///
/// let b = Reference;
/// let logits = [0.0f64; 8]; // 2 tokens, vocabulary 4, uniform student
/// let targets = [3i32, -100]; // the second position is padding
/// let (mut loss, mut grad) = ([0.0f64; 1], [0.0f64; 8]);
/// sequence_cross_entropy(&b, &CeConfig::new(0.1), b.view(&logits, &[2, 4])?,
///     b.view(&targets, &[2])?, b.view_mut(&mut loss, &[])?, Some(b.view_mut(&mut grad, &[2, 4])?))?;
/// assert!((loss[0] - 4f64.ln()).abs() < 1e-12); // uniform: ln V whatever the smoothing
/// assert_eq!(&grad[4..], &[0.0; 4]);
/// # Ok::<(), seqcore::Error>(())
/// ```
///
/// # Errors
/// As [`Backend::cross_entropy`]: `label_smoothing` outside `[0, 1]`, a target outside `0..V`
/// (naming `targets`), shapes naming `targets`, `loss` or `grad`.
pub fn sequence_cross_entropy<B: Backend + ?Sized, T: Element>(
    backend: &B,
    cfg: &CeConfig,
    logits: View<'_, B, T>,
    targets: View<'_, B, i32>,
    loss: ViewMut<'_, B, T>,
    grad: Option<ViewMut<'_, B, T>>,
) -> Result<()> {
    backend.cross_entropy(cfg, logits, targets, loss, grad)
}
