// Fused kernels: RoPE (seqcore::portable::rope).
