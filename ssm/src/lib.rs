#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
#[allow(unused_extern_crates)] // the alloc-only conveniences come later
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod complex;
pub mod discretization;
pub mod hippo;
pub mod layer;
pub mod s4;
pub mod s4d;

pub use complex::Complex;
pub use discretization::{DiscreteMode, Discretization, Stability, discretize};
pub use s4d::{S4d, S4dInit, S4dParams};
pub use seqcore::portable::ssm::fft;
