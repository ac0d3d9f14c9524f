// Fused kernels: distillation losses (seqcore::portable::kd_loss).
//
// One thread block per row (grid-stride over rows). Each row's loss (already weighted) goes to
// the loss view (reduction none) or to a per-row scratch `rowv` (f64 holding the accumulation
// type's value exactly), which `kd_total` then sums in a fixed order (deterministic). Every
// formula follows seqcore's portable kernel: `x / T` is a rounded division (never `x * (1/T)`),
// then the row's log-sum-exp is subtracted.

// Divergence codes (`kind_code` in distill.rs): seqcore's `Kind`.
#define KD_FWD 0
#define KD_REV 1
#define KD_JSD 2
#define KD_TV 3
#define KD_SKEWF 4
#define KD_SKEWR 5

// x (ln x - ln y), with 0 ln 0 = 0 whatever y.
template <typename A> __device__ __forceinline__ A kd_xlog(A x, A lx, A ly) {
    return x == (A)0 ? (A)0 : x * (lx - ly);
}

// `Kind::term`: one term (phi, g) of a row from p, q, ln p, ln q.
template <typename A>
__device__ __forceinline__ void kd_term(int kind, A a, A p, A q, A lp, A lq, A& phi, A& g) {
    const A zero = (A)0, one = (A)1;
    switch (kind) {
    case KD_FWD:
        phi = kd_xlog(p, lp, lq);
        g = p == zero ? zero : -p / q;
        break;
    case KD_REV:
        phi = kd_xlog(q, lq, lp);
        g = lq - lp + one;
        break;
    case KD_JSD: {
        A m = a * p + (one - a) * q;
        A lm = m_log(m);
        phi = a * kd_xlog(p, lp, lm) + (one - a) * kd_xlog(q, lq, lm);
        g = (one - a) * (lq - lm);
        break;
    }
    case KD_TV: {
        A d = q - p;
        A half = (A)0.5;
        phi = m_abs(d) * half;
        g = d > zero ? half : (d < zero ? -half : zero);
        break;
    }
    case KD_SKEWF: {
        A m = a * p + (one - a) * q;
        g = p == zero ? zero : (-(one - a)) * p / m;
        phi = kd_xlog(p, lp, m_log(m));
        break;
    }
    default: { // KD_SKEWR
        A m = a * q + (one - a) * p;
        A lm = m_log(m);
        g = q == zero ? zero : lq - lm + one - a * q / m;
        phi = kd_xlog(q, lq, lm);
        break;
    }
    }
}

// The value of seqcore's online log-sum-exp (`Lse::value`) over `get(0..n)`, block-wide (every
// thread of the block calls it and gets the result). The online form's special values do not
// depend on the order of the elements, so they are found by class: `-inf` elements are skipped;
// a NaN with any finite or `+inf` element gives NaN (a NaN alone, or with `-inf`s only, gives
// `-inf`); two `+inf`s give NaN (`inf - inf`), one gives `+inf`; no finite element `-inf`;
// otherwise `max + ln sum exp(x - max)`.
template <typename A, typename F>
__device__ A kd_block_lse(i64 n, F get, A* sh) {
    A mx = -m_inf<A>();
    int nan = 0, fin = 0, pinf = 0;
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
        A a = get(j);
        if (isnan(a)) {
            nan = 1;
        } else if (isinf(a)) {
            if (a > (A)0 && pinf < 2) ++pinf;
        } else {
            fin = 1;
            if (a > mx) mx = a;
        }
    }
    nan = __syncthreads_or(nan);
    fin = __syncthreads_or(fin);
    int p1 = __syncthreads_count(pinf >= 1);
    int p2 = __syncthreads_or(pinf >= 2);
    mx = block_max(mx, sh);
    if (nan && (fin || p1 > 0)) return m_nan<A>();
    if (p2 || p1 >= 2) return m_nan<A>();
    if (p1 == 1) return m_inf<A>();
    if (!fin) return -m_inf<A>();
    A s = (A)0;
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) s += m_exp(get(j) - mx);
    s = block_sum(s, sh);
    return mx + m_log(s);
}

// Records one row's weighted loss `l`: the loss view for reduction none, else the scratch.
template <typename T>
__device__ __forceinline__ void kd_put(typename El<T>::A l, T* loss, const Lay& lr, int per_row,
                                       double* rowv, i64 r) {
    if (threadIdx.x != 0) return;
    if (per_row) {
        loss[offset_of(lr, r)] = El<T>::from_acc(l);
    } else {
        rowv[r] = (double)l;
    }
}

