// Batched strided gemm `c = alpha a b + beta c`: 64 x 64 output tiles, 16-deep k slices staged
// in shared memory, 4 x 4 outputs per thread, accumulated in the accumulation type.

struct GemmP {
    i64 a_off, a_bs, a_rs, a_cs;
    i64 b_off, b_bs, b_rs, b_cs;
    i64 c_off, c_bs, c_rs, c_cs;
    i64 batch, m, n, k;
    double alpha, beta;
};

#define GT 64
#define GK 16

template <typename T>
__device__ void gemm_k(const T* a, const T* b, T* c, GemmP p) {
    typedef typename El<T>::A A;
    __shared__ A as[GK][GT + 1];
    __shared__ A bs[GK][GT + 1];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const A alpha = (A)p.alpha, beta = (A)p.beta;
    const i64 mt = (p.m + GT - 1) / GT, nt = (p.n + GT - 1) / GT;
    for (i64 bz = blockIdx.z; bz < p.batch; bz += gridDim.z)
    for (i64 by = blockIdx.y; by < mt; by += gridDim.y)
    for (i64 bx = blockIdx.x; bx < nt; bx += gridDim.x) {
        const i64 m0 = by * GT, n0 = bx * GT;
        const T* ab = a + p.a_off + bz * p.a_bs;
        const T* bb = b + p.b_off + bz * p.b_bs;
        A acc[4][4];
        for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) acc[i][j] = (A)0;
        for (i64 k0 = 0; k0 < p.k; k0 += GK) {
            for (int e = tid; e < GT * GK; e += 256) {
                int row = e / GK, kk = e % GK;
                i64 gi = m0 + row, gk = k0 + kk;
                as[kk][row] = (gi < p.m && gk < p.k) ? El<T>::to_acc(ab[gi * p.a_rs + gk * p.a_cs]) : (A)0;
                int kb = e / GT, col = e % GT;
                i64 gj = n0 + col, gkb = k0 + kb;
                bs[kb][col] = (gj < p.n && gkb < p.k) ? El<T>::to_acc(bb[gkb * p.b_rs + gj * p.b_cs]) : (A)0;
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < GK; ++kk) {
                A av[4], bv[4];
                for (int i = 0; i < 4; ++i) av[i] = as[kk][ty + 16 * i];
                for (int j = 0; j < 4; ++j) bv[j] = bs[kk][tx + 16 * j];
                for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
            }
            __syncthreads();
        }
        T* cb = c + p.c_off + bz * p.c_bs;
        for (int i = 0; i < 4; ++i) {
            i64 gi = m0 + ty + 16 * i;
            if (gi >= p.m) continue;
            for (int j = 0; j < 4; ++j) {
                i64 gj = n0 + tx + 16 * j;
                if (gj >= p.n) continue;
                T* cp = cb + gi * p.c_rs + gj * p.c_cs;
                A out = alpha * acc[i][j];
                // beta = 0: c is not read (a NaN there does not propagate), as BLAS.
                if (p.beta != 0.0) out += beta * El<T>::to_acc(*cp);
                *cp = El<T>::from_acc(out);
            }
        }
    }
}

#define GEMM(T, N) \
    extern "C" __global__ void __launch_bounds__(256) gemm_##N(const T* a, const T* b, T* c, GemmP p) { gemm_k<T>(a, b, c, p); }
GEMM(float, f32)
GEMM(double, f64)
GEMM(h16, f16)
GEMM(b16, bf16)
