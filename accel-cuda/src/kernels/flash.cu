// Tensor-core flash attention forward for f16 / bf16 (Dao 2023, FlashAttention-2: a block of 64
// query rows, 16 per warp, loops over tiles of 64 keys (32 for D = 128); S = Q K^T and O += P V
// on `mma.sync.m16n8k16` with f32 accumulation; online softmax in f32 registers). K and V tiles
// are copied with `cp.async` into two shared-memory stages (the next tile loads while this one
// is computed); V's mma fragments come from its row-major tile by `ldmatrix.trans`.
//
// Same semantics as `attention.cu` for the calls it takes (no key mask, no bias, no soft cap;
// head_dim = value_dim = 64 or 128; unit stride along the features): scale, causal / window
// ranges, GQA, lse, fully hidden rows (zeros, -inf), NaN rows. P is carried into the P V product
// as a sum of NS values of the element type (NS = 2 for f16, 3 for bf16; f16 weights scaled by
// 2^14 first, so they stay normal), so the weights keep about f32's precision (relative 2^-22 /
// 2^-24) instead of being rounded to the element type.
// One difference to the generic kernel: a NaN or infinity in `v` of a key that the causal or
// window mask hides from some rows of a 64-row tile but not from others reaches those rows
// (0 * NaN inside the tensor-core product); the generic kernel never reads hidden keys.

#define FBM 64
#define LOG2E_F 1.4426950408889634f

struct alignas(16) v16b { u32 x, y, z, w; };

template <typename T> __device__ __forceinline__ u16 bits_of(float f);
template <> __device__ __forceinline__ u16 bits_of<h16>(float f) { return f_to_h16(f); }
template <> __device__ __forceinline__ u16 bits_of<b16>(float f) { return f_to_b16(f); }
template <typename T> __device__ __forceinline__ float float_of(u16 b);
template <> __device__ __forceinline__ float float_of<h16>(u16 b) { return h16_to_f(b); }
template <> __device__ __forceinline__ float float_of<b16>(u16 b) { return b16_to_f(b); }

template <typename T> __device__ __forceinline__ void mma16816(float* c, const u32* a, const u32* b);
template <> __device__ __forceinline__ void mma16816<h16>(float* c, const u32* a, const u32* b) {
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
template <> __device__ __forceinline__ void mma16816<b16>(float* c, const u32* a, const u32* b) {
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Two floats as a packed pair of T (low half: `lo`), rounding each to nearest; `lo` and `hi`
// become the rounding residuals.
template <typename T> __device__ __forceinline__ u32 pack_split(float& lo, float& hi) {
    u16 a = bits_of<T>(lo), b = bits_of<T>(hi);
    lo -= float_of<T>(a);
    hi -= float_of<T>(b);
    return (u32)a | ((u32)b << 16);
}

// P is scaled by PS before it is split (f16: 2^14, so that weights down to 2^-28 stay normal
// f16 numbers and keep their relative precision; bf16 has f32's range: 1); O is divided by it.
template <typename T> struct PScale;
template <> struct PScale<h16> { static constexpr float v = 16384.f; };
template <> struct PScale<b16> { static constexpr float v = 1.f; };

// Shared-memory address of a generic pointer into shared memory (for cp.async / ldmatrix).
__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}
// 16 bytes global -> shared without passing through registers; `bytes` = 0 writes zeros.
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, int bytes) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory");
#endif
}
// Four 8x8 matrices of 16-bit values from shared memory, each transposed: lanes 8i..8i+7 give
// the addresses of matrix i's eight rows (16 bytes each).
__device__ __forceinline__ void ldmatrix_x4_trans(u32* r, u32 addr) {
#if __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
#endif
}

// Keys per tile: 64 for D = 64, 32 for D = 128, so that two stages of K and V tiles fit the
// 48 KiB of static shared memory.
template <int D> struct KTile { static constexpr int v = D <= 64 ? 64 : 32; };

