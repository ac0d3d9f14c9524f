#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// A std-only harness: core/alloc paths buy nothing here.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

pub mod backends;
pub mod compare;
mod failure;
pub mod harness;
pub mod mechanisms;
pub mod peers;
pub mod perf;
pub mod properties;
pub mod strategies;
mod suite;
pub mod tolerance;
pub mod vectors;

pub use failure::Failure;
pub use suite::{Config, KERNELS, Report, Row, check_backend, kernels, sample};
