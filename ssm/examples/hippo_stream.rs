//! HiPPO-LegS compresses a streamed signal online into N Legendre coefficients, one step per
//! sample, and reconstructs the whole history from them at the end; prints the relative L2
//! reconstruction error against N.
//!
//! Run: `cargo run --release -p seq-ssm --example hippo_stream`
#![allow(clippy::cast_precision_loss, clippy::indexing_slicing)]

use seq_ssm::hippo::{Measure, legendre_eval, legs_step, transition};

/// The streamed signal: a few tones and a ramp, 1000 samples.
fn signal(s: usize, len: usize) -> f64 {
    let t = s as f64 / len as f64;
    (2.0 * core::f64::consts::PI * 3.0 * t).sin()
        + 0.5 * (2.0 * core::f64::consts::PI * 7.0 * t).cos()
        + 0.3 * t
}

fn main() -> Result<(), seqcore::Error> {
    let len = 1000;
    let f: Vec<f64> = (0..len).map(|s| signal(s, len)).collect();
    println!("| N | relative L2 error of the reconstructed history (L = {len}) |");
    println!("| --- | --- |");
    for n in [4usize, 8, 16, 32, 64, 128] {
        let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n]);
        transition(Measure::LegS, n, &mut a, &mut b)?;
        let (mut x, mut tmp) = (vec![0.0; n], vec![0.0; n]);
        for (k, &fk) in f.iter().enumerate() {
            legs_step(&a, &b, k, &mut x, fk, &mut tmp)?;
        }
        let (mut num, mut den) = (0.0, 0.0);
        for (s, &fs) in f.iter().enumerate() {
            let xs = 2.0 * (s as f64 + 1.0) / len as f64 - 1.0;
            let r = legendre_eval(&x, xs);
            num += (r - fs) * (r - fs);
            den += fs * fs;
        }
        println!("| {n} | {:.3e} |", (num / den).sqrt());
    }
    Ok(())
}