template <typename T, int D, int NS>
__device__ void flash_k(const T* q_, const T* k_, const T* v_, T* o, float* lse, AttnP p) {
    constexpr int BN = KTile<D>::v;
    constexpr int P = D + 8;  // row pitch of the K and V tiles (elements): 16-byte rows, no bank conflicts
    // Two stages: the next tile's K and V arrive (cp.async) while this one is computed.
    __shared__ alignas(16) u16 ks[2][BN * P];
    __shared__ alignas(16) u16 vs[2][BN * P];
    const u16* q = reinterpret_cast<const u16*>(q_);
    const u16* k = reinterpret_cast<const u16*>(k_);
    const u16* v = reinterpret_cast<const u16*>(v_);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const float NEG_INF = -m_inf<float>();
    const float scale = (float)p.scale;
    const i64 qtiles = (p.lq + FBM - 1) / FBM;
    const i64 group = p.hq / p.hkv;
    for (i64 bh = blockIdx.y; bh < p.batch * p.hq; bh += gridDim.y)
    for (i64 qt = blockIdx.x; qt < qtiles; qt += gridDim.x) {
        const i64 b = bh / p.hq, h = bh % p.hq, gk = h / group;
        const i64 i0 = qt * FBM;
        const i64 r0 = i0 + warp * 16 + g, r1 = r0 + 8;
        i64 lo0 = 0, hi0 = 0, lo1 = 0, hi1 = 0;
        if (r0 < p.lq) key_range(p, r0, &lo0, &hi0);
        if (r1 < p.lq) key_range(p, r1, &lo1, &hi1);
        // Both ends of the key range grow with the row: the block needs [lo(i0), hi(last)).
        i64 last = i0 + FBM - 1;
        if (last >= p.lq) last = p.lq - 1;
        i64 kbeg, unused, unused2, kend;
        key_range(p, i0, &kbeg, &unused);
        key_range(p, last, &unused2, &kend);

        const i64 qb = p.q.off + b * p.q.stride[0] + h * p.q.stride[1];
        u32 qf[D / 16][4];
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            const int c = kk * 16 + t4 * 2;
            qf[kk][0] = r0 < p.lq ? *reinterpret_cast<const u32*>(q + qb + r0 * p.q.stride[2] + c) : 0u;
            qf[kk][1] = r1 < p.lq ? *reinterpret_cast<const u32*>(q + qb + r1 * p.q.stride[2] + c) : 0u;
            qf[kk][2] = r0 < p.lq ? *reinterpret_cast<const u32*>(q + qb + r0 * p.q.stride[2] + c + 8) : 0u;
            qf[kk][3] = r1 < p.lq ? *reinterpret_cast<const u32*>(q + qb + r1 * p.q.stride[2] + c + 8) : 0u;
        }
        float oacc[D / 8][4];
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt) oacc[nt][0] = oacc[nt][1] = oacc[nt][2] = oacc[nt][3] = 0.f;
        float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;
        int nan0 = 0, nan1 = 0;
        const i64 kbase = p.k.off + b * p.k.stride[0] + gk * p.k.stride[1];
        const i64 vbase = p.v.off + b * p.v.stride[0] + gk * p.v.stride[1];

        // Enqueues the K and V rows of the tile at `kt` into stage `st`; keys past the end are
        // zeros (read from nowhere).
        auto load = [&](i64 kt, int st) {
            for (int e = tid; e < BN * D / 8; e += blockDim.x) {
                const int row = e / (D / 8), c8 = (e % (D / 8)) * 8;
                const i64 j = kt + row;
                const int bytes = j < p.lk ? 16 : 0;
                const i64 jj = j < p.lk ? j : 0;
                cp_async16(smem_addr(&ks[st][row * P + c8]), k + kbase + jj * p.k.stride[2] + c8, bytes);
                cp_async16(smem_addr(&vs[st][row * P + c8]), v + vbase + jj * p.v.stride[2] + c8, bytes);
            }
            cp_async_commit();
        };

        const i64 kfirst = (kbeg / BN) * BN;
        // Every thread must have finished reading both stages (the previous row block) before
        // they are refilled.
        __syncthreads();
        if (kfirst < kend) load(kfirst, 0);
        int st = 0;
        for (i64 kt = kfirst; kt < kend; kt += BN, st ^= 1) {
            if (kt + BN < kend) {
                load(kt + BN, st ^ 1);
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            const u16* kst = ks[st];
            const u16* vst = vs[st];

            float s[BN / 8][4];
#pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
                for (int nt = 0; nt < BN / 8; ++nt) {
                    const u16* kr = &kst[(nt * 8 + g) * P + kk * 16 + t4 * 2];
                    u32 bf[2];
                    bf[0] = *reinterpret_cast<const u32*>(kr);
                    bf[1] = *reinterpret_cast<const u32*>(kr + 8);
                    mma16816<T>(s[nt], qf[kk], bf);
                }
            }
            // Scale, hide, find the row maxima. A tile whose every key is visible to both of
            // this thread's rows skips the per-key range test (a row past the end has the empty
            // range, so its threads always test).
            float mx0 = NEG_INF, mx1 = NEG_INF;
            if (kt >= (lo0 > lo1 ? lo0 : lo1) && kt + BN <= (hi0 < hi1 ? hi0 : hi1)) {
#pragma unroll
                for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        const float x = scale * s[nt][c];
                        s[nt][c] = x;
                        if (c >= 2) { nan1 |= x != x; mx1 = x > mx1 ? x : mx1; }
                        else { nan0 |= x != x; mx0 = x > mx0 ? x : mx0; }
                    }
                }
            } else {
#pragma unroll
                for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        const i64 j = kt + nt * 8 + t4 * 2 + (c & 1);
                        const bool second = c >= 2;
                        const i64 lo = second ? lo1 : lo0, hi = second ? hi1 : hi0;
                        float x = scale * s[nt][c];
                        if (j < lo || j >= hi) {
                            x = NEG_INF;
                        } else if (isnan(x)) {
                            if (second) nan1 = 1; else nan0 = 1;
                        }
                        s[nt][c] = x;
                        if (second) { if (x > mx1) mx1 = x; } else { if (x > mx0) mx0 = x; }
                    }
                }
            }
