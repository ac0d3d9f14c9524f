//! The fused kernels of RoPE (seqcore::portable::rope) on the GPU.

use seqcore::portable::rope::{RopeLayout, RopePositions, check_rope};
use seqcore::{Allocate, Backend, Element, Error, Result, View, ViewMut};

use crate::error::BACKEND;
use crate::launch::{self, i, lay};
use crate::{CudaBackend, CudaMem, kname};

/// Frequencies passed to the kernel by value (`struct RopeFreq` of `kernels/rope.cu`) when there
/// are at most this many (a rotary dimension up to 512); beyond, they are uploaded per call.
const ROPE_INLINE: usize = 256;

impl CudaBackend {
    /// Rotary position embedding (Su et al. 2021, RoFormer eq. (34)) on the GPU: the semantics of
    /// [`seqcore::portable::rope::rope`] (`kernels/rope.cu`), one thread per rotated pair or
    /// copied pass-through feature. Angles, cosines and sines in f64 from the integer position,
    /// the rotation in the accumulation type.
    ///
    /// The frequency table travels as a kernel parameter (2 KiB) when it has at most 256 entries;
    /// a longer one is uploaded into fresh device memory on the stream (alloc + write, freed
    /// stream-ordered after the kernel).
    pub(crate) fn rope_impl<T: Element>(
        &self,
        layout: RopeLayout,
        inv_freq: &[f64],
        attention_factor: f64,
        positions: RopePositions<'_, Self>,
        x: Option<View<'_, Self, T>>,
        mut y: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        let pairs = check_rope::<Self, T>(
            inv_freq,
            attention_factor,
            &positions,
            x.as_ref().map(View::layout),
            y.layout(),
        )?;
        let (a_step, b_off) = match layout {
            RopeLayout::Half => (1usize, pairs),
            RopeLayout::Interleaved => (2usize, 1usize),
            _ => {
                return Err(Error::Unsupported {
                    op: "rope with this layout",
                    backend: BACKEND,
                });
            }
        };
        let (batch, heads, len, dim) = match *y.shape() {
            [b, h, l, d] => (b, h, l, d),
            _ => return Err(Error::Overflow { arg: "y" }),
        };
        // Pass-through features are copied only out of place (in place they stay as they are).
        let pass = if x.is_some() {
            dim.saturating_sub(pairs.saturating_mul(2))
        } else {
            0
        };
        let width = pairs
            .checked_add(pass)
            .ok_or(Error::Overflow { arg: "y" })?;
        let total = batch
            .checked_mul(heads)
            .and_then(|v| v.checked_mul(len))
            .and_then(|v| v.checked_mul(width))
            .ok_or(Error::Overflow { arg: "y" })?;
        if total == 0 {
            return Ok(());
        }
        let s = &self.stream;
        let (pp, pos_off, pos_sb, pos_sl, has_ids, start) = match &positions {
            RopePositions::Offset(st) => (0u64, 0i64, 0i64, 0i64, 0i32, *st),
            RopePositions::Ids(p) => {
                let pl = p.layout();
                let (sb, sl) = match *pl.strides() {
                    [sl] => (0, sl),
                    [sb, sl] => (sb, sl),
                    _ => return Err(Error::Overflow { arg: "positions" }),
                };
                (p.mem().ptr(s), i(pl.offset())?, i(sb)?, i(sl)?, 1i32, 0u64)
            }
            _ => {
                return Err(Error::Unsupported {
                    op: "rope with these positions",
                    backend: BACKEND,
                });
            }
        };
        let mut inl = [0.0f64; ROPE_INLINE];
        let uploaded: Option<CudaMem<f64>> = if pairs <= ROPE_INLINE {
            for (d, &f) in inl.iter_mut().zip(inv_freq) {
                *d = f;
            }
            None
        } else {
            let mut m = self.alloc::<f64>(pairs)?;
            self.write(inv_freq, &mut m)?;
            Some(m)
        };
        let fp = uploaded.as_ref().map_or(0u64, |m| m.ptr(s));
        let (ym, yl) = y.parts();
        let ly = lay(yl)?;
        let yp = ym.ptr(s);
        let (xp, lx) = match &x {
            Some(v) => (v.mem().ptr(s), lay(v.layout())?),
            None => (yp, ly),
        };
        let (np, na, nb, nw, nt) = (i(pairs)?, i(a_step)?, i(b_off)?, i(width)?, i(total)?);
        let r = self.launch(
            &kname("rope", T::NAME),
            // One thread per (b, l, feature pair): each loops over the heads.
            launch::elementwise(total / heads.max(1)),
            [
                &xp,
                &lx,
                &yp,
                &ly,
                &pp,
                &pos_off,
                &pos_sb,
                &pos_sl,
                &has_ids,
                &start,
                &inl,
                &fp,
                &np,
                &na,
                &nb,
                &nw,
                &attention_factor,
                &nt,
            ],
        );
        // The uploaded table is released stream-ordered, after the kernel.
        drop(uploaded);
        r
    }
}
