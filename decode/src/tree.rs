//! Tree search over completions (best-first expansion scored by the model's confidence, as the
//! LLM tree-search decoders of "LLM Tree Search" / "To Backtrack or Not to Backtrack" use it):
//! a node is a prefix with its summed log-probability; each step pops the most confident open
//! node, spends one model call on it, and opens its `branch` best children (ties to the lower
//! token). A child that ends in EOS, or reaches `max_new_tokens`, is a completion. The search ends
//! when `n` completions are found, the budget of model calls is spent, or the node arena is full;
//! it returns the completions in the order found.
//!
//! Log-probabilities are at most 0, so summed scores never grow along a path: best-first is then
//! uniform-cost search, and the completions come out in order of probability. With a budget and
//! arena large enough to hold every open node and `branch = V`, the first `n` completions are the
//! `n` most probable sequences, exactly (the property the tests check against exhaustive search).
//! The completions are distinct (each is a different leaf of the tree).

use seqcore::{Error, Result};

use crate::model::{Hypotheses, LanguageModel};
use crate::ops::{check_logits, log_softmax, top_k};
use crate::rows::{at, at_mut, ix};
use crate::workspace::{Workspace, WorkspaceLen, add, mul, take, tok};

/// Tree search configuration.
#[derive(Clone, Copy, Debug)]
pub struct TreeSearch {
    /// Children opened per expansion (1 to `V`).
    pub branch: usize,
    /// Completions wanted.
    pub n: usize,
    /// Model calls allowed.
    pub budget: usize,
    /// Most nodes held (the arena).
    pub max_nodes: usize,
    /// Longest completion.
    pub max_new_tokens: usize,
    /// `eos_token_id`, if any.
    pub eos: Option<u32>,
}

/// What a tree search found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeStats {
    /// Completions written.
    pub found: usize,
    /// Model calls spent.
    pub calls: usize,
}

const OPEN: u32 = 0;
const EXPANDED: u32 = 1;
const DONE: u32 = 2;

impl TreeSearch {
    /// Scratch for a vocabulary of `vocab` and a prompt of `prompt_len` tokens.
    ///
    /// # Errors
    /// [`Error::Overflow`] when the sizes overflow.
    pub fn workspace_len(&self, vocab: usize, prompt_len: usize) -> Result<WorkspaceLen> {
        let s = add(prompt_len, self.max_new_tokens, "max_new_tokens")?;
        Ok(WorkspaceLen {
            f32s: [vocab, self.branch, self.max_nodes]
                .iter()
                .try_fold(0usize, |a, &x| add(a, x, "workspace"))?,
            u32s: [s, self.branch, mul(self.max_nodes, 4, "max_nodes")?]
                .iter()
                .try_fold(0usize, |a, &x| add(a, x, "workspace"))?,
        })
    }

