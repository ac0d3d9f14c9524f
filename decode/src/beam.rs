//! Beam search, exactly Hugging Face's (`GenerationMixin._beam_search` of transformers 4.55,
//! the vectorised version), for one prompt.
//!
//! Per step, as Hugging Face: log-softmax of each beam's logits (float32), the logits processors,
//! plus the beam's running score; the `2 * beams` best (beam, token) candidates over all beams
//! (ties to the lower flat index `beam * V + token`); a candidate that ends in EOS, or reaches the
//! length limit, is finished: it enters the finished list (score divided by
//! `generated_length ^ length_penalty`) only when it ranks among the first `beams` candidates and
//! beats the list's worst; the best `beams` unfinished candidates run on. The constants (`-1e9`
//! for dead beams, float32 sums) are Hugging Face's, so its numbers and choices come out, ties
//! included. `early_stopping` is Hugging Face's: [`EarlyStopping::True`] stops when `beams`
//! hypotheses are finished, [`EarlyStopping::False`] when the best running beam, scored at the
//! current length, cannot beat the worst finished one, [`EarlyStopping::Never`] when it cannot at
//! the best length it could reach.

use seqcore::{Error, Result};

use crate::model::{Hypotheses, LanguageModel};
use crate::ops::{check_logits, log_softmax, top_k};
use crate::processors::Processors;
use crate::rows::{at, at_mut, ix, row, row_mut};
use crate::workspace::{Workspace, WorkspaceLen, add, mul, take, tok};

/// Hugging Face's `-1e9`: the score of a dead beam or a barred candidate.
pub(crate) const DEAD: f32 = -1.0e9;

/// Hugging Face's `early_stopping`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// `True`: stop as soon as `beams` hypotheses are finished.
    True,
    /// `False` (Hugging Face's default): stop when the best running beam, scored at the current
    /// length, cannot beat the worst finished hypothesis (a heuristic when `length_penalty > 0`).
    #[default]
    False,
    /// `"never"`: stop only when no running beam can beat the worst finished hypothesis at any
    /// length it could still reach (the canonical beam search).
    Never,
}

/// The n-best list a beam search returns, in caller memory: `tokens [num_return, max_new_tokens]`
/// (generated tokens only, the prompt excluded, EOS included; the rest of a row is left as is),
/// `lengths [num_return]`, `scores [num_return]` (Hugging Face's `sequences_scores`).
#[derive(Debug)]
pub struct NBest<'a> {
    /// Generated tokens, one row of `max_new_tokens` per hypothesis, best first.
    pub tokens: &'a mut [u32],
    /// Tokens generated in each hypothesis (EOS included).
    pub lengths: &'a mut [usize],
    /// Sum of the generated tokens' (processed) log-probabilities over
    /// `length ^ length_penalty`.
    pub scores: &'a mut [f32],
}

/// One hypothesis of an n-best list (the `alloc` API).
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// Generated tokens (EOS included when generated).
    pub tokens: alloc::vec::Vec<u32>,
    /// Hugging Face's `sequences_scores` entry.
    pub score: f32,
}

/// Beam search configuration (Hugging Face `generate` with `num_beams`, `do_sample=False`).
#[derive(Clone, Copy, Debug)]
pub struct BeamSearch<'a> {
    /// `num_beams` (at least 1).
    pub beams: usize,
    /// `max_new_tokens` (at least 1).
    pub max_new_tokens: usize,
    /// `eos_token_id`, if any.
    pub eos: Option<u32>,
    /// `length_penalty`: the exponent of the generated length that divides a finished score.
    pub length_penalty: f64,
    /// `early_stopping`.
    pub early_stopping: EarlyStopping,
    /// `num_return_sequences` (1 to `beams`).
    pub num_return: usize,
    /// Logits processors, applied to the log-probabilities (Hugging Face's order).
    pub processors: Processors<'a>,
}

impl Default for BeamSearch<'_> {
    fn default() -> Self {
        Self {
            beams: 1,
            max_new_tokens: 1,
            eos: None,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
            num_return: 1,
            processors: Processors::default(),
        }
    }
}

