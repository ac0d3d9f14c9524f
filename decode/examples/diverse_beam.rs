//! Beam search vs diverse beam search on a table model: the n-best lists side by side.
//!
//! `cargo run -p seq-decode --example diverse_beam`
#![allow(clippy::cast_precision_loss, clippy::unwrap_used)]

use seq_decode::{BeamSearch, DiverseBeamSearch, EarlyStopping, Processors, StepTable};

fn main() -> Result<(), seqcore::Error> {
    let (steps, v) = (5, 8);
    // a peaked bigram table: token (p + 1) % v is likely after p, with a few alternatives
    let table: Vec<f32> = (0..steps * v * v)
        .map(|i| {
            let (p, t) = ((i / v) % v, i % v);
            if t == (p + 1) % v {
                3.0
            } else {
                ((i * 7919) % 13) as f32 * 0.2
            }
        })
        .collect();
    let mut model = StepTable::new(&table, steps, v)?;
    let beam = BeamSearch {
        beams: 4,
        max_new_tokens: steps,
        eos: Some(0),
        length_penalty: 1.0,
        early_stopping: EarlyStopping::False,
        num_return: 4,
        processors: Processors::default(),
    };
    let diverse = DiverseBeamSearch {
        beams: 4,
        groups: 4,
        diversity_penalty: 2.0,
        max_new_tokens: steps,
        eos: Some(0),
        length_penalty: 1.0,
        early_stopping: EarlyStopping::False,
        num_return: 4,
        processors: Processors::default(),
    };
    let a = beam.generate(&mut model, &[1])?;
    let b = diverse.generate(&mut model, &[1])?;
    println!(
        "{:<32} | diverse beam search (4 groups, penalty 2)",
        "beam search (4 beams)"
    );
    for (x, y) in a.iter().zip(&b) {
        let fx = format!("{:?} {:.3}", x.tokens, x.score);
        println!("{fx:<32} | {:?} {:.3}", y.tokens, y.score);
    }
    Ok(())
}
