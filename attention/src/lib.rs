#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
#[allow(unused_extern_crates)] // until the first alloc type lands
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod relative;
pub mod rope;
