//! The model interface: the caller's language model, seen by every decoder.
//!
//! A decoder never runs a network itself. It hands the live hypotheses to a [`LanguageModel`],
//! which writes next-token logits for each of them (batched over beams, row-major
//! `[hypotheses, vocabulary]`), and tells it how the hypotheses moved: [`LanguageModel::reorder`]
//! after a beam step (beam `i` now continues parent `parents[i]`, so a KV cache follows, as Hugging
//! Face's `_reorder_cache`), [`LanguageModel::rollback`] after a backspace.

use seqcore::{Error, Result};

/// Read access to the live hypotheses: `count` rows of `len` tokens each (the prompt first), laid
/// out with a row stride.
#[derive(Clone, Copy, Debug)]
pub struct Hypotheses<'a> {
    tokens: &'a [u32],
    count: usize,
    len: usize,
    stride: usize,
    prompt_len: usize,
}

impl<'a> Hypotheses<'a> {
    /// `count` rows of `len` tokens, row `i` at `tokens[i * stride..][..len]`; the first
    /// `prompt_len` tokens of each row are the prompt.
    ///
    /// # Errors
    /// [`Error::Param`] naming `len` when `prompt_len > len` or `len > stride`;
    /// [`Error::Capacity`] naming `tokens` when the rows do not fit.
    pub fn new(
        tokens: &'a [u32],
        count: usize,
        len: usize,
        stride: usize,
        prompt_len: usize,
    ) -> Result<Self> {
        if prompt_len > len || len > stride {
            return Err(Error::Param {
                arg: "len",
                reason: "must lie between the prompt length and the row stride",
            });
        }
        let needed = count
            .checked_mul(stride)
            .ok_or(Error::Overflow { arg: "tokens" })?;
        if needed > tokens.len() {
            return Err(Error::Capacity {
                arg: "tokens",
                needed,
                capacity: tokens.len(),
            });
        }
        Ok(Self {
            tokens,
            count,
            len,
            stride,
            prompt_len,
        })
    }

    /// Number of hypotheses.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Tokens in each hypothesis, prompt included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the hypotheses hold no token at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens of the prompt at the start of each hypothesis.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Tokens generated so far (`len - prompt_len`).
    pub fn generated(&self) -> usize {
        self.len - self.prompt_len
    }

    /// The tokens of hypothesis `i` (prompt included); empty when `i >= count`.
    pub fn tokens(&self, i: usize) -> &'a [u32] {
        if i >= self.count {
            return &[];
        }
        let start = i * self.stride;
        self.tokens.get(start..start + self.len).unwrap_or(&[])
    }

    /// The last token of hypothesis `i`, if any.
    pub fn last(&self, i: usize) -> Option<u32> {
        self.tokens(i).last().copied()
    }
}

/// The caller's model, as a decoder sees it.
///
/// Hooks with default bodies do nothing: a model without a cache (such as [`StepTable`]) needs
/// none of them.
pub trait LanguageModel {
    /// Vocabulary size `V`: the width of each logits row.
    fn vocab_size(&self) -> usize;

    /// Writes the next-token logits of every hypothesis of `hyps` into `logits`, row-major
    /// `[hyps.count(), V]` (exactly that many elements).
    ///
    /// # Errors
    /// Whatever the model reports; the decoder passes it on.
    fn logits(&mut self, hyps: Hypotheses<'_>, logits: &mut [f32]) -> Result<()>;

    /// Beam `i` now continues the hypothesis that was beam `parents[i]` before this step (Hugging
    /// Face's `beam_idx` of `_reorder_cache`). Called after every beam step, before the next
    /// [`LanguageModel::logits`].
    ///
    /// # Errors
    /// Whatever the model reports.
    fn reorder(&mut self, parents: &[u32]) -> Result<()> {
        let _ = parents;
        Ok(())
    }

    /// Hypothesis `hyp` lost its last `tokens` tokens (a backspace): a cache drops them.
    ///
    /// # Errors
    /// Whatever the model reports.
    fn rollback(&mut self, hyp: usize, tokens: usize) -> Result<()> {
        let _ = (hyp, tokens);
        Ok(())
    }
}

/// A step-indexed bigram table model: `table[s, p, :]` are the next-token logits after `s`
/// generated tokens when the previous token is `p` (the `beam_search` golden-vector model of
/// `seq-conformance`, and the model of the examples).
#[derive(Clone, Copy, Debug)]
pub struct StepTable<'a> {
    table: &'a [f32],
    steps: usize,
    vocab: usize,
}

