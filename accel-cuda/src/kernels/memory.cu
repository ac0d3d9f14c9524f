// Fused kernels: linear associative memories (seqcore::portable::linear_memory).
//
// The recurrence of one token t of head h (a_t = exp(g_t), 1 without decay; beta_t, 1 without
// a write strength; phi the feature map of q and k), row r of the state S_h [Dv, Dk]:
//
//   Additive (linear attention, Katharopoulos et al. 2020 Eq. 4-6; RetNet Eq. 1-4):
//     u = beta_t v_t[r]
//   Delta (DeltaNet, Schlag et al. 2021 / Yang et al. 2024 Eq. 1; Gated DeltaNet Eq. 10):
//     u = beta_t (v_t[r] - a_t (S_{t-1}[r] . phi(k_t)))
//   then S_t[r, j] = a_t S_{t-1}[r, j] + u phi(k_t)[j], and the post-update read
//   o_t[r] = S_t[r] . phi(q_t).
//
// Every row r evolves independently of the others (the delta rule's S k is a dot product within
// the row), so one warp owns one (head, row) pair and walks the tokens in order; lane l holds the
// columns j = l, l + 32, ... of the row. The state row stays in device memory in the
// accumulation type (each lane reads and writes only its own columns, so no synchronisation is
// needed between tokens); the two dot products per token are warp sums. The arithmetic is the
// reference's formula for formula (`a * sk` as one product, `u = beta * (v - a * sk)`,
// `s = a * s + u * k`); only the summation order of the dot products differs.
//
// Grid: warps of 32 lanes, 8 per block of 256 threads, grid-stride over the H * Dv (head, row)
// pairs (the loop is warp-uniform, so every shuffle has its full warp).

template <typename T>
__device__ __forceinline__ typename El<T>::A lm_phi(typename El<T>::A x, int elu1) {
    typedef typename El<T>::A A;
    if (!elu1) return x;
    // elu(x) + 1: x + 1 for x > 0, exp(x) otherwise (NaN takes the exp branch, as the reference).
    return x > (A)0 ? x + (A)1 : m_exp(x);
}

// `flags`: bit 0 delta rule, bit 1 elu+1 feature map, bit 2 beta given, bit 3 log_decay given,
// bit 4 o given.
template <typename T>
__device__ void linear_memory_k(const T* q, Lay lq, const T* k, Lay lk, const T* v, Lay lv,
                                const T* beta, Lay lb, const T* g, Lay lg,
                                typename El<T>::A* s, Lay ls, T* o, Lay lo,
                                i64 len, i64 heads, i64 dk, i64 dv, int flags) {
    typedef typename El<T>::A A;
    const bool delta = (flags & 1) != 0;
    const int elu1 = (flags >> 1) & 1;
    const bool has_beta = (flags & 4) != 0;
    const bool has_g = (flags & 8) != 0;
    const bool has_o = (flags & 16) != 0;
    const int lane = threadIdx.x & 31;
    const i64 wpb = (i64)(blockDim.x >> 5);
    const i64 pairs = heads * dv;
    for (i64 w = (i64)blockIdx.x * wpb + (threadIdx.x >> 5); w < pairs; w += (i64)gridDim.x * wpb) {
        const i64 h = w / dv;
        const i64 r = w - h * dv;
        A* srow = s + (ls.off + h * ls.stride[0] + r * ls.stride[1]);
        const i64 ss = ls.stride[2];
        for (i64 t = 0; t < len; ++t) {
            const i64 qo = lq.off + t * lq.stride[0] + h * lq.stride[1];
            const i64 ko = lk.off + t * lk.stride[0] + h * lk.stride[1];
            const A a = has_g ? m_exp(El<T>::to_acc(g[lg.off + t * lg.stride[0] + h * lg.stride[1]])) : (A)1;
            const A bt = has_beta ? El<T>::to_acc(beta[lb.off + t * lb.stride[0] + h * lb.stride[1]]) : (A)1;
            A u = El<T>::to_acc(v[lv.off + t * lv.stride[0] + h * lv.stride[1] + r * lv.stride[2]]);
            if (delta) {
                // S_{t-1}[r] . phi(k_t), at the undecayed state, then scaled by a_t once.
                A part = (A)0;
                for (i64 j = lane; j < dk; j += 32) {
                    part += srow[j * ss] * lm_phi<T>(El<T>::to_acc(k[ko + j * lk.stride[2]]), elu1);
                }
                const A sk = __shfl_sync(0xffffffffu, warp_sum(part), 0);
                u = u - a * sk;
            }
            u = bt * u;
            A part = (A)0;
            for (i64 j = lane; j < dk; j += 32) {
                const A kj = lm_phi<T>(El<T>::to_acc(k[ko + j * lk.stride[2]]), elu1);
                const A qj = lm_phi<T>(El<T>::to_acc(q[qo + j * lq.stride[2]]), elu1);
                const A sij = a * srow[j * ss] + u * kj;
                srow[j * ss] = sij;
                part += sij * qj;
            }
            const A rd = warp_sum(part);
            if (has_o && lane == 0) {
                o[lo.off + t * lo.stride[0] + h * lo.stride[1] + r * lo.stride[2]] = El<T>::from_acc(rd);
            }
        }
    }
}

#define LINEAR_MEMORY(T, N) \
    extern "C" __global__ void linear_memory_##N(const T* q, Lay lq, const T* k, Lay lk, const T* v, Lay lv, const T* beta, Lay lb, const T* g, Lay lg, El<T>::A* s, Lay ls, T* o, Lay lo, i64 len, i64 heads, i64 dk, i64 dv, int flags) { \
        linear_memory_k<T>(q, lq, k, lk, v, lv, beta, lb, g, lg, s, ls, o, lo, len, heads, dk, dv, flags); }
LINEAR_MEMORY(float, f32)
LINEAR_MEMORY(double, f64)
LINEAR_MEMORY(h16, f16)
LINEAR_MEMORY(b16, bf16)
