//! Times the peers-table cases in candle on the CPU and prints one JSON object per case:
//! `{"case": ..., "ms": ...}` (median of the timed calls). Threads: candle's CPU kernels use
//! rayon, so set `RAYON_NUM_THREADS` (read by `candle_core::utils::get_num_threads`).

use std::time::{Duration, Instant};

use candle_core::{Device, Result, Tensor};

fn median_ms(mut f: impl FnMut() -> Result<()>, budget: Duration) -> Result<f64> {
    f()?;
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        f()?;
    }
    let mut s = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || s.len() < 3 {
        let t = Instant::now();
        f()?;
        s.push(t.elapsed().as_secs_f64() * 1e3);
    }
    s.sort_by(f64::total_cmp);
    Ok(s[s.len() / 2])
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let budget = Duration::from_millis(
        std::env::var("PEERS_BUDGET_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000),
    );
    let filter = std::env::args().nth(1).unwrap_or_default();
    let emit = |case: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        if !case.contains(filter.as_str()) {
            return Ok(());
        }
        let ms = median_ms(f, budget)?;
        println!("{{\"case\": \"{case}\", \"ms\": {ms}}}");
        Ok(())
    };
    for n in [1024usize, 2048] {
        let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
        emit(&format!("gemm {n}^3"), &mut || {
            a.matmul(&b)?;
            Ok(())
        })?;
    }
    for l in [512usize, 2048] {
        let (h, d) = (8usize, 64usize);
        let q = Tensor::randn(0f32, 1.0, (1, h, l, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, h, l, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, h, l, d), &dev)?;
        // The causal mask as candle's own models build it (0 allowed, -inf above the diagonal).
        let mask: Vec<f32> = (0..l)
            .flat_map(|i| (0..l).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_slice(&mask, (l, l), &dev)?;
        let scale = 1.0 / (d as f64).sqrt();
        emit(&format!("sdpa causal H=8 D=64 L={l}"), &mut || {
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = att.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            att.matmul(&v)?;
            Ok(())
        })?;
    }
    {
        let (l, h, d) = (2048usize, 8usize, 64usize);
        let x = Tensor::randn(0f32, 1.0, (1, h, l, d), &dev)?;
        let cos = Tensor::randn(0f32, 1.0, (l, d / 2), &dev)?;
        let sin = Tensor::randn(0f32, 1.0, (l, d / 2), &dev)?;
        emit("rope L=2048 H=8 D=64", &mut || {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)?;
            Ok(())
        })?;
    }
    {
        let x = Tensor::randn(0f32, 1.0, (8, 2048, 2048), &dev)?;
        emit("softmax 8x2048x2048", &mut || {
            candle_nn::ops::softmax_last_dim(&x)?;
            Ok(())
        })?;
    }
    Ok(())
}
