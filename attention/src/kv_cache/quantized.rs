//! An int8 cache: keys and values quantised per token and head, with f32 scales.

use seqcore::{
    AttentionMasks, AttentionParams, Backend, Element, Error, Layout, Real, Result, View, ViewMut,
};

use super::{KvCache, KvCacheDims, KvWorkspace, KvWorkspaceLen, kernel_dims, need, rows};

/// Tokens dequantised and attended per kernel call by [`QuantizedKvCache::attend`].
pub const QUANT_TILE: usize = 64;

/// Every token's keys and values quantised to int8, with one f32 scale per token and head
/// (absmax: `s = max_d |x_d| / 127`, rounded up to f32; `x_d ~ round(x_d / s) * s`), in host
/// memory the caller provides: a quarter of f32 storage plus `8 / D` bytes per element of scales
/// (as KIVI and llama.cpp's q8_0 caches, with the group being one head of one token).
///
/// **Error bound.** Each dequantised element `x^ = round(x / s) s`, rounded once to `T`, obeys
/// `|x - x^| <= s / 2 + u_T |x^|` (`u_T` the unit round-off of `T`; the product is exact in f64).
/// Through attention, with `e_k`, `e_v` the largest such key and value errors of the attended
/// tokens: every logit moves by at most `e_s = |scale| ||q||_1 e_k` (soft-capping only shrinks it),
/// every softmax weight by a factor within `exp(+-2 e_s)`, and each output element by at most
/// `e_v + (exp(2 e_s) - 1) max_j |v_j|`, plus the rounding of the computation in `T`. The tests
/// check this bound.
///
/// Attention dequantises [`QUANT_TILE`] tokens at a time into the workspace, runs the fused kernel
/// on them with their log-sum-exp and merges the partial results in the accumulation type, so its
/// scratch does not grow with the length. The quantised storage and the workspace are read on the
/// host: on a backend whose memory is not host memory ([`Backend::host`] is `None`) the calls
/// answer [`Error::Unsupported`]. Non-finite keys or values cannot be quantised: `Err(Param)`.
#[derive(Debug)]
pub struct QuantizedKvCache<'a> {
    dims: KvCacheDims,
    keys: &'a mut [i8],
    key_scales: &'a mut [f32],
    values: &'a mut [i8],
    value_scales: &'a mut [f32],
    len: usize,
}

/// The quantisation step of a group whose largest magnitude is `amax`: `amax / 127` rounded up
/// to f32 (so `|x / s| <= 127` and no code is clamped).
#[allow(clippy::cast_possible_truncation)] // rounded to nearest, then corrected upward: the intent
fn step(amax: f64) -> f32 {
    let s = amax / 127.0;
    let r = s as f32;
    if f64::from(r) < s {
        f32::from_bits(r.to_bits() + 1)
    } else {
        r
    }
}

/// `round(x / s)` as int8 (0 when `s` is 0).
#[allow(clippy::cast_possible_truncation)] // |x / s| <= 127 by the choice of s; clamped anyway
fn code(x: f64, s: f32) -> i8 {
    if s == 0.0 {
        return 0;
    }
    libm::round(x / f64::from(s)).clamp(-127.0, 127.0) as i8
}

impl<'a> QuantizedKvCache<'a> {
    /// An empty cache of `dims` over host memory: `keys` (`Hkv * capacity * D` codes),
    /// `key_scales` (`Hkv * capacity`), `values` (`Hkv * capacity * Dv`), `value_scales`.
    ///
    /// # Errors
    /// [`Error::Capacity`] naming the first slice that is too short.
    pub fn new(
        dims: KvCacheDims,
        keys: &'a mut [i8],
        key_scales: &'a mut [f32],
        values: &'a mut [i8],
        value_scales: &'a mut [f32],
    ) -> Result<Self> {
        let scales = dims
            .heads_kv
            .checked_mul(dims.capacity)
            .ok_or(Error::Overflow { arg: "capacity" })?;
        for (arg, have, want) in [
            ("keys", keys.len(), dims.key_len()?),
            ("key_scales", key_scales.len(), scales),
            ("values", values.len(), dims.value_len()?),
            ("value_scales", value_scales.len(), scales),
        ] {
            if have < want {
                return Err(Error::Capacity {
                    arg,
                    needed: want,
                    capacity: have,
                });
            }
        }
        Ok(QuantizedKvCache {
            dims,
            keys,
            key_scales,
            values,
            value_scales,
            len: 0,
        })
    }

