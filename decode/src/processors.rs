//! Logits processors in Hugging Face's order and with its semantics
//! (`transformers.generation.logits_process`, as `GenerationMixin._get_logits_processor` lists
//! them), plus the presence and frequency penalties of OpenAI's API (which Hugging Face lacks).
//!
//! Order, each skipped when off: repetition penalty, presence / frequency penalties, no-repeat
//! n-gram, banned tokens (`bad_words_ids` of one token), min new tokens, forced tokens
//! (`forced_bos_token_id` generalised to any step), then, when sampling only, the warpers:
//! temperature, top-k, top-p, min-p. Removed tokens get `-inf`, as in Hugging Face.

use seqcore::{Error, Result};

use crate::ops::{self, softmax};

/// The logits processors of one decoding run (all off by default).
#[derive(Clone, Copy, Debug)]
pub struct Processors<'a> {
    /// CTRL's repetition penalty (Keskar et al. 2019, eq. in section 4.1; Hugging Face
    /// `repetition_penalty`): a token already in the hypothesis (prompt included) has its score
    /// divided by the penalty when positive, multiplied when negative. 1 is off; must be > 0.
    pub repetition_penalty: f32,
    /// OpenAI's presence penalty: subtracted once from a token generated at least once (the
    /// prompt excluded). 0 is off.
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty: subtracted once per earlier generation of a token. 0 is off.
    pub frequency_penalty: f32,
    /// Hugging Face `no_repeat_ngram_size`: a token that would complete an n-gram already in the
    /// hypothesis (prompt included) is banned. 0 is off.
    pub no_repeat_ngram_size: usize,
    /// Tokens never generated (`bad_words_ids` of single tokens, `suppress_tokens`).
    pub banned: &'a [u32],
    /// Sampling without replacement: a token already generated (the prompt excluded) is banned
    /// (not in Hugging Face). Like every processor it acts after the log-softmax in beam search,
    /// so it does not renormalise; pointer decoding masks before the softmax instead.
    pub without_replacement: bool,
    /// `(step, token)`: at generated position `step` only `token` may come (score 0, every other
    /// `-inf`, as `ForcedBOSTokenLogitsProcessor`).
    pub forced: &'a [(usize, u32)],
    /// Hugging Face `min_new_tokens`: EOS is banned while fewer tokens were generated.
    pub min_new_tokens: usize,
    /// Sampling temperature (Hugging Face `temperature`): logits divided by it; must be > 0.
    pub temperature: f32,
    /// Hugging Face `top_k`: keep the `k` largest (and every token tied with the `k`-th). 0 is off.
    pub top_k: usize,
    /// Nucleus sampling (Holtzman et al. 2020; Hugging Face `top_p`): keep the smallest set of
    /// largest tokens whose probability reaches `top_p`; in `(0, 1]`, 1 is off.
    pub top_p: f32,
    /// Hugging Face `min_p`: keep tokens whose probability is at least `min_p` times the largest;
    /// in `[0, 1]`, 0 is off.
    pub min_p: f32,
}

impl Default for Processors<'_> {
    fn default() -> Self {
        Self {
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            no_repeat_ngram_size: 0,
            banned: &[],
            without_replacement: false,
            forced: &[],
            min_new_tokens: 0,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
        }
    }
}

/// Scratch the processors need for a vocabulary of `vocab`: `vocab` f32 and `vocab` u32.
pub const fn scratch_len(vocab: usize) -> usize {
    vocab
}

fn param(arg: &'static str, reason: &'static str) -> Error {
    Error::Param { arg, reason }
}

