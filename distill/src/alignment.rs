//! Decoder-only teacher -> encoder-decoder student alignment (Elfeki et al. 2025, "Return of the
//! Encoder: Maximizing Parameter Efficiency for SLMs", sec. 3, the distillation framework).
//!
//! The teacher reads `[prompt; target]` as one stream; the student's encoder reads the prompt and
//! its decoder the target (shifted right: decoder position `i` has seen `target[..i]` and predicts
//! `target[i]`). The teacher's position `prompt_len - 1 + i` has seen the prompt and `target[..i]`
//! and predicts the same `target[i]`: the teacher rows `prompt_len - 1 .. end - 1` of the stream
//! map one to one onto the student decoder rows `0 .. target_len`. With padding (left or right,
//! independently on each side) and examples of different lengths, each example gets a [`Span`].

use seqcore::{Backend, Dims, Element, Error, Result, View, ViewMut};

use crate::{KdConfig, KdReduction};

/// The aligned rows of one example (Return of the Encoder, Elfeki et al. 2025, sec. 3): teacher rows `teacher_start .. teacher_start + len` of its
/// stream predict the same tokens as student decoder rows `student_start .. student_start + len`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First teacher row (the last prompt token's position).
    pub teacher_start: usize,
    /// First student decoder row.
    pub student_start: usize,
    /// Rows aligned: the target length.
    pub len: usize,
}

impl Span {
    /// The student decoder row aligned with teacher row `t`, if `t` is in the span.
    pub fn student_row(&self, t: usize) -> Option<usize> {
        let i = t.checked_sub(self.teacher_start)?;
        (i < self.len).then_some(self.student_start + i)
    }

    /// The teacher row aligned with student decoder row `s`, if `s` is in the span.
    pub fn teacher_row(&self, s: usize) -> Option<usize> {
        let i = s.checked_sub(self.student_start)?;
        (i < self.len).then_some(self.teacher_start + i)
    }
}

/// The run of nonzero entries of one mask row: `(start, count)`; `Err` naming `arg` when the
/// nonzero entries are not contiguous (padding must sit on the left, the right or both, not
/// inside).
fn run(row: &[u8], arg: &'static str) -> Result<(usize, usize)> {
    let start = row.iter().position(|&m| m != 0).unwrap_or(row.len());
    let count = row
        .get(start..)
        .unwrap_or(&[])
        .iter()
        .take_while(|&&m| m != 0)
        .count();
    let rest = row.get(start + count..).unwrap_or(&[]);
    if rest.iter().any(|&m| m != 0) {
        return Err(Error::Param {
            arg,
            reason: "has a gap: the tokens of an example must be contiguous",
        });
    }
    Ok((start, count))
}

fn shape_err(
    arg: &'static str,
    axis: usize,
    got: usize,
    expected: usize,
    shape: &[usize],
) -> Error {
    Error::Shape {
        arg,
        axis,
        got,
        expected,
        shape: Dims::new(shape),
    }
}

/// Aligns a batch for decoder-only -> encoder-decoder distillation (Return of the Encoder, sec. 3):
/// `teacher_mask [batch, teacher_len]` (Hugging Face `attention_mask` of the
/// teacher's `[prompt; target]` stream, 1 for a token, 0 for padding), `prompt_len [batch]`
/// (prompt tokens of each example, the start of its stream), `student_mask [batch, student_len]`
/// (the decoder's attention mask). Writes one [`Span`] per example into `spans` and returns the
/// total number of aligned rows.
///
/// An example's target length is its teacher token count minus its prompt length, and must equal
/// its decoder token count. A fully padded example (no token on either side, prompt length 0)
/// gets an empty span.
///
/// # Errors
/// [`Error::Shape`] naming `teacher_mask` or `student_mask` (length not `batch * len`);
/// [`Error::Capacity`] naming `spans`; [`Error::Param`] naming `teacher_mask` or `student_mask`
/// (tokens not contiguous), `prompt_len` (0 for a non-empty example, or longer than the
/// example's stream) or `student_mask` (decoder length differs from the target length).
pub fn align(
    teacher_mask: &[u8],
    teacher_len: usize,
    prompt_len: &[usize],
    student_mask: &[u8],
    student_len: usize,
    spans: &mut [Span],
) -> Result<usize> {
    let batch = prompt_len.len();
    let want = |len: usize, arg| batch.checked_mul(len).ok_or(Error::Overflow { arg });
    let tn = want(teacher_len, "teacher_mask")?;
    if teacher_mask.len() != tn {
        return Err(shape_err(
            "teacher_mask",
            0,
            teacher_mask.len(),
            tn,
            &[teacher_mask.len()],
        ));
    }
    let sn = want(student_len, "student_mask")?;
    if student_mask.len() != sn {
        return Err(shape_err(
            "student_mask",
            0,
            student_mask.len(),
            sn,
            &[student_mask.len()],
        ));
    }
    if spans.len() < batch {
        return Err(Error::Capacity {
            arg: "spans",
            needed: batch,
            capacity: spans.len(),
        });
    }
    let mut total = 0usize;
    let rows_t = teacher_mask.chunks(teacher_len.max(1));
    let rows_s = student_mask.chunks(student_len.max(1));
    for (((tr, sr), &p), span) in rows_t.zip(rows_s).zip(prompt_len).zip(spans.iter_mut()) {
        let tr = if teacher_len == 0 { &[][..] } else { tr };
        let sr = if student_len == 0 { &[][..] } else { sr };
        let (ts, tc) = run(tr, "teacher_mask")?;
        let (ss, sc) = run(sr, "student_mask")?;
        if tc == 0 && sc == 0 && p == 0 {
            *span = Span::default();
            continue;
        }
        if p == 0 || p > tc {
            return Err(Error::Param {
                arg: "prompt_len",
                reason: "must be at least 1 and at most the example's teacher token count",
            });
        }
        let len = tc - p;
        if sc != len {
            return Err(Error::Param {
                arg: "student_mask",
                reason: "decoder token count must equal teacher tokens minus prompt_len",
            });
        }
        *span = Span {
            teacher_start: ts + p - 1,
            student_start: ss,
            len,
        };
        total += len;
    }
    // Examples beyond the zipped rows cannot exist: every length was checked above.
    Ok(total)
}

