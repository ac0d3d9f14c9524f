#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod backspace;
pub mod beam;
pub mod diverse;
pub mod insertion;
pub mod model;
mod ops;
pub mod pointer;
pub mod processors;
pub mod rng;
mod rows;
pub mod sampling;
pub mod tree;
pub mod workspace;

pub use beam::{BeamSearch, EarlyStopping, NBest};
pub use diverse::DiverseBeamSearch;
#[cfg(feature = "alloc")]
pub use beam::Hypothesis;
pub use model::{Hypotheses, LanguageModel, StepTable};
pub use processors::Processors;
pub use rng::Xoshiro256;
#[cfg(feature = "alloc")]
pub use workspace::WorkspaceBuf;
pub use workspace::{Workspace, WorkspaceLen};
pub use backspace::{BackspaceDecoding, BackspaceStats};
pub use insertion::{InsertionDecoding, InsertionModel, InsertionRule, Inserted};
pub use pointer::{PointerDecoding, PointerScorer};
pub use sampling::Sampling;
pub use tree::{TreeSearch, TreeStats};
