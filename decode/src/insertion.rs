//! Insertion decoding with an insertion head (Patel et al., "Insertion Language Models:
//! Sequence Generation with Arbitrary-Position Insertions", 2025, section 3: the head scores every
//! (slot, token) pair from the slot representations, plus a stop score).
//!
//! A sequence of `L` tokens has `L + 1` slots (slot `i` is before token `i`, slot `L` at the end).
//! The caller's [`InsertionModel`] writes `(L + 1) * V` slot-token scores and one stop score.
//! Each step inserts one token: jointly (the best (slot, token) pair over all, against stop) or in
//! two stages (the best slot by its log-sum-exp over tokens against stop, then the best token in
//! it). Ties go to the lower slot, then the lower token. Infilling starts from fixed tokens and may
//! forbid the two outer slots; the bookkeeping records, per output token, the step that inserted it
//! ([`FIXED`] for the given tokens). Decoding stops on the stop score or at `max_len` tokens.

use seqcore::{Error, Real, Result};

use crate::rows::{at, at_mut};
use crate::workspace::{Workspace, WorkspaceLen, add, mul, take};

/// The step recorded for a fixed (given) token.
pub const FIXED: u32 = u32::MAX;

/// The caller's insertion language model.
pub trait InsertionModel {
    /// Vocabulary size `V`.
    fn vocab_size(&self) -> usize;

    /// Writes the insertion scores of `seq` (`L` tokens): `scores [(L + 1) * V]`, slot-major
    /// (`scores[i * V + t]` inserts `t` before token `i`), and returns the stop score.
    ///
    /// # Errors
    /// Whatever the model reports.
    fn scores(&mut self, seq: &[u32], scores: &mut [f32]) -> Result<f32>;
}

/// How a step picks its insertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertionRule {
    /// The best (slot, token) pair against the stop score.
    Joint,
    /// The best slot (log-sum-exp of its token scores) against stop, then its best token.
    TwoStage,
}

/// Insertion decoding configuration.
#[derive(Clone, Copy, Debug)]
pub struct InsertionDecoding {
    /// Joint or two-stage.
    pub rule: InsertionRule,
    /// Tokens at which decoding stops (fixed ones included).
    pub max_len: usize,
    /// Whether tokens may go before the first and after the last fixed token (false: only
    /// between fixed tokens, i.e. infilling of the gaps).
    pub open_ends: bool,
}

/// What an insertion run produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// Tokens in the output.
    pub len: usize,
    /// Whether the stop score ended decoding (false: `max_len`, or no slot allowed).
    pub stopped: bool,
}

impl InsertionDecoding {
    /// Scratch for a vocabulary of `vocab`: `(max_len + 1) * vocab + max_len + 1` f32.
    ///
    /// # Errors
    /// [`Error::Overflow`] when the sizes overflow.
    pub fn workspace_len(&self, vocab: usize) -> Result<WorkspaceLen> {
        let slots = add(self.max_len, 1, "max_len")?;
        Ok(WorkspaceLen {
            f32s: add(mul(slots, vocab, "vocab")?, slots, "max_len")?,
            u32s: 0,
        })
    }

