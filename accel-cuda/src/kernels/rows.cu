// Row kernels (one thread block per row, grid-stride over rows): reductions, softmax, top-k.
// `xr` is the layout of the rows (the input without its last axis), `xs` the stride along a row.

#define ROW_THREADS 256

// Reduction codes: `reduce_code` in `lib.rs`.
template <typename T>
__device__ void reduce_k(const T* x, Lay xr, i64 xs, i64 n, T* y, Lay yr, i64 rows, int op) {
    typedef typename El<T>::A A;
    __shared__ A sh[32];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        i64 xo = offset_of(xr, r);
        int nan = 0;
        A mx = -m_inf<A>(), mn = m_inf<A>(), mabs = (A)0, sum = (A)0;
#pragma unroll 4
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
            A v = El<T>::to_acc(x[xo + j * xs]);
            if (isnan(v)) {
                nan = 1;
            } else {
                mx = ieee_max(mx, v);
                mn = ieee_min(mn, v);
            }
            if (m_abs(v) > mabs) mabs = m_abs(v);
            sum += v;
        }
        nan = __syncthreads_or(nan);
        sum = block_sum(sum, sh);
        // ieee_max / ieee_min of the partials: warp shuffles then shared memory.
        for (int o = 16; o > 0; o >>= 1) {
            mx = ieee_max(mx, __shfl_down_sync(0xffffffffu, mx, o));
            mn = ieee_min(mn, __shfl_down_sync(0xffffffffu, mn, o));
            A t = __shfl_down_sync(0xffffffffu, mabs, o);
            if (t > mabs) mabs = t;
        }
        __shared__ A smx[32], smn[32], sab[32];
        int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
        if (lane == 0) { smx[w] = mx; smn[w] = mn; sab[w] = mabs; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int k = 1; k < nw; ++k) {
                mx = ieee_max(mx, smx[k]);
                mn = ieee_min(mn, smn[k]);
                if (sab[k] > mabs) mabs = sab[k];
            }
            smx[0] = mx; smn[0] = mn; sab[0] = mabs;
        }
        __syncthreads();
        mx = smx[0]; mn = smn[0]; mabs = sab[0];
        __syncthreads();
        A out;
        if (nan) {
            out = m_nan<A>();
        } else if (op == 0) {
            out = sum;
        } else if (op == 1) {
            out = sum / (A)n;
        } else if (op == 2) {
            out = mx;
        } else if (op == 3) {
            out = mn;
        } else if (op == 4) {
            if (isinf(mx)) {
                out = mx;
            } else {
                A s = (A)0;
                for (i64 j = threadIdx.x; j < n; j += blockDim.x) s += m_exp(El<T>::to_acc(x[xo + j * xs]) - mx);
                s = block_sum(s, sh);
                out = mx + m_log(s);
            }
        } else if (op == 5) {
            if (mabs == (A)0 || isinf(mabs)) {
                out = mabs;
            } else {
                A s = (A)0;
                for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
                    A t = El<T>::to_acc(x[xo + j * xs]) / mabs;
                    s += t * t;
                }
                s = block_sum(s, sh);
                out = mabs * m_sqrt(s);
            }
        } else {
            out = m_nan<A>();
        }
        if (threadIdx.x == 0) y[offset_of(yr, r)] = El<T>::from_acc(out);
        __syncthreads();
    }
}

// Softmax (log = 0) or log-softmax (log = 1) of `x + mask` along rows, as the reference:
// any NaN gives a NaN row, a row whose every element is -inf gives 0 (softmax) / -inf.
template <typename T>
__device__ void softmax_k(const T* x, Lay xr, i64 xs, const T* m, Lay mr, i64 ms, int has_mask,
                          T* y, Lay yr, i64 ys, i64 n, i64 rows, int log_, int cached) {
    typedef typename El<T>::A A;
    __shared__ A sh[32];
    // With `cached`, the row's `x + mask` is kept in dynamic shared memory (n values of A) by
    // the first pass, and the later passes read it there: one read of the input from device
    // memory instead of three. The arithmetic is the same either way.
    extern __shared__ __align__(16) unsigned char softmax_cache[];
    A* zc = reinterpret_cast<A*>(softmax_cache);
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        i64 xo = offset_of(xr, r), yo = offset_of(yr, r);
        i64 mo = has_mask ? offset_of(mr, r) : 0;
        int nan = 0;
        A mx = -m_inf<A>();
#pragma unroll 4
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
            A z = El<T>::to_acc(x[xo + j * xs]);
            if (has_mask) z += El<T>::to_acc(m[mo + j * ms]);
            if (cached) zc[j] = z;
            if (isnan(z)) nan = 1;
            if (z > mx) mx = z;
        }
        nan = __syncthreads_or(nan);
        mx = block_max(mx, sh);
        bool masked = (mx == -m_inf<A>());
        A sum = (A)0;
        if (!nan && !masked) {
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
                A z;
                if (cached) {
                    z = zc[j];
                } else {
                    z = El<T>::to_acc(x[xo + j * xs]);
                    if (has_mask) z += El<T>::to_acc(m[mo + j * ms]);
                }
                sum += m_exp(z - mx);
            }
            sum = block_sum(sum, sh);
        }
        A log_sum = m_log(sum);
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
            A out;
            if (nan) {
                out = m_nan<A>();
            } else if (masked) {
                out = log_ ? -m_inf<A>() : (A)0;
            } else {
                A z;
                if (cached) {
                    z = zc[j];
                } else {
                    z = El<T>::to_acc(x[xo + j * xs]);
                    if (has_mask) z += El<T>::to_acc(m[mo + j * ms]);
                }
                A d = z - mx;
                out = log_ ? d - log_sum : m_exp(d) / sum;
            }
            y[yo + j * ys] = El<T>::from_acc(out);
        }
        __syncthreads();
    }
}

