//! The fused kernels of linear associative memories (seqcore::portable::linear_memory) on the GPU.
