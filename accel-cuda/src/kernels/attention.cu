// Fused scaled-dot-product attention forward (Vaswani et al. 2017, eq. 1) with an online softmax
// over key tiles (Milakov & Gimelshein 2018; Dao et al. 2022, FlashAttention): the semantics of
// seqcore's portable kernel (`seqcore::portable::attention`), one warp per query row, keys in
// tiles of 32 (one per lane), every option: GQA, causal / window ranges, key padding mask,
// additive bias, soft cap, log-sum-exp output. Generic over strides and element types, computed
// in the accumulation type.

struct AttnP {
    Lay q, k, v, o;          // rank 4: [B, H, L, D]
    Lay mask, bias, lse;     // [B, Lk], [B, Hq, Lq, Lk], [B, Hq, Lq]
    i64 batch, hq, hkv, lq, lk, d, dv;
    i64 query_offset, window;  // window 0: none
    i64 causal, has_mask, has_bias, has_lse, has_cap;
    double scale, cap;
};

// The key range row `i` sees under the causal and window masks (`AttentionPlan::keys`).
__device__ __forceinline__ void key_range(const AttnP& p, i64 i, i64* lo, i64* hi) {
    i64 pos = i + p.query_offset;
    i64 h = p.lk;
    if (p.causal) { h = pos + 1; if (h < 0) h = 0; if (h > p.lk) h = p.lk; }
    i64 l = 0;
    if (p.window > 0) { l = pos - p.window + 1; if (l < 0) l = 0; if (l > p.lk) l = p.lk; }
    if (l > h) l = h;
    *lo = l; *hi = h;
}

template <typename A> __device__ __forceinline__ A warp_max_nan_free(A v) {
    for (int o = 16; o > 0; o >>= 1) {
        A t = __shfl_xor_sync(0xffffffffu, v, o);
        if (t > v) v = t;
    }
    return v;
}
template <typename A> __device__ __forceinline__ A warp_allsum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }

// Dynamic shared memory: per warp, q (D values) then acc (Dv values), in the accumulation type.
template <typename T>
__device__ void attention_k(const T* q, const T* k, const T* v, const unsigned char* mask,
                            const T* bias, T* o, typename El<T>::A* lse, AttnP p) {
    typedef typename El<T>::A A;
    extern __shared__ unsigned char smem_raw[];
    A* smem = reinterpret_cast<A*>(smem_raw);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    A* qs = smem + (i64)warp * (p.d + p.dv);
    A* acc = qs + p.d;
    const A NEG_INF = -m_inf<A>();
    const A scale = (A)p.scale, cap = (A)p.cap;
    const i64 rows = p.batch * p.hq * p.lq;
    const i64 group = p.hq / p.hkv;
    for (i64 row = (i64)blockIdx.x * warps + warp; row < rows; row += (i64)gridDim.x * warps) {
        const i64 i = row % p.lq, h = (row / p.lq) % p.hq, b = row / (p.lq * p.hq);
        const i64 g = h / group;
        const i64 qrow = p.q.off + b * p.q.stride[0] + h * p.q.stride[1] + i * p.q.stride[2];
        for (i64 e = lane; e < p.d; e += 32) qs[e] = El<T>::to_acc(q[qrow + e * p.q.stride[3]]);
        for (i64 e = lane; e < p.dv; e += 32) acc[e] = (A)0;
        __syncwarp();
        i64 lo, hi;
        key_range(p, i, &lo, &hi);
        A m = NEG_INF, l = (A)0;
        bool nan = false;
        const i64 kbase = p.k.off + b * p.k.stride[0] + g * p.k.stride[1];
        const i64 vbase = p.v.off + b * p.v.stride[0] + g * p.v.stride[1];
        for (i64 start = lo; start < hi; start += 32) {
            const i64 j = start + lane;
            A s = NEG_INF;
            bool visible = j < hi;
            if (visible && p.has_mask) visible = mask[p.mask.off + b * p.mask.stride[0] + j * p.mask.stride[1]] != 0;
            if (visible) {
                const i64 kr = kbase + j * p.k.stride[2];
                A dot = (A)0;
                for (i64 e = 0; e < p.d; ++e) dot += qs[e] * El<T>::to_acc(k[kr + e * p.k.stride[3]]);
                s = scale * dot;
                if (p.has_cap) s = cap * m_tanh(s / cap);
                if (p.has_bias) s += El<T>::to_acc(bias[p.bias.off + b * p.bias.stride[0] + h * p.bias.stride[1] + i * p.bias.stride[2] + j * p.bias.stride[3]]);
            }
            if (__any_sync(0xffffffffu, isnan(s))) { nan = true; break; }
            A tile_max = warp_max_nan_free(s);
            A m_new = tile_max > m ? tile_max : m;
            if (m_new == NEG_INF) continue;
            A alpha = m_exp(m - m_new);
            l *= alpha;
            for (i64 e = lane; e < p.dv; e += 32) acc[e] *= alpha;
            m = m_new;
            // Hidden keys (s = -inf) are skipped, never read; a visible key of weight 0 is still
            // added (0 * v), as the portable kernel does.
            A pj = (s == NEG_INF) ? (A)0 : m_exp(s - m);
            l += warp_allsum(pj);
            unsigned seen = __ballot_sync(0xffffffffu, s != NEG_INF);
            while (seen) {
                int t = __ffs(seen) - 1;
                seen &= seen - 1;
                A pt = __shfl_sync(0xffffffffu, pj, t);
                const i64 vr = vbase + (start + t) * p.v.stride[2];
                for (i64 e = lane; e < p.dv; e += 32) acc[e] += pt * El<T>::to_acc(v[vr + e * p.v.stride[3]]);
            }
        }
        const i64 orow = p.o.off + b * p.o.stride[0] + h * p.o.stride[1] + i * p.o.stride[2];
        const bool empty = !nan && l == (A)0;
        for (i64 e = lane; e < p.dv; e += 32) {
            A y = nan ? m_nan<A>() : (empty ? (A)0 : acc[e] / l);
            o[orow + e * p.o.stride[3]] = El<T>::from_acc(y);
        }
        if (p.has_lse && lane == 0) {
            A r = nan ? m_nan<A>() : (empty ? NEG_INF : m + m_log(l));
            lse[p.lse.off + b * p.lse.stride[0] + h * p.lse.stride[1] + i * p.lse.stride[2]] = r;
        }
        __syncwarp();
    }
}

