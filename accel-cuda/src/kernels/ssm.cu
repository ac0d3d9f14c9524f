// Fused kernels: state-space models: scan, convolution, Vandermonde kernel (seqcore::portable::ssm).
