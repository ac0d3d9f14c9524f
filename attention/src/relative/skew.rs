//! Music Transformer's relative attention: Huang et al., *Music Transformer: Generating Music with
//! Long-Term Structure* (ICLR 2019), section 3:
//!
//! ```text
//! RelativeAttention = softmax((Q K^T + S_rel) / sqrt(D_h)) V          (eq. (1)-(2))
//! S_rel[i, j] = q_i . E^r[L - 1 - (i - j)]      for j <= i (causal)
//! ```
//!
//! `E^r [L, D]` (one per head) embeds the distances `L-1, ..., 1, 0` (row `L - 1 - r` for
//! distance `r = i - j`). Shaw et al. form `S_rel` through an `L x L x D` tensor of gathered
//! embeddings; section 3.4.1's *skewing* gets it from `Q E^r^T` (`L x L`) alone, O(L D) extra
//! memory instead of O(L^2 D):
//!
//! 1. `Q E^r^T` (`[L, L]`, column `c` holds distance `L - 1 - c`),
//! 2. pad a dummy column before the leftmost one (`[L, L + 1]`),
//! 3. reshape to `[L + 1, L]` (row-major),
//! 4. drop the first row: the `[L, L]` result is `S_rel` (entries above the diagonal are
//!    leftovers that the causal mask hides).
//!
//! Steps 3-4 are a view (offset `L`, strides `[L, 1]`) of the padded buffer: no copy at all.
//! [`relative_logits`] runs exactly this; [`SkewedAttention::forward_skewed`] completes the
//! attention with the dense kernels; [`SkewedAttention::forward`] runs the same attention on the
//! fused kernel, where the skew becomes an index (`RelativeIndex::Clipped { max_back: L-1,
//! max_fwd: 0 }`).

use seqcore::{Backend, Element, Error, Layout, Result, SoftmaxKind, Unary, View, ViewMut};

use super::{RelativeIndex, RelativeParams, scale_or_default};

/// Elements of the padded buffer of [`relative_logits`] for length `l`: `l * (l + 1)`.
///
/// # Errors
/// [`Error::Overflow`] naming `l`.
pub fn padded_len(l: usize) -> Result<usize> {
    l.checked_add(1)
        .and_then(|p| p.checked_mul(l))
        .ok_or(Error::Overflow { arg: "l" })
}

/// Music Transformer's skew (section 3.4.1): computes `Q E^r^T` into the padded buffer `padded`
/// (at least [`padded_len`]`(L)` elements) and returns `S_rel [L, L]` as a view of it; rows
/// `i`, columns `j <= i` hold `q_i . E^r[L - 1 - i + j]`. `q [L, D]`, `er [L, D]`.
///
/// # Errors
/// Shape errors naming `q` or `er`; [`Error::Capacity`] naming `padded`; kernel errors.
pub fn relative_logits<'p, B: Backend, T: Element>(
    b: &B,
    q: View<'_, B, T>,
    er: View<'_, B, T>,
    padded: &'p mut B::Mem<T>,
) -> Result<View<'p, B, T>> {
    let (l, d) = match *q.shape() {
        [l, d] => (l, d),
        _ => {
            return Err(Error::Rank {
                arg: "q",
                got: q.shape().len(),
                min: 2,
                max: 2,
            });
        }
    };
    seqcore::check::shape("er", er.layout(), &[l, d])?;
    let need = padded_len(l)?;
    if B::mem_len(padded) < need {
        return Err(Error::Capacity {
            arg: "padded",
            needed: need,
            capacity: B::mem_len(padded),
        });
    }
    {
        let wide = ViewMut::<B, T>::new(&mut *padded, Layout::contiguous(&[l, l + 1])?)?;
        // Step 2's dummy column: a product over an empty inner extent writes zeros.
        let (pad, body) = {
            let pad_layout = wide.layout().narrow(1, 0, 1)?;
            let body_layout = wide.layout().narrow(1, 1, l)?;
            (pad_layout, body_layout)
        };
        let mem = wide.into_parts().0;
        {
            let empty_a = q.map_layout(|x| x.narrow(1, 0, 0))?;
            let empty_b = q.map_layout(|x| Layout::new(x.offset(), &[0, 1], &[1, 1]))?;
            b.gemm(1.0, empty_a, empty_b, 0.0, ViewMut::new(&mut *mem, pad)?)?;
        }
        // Step 1: Q E^r^T into the columns after the pad.
        b.gemm(
            1.0,
            q,
            er.map_layout(|x| x.transpose(0, 1))?,
            0.0,
            ViewMut::new(&mut *mem, body)?,
        )?;
    }
    // Steps 3-4: reshape [L+1, L], drop row 0.
    View::new(&*padded, Layout::new(l, &[l, l], &[l, 1])?)
}

/// Music Transformer relative self-attention (causal), per head with its own `E^r`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SkewedAttention {
    /// Score scale (default `1/sqrt(D)`).
    pub scale: Option<f64>,
}