pub(crate) fn check_common(
    beams: usize,
    max_new_tokens: usize,
    eos: Option<u32>,
    length_penalty: f64,
    num_return: usize,
    vocab: usize,
    prompt: &[u32],
) -> Result<()> {
    if beams == 0 {
        return Err(Error::Param {
            arg: "beams",
            reason: "must be at least 1",
        });
    }
    if max_new_tokens == 0 {
        return Err(Error::Param {
            arg: "max_new_tokens",
            reason: "must be at least 1",
        });
    }
    if !length_penalty.is_finite() {
        return Err(Error::Param {
            arg: "length_penalty",
            reason: "must be finite",
        });
    }
    if num_return == 0 || num_return > beams {
        return Err(Error::Param {
            arg: "num_return",
            reason: "must lie between 1 and the number of beams",
        });
    }
    if vocab == 0 {
        return Err(Error::Param {
            arg: "vocab",
            reason: "must be positive",
        });
    }
    if let Some(e) = eos {
        if usize::try_from(e).map_or(true, |e| e >= vocab) {
            return Err(Error::Param {
                arg: "eos",
                reason: "is outside the vocabulary",
            });
        }
    }
    if prompt.is_empty() {
        return Err(Error::Param {
            arg: "prompt",
            reason: "must hold at least one token",
        });
    }
    if prompt
        .iter()
        .any(|&t| usize::try_from(t).map_or(true, |t| t >= vocab))
    {
        return Err(Error::Param {
            arg: "prompt",
            reason: "holds a token outside the vocabulary",
        });
    }
    Ok(())
}

/// `len ^ lp` as Hugging Face: a Python float (f64), used as a float32 divisor.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn length_divisor(len: usize, lp: f64) -> f32 {
    length_pow(len, lp) as f32
}

/// `len ^ lp` in f64, as Python's `int ** float`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn length_pow(len: usize, lp: f64) -> f64 {
    libm::pow(len as f64, lp)
}

/// Checks the n-best output buffers.
pub(crate) fn check_out(out: &NBest<'_>, num_return: usize, max_new: usize) -> Result<()> {
    let need = mul(num_return, max_new, "tokens")?;
    if out.tokens.len() < need {
        return Err(Error::Capacity {
            arg: "tokens",
            needed: need,
            capacity: out.tokens.len(),
        });
    }
    if out.lengths.len() < num_return {
        return Err(Error::Capacity {
            arg: "lengths",
            needed: num_return,
            capacity: out.lengths.len(),
        });
    }
    if out.scores.len() < num_return {
        return Err(Error::Capacity {
            arg: "scores",
            needed: num_return,
            capacity: out.scores.len(),
        });
    }
    Ok(())
}