// A row that contributes nothing: loss 0, gradient 0.
template <typename T>
__device__ void kd_nothing(T* loss, const Lay& lr, int per_row, double* rowv, i64 r, T* g,
                           const Lay& gr, i64 gs, int has_grad, i64 n) {
    typedef typename El<T>::A A;
    kd_put<T>((A)0, loss, lr, per_row, rowv, r);
    if (has_grad) {
        i64 go = offset_of(gr, r);
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) g[go + j * gs] = El<T>::from_acc((A)0);
    }
}

// The reduction's weight `w` (`row_weight`): from the device (`kd_count`) when `wdev` is set.
template <typename A> __device__ __forceinline__ A kd_weight(const double* wdev, double w_host) {
    return wdev ? (A)(*wdev) : (A)w_host;
}

// Dense distillation loss (`kd_loss`): per kept row, both log-sum-exps, the loss and
// sum_i q_i g_i, then the gradient `c/T q_j (g_j - sum_i q_i g_i)` (forward KL: `c/T (q_j - p_j)`).
template <typename T>
__device__ void kd_dense_k(const T* te, Lay tr, i64 ts, const T* st, Lay sr, i64 ss,
                           const unsigned char* mk, Lay mr, int has_mask, T* loss, Lay lr,
                           int per_row, double* rowv, T* g, Lay gr, i64 gs, int has_grad, i64 n,
                           i64 rows, int kind, double param, double inv_t_, double t_, double f_,
                           const double* wdev, double w_host) {
    typedef typename El<T>::A A;
    __shared__ A sh[32];
    const A t = (A)t_, inv_t = (A)inv_t_, f = (A)f_, a = (A)param, zero = (A)0;
    const A c = f * kd_weight<A>(wdev, w_host);
    const A cg = c * inv_t;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        if (has_mask && mk[offset_of(mr, r)] == 0) {
            kd_nothing<T>(loss, lr, per_row, rowv, r, g, gr, gs, has_grad, n);
            continue;
        }
        const i64 to = offset_of(tr, r), so = offset_of(sr, r);
        auto tx = [&](i64 j) -> A { return El<T>::to_acc(te[to + j * ts]) / t; };
        auto sx = [&](i64 j) -> A { return El<T>::to_acc(st[so + j * ss]) / t; };
        const A zt = kd_block_lse<A>(n, tx, sh);
        const A zs = kd_block_lse<A>(n, sx, sh);
        if (zt == -m_inf<A>() || zs == -m_inf<A>()) {
            kd_nothing<T>(loss, lr, per_row, rowv, r, g, gr, gs, has_grad, n);
            continue;
        }
        A l = zero, gq = zero;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
            A lp = tx(j) - zt, lq = sx(j) - zs;
            A p = m_exp(lp), q = m_exp(lq);
            A phi, gj;
            kd_term<A>(kind, a, p, q, lp, lq, phi, gj);
            l += phi;
            if (kind != KD_FWD && q != zero) gq += q * gj;
        }
        l = block_sum(l, sh);
        if (kind != KD_FWD) gq = block_sum(gq, sh);
        kd_put<T>(c * l, loss, lr, per_row, rowv, r);
        if (has_grad) {
            const i64 go = offset_of(gr, r);
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
                A lp = tx(j) - zt, lq = sx(j) - zs;
                A p = m_exp(lp), q = m_exp(lq);
                A out;
                if (kind == KD_FWD) {
                    out = cg * (q - p);
                } else if (q == zero) {
                    out = zero;
                } else {
                    A phi, gj;
                    kd_term<A>(kind, a, p, q, lp, lq, phi, gj);
                    out = cg * q * (gj - gq);
                }
                g[go + j * gs] = El<T>::from_acc(out);
            }
        }
        __syncthreads();
    }
}