    /// The dequantised element `(head, token, feature)` of the keys (`values: false`) or values,
    /// in f64 (exact: a 7-bit code times an f32 scale). `None` past the cached tokens.
    pub fn dequantized(&self, values: bool, head: usize, token: usize, e: usize) -> Option<f64> {
        if token >= self.len {
            return None;
        }
        let (codes, scales, dim) = if values {
            (&*self.values, &*self.value_scales, self.dims.value_dim)
        } else {
            (&*self.keys, &*self.key_scales, self.dims.head_dim)
        };
        if e >= dim || head >= self.dims.heads_kv {
            return None;
        }
        let g = head * self.dims.capacity + token;
        let c = codes.get(g * dim + e)?;
        let s = scales.get(g)?;
        Some(f64::from(*c) * f64::from(*s))
    }

    /// The scale of `(head, token)` for keys (`values: false`) or values.
    pub fn scale(&self, values: bool, head: usize, token: usize) -> Option<f32> {
        if token >= self.len || head >= self.dims.heads_kv {
            return None;
        }
        let scales = if values {
            &*self.value_scales
        } else {
            &*self.key_scales
        };
        scales.get(head * self.dims.capacity + token).copied()
    }

    /// Quantises `x [n, Hkv, dim]` (host view) into slots `len ..`.
    fn quantize<T: Element>(
        &mut self,
        arg: &'static str,
        x: &View<'_, seqcore::Reference, T>,
        values: bool,
    ) -> Result<()> {
        let (codes, scales, dim) = if values {
            (
                &mut *self.values,
                &mut *self.value_scales,
                self.dims.value_dim,
            )
        } else {
            (&mut *self.keys, &mut *self.key_scales, self.dims.head_dim)
        };
        let [s_t, s_h, s_e] =
            <[usize; 3]>::try_from(x.layout().strides()).map_err(|_| Error::Rank {
                arg,
                got: x.layout().rank(),
                min: 3,
                max: 3,
            })?;
        let n = x.shape().first().copied().unwrap_or(0);
        let mem = x.mem();
        let get = |i: usize| -> Result<f64> {
            let v = mem.get(i).ok_or(Error::OutOfBounds {
                arg,
                end: i + 1,
                len: mem.len(),
            })?;
            let v = v.to_f64();
            if v.is_finite() {
                Ok(v)
            } else {
                Err(Error::Param {
                    arg,
                    reason: "must be finite to be quantised",
                })
            }
        };
        for t in 0..n {
            for h in 0..self.dims.heads_kv {
                let base = x.layout().offset() + t * s_t + h * s_h;
                let mut amax = 0.0f64;
                for e in 0..dim {
                    amax = amax.max(get(base + e * s_e)?.abs());
                }
                let s = step(amax);
                let g = h * self.dims.capacity + self.len + t;
                let slot = scales.get_mut(g).ok_or(Error::Index {
                    arg: "key_scales",
                    end: g + 1,
                    len: 0,
                })?;
                *slot = s;
                for e in 0..dim {
                    let c = code(get(base + e * s_e)?, s);
                    let slot = codes.get_mut(g * dim + e).ok_or(Error::Index {
                        arg: "keys",
                        end: g * dim + e + 1,
                        len: 0,
                    })?;
                    *slot = c;
                }
            }
        }
        Ok(())
    }

