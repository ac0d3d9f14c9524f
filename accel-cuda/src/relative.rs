//! The fused kernels of relative attention (seqcore::portable::relative) on the GPU.
