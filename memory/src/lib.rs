#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod linear;
pub mod miras;
pub mod parallel;

pub use linear::{Form, Gates, LinearMemory};
pub use miras::{Architecture, AttentionalBias, LearningRule, Miras, Retention};
pub use seqcore::portable::linear_memory::{
    FeatureMap, LinearMemorySpec, MemoryDims, MemoryInputs, MemoryRule,
};
