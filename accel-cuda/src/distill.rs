//! The fused kernels of distillation losses (seqcore::portable::kd_loss) on the GPU:
//! `kernels/distill.cu`.
//!
//! Token-level distillation (Hinton et al. 2015, eq. 1 with `T^2`; GKD, Agarwal et al. 2024,
//! eq. 4; DistiLLM, Ko et al. 2024, eqs. 2-3), its sparse-teacher form (top-k logits and a tail
//! bucket), and cross-entropy with label smoothing (Szegedy et al. 2016, sec. 7; Kim & Rush 2016,
//! eq. 6), each with its gradient with respect to the student logits.
//!
//! One thread block per row computes the row's log-sum-exps, loss and gradient (the formulas of
//! seqcore's portable kernel, in the accumulation type). For the `mean` and `sum` reductions each
//! row's weighted loss goes to a per-call device scratch (`rows + 1` f64, allocated with
//! [`Allocate::alloc`], stream-ordered: these kernels have no workspace argument) and one block
//! (`kd_total`) sums it in a fixed order, so the loss is deterministic. The dense kernel's mean
//! weight `1 / kept rows` is counted from the mask on the device (`kd_count`). The sparse kernel
//! and cross-entropy check data (indices distinct and below `V`, tail mass in `[0, 1]`, targets
//! in `0..V`) with seqcore's own checks on a host copy of those small integer operands (and the
//! mask, the tail), downloaded first: such a call waits for the stream.

use std::vec::Vec;

use seqcore::portable::kd_loss::{
    CeConfig, CeRows, KdConfig, KdReduction, KdRows, Kind, SparseRows, check_ce, check_kd,
    check_sparse, count_kept, factors, row_weight, smoothing_share,
};
use seqcore::{Allocate, Backend, Element, Error, Real, Reference, Result, Scalar, View, ViewMut};

use crate::launch::{self, Lay, i, lay};
use crate::{CudaBackend, CudaMem, kname};

/// The divergence code of `kernels/distill.cu` (`KD_FWD` ...) and its parameter (`beta` or
/// `alpha` in the accumulation type, 0 otherwise), after seqcore's resolution ([`Kind::of`]:
/// JSD at 0 and 1 and skew 0 are the plain KLs).
fn kind_code<R: Real>(kind: Kind<R>) -> (i32, f64) {
    match kind {
        Kind::Fwd => (0, 0.0),
        Kind::Rev => (1, 0.0),
        Kind::Jsd(b) => (2, b.to_f64()),
        Kind::Tv => (3, 0.0),
        Kind::SkewF(a) => (4, a.to_f64()),
        Kind::SkewR(a) => (5, a.to_f64()),
    }
}

/// A host copy of a device view (all of its memory, the same layout), for seqcore's data checks.
fn host_copy<T: Scalar>(b: &CudaBackend, v: &View<'_, CudaBackend, T>) -> Result<Vec<T>> {
    let mut h = std::vec![T::default(); v.mem().len()];
    b.read(v.mem(), &mut h)?;
    Ok(h)
}

/// Where a row's loss goes: the loss view (reduction none) or a device scratch of per-row f64
/// values with room for one more (the mean weight).
struct LossOut {
    /// The loss view's layout for reduction none (otherwise unused).
    rows: Lay,
    /// 1 for reduction none.
    per_row: i32,
    /// The scratch (kept alive until the kernels are enqueued; freed stream-ordered).
    scratch: Option<CudaMem<f64>>,
}

impl CudaBackend {
    /// The scratch of a call: `rows + 1` f64 when the loss is reduced or `weight` is asked for.
    fn loss_out(
        &self,
        reduction: KdReduction,
        loss: &seqcore::Layout,
        rows: usize,
        weight: bool,
    ) -> Result<LossOut> {
        let per_row = reduction == KdReduction::None;
        let scratch = if !per_row || weight {
            let len = rows.checked_add(1).ok_or(Error::Overflow { arg: "loss" })?;
            Some(self.alloc::<f64>(len)?)
        } else {
            None
        };
        Ok(LossOut {
            rows: if per_row { lay(loss)? } else { Lay::default() },
            per_row: i32::from(per_row),
            scratch,
        })
    }

