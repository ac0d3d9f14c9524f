// Fused kernels: linear associative memories (seqcore::portable::linear_memory).
