//! Diverse beam search (Vijayakumar et al., "Diverse Beam Search", AAAI 2018, eq. 4 with the
//! Hamming diversity of section 4), exactly as Hugging Face's group beam search
//! (`GenerationMixin._group_beam_search` with `BeamSearchScorer` / `BeamHypotheses` and
//! `HammingDiversityLogitsProcessor`, transformers 4.55).
//!
//! The beams split into `groups` groups of `beams / groups`. Each step runs the model on every
//! beam, then the groups in order: a group's log-probabilities lose `diversity_penalty` times the
//! number of times each token was chosen by the earlier groups *at this step*, then the usual
//! processors, plus the beam scores; its `2 * group_size` best candidates feed that group's own
//! hypothesis pool (an EOS candidate is kept only when it ranks among the first `group_size`) and
//! its running beams. A group is done when its pool is full and (by `early_stopping`) no running
//! beam can beat its worst hypothesis; its beams then carry the pad token (EOS), which later groups
//! see in the Hamming count, as in Hugging Face. At the end the groups' pools are merged and the
//! `num_return` best returned. With one group Hugging Face's `generate` runs its plain beam search;
//! [`DiverseBeamSearch::run`] does the same ([`DiverseBeamSearch::run_grouped`] runs the group
//! code for any number of groups).
//!
//! The paper's own rule is the same per-step objective (log-probability minus lambda times the
//! Hamming diversity against earlier groups at this time step); its reference code differs only
//! in bookkeeping of finished hypotheses, which Hugging Face's version defines here.

use seqcore::{Error, Result};

use crate::beam::{BeamSearch, DEAD, EarlyStopping, NBest, check_common, check_out, length_pow};
use crate::model::{Hypotheses, LanguageModel};
use crate::ops::{check_logits, log_softmax, top_k};
use crate::processors::Processors;
use crate::rows::{at, at_mut, ix, row, row_mut};
use crate::workspace::{Workspace, WorkspaceLen, add, mul, take, tok};

/// Diverse (group) beam search configuration (Hugging Face `generate` with `num_beams`,
/// `num_beam_groups`, `diversity_penalty`).
#[derive(Clone, Copy, Debug)]
pub struct DiverseBeamSearch<'a> {
    /// `num_beams` (at least 1).
    pub beams: usize,
    /// `num_beam_groups` (divides `beams`).
    pub groups: usize,
    /// `diversity_penalty` (lambda of the paper; finite, 0 makes the groups independent).
    pub diversity_penalty: f32,
    /// `max_new_tokens` (at least 1).
    pub max_new_tokens: usize,
    /// `eos_token_id`, if any (also the pad token of done groups).
    pub eos: Option<u32>,
    /// `length_penalty`.
    pub length_penalty: f64,
    /// `early_stopping`.
    pub early_stopping: EarlyStopping,
    /// `num_return_sequences` (1 to `beams`).
    pub num_return: usize,
    /// Logits processors, after the Hamming diversity (Hugging Face's order).
    pub processors: Processors<'a>,
}

impl Default for DiverseBeamSearch<'_> {
    fn default() -> Self {
        Self {
            beams: 1,
            groups: 1,
            diversity_penalty: 0.0,
            max_new_tokens: 1,
            eos: None,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
            num_return: 1,
            processors: Processors::default(),
        }
    }
}

/// One group's pool of finished hypotheses (Hugging Face's `BeamHypotheses`), over caller memory.
struct Pool<'w> {
    rows: &'w mut [u32],
    sums: &'w mut [f32],
    lens: &'w mut [u32],
    eos: &'w mut [u32],
    n: usize,
    cap: usize,
    stride: usize,
    lp: f64,
}