    /// The address of scratch element `at` (0 without scratch).
    fn scratch_at(&self, out: &LossOut, at: usize) -> Result<u64> {
        match &out.scratch {
            Some(m) => {
                let bytes = at
                    .checked_mul(size_of::<f64>())
                    .and_then(|b| u64::try_from(b).ok())
                    .ok_or(Error::Overflow { arg: "loss" })?;
                m.ptr(&self.stream)
                    .checked_add(bytes)
                    .ok_or(Error::Overflow { arg: "loss" })
            }
            None => Ok(0),
        }
    }

    /// `kd_total`: the reduced loss, the per-row values summed in a fixed order into `loss`
    /// (rank 0). Nothing for reduction none.
    fn kd_total<T: Element>(
        &self,
        out: &LossOut,
        rows: usize,
        loss: &mut ViewMut<'_, Self, T>,
    ) -> Result<()> {
        if out.per_row != 0 {
            return Ok(());
        }
        let rowv = self.scratch_at(out, 0)?;
        let (lm, ll) = loss.parts();
        let off = i(ll.offset())?;
        let lp = lm.ptr(&self.stream);
        let nrows = i(rows)?;
        self.launch(
            &kname("kd_total", T::NAME),
            launch::rows(1),
            [&rowv, &nrows, &lp, &off],
        )
    }

    /// The gradient's pointer, rows layout, row stride and flag (zeros without a gradient).
    fn grad_parts<T: Element>(
        &self,
        grad: &mut Option<ViewMut<'_, Self, T>>,
    ) -> Result<(u64, Lay, i64, i32)> {
        match grad {
            Some(g) => {
                let (gr, _, gs) = g.layout().split_last();
                let (gr, gs) = (lay(&gr)?, i(gs)?);
                let (gm, _) = g.parts();
                Ok((gm.ptr(&self.stream), gr, gs, 1))
            }
            None => Ok((0, Lay::default(), 0, 0)),
        }
    }

    /// Dense distillation loss and gradient (seqcore's portable `kd_loss`, Hinton et al. 2015;
    /// GKD, Agarwal et al. 2024, eq. 4; DistiLLM, Ko et al. 2024): `kd_dense` (one block per
    /// row), after `kd_count` (the mean's weight from the mask, on the device) and before
    /// `kd_total` (the reduction). Allocates `rows + 1` f64 of device scratch for the mean and
    /// sum reductions, or for a masked mean.
    pub(crate) fn kd_loss_impl<T: Element>(
        &self,
        cfg: &KdConfig,
        teacher: View<'_, Self, T>,
        student: View<'_, Self, T>,
        mask: Option<View<'_, Self, u8>>,
        mut loss: ViewMut<'_, Self, T>,
        mut grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        let KdRows {
            teacher: trows,
            student: srows,
            len: v,
            teacher_stride: ts,
            student_stride: ss,
        } = check_kd::<T::Acc>(
            cfg,
            teacher.layout(),
            student.layout(),
            mask.as_ref().map(View::layout),
            loss.layout(),
            grad.as_ref().map(ViewMut::layout),
        )?;
        let rows = trows.numel();
        if cfg.reduction == KdReduction::None && rows == 0 {
            return Ok(());
        }
        let (code, param) = kind_code(Kind::<T::Acc>::of(cfg.divergence));
        let (inv_t, t, f) = factors::<T::Acc>(cfg);
        let count_on_device = mask.is_some() && cfg.reduction == KdReduction::Mean && rows > 0;
        // Without a mask every row is kept; with one, only the mean's weight depends on it.
        let w_host = row_weight::<T::Acc>(cfg.reduction, rows).to_f64();
        let out = self.loss_out(cfg.reduction, loss.layout(), rows, count_on_device)?;
        let s = &self.stream;
        let (mp, mr, has_mask) = self.optional(mask.as_ref())?;
        let nrows = i(rows)?;
        let wdev = if count_on_device {
            let wp = self.scratch_at(&out, rows)?;
            self.launch(
                &kname("kd_count", T::NAME),
                launch::rows(1),
                [&mp, &mr, &nrows, &wp],
            )?;
            wp
        } else {
            0u64
        };
        if rows > 0 {
            let (tp, tr, tsi) = (teacher.mem().ptr(s), lay(&trows)?, i(ts)?);
            let (sp, sr, ssi) = (student.mem().ptr(s), lay(&srows)?, i(ss)?);
            let rowv = self.scratch_at(&out, 0)?;
            let (gp, gr, gs, has_grad) = self.grad_parts(&mut grad)?;
            let lp = loss.parts().0.ptr(s);
            let n = i(v)?;
            let (inv_t, t, f) = (inv_t.to_f64(), t.to_f64(), f.to_f64());
            self.launch(
                &kname("kd_dense", T::NAME),
                launch::rows(rows),
                [
                    &tp,
                    &tr,
                    &tsi,
                    &sp,
                    &sr,
                    &ssi,
                    &mp,
                    &mr,
                    &has_mask,
                    &lp,
                    &out.rows,
                    &out.per_row,
                    &rowv,
                    &gp,
                    &gr,
                    &gs,
                    &has_grad,
                    &n,
                    &nrows,
                    &code,
                    &param,
                    &inv_t,
                    &t,
                    &f,
                    &wdev,
                    &w_host,
                ],
            )?;
        }
        self.kd_total(&out, rows, &mut loss)
    }

