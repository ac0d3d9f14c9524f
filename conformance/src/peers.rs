//! The issue-8 peers table's cases (`conformance/peers/run.sh` times the same cases in PyTorch,
//! candle and numpy): f32 rows named `peers_*`, timed only in perf mode (`seq-conformance perf
//! --filter peers`), so a report's time is unchanged. Each reuses the bench of its kernel's row
//! at the table's size; the rate column reads against the machine's peak as every row does.

use seqcore::{Allocate, DType, Element, SoftmaxKind};

use crate::Failure;
use crate::mechanisms::{attention, distill, memory, ssm};
use crate::properties::{self as p, Bench};
use crate::suite::{Config, Row};

/// The peers rows, in the table's order.
pub const KERNELS: &[&str] = &[
    "peers_gemm_1024",
    "peers_gemm_2048",
    "peers_sdpa_causal_h8_d64_l512",
    "peers_sdpa_causal_h8_d64_l2048",
    "peers_rope_l2048_h8_d64",
    "peers_softmax_8x2048x2048",
    "peers_s4d_fft_conv_h256_l4096",
    "peers_recurrent_dk128_dv128",
    "peers_kd_loss_grad_n4096_v32000",
];

/// Appends the peers rows wanted by `config` (f32, perf mode only).
pub(crate) fn rows<'b, B: Allocate, T: Element>(b: &'b B, config: &Config, rows: &mut Vec<Row>) {
    if config.checks || config.timing.is_none() || T::DTYPE != DType::F32 {
        return;
    }
    let mut add = |name: &'static str, bench: &dyn Fn() -> Result<Bench<'b>, Failure>| {
        if config.wants(name) {
            let mut row = Row::new::<B, T>(b, name);
            row.time(config, bench());
            rows.push(row);
        }
    };
    let [
        gemm1,
        gemm2,
        sdpa1,
        sdpa2,
        rope,
        softmax,
        conv,
        recurrent,
        kd,
    ] = match KERNELS {
        [a, b, c, d, e, f, g, h, i] => [*a, *b, *c, *d, *e, *f, *g, *h, *i],
        _ => return,
    };
    add(gemm1, &|| p::gemm::bench::<B, T>(b, 1024, 1024, 1024));
    add(gemm2, &|| p::gemm::bench::<B, T>(b, 2048, 2048, 2048));
    add(sdpa1, &|| {
        attention::sdpa::bench_heads::<B, T>(b, 8, 8, 512)
    });
    add(sdpa2, &|| {
        attention::sdpa::bench_heads::<B, T>(b, 8, 8, 2048)
    });
    add(rope, &|| {
        attention::positional::rope::bench::<B, T>(b, 1, 8, 2048, 64)
    });
    add(softmax, &|| {
        p::softmax::bench::<B, T>(b, SoftmaxKind::Softmax, 8 * 2048, 2048)
    });
    add(conv, &|| {
        ssm::props::bench_conv::<B, T>(b, 256, 4096, false)
    });
    add(recurrent, &|| {
        memory::properties::bench_recurrent::<B, T>(b, 128)
    });
    add(kd, &|| distill::bench::<B, T>(b, 4096, 32000));
}
