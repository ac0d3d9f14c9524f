// Fused kernels: state-space models: scan, convolution, Vandermonde kernel (seqcore::portable::ssm).
//
// S4 (Gu, Goel & Re 2022) and S4D (Gu et al. 2022) with a diagonal complex state matrix; complex
// operands are `[H, N, 2]` (`[re, im]`) in the accumulation type. Every product and sum below is
// rounded on its own (no FMA contraction), in the reference's order, so that a single step rounds
// as seqcore's portable code does; only the order of the sums over modes (scan) differs.

__device__ __forceinline__ float ssm_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double ssm_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float ssm_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double ssm_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float ssm_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double ssm_sub(double a, double b) { return __dsub_rn(a, b); }

// Element (h, n, k) of a `[H, N, 2]` layout.
__device__ __forceinline__ i64 ssm_at3(const Lay& l, i64 h, i64 n, i64 k) {
    return l.off + h * l.stride[0] + n * l.stride[1] + k * l.stride[2];
}
// Element (a, b) of a rank-2 layout.
__device__ __forceinline__ i64 ssm_at2(const Lay& l, i64 a, i64 b) {
    return l.off + a * l.stride[0] + b * l.stride[1];
}

// ---- scan: S4 eq. 3, diagonal (seqcore::portable::ssm::scan) ----
//
// One warp per channel h (grid-stride over channels), lanes over the modes n (lane, lane + 32,
// ...). Per token t, each lane advances its modes
//   x = abar x + bbar u[t, h]     (nr = ar xr - ai xi + br u, ni = ar xi + ai xr + bi u)
// in place in `state`, and sums `cr nr - ci ni` over them; a warp reduction gives
// acc = sum_n Re(c x), and lane 0 writes y[t, h] = 2 acc + d[h] u[t, h]. Without y the sums are
// skipped. The state of a mode is read and written by the same lane only.
template <typename T>
__device__ void ssm_scan_k(const typename El<T>::A* abar, Lay al, const typename El<T>::A* bbar,
                           Lay bl, const typename El<T>::A* c, Lay cl,
                           const typename El<T>::A* d, Lay dl, const T* u, Lay ul,
                           typename El<T>::A* st, Lay sl, T* y, Lay yl, int has_y, i64 H, i64 N,
                           i64 L) {
    typedef typename El<T>::A A;
    const int lane = threadIdx.x & 31;
    const i64 warps = blockDim.x >> 5;
    const A two = (A)2;
    for (i64 h = (i64)blockIdx.x * warps + (threadIdx.x >> 5); h < H;
         h += (i64)gridDim.x * warps) {
        for (i64 t = 0; t < L; ++t) {
            const A ut = El<T>::to_acc(u[ssm_at2(ul, t, h)]);
            A acc = (A)0;
            for (i64 n = lane; n < N; n += 32) {
                const A ar = abar[ssm_at3(al, h, n, 0)], ai = abar[ssm_at3(al, h, n, 1)];
                const A br = bbar[ssm_at3(bl, h, n, 0)], bi = bbar[ssm_at3(bl, h, n, 1)];
                const i64 pr = ssm_at3(sl, h, n, 0), pi = ssm_at3(sl, h, n, 1);
                const A xr = st[pr], xi = st[pi];
                const A nr = ssm_add(ssm_sub(ssm_mul(ar, xr), ssm_mul(ai, xi)), ssm_mul(br, ut));
                const A ni = ssm_add(ssm_add(ssm_mul(ar, xi), ssm_mul(ai, xr)), ssm_mul(bi, ut));
                st[pr] = nr;
                st[pi] = ni;
                if (has_y) {
                    const A cr = c[ssm_at3(cl, h, n, 0)], ci = c[ssm_at3(cl, h, n, 1)];
                    acc = ssm_add(acc, ssm_sub(ssm_mul(cr, nr), ssm_mul(ci, ni)));
                }
            }
            if (has_y) {
                // Every lane of the warp takes part (h is the same for the whole warp).
                for (int o = 16; o > 0; o >>= 1) {
                    acc = ssm_add(acc, __shfl_down_sync(0xffffffffu, acc, o));
                }
                if (lane == 0) {
                    const A out = ssm_add(ssm_mul(two, acc), ssm_mul(d[dl.off + h * dl.stride[0]], ut));
                    y[ssm_at2(yl, t, h)] = El<T>::from_acc(out);
                }
            }
        }
    }
}

// ---- Vandermonde kernel: S4D eq. 6 (seqcore::portable::ssm::vandermonde) ----
//
// One thread per output k[h, l] (grid-stride). As the reference, in f64: with
// l0 = l - l % 64 (the last restart, `RESTART` = 64) and j = l - l0, for each mode n in order
//   acc += Re(w v p),  p = exp(l0 log_z) z^j  (z = exp(log_z), j products in the reference's
// order), then k = 2 acc rounded once to T. The reference walks the 64 outputs of a restart block
// together; each thread here repeats the same products for its own j, so its value is the
// reference's operation for operation (exp, sin, cos: CUDA's f64 functions, within 2 ulp of libm).
#define SSM_RESTART 64

