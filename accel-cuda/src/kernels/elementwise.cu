// Elementwise kernels: unary and binary maps (computed in f64, rounded once on store), casts.
// Op codes are `unary_code` / `binary_code` in `lib.rs`.

__device__ __forceinline__ double sigmoid_d(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

// The definitions of `seqcore::Unary::apply`, in f64.
__device__ double unary_apply(int op, double x, double c) {
    const double NEG_INF = -m_inf<double>();
    switch (op) {
    case 0: return exp(x);
    case 1: return log(x);
    case 2: return sigmoid_d(x);
    case 3: return x == NEG_INF ? 0.0 : x * sigmoid_d(x);
    case 4: return x == NEG_INF ? 0.0 : 0.5 * x * erfc(-x * 0.70710678118654752440);
    case 5: {
        if (x == NEG_INF) return 0.0;
        double z = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        return x * sigmoid_d(z + z);
    }
    case 6: return (x > 0.0 ? x : 0.0) + log1p(exp(-fabs(x)));
    case 7: return x > 0.0 ? x + 1.0 : exp(x);
    case 8: return tanh(x);
    case 9: return (x > 0.0 || isnan(x)) ? x : 0.0;
    case 10: return sqrt(x);
    case 11: return 1.0 / x;
    case 12: return x * x;
    case 13: return fabs(x);
    case 14: return -x;
    case 15: return x * c;
    case 16: return x + c;
    default: return m_nan<double>();
    }
}

template <typename T>
__device__ void unary_k(const T* x, Lay lx, T* y, Lay ly, i64 n, int op, double c) {
    GRID_LOOP(i, n) {
        double v = El<T>::to_d(x[offset_of(lx, i)]);
        y[offset_of(ly, i)] = El<T>::from_d(unary_apply(op, v, c));
    }
}

__device__ __forceinline__ double binary_apply(int op, double a, double b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return ieee_max(a, b);
    case 5: return ieee_min(a, b);
    default: return m_nan<double>();
    }
}

template <typename T>
__device__ void binary_k(const T* a, Lay la, const T* b, Lay lb, T* y, Lay ly, i64 n, int op) {
    GRID_LOOP(i, n) {
        double va = El<T>::to_d(a[offset_of(la, i)]);
        double vb = El<T>::to_d(b[offset_of(lb, i)]);
        // One f64 operation on values exact in f64 is correctly rounded, so rounding it once
        // more to T equals T's own correctly rounded operation (Figueroa 1995: f64 has more
        // than 2p+2 bits for p = 24, 11, 8).
        y[offset_of(ly, i)] = El<T>::from_d(binary_apply(op, va, vb));
    }
}

template <typename S, typename D>
__device__ void cast_k(const S* x, Lay lx, D* y, Lay ly, i64 n) {
    GRID_LOOP(i, n) {
        // Every element type widens to f64 exactly; `from_d` rounds once.
        y[offset_of(ly, i)] = El<D>::from_d(El<S>::to_d(x[offset_of(lx, i)]));
    }
}

#define ELEMENTWISE(T, N) \
    extern "C" __global__ void unary_##N(const T* x, Lay lx, T* y, Lay ly, i64 n, int op, double c) { unary_k<T>(x, lx, y, ly, n, op, c); } \
    extern "C" __global__ void binary_##N(const T* a, Lay la, const T* b, Lay lb, T* y, Lay ly, i64 n, int op) { binary_k<T>(a, la, b, lb, y, ly, n, op); }
ELEMENTWISE(float, f32)
ELEMENTWISE(double, f64)
ELEMENTWISE(h16, f16)
ELEMENTWISE(b16, bf16)

#define CAST(S, SN, D, DN) \
    extern "C" __global__ void cast_##SN##_##DN(const S* x, Lay lx, D* y, Lay ly, i64 n) { cast_k<S, D>(x, lx, y, ly, n); }
#define CAST_FROM(S, SN) CAST(S, SN, float, f32) CAST(S, SN, double, f64) CAST(S, SN, h16, f16) CAST(S, SN, b16, bf16)
CAST_FROM(float, f32)
CAST_FROM(double, f64)
CAST_FROM(h16, f16)
CAST_FROM(b16, bf16)
