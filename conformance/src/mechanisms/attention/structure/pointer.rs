//! `pointer_attention`: [`seq_attention::PointerAttention::log_probs`] (Pointer Networks eq. 3)
//! against the reference at f64.
//!
//! Bound, per element, from the computation's roundings (each intermediate is stored in `T`;
//! `u` is `T`'s unit round-off, `ua` its accumulator's, magnitudes from the f64 values):
//!
//! - `k_jh = (W1 e)_jh`: `e_k = (De + 2) ua (|W1||e|)_jh + u |k_jh|`, likewise `e_q` for
//!   `W2 d` with `Dd`;
//! - `a = tanh(k + q)`: `e_a = e_k + e_q + u |k + q| + 2u |a|` (tanh is 1-Lipschitz);
//! - `u_ij = v . a`: `e_u = sum_h |v_h| e_a + (H + 2) ua sum_h |v_h a_h| + u |u_ij|`;
//! - log-softmax over the row is 2-Lipschitz in the max norm: `2 max_j e_u` plus the kernel's own
//!   softmax bound ([`crate::tolerance::softmax`]).

use proptest::prelude::*;
use seq_attention::PointerAttention;
use seqcore::{Allocate, Backend, Element, Reference};

use super::{refs, upload, values, workspace};
use crate::compare::{Bound, compare};
use crate::harness::{Output, round, widen};
use crate::properties::{Bench, Work};
use crate::{Failure, tolerance};

/// One pointer-attention call: sizes, a seed for the values, and which positions are masked.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Attention size `H`.
    pub h: usize,
    /// Encoder state size.
    pub de: usize,
    /// Decoder state size.
    pub dd: usize,
    /// Input positions.
    pub n: usize,
    /// Decoder states (queries).
    pub q: usize,
    /// Seed of the values.
    pub seed: u64,
    /// Scale of `v` (large: logits near 1e4).
    pub v_scale: f64,
    /// Masked positions, `(query, position)` taken modulo the shape; `usize::MAX` as position
    /// masks the whole query.
    pub masked: Vec<(usize, usize)>,
}

struct Data {
    w1: Vec<f64>,
    w2: Vec<f64>,
    v: Vec<f64>,
    e: Vec<f64>,
    d: Vec<f64>,
    mask: Vec<f64>,
}

impl Case {
    fn data(&self) -> Data {
        let (h, de, dd, n, q, s) = (self.h, self.de, self.dd, self.n, self.q, self.seed);
        let mut mask = vec![0.0; q * n];
        if q > 0 && n > 0 {
            for &(i, j) in &self.masked {
                let i = i % q;
                if j == usize::MAX {
                    mask.iter_mut()
                        .skip(i * n)
                        .take(n)
                        .for_each(|m| *m = f64::NEG_INFINITY);
                } else if let Some(m) = mask.get_mut(i * n + j % n) {
                    *m = f64::NEG_INFINITY;
                }
            }
        }
        Data {
            w1: values(s, h * de, 1.0),
            w2: values(s ^ 1, h * dd, 1.0),
            v: values(s ^ 2, h, self.v_scale),
            e: values(s ^ 3, n * de, 2.0),
            d: values(s ^ 4, q * dd, 2.0),
            mask,
        }
    }
}

/// Runs the case on `b` in `T` with guarded output; returns the log-probabilities.
fn run<B: Allocate, T: Element>(b: &B, c: &Case) -> Result<Vec<f64>, Failure> {
    let x = c.data();
    let (h, n, q) = (c.h, c.n, c.q);
    let w1 = upload::<B, T>(b, &[h, c.de], &x.w1)?;
    let w2 = upload::<B, T>(b, &[h, c.dd], &x.w2)?;
    let v = upload::<B, T>(b, &[h], &x.v)?;
    let e = upload::<B, T>(b, &[n, c.de], &x.e)?;
    let d = upload::<B, T>(b, &[q, c.dd], &x.d)?;
    let mask = upload::<B, T>(b, &[q, n], &x.mask)?;
    let ptr = PointerAttention::new(w1.view()?, w2.view()?, v.view()?).map_err(Failure::Kernel)?;
    let mut keys = workspace::<B, T>(b, 1, n * h)?;
    let mut ws = workspace::<B, T>(
        b,
        PointerAttention::<B, T>::BUFFERS,
        ptr.workspace_len(q, n).map_err(Failure::Kernel)?,
    )?;
    let mut out = Output::<B, T>::new(
        b,
        &seqcore::Layout::contiguous(&[q, n]).map_err(Failure::setup)?,
        None,
    )?;
    let [kb] = keys.as_mut_slice() else {
        return Err(Failure::Setup("one key buffer".into()));
    };
    let kmem = core::borrow::BorrowMut::borrow_mut(kb);
    ptr.encode(
        b,
        e.view()?,
        b.view_mut(kmem, &[n, h]).map_err(Failure::setup)?,
    )
    .map_err(Failure::Kernel)?;
    ptr.log_probs(
        b,
        b.view(kmem, &[n, h]).map_err(Failure::setup)?,
        d.view()?,
        Some(mask.view()?),
        out.view()?,
        &mut refs::<B, T>(&mut ws),
    )
    .map_err(Failure::Kernel)?;
    Ok(widen(&out.finish(b, "log_probs")?))
}

