//! Key/value caches for incremental decoding: the keys and values of every token seen so far, so
//! that a decode step attends its new queries over them without recomputing the past (the
//! "incremental state" of autoregressive Transformers; Hugging Face's `Cache` classes).
//!
//! | cache | memory | keeps | when full |
//! | --- | --- | --- | --- |
//! | [`FixedKvCache`] | caller's (backend memory, no heap) | every token, up to its capacity | `Err(Capacity)` |
//! | [`GrowableKvCache`] (`alloc`) | owned, grows by doubling | every token | grows (reserve ahead for allocation-free steps) |
//! | [`RingKvCache`] | caller's | the last `capacity` tokens, for a sliding window | overwrites the oldest |
//! | [`QuantizedKvCache`] | caller's host memory, int8 + f32 scales | every token, quantised | `Err(Capacity)` |
//!
//! Every cache takes token-major views: `append(k [n, Hkv, D], v [n, Hkv, Dv])`, then
//! `attend(q [n, Hq, D], o [n, Hq, Dv])` for the queries of the last `n` appended tokens (query `i`
//! at position `len - n + i`, the bottom-right alignment of [`seqcore::AttentionParams`]); the
//! cache sets [`seqcore::AttentionParams::query_offset`] itself. One cache holds one sequence
//! (one per batch row and layer). A decode step allocates nothing; its scratch is a
//! [`KvWorkspace`] sized by [`KvCache::workspace_len`].

mod fixed;
#[cfg(feature = "alloc")]
mod growable;
mod quantized;
mod ring;

pub use fixed::FixedKvCache;
#[cfg(feature = "alloc")]
pub use growable::GrowableKvCache;
pub use quantized::{QUANT_TILE, QuantizedKvCache};
pub use ring::RingKvCache;

use seqcore::{
    AttentionMasks, AttentionParams, Backend, Element, Error, Layout, Result, View, ViewMut,
};

/// The extents of a cache: `heads_kv` key/value heads of `head_dim` (keys) and `value_dim`
/// (values) features, `capacity` token slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvCacheDims {
    /// Key/value heads `Hkv`.
    pub heads_kv: usize,
    /// Key features per head `D`.
    pub head_dim: usize,
    /// Value features per head `Dv`.
    pub value_dim: usize,
    /// Token slots.
    pub capacity: usize,
}

impl KvCacheDims {
    /// Checked extents.
    ///
    /// # Errors
    /// [`Error::Param`] naming `heads_kv`, `head_dim`, `value_dim` or `capacity` when zero;
    /// [`Error::Overflow`] naming `capacity` when the element counts overflow `usize`.
    pub fn new(
        heads_kv: usize,
        head_dim: usize,
        value_dim: usize,
        capacity: usize,
    ) -> Result<Self> {
        for (arg, x) in [
            ("heads_kv", heads_kv),
            ("head_dim", head_dim),
            ("value_dim", value_dim),
            ("capacity", capacity),
        ] {
            if x == 0 {
                return Err(Error::Param {
                    arg,
                    reason: "must be at least 1",
                });
            }
        }
        let d = KvCacheDims {
            heads_kv,
            head_dim,
            value_dim,
            capacity,
        };
        d.key_len()?;
        d.value_len()?;
        Ok(d)
    }

    /// Elements of key storage, `Hkv * capacity * D`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `capacity`.
    pub fn key_len(&self) -> Result<usize> {
        mul3(self.heads_kv, self.capacity, self.head_dim)
    }

    /// Elements of value storage, `Hkv * capacity * Dv`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `capacity`.
    pub fn value_len(&self) -> Result<usize> {
        mul3(self.heads_kv, self.capacity, self.value_dim)
    }

    /// Slots `start .. start + n` of storage `[Hkv, capacity, dim]`, as `[1, Hkv, n, dim]`.
    fn slots(&self, dim: usize, start: usize, n: usize) -> Result<Layout> {
        Layout::contiguous(&[1, self.heads_kv, self.capacity, dim])?.narrow(2, start, n)
    }

    /// Checks `k [n, Hkv, D]`, `v [n, Hkv, Dv]`; returns `n`.
    fn check_kv(&self, k: &Layout, v: &Layout) -> Result<usize> {
        let n = token_count("k", k)?;
        seqcore::check::shape("k", k, &[n, self.heads_kv, self.head_dim])?;
        seqcore::check::shape("v", v, &[n, self.heads_kv, self.value_dim])?;
        Ok(n)
    }

