//! The fused kernels of distillation losses (seqcore::portable::kd_loss) on the GPU.
