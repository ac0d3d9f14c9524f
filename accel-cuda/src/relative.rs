//! The fused kernel of relative attention (seqcore::portable::relative) on the GPU:
//! `kernels/relative.cu`.

use seqcore::portable::relative::{RelativeIndex, RelativeParams, check_relative};
use seqcore::{Element, Error, Real, Result, View, ViewMut};

use crate::error::BACKEND;
use crate::launch::{self, Lay, i, lay};
use crate::{CudaBackend, CudaMem, kname};

/// The f32 denominator of T5's logarithmic buckets, `ln(max_distance / max_exact)`, computed as
/// seqcore's `t5_bucket` does: in f64 with the same function (`<f64 as Real>::ln`, libm's `log`),
/// then rounded to f32 (Hugging Face's `math.log(max_distance / max_exact)`, a Python float that
/// divides an f32 tensor). Raffel et al. 2020 (T5), section 2.1.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
fn t5_denominator(bidirectional: bool, num_buckets: usize, max_distance: usize) -> f32 {
    let n = if bidirectional {
        num_buckets / 2
    } else {
        num_buckets
    };
    let max_exact = n / 2;
    Real::ln(max_distance as f64 / max_exact.max(1) as f64) as f32
}

/// How `kernels/relative.cu` computes the table row of a distance: `(kind, max_back, max_fwd,
/// bidirectional, num_buckets, denominator)`, kind 0 for clipped distances, 1 for T5 buckets.
fn index_args(index: &RelativeIndex) -> Result<(i64, i64, i64, i64, u64, f32)> {
    Ok(match *index {
        RelativeIndex::Clipped { max_back, max_fwd } => (
            0,
            // Saturated as `RelativeIndex::row` does.
            i64::try_from(max_back).unwrap_or(i64::MAX),
            i64::try_from(max_fwd).unwrap_or(i64::MAX),
            0,
            0,
            1.0,
        ),
        RelativeIndex::Buckets {
            bidirectional,
            num_buckets,
            max_distance,
        } => (
            1,
            0,
            0,
            i64::from(bidirectional),
            u64::try_from(num_buckets).unwrap_or(u64::MAX),
            t5_denominator(bidirectional, num_buckets, max_distance),
        ),
        _ => {
            return Err(Error::Unsupported {
                op: "relative_attention with this RelativeIndex",
                backend: BACKEND,
            });
        }
    })
}

impl CudaBackend {
    /// Relative attention on the GPU (Shaw, Uszkoreit & Vaswani 2018, eq. (3)-(5); Music
    /// Transformer, Huang et al. 2018, section 3.4; T5, Raffel et al. 2020, section 2.1), fused
    /// with an online softmax: `kernels/relative.cu`, one warp per query row, keys in tiles of
    /// 32, the semantics of `seqcore::portable::relative::relative_attention` (table rows
    /// computed on the device as `RelativeIndex::row`, T5's buckets bit for bit).
    ///
    /// The `Dv` accumulators live in shared memory: `workspace` is checked for the reference's
    /// capacity (`workspace_len(Dv)`) and not otherwise used.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn relative_attention_impl<T: Element>(
        &self,
        params: &RelativeParams,
        q: View<'_, Self, T>,
        k: View<'_, Self, T>,
        v: View<'_, Self, T>,
        rel_k: Option<View<'_, Self, T>>,
        rel_v: Option<View<'_, Self, T>>,
        rel_bias: Option<View<'_, Self, T>>,
        mut o: ViewMut<'_, Self, T>,
        workspace: &mut CudaMem<T::Acc>,
    ) -> Result<()> {
        let [nb, nh, lq, lk, d, dv] = check_relative(
            params,
            q.layout(),
            k.layout(),
            v.layout(),
            rel_k.as_ref().map(View::layout),
            rel_v.as_ref().map(View::layout),
            rel_bias.as_ref().map(View::layout),
            o.layout(),
            workspace.len(),
        )?;
        let (kind, back, fwd, bidirectional, num_buckets, denom) = index_args(&params.index)?;
        if o.layout().numel() == 0 {
            return Ok(());
        }
        let rows = nb
            .checked_mul(nh)
            .and_then(|x| x.checked_mul(lq))
            .ok_or(Error::Overflow { arg: "q" })?;
        let per_warp = d
            .checked_add(dv)
            .and_then(|x| x.checked_mul(size_of::<T::Acc>()))
            .ok_or(Error::Overflow { arg: "q" })?;
        let cfg = launch::attention(rows, per_warp).ok_or(Error::Unsupported {
            op: "relative_attention with head_dim + value_dim beyond the GPU's shared memory",
            backend: BACKEND,
        })?;
        let s = &self.stream;
        let table = |t: &Option<View<'_, Self, T>>| -> Result<(u64, Lay, i64)> {
            let (p, l, has) = self.optional(t.as_ref())?;
            Ok((p, l, i64::from(has)))
        };
        let (rkp, rkl, has_rk) = table(&rel_k)?;
        let (rvp, rvl, has_rv) = table(&rel_v)?;
        let (rbp, rbl, has_rb) = table(&rel_bias)?;
        let lays: [Lay; 7] = [
            lay(q.layout())?,
            lay(k.layout())?,
            lay(v.layout())?,
            rkl,
            rvl,
            rbl,
            lay(o.layout())?,
        ];
        let ints: [i64; 14] = [
            i(nb)?,
            i(nh)?,
            i(lq)?,
            i(lk)?,
            i(d)?,
            i(dv)?,
            i64::from(params.causal),
            has_rk,
            has_rv,
            has_rb,
            kind,
            back,
            fwd,
            bidirectional,
        ];
        // `T::Acc::lit(scale)`, as the reference rounds it.
        let scale = T::Acc::lit(params.scale).to_f64();
        let (qp, kp, vp) = (q.mem().ptr(s), k.mem().ptr(s), v.mem().ptr(s));
        let op = o.parts().0.ptr(s);
        self.launch(
            &kname("relative_attention", T::NAME),
            cfg,
            [
                &qp,
                &kp,
                &vp,
                &rkp,
                &rvp,
                &rbp,
                &op,
                &lays,
                &ints,
                &num_buckets,
                &scale,
                &denom,
            ],
        )
    }
}