// The order of torch.topk: NaN first, then larger values, ties to the lower index.
__device__ __forceinline__ bool ranks_before(double av, i64 ai, double bv, i64 bi) {
    bool an = isnan(av), bn = isnan(bv);
    if (an != bn) return an;
    if (!an && av != bv) return av > bv;
    return ai < bi;
}

// Top-k by k rounds of a block-wide selection of the best element ranked after the previous
// pick (the reference's algorithm, parallel over the row).
template <typename T>
__device__ void top_k_k(const T* x, Lay xr, i64 xs, T* v, Lay vr, i64 vs, u32* idx, Lay ir,
                        i64 is, i64 n, i64 k, i64 rows) {
    __shared__ double sv[32];
    __shared__ i64 si[32];
    __shared__ double prev_v;
    __shared__ i64 prev_i;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        i64 xo = offset_of(xr, r), vo = offset_of(vr, r), io = offset_of(ir, r);
        for (i64 t = 0; t < k; ++t) {
            double pv = 0.0;
            i64 pi = -1;
            if (t > 0) { pv = prev_v; pi = prev_i; }
            double bv = 0.0;
            i64 bi = -1;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
                double cv = El<T>::to_d(x[xo + j * xs]);
                bool after = (pi < 0) || ranks_before(pv, pi, cv, j);
                if (after && (bi < 0 || ranks_before(cv, j, bv, bi))) { bv = cv; bi = j; }
            }
            for (int o = 16; o > 0; o >>= 1) {
                double ov = __shfl_down_sync(0xffffffffu, bv, o);
                i64 oi = __shfl_down_sync(0xffffffffu, bi, o);
                if (oi >= 0 && (bi < 0 || ranks_before(ov, oi, bv, bi))) { bv = ov; bi = oi; }
            }
            int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
            __syncthreads();
            if (lane == 0) { sv[w] = bv; si[w] = bi; }
            __syncthreads();
            if (threadIdx.x == 0) {
                for (int q = 1; q < nw; ++q) {
                    if (si[q] >= 0 && (bi < 0 || ranks_before(sv[q], si[q], bv, bi))) { bv = sv[q]; bi = si[q]; }
                }
                // k <= n, so a pick always exists; copy the element itself (its bits).
                if (bi >= 0) {
                    v[vo + t * vs] = x[xo + bi * xs];
                    idx[io + t * is] = (u32)bi;
                }
                prev_v = bv;
                prev_i = bi;
            }
            __syncthreads();
        }
    }
}

#define ROWS(T, N) \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) reduce_##N(const T* x, Lay xr, i64 xs, i64 n, T* y, Lay yr, i64 rows, int op) { reduce_k<T>(x, xr, xs, n, y, yr, rows, op); } \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) softmax_##N(const T* x, Lay xr, i64 xs, const T* m, Lay mr, i64 ms, int has_mask, T* y, Lay yr, i64 ys, i64 n, i64 rows, int log_, int cached) { softmax_k<T>(x, xr, xs, m, mr, ms, has_mask, y, yr, ys, n, rows, log_, cached); } \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) top_k_##N(const T* x, Lay xr, i64 xs, T* v, Lay vr, i64 vs, u32* idx, Lay ir, i64 is, i64 n, i64 k, i64 rows) { top_k_k<T>(x, xr, xs, v, vr, vs, idx, ir, is, n, k, rows); }
ROWS(float, f32)
ROWS(double, f64)
ROWS(h16, f16)
ROWS(b16, bf16)
