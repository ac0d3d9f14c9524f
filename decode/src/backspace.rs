//! Backspace decoding (Cundy and Ermon, "SequenceMatch: Imitation Learning for Autoregressive
//! Sequence Modelling with Backtracking", ICLR 2024, section 4: the `<backspace>` action).
//!
//! The vocabulary holds a backspace token. When the model emits it, the last generated token is
//! removed, the model's [`LanguageModel::rollback`] hook drops it from its cache, and decoding
//! goes on from the shorter sequence. Backspace is masked while nothing was generated (it never
//! removes the prompt: no underflow) and once `max_backspaces` were spent (the bound that stops
//! endless backtracking), so the loop ends after at most `max_new_tokens + 2 * max_backspaces`
//! model calls.

use seqcore::{Error, Result};

use crate::model::{Hypotheses, LanguageModel};
use crate::ops::{argmax, check_logits, softmax};
use crate::processors::Processors;
use crate::rng::Xoshiro256;
use crate::rows::{at, at_mut};
use crate::sampling::draw;
use crate::workspace::{Workspace, WorkspaceLen, take, tok};

/// Backspace decoding configuration.
#[derive(Clone, Copy, Debug)]
pub struct BackspaceDecoding<'a> {
    /// The backspace token.
    pub backspace: u32,
    /// Length of the output (tokens kept) at which decoding stops.
    pub max_new_tokens: usize,
    /// Most backspaces in one run.
    pub max_backspaces: usize,
    /// `eos_token_id`, if any.
    pub eos: Option<u32>,
    /// Sample instead of the arg-max.
    pub do_sample: bool,
    /// Seed of the generator.
    pub seed: u64,
    /// Logits processors (the generated tokens they see are the kept ones).
    pub processors: Processors<'a>,
}

/// What a backspace run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackspaceStats {
    /// Tokens kept in the output.
    pub len: usize,
    /// Backspaces taken.
    pub backspaces: usize,
    /// Model calls.
    pub steps: usize,
}

impl BackspaceDecoding<'_> {
    /// Scratch for a vocabulary of `vocab` and a prompt of `prompt_len` tokens.
    ///
    /// # Errors
    /// [`Error::Overflow`] when the sizes overflow.
    pub fn workspace_len(&self, vocab: usize, prompt_len: usize) -> Result<WorkspaceLen> {
        crate::sampling::one_sequence_workspace_len(vocab, prompt_len, self.max_new_tokens)
    }

    /// Decodes from `prompt` into `out` (at least `max_new_tokens`). Allocates nothing.
    ///
    /// # Errors
    /// [`Error::Param`] naming `backspace` or `eos` when outside the vocabulary (or equal), and as
    /// [`crate::Sampling::run`].
    pub fn run<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
        ws: Workspace<'_>,
        out: &mut [u32],
    ) -> Result<BackspaceStats> {
        let v = model.vocab_size();
        crate::beam::check_common(1, self.max_new_tokens, self.eos, 0.0, 1, v, prompt)?;
        self.processors.validate(v)?;
        let bk = usize::try_from(self.backspace)
            .ok()
            .filter(|&b| b < v && Some(self.backspace) != self.eos)
            .ok_or(Error::Param {
                arg: "backspace",
                reason: "must be a vocabulary token other than EOS",
            })?;
        if out.len() < self.max_new_tokens {
            return Err(Error::Capacity {
                arg: "out",
                needed: self.max_new_tokens,
                capacity: out.len(),
            });
        }
        let p = prompt.len();
        let s = p + self.max_new_tokens;
        let Workspace { mut f32s, mut u32s } = ws;
        let logits = take(&mut f32s, v, "workspace")?;
        let probs = take(&mut f32s, v, "workspace")?;
        let seq = take(&mut u32s, s, "workspace")?;
        let counts = take(&mut u32s, v, "workspace")?;
        seq.get_mut(..p)
            .ok_or(Error::Overflow { arg: "prompt" })?
            .copy_from_slice(prompt);
        let mut rng = Xoshiro256::new(self.seed);
        let (mut cur, mut backspaces, mut steps) = (p, 0usize, 0usize);
        while cur < s {
            model.logits(Hypotheses::new(seq, 1, cur, s, p)?, logits)?;
            steps += 1;
            check_logits(logits)?;
            self.processors.apply(
                seq.get(..cur).unwrap_or(&[]),
                p,
                self.eos,
                self.do_sample,
                logits,
                counts,
                probs,
            )?;
            if cur == p || backspaces >= self.max_backspaces {
                *at_mut(logits, bk)? = f32::NEG_INFINITY;
            }
            let t = if self.do_sample {
                softmax(logits);
                draw(logits, rng.next_f64()).ok_or(Error::Param {
                    arg: "logits",
                    reason: "every token was removed: nothing to sample",
                })?
            } else {
                argmax(logits)
            };
            if t == bk {
                if cur == p || backspaces >= self.max_backspaces {
                    // only a row of -inf lets a masked backspace win the arg-max
                    return Err(Error::Param {
                        arg: "logits",
                        reason: "every token was removed",
                    });
                }
                cur -= 1;
                backspaces += 1;
                model.rollback(0, 1)?;
                continue;
            }
            let t = tok(t)?;
            *at_mut(seq, cur)? = t;
            cur += 1;
            if Some(t) == self.eos {
                break;
            }
        }
        let len = cur - p;
        for i in 0..len {
            *at_mut(out, i)? = at(seq, p + i)?;
        }
        Ok(BackspaceStats {
            len,
            backspaces,
            steps,
        })
    }
}