    /// Decodes from the fixed tokens `fixed` into `tokens` and `steps` (each at least `max_len`
    /// long): the output tokens and, per token, the step that inserted it ([`FIXED`] for fixed
    /// ones). Allocates nothing.
    ///
    /// # Errors
    /// [`Error::Param`] naming `fixed` when it holds a token outside the vocabulary or more than
    /// `max_len` tokens, `scores` when the model writes NaN or `+inf`, `vocab` when it is 0;
    /// [`Error::Capacity`] when `ws`, `tokens` or `steps` is too small; the model's errors.
    pub fn run<M: InsertionModel + ?Sized>(
        &self,
        model: &mut M,
        fixed: &[u32],
        ws: Workspace<'_>,
        tokens: &mut [u32],
        steps: &mut [u32],
    ) -> Result<Inserted> {
        let v = model.vocab_size();
        if v == 0 {
            return Err(Error::Param {
                arg: "vocab",
                reason: "must be positive",
            });
        }
        if fixed.len() > self.max_len {
            return Err(Error::Param {
                arg: "fixed",
                reason: "holds more tokens than max_len",
            });
        }
        if fixed
            .iter()
            .any(|&t| usize::try_from(t).map_or(true, |t| t >= v))
        {
            return Err(Error::Param {
                arg: "fixed",
                reason: "holds a token outside the vocabulary",
            });
        }
        for (arg, len) in [("tokens", tokens.len()), ("steps", steps.len())] {
            if len < self.max_len {
                return Err(Error::Capacity {
                    arg,
                    needed: self.max_len,
                    capacity: len,
                });
            }
        }
        let Workspace { mut f32s, .. } = ws;
        let scores = take(&mut f32s, (self.max_len + 1) * v, "workspace")?;
        let slot_scores = take(&mut f32s, self.max_len + 1, "workspace")?;
        let mut len = fixed.len();
        tokens
            .get_mut(..len)
            .ok_or(Error::Overflow { arg: "fixed" })?
            .copy_from_slice(fixed);
        steps
            .get_mut(..len)
            .ok_or(Error::Overflow { arg: "fixed" })?
            .fill(FIXED);
        let mut step = 0u32;
        while len < self.max_len {
            let seq = tokens.get(..len).unwrap_or(&[]);
            let sc = scores
                .get_mut(..(len + 1) * v)
                .ok_or(Error::Overflow { arg: "max_len" })?;
            let stop = model.scores(seq, sc)?;
            if stop.is_nan() || sc.iter().any(|x| x.is_nan() || *x == f32::INFINITY) {
                return Err(Error::Param {
                    arg: "scores",
                    reason: "holds NaN or +inf",
                });
            }
            // allowed slots: all, or (infilling) only those between the fixed ends
            let allowed = |slot: usize| self.open_ends || (slot > 0 && slot < len);
            let mut best: Option<(usize, usize, f32)> = None;
            match self.rule {
                InsertionRule::Joint => {
                    for slot in (0..=len).filter(|&s| allowed(s)) {
                        for t in 0..v {
                            let x = at(sc, slot * v + t)?;
                            if x > f32::NEG_INFINITY && best.is_none_or(|(_, _, b)| x > b) {
                                best = Some((slot, t, x));
                            }
                        }
                    }
                }
                InsertionRule::TwoStage => {
                    // log-sum-exp per slot
                    let mut best_slot: Option<(usize, f32)> = None;
                    for slot in (0..=len).filter(|&s| allowed(s)) {
                        let r = sc.get(slot * v..(slot + 1) * v).unwrap_or(&[]);
                        let m = crate::ops::max(r);
                        let l = if m == f32::NEG_INFINITY {
                            m
                        } else {
                            let s: f64 = r.iter().map(|&x| f64::from(Real::exp(x - m))).sum();
                            #[allow(clippy::cast_possible_truncation)]
                            let l = m + Real::ln(s) as f32;
                            l
                        };
                        *at_mut(slot_scores, slot)? = l;
                        if l > f32::NEG_INFINITY && best_slot.is_none_or(|(_, b)| l > b) {
                            best_slot = Some((slot, l));
                        }
                    }
                    if let Some((slot, l)) = best_slot {
                        let r = sc.get(slot * v..(slot + 1) * v).unwrap_or(&[]);
                        let t = crate::ops::argmax(r);
                        best = Some((slot, t, l));
                    }
                }
            }
            let Some((slot, t, score)) = best else {
                return Ok(Inserted {
                    len,
                    stopped: false,
                });
            };
            if stop >= score {
                return Ok(Inserted { len, stopped: true });
            }
            let t = u32::try_from(t).map_err(|_| Error::Overflow { arg: "vocab" })?;
            // shift right from the slot, insert
            tokens
                .get_mut(slot..=len)
                .ok_or(Error::Overflow { arg: "max_len" })?
                .rotate_right(1);
            steps
                .get_mut(slot..=len)
                .ok_or(Error::Overflow { arg: "max_len" })?
                .rotate_right(1);
            *at_mut(tokens, slot)? = t;
            *at_mut(steps, slot)? = step;
            step = step.saturating_add(1);
            len += 1;
        }
        Ok(Inserted {
            len,
            stopped: false,
        })
    }
}
