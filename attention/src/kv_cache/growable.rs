//! A cache that owns its memory and grows.

use core::borrow::{Borrow, BorrowMut};

use seqcore::{Allocate, AttentionParams, Element, Result, View, ViewMut};

use super::{
    KvCache, KvCacheDims, KvWorkspace, KvWorkspaceLen, attend_slots, kernel_dims, write_slots,
};

/// Every token's keys and values in memory the cache allocates from the backend
/// ([`Allocate`], feature `alloc`), doubling its capacity when full (Hugging Face's
/// `DynamicCache`). Growing allocates and copies; [`GrowableKvCache::reserve`] ahead of a decode
/// loop makes every step allocation-free.
#[derive(Debug)]
pub struct GrowableKvCache<B: Allocate, T: Element> {
    dims: KvCacheDims,
    keys: B::Buffer<T>,
    values: B::Buffer<T>,
    len: usize,
}

impl<B: Allocate, T: Element> GrowableKvCache<B, T> {
    /// An empty cache with room for `dims.capacity` tokens.
    ///
    /// # Errors
    /// [`seqcore::Error::OutOfMemory`] from the backend.
    pub fn new(backend: &B, dims: KvCacheDims) -> Result<Self> {
        Ok(GrowableKvCache {
            dims,
            keys: backend.alloc(dims.key_len()?)?,
            values: backend.alloc(dims.value_len()?)?,
            len: 0,
        })
    }

    /// Tokens the cache holds without growing.
    pub fn capacity(&self) -> usize {
        self.dims.capacity
    }

    /// Makes room for `additional` more tokens (to at least double the capacity when it grows).
    ///
    /// # Errors
    /// [`seqcore::Error::Overflow`] naming `capacity`; [`seqcore::Error::OutOfMemory`].
    pub fn reserve(&mut self, backend: &B, additional: usize) -> Result<()> {
        let want = self
            .len
            .checked_add(additional)
            .ok_or(seqcore::Error::Overflow { arg: "capacity" })?;
        if want <= self.dims.capacity {
            return Ok(());
        }
        let capacity = want.max(self.dims.capacity.saturating_mul(2));
        let dims = KvCacheDims {
            capacity,
            ..self.dims
        };
        let mut keys = backend.alloc::<T>(dims.key_len()?)?;
        let mut values = backend.alloc::<T>(dims.value_len()?)?;
        if self.len > 0 {
            let old = self.dims;
            for (src, dst, dim) in [
                (&self.keys, &mut keys, old.head_dim),
                (&self.values, &mut values, old.value_dim),
            ] {
                backend.cast(
                    View::new(src.borrow(), old.slots(dim, 0, self.len)?)?,
                    ViewMut::new(dst.borrow_mut(), dims.slots(dim, 0, self.len)?)?,
                )?;
            }
        }
        self.keys = keys;
        self.values = values;
        self.dims = dims;
        Ok(())
    }

    /// Keeps the first `len` tokens (no effect when it holds fewer): rolls back a speculative
    /// step or a rejected draft (Hugging Face's `DynamicCache.crop`).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The cached keys, `[1, Hkv, len, D]`.
    ///
    /// # Errors
    /// None in practice.
    pub fn keys(&self) -> Result<View<'_, B, T>> {
        View::new(
            self.keys.borrow(),
            self.dims.slots(self.dims.head_dim, 0, self.len)?,
        )
    }

    /// The cached values, `[1, Hkv, len, Dv]`.
    ///
    /// # Errors
    /// None in practice.
    pub fn values(&self) -> Result<View<'_, B, T>> {
        View::new(
            self.values.borrow(),
            self.dims.slots(self.dims.value_dim, 0, self.len)?,
        )
    }
}

impl<B: Allocate, T: Element> KvCache<B, T> for GrowableKvCache<B, T> {
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
        self.reserve(backend, n)?;
        write_slots(
            &self.dims,
            backend,
            self.keys.borrow_mut(),
            self.values.borrow_mut(),
            self.len,
            k,
            v,
        )?;
        self.len += n;
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
        attend_slots(
            &self.dims,
            backend,
            params,
            self.keys.borrow(),
            self.values.borrow(),
            (0, self.len, 0),
            super::signed_diff(self.len, n)?,
            q,
            o.map_layout(super::head_major)?,
            None,
            workspace.kernel,
        )
    }
}
