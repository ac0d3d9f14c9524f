#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod attention;
mod backend;
pub mod check;
mod element;
mod error;
mod layout;
mod op;
pub mod portable;
pub mod reference;
mod view;

pub use attention::{AttentionDims, AttentionMasks, AttentionParams, AttentionPlan};
#[cfg(feature = "alloc")]
pub use backend::Allocate;
pub use backend::Backend;
pub use element::{DType, Element, Real, Scalar};
pub use error::{Dims, Error, Result};
pub use half::{bf16, f16};
pub use layout::{Layout, MAX_RANK, Offsets};
pub use op::{Binary, Reduce, SoftmaxKind, Unary};
pub use reference::Reference;
pub use view::{View, ViewMut};
