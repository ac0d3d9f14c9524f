//! The fused kernels of state-space models: scan, convolution, Vandermonde kernel (seqcore::portable::ssm) on the GPU.

use seqcore::portable::ssm::conv::{check_conv, check_workspace};
use seqcore::portable::ssm::scan::check_scan;
use seqcore::portable::ssm::vandermonde::check_vandermonde;
use seqcore::{Backend, Element, Error, Result, View, ViewMut, check};

use crate::launch::{self, Lay, i, lay};
use crate::{CudaBackend, kname};

/// Warps (channels) per block of the scan: `launch::THREADS / 32`.
const SCAN_WARPS: usize = 8;

impl CudaBackend {
    /// The recurrent mode of a diagonal complex SSM (S4 eq. 3 with a diagonal state matrix, as
    /// S4D) on the GPU: [`seqcore::portable::ssm::scan::scan`]'s recurrence, one warp per channel,
    /// lanes over the modes, a warp reduction of `sum_n Re(c x)` per token.
    #[allow(clippy::too_many_arguments)] // the operands of one fused kernel
    pub(crate) fn ssm_scan_impl<T: Element>(
        &self,
        abar: View<'_, Self, T::Acc>,
        bbar: View<'_, Self, T::Acc>,
        c: View<'_, Self, T::Acc>,
        d: View<'_, Self, T::Acc>,
        u: View<'_, Self, T>,
        mut state: ViewMut<'_, Self, T::Acc>,
        mut y: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        let (h, n, l) = check_scan(
            abar.layout(),
            bbar.layout(),
            c.layout(),
            d.layout(),
            u.layout(),
            state.layout(),
            y.as_ref().map(ViewMut::layout),
        )?;
        if h == 0 || l == 0 {
            return Ok(());
        }
        let s = &self.stream;
        let (ap, al) = (abar.mem().ptr(s), lay(abar.layout())?);
        let (bp, bl) = (bbar.mem().ptr(s), lay(bbar.layout())?);
        let (cp, cl) = (c.mem().ptr(s), lay(c.layout())?);
        let (dp, dl) = (d.mem().ptr(s), lay(d.layout())?);
        let (up, ul) = (u.mem().ptr(s), lay(u.layout())?);
        let (sm, sl) = state.parts();
        let sl = lay(sl)?;
        let sp = sm.ptr(s);
        let (yp, yl, has_y) = match &mut y {
            Some(yv) => {
                let (ym, yl) = yv.parts();
                let yl = lay(yl)?;
                (ym.ptr(s), yl, 1i32)
            }
            None => (0u64, Lay::default(), 0i32),
        };
        let (hi, ni, li) = (i(h)?, i(n)?, i(l)?);
        // One warp per channel: `THREADS` threads are `SCAN_WARPS` channels per block.
        let cfg = launch::rows(h.div_ceil(SCAN_WARPS));
        self.launch(
            &kname("ssm_scan", T::NAME),
            cfg,
            [
                &ap, &al, &bp, &bl, &cp, &cl, &dp, &dl, &up, &ul, &sp, &sl, &yp, &yl, &has_y, &hi,
                &ni, &li,
            ],
        )
    }

    /// The S4D convolution kernel as a Vandermonde product (S4D eq. 6) on the GPU:
    /// [`seqcore::portable::ssm::vandermonde::vandermonde`] in f64, one thread per output
    /// `k[h, l]`, each repeating the reference's power recurrence from its restart point.
    pub(crate) fn ssm_vandermonde_impl<T: Element>(
        &self,
        log_z: View<'_, Self, T::Acc>,
        w: View<'_, Self, T::Acc>,
        v: Option<View<'_, Self, T::Acc>>,
        mut k: ViewMut<'_, Self, T>,
    ) -> Result<()> {
        let (h, n, l) = check_vandermonde(log_z.layout(), w.layout(), k.layout())?;
        if let Some(v) = &v {
            check::shape("v", v.layout(), &[h, n, 2])?;
        }
        let total = h.checked_mul(l).ok_or(Error::Overflow { arg: "k" })?;
        if total == 0 {
            return Ok(());
        }
        let s = &self.stream;
        let (zp, zl) = (log_z.mem().ptr(s), lay(log_z.layout())?);
        let (wp, wl) = (w.mem().ptr(s), lay(w.layout())?);
        let (vp, vl, has_v) = self.optional(v.as_ref())?;
        let (km, kl) = k.parts();
        let kl = lay(kl)?;
        let kp = km.ptr(s);
        let (hi, ni, li) = (i(h)?, i(n)?, i(l)?);
        self.launch(
            &kname("ssm_vandermonde", T::NAME),
            launch::elementwise(total),
            [
                &zp, &zl, &wp, &wl, &vp, &vl, &has_v, &kp, &kl, &hi, &ni, &li,
            ],
        )
    }

    /// The convolution mode of an SSM (S4 eq. 4-5) on the GPU, computed as the direct causal sum
    /// ([`seqcore::portable::ssm::conv::conv_direct`]: O(L^2) per channel, summed in the
    /// accumulation type from `s = 0` up, one thread per output), not by FFT: more accurate than
    /// the portable FFT path, and it needs no workspace (`workspace` is still checked as the
    /// reference checks it, a contiguous rank-1 view of at least
    /// [`Backend::ssm_conv_workspace_len`] = 0 elements).
    pub(crate) fn ssm_conv_impl<T: Element>(
        &self,
        k: View<'_, Self, T>,
        u: View<'_, Self, T>,
        d: Option<View<'_, Self, T::Acc>>,
        mut y: ViewMut<'_, Self, T>,
        workspace: ViewMut<'_, Self, T::Acc>,
    ) -> Result<()> {
        let (h, l) = check_conv(
            k.layout(),
            u.layout(),
            d.as_ref().map(View::layout),
            y.layout(),
        )?;
        let need = self.ssm_conv_workspace_len(h, l)?;
        check_workspace(workspace.layout(), need)?;
        if l == 0 || h == 0 {
            return Ok(());
        }
        let total = h.checked_mul(l).ok_or(Error::Overflow { arg: "y" })?;
        let s = &self.stream;
        let (kp, kl) = (k.mem().ptr(s), lay(k.layout())?);
        let (up, ul) = (u.mem().ptr(s), lay(u.layout())?);
        let (dp, dl, has_d) = self.optional(d.as_ref())?;
        let (ym, yl) = y.parts();
        let yl = lay(yl)?;
        let yp = ym.ptr(s);
        let (hi, li) = (i(h)?, i(l)?);
        self.launch(
            &kname("ssm_conv", T::NAME),
            launch::elementwise(total),
            [&kp, &kl, &up, &ul, &dp, &dl, &has_d, &yp, &yl, &hi, &li],
        )
    }
}