impl Pool<'_> {
    fn score(&self, j: usize) -> Result<f64> {
        let len = ix(at(self.lens, j)?)?;
        Ok(f64::from(at(self.sums, j)?) / length_pow(len, self.lp))
    }

    /// Hugging Face's `worst_score`: the lowest score held, 1e9 when empty.
    fn worst(&self) -> Result<f64> {
        let mut w = 1.0e9f64;
        for j in 0..self.n {
            w = w.min(self.score(j)?);
        }
        Ok(w)
    }

    /// `BeamHypotheses.add`.
    fn add(&mut self, tokens: &[u32], gen_len: usize, eos: bool, sum: f32) -> Result<()> {
        let score = f64::from(sum) / length_pow(gen_len, self.lp);
        if self.n < self.cap || score > self.worst()? {
            let j = self.n;
            let dst = row_mut(self.rows, j, self.stride)?;
            dst.fill(0);
            dst.get_mut(..tokens.len())
                .ok_or(Error::Overflow { arg: "tokens" })?
                .copy_from_slice(tokens);
            *at_mut(self.sums, j)? = sum;
            *at_mut(self.lens, j)? = tok(gen_len)?;
            *at_mut(self.eos, j)? = u32::from(eos);
            self.n += 1;
            if self.n > self.cap {
                // delete the lowest score, the earliest among ties
                let mut del = 0;
                let mut lo = f64::INFINITY;
                for i in 0..self.n {
                    let s = self.score(i)?;
                    if s < lo {
                        lo = s;
                        del = i;
                    }
                }
                let s = self.stride;
                self.rows
                    .get_mut(del * s..self.n * s)
                    .ok_or(Error::Overflow { arg: "pool" })?
                    .rotate_left(s);
                for buf in [&mut *self.lens, &mut *self.eos] {
                    buf.get_mut(del..self.n)
                        .ok_or(Error::Overflow { arg: "pool" })?
                        .rotate_left(1);
                }
                self.sums
                    .get_mut(del..self.n)
                    .ok_or(Error::Overflow { arg: "pool" })?
                    .rotate_left(1);
                self.n -= 1;
            }
        }
        Ok(())
    }

    /// `BeamHypotheses.is_done`.
    #[allow(clippy::too_many_arguments)]
    fn is_done(
        &self,
        best_sum: f32,
        cur_len: usize,
        prompt_len: usize,
        max_length: usize,
        early: EarlyStopping,
    ) -> Result<bool> {
        if self.n < self.cap {
            return Ok(false);
        }
        let best = f64::from(best_sum);
        let highest = match early {
            EarlyStopping::True => return Ok(true),
            EarlyStopping::Never if self.lp > 0.0 => {
                best / length_pow(max_length - prompt_len, self.lp)
            }
            _ => best / length_pow(cur_len - prompt_len, self.lp),
        };
        Ok(self.worst()? >= highest)
    }
}

