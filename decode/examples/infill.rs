//! Insertion decoding fills the gaps of a sequence: the fixed tokens stay, an insertion head
//! (here a hand-written one that knows the target sentence) scores every (slot, token) pair and
//! stop, and one token goes in per step.
//!
//! `cargo run -p seq-decode --example infill`
#![allow(clippy::indexing_slicing, clippy::cast_precision_loss)]

use seq_decode::insertion::FIXED;
use seq_decode::{InsertionDecoding, InsertionModel, InsertionRule, WorkspaceBuf};

const WORDS: [&str; 10] = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "a", "cat",
];

/// Scores inserting `t` in a slot by whether it is the target token missing there.
struct Oracle {
    target: Vec<u32>,
}

impl InsertionModel for Oracle {
    fn vocab_size(&self) -> usize {
        WORDS.len()
    }

    fn scores(&mut self, seq: &[u32], scores: &mut [f32]) -> seqcore::Result<f32> {
        let v = WORDS.len();
        scores.fill(-5.0);
        // align seq as a subsequence of the target; a slot may take the target tokens skipped there
        let mut j = 0;
        for slot in 0..=seq.len() {
            let next = seq.get(slot).copied();
            let mut k = j;
            while k < self.target.len() && Some(self.target[k]) != next {
                // earlier missing tokens score higher: fill left to right inside a gap
                scores[slot * v + self.target[k] as usize] = 2.0 - (k - j) as f32;
                k += 1;
            }
            j = k + 1;
        }
        // stop once complete
        Ok(if seq.len() == self.target.len() {
            10.0
        } else {
            -10.0
        })
    }
}

fn main() -> Result<(), seqcore::Error> {
    let target = vec![0, 1, 2, 3, 4, 5, 0, 6, 7];
    let fixed = [0u32, 3, 5, 7]; // "the _ fox _ over _ dog"
    let mut model = Oracle { target };
    let dec = InsertionDecoding {
        rule: InsertionRule::TwoStage,
        max_len: 12,
        open_ends: false,
    };
    let mut ws = WorkspaceBuf::new(dec.workspace_len(WORDS.len())?);
    let (mut tokens, mut steps) = ([0u32; 12], [0u32; 12]);
    let r = dec.run(&mut model, &fixed, ws.workspace(), &mut tokens, &mut steps)?;
    let show = |t: &[u32]| {
        t.iter()
            .map(|&i| WORDS[i as usize])
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("fixed:  {}", show(&fixed));
    println!(
        "filled: {} (stopped: {})",
        show(&tokens[..r.len]),
        r.stopped
    );
    for (t, s) in tokens[..r.len].iter().zip(&steps) {
        let when = if *s == FIXED {
            "fixed".to_string()
        } else {
            format!("step {s}")
        };
        println!("  {:<6} {when}", WORDS[*t as usize]);
    }
    Ok(())
}
