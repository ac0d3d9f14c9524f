//! A cache of fixed capacity in memory the caller provides.

use seqcore::{AttentionParams, Backend, Element, Error, Result, View, ViewMut};

use super::{
    KvCache, KvCacheDims, KvWorkspace, KvWorkspaceLen, attend_slots, kernel_dims, need, write_slots,
};

/// Every token's keys and values, up to a fixed capacity, in backend memory the caller provides
/// (static arrays or device buffers: no heap). Storage is head-major `[Hkv, capacity, D]` for keys
/// and `[Hkv, capacity, Dv]` for values. Appending past the capacity is `Err(Capacity)`.
///
/// ```
/// use seq_attention::{FixedKvCache, KvCache, KvCacheDims, KvWorkspace};
/// use seqcore::{AttentionParams, Backend, Reference};
///
/// let b = Reference;
/// let dims = KvCacheDims::new(1, 2, 2, 4)?; // 1 KV head, D = Dv = 2, 4 tokens
/// let (mut keys, mut values) = ([0.0f32; 8], [0.0f32; 8]);
/// let mut cache = FixedKvCache::<Reference, f32>::new(dims, &mut keys, &mut values)?;
/// let mut ws = [0.0f32; 2 + 64];
/// for t in 0..4 {
///     let kv = [t as f32, 1.0];
///     cache.append(&b, b.view(&kv, &[1, 1, 2])?, b.view(&kv, &[1, 1, 2])?)?;
///     let mut o = [0.0f32; 2];
///     cache.attend(&b, &AttentionParams::causal(), b.view(&[0.0f32, 0.0], &[1, 1, 2])?,
///         b.view_mut(&mut o, &[1, 1, 2])?,
///         KvWorkspace { kernel: &mut ws, state: &mut [], partial: &mut [] })?;
///     // A zero query weighs every cached token equally: the mean of 0..=t.
///     assert!((o[0] - t as f32 / 2.0).abs() < 1e-6);
/// }
/// let kv = [9.0f32, 9.0];
/// assert!(cache.append(&b, b.view(&kv, &[1, 1, 2])?, b.view(&kv, &[1, 1, 2])?).is_err());
/// # Ok::<(), seqcore::Error>(())
/// ```
#[derive(Debug)]
pub struct FixedKvCache<'a, B: Backend + ?Sized, T: Element> {
    dims: KvCacheDims,
    keys: &'a mut B::Mem<T>,
    values: &'a mut B::Mem<T>,
    len: usize,
}

impl<'a, B: Backend + ?Sized, T: Element> FixedKvCache<'a, B, T> {
    /// An empty cache of `dims` over `keys` (at least `Hkv * capacity * D` elements) and
    /// `values` (`Hkv * capacity * Dv`).
    ///
    /// # Errors
    /// [`Error::Capacity`] naming `keys` or `values` when too short.
    pub fn new(
        dims: KvCacheDims,
        keys: &'a mut B::Mem<T>,
        values: &'a mut B::Mem<T>,
    ) -> Result<Self> {
        need::<B, T>("keys", keys, dims.key_len()?)?;
        need::<B, T>("values", values, dims.value_len()?)?;
        Ok(FixedKvCache {
            dims,
            keys,
            values,
            len: 0,
        })
    }

    /// Keeps the first `len` tokens (no effect when it holds fewer): rolls back a speculative
    /// step or a rejected draft (Hugging Face's `DynamicCache.crop`).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The cached keys, `[1, Hkv, len, D]` (a view of the storage).
    ///
    /// # Errors
    /// None in practice (the layout was checked at construction).
    pub fn keys(&self) -> Result<View<'_, B, T>> {
        View::new(self.keys, self.dims.slots(self.dims.head_dim, 0, self.len)?)
    }

    /// The cached values, `[1, Hkv, len, Dv]`.
    ///
    /// # Errors
    /// None in practice.
    pub fn values(&self) -> Result<View<'_, B, T>> {
        View::new(
            self.values,
            self.dims.slots(self.dims.value_dim, 0, self.len)?,
        )
    }
}

impl<B: Backend + ?Sized, T: Element> KvCache<B, T> for FixedKvCache<'_, B, T> {
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
        write_slots(&self.dims, backend, self.keys, self.values, self.len, k, v)?;
        self.len = end;
        Ok(())
    }

    fn workspace_len(&self, backend: &B, heads_q: usize, len_q: usize) -> Result<KvWorkspaceLen> {
        Ok(KvWorkspaceLen {
            kernel: backend
                .attention_workspace_len::<T>(&kernel_dims(&self.dims, heads_q, len_q, self.len))?,
            state: 0,
            partial: 0,
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
        let (n, _) = self.dims.check_q(q.layout(), o.layout())?;
        let o = o.map_layout(super::head_major)?;
        // Query i sits at position len - n + i (bottom-right): with more queries than cached
        // tokens, the first ones see nothing under a causal mask, as in the fused kernel.
        attend_slots(
            &self.dims,
            backend,
            params,
            self.keys,
            self.values,
            (0, self.len, 0),
            super::signed_diff(self.len, n)?,
            q,
            o,
            None,
            workspace.kernel,
        )
    }
}