    /// Checks `q [n, Hq, D]`, `o [n, Hq, Dv]`; returns `(n, Hq)`.
    fn check_q(&self, q: &Layout, o: &Layout) -> Result<(usize, usize)> {
        let n = token_count("q", q)?;
        let hq = q.shape().get(1).copied().unwrap_or(0);
        seqcore::check::shape("q", q, &[n, hq, self.head_dim])?;
        if hq == 0 || hq % self.heads_kv != 0 {
            return Err(Error::Param {
                arg: "q",
                reason: "its heads must be a nonzero multiple of the cache's key/value heads",
            });
        }
        seqcore::check::shape("o", o, &[n, hq, self.value_dim])?;
        Ok((n, hq))
    }
}

fn mul3(a: usize, b: usize, c: usize) -> Result<usize> {
    a.checked_mul(b)
        .and_then(|x| x.checked_mul(c))
        .ok_or(Error::Overflow { arg: "capacity" })
}

/// The token count of a rank-3 token-major operand.
fn token_count(arg: &'static str, l: &Layout) -> Result<usize> {
    if l.rank() != 3 {
        return Err(Error::Rank {
            arg,
            got: l.rank(),
            min: 3,
            max: 3,
        });
    }
    Ok(l.shape().first().copied().unwrap_or(0))
}

/// Scratch sizes of one [`KvCache::attend`] call, in elements of each [`KvWorkspace`] part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvWorkspaceLen {
    /// The fused kernel's workspace ([`Backend::attention_workspace_len`]), `T::Acc`.
    pub kernel: usize,
    /// Partial log-sum-exps and merge state, `T::Acc`.
    pub state: usize,
    /// Partial outputs (and dequantised tiles), `T`.
    pub partial: usize,
}

/// Caller-provided scratch of [`KvCache::attend`], in the backend's memory (three separate
/// memories, because the kernel's workspace and the partial results are used at the same time).
/// Give empty memories for the parts whose [`KvWorkspaceLen`] entry is 0.
#[derive(Debug)]
pub struct KvWorkspace<'a, B: Backend + ?Sized, T: Element> {
    /// At least [`KvWorkspaceLen::kernel`] elements.
    pub kernel: &'a mut B::Mem<T::Acc>,
    /// At least [`KvWorkspaceLen::state`] elements.
    pub state: &'a mut B::Mem<T::Acc>,
    /// At least [`KvWorkspaceLen::partial`] elements.
    pub partial: &'a mut B::Mem<T>,
}

/// What every cache does: append the keys and values of new tokens, and attend the new tokens'
/// queries over everything it keeps. Equal, up to rounding, to attention over the whole sequence
/// (the property tests and the `kv_cache` conformance row check it for every cache).
pub trait KvCache<B: Backend + ?Sized, T: Element> {
    /// The extents.
    fn dims(&self) -> KvCacheDims;

    /// Tokens appended so far (the position of the next one).
    fn len(&self) -> usize;

    /// No token appended yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token (keeps the memory).
    fn clear(&mut self);

    /// Appends the keys `k [n, Hkv, D]` and values `v [n, Hkv, Dv]` of the next `n` tokens.
    ///
    /// # Errors
    /// [`Error::Rank`]/[`Error::Shape`] naming `k` or `v`; [`Error::Capacity`] naming `cache`
    /// when a cache that cannot drop or grow is full (nothing is appended then).
    fn append(&mut self, backend: &B, k: View<'_, B, T>, v: View<'_, B, T>) -> Result<()>;

    /// Scratch sizes for [`KvCache::attend`] with `heads_q` query heads and `len_q` queries.
    ///
    /// # Errors
    /// [`Error::Overflow`] when a size overflows `usize`.
    fn workspace_len(&self, backend: &B, heads_q: usize, len_q: usize) -> Result<KvWorkspaceLen>;

    /// Attention of `q [n, Hq, D]`, the queries of the last `n` appended tokens, over the cached
    /// keys and values, into `o [n, Hq, Dv]`. `params` gives scale, causal, window and soft cap;
    /// its `query_offset` is set by the cache.
    ///
    /// # Errors
    /// Shape errors naming `q` or `o`; [`Error::Param`] naming `q` when its heads are not a
    /// multiple of the cache's; [`Error::Capacity`] naming a workspace part that is too short;
    /// the errors of [`Backend::attention`]; cache-specific errors documented on each cache.
    fn attend(
        &self,
        backend: &B,
        params: &AttentionParams,
        q: View<'_, B, T>,
        o: ViewMut<'_, B, T>,
        workspace: KvWorkspace<'_, B, T>,
    ) -> Result<()>;
}