// Sparse-teacher distillation (`kd_loss_sparse`): the k + 1 buckets (top-k and tail) of both
// distributions, then the gradient at every student logit (as a tail token), the top-k
// positions overwritten after a block barrier. Indices were checked on the host (below V,
// distinct within each kept row).
template <typename T>
__device__ void kd_sparse_k(const T* va, Lay vr, i64 vs, const u32* ix, Lay ir, i64 is,
                            const T* ta, Lay tl, int has_tail, const T* st, Lay sr, i64 ss,
                            const unsigned char* mk, Lay mr, int has_mask, T* loss, Lay lr,
                            int per_row, double* rowv, T* g, Lay gr, i64 gs, int has_grad, i64 k,
                            i64 n, i64 rows, int kind, double param, double inv_t_, double t_,
                            double f_, double w_host) {
    typedef typename El<T>::A A;
    __shared__ A sh[32];
    const A t = (A)t_, inv_t = (A)inv_t_, f = (A)f_, a = (A)param, zero = (A)0, one = (A)1;
    const A c = f * (A)w_host;
    const A cg = c * inv_t;
    const bool fwd = kind == KD_FWD;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        if (has_mask && mk[offset_of(mr, r)] == 0) {
            kd_nothing<T>(loss, lr, per_row, rowv, r, g, gr, gs, has_grad, n);
            continue;
        }
        // With k = V there is no tail: its mass is 0 whatever the caller rounded it to.
        const A rt = (has_tail && k < n) ? El<T>::to_acc(ta[offset_of(tl, r)]) : zero;
        const i64 vo = offset_of(vr, r), io = offset_of(ir, r), so = offset_of(sr, r);
        auto vx = [&](i64 j) -> A { return El<T>::to_acc(va[vo + j * vs]) / t; };
        auto sx = [&](i64 j) -> A { return El<T>::to_acc(st[so + j * ss]) / t; };
        const A zk = kd_block_lse<A>(k, vx, sh);
        const A zs = kd_block_lse<A>(n, sx, sh);
        if (zk == -m_inf<A>() || zs == -m_inf<A>()) {
            kd_nothing<T>(loss, lr, per_row, rowv, r, g, gr, gs, has_grad, n);
            continue;
        }
        const A l1r = m_log(one - rt);
        // Bucket b of the top k: (P, ln P, Q, ln Q), and its student position.
        auto bucket = [&](i64 b, A& p, A& lp, A& q, A& lq) -> i64 {
            i64 i = (i64)ix[io + b * is];
            A x = vx(b);
            A y = sx(i);
            lp = l1r + x - zk;
            lq = y - zs;
            p = m_exp(lp);
            q = m_exp(lq);
            return i;
        };
        A qk = zero, l = zero, gq = zero;
        for (i64 b = threadIdx.x; b < k; b += blockDim.x) {
            A p, lp, q, lq, phi, gb;
            bucket(b, p, lp, q, lq);
            qk += q;
            kd_term<A>(kind, a, p, q, lp, lq, phi, gb);
            l += phi;
            if (q != zero) gq += q * gb;
        }
        qk = block_sum(qk, sh);
        l = block_sum(l, sh);
        gq = block_sum(gq, sh);
        // The tail bucket (`sparse_buckets`), the same in every thread.
        const A qt = (k == n || qk >= one) ? zero : one - qk;
        A phi_t, g_t;
        kd_term<A>(kind, a, rt, qt, m_log(rt), m_log(qt), phi_t, g_t);
        l += phi_t;
        if (qt != zero) gq += qt * g_t;
        kd_put<T>(c * l, loss, lr, per_row, rowv, r);
        if (has_grad) {
            const i64 go = offset_of(gr, r);
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
                A q = m_exp(sx(j) - zs);
                A out;
                if (q == zero || qt == zero) {
                    out = zero;
                } else if (fwd) {
                    out = cg * q * (one - rt / qt);
                } else {
                    out = cg * q * (g_t - gq);
                }
                g[go + j * gs] = El<T>::from_acc(out);
            }
            // Make the tail values visible before the top-k positions overwrite theirs.
            __syncthreads();
            for (i64 b = threadIdx.x; b < k; b += blockDim.x) {
                A p, lp, q, lq;
                i64 i = bucket(b, p, lp, q, lq);
                A out; // `sparse_top_grad`
                if (fwd) {
                    out = cg * (q - p);
                } else if (q == zero) {
                    out = zero;
                } else {
                    A phi, gb;
                    kd_term<A>(kind, a, p, q, lp, lq, phi, gb);
                    out = cg * q * (gb - gq);
                }
                g[go + i * gs] = El<T>::from_acc(out);
            }
        }
        __syncthreads();
    }
}

