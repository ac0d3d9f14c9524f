//! A sliding-window cache: a ring buffer of the last `capacity` tokens.

use seqcore::{AttentionParams, Backend, Element, Error, Layout, Result, View, ViewMut};

use super::{
    KvCache, KvCacheDims, KvWorkspace, KvWorkspaceLen, attend_slots, kernel_dims, need, rows,
    write_slots,
};

/// The keys and values of the last `capacity` tokens in a ring buffer (caller memory, no heap),
/// for sliding-window attention (Mistral, Gemma 2's local layers; Hugging Face's
/// `SlidingWindowCache`): token `p` lives in slot `p % capacity`, overwriting token
/// `p - capacity`.
///
/// Attention applies the cache's window `w` (query at `p` sees keys `p - w + 1 ..= p`). A step
/// of `n` queries needs `n + w - 1 <= capacity` once the ring has wrapped (`capacity = w` for
/// one-token decoding; `w + n - 1` for chunks of `n`); asking for an evicted key is
/// `Err(Capacity)`. Slots hold keys in two runs of increasing position once wrapped: each run is
/// attended separately and the partial results merged exactly ([`crate::merge`]), except for a
/// single query that sees the whole ring, attended in one call.
#[derive(Debug)]
pub struct RingKvCache<'a, B: Backend + ?Sized, T: Element> {
    dims: KvCacheDims,
    window: usize,
    keys: &'a mut B::Mem<T>,
    values: &'a mut B::Mem<T>,
    total: usize,
}

impl<'a, B: Backend + ?Sized, T: Element> RingKvCache<'a, B, T> {
    /// An empty ring of `dims.capacity` slots for a sliding window of `window` keys, over `keys`
    /// (`Hkv * capacity * D` elements) and `values` (`Hkv * capacity * Dv`).
    ///
    /// # Errors
    /// [`Error::Param`] naming `window` when 0 or above the capacity; [`Error::Capacity`] naming
    /// `keys` or `values`.
    pub fn new(
        dims: KvCacheDims,
        window: usize,
        keys: &'a mut B::Mem<T>,
        values: &'a mut B::Mem<T>,
    ) -> Result<Self> {
        if window == 0 || window > dims.capacity {
            return Err(Error::Param {
                arg: "window",
                reason: "must be between 1 and the capacity",
            });
        }
        need::<B, T>("keys", keys, dims.key_len()?)?;
        need::<B, T>("values", values, dims.value_len()?)?;
        Ok(RingKvCache {
            dims,
            window,
            keys,
            values,
            total: 0,
        })
    }

    /// The sliding window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Tokens held: `min(len, capacity)`.
    pub fn stored(&self) -> usize {
        self.total.min(self.dims.capacity)
    }
}

