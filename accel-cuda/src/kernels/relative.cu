// Fused kernels: relative attention (seqcore::portable::relative).
