#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod alignment;
pub mod atlas;
pub mod sequence_level;
pub mod token_level;

pub use alignment::{Span, align, aligned_kd_loss};
pub use atlas::Atlas;
pub use seqcore::portable::kd_loss::{CeConfig, Divergence, KdConfig, KdReduction};
pub use sequence_level::sequence_cross_entropy;
pub use token_level::{kd_loss, sparse_kd_loss};
