//! Attention with relative-position terms (Shaw et al. 2018 eq. (3)-(5); Music Transformer's
//! relative logits; T5's bucketed bias), fused with an online softmax.
//!
//! Stub: the portable kernel until the vectorised one lands.

use seqcore::portable::relative::RelativeParams;
use seqcore::{Backend, Element, Reference, Result, View, ViewMut};

#[allow(clippy::too_many_arguments)] // the operands of one fused kernel
pub(crate) fn relative_attention<T: Element>(
    params: &RelativeParams,
    q: View<'_, Reference, T>,
    k: View<'_, Reference, T>,
    v: View<'_, Reference, T>,
    rel_k: Option<View<'_, Reference, T>>,
    rel_v: Option<View<'_, Reference, T>>,
    rel_bias: Option<View<'_, Reference, T>>,
    o: ViewMut<'_, Reference, T>,
    workspace: &mut [T::Acc],
) -> Result<()> {
    Reference.relative_attention(params, q, k, v, rel_k, rel_v, rel_bias, o, workspace)
}
