//! Insertion decoding: bookkeeping, infilling, stop, and bad input.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    missing_docs
)]

use proptest::prelude::*;
use seq_decode::insertion::FIXED;
use seq_decode::{InsertionDecoding, InsertionModel, InsertionRule, WorkspaceBuf};
use seqcore::{Error, Result};

/// Scores from a hash of (length, slot, token); the stop score grows with the length.
struct Hashy {
    v: usize,
    stop_at: usize,
    calls: usize,
}

impl InsertionModel for Hashy {
    fn vocab_size(&self) -> usize {
        self.v
    }
    fn scores(&mut self, seq: &[u32], scores: &mut [f32]) -> Result<f32> {
        self.calls += 1;
        assert_eq!(scores.len(), (seq.len() + 1) * self.v);
        for (i, s) in scores.iter_mut().enumerate() {
            let h = (i * 2_654_435_761 + seq.len() * 40_503) % 1000;
            *s = h as f32 / 100.0 - 5.0;
        }
        Ok(if seq.len() >= self.stop_at {
            100.0
        } else {
            -100.0
        })
    }
}

fn run(
    rule: InsertionRule,
    open_ends: bool,
    fixed: &[u32],
    max_len: usize,
    stop_at: usize,
) -> (Vec<u32>, Vec<u32>, seq_decode::Inserted) {
    let dec = InsertionDecoding {
        rule,
        max_len,
        open_ends,
    };
    let mut m = Hashy {
        v: 7,
        stop_at,
        calls: 0,
    };
    let mut ws = WorkspaceBuf::new(dec.workspace_len(7).unwrap());
    let (mut t, mut s) = (vec![0; max_len], vec![0; max_len]);
    let r = dec
        .run(&mut m, fixed, ws.workspace(), &mut t, &mut s)
        .unwrap();
    t.truncate(r.len);
    s.truncate(r.len);
    (t, s, r)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The fixed tokens stay, in order; each inserted token records a distinct step 0..k; the
    /// run ends on stop or at max_len; infilling never writes outside the fixed ends.
    #[test]
    fn bookkeeping(fixed in proptest::collection::vec(0u32..7, 0..5), extra in 0usize..6,
                   stop in 0usize..12, joint in proptest::bool::ANY, open in proptest::bool::ANY) {
        let rule = if joint { InsertionRule::Joint } else { InsertionRule::TwoStage };
        let max_len = fixed.len() + extra;
        let (t, s, r) = run(rule, open, &fixed, max_len, stop);
        let kept: Vec<u32> = t.iter().zip(&s).filter(|p| *p.1 == FIXED).map(|p| *p.0).collect();
        prop_assert_eq!(&kept, &fixed);
        let mut steps: Vec<u32> = s.iter().copied().filter(|&s| s != FIXED).collect();
        steps.sort_unstable();
        prop_assert_eq!(steps, (0..(r.len - fixed.len()) as u32).collect::<Vec<_>>());
        prop_assert!(r.len <= max_len);
        if r.stopped { prop_assert!(r.len >= stop); }
        else if r.len < max_len { prop_assert!(!open && fixed.len() < 2); }
        if !open && !fixed.is_empty() {
            prop_assert_eq!(s[0], FIXED);
            prop_assert_eq!(s[r.len - 1], FIXED);
        }
    }
}

#[test]
fn joint_picks_the_best_pair_and_stop_wins_ties() {
    struct One;
    impl InsertionModel for One {
        fn vocab_size(&self) -> usize {
            3
        }
        fn scores(&mut self, seq: &[u32], scores: &mut [f32]) -> Result<f32> {
            scores.fill(0.0);
            if seq.len() < 2 {
                scores[seq.len() * 3 + 2] = 5.0; // append token 2
            }
            Ok(if seq.len() < 2 { 1.0 } else { 0.0 })
        }
    }
    let dec = InsertionDecoding {
        rule: InsertionRule::Joint,
        max_len: 5,
        open_ends: true,
    };
    let mut ws = WorkspaceBuf::new(dec.workspace_len(3).unwrap());
    let (mut t, mut s) = ([0u32; 5], [0u32; 5]);
    let r = dec
        .run(&mut One, &[], ws.workspace(), &mut t, &mut s)
        .unwrap();
    // two appends, then every pair scores 0 = stop: stop wins the tie
    assert_eq!(r.len, 2);
    assert!(r.stopped);
    assert_eq!(&t[..2], &[2, 2]);
    assert_eq!(&s[..2], &[0, 1]);
}

#[test]
fn bad_input_is_an_error() {
    let dec = InsertionDecoding {
        rule: InsertionRule::TwoStage,
        max_len: 3,
        open_ends: true,
    };
    let mut m = Hashy {
        v: 7,
        stop_at: 9,
        calls: 0,
    };
    let mut ws = WorkspaceBuf::new(dec.workspace_len(7).unwrap());
    let (mut t, mut s) = ([0u32; 3], [0u32; 3]);
    assert!(matches!(
        dec.run(&mut m, &[9], ws.workspace(), &mut t, &mut s),
        Err(Error::Param { arg: "fixed", .. })
    ));
    assert!(matches!(
        dec.run(&mut m, &[1, 2, 3, 4], ws.workspace(), &mut t, &mut s),
        Err(Error::Param { arg: "fixed", .. })
    ));
    let (mut t2, mut s2) = ([0u32; 2], [0u32; 3]);
    assert!(matches!(
        dec.run(&mut m, &[], ws.workspace(), &mut t2, &mut s2),
        Err(Error::Capacity { arg: "tokens", .. })
    ));
    struct Nan;
    impl InsertionModel for Nan {
        fn vocab_size(&self) -> usize {
            2
        }
        fn scores(&mut self, _: &[u32], scores: &mut [f32]) -> Result<f32> {
            scores.fill(f32::NAN);
            Ok(0.0)
        }
    }
    assert!(matches!(
        dec.run(&mut Nan, &[], ws.workspace(), &mut t, &mut s),
        Err(Error::Param { arg: "scores", .. })
    ));
}
