//! Rotary position embedding (RoPE): Su et al., *RoFormer: Enhanced Transformer with Rotary
//! Position Embedding* (2021), eq. (34): each pair of features `(x_a, x_b)` of a token at position
//! `m` is rotated by the angle `m * theta_i`,
//!
//! ```text
//! y_a = (x_a cos(m theta_i) - x_b sin(m theta_i)) * s
//! y_b = (x_b cos(m theta_i) + x_a sin(m theta_i)) * s
//! ```
//!
//! where `s` is the attention factor of the scaled variants (YaRN's `mscale`, LongRoPE's factor;
//! Hugging Face multiplies cos and sin by it), 1 otherwise. The pairs are `(i, i + r/2)` in the
//! [`RopeLayout::Half`] layout (GPT-NeoX, Llama, Hugging Face's `rotate_half`) and `(2i, 2i + 1)`
//! in the [`RopeLayout::Interleaved`] layout (GPT-J, RoFormer, Meta's `view_as_complex`), for
//! `i < r/2` with `r = 2 * inv_freq.len()` the rotary dimension; features from `r` on pass through
//! unchanged (partial rotary).
//!
//! # Angles
//!
//! The angle `m * theta_i` is formed in f64 from the integer position (exact below 2^53) and the
//! f64 frequency: one rounding, an absolute error of at most `2^-53 * m * theta_i`, which is below
//! `2e-9` rad at `m = 2^24` for `theta_i <= 1`. Cosine and sine are libm's f64 functions (full
//! range reduction, error below 1 ulp). Only then are they rounded to the accumulation type (f32
//! for f32, f16 and bf16), so no position is ever multiplied by a frequency in f32 or f16 (in f32,
//! `2^24 * theta_i` would carry an error of up to a radian).

use super::{Backend, Error, Result, View, ViewMut};
use crate::element::{Element, Real};
use crate::reference::Reference;

/// Which features are rotated together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RopeLayout {
    /// Pairs `(i, i + r/2)`: rotate-half, as GPT-NeoX, Llama and Hugging Face's
    /// `apply_rotary_pos_emb`.
    Half,
    /// Pairs `(2i, 2i + 1)`: as GPT-J, RoFormer and Meta's reference Llama code
    /// (`torch.view_as_complex`).
    Interleaved,
}

/// The position of every token.
#[derive(Debug)]
#[non_exhaustive]
pub enum RopePositions<'a, B: Backend + ?Sized> {
    /// Token `l` of every sequence of the batch is at position `start + l` (a prefill, or one
    /// decode step at `start`).
    Offset(u64),
    /// Explicit positions, `[L]` (shared by the batch) or `[B, L]` (one row per sequence: packed
    /// sequences, sequences of a batch at different lengths of their caches).
    Ids(View<'a, B, u32>),
}

impl<B: Backend + ?Sized> Clone for RopePositions<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend + ?Sized> Copy for RopePositions<'_, B> {}

/// The extents of a RoPE call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dims4 {
    batch: usize,
    heads: usize,
    len: usize,
    dim: usize,
}

fn dims4(arg: &'static str, shape: &[usize]) -> Result<Dims4> {
    match *shape {
        [batch, heads, len, dim] => Ok(Dims4 {
            batch,
            heads,
            len,
            dim,
        }),
        _ => Err(Error::Rank {
            arg,
            got: shape.len(),
            min: 4,
            max: 4,
        }),
    }
}

/// Checks the arguments of [`Backend::rope`]; returns the rotary pair count.
///
/// # Errors
/// As [`Backend::rope`].
pub fn check_rope<B: Backend + ?Sized, T: crate::Scalar>(
    inv_freq: &[f64],
    attention_factor: f64,
    positions: &RopePositions<'_, B>,
    x: Option<&crate::Layout>,
    y: &crate::Layout,
) -> Result<usize> {
    let d = dims4("y", y.shape())?;
    if let Some(x) = x {
        crate::check::shape("x", x, y.shape())?;
    }
    let pairs = inv_freq.len();
    if pairs.checked_mul(2).is_none_or(|r| r > d.dim) {
        return Err(Error::Param {
            arg: "inv_freq",
            reason: "has more than D/2 frequencies (rotary_dim above the head dimension)",
        });
    }
    if inv_freq.iter().any(|f| !f.is_finite()) {
        return Err(Error::Param {
            arg: "inv_freq",
            reason: "must hold finite frequencies",
        });
    }
    crate::check::finite("attention_factor", attention_factor)?;
    match positions {
        RopePositions::Offset(start) => {
            let len = u64::try_from(d.len).map_err(|_| Error::Overflow { arg: "positions" })?;
            start
                .checked_add(len)
                .ok_or(Error::Overflow { arg: "positions" })?;
        }
        RopePositions::Ids(p) => match p.shape().len() {
            1 => crate::check::shape("positions", p.layout(), &[d.len])?,
            _ => crate::check::shape("positions", p.layout(), &[d.batch, d.len])?,
        },
    }
    Ok(pairs)
}

