#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
#[allow(unused_extern_crates)] // until the first alloc type lands
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod act;
pub mod kv_cache;
pub mod merge;
pub mod multi_head;
pub mod pointer;
pub mod relative;
pub mod rope;
pub mod set_encoder;

pub use act::{Act, HaltingStep, Ponder};
#[cfg(feature = "alloc")]
pub use kv_cache::GrowableKvCache;
pub use kv_cache::{
    FixedKvCache, KvCache, KvCacheDims, KvWorkspace, KvWorkspaceLen, QuantizedKvCache, RingKvCache,
};
pub use merge::{PartialAttention, merge};
pub use multi_head::MultiHeadAttention;
pub use pointer::PointerAttention;
pub use seqcore::{AttentionMasks, AttentionParams};
pub use set_encoder::{
    Isab, LayerNorm, Linear, LstmCell, Mab, MultiheadAttention, Pma, ReadProcessWrite, Sab,
};
