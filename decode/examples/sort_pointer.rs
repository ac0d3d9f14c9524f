//! Pointer decoding sorts numbers with a scoring function that needs no training: the score of
//! position `j` is `-x_j / tau`, and the permutation mask keeps each position to one use.
//!
//! `cargo run -p seq-decode --example sort_pointer`
#![allow(clippy::indexing_slicing)]

use seq_decode::{Hypotheses, PointerDecoding, PointerScorer};

struct Smallest<'a> {
    xs: &'a [f32],
    tau: f32,
}

impl PointerScorer for Smallest<'_> {
    fn positions(&self) -> usize {
        self.xs.len()
    }

    fn scores(&mut self, chosen: Hypotheses<'_>, scores: &mut [f32]) -> seqcore::Result<()> {
        let n = self.xs.len();
        for (i, row) in scores.chunks_exact_mut(n).take(chosen.count()).enumerate() {
            let _ = i;
            for (s, &x) in row.iter_mut().zip(self.xs) {
                *s = -x / self.tau;
            }
        }
        Ok(())
    }
}

fn main() -> Result<(), seqcore::Error> {
    let xs = [3.5f32, -1.0, 7.25, 0.0, 2.0, -4.5, 1.5];
    let mut scorer = Smallest { xs: &xs, tau: 0.1 };
    let greedy = PointerDecoding {
        beams: 1,
        length: xs.len(),
        permutation: true,
        num_return: 1,
    };
    let order = &greedy.generate(&mut scorer)?[0].tokens;
    let sorted: Vec<f32> = order.iter().map(|&j| xs[j as usize]).collect();
    println!("input     {xs:?}\npointers  {order:?}\nsorted    {sorted:?}");
    assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
    let beams = PointerDecoding {
        beams: 3,
        num_return: 3,
        ..greedy
    };
    for h in beams.generate(&mut scorer)? {
        println!("beam      {:?} log-prob {:.3}", h.tokens, h.score);
    }
    Ok(())
}
