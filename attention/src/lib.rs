#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
#[allow(unused_extern_crates)] // until the first alloc type lands
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod kv_cache;
pub mod merge;
pub mod multi_head;

#[cfg(feature = "alloc")]
pub use kv_cache::GrowableKvCache;
pub use kv_cache::{
    FixedKvCache, KvCache, KvCacheDims, KvWorkspace, KvWorkspaceLen, QuantizedKvCache, RingKvCache,
};
pub use merge::{PartialAttention, merge};
pub use multi_head::MultiHeadAttention;
pub use seqcore::{AttentionMasks, AttentionParams};