#pragma unroll
            for (int o2 = 1; o2 <= 2; o2 <<= 1) {
                float t0 = __shfl_xor_sync(0xffffffffu, mx0, o2);
                float t1 = __shfl_xor_sync(0xffffffffu, mx1, o2);
                if (t0 > mx0) mx0 = t0;
                if (t1 > mx1) mx1 = t1;
            }
            const float mn0 = mx0 > m0 ? mx0 : m0, mn1 = mx1 > m1 ? mx1 : m1;
            // m = -inf (nothing seen yet) gives alpha 0, acc and l being 0; a row with nothing
            // visible so far keeps alpha 1 and adds nothing.
            const float a0 = mn0 == NEG_INF ? 1.f : exp2f((m0 - mn0) * LOG2E_F);
            const float a1 = mn1 == NEG_INF ? 1.f : exp2f((m1 - mn1) * LOG2E_F);
            m0 = mn0;
            m1 = mn1;
            l0 *= a0;
            l1 *= a1;
#pragma unroll
            for (int nt = 0; nt < D / 8; ++nt) {
                oacc[nt][0] *= a0; oacc[nt][1] *= a0;
                oacc[nt][2] *= a1; oacc[nt][3] *= a1;
            }
#pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const float m = c >= 2 ? m1 : m0;
                    const float x = s[nt][c];
                    const float pr = x == NEG_INF ? 0.f : exp2f((x - m) * LOG2E_F);
                    s[nt][c] = pr * PScale<T>::v;
                    if (c >= 2) l1 += pr; else l0 += pr;
                }
            }
            // O += P V, P as NS terms of T; V's fragments (keys x features, column-major for
            // the mma) come from the row-major tile by transposing loads, two feature tiles per
            // load: lane l addresses key (l & 8) + (l & 7) of the 16, features of tile
            // nt + (l >> 4).
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                u32 af[NS][4];
#pragma unroll
                for (int term = 0; term < NS; ++term) {
                    af[term][0] = pack_split<T>(s[2 * kk][0], s[2 * kk][1]);
                    af[term][1] = pack_split<T>(s[2 * kk][2], s[2 * kk][3]);
                    af[term][2] = pack_split<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                    af[term][3] = pack_split<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
                }
