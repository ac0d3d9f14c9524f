//! Pointer decoding (Vinyals et al., "Pointer Networks", NeurIPS 2015, eq. 3: the output
//! distribution is a softmax over the input positions; Vinyals et al., "Order Matters", ICLR 2016,
//! for beam search over pointers).
//!
//! The outputs are input positions `0..n`. The caller's [`PointerScorer`] gives the attention
//! scores `u_j` of every position given the positions chosen so far; with
//! `permutation = true` a chosen position is masked (`-inf`), so the output is a permutation
//! prefix (sorting, TSP tours). Decoding is greedy (one beam) or Hugging Face-exact beam search
//! over the pointers ([`crate::BeamSearch`] on positions).

use seqcore::{Error, Result};

use crate::beam::{BeamSearch, EarlyStopping, NBest};
use crate::model::{Hypotheses, LanguageModel};
use crate::processors::Processors;
use crate::workspace::{Workspace, WorkspaceLen};

/// The caller's pointer network: scores over the `n` input positions.
pub trait PointerScorer {
    /// Number of input positions `n`.
    fn positions(&self) -> usize;

    /// Writes the scores of the `n` positions for each hypothesis into `scores [count, n]`.
    /// Hypothesis `i` chose the positions `chosen.tokens(i)[1..]` so far, in order (its first
    /// token is the start marker `n`).
    ///
    /// # Errors
    /// Whatever the scorer reports.
    fn scores(&mut self, chosen: Hypotheses<'_>, scores: &mut [f32]) -> Result<()>;

    /// Beam `i` now continues beam `parents[i]` (see [`LanguageModel::reorder`]).
    ///
    /// # Errors
    /// Whatever the scorer reports.
    fn reorder(&mut self, parents: &[u32]) -> Result<()> {
        let _ = parents;
        Ok(())
    }
}

/// Pointer decoding configuration.
#[derive(Clone, Copy, Debug)]
pub struct PointerDecoding {
    /// Beams (1: greedy).
    pub beams: usize,
    /// Positions to output (at most `n` with `permutation`).
    pub length: usize,
    /// Mask chosen positions (without replacement).
    pub permutation: bool,
    /// Hypotheses to return (1 to `beams`).
    pub num_return: usize,
}

/// Adapts a [`PointerScorer`] to a [`LanguageModel`] over `n + 1` tokens: the positions, and a
/// start token `n` (the prompt) that is never chosen.
struct Adapter<'s, S: ?Sized> {
    scorer: &'s mut S,
    n: usize,
    permutation: bool,
}

impl<S: PointerScorer + ?Sized> LanguageModel for Adapter<'_, S> {
    fn vocab_size(&self) -> usize {
        self.n + 1
    }

    fn logits(&mut self, hyps: Hypotheses<'_>, logits: &mut [f32]) -> Result<()> {
        let (n, v) = (self.n, self.n + 1);
        let count = hyps.count();
        // score into the front [count * n], then spread rows to stride n + 1 from the back
        let front = logits
            .get_mut(..count * n)
            .ok_or(Error::Overflow { arg: "scores" })?;
        // the scorer sees the chosen positions without the start token
        self.scorer.scores(hyps, front)?;
        for i in (0..count).rev() {
            logits.copy_within(i * n..(i + 1) * n, i * v);
            if let Some(x) = logits.get_mut(i * v + n) {
                *x = f32::NEG_INFINITY;
            }
            // the permutation mask goes before the softmax (eq. 3 over the remaining positions)
            if self.permutation {
                for &j in hyps.tokens(i).get(1..).unwrap_or(&[]) {
                    let j = usize::try_from(j).map_err(|_| Error::Overflow { arg: "positions" })?;
                    if let Some(x) = logits.get_mut(i * v + j) {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(())
    }

    fn reorder(&mut self, parents: &[u32]) -> Result<()> {
        self.scorer.reorder(parents)
    }
}

impl PointerDecoding {
    fn search(&self) -> BeamSearch<'static> {
        BeamSearch {
            beams: self.beams,
            max_new_tokens: self.length,
            eos: None,
            length_penalty: 0.0,
            early_stopping: EarlyStopping::Never,
            num_return: self.num_return,
            processors: Processors::default(),
        }
    }

    /// Scratch for `n` input positions.
    ///
    /// # Errors
    /// [`Error::Overflow`] when the sizes overflow.
    pub fn workspace_len(&self, n: usize) -> Result<WorkspaceLen> {
        self.search().workspace_len(n + 1, 1)
    }

    /// Decodes: `out.tokens [num_return, length]` are input positions, best first; the scores
    /// are sums of log-probabilities (length penalty 0). Allocates nothing.
    ///
    /// # Errors
    /// [`Error::Param`] naming `length` when it exceeds `n` under the permutation mask, and as
    /// [`BeamSearch::run`] otherwise (the scorer's errors included).
    pub fn run<S: PointerScorer + ?Sized>(
        &self,
        scorer: &mut S,
        ws: Workspace<'_>,
        out: NBest<'_>,
    ) -> Result<()> {
        let n = scorer.positions();
        if self.permutation && self.length > n {
            return Err(Error::Param {
                arg: "length",
                reason: "exceeds the number of positions under the permutation mask",
            });
        }
        let start = u32::try_from(n).map_err(|_| Error::Overflow { arg: "positions" })?;
        let mut model = Adapter {
            scorer,
            n,
            permutation: self.permutation,
        };
        self.search().run(&mut model, &[start], ws, out)
    }

    /// The `alloc` API of [`PointerDecoding::run`].
    ///
    /// # Errors
    /// As [`PointerDecoding::run`].
    #[cfg(feature = "alloc")]
    pub fn generate<S: PointerScorer + ?Sized>(
        &self,
        scorer: &mut S,
    ) -> Result<alloc::vec::Vec<crate::beam::Hypothesis>> {
        let n = scorer.positions();
        if self.permutation && self.length > n {
            return Err(Error::Param {
                arg: "length",
                reason: "exceeds the number of positions under the permutation mask",
            });
        }
        let start = u32::try_from(n).map_err(|_| Error::Overflow { arg: "positions" })?;
        let mut model = Adapter {
            scorer,
            n,
            permutation: self.permutation,
        };
        self.search().generate(&mut model, &[start])
    }
}