    /// Searches from `prompt`; completion `j` goes to `tokens[j * max_new_tokens..]` (generated
    /// tokens, EOS included), its length to `lengths[j]` and its summed log-probability to
    /// `scores[j]`. Allocates nothing.
    ///
    /// # Errors
    /// [`Error::Param`] naming the argument: `branch` outside `1..=V`, `n`, `budget` or
    /// `max_nodes` 0, `max_new_tokens` 0, `eos` or a prompt token outside the vocabulary, `logits`
    /// with NaN or `+inf`; [`Error::Capacity`] when `ws` or the outputs are too small; the
    /// model's errors.
    pub fn run<M: LanguageModel + ?Sized>(
        &self,
        model: &mut M,
        prompt: &[u32],
        ws: Workspace<'_>,
        out: crate::beam::NBest<'_>,
    ) -> Result<TreeStats> {
        let v = model.vocab_size();
        crate::beam::check_common(1, self.max_new_tokens, self.eos, 0.0, 1, v, prompt)?;
        if self.branch == 0 || self.branch > v {
            return Err(Error::Param {
                arg: "branch",
                reason: "must lie between 1 and the vocabulary size",
            });
        }
        for (arg, x) in [
            ("n", self.n),
            ("budget", self.budget),
            ("max_nodes", self.max_nodes),
        ] {
            if x == 0 {
                return Err(Error::Param {
                    arg,
                    reason: "must be at least 1",
                });
            }
        }
        crate::beam::check_out(&out, self.n, self.max_new_tokens)?;
        let p = prompt.len();
        let s = p + self.max_new_tokens;
        let Workspace { mut f32s, mut u32s } = ws;
        let logits = take(&mut f32s, v, "workspace")?;
        let top_v = take(&mut f32s, self.branch, "workspace")?;
        let score = take(&mut f32s, self.max_nodes, "workspace")?;
        let seq = take(&mut u32s, s, "workspace")?;
        let top_i = take(&mut u32s, self.branch, "workspace")?;
        let parent = take(&mut u32s, self.max_nodes, "workspace")?;
        let token = take(&mut u32s, self.max_nodes, "workspace")?;
        let depth = take(&mut u32s, self.max_nodes, "workspace")?;
        let state = take(&mut u32s, self.max_nodes, "workspace")?;
        seq.get_mut(..p)
            .ok_or(Error::Overflow { arg: "prompt" })?
            .copy_from_slice(prompt);
        // node 0: the prompt
        *at_mut(score, 0)? = 0.0;
        *at_mut(parent, 0)? = u32::MAX;
        *at_mut(depth, 0)? = 0;
        *at_mut(state, 0)? = OPEN;
        let mut nodes = 1usize;
        let (mut found, mut calls) = (0usize, 0usize);
        let crate::beam::NBest {
            tokens,
            lengths,
            scores,
        } = out;
        while found < self.n && calls < self.budget {
            // the most confident open node (lowest index among ties)
            let mut best: Option<(usize, f32)> = None;
            for i in 0..nodes {
                if at(state, i)? == OPEN {
                    let x = at(score, i)?;
                    if best.is_none_or(|(_, b)| x > b) {
                        best = Some((i, x));
                    }
                }
            }
            let Some((node, base)) = best else { break };
            let d = ix(at(depth, node)?)?;
            if at(state, node)? == OPEN && self.completes(node, d, token)? {
                // a completion: write it out
                let w = self.max_new_tokens;
                let mut i = node;
                for k in (0..d).rev() {
                    *at_mut(tokens, found * w + k)? = at(token, i)?;
                    i = ix(at(parent, i)?)?;
                }
                *at_mut(lengths, found)? = d;
                *at_mut(scores, found)? = base;
                *at_mut(state, node)? = DONE;
                found += 1;
                continue;
            }
            // rebuild the prefix and expand
            let mut i = node;
            for k in (0..d).rev() {
                *at_mut(seq, p + k)? = at(token, i)?;
                i = ix(at(parent, i)?)?;
            }
            model.logits(Hypotheses::new(seq, 1, p + d, s, p)?, logits)?;
            calls += 1;
            check_logits(logits)?;
            log_softmax(logits);
            top_k(logits, top_v, top_i)?;
            *at_mut(state, node)? = EXPANDED;
            for c in 0..self.branch {
                let lp = at(top_v, c)?;
                if lp == f32::NEG_INFINITY || nodes >= self.max_nodes {
                    continue;
                }
                *at_mut(score, nodes)? = base + lp;
                *at_mut(parent, nodes)? = tok(node)?;
                *at_mut(token, nodes)? = at(top_i, c)?;
                *at_mut(depth, nodes)? = tok(d + 1)?;
                *at_mut(state, nodes)? = OPEN;
                nodes += 1;
            }
        }
        Ok(TreeStats { found, calls })
    }

    fn completes(&self, node: usize, d: usize, token: &[u32]) -> Result<bool> {
        if node == 0 {
            return Ok(false);
        }
        Ok(d >= self.max_new_tokens || Some(at(token, node)?) == self.eos)
    }
}