__device__ __forceinline__ void ssm_cexp(double re, double im, double* zr, double* zi) {
    const double m = exp(re);
    double s, c;
    sincos(im, &s, &c);
    *zr = __dmul_rn(m, c);
    *zi = __dmul_rn(m, s);
}

template <typename T>
__device__ void ssm_vandermonde_k(const typename El<T>::A* lz, Lay zl,
                                  const typename El<T>::A* w, Lay wl,
                                  const typename El<T>::A* v, Lay vl, int has_v, T* k, Lay kl,
                                  i64 H, i64 N, i64 L) {
    GRID_LOOP(idx, H * L) {
        const i64 h = idx / L, l = idx % L;
        const i64 j = l % SSM_RESTART, l0 = l - j;
        double acc = 0.0;
        for (i64 n = 0; n < N; ++n) {
            const double lr = (double)lz[ssm_at3(zl, h, n, 0)], li = (double)lz[ssm_at3(zl, h, n, 1)];
            double wr = (double)w[ssm_at3(wl, h, n, 0)], wi = (double)w[ssm_at3(wl, h, n, 1)];
            if (has_v) {
                const double vr = (double)v[ssm_at3(vl, h, n, 0)], vi = (double)v[ssm_at3(vl, h, n, 1)];
                const double r = ssm_sub(ssm_mul(wr, vr), ssm_mul(wi, vi));
                const double q = ssm_add(ssm_mul(wr, vi), ssm_mul(wi, vr));
                wr = r;
                wi = q;
            }
            double zr, zi, pr, pi;
            ssm_cexp(lr, li, &zr, &zi);
            ssm_cexp(ssm_mul(lr, (double)l0), ssm_mul(li, (double)l0), &pr, &pi);
            for (i64 s = 0; s < j; ++s) {
                const double r = ssm_sub(ssm_mul(pr, zr), ssm_mul(pi, zi));
                pi = ssm_add(ssm_mul(pr, zi), ssm_mul(pi, zr));
                pr = r;
            }
            acc = ssm_add(acc, ssm_sub(ssm_mul(wr, pr), ssm_mul(wi, pi)));
        }
        k[ssm_at2(kl, h, l)] = El<T>::from_d(ssm_mul(2.0, acc));
    }
}

// ---- convolution: S4 eq. 4-5 (seqcore::portable::ssm::conv) ----
//
// The direct causal sum (`conv_direct`), not the FFT: one thread per output y[t, h]
// (grid-stride, t fastest so that a warp reads consecutive k[h, t - s] and one u[s, h]),
//   acc = sum_{s = 0..t} k[h, t - s] u[s, h]   (in the accumulation type, from s = 0 up),
//   y[t, h] = acc + d[h] u[t, h]               (d = 0 without a skip, as the reference).
template <typename T>
__device__ void ssm_conv_k(const T* k, Lay kl, const T* u, Lay ul, const typename El<T>::A* d,
                           Lay dl, int has_d, T* y, Lay yl, i64 H, i64 L) {
    typedef typename El<T>::A A;
    GRID_LOOP(idx, H * L) {
        const i64 h = idx / L, t = idx % L;
        A acc = (A)0;
        for (i64 s = 0; s <= t; ++s) {
            const A kv = El<T>::to_acc(k[ssm_at2(kl, h, t - s)]);
            const A uv = El<T>::to_acc(u[ssm_at2(ul, s, h)]);
            acc = ssm_add(acc, ssm_mul(kv, uv));
        }
        const A dh = has_d ? d[dl.off + h * dl.stride[0]] : (A)0;
        const A ut = El<T>::to_acc(u[ssm_at2(ul, t, h)]);
        y[ssm_at2(yl, t, h)] = El<T>::from_acc(ssm_add(acc, ssm_mul(dh, ut)));
    }
}

#define SSM(T, N) \
    extern "C" __global__ void ssm_scan_##N(const El<T>::A* abar, Lay al, const El<T>::A* bbar, Lay bl, const El<T>::A* c, Lay cl, const El<T>::A* d, Lay dl, const T* u, Lay ul, El<T>::A* st, Lay sl, T* y, Lay yl, int has_y, i64 H, i64 N_, i64 L) { ssm_scan_k<T>(abar, al, bbar, bl, c, cl, d, dl, u, ul, st, sl, y, yl, has_y, H, N_, L); } \
    extern "C" __global__ void ssm_vandermonde_##N(const El<T>::A* lz, Lay zl, const El<T>::A* w, Lay wl, const El<T>::A* v, Lay vl, int has_v, T* k, Lay kl, i64 H, i64 N_, i64 L) { ssm_vandermonde_k<T>(lz, zl, w, wl, v, vl, has_v, k, kl, H, N_, L); } \
    extern "C" __global__ void ssm_conv_##N(const T* k, Lay kl, const T* u, Lay ul, const El<T>::A* d, Lay dl, int has_d, T* y, Lay yl, i64 H, i64 L) { ssm_conv_k<T>(k, kl, u, ul, d, dl, has_d, y, yl, H, L); }
SSM(float, f32)
SSM(double, f64)
SSM(h16, f16)
SSM(b16, bf16)
