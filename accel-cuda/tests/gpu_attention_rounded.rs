//! The tensor-core attention with the softmax weights rounded to the element type
//! (`CudaBackend::round_attention_weights`, FlashAttention's precision), in its own process so that
//! the mode cannot reach the other tests' calls: against the f64 reference under the bound of
//! `tests/gpu.rs` plus the rounding of the weights, `u sum_j p_j |v_j| <= u max|v| = 2u`, doubled
//! (flash-attention's own tests allow twice the error of a same-precision reference).
#![allow(clippy::unwrap_used)]

mod support;

use seqcore::{AttentionParams, DType, bf16, f16};
use support::attention::{AttnCase, check_attention};
use support::gpu;

#[test]
fn rounded_weights_stay_within_flashattention_precision() {
    let Some(b) = gpu() else { return };
    b.round_attention_weights(true);
    for (d, lq, lk, causal) in [
        (64, 70, 130, true),
        (128, 64, 64, true),
        (64, 1, 200, false),
        (128, 33, 97, false),
    ] {
        let c = AttnCase {
            b: 1,
            hq: 4,
            hkv: 2,
            lq,
            lk,
            d,
            dv: d,
            params: if causal {
                AttentionParams::causal()
            } else {
                AttentionParams::default()
            },
            mask: false,
            bias: false,
            token_major: false,
        };
        check_attention::<f16>(b, &c, 2.0 * 2.0 * DType::F16.unit_roundoff());
        check_attention::<bf16>(b, &c, 2.0 * 2.0 * DType::BF16.unit_roundoff());
    }
    b.round_attention_weights(false);
}