// Cross-entropy with label smoothing (`cross_entropy`): per row whose target is neither negative
// nor `ignore`, `l = -(1 - eps)(x_y - z) - (eps/V sum_j x_j - eps z)` and the gradient
// `c (q_j - (1 - eps)[j = y] - eps/V)`. Targets were checked on the host.
template <typename T>
__device__ void ce_k(const T* x, Lay xr, i64 xs, const int* tg, Lay tl, T* loss, Lay lr,
                     int per_row, double* rowv, T* g, Lay gr, i64 gs, int has_grad, i64 n,
                     i64 rows, int ignore, double c_, double e_, double ev_) {
    typedef typename El<T>::A A;
    __shared__ A sh[32];
    const A c = (A)c_, e = (A)e_, e_v = (A)ev_, zero = (A)0, one = (A)1;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const int y = tg[offset_of(tl, r)];
        if (y < 0 || y == ignore || (i64)y >= n) {
            kd_nothing<T>(loss, lr, per_row, rowv, r, g, gr, gs, has_grad, n);
            continue;
        }
        const i64 xo = offset_of(xr, r);
        auto xv = [&](i64 j) -> A { return El<T>::to_acc(x[xo + j * xs]); };
        const A z = kd_block_lse<A>(n, xv, sh);
        A sum = zero;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) sum += xv(j);
        sum = block_sum(sum, sh);
        const A xy = xv((i64)y);
        A l = (-(one - e)) * (xy - z);
        if (e != zero) l += -(e_v * sum - e * z);
        kd_put<T>(c * l, loss, lr, per_row, rowv, r);
        if (has_grad) {
            const i64 go = offset_of(gr, r);
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
                A q = m_exp(xv(j) - z);
                A target = (j == (i64)y) ? one - e + e_v : e_v;
                g[go + j * gs] = El<T>::from_acc(c * (q - target));
            }
        }
        __syncthreads();
    }
}

// The kept rows of the mask (one block), as the reduction's weight `row_weight(Mean, kept)` in
// the accumulation type: `1 / kept`, 0 when no row is kept.
template <typename T>
__device__ void kd_count_k(const unsigned char* mk, Lay mr, i64 rows, double* wout) {
    typedef typename El<T>::A A;
    __shared__ unsigned long long sh[32];
    unsigned long long kept = 0;
    for (i64 r = threadIdx.x; r < rows; r += blockDim.x) kept += mk[offset_of(mr, r)] != 0 ? 1ull : 0ull;
    kept = block_sum(kept, sh);
    if (threadIdx.x == 0) {
        A w = kept > 0 ? (A)1 / (A)(double)kept : (A)0;
        *wout = (double)w;
    }
}

// The reduced loss (one block): the per-row losses summed in the accumulation type, in a fixed
// order (each thread a strided share, then the block's tree), written to `loss[off]`.
template <typename T>
__device__ void kd_total_k(const double* rowv, i64 rows, T* loss, i64 off) {
    typedef typename El<T>::A A;
    __shared__ A sh[32];
    A s = (A)0;
    for (i64 r = threadIdx.x; r < rows; r += blockDim.x) s += (A)rowv[r];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) loss[off] = El<T>::from_acc(s);
}

#define DISTILL(T, N) \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) kd_dense_##N(const T* te, Lay tr, i64 ts, const T* st, Lay sr, i64 ss, const unsigned char* mk, Lay mr, int has_mask, T* loss, Lay lr, int per_row, double* rowv, T* g, Lay gr, i64 gs, int has_grad, i64 n, i64 rows, int kind, double param, double inv_t, double t, double f, const double* wdev, double w_host) { kd_dense_k<T>(te, tr, ts, st, sr, ss, mk, mr, has_mask, loss, lr, per_row, rowv, g, gr, gs, has_grad, n, rows, kind, param, inv_t, t, f, wdev, w_host); } \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) kd_sparse_##N(const T* va, Lay vr, i64 vs, const u32* ix, Lay ir, i64 is, const T* ta, Lay tl, int has_tail, const T* st, Lay sr, i64 ss, const unsigned char* mk, Lay mr, int has_mask, T* loss, Lay lr, int per_row, double* rowv, T* g, Lay gr, i64 gs, int has_grad, i64 k, i64 n, i64 rows, int kind, double param, double inv_t, double t, double f, double w_host) { kd_sparse_k<T>(va, vr, vs, ix, ir, is, ta, tl, has_tail, st, sr, ss, mk, mr, has_mask, loss, lr, per_row, rowv, g, gr, gs, has_grad, k, n, rows, kind, param, inv_t, t, f, w_host); } \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) cross_entropy_##N(const T* x, Lay xr, i64 xs, const int* tg, Lay tl, T* loss, Lay lr, int per_row, double* rowv, T* g, Lay gr, i64 gs, int has_grad, i64 n, i64 rows, int ignore, double c, double e, double ev) { ce_k<T>(x, xr, xs, tg, tl, loss, lr, per_row, rowv, g, gr, gs, has_grad, n, rows, ignore, c, e, ev); } \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) kd_count_##N(const unsigned char* mk, Lay mr, i64 rows, double* wout) { kd_count_k<T>(mk, mr, rows, wout); } \
    extern "C" __global__ void __launch_bounds__(ROW_THREADS) kd_total_##N(const double* rowv, i64 rows, T* loss, i64 off) { kd_total_k<T>(rowv, rows, loss, off); }
DISTILL(float, f32)
DISTILL(double, f64)
DISTILL(h16, f16)
DISTILL(b16, bf16)