    /// Dequantises tokens `start .. start + m` into `out` as `[1, Hkv, m, dim]` from offset `at`.
    fn dequantize_into<T: Element>(
        &self,
        values: bool,
        start: usize,
        m: usize,
        out: &mut [T],
        at: usize,
    ) -> Result<()> {
        let dim = if values {
            self.dims.value_dim
        } else {
            self.dims.head_dim
        };
        let mut i = at;
        for h in 0..self.dims.heads_kv {
            for t in start..start + m {
                for e in 0..dim {
                    let x = self.dequantized(values, h, t, e).unwrap_or(f64::NAN);
                    let slot = out.get_mut(i).ok_or(Error::Capacity {
                        arg: "partial",
                        needed: i + 1,
                        capacity: 0,
                    })?;
                    *slot = T::from_f64(x);
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

fn host_mut<'m, B: Backend + ?Sized, T: seqcore::Scalar>(
    backend: &B,
    mem: &'m mut B::Mem<T>,
) -> Result<&'m mut [T]> {
    B::host_mut(mem).ok_or(Error::Unsupported {
        op: "QuantizedKvCache",
        backend: backend.name(),
    })
}

impl<B: Backend + ?Sized, T: Element> KvCache<B, T> for QuantizedKvCache<'_> {
    fn dims(&self) -> KvCacheDims {
        self.dims
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn append(&mut self, backend: &B, k: View<'_, B, T>, v: View<'_, B, T>) -> Result<()> {
        let n = self.dims.check_kv(k.layout(), v.layout())?;
        let end = self.len.saturating_add(n);
        if end > self.dims.capacity {
            return Err(Error::Capacity {
                arg: "cache",
                needed: end,
                capacity: self.dims.capacity,
            });
        }
        let k = seqcore::portable::host_view(backend, "QuantizedKvCache", k)?;
        let v = seqcore::portable::host_view(backend, "QuantizedKvCache", v)?;
        // Check both before writing either, so that a non-finite value leaves the cache as it was.
        for (arg, x) in [("k", &k), ("v", &v)] {
            for o in x.layout().offsets() {
                if !x.mem().get(o).is_some_and(|e| e.to_f64().is_finite()) {
                    return Err(Error::Param {
                        arg,
                        reason: "must be finite to be quantised",
                    });
                }
            }
        }
        self.quantize("k", &k, false)?;
        self.quantize("v", &v, true)?;
        self.len = end;
        Ok(())
    }

    fn workspace_len(&self, backend: &B, heads_q: usize, len_q: usize) -> Result<KvWorkspaceLen> {
        let r = rows(heads_q, len_q)?;
        let overflow = Error::Overflow { arg: "len_q" };
        let d = self.dims;
        Ok(KvWorkspaceLen {
            kernel: backend
                .attention_workspace_len::<T>(&kernel_dims(&d, heads_q, len_q, QUANT_TILE))?,
            state: d
                .value_dim
                .checked_add(2)
                .and_then(|x| x.checked_mul(r))
                .ok_or(overflow)?,
            partial: d
                .head_dim
                .checked_add(d.value_dim)
                .and_then(|x| x.checked_mul(d.heads_kv))
                .and_then(|x| x.checked_mul(QUANT_TILE))
                .ok_or(overflow)?,
        })
    }

    fn attend(
        &self,
        backend: &B,
        params: &AttentionParams,
        q: View<'_, B, T>,
        o: ViewMut<'_, B, T>,
        workspace: KvWorkspace<'_, B, T>,
    ) -> Result<()> {
        let (n, hq) = self.dims.check_q(q.layout(), o.layout())?;
        let mut o = o.map_layout(super::head_major)?;
        let q = q.map_layout(super::head_major)?;
        let d = self.dims;
        let r = rows(hq, n)?;
        let dv = d.value_dim;
        let need_state = r.saturating_mul(dv + 2);
        let k_len = d
            .heads_kv
            .saturating_mul(QUANT_TILE)
            .saturating_mul(d.head_dim);
        let need_partial = k_len.saturating_add(d.heads_kv.saturating_mul(QUANT_TILE) * dv);
        need::<B, T>("partial", workspace.partial, need_partial)?;
        need::<B, T::Acc>("state", workspace.state, need_state)?;
        let q_pos = super::signed_diff(self.len, n)?;
        // Running merged state in T::Acc: lse [r] then o [r, Dv], after the partial lse [r].
        {
            let st = host_mut(backend, workspace.state)?;
            for (i, x) in st.iter_mut().take(need_state).enumerate() {
                *x = if (r..2 * r).contains(&i) {
                    T::Acc::neg_infinity()
                } else {
                    T::Acc::zero()
                };
            }
        }
        let mut start = 0;
        while start < self.len {
            let m = (self.len - start).min(QUANT_TILE);
            {
                let part = host_mut(backend, workspace.partial)?;
                self.dequantize_into(false, start, m, part, 0)?;
                self.dequantize_into(true, start, m, part, k_len)?;
            }
            let p = AttentionParams {
                query_offset: Some(q_pos - super::signed_diff(start, 0)?),
                ..*params
            };
            let partial = &*workspace.partial;
            backend.attention(
                &p,
                q,
                View::new(
                    partial,
                    Layout::contiguous(&[1, d.heads_kv, m, d.head_dim])?,
                )?,
                View::new(
                    partial,
                    Layout::contiguous_at(k_len, &[1, d.heads_kv, m, dv])?,
                )?,
                AttentionMasks::none(),
                o.reborrow(),
                Some(ViewMut::new(
                    &mut *workspace.state,
                    Layout::contiguous(&[1, hq, n])?,
                )?),
                &mut *workspace.kernel,
            )?;
            // Fold the tile's (o, lse) into the running state.
            let out = seqcore::portable::host_view(backend, "QuantizedKvCache", o.as_view())?;
            let st = host_mut(backend, workspace.state)?;
            let (lse_c, rest) = st.split_at_mut(r);
            let (lse_run, o_run) = rest.split_at_mut(r);
            fold::<T>(&out, lse_c, lse_run, o_run, dv)?;
            start += m;
        }
        // Write the merged result (zeros where no key was visible).
        let st = host_mut(backend, workspace.state)?;
        let o_run = st.get(2 * r..need_state).unwrap_or(&[]);
        let (mem, layout) = o.into_parts();
        let out = host_mut(backend, mem)?;
        for (row_off, acc) in row_offsets(&layout).zip(o_run.chunks(dv.max(1))) {
            let stride = layout.strides().last().copied().unwrap_or(1);
            for (e, &a) in acc.iter().enumerate() {
                if let Some(slot) = out.get_mut(row_off + e * stride) {
                    *slot = T::from_acc(a);
                }
            }
        }
        Ok(())
    }
}

/// The offset of every row `[.., :]` of `l`, in row-major order.
fn row_offsets(l: &Layout) -> seqcore::Offsets {
    l.split_last().0.offsets()
}

/// `(lse_run, o_run) <- merge((lse_run, o_run), (lse_c, o_c))` row by row, in `T::Acc`
/// (Milakov & Gimelshein 2018, eq. 4; a side with `lse = -inf` contributes nothing).
fn fold<T: Element>(
    o_c: &View<'_, seqcore::Reference, T>,
    lse_c: &[T::Acc],
    lse_run: &mut [T::Acc],
    o_run: &mut [T::Acc],
    dv: usize,
) -> Result<()> {
    let stride = o_c.layout().strides().last().copied().unwrap_or(1);
    let rows = row_offsets(o_c.layout())
        .zip(lse_c)
        .zip(lse_run.iter_mut().zip(o_run.chunks_mut(dv.max(1))));
    for ((off, &lc), (lr, acc)) in rows {
        let m = if lc > *lr { lc } else { *lr };
        if lc.is_nan() || lr.is_nan() {
            *lr = T::Acc::nan();
            acc.fill(T::Acc::nan());
            continue;
        }
        if m == T::Acc::neg_infinity() {
            continue;
        }
        let (wr, wc) = ((*lr - m).exp(), (lc - m).exp());
        let z = wr + wc;
        for (e, a) in acc.iter_mut().enumerate() {
            let mut y = T::Acc::zero();
            if wr != T::Acc::zero() {
                y += wr * *a;
            }
            if wc != T::Acc::zero() {
                let x = o_c.mem().get(off + e * stride).ok_or(Error::OutOfBounds {
                    arg: "o",
                    end: off + e * stride + 1,
                    len: o_c.mem().len(),
                })?;
                y += wc * x.to_acc();
            }
            *a = y / z;
        }
        *lr = m + z.ln();
    }
    Ok(())
}