    /// Sparse-teacher distillation (seqcore's portable `kd_loss_sparse`): the data checks on a
    /// host copy of `indices`, `tail` and `mask` (this call waits for the stream), then
    /// `kd_sparse` (one block per row) and `kd_total`. Allocates `rows + 1` f64 of device scratch
    /// for the mean and sum reductions.
    #[allow(clippy::too_many_arguments)] // the kernel's operands
    pub(crate) fn kd_loss_sparse_impl<T: Element>(
        &self,
        cfg: &KdConfig,
        values: View<'_, Self, T>,
        indices: View<'_, Self, u32>,
        tail: Option<View<'_, Self, T>>,
        student: View<'_, Self, T>,
        mask: Option<View<'_, Self, u8>>,
        mut loss: ViewMut<'_, Self, T>,
        mut grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        let hi = host_copy(self, &indices)?;
        let ht = tail.as_ref().map(|t| host_copy(self, t)).transpose()?;
        let hm = mask.as_ref().map(|m| host_copy(self, m)).transpose()?;
        let hiv = View::<Reference, u32>::new(&hi, *indices.layout())?;
        let htv = match (&ht, &tail) {
            (Some(h), Some(t)) => Some(View::<Reference, T>::new(h, *t.layout())?),
            _ => None,
        };
        let hmv = match (&hm, &mask) {
            (Some(h), Some(m)) => Some(View::<Reference, u8>::new(h, *m.layout())?),
            _ => None,
        };
        let SparseRows {
            values: vrows,
            k,
            values_stride: vs,
            indices: irows,
            indices_stride: is,
            student: srows,
            len: v,
            student_stride: ss,
        } = check_sparse::<T>(
            cfg,
            values.layout(),
            &hiv,
            htv.as_ref(),
            student.layout(),
            hmv.as_ref(),
            loss.layout(),
            grad.as_ref().map(ViewMut::layout),
        )?;
        let rows = vrows.numel();
        if cfg.reduction == KdReduction::None && rows == 0 {
            return Ok(());
        }
        let (code, param) = kind_code(Kind::<T::Acc>::of(cfg.divergence));
        let (inv_t, t, f) = factors::<T::Acc>(cfg);
        let w = row_weight::<T::Acc>(cfg.reduction, count_kept(hmv.as_ref(), &vrows)).to_f64();
        let out = self.loss_out(cfg.reduction, loss.layout(), rows, false)?;
        if rows > 0 {
            let s = &self.stream;
            let (mp, mr, has_mask) = self.optional(mask.as_ref())?;
            let (tlp, tl, has_tail) = self.optional(tail.as_ref())?;
            let (vp, vr, vsi) = (values.mem().ptr(s), lay(&vrows)?, i(vs)?);
            let (ip, ir, isi) = (indices.mem().ptr(s), lay(&irows)?, i(is)?);
            let (sp, sr, ssi) = (student.mem().ptr(s), lay(&srows)?, i(ss)?);
            let rowv = self.scratch_at(&out, 0)?;
            let (gp, gr, gs, has_grad) = self.grad_parts(&mut grad)?;
            let lp = loss.parts().0.ptr(s);
            let (ki, n, nrows) = (i(k)?, i(v)?, i(rows)?);
            let (inv_t, t, f) = (inv_t.to_f64(), t.to_f64(), f.to_f64());
            self.launch(
                &kname("kd_sparse", T::NAME),
                launch::rows(rows),
                [
                    &vp,
                    &vr,
                    &vsi,
                    &ip,
                    &ir,
                    &isi,
                    &tlp,
                    &tl,
                    &has_tail,
                    &sp,
                    &sr,
                    &ssi,
                    &mp,
                    &mr,
                    &has_mask,
                    &lp,
                    &out.rows,
                    &out.per_row,
                    &rowv,
                    &gp,
                    &gr,
                    &gs,
                    &has_grad,
                    &ki,
                    &n,
                    &nrows,
                    &code,
                    &param,
                    &inv_t,
                    &t,
                    &f,
                    &w,
                ],
            )?;
        }
        self.kd_total(&out, rows, &mut loss)
    }