// Merge of two partial results over disjoint key sets (Milakov & Gimelshein 2018, eq. 4), as
// `seqcore::portable::attention::merge`: one thread per output element.
template <typename T>
__device__ void attention_merge_k(const T* oa, Lay la, const typename El<T>::A* sa, Lay lsa,
                                  const T* ob, Lay lb, const typename El<T>::A* sb, Lay lsb,
                                  T* o, Lay lo, typename El<T>::A* s, Lay ls, int has_lse,
                                  i64 rows, i64 dv, i64 sta, i64 stb, i64 sto) {
    typedef typename El<T>::A A;
    const A NEG_INF = -m_inf<A>();
    GRID_LOOP(idx, rows * (dv > 0 ? dv : 1)) {
        const i64 r = dv > 0 ? idx / dv : idx, e = dv > 0 ? idx % dv : 0;
        A xa = sa[offset_of(lsa, r)], xb = sb[offset_of(lsb, r)];
        A m = xa > xb ? xa : xb;
        A wa, wb, out_lse;
        if (isnan(xa) || isnan(xb)) {
            wa = wb = out_lse = m_nan<A>();
        } else if (m == NEG_INF) {
            wa = wb = (A)0; out_lse = NEG_INF;
        } else {
            A ea = m_exp(xa - m), eb = m_exp(xb - m), z = ea + eb;
            wa = ea / z; wb = eb / z; out_lse = m + m_log(z);
        }
        if (dv > 0) {
            A y = (A)0;
            if (wa != (A)0) y += wa * El<T>::to_acc(oa[offset_of(la, r) + e * sta]);
            if (wb != (A)0) y += wb * El<T>::to_acc(ob[offset_of(lb, r) + e * stb]);
            o[offset_of(lo, r) + e * sto] = El<T>::from_acc(y);
        }
        if (has_lse && e == 0) s[offset_of(ls, r)] = out_lse;
    }
}

#define ATTENTION(T, N) \
    extern "C" __global__ void __launch_bounds__(128) attention_##N(const T* q, const T* k, const T* v, const unsigned char* mask, const T* bias, T* o, El<T>::A* lse, AttnP p) { attention_k<T>(q, k, v, mask, bias, o, lse, p); } \
    extern "C" __global__ void attention_merge_##N(const T* oa, Lay la, const El<T>::A* sa, Lay lsa, const T* ob, Lay lb, const El<T>::A* sb, Lay lsb, T* o, Lay lo, El<T>::A* s, Lay ls, int has_lse, i64 rows, i64 dv, i64 sta, i64 stb, i64 sto) { attention_merge_k<T>(oa, la, sa, lsa, ob, lb, sb, lsb, o, lo, s, ls, has_lse, rows, dv, sta, stb, sto); }
ATTENTION(float, f32)
ATTENTION(double, f64)
ATTENTION(h16, f16)
ATTENTION(b16, bf16)
