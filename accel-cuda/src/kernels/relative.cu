// Fused kernels: relative attention (seqcore::portable::relative).
//
// Attention with relative-position terms (Shaw, Uszkoreit & Vaswani 2018, eq. (3)-(5); Huang et
// al. 2018, Music Transformer, section 3.4; Raffel et al. 2020, T5, section 2.1), fused with an
// online softmax (Milakov & Gimelshein 2018):
//
//   e_ij = scale * (q_i . (k_j + rel_k[h, r])) + rel_bias[h, r],   r = index.row(j - qpos_i)
//   o_i  = sum_j softmax_j(e_ij) (v_j + rel_v[h, r])
//
// with queries aligned to the end of the keys (qpos_i = i + Lk - Lq). Structure of the generic
// attention kernel (attention.cu): one warp per query row (b, h, i), keys in tiles of 32 (one per
// lane: its table row r, its score), the Dv accumulators in shared memory, lanes split the
// features. Everything in the accumulation type, as the reference.

struct RelLays {
    Lay q, k, v;       // [B, H, Lq, D], [B, H, Lk, D], [B, H, Lk, Dv]
    Lay rk, rv, rb;    // [H, R, D], [H, R, Dv], [H, R] (stride 0 across heads when shared)
    Lay o;             // [B, H, Lq, Dv]
};

struct RelInts {
    i64 batch, heads, lq, lk, d, dv;
    i64 causal, has_rk, has_rv, has_rb;
    i64 kind;           // 0: clipped distances, 1: T5 buckets
    i64 back, fwd;      // clipped: max_back, max_fwd (saturated to i64, as the reference)
    i64 bidirectional;  // buckets
};

// libm 0.2.16's `logf` (FreeBSD e_logf.c), the function seqcore's `t5_bucket` calls, operation
// for operation in f32 with explicitly rounded intrinsics (never contracted into an FMA), so that
// the bucket, a truncation of this logarithm, equals the reference's bit for bit: CUDA's own
// `logf` may differ by an ulp, which moves a bucket boundary when the quotient is an integer
// (T5's defaults: distances 16, 32, 64 give exactly 2, 4, 6 in exact arithmetic).
__device__ __forceinline__ float rel_libm_logf(float x) {
    const float LN2_HI = __uint_as_float(0x3f317180u);
    const float LN2_LO = __uint_as_float(0x3717f7d1u);
    const float LG1 = __uint_as_float(0x3f2aaaaau);
    const float LG2 = __uint_as_float(0x3eccce13u);
    const float LG3 = __uint_as_float(0x3e91e9eeu);
    const float LG4 = __uint_as_float(0x3e789e26u);
    u32 ix = __float_as_uint(x);
    int k = 0;
    if (ix < 0x00800000u || (ix >> 31) != 0) {
        if ((ix << 1) == 0) return __fdiv_rn(-1.0f, __fmul_rn(x, x));
        if ((ix >> 31) != 0) return __fdiv_rn(__fsub_rn(x, x), 0.0f);
        k -= 25;
        x = __fmul_rn(x, __uint_as_float(0x4c000000u));
        ix = __float_as_uint(x);
    } else if (ix >= 0x7f800000u) {
        return x;
    } else if (ix == 0x3f800000u) {
        return 0.0f;
    }
    ix += 0x3f800000u - 0x3f3504f3u;
    k += (int)(ix >> 23) - 0x7f;
    ix = (ix & 0x007fffffu) + 0x3f3504f3u;
    x = __uint_as_float(ix);
    const float f = __fsub_rn(x, 1.0f);
    const float s = __fdiv_rn(f, __fadd_rn(2.0f, f));
    const float z = __fmul_rn(s, s);
    const float w = __fmul_rn(z, z);
    const float t1 = __fmul_rn(w, __fadd_rn(LG2, __fmul_rn(w, LG4)));
    const float t2 = __fmul_rn(z, __fadd_rn(LG1, __fmul_rn(w, LG3)));
    const float r = __fadd_rn(t2, t1);
    const float hfsq = __fmul_rn(__fmul_rn(0.5f, f), f);
    const float dk = (float)k;
    // s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI, left to right.
    float y = __fadd_rn(__fmul_rn(s, __fadd_rn(hfsq, r)), __fmul_rn(dk, LN2_LO));
    y = __fsub_rn(y, hfsq);
    y = __fadd_rn(y, f);
    return __fadd_rn(y, __fmul_rn(dk, LN2_HI));
}

__device__ __forceinline__ u64 rel_sat_add(u64 a, u64 b) {
    return a + b < a ? ~0ull : a + b;
}

