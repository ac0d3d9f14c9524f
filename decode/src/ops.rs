//! Row operations every decoder shares: checks, log-softmax, softmax, arg-max and top-k with
//! Hugging Face's tie-breaking to the lower index.

use seqcore::{Error, Real, Result};

/// `Err` naming `logits` when a row holds NaN or `+inf` (Hugging Face would propagate NaN into
/// every score; we refuse it instead).
pub(crate) fn check_logits(x: &[f32]) -> Result<()> {
    if x.iter().any(|v| v.is_nan() || *v == f32::INFINITY) {
        return Err(Error::Param {
            arg: "logits",
            reason: "holds NaN or +inf",
        });
    }
    Ok(())
}

/// The largest element (`-inf` for an empty or all `-inf` row).
pub(crate) fn max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `e^x` for `|x| <= 700` (`x` clamped to that range: below it gives `e^-700`, which no f64 sum
/// of terms near 1 notices), `x` an f32 widened to f64: Cody-Waite reduction to
/// `|r| <= ln 2 / 2` and a degree-8 Taylor polynomial, relative error below `3e-10`. Several
/// times faster than libm's `expf` and exact enough for the f64 sums of (log-)softmax, where it
/// moves a float32 log-probability by far less than half an ulp.
pub(crate) fn exp_sum_term(x: f32) -> f64 {
    const LN2: f64 = core::f64::consts::LN_2;
    const INV_LN2: f64 = core::f64::consts::LOG2_E;
    // 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    // branch-free (vectorises): clamp, reduce, polynomial, scale by 2^n built from bits
    let x = f64::from(x).clamp(-700.0, 700.0);
    let t = x * INV_LN2 + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0
                            + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0))))))));
    // the low 12 bits of t's bits are (n + 2^51) mod 4096 = n mod 4096; plus the bias 1023
    p * f64::from_bits(t.to_bits().wrapping_add(1023) << 52)
}

/// `sum exp(x - m)` in f64 with eight running sums (so the loop vectorises).
pub(crate) fn sum_exp(x: &[f32], m: f32) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += exp_sum_term(v - m);
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| exp_sum_term(v - m))
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// In-place log-softmax of one row, as `torch.log_softmax` in float32 (`x - max - ln sum
/// exp(x - max)`, the sum taken in f64). A row of only `-inf` stays `-inf` (PyTorch gives NaN).
pub(crate) fn log_softmax(x: &mut [f32]) {
    let m = max(x);
    if m == f32::NEG_INFINITY {
        return;
    }
    let s = sum_exp(x, m);
    #[allow(clippy::cast_possible_truncation)]
    let lse = Real::ln(s) as f32;
    for v in x.iter_mut() {
        *v = (*v - m) - lse;
    }
}

/// In-place softmax of one row (zeros for a row of only `-inf`).
pub(crate) fn softmax(x: &mut [f32]) {
    let m = max(x);
    if m == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut s = 0.0f64;
    for v in x.iter_mut() {
        let e = exp_sum_term(*v - m);
        #[allow(clippy::cast_possible_truncation)]
        let ef = e as f32;
        *v = ef;
        s += e;
    }
    #[allow(clippy::cast_possible_truncation)]
    let inv = (1.0 / s) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Index of the largest element, the lowest index among ties (`torch.argmax`); 0 for an empty row.
pub(crate) fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    best
}

/// The `k` largest elements of `x`, largest first, ties to the lower index, into `values` and
/// `indices` (`k = values.len() = indices.len() <= x.len()`). One pass over `x`, an insertion into
/// a sorted list of `k` only when an element beats the current `k`-th: `O(n + k * inserts)`.
pub(crate) fn top_k(x: &[f32], values: &mut [f32], indices: &mut [u32]) -> Result<()> {
    let k = values.len().min(indices.len());
    if k > x.len() {
        return Err(Error::Param {
            arg: "k",
            reason: "exceeds the number of candidates",
        });
    }
    if k == 0 {
        return Ok(());
    }
    let mut filled = 0usize;
    for (i, &v) in x.iter().enumerate() {
        let i = u32::try_from(i).map_err(|_| Error::Overflow { arg: "candidates" })?;
        if filled == k {
            // strictly greater than the k-th: equal later indices lose the tie
            match values.get(k - 1) {
                Some(&last) if v > last => {}
                _ => continue,
            }
        }
        // position: after every element >= v (earlier indices win ties)
        let end = if filled == k { k - 1 } else { filled };
        let mut pos = end;
        while pos > 0 {
            match values.get(pos - 1) {
                Some(&p) if p < v => pos -= 1,
                _ => break,
            }
        }
        if let (Some(vs), Some(is)) = (values.get_mut(pos..=end), indices.get_mut(pos..=end)) {
            vs.rotate_right(1);
            is.rotate_right(1);
            if let (Some(a), Some(b)) = (vs.first_mut(), is.first_mut()) {
                *a = v;
                *b = i;
            }
        }
        if filled < k {
            filled += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ties_to_lower_index() {
        let x = [1.0, 3.0, 3.0, f32::NEG_INFINITY, 2.0, 3.0];
        let mut v = [0.0; 4];
        let mut i = [0; 4];
        top_k(&x, &mut v, &mut i).unwrap();
        assert_eq!(i, [1, 2, 5, 4]);
        assert_eq!(v, [3.0, 3.0, 3.0, 2.0]);
        let mut v = [0.0; 6];
        let mut i = [0; 6];
        top_k(&x, &mut v, &mut i).unwrap();
        assert_eq!(i, [1, 2, 5, 4, 0, 3]);
    }

    #[test]
    fn exp_sum_term_matches_libm() {
        let mut worst = 0.0f64;
        let mut x = -103.0f32;
        while x < 80.0 {
            let want = f64::from(x).exp();
            let got = exp_sum_term(x);
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-10, "{worst}");
        assert!(exp_sum_term(f32::NEG_INFINITY) < 1e-300);
        assert!(exp_sum_term(-800.0) < 1e-300);
        assert_eq!(exp_sum_term(0.0), 1.0);
    }

    #[test]
    fn argmax_first_of_ties_and_log_softmax() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
        let mut x = [1.0f32, 2.0, 3.0];
        log_softmax(&mut x);
        let s: f32 = x.iter().map(|v| v.exp()).sum();
        assert!((s - 1.0).abs() < 1e-6);
        let mut y = [f32::NEG_INFINITY; 2];
        log_softmax(&mut y);
        assert_eq!(y, [f32::NEG_INFINITY; 2]);
    }
}