impl DiverseBeamSearch<'_> {
    fn group_size(&self) -> usize {
        self.beams / self.groups.max(1)
    }

    fn as_beam_search(&self) -> BeamSearch<'_> {
        BeamSearch {
            beams: self.beams,
            max_new_tokens: self.max_new_tokens,
            eos: self.eos,
            length_penalty: self.length_penalty,
            early_stopping: self.early_stopping,
            num_return: self.num_return,
            processors: self.processors,
        }
    }

    fn validate(&self, vocab: usize, prompt: &[u32]) -> Result<()> {
        check_common(
            self.beams,
            self.max_new_tokens,
            self.eos,
            self.length_penalty,
            self.num_return,
            vocab,
            prompt,
        )?;
        if self.groups == 0 || self.beams % self.groups != 0 {
            return Err(Error::Param {
                arg: "groups",
                reason: "must divide the number of beams",
            });
        }
        if !self.diversity_penalty.is_finite() {
            return Err(Error::Param {
                arg: "diversity_penalty",
                reason: "must be finite",
            });
        }
        if 2 * self.group_size() > mul(self.group_size(), vocab, "vocab")? {
            return Err(Error::Param {
                arg: "vocab",
                reason: "must hold at least 2 tokens for beam search (2 x group size candidates)",
            });
        }
        self.processors.validate(vocab)
    }

    /// Scratch for a vocabulary of `vocab` and a prompt of `prompt_len` tokens (enough for
    /// [`DiverseBeamSearch::run`] and [`DiverseBeamSearch::run_grouped`]).
    ///
    /// # Errors
    /// [`Error::Overflow`] when the sizes overflow `usize`.
    pub fn workspace_len(&self, vocab: usize, prompt_len: usize) -> Result<WorkspaceLen> {
        let b = self.beams;
        let g = self.groups.max(1);
        let gs = self.group_size();
        let s = add(prompt_len, self.max_new_tokens, "max_new_tokens")?;
        let pool = mul(g, gs + 1, "beams")?;
        let f32s = [mul(b, vocab, "vocab")?, vocab, 2 * gs, b, pool, b]
            .iter()
            .try_fold(0usize, |a, &x| add(a, x, "workspace"))?;
        let rows = mul(b, s, "max_new_tokens")?;
        let u32s = [
            rows,
            rows,
            mul(pool, s, "max_new_tokens")?,
            pool,
            pool,
            pool,
            g,
            vocab,
            2 * gs,
            b,
            b,
            b,
            b,
        ]
        .iter()
        .try_fold(0usize, |a, &x| add(a, x, "workspace"))?;
        let grouped = WorkspaceLen { f32s, u32s };
        let plain = self.as_beam_search().workspace_len(vocab, prompt_len)?;
        Ok(WorkspaceLen {
            f32s: grouped.f32s.max(plain.f32s),
            u32s: grouped.u32s.max(plain.u32s),
        })
    }

    /// Runs as Hugging Face's `generate`: group beam search when `groups > 1`, plain
    /// [`BeamSearch`] when `groups == 1`. Allocates nothing.
    ///
    /// # Errors
    /// As [`DiverseBeamSearch::run_grouped`].
    pub fn run<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
        ws: Workspace<'_>,
        out: NBest<'_>,
    ) -> Result<()> {
        self.validate(model.vocab_size(), prompt)?;
        if self.groups == 1 {
            return self.as_beam_search().run(model, prompt, ws, out);
        }
        self.run_grouped(model, prompt, ws, out)
    }

    /// Hugging Face's `_group_beam_search` for any number of groups (one included).
    ///
    /// # Errors
    /// [`Error::Param`] naming the argument: `beams` 0, `groups` not dividing `beams`, a
    /// non-finite `diversity_penalty` or `length_penalty`, `num_return` outside `1..=beams`,
    /// `eos` or a prompt token outside the vocabulary, `logits` with NaN or `+inf`;
    /// [`Error::Capacity`] when `ws` or `out` is too small; the model's errors.
    #[allow(clippy::too_many_lines)]
    pub fn run_grouped<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
        ws: Workspace<'_>,
        out: NBest<'_>,
    ) -> Result<()> {
        let v = model.vocab_size();
        self.validate(v, prompt)?;
        check_out(&out, self.num_return, self.max_new_tokens)?;
        let (b, g, gs) = (self.beams, self.groups, self.group_size());
        let k = 2 * gs;
        let p = prompt.len();
        let s = p + self.max_new_tokens;
        let max_length = s;
        let pad = self.eos.unwrap_or(0);
        let Workspace { mut f32s, mut u32s } = ws;
        let acc = take(&mut f32s, b * v, "workspace")?;
        let probs = take(&mut f32s, v, "workspace")?;
        let top_v = take(&mut f32s, k, "workspace")?;
        let scores = take(&mut f32s, b, "workspace")?;
        let pool_sums = take(&mut f32s, g * (gs + 1), "workspace")?;
        let next_scores = take(&mut f32s, b, "workspace")?;
        let rows = take(&mut u32s, b * s, "workspace")?;
        let tmp = take(&mut u32s, b * s, "workspace")?;
        let pool_rows = take(&mut u32s, g * (gs + 1) * s, "workspace")?;
        let pool_lens = take(&mut u32s, g * (gs + 1), "workspace")?;
        let pool_eos = take(&mut u32s, g * (gs + 1), "workspace")?;
        let used = take(&mut u32s, g * (gs + 1), "workspace")?;
        let done = take(&mut u32s, g, "workspace")?;
        let counts = take(&mut u32s, v, "workspace")?;
        let top_i = take(&mut u32s, k, "workspace")?;
        let current = take(&mut u32s, b, "workspace")?;
        let reorder = take(&mut u32s, b, "workspace")?;
        let next_tokens = take(&mut u32s, b, "workspace")?;
        let next_parents = take(&mut u32s, b, "workspace")?;

        // pools, one per group, over disjoint pieces of the scratch
        let mut pools = PoolSet {
            rows: pool_rows,
            sums: pool_sums,
            lens: pool_lens,
            eos: pool_eos,
            n: [0; MAX_GROUPS_INLINE],
        };
        if g > MAX_GROUPS_INLINE {
            return Err(Error::Capacity {
                arg: "groups",
                needed: g,
                capacity: MAX_GROUPS_INLINE,
            });
        }
        for i in 0..b {
            let r = row_mut(rows, i, s)?;
            r.fill(0);
            r.get_mut(..p)
                .ok_or(Error::Overflow { arg: "prompt" })?
                .copy_from_slice(prompt);
        }
        scores.fill(DEAD);
        for grp in 0..g {
            *at_mut(scores, grp * gs)? = 0.0;
        }
        done.fill(0);
        counts.fill(0);
        let mut cur = p;
        loop {
            let hyps = Hypotheses::new(rows, b, cur, s, p)?;
            model.logits(hyps, acc)?;
            check_logits(acc)?;
            current.fill(0);
            for grp in 0..g {
                let lo = grp * gs;
                for r in lo..lo + gs {
                    let x = row_mut(acc, r, v)?;
                    log_softmax(x);
                    if grp > 0 && self.diversity_penalty != 0.0 {
                        hamming(
                            x,
                            current.get(..lo).unwrap_or(&[]),
                            self.diversity_penalty,
                            counts,
                        )?;
                    }
                    self.processors.apply(
                        row(rows, r, s)?.get(..cur).unwrap_or(&[]),
                        p,
                        self.eos,
                        false,
                        x,
                        counts,
                        probs,
                    )?;
                    let base = at(scores, r)?;
                    for y in x.iter_mut() {
                        *y += base;
                    }
                }
                let cands = acc
                    .get(lo * v..(lo + gs) * v)
                    .ok_or(Error::Overflow { arg: "beams" })?;
                top_k(cands, top_v, top_i)?;
                // BeamSearchScorer.process
                if at(done, grp)? != 0 {
                    for j in 0..gs {
                        *at_mut(next_scores, lo + j)? = 0.0;
                        *at_mut(next_tokens, lo + j)? = pad;
                        *at_mut(next_parents, lo + j)? = 0;
                    }
                } else {
                    let mut filled = 0;
                    for rank in 0..k {
                        let flat = ix(at(top_i, rank)?)?;
                        let (parent, t) = (flat / v, tok(flat % v)?);
                        let score = at(top_v, rank)?;
                        if Some(t) == self.eos {
                            if rank >= gs {
                                continue;
                            }
                            let src = row(rows, lo + parent, s)?
                                .get(..cur)
                                .ok_or(Error::Overflow { arg: "rows" })?;
                            pools.add(
                                grp,
                                gs,
                                s,
                                self.length_penalty,
                                src,
                                cur + 1 - p,
                                true,
                                score,
                            )?;
                        } else {
                            *at_mut(next_scores, lo + filled)? = score;
                            *at_mut(next_tokens, lo + filled)? = t;
                            *at_mut(next_parents, lo + filled)? = tok(parent)?;
                            filled += 1;
                        }
                        if filled == gs {
                            break;
                        }
                    }
                    let best = at(top_v, 0)?;
                    let fin = pools.pool(grp, gs, s, self.length_penalty).is_done(
                        best,
                        cur + 1,
                        p,
                        max_length,
                        self.early_stopping,
                    )?;
                    if fin {
                        *at_mut(done, grp)? = 1;
                    }
                }
                // reorder the group's rows, record its tokens
                for j in 0..gs {
                    let par = ix(at(next_parents, lo + j)?)?;
                    row_mut(tmp, j, s)?.copy_from_slice(row(rows, lo + par, s)?);
                    *at_mut(reorder, lo + j)? = tok(lo + par)?;
                }
                for j in 0..gs {
                    let src = row(tmp, j, s)?;
                    let len = src.len();
                    let dst = row_mut(rows, lo + j, s)?;
                    dst.get_mut(..len)
                        .ok_or(Error::Overflow { arg: "rows" })?
                        .copy_from_slice(src);
                    *at_mut(scores, lo + j)? = at(next_scores, lo + j)?;
                    *at_mut(current, lo + j)? = at(next_tokens, lo + j)?;
                }
            }
            for i in 0..b {
                *at_mut(row_mut(rows, i, s)?, cur)? = at(current, i)?;
            }
            model.reorder(reorder)?;
            cur += 1;
            if done.iter().all(|&d| d != 0) || cur >= max_length {
                break;
            }
        }
        // finalize: groups not done add their running beams
        for grp in 0..g {
            if at(done, grp)? != 0 {
                continue;
            }
            for j in 0..gs {
                let r = grp * gs + j;
                let src = row(rows, r, s)?
                    .get(..cur)
                    .ok_or(Error::Overflow { arg: "rows" })?;
                let sum = at(scores, r)?;
                pools.add(grp, gs, s, self.length_penalty, src, cur - p, false, sum)?;
            }
        }
        // the best `num_return` over all pools: Python's stable sort, popped from the end
        used.fill(0);
        let NBest {
            tokens,
            lengths,
            scores: out_scores,
        } = out;
        let w = self.max_new_tokens;
        for r in 0..self.num_return {
            let mut best: Option<(usize, usize, f64)> = None;
            for grp in 0..g {
                let pool = pools.pool(grp, gs, s, self.length_penalty);
                for j in 0..pool.n {
                    if at(used, grp * (gs + 1) + j)? != 0 {
                        continue;
                    }
                    let sc = pool.score(j)?;
                    if best.is_none_or(|(_, _, b)| sc >= b) {
                        best = Some((grp, j, sc));
                    }
                }
            }
            let Some((grp, j, sc)) = best else {
                return Err(Error::Capacity {
                    arg: "num_return",
                    needed: self.num_return,
                    capacity: r,
                });
            };
            *at_mut(used, grp * (gs + 1) + j)? = 1;
            let pool = pools.pool(grp, gs, s, self.length_penalty);
            let glen = ix(at(pool.lens, j)?)?;
            let with_eos = at(pool.eos, j)? != 0;
            let hyp = row(pool.rows, j, s)?;
            let (body_len, len) = if with_eos {
                (glen - 1, glen)
            } else {
                (glen, glen)
            };
            let dst = row_mut(tokens, r, w)?;
            dst.get_mut(..body_len)
                .ok_or(Error::Overflow { arg: "lengths" })?
                .copy_from_slice(
                    hyp.get(p..p + body_len)
                        .ok_or(Error::Overflow { arg: "lengths" })?,
                );
            if with_eos {
                *at_mut(dst, body_len)? = pad;
            }
            *at_mut(lengths, r)? = len;
            #[allow(clippy::cast_possible_truncation)]
            let score = sc as f32;
            *at_mut(out_scores, r)? = score;
        }
        Ok(())
    }

    /// The `alloc` API: [`DiverseBeamSearch::run`] on heap scratch.
    ///
    /// # Errors
    /// As [`DiverseBeamSearch::run`].
    #[cfg(feature = "alloc")]
    pub fn generate<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
    ) -> Result<alloc::vec::Vec<crate::beam::Hypothesis>> {
        self.generate_with(model, prompt, false)
    }

    /// The `alloc` API of [`DiverseBeamSearch::run_grouped`].
    ///
    /// # Errors
    /// As [`DiverseBeamSearch::run_grouped`].
    #[cfg(feature = "alloc")]
    pub fn generate_grouped<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
    ) -> Result<alloc::vec::Vec<crate::beam::Hypothesis>> {
        self.generate_with(model, prompt, true)
    }

    #[cfg(feature = "alloc")]
    fn generate_with<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
        grouped: bool,
    ) -> Result<alloc::vec::Vec<crate::beam::Hypothesis>> {
        self.validate(model.vocab_size(), prompt)?;
        let len = self.workspace_len(model.vocab_size(), prompt.len())?;
        let mut ws = crate::workspace::WorkspaceBuf::try_new(len)?;
        let n = self.num_return;
        let mut tokens = crate::workspace::try_vec(n.saturating_mul(self.max_new_tokens), 0u32)?;
        let mut lengths = crate::workspace::try_vec(n, 0usize)?;
        let mut scores = crate::workspace::try_vec(n, 0f32)?;
        let out = NBest {
            tokens: &mut tokens,
            lengths: &mut lengths,
            scores: &mut scores,
        };
        if grouped {
            self.run_grouped(model, prompt, ws.workspace(), out)?;
        } else {
            self.run(model, prompt, ws.workspace(), out)?;
        }
        Ok(crate::beam::collect(
            &tokens,
            &lengths,
            &scores,
            self.max_new_tokens,
        ))
    }
}