impl BeamSearch<'_> {
    fn candidates(&self) -> usize {
        2 * self.beams
    }

    /// Scratch for a vocabulary of `vocab` and a prompt of `prompt_len` tokens.
    ///
    /// # Errors
    /// [`Error::Overflow`] when the sizes overflow `usize`.
    pub fn workspace_len(&self, vocab: usize, prompt_len: usize) -> Result<WorkspaceLen> {
        let (b, k) = (self.beams, self.candidates());
        let s = add(prompt_len, self.max_new_tokens, "max_new_tokens")?;
        let f32s = [mul(b, vocab, "vocab")?, vocab, k, k, b, b, b + k, b]
            .iter()
            .try_fold(0usize, |a, &x| add(a, x, "workspace"))?;
        let rows = mul(b, s, "max_new_tokens")?;
        let u32s = [rows, rows, rows, vocab, k, b, b, b, b, b, b]
            .iter()
            .try_fold(0usize, |a, &x| add(a, x, "workspace"))?;
        Ok(WorkspaceLen { f32s, u32s })
    }

    /// Runs beam search from `prompt` on `model`, writing the `num_return` best hypotheses to
    /// `out`. Calls [`LanguageModel::logits`] on all `beams` beams per step (as Hugging Face,
    /// dead beams included) and [`LanguageModel::reorder`] after each step. Allocates nothing.
    ///
    /// # Errors
    /// [`Error::Param`] naming the argument: `beams` 0, `max_new_tokens` 0, `num_return` outside
    /// `1..=beams`, a non-finite `length_penalty`, `eos` or a prompt token outside the vocabulary,
    /// `vocab` with fewer than 2 tokens (Hugging Face keeps `2 * beams` candidates), `logits` with
    /// NaN or `+inf`, bad processors; [`Error::Capacity`] when `ws` or `out` is too small; the
    /// model's errors.
    #[allow(clippy::too_many_lines)]
    pub fn run<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
        ws: Workspace<'_>,
        out: NBest<'_>,
    ) -> Result<()> {
        let v = model.vocab_size();
        check_common(
            self.beams,
            self.max_new_tokens,
            self.eos,
            self.length_penalty,
            self.num_return,
            v,
            prompt,
        )?;
        self.processors.validate(v)?;
        let (b, k) = (self.beams, self.candidates());
        if k > mul(b, v, "vocab")? {
            return Err(Error::Param {
                arg: "vocab",
                reason: "must hold at least 2 tokens for beam search (2 x beams candidates)",
            });
        }
        check_out(&out, self.num_return, self.max_new_tokens)?;
        let p = prompt.len();
        let s = p + self.max_new_tokens;
        let max_length = s;
        let Workspace { mut f32s, mut u32s } = ws;
        let acc = take(&mut f32s, b * v, "workspace")?;
        let probs = take(&mut f32s, v, "workspace")?;
        let top_v = take(&mut f32s, k, "workspace")?;
        let masked = take(&mut f32s, k, "workspace")?;
        let run_scores = take(&mut f32s, b, "workspace")?;
        let fin_scores = take(&mut f32s, b, "workspace")?;
        let merged = take(&mut f32s, b + k, "workspace")?;
        let sel_v = take(&mut f32s, b, "workspace")?;
        let running = take(&mut u32s, b * s, "workspace")?;
        let finished = take(&mut u32s, b * s, "workspace")?;
        let tmp = take(&mut u32s, b * s, "workspace")?;
        let counts = take(&mut u32s, v, "workspace")?;
        let top_i = take(&mut u32s, k, "workspace")?;
        let fin_len = take(&mut u32s, b, "workspace")?;
        let fin_flag = take(&mut u32s, b, "workspace")?;
        let parents = take(&mut u32s, b, "workspace")?;
        let sel_i = take(&mut u32s, b, "workspace")?;
        let pick_len = take(&mut u32s, b, "workspace")?;
        let pick_flag = take(&mut u32s, b, "workspace")?;

        for i in 0..b {
            let r = row_mut(running, i, s)?;
            r.fill(0);
            r.get_mut(..p)
                .ok_or(Error::Overflow { arg: "prompt" })?
                .copy_from_slice(prompt);
        }
        finished.copy_from_slice(running);
        run_scores.fill(DEAD);
        *at_mut(run_scores, 0)? = 0.0;
        fin_scores.fill(DEAD);
        fin_len.fill(0);
        fin_flag.fill(0);
        let mut unsatisfied = true;
        let mut cur = p;
        loop {
            // model -> log-probs -> processors -> + running score
            let hyps = Hypotheses::new(running, b, cur, s, p)?;
            model.logits(hyps, acc)?;
            check_logits(acc)?;
            for i in 0..b {
                let r = row_mut(acc, i, v)?;
                log_softmax(r);
                self.processors.apply(
                    row(running, i, s)?.get(..cur).unwrap_or(&[]),
                    p,
                    self.eos,
                    false,
                    r,
                    counts,
                    probs,
                )?;
                let base = at(run_scores, i)?;
                for x in r.iter_mut() {
                    *x += base;
                }
            }
            top_k(acc, top_v, top_i)?;
            // which candidates hit a stopping criterion (EOS, or the length limit)
            let at_limit = cur + 1 >= max_length;
            let hits = |c: usize| -> Result<bool> {
                let t = at(top_i, c)? % tok(v)?;
                Ok(at_limit || Some(t) == self.eos)
            };
            let mut all_hit = true;
            for c in 0..k {
                let h = hits(c)?;
                all_hit &= h;
                *at_mut(masked, c)? = at(top_v, c)? + if h { DEAD } else { 0.0 };
            }
            // finished list: merge old finished with the candidates that just finished
            let denom = length_divisor(cur + 1 - p, self.length_penalty);
            let all_finished = fin_flag.iter().all(|&f| f != 0);
            for (j, m) in merged.iter_mut().take(b).enumerate() {
                *m = at(fin_scores, j)?;
            }
            for c in 0..k {
                let mut sc = at(top_v, c)? / denom;
                if all_finished && self.early_stopping == EarlyStopping::True {
                    sc += DEAD;
                }
                if !unsatisfied {
                    sc += DEAD;
                }
                let did = c < b && hits(c)?;
                if !did {
                    sc += DEAD;
                }
                *at_mut(merged, b + c)? = sc;
            }
            top_k(merged, sel_v, sel_i)?;
            // gather the new finished rows into tmp, and their lengths and flags
            for j in 0..b {
                let m = ix(at(sel_i, j)?)?;
                let dst = row_mut(tmp, j, s)?;
                if m < b {
                    dst.copy_from_slice(row(finished, m, s)?);
                    *at_mut(pick_len, j)? = at(fin_len, m)?;
                    *at_mut(pick_flag, j)? = at(fin_flag, m)?;
                } else {
                    let c = m - b;
                    let flat = ix(at(top_i, c)?)?;
                    dst.copy_from_slice(row(running, flat / v, s)?);
                    *at_mut(dst, cur)? = tok(flat % v)?;
                    *at_mut(pick_len, j)? = tok(cur + 1 - p)?;
                    *at_mut(pick_flag, j)? = u32::from(c < b && hits(c)?);
                }
            }
            fin_scores.copy_from_slice(sel_v);
            fin_len.copy_from_slice(pick_len);
            fin_flag.copy_from_slice(pick_flag);
            finished.copy_from_slice(tmp);
            // running beams for the next step: the best `beams` unfinished candidates
            for c in 0..k {
                let h = hits(c)?;
                *at_mut(masked, c)? = at(top_v, c)? + if h { DEAD } else { 0.0 };
            }
            top_k(masked, sel_v, sel_i)?;
            for j in 0..b {
                let c = ix(at(sel_i, j)?)?;
                let flat = ix(at(top_i, c)?)?;
                *at_mut(parents, j)? = tok(flat / v)?;
                let dst = row_mut(tmp, j, s)?;
                dst.copy_from_slice(row(running, flat / v, s)?);
                *at_mut(dst, cur)? = tok(flat % v)?;
            }
            run_scores.copy_from_slice(sel_v);
            running.copy_from_slice(tmp);
            model.reorder(parents)?;
            cur += 1;
            // Hugging Face's early-stop heuristic (sticky)
            if unsatisfied {
                let best_len =
                    if self.early_stopping == EarlyStopping::Never && self.length_penalty > 0.0 {
                        max_length - p
                    } else {
                        cur - p
                    };
                let best = at(run_scores, 0)? / length_divisor(best_len, self.length_penalty);
                let min_fin = fin_scores.iter().copied().fold(f32::INFINITY, f32::min);
                unsatisfied = fin_flag
                    .iter()
                    .any(|&f| best > if f != 0 { min_fin } else { DEAD });
            }
            let all_finished = fin_flag.iter().all(|&f| f != 0);
            let open = !(all_finished && self.early_stopping == EarlyStopping::True);
            if !(unsatisfied && open && !all_hit) {
                break;
            }
        }
        let NBest {
            tokens,
            lengths,
            scores,
        } = out;
        let w = self.max_new_tokens;
        for j in 0..self.num_return {
            let len = ix(at(fin_len, j)?)?;
            let src = row(finished, j, s)?
                .get(p..p + len)
                .ok_or(Error::Overflow { arg: "lengths" })?;
            row_mut(tokens, j, w)?
                .get_mut(..len)
                .ok_or(Error::Overflow { arg: "lengths" })?
                .copy_from_slice(src);
            *at_mut(lengths, j)? = len;
            *at_mut(scores, j)? = at(fin_scores, j)?;
        }
        Ok(())
    }

    /// The `alloc` API: runs [`BeamSearch::run`] on scratch from the heap and returns the
    /// `num_return` best hypotheses, best first.
    ///
    /// # Errors
    /// As [`BeamSearch::run`].
    #[cfg(feature = "alloc")]
    pub fn generate<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
    ) -> Result<alloc::vec::Vec<Hypothesis>> {
        check_common(
            self.beams,
            self.max_new_tokens,
            self.eos,
            self.length_penalty,
            self.num_return,
            model.vocab_size(),
            prompt,
        )?;
        let len = self.workspace_len(model.vocab_size(), prompt.len())?;
        let mut ws = crate::workspace::WorkspaceBuf::try_new(len)?;
        let n = self.num_return.min(self.beams);
        let mut tokens = crate::workspace::try_vec(n.saturating_mul(self.max_new_tokens), 0u32)?;
        let mut lengths = crate::workspace::try_vec(n, 0usize)?;
        let mut scores = crate::workspace::try_vec(n, 0f32)?;
        self.run(
            model,
            prompt,
            ws.workspace(),
            NBest {
                tokens: &mut tokens,
                lengths: &mut lengths,
                scores: &mut scores,
            },
        )?;
        Ok(collect(&tokens, &lengths, &scores, self.max_new_tokens))
    }
}

/// Rows of an [`NBest`] as owned hypotheses.
#[cfg(feature = "alloc")]
pub(crate) fn collect(
    tokens: &[u32],
    lengths: &[usize],
    scores: &[f32],
    w: usize,
) -> alloc::vec::Vec<Hypothesis> {
    lengths
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(j, (&len, &score))| Hypothesis {
            tokens: tokens
                .get(j * w..j * w + len)
                .map(<[u32]>::to_vec)
                .unwrap_or_default(),
            score,
        })
        .collect()
}
