// seq-accel-cuda: definitions shared by every kernel. Compiled by NVRTC at run time, with no
// CUDA headers (NVRTC ships none by default): f16 / bf16 are raw 16-bit patterns converted with
// PTX `cvt` and bit arithmetic.

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
typedef unsigned short u16;

#define MAX_RANK 6

// A strided layout in elements (mirrors `seqcore::Layout`; `Lay` in `launch.rs`).
struct Lay {
    i64 off;
    i64 rank;
    i64 shape[MAX_RANK];
    i64 stride[MAX_RANK];
};

// The address of the `i`-th element in row-major order of `l`'s shape. Rank 0 stands for a
// contiguous operand (`launch::flat`; a true rank-0 layout has only element 0).
__device__ __forceinline__ i64 offset_of(const Lay& l, i64 i) {
    if (l.rank == 0) return l.off + i;
    i64 o = l.off;
    for (int a = (int)l.rank - 1; a >= 0; --a) {
        i64 s = l.shape[a];
        i64 q = i / s;
        o += (i - q * s) * l.stride[a];
        i = q;
    }
    return o;
}

// Storage types. f16 and bf16 are bit patterns.
struct h16 { u16 b; };
struct b16 { u16 b; };

__device__ __forceinline__ float h16_to_f(u16 b) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(b));
    return f;
}
// NaN keeps its sign and the top of its payload, quiet bit set (as the `half` crate, the
// reference's conversion; PTX `cvt` would give the canonical 0x7fff).
__device__ __forceinline__ u16 f_to_h16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (u16)(((u >> 16) & 0x8000u) | 0x7e00u | ((u & 0x007fffffu) >> 13));
    }
    u16 b;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(f));
    return b;
}
__device__ __forceinline__ float b16_to_f(u16 b) {
    return __uint_as_float(((u32)b) << 16);
}
// Round to nearest even; NaN stays a (quiet) NaN; overflow gives inf.
__device__ __forceinline__ u16 f_to_b16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (u16)((u >> 16) | 0x40u);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}
// `x` rounded to f32 *to odd* (Boldo & Melquiond 2008): rounding this to f16 / bf16 to nearest
// even equals rounding `x` once. As `f64_to_f32_round_to_odd` in seqcore.
__device__ __forceinline__ float d_to_f_odd(double x) {
    float f = __double2float_rz(x);
    if ((double)f != x && !isnan(x) && !isinf(f)) {
        f = __uint_as_float(__float_as_uint(f) | 1u);
    }
    return f;
}

// Element traits: `A` is the accumulation type (f32 for f16, bf16, f32; f64 for f64).
template <typename T> struct El;
template <> struct El<float> {
    typedef float A;
    static __device__ __forceinline__ float to_acc(float v) { return v; }
    static __device__ __forceinline__ float from_acc(float v) { return v; }
    static __device__ __forceinline__ double to_d(float v) { return (double)v; }
    static __device__ __forceinline__ float from_d(double v) { return __double2float_rn(v); }
};
template <> struct El<double> {
    typedef double A;
    static __device__ __forceinline__ double to_acc(double v) { return v; }
    static __device__ __forceinline__ double from_acc(double v) { return v; }
    static __device__ __forceinline__ double to_d(double v) { return v; }
    static __device__ __forceinline__ double from_d(double v) { return v; }
};
template <> struct El<h16> {
    typedef float A;
    static __device__ __forceinline__ float to_acc(h16 v) { return h16_to_f(v.b); }
    static __device__ __forceinline__ h16 from_acc(float v) { h16 r; r.b = f_to_h16(v); return r; }
    static __device__ __forceinline__ double to_d(h16 v) { return (double)h16_to_f(v.b); }
    static __device__ __forceinline__ h16 from_d(double v) { h16 r; r.b = f_to_h16(d_to_f_odd(v)); return r; }
};
template <> struct El<b16> {
    typedef float A;
    static __device__ __forceinline__ float to_acc(b16 v) { return b16_to_f(v.b); }
    static __device__ __forceinline__ b16 from_acc(float v) { b16 r; r.b = f_to_b16(v); return r; }
    static __device__ __forceinline__ double to_d(b16 v) { return (double)b16_to_f(v.b); }
    static __device__ __forceinline__ b16 from_d(double v) { b16 r; r.b = f_to_b16(d_to_f_odd(v)); return r; }
};

// Overloads so templates read the same in f32 and f64.
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }
template <typename A> __device__ __forceinline__ A m_inf();
template <> __device__ __forceinline__ float m_inf<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double m_inf<double>() { return __longlong_as_double(0x7ff0000000000000LL); }
template <typename A> __device__ __forceinline__ A m_nan();
template <> __device__ __forceinline__ float m_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double m_nan<double>() { return __longlong_as_double(0x7ff8000000000000LL); }
__device__ __forceinline__ bool m_signbit(float x) { return (__float_as_uint(x) >> 31) != 0; }
__device__ __forceinline__ bool m_signbit(double x) { return __double_as_longlong(x) < 0; }

// IEEE 754-2019 maximum / minimum (as seqcore's `maximum` / `minimum`).
template <typename A> __device__ __forceinline__ A ieee_max(A a, A b) {
    if (isnan(a) || isnan(b)) return m_nan<A>();
    if (a > b || (a == b && m_signbit(b))) return a;
    return b;
}
template <typename A> __device__ __forceinline__ A ieee_min(A a, A b) {
    if (isnan(a) || isnan(b)) return m_nan<A>();
    if (a < b || (a == b && m_signbit(a))) return a;
    return b;
}

// Grid-stride loop over `n` items.
#define GRID_LOOP(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// Block-wide reductions (blockDim.x a multiple of 32, at most 1024). `sh` holds 32 values.
template <typename A> __device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}
template <typename A> __device__ A block_sum(A v, A* sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    A r = (threadIdx.x < nw) ? sh[threadIdx.x] : (A)0;
    if (w == 0) r = warp_sum(r);
    if (threadIdx.x == 0) sh[0] = r;
    __syncthreads();
    r = sh[0];
    __syncthreads();
    return r;
}
// Plain `>` maximum, ignoring NaN (callers track NaN separately).
template <typename A> __device__ A block_max(A v, A* sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        A t = __shfl_down_sync(0xffffffffu, v, o);
        if (t > v) v = t;
    }
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    if (w == 0) {
        A r = (lane < nw) ? sh[lane] : -m_inf<A>();
        for (int o = 16; o > 0; o >>= 1) {
            A t = __shfl_down_sync(0xffffffffu, r, o);
            if (t > r) r = t;
        }
        if (lane == 0) sh[0] = r;
    }
    __syncthreads();
    A r = sh[0];
    __syncthreads();
    return r;
}
__device__ int block_or(int v, int* sh) {
    v = __syncthreads_or(v);
    return v;
}