#pragma unroll
                for (int nt = 0; nt < D / 8; nt += 2) {
                    u32 bf[4];
                    const int key = kk * 16 + (lane & 15);
                    const int col = (nt + (lane >> 4)) * 8;
                    ldmatrix_x4_trans(bf, smem_addr(&vst[key * P + col]));
#pragma unroll
                    for (int term = 0; term < NS; ++term) {
                        mma16816<T>(oacc[nt], af[term], bf);
                        mma16816<T>(oacc[nt + 1], af[term], bf + 2);
                    }
                }
            }
            // Every warp is done with this stage before the next iteration refills it.
            __syncthreads();
        }
        // Row sums and NaN flags over the four threads of each row.
#pragma unroll
        for (int o2 = 1; o2 <= 2; o2 <<= 1) {
            l0 += __shfl_xor_sync(0xffffffffu, l0, o2);
            l1 += __shfl_xor_sync(0xffffffffu, l1, o2);
            nan0 |= __shfl_xor_sync(0xffffffffu, nan0, o2);
            nan1 |= __shfl_xor_sync(0xffffffffu, nan1, o2);
        }
        const i64 ob = p.o.off + b * p.o.stride[0] + h * p.o.stride[1];
        T* o0 = o + ob + r0 * p.o.stride[2];
        T* o1 = o + ob + r1 * p.o.stride[2];
        const bool e0 = !nan0 && l0 == 0.f, e1 = !nan1 && l1 == 0.f;
        const float d0 = l0 * PScale<T>::v, d1 = l1 * PScale<T>::v;
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt) {
            const int c = nt * 8 + t4 * 2;
            if (r0 < p.lq) {
                o0[c] = El<T>::from_acc(nan0 ? m_nan<float>() : (e0 ? 0.f : oacc[nt][0] / d0));
                o0[c + 1] = El<T>::from_acc(nan0 ? m_nan<float>() : (e0 ? 0.f : oacc[nt][1] / d0));
            }
            if (r1 < p.lq) {
                o1[c] = El<T>::from_acc(nan1 ? m_nan<float>() : (e1 ? 0.f : oacc[nt][2] / d1));
                o1[c + 1] = El<T>::from_acc(nan1 ? m_nan<float>() : (e1 ? 0.f : oacc[nt][3] / d1));
            }
        }
        if (p.has_lse && t4 == 0) {
            const i64 lb = p.lse.off + b * p.lse.stride[0] + h * p.lse.stride[1];
            if (r0 < p.lq) lse[lb + r0 * p.lse.stride[2]] = nan0 ? m_nan<float>() : (e0 ? NEG_INF : m0 + logf(l0));
            if (r1 < p.lq) lse[lb + r1 * p.lse.stride[2]] = nan1 ? m_nan<float>() : (e1 ? NEG_INF : m1 + logf(l1));
        }
    }
}

#define FLASH(T, N, D, NS) \
    extern "C" __global__ void __launch_bounds__(128) flash_##N##_d##D(const T* q, const T* k, const T* v, T* o, float* lse, AttnP p) { flash_k<T, D, NS>(q, k, v, o, lse, p); }
FLASH(h16, f16, 64, 2)
FLASH(h16, f16, 128, 2)
FLASH(b16, bf16, 64, 3)
FLASH(b16, bf16, 128, 3)
// The weights rounded to T before P V (one term), as FlashAttention: `round_attention_weights`.
FLASH(h16, f16_rounded, 64, 1)
FLASH(h16, f16_rounded, 128, 1)
FLASH(b16, bf16_rounded, 64, 1)
FLASH(b16, bf16_rounded, 128, 1)