/// Runs `c` on `b` in `T` and holds it against the reference at f64.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(
    b: &B,
    c: &Case,
) -> Result<crate::compare::Agreement, Failure> {
    let got = run::<B, T>(b, c)?;
    // The reference sees the inputs as `T` holds them.
    let x = c.data();
    let r = |v: &[f64]| v.iter().map(|&a| round::<T>(a)).collect::<Vec<_>>();
    let rc = Rounded {
        w1: r(&x.w1),
        w2: r(&x.w2),
        v: r(&x.v),
        e: r(&x.e),
        d: r(&x.d),
    };
    let want = run_rounded(c, &rc, &x.mask)?;
    let bounds = bounds::<T>(c, &rc, &x.mask);
    let expected: Vec<f64> = want.iter().map(|&v| round::<T>(v)).collect();
    let a = compare("log_probs", &got, &expected, |i| {
        bounds.get(i).copied().unwrap_or(Bound::EXACT)
    })?;
    Ok(a)
}

struct Rounded {
    w1: Vec<f64>,
    w2: Vec<f64>,
    v: Vec<f64>,
    e: Vec<f64>,
    d: Vec<f64>,
}

/// The reference run at f64 on the rounded values.
fn run_rounded(c: &Case, x: &Rounded, mask: &[f64]) -> Result<Vec<f64>, Failure> {
    let rb = Reference;
    let (h, n, q) = (c.h, c.n, c.q);
    let s = |e: seqcore::Error| Failure::Setup(format!("reference: {e}"));
    let ptr = PointerAttention::new(
        rb.view(x.w1.as_slice(), &[h, c.de]).map_err(s)?,
        rb.view(x.w2.as_slice(), &[h, c.dd]).map_err(s)?,
        rb.view(x.v.as_slice(), &[h]).map_err(s)?,
    )
    .map_err(s)?;
    let mut keys = vec![0.0f64; n * h];
    ptr.encode(
        &rb,
        rb.view(x.e.as_slice(), &[n, c.de]).map_err(s)?,
        rb.view_mut(keys.as_mut_slice(), &[n, h]).map_err(s)?,
    )
    .map_err(s)?;
    let len = ptr.workspace_len(q, n).map_err(s)?;
    let mut ws: Vec<Vec<f64>> = vec![vec![0.0; len]; PointerAttention::<Reference, f64>::BUFFERS];
    let mut wr: Vec<&mut [f64]> = ws.iter_mut().map(Vec::as_mut_slice).collect();
    let mut out = vec![0.0f64; q * n];
    ptr.log_probs(
        &rb,
        rb.view(keys.as_slice(), &[n, h]).map_err(s)?,
        rb.view(x.d.as_slice(), &[q, c.dd]).map_err(s)?,
        Some(rb.view(mask, &[q, n]).map_err(s)?),
        rb.view_mut(out.as_mut_slice(), &[q, n]).map_err(s)?,
        &mut wr,
    )
    .map_err(s)?;
    Ok(out)
}