/// The distillation loss (Return of the Encoder, sec. 3; the divergences of [`crate::kd_loss`]) of
/// an encoder-decoder student against a decoder-only teacher, over the
/// aligned rows of every example: `teacher [batch, teacher_len, V]` logits of the teacher's
/// streams, `student [batch, student_len, V]` logits of the student's decoder, `spans` from
/// [`align`]. Writes each example's share of the loss into `loss [batch]` (their sum is the
/// batch's loss: the mean over all aligned tokens for [`KdReduction::Mean`], the sum for
/// [`KdReduction::Sum`]) and, with `grad [batch, student_len, V]`, the gradient on the aligned
/// student rows. Rows of `grad` outside every span are not written: give a zeroed buffer.
/// Returns the number of aligned rows.
///
/// # Errors
/// [`Error::Rank`] / [`Error::Shape`] naming `teacher`, `student` (batch, or vocabulary: teacher
/// and student must share one), `spans` (one per example), `loss` or `grad`; [`Error::Index`]
/// naming `spans` when a span reaches past its rows; [`Error::Param`] naming `reduction` for
/// [`KdReduction::None`] (per-token losses: call [`crate::kd_loss`] per span); and the kernel's
/// errors.
#[allow(clippy::too_many_arguments)] // operands of the kernel plus the alignment
pub fn aligned_kd_loss<B: Backend + ?Sized, T: Element>(
    backend: &B,
    cfg: &KdConfig,
    spans: &[Span],
    teacher: View<'_, B, T>,
    student: View<'_, B, T>,
    mut loss: ViewMut<'_, B, T>,
    mut grad: Option<ViewMut<'_, B, T>>,
) -> Result<usize> {
    let rank3 = |arg, s: &[usize]| match *s {
        [b, l, v] => Ok((b, l, v)),
        _ => Err(Error::Rank {
            arg,
            got: s.len(),
            min: 3,
            max: 3,
        }),
    };
    let (bt, lt, vt) = rank3("teacher", teacher.shape())?;
    let (bs, ls, vs) = rank3("student", student.shape())?;
    if bs != bt {
        return Err(shape_err("student", 0, bs, bt, student.shape()));
    }
    if vs != vt {
        return Err(shape_err("student", 2, vs, vt, student.shape()));
    }
    if spans.len() != bt {
        return Err(shape_err("spans", 0, spans.len(), bt, &[spans.len()]));
    }
    seqcore::check::shape("loss", loss.layout(), &[bt])?;
    if let Some(g) = &grad {
        seqcore::check::shape("grad", g.layout(), student.shape())?;
    }
    let mut total = 0usize;
    for s in spans {
        let (te, se) = (
            s.teacher_start.checked_add(s.len),
            s.student_start.checked_add(s.len),
        );
        match (te, se) {
            (Some(te), Some(se)) if te <= lt && se <= ls => total += s.len,
            (te, _) if te.is_none_or(|e| e > lt) => {
                return Err(Error::Index {
                    arg: "spans",
                    end: te.unwrap_or(usize::MAX),
                    len: lt,
                });
            }
            (_, se) => {
                return Err(Error::Index {
                    arg: "spans",
                    end: se.unwrap_or(usize::MAX),
                    len: ls,
                });
            }
        }
    }
    let scale = match cfg.reduction {
        KdReduction::Mean if total > 0 => cfg.scale / usize_f64(total),
        KdReduction::Mean | KdReduction::Sum => cfg.scale,
        _ => {
            return Err(Error::Param {
                arg: "reduction",
                reason: "must be mean or sum for an aligned batch",
            });
        }
    };
    let call = cfg.with_reduction(KdReduction::Sum).with_scale(scale);
    for (b, s) in spans.iter().enumerate() {
        let t = teacher.select(0, b)?.narrow(0, s.teacher_start, s.len)?;
        let st = student.select(0, b)?.narrow(0, s.student_start, s.len)?;
        let l = loss.reborrow().select(0, b)?;
        let g = match grad.as_mut() {
            Some(g) => Some(
                g.reborrow()
                    .select(0, b)?
                    .narrow(0, s.student_start, s.len)?,
            ),
            None => None,
        };
        backend.kd_loss(&call, t, st, None, l, g)?;
    }
    Ok(total)
}

#[allow(clippy::cast_precision_loss)] // token counts: exact below 2^53
fn usize_f64(n: usize) -> f64 {
    n as f64
}