/// Copies `k [n, Hkv, D]`, `v [n, Hkv, Dv]` into slots `start .. start + n` (a backend `cast`
/// from `T` to `T`, i.e. a strided copy on any backend).
fn write_slots<B: Backend + ?Sized, T: Element>(
    dims: &KvCacheDims,
    backend: &B,
    keys: &mut B::Mem<T>,
    values: &mut B::Mem<T>,
    start: usize,
    k: View<'_, B, T>,
    v: View<'_, B, T>,
) -> Result<()> {
    let n = k.shape().first().copied().unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    let hm = |l: &Layout| l.transpose(0, 1)?.unsqueeze(0);
    backend.cast(
        k.map_layout(hm)?,
        ViewMut::new(keys, dims.slots(dims.head_dim, start, n)?)?,
    )?;
    backend.cast(
        v.map_layout(hm)?,
        ViewMut::new(values, dims.slots(dims.value_dim, start, n)?)?,
    )
}

/// Token-major `[n, H, X]` as the kernel's `[1, H, n, X]`.
fn head_major(l: &Layout) -> Result<Layout> {
    l.transpose(0, 1)?.unsqueeze(0)
}

/// Attention of `q [n, Hq, D]` over the `count` keys in slots `start ..`, whose first key is at
/// position `first_pos`; query row 0 is at position `q_pos` (possibly negative). Writes `o` (`[1, Hq, n, Dv]`
/// head-major, already transformed) and optionally `lse [1, Hq, n]`.
#[allow(clippy::too_many_arguments)]
fn attend_slots<B: Backend + ?Sized, T: Element>(
    dims: &KvCacheDims,
    backend: &B,
    params: &AttentionParams,
    keys: &B::Mem<T>,
    values: &B::Mem<T>,
    (start, count, first_pos): (usize, usize, usize),
    q_pos: i64,
    q: View<'_, B, T>,
    o: ViewMut<'_, B, T>,
    lse: Option<ViewMut<'_, B, T::Acc>>,
    kernel_ws: &mut B::Mem<T::Acc>,
) -> Result<()> {
    let to_i64 = |x: usize| i64::try_from(x).map_err(|_| Error::Overflow { arg: "position" });
    let params = AttentionParams {
        query_offset: Some(q_pos - to_i64(first_pos)?),
        ..*params
    };
    let k = View::new(keys, dims.slots(dims.head_dim, start, count)?)?;
    let v = View::new(values, dims.slots(dims.value_dim, start, count)?)?;
    backend.attention(
        &params,
        q.map_layout(head_major)?,
        k,
        v,
        AttentionMasks::none(),
        o,
        lse,
        kernel_ws,
    )
}

/// `a - b` as `i64`.
fn signed_diff(a: usize, b: usize) -> Result<i64> {
    let to_i64 = |x: usize| i64::try_from(x).map_err(|_| Error::Overflow { arg: "position" });
    Ok(to_i64(a)? - to_i64(b)?)
}

/// `[n, Hq]`-row counts for the workspace queries.
fn rows(heads_q: usize, len_q: usize) -> Result<usize> {
    heads_q
        .checked_mul(len_q)
        .ok_or(Error::Overflow { arg: "len_q" })
}

/// The kernel dims of a cache attend call.
fn kernel_dims(
    dims: &KvCacheDims,
    heads_q: usize,
    len_q: usize,
    len_k: usize,
) -> seqcore::AttentionDims {
    seqcore::AttentionDims {
        batch: 1,
        heads_q,
        heads_kv: dims.heads_kv,
        len_q,
        len_k,
        head_dim: dims.head_dim,
        value_dim: dims.value_dim,
    }
}

/// A workspace part of at least `needed` elements.
fn need<B: Backend + ?Sized, T: seqcore::Scalar>(
    arg: &'static str,
    mem: &B::Mem<T>,
    needed: usize,
) -> Result<()> {
    let capacity = B::mem_len(mem);
    if capacity < needed {
        return Err(Error::Capacity {
            arg,
            needed,
            capacity,
        });
    }
    Ok(())
}