/// The per-element bounds of the module docs.
fn bounds<T: Element>(c: &Case, x: &Rounded, mask: &[f64]) -> Vec<Bound> {
    let (u, ua) = (tolerance::u::<T>(), tolerance::ua::<T>());
    let (h, de, dd, n, q) = (c.h, c.de, c.dd, c.n, c.q);
    let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(0.0);
    let mut out = Vec::with_capacity(q * n);
    for i in 0..q {
        // Per position: (error bound of u_ij, u_ij + mask_ij).
        let per: Vec<(f64, f64)> = (0..n)
            .map(|j| {
                let (mut err, mut mag, mut val) = (0.0, 0.0, 0.0);
                for k in 0..h {
                    let (mut kv, mut kabs, mut qv, mut qabs) = (0.0, 0.0, 0.0, 0.0);
                    for cc in 0..de {
                        let t = at(&x.w1, k * de + cc) * at(&x.e, j * de + cc);
                        kv += t;
                        kabs += t.abs();
                    }
                    for cc in 0..dd {
                        let t = at(&x.w2, k * dd + cc) * at(&x.d, i * dd + cc);
                        qv += t;
                        qabs += t.abs();
                    }
                    let ek = (de as f64 + 2.0) * ua * kabs + u * kv.abs();
                    let eq = (dd as f64 + 2.0) * ua * qabs + u * qv.abs();
                    let a = (kv + qv).tanh();
                    let ea = ek + eq + u * (kv + qv).abs() + 2.0 * u * a.abs();
                    let vk = at(&x.v, k);
                    err += vk.abs() * ea;
                    mag += (vk * a).abs();
                    val += vk * a;
                }
                let eu = err + (h as f64 + 2.0) * ua * mag + u * val.abs();
                (eu, val + at(mask, i * n + j))
            })
            .collect();
        let m = per.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = per.iter().map(|p| (p.1 - m).exp()).sum();
        let emax = per.iter().map(|p| p.0).fold(0.0, f64::max);
        for &(_, z) in &per {
            // The mask holds 0 or -inf: adding it rounds nothing.
            let sb = tolerance::softmax::<T>(true, n, z - m, s.ln(), 0.0);
            out.push(Bound {
                atol: sb.atol + 2.0 * emax,
                rtol: sb.rtol,
            });
        }
    }
    out
}

/// Random cases: small sizes (0 included), a few masked positions or whole queries.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..9,
        1usize..7,
        1usize..7,
        0usize..20,
        0usize..5,
        any::<u64>(),
        proptest::collection::vec(
            (
                0usize..5,
                prop_oneof![4 => 0usize..20, 1 => Just(usize::MAX)],
            ),
            0..4,
        ),
    )
        .prop_map(|(h, de, dd, n, q, seed, masked)| Case {
            h,
            de,
            dd,
            n,
            q,
            seed,
            v_scale: 1.0,
            masked,
        })
}

/// Edge cases: no positions, one position, no queries, every position masked for a query, logits
/// near 1e4, a length past the usual tiles.
///
/// # Errors
/// Never.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let c = |n: usize, q: usize, v_scale: f64, masked: Vec<(usize, usize)>| Case {
        h: 4,
        de: 3,
        dd: 5,
        n,
        q,
        seed: 7,
        v_scale,
        masked,
    };
    Ok(vec![
        c(0, 2, 1.0, vec![]),
        c(1, 3, 1.0, vec![]),
        c(5, 0, 1.0, vec![]),
        c(6, 3, 1.0, vec![(1, usize::MAX), (2, 0), (2, 3)]),
        c(9, 2, 2500.0, vec![(0, 4)]),
        c(129, 2, 1.0, vec![(0, 128)]),
    ])
}

/// Timing: `q` decoder states over `n` positions with attention size `h`.
///
/// # Errors
/// Setup failures.
pub fn bench<B: Allocate, T: Element>(
    b: &B,
    q: usize,
    n: usize,
    h: usize,
) -> Result<Bench<'_>, Failure> {
    let (de, dd) = (h, h);
    let w1 = upload::<B, T>(b, &[h, de], &values(1, h * de, 0.3))?;
    let w2 = upload::<B, T>(b, &[h, dd], &values(2, h * dd, 0.3))?;
    let v = upload::<B, T>(b, &[h], &values(3, h, 1.0))?;
    let keys = upload::<B, T>(b, &[n, h], &values(4, n * h, 1.0))?;
    let d = upload::<B, T>(b, &[q, dd], &values(5, q * dd, 1.0))?;
    let len = q.max(n) * h.max(n);
    let mut ws = workspace::<B, T>(b, PointerAttention::<B, T>::BUFFERS, len)?;
    let mut out = Output::<B, T>::new(
        b,
        &seqcore::Layout::contiguous(&[q, n]).map_err(Failure::setup)?,
        None,
    )?;
    let flops = (2 * q * dd * h + q * n * (3 * h) + 5 * q * n) as f64;
    Ok(Bench {
        run: Box::new(move || {
            let ptr = PointerAttention::new(w1.view()?, w2.view()?, v.view()?)
                .map_err(Failure::Kernel)?;
            ptr.log_probs(
                b,
                keys.view()?,
                d.view()?,
                None,
                out.view()?,
                &mut refs::<B, T>(&mut ws),
            )
            .map_err(Failure::Kernel)
        }),
        work: Work::Flops(flops),
        size: format!("{q}x{n}x{h}"),
    })
}
