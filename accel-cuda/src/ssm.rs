//! The fused kernels of state-space models: scan, convolution, Vandermonde kernel (seqcore::portable::ssm) on the GPU.