impl<'a> StepTable<'a> {
    /// A table `[steps, vocab, vocab]`, row-major.
    ///
    /// # Errors
    /// [`Error::Param`] naming `vocab` when it is 0; [`Error::Shape`] naming `table` when its
    /// length is not `steps * vocab * vocab`.
    pub fn new(table: &'a [f32], steps: usize, vocab: usize) -> Result<Self> {
        if vocab == 0 {
            return Err(Error::Param {
                arg: "vocab",
                reason: "must be positive",
            });
        }
        let expected = steps
            .checked_mul(vocab)
            .and_then(|x| x.checked_mul(vocab))
            .ok_or(Error::Overflow { arg: "table" })?;
        if table.len() != expected {
            return Err(Error::Shape {
                arg: "table",
                axis: 0,
                got: table.len(),
                expected,
                shape: seqcore::Dims::new(&[table.len()]),
            });
        }
        Ok(Self {
            table,
            steps,
            vocab,
        })
    }

    /// Steps the table covers.
    pub fn steps(&self) -> usize {
        self.steps
    }
}

impl LanguageModel for StepTable<'_> {
    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn logits(&mut self, hyps: Hypotheses<'_>, logits: &mut [f32]) -> Result<()> {
        let s = hyps.generated();
        if s >= self.steps {
            return Err(Error::Param {
                arg: "table",
                reason: "has fewer steps than the decoder asks for",
            });
        }
        let v = self.vocab;
        for (i, row) in logits.chunks_exact_mut(v).take(hyps.count()).enumerate() {
            let p = hyps.last(i).ok_or(Error::Param {
                arg: "prompt",
                reason: "must hold at least one token",
            })?;
            let p = usize::try_from(p).map_err(|_| Error::Overflow { arg: "prompt" })?;
            if p >= v {
                return Err(Error::Param {
                    arg: "prompt",
                    reason: "holds a token outside the vocabulary",
                });
            }
            let start = (s * v + p) * v;
            let src = self.table.get(start..start + v).ok_or(Error::Index {
                arg: "table",
                end: start + v,
                len: self.table.len(),
            })?;
            row.copy_from_slice(src);
        }
        Ok(())
    }
}

/// A model whose logits live in a backend's memory (a GPU's, say): it writes them into a
/// [`seqcore::ViewMut`] `[count, V]` of its own memory, and [`OnBackend`] downloads them with
/// [`seqcore::Backend::read`] for the decoder (the decoders' selection runs on the host).
pub trait BackendLanguageModel<B: seqcore::Backend> {
    /// Vocabulary size `V`.
    fn vocab_size(&self) -> usize;

    /// Writes the logits of `hyps` into `logits [hyps.count(), V]` on `backend`.
    ///
    /// # Errors
    /// Whatever the model or the backend reports.
    fn logits(
        &mut self,
        backend: &B,
        hyps: Hypotheses<'_>,
        logits: seqcore::ViewMut<'_, B, f32>,
    ) -> Result<()>;

    /// As [`LanguageModel::reorder`].
    ///
    /// # Errors
    /// Whatever the model reports.
    fn reorder(&mut self, parents: &[u32]) -> Result<()> {
        let _ = parents;
        Ok(())
    }

    /// As [`LanguageModel::rollback`].
    ///
    /// # Errors
    /// Whatever the model reports.
    fn rollback(&mut self, hyp: usize, tokens: usize) -> Result<()> {
        let _ = (hyp, tokens);
        Ok(())
    }
}

/// A [`BackendLanguageModel`] with its logits memory, seen as a [`LanguageModel`]: each call
/// lets the model write into `mem` and downloads it. `mem` must hold exactly `count * V` elements
/// for the decoder's `count` (the beams for beam search, 1 for single-sequence decoders).
#[derive(Debug)]
pub struct OnBackend<'a, B: seqcore::Backend, M> {
    backend: &'a B,
    model: M,
    mem: &'a mut B::Mem<f32>,
}

impl<'a, B: seqcore::Backend, M: BackendLanguageModel<B>> OnBackend<'a, B, M> {
    /// `model` on `backend`, writing its logits into `mem`.
    pub fn new(backend: &'a B, model: M, mem: &'a mut B::Mem<f32>) -> Self {
        Self {
            backend,
            model,
            mem,
        }
    }

    /// The model back.
    pub fn into_inner(self) -> M {
        self.model
    }
}

impl<B: seqcore::Backend, M: BackendLanguageModel<B>> LanguageModel for OnBackend<'_, B, M> {
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn logits(&mut self, hyps: Hypotheses<'_>, logits: &mut [f32]) -> Result<()> {
        let v = self.model.vocab_size();
        let view = seqcore::ViewMut::<B, f32>::contiguous(self.mem, &[hyps.count(), v])?;
        self.model.logits(self.backend, hyps, view)?;
        // `read` copies all of `mem`: it must be exactly [count, V]
        self.backend.read(self.mem, logits)
    }

    fn reorder(&mut self, parents: &[u32]) -> Result<()> {
        self.model.reorder(parents)
    }

    fn rollback(&mut self, hyp: usize, tokens: usize) -> Result<()> {
        self.model.rollback(hyp, tokens)
    }
}
