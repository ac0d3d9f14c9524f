// Fused kernels: distillation losses (seqcore::portable::kd_loss).