// T5's bucket of the relative position `rp = j - qpos` (seqcore's `t5_bucket`, Hugging Face's
// `T5Attention._relative_position_bucket`). `denom` is the reference's
// `libm::log(max_distance as f64 / max_exact as f64) as f32`, computed on the host with the same
// function; the rest in f32 as the reference: `logf(d / max_exact) / denom * span`, truncated.
__device__ __forceinline__ u64 rel_t5_bucket(i64 rp, bool bidirectional, u64 num_buckets, float denom) {
    u64 n = num_buckets, bucket = 0, dist;
    // |rp| without overflow at i64's minimum.
    const u64 mag = rp < 0 ? (u64)(-(rp + 1)) + 1ull : (u64)rp;
    if (bidirectional) {
        n /= 2;
        if (rp > 0) bucket += n;
        dist = mag;
    } else {
        dist = rp < 0 ? mag : 0ull;
    }
    const u64 max_exact = n / 2;
    u64 r;
    if (dist < max_exact) {
        r = dist;
    } else {
        const float df = __ull2float_rn(dist);
        const float me = __ull2float_rn(max_exact > 1ull ? max_exact : 1ull);
        const float span = __ull2float_rn(n > max_exact ? n - max_exact : 0ull);
        const float v = __fmul_rn(__fdiv_rn(rel_libm_logf(__fdiv_rn(df, me)), denom), span);
        u64 t = 0;
        // Rust's saturating `v as usize` of a finite positive v.
        if (isfinite(v) && v > 0.0f) t = v >= 18446744073709551616.0f ? ~0ull : (u64)v;
        const u64 large = rel_sat_add(max_exact, t);
        const u64 last = n > 0 ? n - 1 : 0;
        r = large < last ? large : last;
    }
    const u64 out = rel_sat_add(bucket, r);
    const u64 top = num_buckets > 0 ? num_buckets - 1 : 0;
    return out < top ? out : top;
}

// The table row of distance `dist` (`RelativeIndex::row`).
__device__ __forceinline__ i64 rel_row(const RelInts& p, u64 num_buckets, float denom, i64 dist) {
    if (p.kind == 0) {
        // clamp(dist, -back, fwd) + back, saturating (the sum is >= 0).
        const i64 c = dist < -p.back ? -p.back : (dist > p.fwd ? p.fwd : dist);
        return (c > 0 && p.back > 0x7fffffffffffffffLL - c) ? 0x7fffffffffffffffLL : c + p.back;
    }
    const u64 b = rel_t5_bucket(dist, p.bidirectional != 0, num_buckets, denom);
    // A bucket is below num_buckets, the rows of a table that exists; saturate the cast anyway.
    return b > 0x7fffffffffffffffull ? 0x7fffffffffffffffLL : (i64)b;
}

// Products and sums rounded on their own (never contracted into an FMA).
__device__ __forceinline__ float rel_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double rel_mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float rel_add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double rel_add_rn(double a, double b) { return __dadd_rn(a, b); }

