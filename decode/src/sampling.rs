//! Greedy decoding and sampling (Hugging Face `generate` with `num_beams=1`, `do_sample`
//! False / True), for one sequence, with a seeded no_std generator.
//!
//! Per step, as Hugging Face's `_sample`: the processors on the raw logits (float32), then the
//! arg-max (the lowest id among ties, as `torch.argmax`) or a draw from the softmax (inverse CDF
//! with [`Xoshiro256`]; not `torch.multinomial`'s stream). Stops after EOS (kept) or
//! `max_new_tokens`.

use seqcore::{Error, Result};

use crate::model::{Hypotheses, LanguageModel};
use crate::ops::{argmax, check_logits, softmax};
use crate::processors::Processors;
use crate::rng::Xoshiro256;
use crate::rows::at_mut;
use crate::workspace::{Workspace, WorkspaceLen, add, take, tok};

/// Greedy or sampling configuration.
#[derive(Clone, Copy, Debug)]
pub struct Sampling<'a> {
    /// `max_new_tokens` (at least 1).
    pub max_new_tokens: usize,
    /// `eos_token_id`, if any.
    pub eos: Option<u32>,
    /// `do_sample`: draw from the processed distribution instead of the arg-max.
    pub do_sample: bool,
    /// Seed of the generator (the same seed gives the same tokens).
    pub seed: u64,
    /// Logits processors (the warpers only when sampling, as Hugging Face).
    pub processors: Processors<'a>,
}

impl Default for Sampling<'_> {
    fn default() -> Self {
        Self {
            max_new_tokens: 1,
            eos: None,
            do_sample: false,
            seed: 0,
            processors: Processors::default(),
        }
    }
}

/// Draws an index from probabilities `p` (summing to about 1) with `u` uniform in `[0, 1)`;
/// `None` when every probability is 0.
pub(crate) fn draw(p: &[f32], u: f64) -> Option<usize> {
    let total: f64 = p.iter().map(|&x| f64::from(x)).sum();
    if total <= 0.0 {
        return None;
    }
    let target = u * total;
    let mut cum = 0.0;
    let mut last = None;
    for (i, &x) in p.iter().enumerate() {
        if x > 0.0 {
            cum += f64::from(x);
            last = Some(i);
            if target < cum {
                return Some(i);
            }
        }
    }
    last
}

/// Scratch of a decoder that grows one sequence: two vocabulary-sized f32 rows, and the tokens so
/// far plus a vocabulary-sized index row.
pub(crate) fn one_sequence_workspace_len(
    vocab: usize,
    prompt_len: usize,
    max_new_tokens: usize,
) -> Result<WorkspaceLen> {
    Ok(WorkspaceLen {
        f32s: add(vocab, vocab, "vocab")?,
        u32s: add(
            add(prompt_len, max_new_tokens, "max_new_tokens")?,
            vocab,
            "vocab",
        )?,
    })
}

impl Sampling<'_> {
    /// Scratch for a vocabulary of `vocab` and a prompt of `prompt_len` tokens.
    ///
    /// # Errors
    /// [`Error::Overflow`] when the sizes overflow.
    pub fn workspace_len(&self, vocab: usize, prompt_len: usize) -> Result<WorkspaceLen> {
        one_sequence_workspace_len(vocab, prompt_len, self.max_new_tokens)
    }

    /// Decodes from `prompt`, writing the generated tokens to `out` (at least `max_new_tokens`
    /// long); returns how many were generated (EOS included). Allocates nothing.
    ///
    /// # Errors
    /// [`Error::Param`] naming the argument: `max_new_tokens` 0, `eos` or a prompt token outside
    /// the vocabulary, bad processors, `logits` with NaN or `+inf`, or (sampling) a step whose
    /// every token was removed; [`Error::Capacity`] when `ws` or `out` is too small.
    pub fn run<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
        ws: Workspace<'_>,
        out: &mut [u32],
    ) -> Result<usize> {
        let v = model.vocab_size();
        crate::beam::check_common(1, self.max_new_tokens, self.eos, 0.0, 1, v, prompt)?;
        self.processors.validate(v)?;
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
        let mut cur = p;
        while cur < s {
            model.logits(Hypotheses::new(seq, 1, cur, s, p)?, logits)?;
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
            let t = if self.do_sample {
                softmax(logits);
                draw(logits, rng.next_f64()).ok_or(Error::Param {
                    arg: "logits",
                    reason: "every token was removed: nothing to sample",
                })?
            } else {
                argmax(logits)
            };
            let t = tok(t)?;
            *at_mut(seq, cur)? = t;
            *at_mut(out, cur - p)? = t;
            cur += 1;
            if Some(t) == self.eos {
                break;
            }
        }
        Ok(cur - p)
    }

    /// The `alloc` API: [`Sampling::run`] on heap scratch; returns the generated tokens.
    ///
    /// # Errors
    /// As [`Sampling::run`].
    #[cfg(feature = "alloc")]
    pub fn generate<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
    ) -> Result<alloc::vec::Vec<u32>> {
        let mut ws = crate::workspace::WorkspaceBuf::try_new(
            self.workspace_len(model.vocab_size(), prompt.len())?,
        )?;
        let mut out = crate::workspace::try_vec(self.max_new_tokens, 0u32)?;
        let n = self.run(model, prompt, ws.workspace(), &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}
