//! Fused scaled-dot-product attention (Vaswani et al. 2017, eq. 1) with an online softmax over
//! key tiles (FlashAttention, Dao et al. 2022), and the merge of partial results (Milakov &
//! Gimelshein 2018, eq. 4).
//!
//! Stub: the portable kernels until the vectorised ones land.

use seqcore::{
    AttentionDims, AttentionMasks, AttentionParams, Backend, Element, Reference, Result, View,
    ViewMut,
};

pub(crate) fn workspace_len<T: Element>(dims: &AttentionDims) -> Result<usize> {
    Reference.attention_workspace_len::<T>(dims)
}

#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
pub(crate) fn attention<T: Element>(
    params: &AttentionParams,
    q: View<'_, Reference, T>,
    k: View<'_, Reference, T>,
    v: View<'_, Reference, T>,
    masks: AttentionMasks<'_, Reference, T>,
    o: ViewMut<'_, Reference, T>,
    lse: Option<ViewMut<'_, Reference, T::Acc>>,
    workspace: &mut [T::Acc],
) -> Result<()> {
    Reference.attention(params, q, k, v, masks, o, lse, workspace)
}

pub(crate) fn merge<T: Element>(
    o_a: View<'_, Reference, T>,
    lse_a: View<'_, Reference, T::Acc>,
    o_b: View<'_, Reference, T>,
    lse_b: View<'_, Reference, T::Acc>,
    o: ViewMut<'_, Reference, T>,
    lse: Option<ViewMut<'_, Reference, T::Acc>>,
) -> Result<()> {
    Reference.attention_merge(o_a, lse_a, o_b, lse_b, o, lse)
}