// Dynamic shared memory: per warp, q (D values) then the accumulators (Dv values), in the
// accumulation type. Absent tables (has_* = 0) are never read.
template <typename T>
__device__ void relative_k(const T* q, const T* k, const T* v, const T* rk, const T* rv,
                           const T* rb, T* o, const RelLays& L, const RelInts& p,
                           u64 num_buckets, double scale_d, float denom) {
    typedef typename El<T>::A A;
    extern __shared__ unsigned char smem_raw[];
    A* smem = reinterpret_cast<A*>(smem_raw);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    A* qs = smem + (i64)warp * (p.d + p.dv);
    A* acc = qs + p.d;
    const A NEG_INF = -m_inf<A>();
    // `T::Acc::lit(scale)`: the f64 rounded to nearest.
    const A scale = (A)scale_d;
    const i64 rows = p.batch * p.heads * p.lq;
    for (i64 row = (i64)blockIdx.x * warps + warp; row < rows; row += (i64)gridDim.x * warps) {
        const i64 i = row % p.lq, h = (row / p.lq) % p.heads, b = row / (p.lq * p.heads);
        const i64 qpos = i + p.lk - p.lq;
        const i64 qrow = L.q.off + b * L.q.stride[0] + h * L.q.stride[1] + i * L.q.stride[2];
        for (i64 e = lane; e < p.d; e += 32) qs[e] = El<T>::to_acc(q[qrow + e * L.q.stride[3]]);
        for (i64 e = lane; e < p.dv; e += 32) acc[e] = (A)0;
        __syncwarp();
        // Keys 0 .. hi: all, or with `causal` those at or before the query (none when qpos < 0).
        i64 hi = p.lk;
        if (p.causal) {
            hi = qpos + 1;
            if (hi < 0) hi = 0;
            if (hi > p.lk) hi = p.lk;
        }
        A m = NEG_INF, l = (A)0;
        bool nan = false;
        const i64 kbase = L.k.off + b * L.k.stride[0] + h * L.k.stride[1];
        const i64 vbase = L.v.off + b * L.v.stride[0] + h * L.v.stride[1];
        const i64 rkbase = L.rk.off + h * L.rk.stride[0];
        const i64 rvbase = L.rv.off + h * L.rv.stride[0];
        const i64 rbbase = L.rb.off + h * L.rb.stride[0];
        for (i64 start = 0; start < hi; start += 32) {
            const i64 j = start + lane;
            A s = NEG_INF;
            i64 r = 0;
            if (j < hi) {
                r = rel_row(p, num_buckets, denom, j - qpos);
                const i64 kr = kbase + j * L.k.stride[2];
                A dot = (A)0;
                if (p.has_rk) {
                    const i64 rr = rkbase + r * L.rk.stride[1];
                    for (i64 c = 0; c < p.d; ++c) {
                        const A kv = El<T>::to_acc(k[kr + c * L.k.stride[3]]) + El<T>::to_acc(rk[rr + c * L.rk.stride[2]]);
                        dot += qs[c] * kv;
                    }
                } else {
                    for (i64 c = 0; c < p.d; ++c) dot += qs[c] * El<T>::to_acc(k[kr + c * L.k.stride[3]]);
                }
                // `dot * scale`, rounded, then `+ bias` (no FMA across the two, as the reference).
                s = rel_mul_rn(dot, scale);
                if (p.has_rb) s = rel_add_rn(s, El<T>::to_acc(rb[rbbase + r * L.rb.stride[1]]));
            }
            // A NaN score makes the whole row NaN (the reference's `nan` flag).
            if (__any_sync(0xffffffffu, isnan(s))) { nan = true; break; }
            const A tile_max = warp_max_nan_free(s);
            const A m_new = tile_max > m ? tile_max : m;
            // Every key of the tile at -inf (or past hi): skipped, as the reference's `continue`.
            if (m_new == NEG_INF) continue;
            const A alpha = m_exp(m - m_new);
            l *= alpha;
            for (i64 e = lane; e < p.dv; e += 32) acc[e] *= alpha;
            m = m_new;
            // A key at -inf is skipped, its values never read; a visible key of weight 0 still
            // adds 0 * (v + rel_v), as the reference.
            const A pj = (s == NEG_INF) ? (A)0 : m_exp(s - m);
            l += warp_allsum(pj);
            unsigned seen = __ballot_sync(0xffffffffu, s != NEG_INF);
            while (seen) {
                const int t = __ffs(seen) - 1;
                seen &= seen - 1;
                const A pt = __shfl_sync(0xffffffffu, pj, t);
                const i64 rt = __shfl_sync(0xffffffffu, r, t);
                const i64 vr = vbase + (start + t) * L.v.stride[2];
                if (p.has_rv) {
                    const i64 rr = rvbase + rt * L.rv.stride[1];
                    for (i64 e = lane; e < p.dv; e += 32) {
                        const A vv = El<T>::to_acc(v[vr + e * L.v.stride[3]]) + El<T>::to_acc(rv[rr + e * L.rv.stride[2]]);
                        acc[e] += pt * vv;
                    }
                } else {
                    for (i64 e = lane; e < p.dv; e += 32) acc[e] += pt * El<T>::to_acc(v[vr + e * L.v.stride[3]]);
                }
            }
        }
        const i64 orow = L.o.off + b * L.o.stride[0] + h * L.o.stride[1] + i * L.o.stride[2];
        // No key seen (l = 0): zeros; a NaN score: NaN (the flag first, as the reference).
        const bool empty = !nan && l == (A)0;
        for (i64 e = lane; e < p.dv; e += 32) {
            const A y = nan ? m_nan<A>() : (empty ? (A)0 : acc[e] / l);
            o[orow + e * L.o.stride[3]] = El<T>::from_acc(y);
        }
        __syncwarp();
    }
}

#define RELATIVE(T, N) \
    extern "C" __global__ void __launch_bounds__(128) relative_attention_##N(const T* q, const T* k, const T* v, const T* rk, const T* rv, const T* rb, T* o, RelLays lays, RelInts ints, u64 num_buckets, double scale, float denom) { relative_k<T>(q, k, v, rk, rv, rb, o, lays, ints, num_buckets, scale, denom); }
RELATIVE(float, f32)
RELATIVE(double, f64)
RELATIVE(h16, f16)
RELATIVE(b16, bf16)