fn get<T: Copy>(s: &[T], i: usize) -> Result<T> {
    s.get(i).copied().ok_or(Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len: s.len(),
    })
}

fn set<T>(s: &mut [T], i: usize, v: T) -> Result<()> {
    let len = s.len();
    *s.get_mut(i).ok_or(Error::OutOfBounds {
        arg: "view",
        end: i.saturating_add(1),
        len,
    })? = v;
    Ok(())
}

/// `(cos, sin)` of `position * inv_freq`, times `attention_factor`, all in f64 (see the module
/// docs for the error).
pub fn cos_sin(position: u64, inv_freq: f64, attention_factor: f64) -> (f64, f64) {
    #[allow(clippy::cast_precision_loss)] // positions below 2^53 are exact; checked callers
    let angle = position as f64 * inv_freq;
    let (s, c) = (libm::sin(angle), libm::cos(angle));
    (c * attention_factor, s * attention_factor)
}

/// The portable body of [`Backend::rope`].
///
/// # Errors
/// As [`Backend::rope`].
pub fn rope<T: Element>(
    layout: RopeLayout,
    inv_freq: &[f64],
    attention_factor: f64,
    positions: RopePositions<'_, Reference>,
    x: Option<View<'_, Reference, T>>,
    mut y: ViewMut<'_, Reference, T>,
) -> Result<()> {
    let pairs = check_rope::<Reference, T>(
        inv_freq,
        attention_factor,
        &positions,
        x.as_ref().map(View::layout),
        y.layout(),
    )?;
    let d = dims4("y", y.shape())?;
    let (yl, ym) = {
        let (m, l) = y.parts();
        (*l, m)
    };
    let ys = yl.strides();
    let (ysb, ysh, ysl, ysd) = (get(ys, 0)?, get(ys, 1)?, get(ys, 2)?, get(ys, 3)?);
    // Addresses of x: its own layout, or y's for the in-place form.
    let (xl, xm) = match &x {
        Some(v) => (*v.layout(), Some(v.mem())),
        None => (yl, None),
    };
    let xs = xl.strides();
    let (xsb, xsh, xsl, xsd) = (get(xs, 0)?, get(xs, 1)?, get(xs, 2)?, get(xs, 3)?);
    // Feature indices of pair i: a = i * a_step, b = a + b_off (half: i, i + r/2; interleaved:
    // 2i, 2i + 1).
    let (a_step, b_off) = match layout {
        RopeLayout::Half => (1usize, pairs),
        RopeLayout::Interleaved => (2usize, 1usize),
    };
    for b in 0..d.batch {
        for l in 0..d.len {
            let pos = match &positions {
                RopePositions::Offset(start) => {
                    // Checked above not to overflow.
                    start.saturating_add(u64::try_from(l).unwrap_or(u64::MAX))
                }
                RopePositions::Ids(p) => {
                    let pl = p.layout();
                    let st = pl.strides();
                    let o = match st.len() {
                        1 => pl.offset() + l * get(st, 0)?,
                        _ => pl.offset() + b * get(st, 0)? + l * get(st, 1)?,
                    };
                    u64::from(get(p.mem(), o)?)
                }
            };
            let xbase = xl.offset() + b * xsb + l * xsl;
            let ybase = yl.offset() + b * ysb + l * ysl;
            for (i, &f) in inv_freq.iter().enumerate() {
                let (c, s) = cos_sin(pos, f, attention_factor);
                let (c, s) = (T::Acc::lit(c), T::Acc::lit(s));
                let (ia, ib) = (i * a_step, i * a_step + b_off);
                for h in 0..d.heads {
                    let xo = xbase + h * xsh;
                    let yo = ybase + h * ysh;
                    let (xa, xb) = match xm {
                        Some(m) => (get(m, xo + ia * xsd)?, get(m, xo + ib * xsd)?),
                        None => (get(ym, xo + ia * xsd)?, get(ym, xo + ib * xsd)?),
                    };
                    let (xa, xb) = (xa.to_acc(), xb.to_acc());
                    let ya = xa * c - xb * s;
                    let yb = xb * c + xa * s;
                    set(ym, yo + ia * ysd, T::from_acc(ya))?;
                    set(ym, yo + ib * ysd, T::from_acc(yb))?;
                }
            }
            // Pass-through features (partial rotary), copied only when out of place.
            if let Some(m) = xm {
                for h in 0..d.heads {
                    for j in 2 * pairs..d.dim {
                        let v = get(m, xbase + h * xsh + j * xsd)?;
                        set(ym, ybase + h * ysh + j * ysd, v)?;
                    }
                }
            }
        }
    }
    Ok(())
}