    /// Cross-entropy with label smoothing (seqcore's portable `cross_entropy`; Szegedy et al.
    /// 2016, sec. 7; Kim & Rush 2016, eq. 6): the target checks on a host copy of `targets`
    /// (this call waits for the stream), then `cross_entropy` (one block per row) and
    /// `kd_total`. Allocates `rows + 1` f64 of device scratch for the mean and sum reductions.
    pub(crate) fn cross_entropy_impl<T: Element>(
        &self,
        cfg: &CeConfig,
        logits: View<'_, Self, T>,
        targets: View<'_, Self, i32>,
        mut loss: ViewMut<'_, Self, T>,
        mut grad: Option<ViewMut<'_, Self, T>>,
    ) -> Result<()> {
        let ht = host_copy(self, &targets)?;
        let htv = View::<Reference, i32>::new(&ht, *targets.layout())?;
        let CeRows {
            logits: xrows,
            len: v,
            logits_stride: xs,
            kept,
        } = check_ce::<T::Acc>(
            cfg,
            logits.layout(),
            &htv,
            loss.layout(),
            grad.as_ref().map(ViewMut::layout),
        )?;
        let rows = xrows.numel();
        if cfg.reduction == KdReduction::None && rows == 0 {
            return Ok(());
        }
        let w = row_weight::<T::Acc>(cfg.reduction, kept);
        let c = (w * T::Acc::lit(cfg.scale)).to_f64();
        let e = T::Acc::lit(cfg.label_smoothing).to_f64();
        let e_v = smoothing_share::<T::Acc>(cfg, v).to_f64();
        let out = self.loss_out(cfg.reduction, loss.layout(), rows, false)?;
        if rows > 0 {
            let s = &self.stream;
            let (xp, xr, xsi) = (logits.mem().ptr(s), lay(&xrows)?, i(xs)?);
            let (tp, tl) = (targets.mem().ptr(s), lay(targets.layout())?);
            let rowv = self.scratch_at(&out, 0)?;
            let (gp, gr, gs, has_grad) = self.grad_parts(&mut grad)?;
            let lp = loss.parts().0.ptr(s);
            let (n, nrows, ignore) = (i(v)?, i(rows)?, cfg.ignore_index);
            self.launch(
                &kname("cross_entropy", T::NAME),
                launch::rows(rows),
                [
                    &xp,
                    &xr,
                    &xsi,
                    &tp,
                    &tl,
                    &lp,
                    &out.rows,
                    &out.per_row,
                    &rowv,
                    &gp,
                    &gr,
                    &gs,
                    &has_grad,
                    &n,
                    &nrows,
                    &ignore,
                    &c,
                    &e,
                    &e_v,
                ],
            )?;
        }
        self.kd_total(&out, rows, &mut loss)
    }
}
