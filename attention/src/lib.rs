#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
#[allow(unused_extern_crates)] // until the first alloc type lands
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod act;
pub mod pointer;
pub mod set_encoder;

pub use act::{Act, HaltingStep, Ponder};
pub use pointer::PointerAttention;
pub use set_encoder::{
    Isab, LayerNorm, Linear, LstmCell, Mab, MultiheadAttention, Pma, ReadProcessWrite, Sab,
};