impl<B: Backend + ?Sized, T: Element> KvCache<B, T> for RingKvCache<'_, B, T> {
    fn dims(&self) -> KvCacheDims {
        self.dims
    }

    fn len(&self) -> usize {
        self.total
    }

    fn clear(&mut self) {
        self.total = 0;
    }

    fn append(&mut self, backend: &B, k: View<'_, B, T>, v: View<'_, B, T>) -> Result<()> {
        let n = self.dims.check_kv(k.layout(), v.layout())?;
        let cap = self.dims.capacity;
        let total = self
            .total
            .checked_add(n)
            .ok_or(Error::Overflow { arg: "position" })?;
        // Only the last `cap` of the new tokens survive.
        let m = n.min(cap);
        let skip = n - m;
        let slot = (self.total + skip) % cap;
        let first = m.min(cap - slot);
        write_slots(
            &self.dims,
            backend,
            self.keys,
            self.values,
            slot,
            k.narrow(0, skip, first)?,
            v.narrow(0, skip, first)?,
        )?;
        write_slots(
            &self.dims,
            backend,
            self.keys,
            self.values,
            0,
            k.narrow(0, skip + first, m - first)?,
            v.narrow(0, skip + first, m - first)?,
        )?;
        self.total = total;
        Ok(())
    }

    fn workspace_len(&self, backend: &B, heads_q: usize, len_q: usize) -> Result<KvWorkspaceLen> {
        let r = rows(heads_q, len_q)?;
        let overflow = Error::Overflow { arg: "len_q" };
        Ok(KvWorkspaceLen {
            kernel: backend.attention_workspace_len::<T>(&kernel_dims(
                &self.dims,
                heads_q,
                len_q,
                self.stored(),
            ))?,
            state: r.checked_mul(2).ok_or(overflow)?,
            partial: r
                .checked_mul(self.dims.value_dim)
                .and_then(|x| x.checked_mul(2))
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
        if params.window.is_some_and(|w| w != self.window) {
            return Err(Error::Param {
                arg: "window",
                reason: "differs from the ring buffer's window",
            });
        }
        let params = AttentionParams {
            window: Some(self.window),
            ..*params
        };
        let cap = self.dims.capacity;
        let stored = self.stored();
        let first_pos = self.total - stored;
        let q_pos = super::signed_diff(self.total, n)?;
        // The oldest key the first query may see must still be in the ring.
        let w = i64::try_from(self.window).map_err(|_| Error::Overflow { arg: "window" })?;
        if first_pos > 0 && q_pos - w + 1 < super::signed_diff(first_pos, 0)? {
            return Err(Error::Capacity {
                arg: "q",
                needed: n.saturating_add(self.window - 1),
                capacity: cap,
            });
        }
        let o = o.map_layout(super::head_major)?;
        let start = first_pos % cap;
        let len1 = stored.min(cap - start);
        let len2 = stored - len1;
        if len2 == 0 || (n == 1 && stored <= self.window) {
            // One run in position order; or one query that sees every stored key (all at or
            // before it and inside its window), for which the slot order does not matter.
            let (run, p) = if len2 == 0 {
                ((start, len1, first_pos), params)
            } else {
                let all = AttentionParams {
                    causal: false,
                    window: None,
                    ..params
                };
                ((0, stored, 0), all)
            };
            return attend_slots(
                &self.dims,
                backend,
                &p,
                self.keys,
                self.values,
                run,
                q_pos,
                q,
                o,
                None,
                workspace.kernel,
            );
        }
        // Two runs: slots start.. hold the older keys, slots 0.. the newer ones.
        let r = rows(hq, n)?;
        let dv = self.dims.value_dim;
        let part = r.saturating_mul(dv);
        need::<B, T>("partial", workspace.partial, part.saturating_mul(2))?;
        need::<B, T::Acc>("state", workspace.state, r.saturating_mul(2))?;
        let (o_shape, l_shape) = ([1, hq, n, dv], [1, hq, n]);
        for (i, run) in [(start, len1, first_pos), (0, len2, first_pos + len1)]
            .into_iter()
            .enumerate()
        {
            attend_slots(
                &self.dims,
                backend,
                &params,
                self.keys,
                self.values,
                run,
                q_pos,
                q,
                ViewMut::new(
                    &mut *workspace.partial,
                    Layout::contiguous_at(i * part, &o_shape)?,
                )?,
                Some(ViewMut::new(
                    &mut *workspace.state,
                    Layout::contiguous_at(i * r, &l_shape)?,
                )?),
                &mut *workspace.kernel,
            )?;
        }
        let (partial, state) = (&*workspace.partial, &*workspace.state);
        backend.attention_merge(
            View::new(partial, Layout::contiguous_at(0, &o_shape)?)?,
            View::new(state, Layout::contiguous_at(0, &l_shape)?)?,
            View::new(partial, Layout::contiguous_at(part, &o_shape)?)?,
            View::new(state, Layout::contiguous_at(r, &l_shape)?)?,
            o,
            None,
        )
    }
}
