//! Rotary position embedding (RoPE; Su et al. 2021, RoFormer eq. (34)).
//!
//! Stub: the portable kernel until the vectorised one lands.

use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::{Backend, Element, Reference, Result, View, ViewMut};

pub(crate) fn rope<T: Element>(
    layout: RopeLayout,
    inv_freq: &[f64],
    attention_factor: f64,
    positions: RopePositions<'_, Reference>,
    x: Option<View<'_, Reference, T>>,
    y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    Reference.rope(layout, inv_freq, attention_factor, positions, x, y)
}