impl SkewedAttention {
    /// The fused kernel's parameters for `l` keys of dimension `d`.
    ///
    /// # Errors
    /// [`Error::Param`] naming `scale`.
    pub fn params(&self, l: usize, d: usize) -> Result<RelativeParams> {
        Ok(RelativeParams {
            scale: scale_or_default(self.scale, d)?,
            causal: true,
            index: RelativeIndex::Clipped {
                max_back: l.saturating_sub(1),
                max_fwd: 0,
            },
        })
    }

    /// Fused: `q [B, H, Lq, D]`, `k [B, H, Lk, D]`, `v [B, H, Lk, Dv]`, `er [H, Lk, D]`,
    /// `o [B, H, Lq, Dv]`; queries are the last `Lq` positions (a decode step with a cache).
    /// `workspace`: [`super::workspace_len`]`(Dv)` accumulators.
    ///
    /// # Errors
    /// Those of [`Backend::relative_attention`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend, T: Element>(
        &self,
        b: &B,
        q: View<'_, B, T>,
        k: View<'_, B, T>,
        v: View<'_, B, T>,
        er: View<'_, B, T>,
        o: ViewMut<'_, B, T>,
        workspace: &mut B::Mem<T::Acc>,
    ) -> Result<()> {
        let lk = k.shape().get(2).copied().unwrap_or(0);
        let d = q.shape().get(3).copied().unwrap_or(0);
        let p = self.params(lk, d)?;
        b.relative_attention(&p, q, k, v, Some(er), None, None, o, workspace)
    }

    /// The paper's procedure with the dense kernels, for self-attention (`Lq = Lk = L`): per
    /// batch and head, [`relative_logits`] into `padded` ([`padded_len`]`(L)` elements), then
    /// `Q K^T` added in place (`gemm` with `beta = 1` onto the skewed view), scaled into `probs`
    /// (`L * L` elements), softmax over each row's visible keys, and the product with `V` row by
    /// row. Memory O(L^2) for the logits (as any unfused attention) but O(L D) for the relative
    /// part.
    ///
    /// # Errors
    /// Shape errors; [`Error::Capacity`] naming `padded` or `probs`; kernel errors.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_skewed<B: Backend, T: Element>(
        &self,
        b: &B,
        q: View<'_, B, T>,
        k: View<'_, B, T>,
        v: View<'_, B, T>,
        er: View<'_, B, T>,
        mut o: ViewMut<'_, B, T>,
        padded: &mut B::Mem<T>,
        probs: &mut B::Mem<T>,
    ) -> Result<()> {
        let [nb, nh, l, d] = match *q.shape() {
            [a, h, l, d] => [a, h, l, d],
            _ => {
                return Err(Error::Rank {
                    arg: "q",
                    got: q.shape().len(),
                    min: 4,
                    max: 4,
                });
            }
        };
        seqcore::check::shape("k", k.layout(), &[nb, nh, l, d])?;
        let dv = v.shape().get(3).copied().unwrap_or(0);
        seqcore::check::shape("v", v.layout(), &[nb, nh, l, dv])?;
        seqcore::check::shape("er", er.layout(), &[nh, l, d])?;
        seqcore::check::shape("o", o.layout(), &[nb, nh, l, dv])?;
        let scale = scale_or_default(self.scale, d)?;
        let ll = l.checked_mul(l).ok_or(Error::Overflow { arg: "l" })?;
        if B::mem_len(probs) < ll {
            return Err(Error::Capacity {
                arg: "probs",
                needed: ll,
                capacity: B::mem_len(probs),
            });
        }
        let square = Layout::new(l, &[l, l], &[l, 1])?;
        for bi in 0..nb {
            for h in 0..nh {
                let qh = q.select(0, bi)?.select(0, h)?;
                let kh = k.select(0, bi)?.select(0, h)?;
                let vh = v.select(0, bi)?.select(0, h)?;
                let _ = relative_logits(b, qh, er.select(0, h)?, &mut *padded)?;
                // Q K^T + S_rel, in place on the skewed view.
                b.gemm(
                    1.0,
                    qh,
                    kh.transpose(0, 1)?,
                    1.0,
                    ViewMut::new(&mut *padded, square)?,
                )?;
                b.unary(
                    Unary::Scale(scale),
                    View::new(&*padded, square)?,
                    ViewMut::new(&mut *probs, Layout::contiguous(&[l, l])?)?,
                )?;
                for i in 0..l {
                    let row = Layout::new(l + i * l, &[1, i + 1], &[l, 1])?;
                    b.softmax(
                        SoftmaxKind::Softmax,
                        View::new(&*probs, Layout::new(i * l, &[1, i + 1], &[l, 1])?)?,
                        None,
                        ViewMut::new(&mut *padded, row)?,
                    )?;
                    let oi = o.reborrow().select(0, bi)?.select(0, h)?.narrow(0, i, 1)?;
                    b.gemm(
                        1.0,
                        View::new(&*padded, row)?,
                        vh.narrow(0, 0, i + 1)?,
                        0.0,
                        oi,
                    )?;
                }
            }
        }
        Ok(())
    }
}