impl Processors<'_> {
    /// Checks every parameter against the vocabulary size and the EOS token.
    ///
    /// # Errors
    /// [`Error::Param`] naming the parameter: a temperature that is not finite and positive,
    /// `top_p` outside `(0, 1]`, `min_p` outside `[0, 1]`, a repetition penalty that is not finite
    /// and positive, a non-finite presence or frequency penalty, a banned or forced token outside
    /// the vocabulary.
    pub fn validate(&self, vocab: usize) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(param("temperature", "must be finite and positive"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(param("top_p", "must lie in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(param("min_p", "must lie in [0, 1]"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(param("repetition_penalty", "must be finite and positive"));
        }
        if !self.presence_penalty.is_finite() {
            return Err(param("presence_penalty", "must be finite"));
        }
        if !self.frequency_penalty.is_finite() {
            return Err(param("frequency_penalty", "must be finite"));
        }
        let inside = |t: u32| usize::try_from(t).is_ok_and(|t| t < vocab);
        if !self.banned.iter().all(|&t| inside(t)) {
            return Err(param("banned", "holds a token outside the vocabulary"));
        }
        if !self.forced.iter().all(|&(_, t)| inside(t)) {
            return Err(param("forced", "holds a token outside the vocabulary"));
        }
        Ok(())
    }

    /// Whether any warper (temperature, top-k, top-p, min-p) is on.
    pub fn warps(&self) -> bool {
        self.temperature != 1.0 || self.top_k != 0 || self.top_p < 1.0 || self.min_p > 0.0
    }

    /// Applies the processors to one row of scores (`row [V]`) of the hypothesis `tokens` (prompt
    /// of `prompt_len` tokens first), in Hugging Face's order; the warpers only when `sampling`.
    /// `counts` (u32) and `probs` (f32) are scratch of at least `V` elements.
    ///
    /// # Errors
    /// [`Error::Capacity`] naming `scratch` when it is too short; [`Error::Param`] naming
    /// `tokens` when a token is outside the vocabulary.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        tokens: &[u32],
        prompt_len: usize,
        eos: Option<u32>,
        sampling: bool,
        row: &mut [f32],
        counts: &mut [u32],
        probs: &mut [f32],
    ) -> Result<()> {
        let v = row.len();
        let (cl, pl) = (counts.len(), probs.len());
        let counts = counts.get_mut(..v).ok_or(Error::Capacity {
            arg: "scratch",
            needed: v,
            capacity: cl,
        })?;
        let probs = probs.get_mut(..v).ok_or(Error::Capacity {
            arg: "scratch",
            needed: v,
            capacity: pl,
        })?;
        let generated = tokens.get(prompt_len..).unwrap_or(&[]);
        let bad_token = || param("tokens", "holds a token outside the vocabulary");
        if self.repetition_penalty != 1.0 {
            counts.fill(0);
            for &t in tokens {
                let i = usize::try_from(t).map_err(|_| bad_token())?;
                let (Some(c), Some(s)) = (counts.get_mut(i), row.get_mut(i)) else {
                    return Err(bad_token());
                };
                if *c == 0 {
                    *c = 1;
                    *s = if *s < 0.0 {
                        *s * self.repetition_penalty
                    } else {
                        *s / self.repetition_penalty
                    };
                }
            }
        }
        if self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 {
            counts.fill(0);
            for &t in generated {
                let i = usize::try_from(t).map_err(|_| bad_token())?;
                let c = counts.get_mut(i).ok_or_else(bad_token)?;
                *c = c.saturating_add(1);
            }
            for (s, &c) in row.iter_mut().zip(counts.iter()) {
                if c > 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let f = c as f32;
                    *s -= self.presence_penalty + self.frequency_penalty * f;
                }
            }
        }
        let n = self.no_repeat_ngram_size;
        if n > 0 && tokens.len() + 1 >= n {
            // the last n-1 tokens, and every earlier n-gram starting with them
            let start = tokens.len() + 1 - n;
            let tail = tokens.get(start..).unwrap_or(&[]);
            for w in tokens.windows(n) {
                if let Some((last, head)) = w.split_last() {
                    if head == tail {
                        let i = usize::try_from(*last).map_err(|_| bad_token())?;
                        *row.get_mut(i).ok_or_else(bad_token)? = f32::NEG_INFINITY;
                    }
                }
            }
        }
        if self.without_replacement {
            for &t in generated {
                let i = usize::try_from(t).map_err(|_| bad_token())?;
                *row.get_mut(i).ok_or_else(bad_token)? = f32::NEG_INFINITY;
            }
        }
        for &t in self.banned {
            if let Some(s) = usize::try_from(t).ok().and_then(|i| row.get_mut(i)) {
                *s = f32::NEG_INFINITY;
            }
        }
        if generated.len() < self.min_new_tokens {
            if let Some(s) = eos
                .and_then(|e| usize::try_from(e).ok())
                .and_then(|i| row.get_mut(i))
            {
                *s = f32::NEG_INFINITY;
            }
        }
        for &(step, t) in self.forced {
            if step == generated.len() {
                row.fill(f32::NEG_INFINITY);
                if let Some(s) = usize::try_from(t).ok().and_then(|i| row.get_mut(i)) {
                    *s = 0.0;
                }
            }
        }
        if !sampling {
            return Ok(());
        }
        if self.temperature != 1.0 {
            for s in row.iter_mut() {
                *s /= self.temperature;
            }
        }
        if self.top_k != 0 {
            top_k(row, self.top_k, probs);
        }
        if self.top_p < 1.0 {
            top_p(row, self.top_p, probs, counts)?;
        }
        if self.min_p > 0.0 {
            min_p(row, self.min_p, probs);
        }
        Ok(())
    }
}

