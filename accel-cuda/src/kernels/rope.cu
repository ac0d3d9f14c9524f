// Fused kernels: RoPE (seqcore::portable::rope).
//
// Rotary position embedding (Su et al. 2021, RoFormer eq. (34)) of `x [B, H, L, D]` into `y`, or
// of `y` in place: pair `i` of features `(a, b)` (`Half`: `(i, i + r/2)`, `Interleaved`:
// `(2i, 2i + 1)`) of the token at position `m` becomes
//   y_a = x_a c - x_b s,   y_b = x_b c + x_a s,
// with `c = cos(m theta_i) * attention_factor`, `s = sin(m theta_i) * attention_factor` formed in
// f64 from the integer position (as `seqcore::portable::rope::cos_sin`), then rounded to the
// accumulation type, where the rotation is computed; features from `r = 2 * pairs` on are copied
// unchanged (out of place only). One thread per rotated pair or per copied feature of a token,
// for every head.

// Frequencies passed by value (kernel parameter) when there are at most this many; beyond, they
// come from device memory (`fdev`). Mirrors `ROPE_INLINE` in `rope.rs`.
#define ROPE_INLINE 256
struct RopeFreq {
    double f[ROPE_INLINE];
};

// Products and sums rounded one by one (never contracted into an FMA), so the rotation rounds as
// the reference's `xa * c - xb * s` does.
__device__ __forceinline__ float rope_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double rope_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float rope_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double rope_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float rope_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double rope_sub(double a, double b) { return __dsub_rn(a, b); }

// `x`, `xl`: the input (the output itself, `y` and `yl`, for the in-place form).
// Positions: with `has_ids`, `pos[pos_off + b * pos_sb + l * pos_sl]` (`pos_sb` = 0 for `[L]`
// ids), else `start + l`. `width` = pairs + pass-through features per (b, h, l); `total` =
// B * L * H * width (the threads are B * L * width). `a_step`, `b_off`: the pair's features are `i * a_step` and
// `i * a_step + b_off`.
template <typename T>
__device__ void rope_k(const T* x, Lay xl, T* y, Lay yl, const u32* pos, i64 pos_off, i64 pos_sb,
                       i64 pos_sl, int has_ids, u64 start, const RopeFreq& inl,
                       const double* fdev, i64 pairs, i64 a_step, i64 b_off, i64 width,
                       double factor, i64 total) {
    typedef typename El<T>::A A;
    const i64 heads = yl.shape[1], len = yl.shape[2];
    if (heads == 0) return;
    // One thread per (b, l, pair or copied feature), looping over the heads: the cos / sin of
    // a pair are formed once for all the heads that share its position.
    GRID_LOOP(idx, total / heads) {
        const i64 j = idx % width;
        const i64 r = idx / width;
        const i64 l = r % len;
        const i64 b = r / len;
        const i64 xs = xl.stride[3], ys = yl.stride[3];
        if (j < pairs) {
            u64 p;
            if (has_ids) {
                p = (u64)pos[pos_off + b * pos_sb + l * pos_sl];
            } else {
                p = start + (u64)l;  // checked on the host not to overflow
            }
            const double f = pairs <= ROPE_INLINE ? inl.f[j] : fdev[j];
            // As `cos_sin`: the angle in f64 (the u64 -> f64 conversion rounds to nearest, as
            // Rust's `as f64`), cos and sin in f64, times the factor in f64.
            const double angle = __dmul_rn((double)p, f);
            double sd, cd;
            sincos(angle, &sd, &cd);
            const A c = (A)__dmul_rn(cd, factor);
            const A s = (A)__dmul_rn(sd, factor);
            const i64 ia = j * a_step, ib = j * a_step + b_off;
            for (i64 h = 0; h < heads; ++h) {
                const i64 xo = xl.off + b * xl.stride[0] + h * xl.stride[1] + l * xl.stride[2];
                const i64 yo = yl.off + b * yl.stride[0] + h * yl.stride[1] + l * yl.stride[2];
                const A xa = El<T>::to_acc(x[xo + ia * xs]);
                const A xb = El<T>::to_acc(x[xo + ib * xs]);
                const A ya = rope_sub(rope_mul(xa, c), rope_mul(xb, s));
                const A yb = rope_add(rope_mul(xb, c), rope_mul(xa, s));
                y[yo + ia * ys] = El<T>::from_acc(ya);
                y[yo + ib * ys] = El<T>::from_acc(yb);
            }
        } else {
            // Pass-through feature (partial rotary): the element itself, bits included.
            const i64 e = 2 * pairs + (j - pairs);
            for (i64 h = 0; h < heads; ++h) {
                const i64 xo = xl.off + b * xl.stride[0] + h * xl.stride[1] + l * xl.stride[2];
                const i64 yo = yl.off + b * yl.stride[0] + h * yl.stride[1] + l * yl.stride[2];
                y[yo + e * ys] = x[xo + e * xs];
            }
        }
    }
}

#define ROPE(T, N) \
    extern "C" __global__ void rope_##N(const T* x, Lay xl, T* y, Lay yl, const u32* pos, i64 pos_off, i64 pos_sb, i64 pos_sl, int has_ids, u64 start, RopeFreq inl, const double* fdev, i64 pairs, i64 a_step, i64 b_off, i64 width, double factor, i64 total) { rope_k<T>(x, xl, y, yl, pos, pos_off, pos_sb, pos_sl, has_ids, start, inl, fdev, pairs, a_step, b_off, width, factor, total); }
ROPE(float, f32)
ROPE(double, f64)
ROPE(h16, f16)
ROPE(b16, bf16)
