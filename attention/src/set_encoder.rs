//! Set encoders: the Read-Process-Write encoder of "Order Matters" (Vinyals et al. 2016) and the
//! Set Transformer blocks (Lee et al. 2019), composed from seqcore's kernels over any
//! [`seqcore::Backend`].
//!
//! Weights are views over backend memory (for the host backends, plain arrays) in PyTorch's
//! layouts (`nn.Linear`, `nn.LSTMCell`, `nn.MultiheadAttention`, `nn.LayerNorm`), so a trained
//! PyTorch module's `state_dict` loads tensor by tensor. Scratch memory is asked for: each block
//! names how many buffers (`BUFFERS`) of how many elements (`workspace_len`) it needs, and takes
//! them as `&mut [&mut B::Mem<T>]`; nothing allocates.

pub(crate) mod ops;
pub mod read_process_write;
pub mod set_transformer;

pub use ops::{LAYER_NORM_EPS, LayerNorm, Linear, MultiheadAttention};
pub use read_process_write::{LstmCell, ReadProcessWrite};
pub use set_transformer::{Isab, Mab, Pma, Sab};