/// Hugging Face `TopKLogitsWarper` (`min_tokens_to_keep` 1): scores below the `k`-th largest
/// become `-inf`; ties with the `k`-th stay.
pub(crate) fn top_k(row: &mut [f32], k: usize, scratch: &mut [f32]) {
    let k = k.min(row.len());
    let Some(tmp) = scratch.get_mut(..row.len()) else {
        return;
    };
    if k == 0 || k == row.len() {
        return;
    }
    tmp.copy_from_slice(row);
    let (_, kth, _) = tmp.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let kth = *kth;
    for s in row.iter_mut() {
        if *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Hugging Face `TopPLogitsWarper` (`min_tokens_to_keep` 1): sort ascending, remove the tokens
/// whose cumulative probability is at most `1 - top_p`, keep the largest. Among equal scores the
/// higher token id sorts first (is removed first): ties go to the lower id.
pub(crate) fn top_p(row: &mut [f32], p: f32, probs: &mut [f32], order: &mut [u32]) -> Result<()> {
    let v = row.len();
    let capacity = probs.len().min(order.len());
    let (Some(probs), Some(order)) = (probs.get_mut(..v), order.get_mut(..v)) else {
        return Err(Error::Capacity {
            arg: "scratch",
            needed: v,
            capacity,
        });
    };
    probs.copy_from_slice(row);
    softmax(probs);
    for (i, o) in order.iter_mut().enumerate() {
        *o = crate::workspace::tok(i)?;
    }
    let key = |i: u32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| row.get(i))
            .copied()
            .unwrap_or(f32::NEG_INFINITY)
    };
    order.sort_unstable_by(|&a, &b| key(a).total_cmp(&key(b)).then(b.cmp(&a)));
    let threshold = 1.0 - f64::from(p);
    let mut cum = 0.0f64;
    let last = v.saturating_sub(1);
    for (rank, &i) in order.iter().enumerate() {
        let i = usize::try_from(i).map_err(|_| Error::Overflow { arg: "vocab" })?;
        cum += f64::from(probs.get(i).copied().unwrap_or(0.0));
        if cum <= threshold && rank < last {
            if let Some(s) = row.get_mut(i) {
                *s = f32::NEG_INFINITY;
            }
        } else {
            break;
        }
    }
    Ok(())
}

/// Hugging Face `MinPLogitsWarper` (`min_tokens_to_keep` 1): remove tokens whose probability is
/// below `min_p` times the largest probability.
pub(crate) fn min_p(row: &mut [f32], p: f32, probs: &mut [f32]) {
    let Some(probs) = probs.get_mut(..row.len()) else {
        return;
    };
    probs.copy_from_slice(row);
    softmax(probs);
    let top = ops::max(probs);
    let floor = p * top;
    for (s, &q) in row.iter_mut().zip(probs.iter()) {
        if q < floor {
            *s = f32::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_bad_parameters() {
        let ok = Processors::default();
        assert!(ok.validate(4).is_ok());
        let t = Processors {
            temperature: -1.0,
            ..ok
        };
        assert!(matches!(
            t.validate(4),
            Err(Error::Param {
                arg: "temperature",
                ..
            })
        ));
        for p in [0.0, -0.1, 1.5, f32::NAN] {
            let t = Processors { top_p: p, ..ok };
            assert!(matches!(
                t.validate(4),
                Err(Error::Param { arg: "top_p", .. })
            ));
        }
        let t = Processors { banned: &[4], ..ok };
        assert!(matches!(
            t.validate(4),
            Err(Error::Param { arg: "banned", .. })
        ));
    }

    #[test]
    fn repetition_penalty_as_ctrl() {
        let p = Processors {
            repetition_penalty: 2.0,
            ..Processors::default()
        };
        let mut row = [1.0, -1.0, 4.0];
        let (mut c, mut f) = ([0; 3], [0.0; 3]);
        p.apply(&[0, 1, 0], 1, None, false, &mut row, &mut c, &mut f)
            .unwrap();
        assert_eq!(row, [0.5, -2.0, 4.0]);
    }

    #[test]
    fn presence_frequency_forced_min_new_tokens() {
        let p = Processors {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..Processors::default()
        };
        let mut row = [0.0; 4];
        let (mut c, mut f) = ([0; 4], [0.0; 4]);
        // prompt [3] is not counted; generated 1, 1, 2
        p.apply(&[3, 1, 1, 2], 1, None, false, &mut row, &mut c, &mut f)
            .unwrap();
        assert_eq!(row, [0.0, -1.0, -0.75, 0.0]);
        let p = Processors {
            forced: &[(1, 2)],
            min_new_tokens: 3,
            ..Processors::default()
        };
        let mut row = [1.0; 4];
        p.apply(&[3, 0], 1, Some(1), false, &mut row, &mut c, &mut f)
            .unwrap();
        assert_eq!(
            row,
            [f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]
        );
        let mut row = [1.0; 4];
        p.apply(&[3, 0, 0], 1, Some(1), false, &mut row, &mut c, &mut f)
            .unwrap();
        assert_eq!(row, [1.0, f32::NEG_INFINITY, 1.0, 1.0]);
    }

    #[test]
    fn no_repeat_ngram_bans_completion() {
        let p = Processors {
            no_repeat_ngram_size: 2,
            ..Processors::default()
        };
        let mut row = [0.0; 4];
        let (mut c, mut f) = ([0; 4], [0.0; 4]);
        // bigrams (1,2), (2,1): last token 1 -> token 2 banned
        p.apply(&[1, 2, 1], 0, None, false, &mut row, &mut c, &mut f)
            .unwrap();
        assert_eq!(row, [0.0, 0.0, f32::NEG_INFINITY, 0.0]);
    }
}