/// Most groups [`DiverseBeamSearch::run_grouped`] tracks (pool sizes live on the stack).
pub const MAX_GROUPS_INLINE: usize = 64;

/// Every group's pool over one piece of scratch.
struct PoolSet<'w> {
    rows: &'w mut [u32],
    sums: &'w mut [f32],
    lens: &'w mut [u32],
    eos: &'w mut [u32],
    n: [usize; MAX_GROUPS_INLINE],
}

impl PoolSet<'_> {
    fn pool(&mut self, grp: usize, gs: usize, s: usize, lp: f64) -> Pool<'_> {
        let c = gs + 1;
        let n = self.n.get(grp).copied().unwrap_or(0);
        Pool {
            rows: self
                .rows
                .get_mut(grp * c * s..(grp + 1) * c * s)
                .unwrap_or(&mut []),
            sums: self.sums.get_mut(grp * c..(grp + 1) * c).unwrap_or(&mut []),
            lens: self.lens.get_mut(grp * c..(grp + 1) * c).unwrap_or(&mut []),
            eos: self.eos.get_mut(grp * c..(grp + 1) * c).unwrap_or(&mut []),
            n,
            cap: gs,
            stride: s,
            lp,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        grp: usize,
        gs: usize,
        s: usize,
        lp: f64,
        tokens: &[u32],
        gen_len: usize,
        eos: bool,
        sum: f32,
    ) -> Result<()> {
        let mut pool = self.pool(grp, gs, s, lp);
        pool.add(tokens, gen_len, eos, sum)?;
        let n = pool.n;
        *at_mut(&mut self.n, grp)? = n;
        Ok(())
    }
}

/// Hugging Face's `HammingDiversityLogitsProcessor` on one row: each token loses `penalty` times
/// the number of times the earlier groups chose it at this step (`penalty * count` in float32).
fn hamming(row: &mut [f32], previous: &[u32], penalty: f32, counts: &mut [u32]) -> Result<()> {
    for &t in previous {
        let c = at_mut(counts, ix(t)?)?;
        *c += 1;
    }
    for &t in previous {
        let i = ix(t)?;
        let c = at(counts, i)?;
        if c > 0 {
            #[allow(clippy::cast_precision_loss)]
            let f = c as f32;
            *at_mut(row, i)? -= penalty * f;
            *at_mut(counts, i)? = 0;
        }
    }
    Ok(())
}
