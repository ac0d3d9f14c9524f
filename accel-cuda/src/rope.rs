//! The fused kernels of RoPE (seqcore::portable::rope) on the GPU.
