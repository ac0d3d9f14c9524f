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

pub use backspace::{BackspaceDecoding, BackspaceStats};
#[cfg(feature = "alloc")]
pub use beam::Hypothesis;
pub use beam::{BeamSearch, EarlyStopping, NBest};
pub use diverse::DiverseBeamSearch;
pub use insertion::{Inserted, InsertionDecoding, InsertionModel, InsertionRule};
pub use model::{BackendLanguageModel, Hypotheses, LanguageModel, OnBackend, StepTable};
pub use pointer::{PointerDecoding, PointerScorer};
pub use processors::Processors;
pub use rng::Xoshiro256;
pub use sampling::Sampling;
pub use tree::{TreeSearch, TreeStats};
#[cfg(feature = "alloc")]
pub use workspace::WorkspaceBuf;
pub use workspace::{Workspace, WorkspaceLen};
