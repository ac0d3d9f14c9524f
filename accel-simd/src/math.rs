//! Vectorised elementary functions (exp, ln, ...) with their documented error in ULPs.
//!
//! Stub: filled with the softmax kernel.
