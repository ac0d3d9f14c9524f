//! The `rope` row and vector mechanism: [`seqcore::Backend::rope`] with tables from
//! [`seq_attention::rope::RopeConfig`], against the f64 reference, with RoPE's identities.

// Harness code: indices below the extents the case was built with, casts of counts checked
// integral and in range before the cast.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use proptest::prelude::*;
use seq_attention::rope::{FreqPrecision, LongRope, RopeConfig, RopeScaling, Yarn};
use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::{Allocate, Backend, Element, Layout, Reference};
use serde_json::Value;

use super::{expected_in, gate, upload_u32};
use crate::Failure;
use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, Tensor, widen};
use crate::properties::{Bench, Work};
use crate::strategies::{Specials, Storage, storage, tensor};
use crate::tolerance::{floor, nmse_max, u, ua};
use crate::vectors::{Case as VCase, bad};

/// A scaling with owned parameters (LongRoPE's factor lists).
#[derive(Clone, Debug, PartialEq)]
pub enum Scaling {
    /// Plain RoPE.
    Default,
    /// `linear`.
    Linear(f64),
    /// NTK-aware (`alpha`).
    Ntk(f64),
    /// Dynamic NTK (`factor`).
    Dynamic(f64),
    /// YaRN.
    Yarn(Yarn),
    /// Llama 3.1: factor, low, high, original.
    Llama3(f64, f64, f64, usize),
    /// LongRoPE: short, long, factor, original.
    LongRope(Vec<f64>, Vec<f64>, Option<f64>, Option<usize>),
}

/// Where the tokens are.
#[derive(Clone, Debug, PartialEq)]
pub enum Positions {
    /// `start + l`.
    Offset(u64),
    /// `[L]` or, with `per_batch`, `[B, L]`.
    Ids(Vec<u32>, bool),
}

/// One RoPE call.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// `[B, H, L, D]`.
    pub x: Tensor,
    /// Token positions.
    pub positions: Positions,
    /// Feature pairing.
    pub layout: RopeLayout,
    /// Rotated features.
    pub rotary_dim: usize,
    /// Base.
    pub theta: f64,
    /// Variant.
    pub scaling: Scaling,
    /// `max_position_embeddings`.
    pub max_pos: usize,
    /// Current sequence length (dynamic NTK, LongRoPE).
    pub seq_len: usize,
    /// Table precision.
    pub precision: FreqPrecision,
    /// Rotate the output buffer in place.
    pub in_place: bool,
    /// How the output is laid out.
    pub y: Storage,
}

impl Case {
    fn dims(&self) -> [usize; 4] {
        let s = self.x.shape();
        [0, 1, 2, 3].map(|i| s.get(i).copied().unwrap_or(0))
    }

    /// The configuration (borrowing LongRoPE's lists).
    pub fn config(&self) -> RopeConfig<'_> {
        let d = self.dims()[3];
        let scaling = match &self.scaling {
            Scaling::Default => RopeScaling::Default,
            Scaling::Linear(f) => RopeScaling::Linear { factor: *f },
            Scaling::Ntk(a) => RopeScaling::Ntk { alpha: *a },
            Scaling::Dynamic(f) => RopeScaling::Dynamic { factor: *f },
            Scaling::Yarn(y) => RopeScaling::Yarn(*y),
            Scaling::Llama3(f, lo, hi, o) => RopeScaling::Llama3 {
                factor: *f,
                low_freq_factor: *lo,
                high_freq_factor: *hi,
                original_max_position_embeddings: *o,
            },
            Scaling::LongRope(s, l, f, o) => RopeScaling::LongRope(LongRope {
                short_factor: s,
                long_factor: l,
                factor: *f,
                attention_factor: None,
                original_max_position_embeddings: *o,
            }),
        };
        RopeConfig::new(self.theta, d)
            .with_rotary_dim(self.rotary_dim)
            .with_layout(self.layout)
            .with_scaling(scaling)
            .with_max_position_embeddings(self.max_pos)
            .with_precision(self.precision)
    }

    /// Position of token `l` of sequence `b`.
    fn position(&self, b: usize, l: usize) -> u64 {
        let len = self.dims()[2];
        match &self.positions {
            Positions::Offset(s) => s + l as u64,
            Positions::Ids(v, per_batch) => {
                let i = if *per_batch { b * len + l } else { l };
                u64::from(v.get(i).copied().unwrap_or(0))
            }
        }
    }
}

/// The table and attention factor of `case`.
fn table(case: &Case) -> Result<(Vec<f64>, f64), Failure> {
    let cfg = case.config();
    let mut t = vec![0.0; cfg.pairs()];
    let af = cfg
        .inv_freq(case.seq_len, &mut t)
        .map_err(Failure::Kernel)?;
    Ok((t, af))
}

/// The partner feature of feature `d` (same pair), or `None` for a pass-through feature.
fn partner(layout: RopeLayout, pairs: usize, d: usize) -> Option<usize> {
    if d >= 2 * pairs {
        return None;
    }
    Some(match layout {
        RopeLayout::Interleaved => d ^ 1,
        _ if d < pairs => d + pairs,
        _ => d - pairs,
    })
}

/// Runs `case` through `b` in `T`; returns the output (row-major, f64).
fn run_backend<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
    tab: &[f64],
    af: f64,
) -> Result<Vec<f64>, Failure> {
    let shape = case.x.shape().to_vec();
    let [nb, _, nl, _] = case.dims();
    let ids_buf = match &case.positions {
        Positions::Ids(v, _) => Some(upload_u32(b, v)?),
        Positions::Offset(_) => None,
    };
    let positions = match (&case.positions, &ids_buf) {
        (Positions::Ids(_, per_batch), Some(buf)) => {
            let l = if *per_batch {
                Layout::contiguous(&[nb, nl])
            } else {
                Layout::contiguous(&[nl])
            }
            .map_err(Failure::setup)?;
            RopePositions::Ids(
                seqcore::View::new(core::borrow::Borrow::borrow(buf), l).map_err(Failure::setup)?,
            )
        }
        (Positions::Offset(s), _) => RopePositions::Offset(*s),
        _ => return Err(Failure::Setup("positions".into())),
    };
    let (yl, _) = crate::strategies::layout(&shape, case.y)
        .ok_or_else(|| Failure::Setup(format!("no layout for {shape:?}")))?;
    if case.in_place {
        let init: Vec<T> = case
            .x
            .rounded::<T>()
            .iter()
            .map(|&v| T::from_f64(v))
            .collect();
        let mut out = Output::<B, T>::new(b, &yl, Some(&init))?;
        b.rope(case.layout, tab, af, positions, None, out.view()?)
            .map_err(Failure::Kernel)?;
        Ok(widen(&out.finish(b, "y")?))
    } else {
        let x = Input::<B, T>::new(b, &case.x)?;
        let mut out = Output::<B, T>::new(b, &yl, None)?;
        b.rope(
            case.layout,
            tab,
            af,
            positions,
            Some(x.view()?),
            out.view()?,
        )
        .map_err(Failure::Kernel)?;
        Ok(widen(&out.finish(b, "y")?))
    }
}

/// `2 pi` as the sum of three doubles (Cody and Waite), for the double-double angle reduction.
const TWO_PI: [f64; 3] = [
    core::f64::consts::TAU,
    2.449_293_598_294_706_4e-16,
    -5.989_539_619_436_679e-33,
];

/// `(cos, sin)` of `p * theta` for an f64 `theta`, with the product carried exactly (two-product)
/// and reduced modulo `2 pi` in double-double: a reference independent of libm's large-argument
/// reduction, accurate to a few units of 1e-16 for `p < 2^32`.
pub fn cos_sin_dd(p: u64, theta: f64) -> (f64, f64) {
    let pf = p as f64;
    let hi = pf * theta;
    let lo = pf.mul_add(theta, -hi);
    let k = (hi / TWO_PI[0]).round();
    let ph = k * TWO_PI[0];
    let pl = k.mul_add(TWO_PI[0], -ph);
    // two-sum of hi - ph
    let s = hi - ph;
    let bb = s - hi;
    let e = (hi - (s - bb)) + (-ph - bb);
    let tail = e - pl + lo - k * TWO_PI[1] - k * TWO_PI[2];
    let (sn, cs) = s.sin_cos();
    (cs - sn * tail, sn + cs * tail)
}

/// Runs `case` on `b` in `T` against the f64 reference; checks norms, and for positions from
/// 2^20 on the reference itself against [`cos_sin_dd`].
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let (tab, af) = table(case)?;
    let shape = case.x.shape().to_vec();
    let [nb, nh, nl, nd] = case.dims();
    let pairs = tab.len();
    let x = case.x.rounded::<T>();
    // The oracle: the reference backend at f64 on the rounded inputs.
    let mut want = vec![0.0f64; x.len()];
    {
        let r = Reference;
        let ids: Vec<u32>;
        let positions = match &case.positions {
            Positions::Offset(s) => RopePositions::Offset(*s),
            Positions::Ids(v, per_batch) => {
                ids = v.clone();
                let sh: &[usize] = if *per_batch { &[nb, nl] } else { &[nl] };
                RopePositions::Ids(r.view(&ids, sh).map_err(Failure::setup)?)
            }
        };
        r.rope(
            case.layout,
            &tab,
            af,
            positions,
            Some(r.view(&x, &shape).map_err(Failure::setup)?),
            r.view_mut(&mut want, &shape).map_err(Failure::setup)?,
        )
        .map_err(Failure::Kernel)?;
    }
    let got = run_backend::<B, T>(b, case, &tab, af)?;
    let mag = |i: usize| -> Option<f64> {
        let d = i % nd.max(1);
        partner(case.layout, pairs, d).map(|p| {
            let base = i - d;
            af.abs()
                * (x.get(i).map_or(0.0, |v| v.abs()) + x.get(base + p).map_or(0.0, |v| v.abs()))
        })
    };
    let (ua, u, fl) = (ua::<T>(), u::<T>(), floor::<T>());
    // y = x_a c - x_b s in the accumulation type, with c and s rounded to it: 4 ua (|x_a| +
    // |x_b|) |af|; then one rounding on store. Pass-through features are copied exactly.
    let bound = |i: usize| match mag(i) {
        Some(m) => Bound {
            atol: fl + 4.0 * ua * m,
            rtol: 2.0 * u,
        },
        None => Bound::EXACT,
    };
    // An element whose products `|x| |af|` leave the accumulation type's range may overflow on
    // the way to a finite result: outside every backend's contract (see `crate::tolerance`), so
    // not compared.
    let acc_max = if T::DTYPE == seqcore::DType::F64 {
        f64::MAX
    } else {
        f64::from(f32::MAX)
    };
    let mut expected = expected_in::<T>(&want);
    let mut got = got;
    for i in 0..got.len() {
        if mag(i).is_some_and(|m| m >= acc_max / 2.0) {
            got[i] = 0.0;
            expected[i] = 0.0;
        }
    }
    let a = compare("y", &got, &expected, bound)?;
    let a = gate("y", a, nmse_max::<T>())?;

    // Norms of the rotated part of each head vector: |y| = |af| |x|.
    for (v, chunk) in got.chunks(nd.max(1)).enumerate() {
        let xs = x.get(v * nd..(v + 1) * nd).unwrap_or(&[]);
        let rot = 2 * pairs;
        let out_of_range = (0..rot).any(|d| mag(v * nd + d).is_some_and(|m| m >= acc_max / 2.0));
        if out_of_range || chunk.iter().any(|y| !y.is_finite()) {
            continue; // an overflowed element: its structure was checked against the reference
        }
        let ny: f64 = chunk.iter().take(rot).map(|y| y * y).sum::<f64>().sqrt();
        let nx: f64 = xs.iter().take(rot).map(|y| y * y).sum::<f64>().sqrt() * af.abs();
        let allowed: f64 = (0..rot)
            .map(|d| {
                let m = mag(v * nd + d).unwrap_or(0.0);
                fl + 4.0 * ua * m + 2.0 * u * chunk.get(d).map_or(0.0, |y| y.abs())
            })
            .sum::<f64>()
            + fl;
        if (ny - nx).abs() > allowed {
            return Err(Failure::Setup(format!(
                "norm not preserved at head vector {v}: |y| = {ny}, af |x| = {nx}"
            )));
        }
    }

    // Far positions: the f64 oracle against the double-double angles.
    for bi in 0..nb {
        for l in 0..nl {
            let p = case.position(bi, l);
            if p < (1 << 20) {
                continue;
            }
            for h in 0..nh {
                let base = ((bi * nh + h) * nl + l) * nd;
                for (i, &th) in tab.iter().enumerate() {
                    let (c, s) = cos_sin_dd(p, th);
                    let (c, s) = (c * af, s * af);
                    let (ia, ib) = match case.layout {
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                        _ => (i, i + pairs),
                    };
                    let (xa, xb) = (
                        x.get(base + ia).copied().unwrap_or(0.0),
                        x.get(base + ib).copied().unwrap_or(0.0),
                    );
                    let m = af.abs() * (xa.abs() + xb.abs());
                    // The product p * theta is rounded once in f64: 2^-53 p theta of angle.
                    let tol = (p as f64 * th.abs() * 2f64.powi(-52) + 2f64.powi(-48)) * m;
                    for (j, ex) in [(ia, xa * c - xb * s), (ib, xb * c + xa * s)] {
                        let w = want.get(base + j).copied().unwrap_or(f64::NAN);
                        if (w - ex).abs() > tol {
                            return Err(Failure::Setup(format!(
                                "reference angle at position {p}, frequency {th}: {w} vs \
                                 double-double {ex}"
                            )));
                        }
                    }
                }
            }
        }
    }
    // The identity's measurements are of dot products, not of `y`: pass or fail only.
    let _ = relative_identity::<B, T>(b, case, &tab, af)?;
    Ok(a)
}

/// `<R(m) q, R(n) k> = <R(m + s) q, R(n + s) k>`: with `q`, `k` the first and last token of the
/// first head, at their positions and shifted by `s` so that the later pair reaches 2^24.
fn relative_identity<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
    tab: &[f64],
    af: f64,
) -> Result<Option<Agreement>, Failure> {
    let [_, _, nl, nd] = case.dims();
    if nl == 0 || nd == 0 {
        return Ok(None);
    }
    let x = case.x.rounded::<T>();
    let row = |l: usize| x.get(l * nd..(l + 1) * nd).map(<[f64]>::to_vec);
    let (q, k) = match (row(0), row(nl - 1)) {
        (Some(q), Some(k)) => (q, k),
        _ => return Ok(None),
    };
    let (m, n) = (case.position(0, 0), case.position(0, nl - 1));
    let top = m.max(n);
    let s = (1u64 << 24).saturating_sub(top);
    let (Ok(m32), Ok(n32), Ok(ms), Ok(ns)) = (
        u32::try_from(m),
        u32::try_from(n),
        u32::try_from(m + s),
        u32::try_from(n + s),
    ) else {
        return Ok(None);
    };
    let vals: Vec<f64> = [&q, &k, &q, &k].into_iter().flatten().copied().collect();
    let t = Tensor::contiguous(&[1, 1, 4, nd], vals)?;
    let sub = Case {
        x: t,
        positions: Positions::Ids(vec![m32, n32, ms, ns], false),
        in_place: false,
        y: Storage::Contiguous,
        ..case.clone()
    };
    let y = run_backend::<B, T>(b, &sub, tab, af)?;
    let part = |i: usize| y.get(i * nd..(i + 1) * nd).unwrap_or(&[]).to_vec();
    let (yq, yk, yq2, yk2) = (part(0), part(1), part(2), part(3));
    let dot = |a: &[f64], c: &[f64]| a.iter().zip(c).map(|(a, c)| a * c).sum::<f64>();
    let (d1, d2) = (dot(&yq, &yk), dot(&yq2, &yk2));
    let pairs = tab.len();
    let (ua, u, fl) = (ua::<T>(), u::<T>(), floor::<T>());
    let err = |v: &[f64], y: &[f64], d: usize, p: u64| -> f64 {
        let pm = partner(case.layout, pairs, d);
        let mg = pm.map_or(0.0, |pp| af.abs() * (v[d].abs() + v[pp].abs()));
        let angle = pm.map_or(0.0, |_| {
            let i = match case.layout {
                RopeLayout::Interleaved => d / 2,
                _ => d % pairs.max(1),
            };
            p as f64 * tab.get(i).copied().unwrap_or(0.0).abs() * 2f64.powi(-52)
        });
        let exact_copy = pm.is_none();
        if exact_copy {
            fl + 2.0 * u * y[d].abs()
        } else {
            fl + (4.0 * ua + angle) * mg + 2.0 * u * y[d].abs()
        }
    };
    // Each dot product differs from the exact one by sum |e_q||y_k| + |y_q||e_k| + |e_q||e_k|.
    let bound_of = |yq: &[f64], yk: &[f64], pq: u64, pk: u64| -> f64 {
        (0..nd)
            .map(|d| {
                let (eq, ek) = (err(&q, yq, d, pq), err(&k, yk, d, pk));
                eq * yk[d].abs() + yq[d].abs() * ek + eq * ek
            })
            .sum::<f64>()
    };
    let allowed =
        bound_of(&yq, &yk, m, n) + bound_of(&yq2, &yk2, m + s, n + s) + 2.0 * nd as f64 * fl;
    if !(d1.is_finite() && d2.is_finite()) {
        return Ok(None); // overflowed inputs: agreement above already covered them
    }
    if (d1 - d2).abs() > allowed {
        return Err(Failure::Setup(format!(
            "<R(m)q, R(n)k> depends on more than m - n: {d1} at ({m}, {n}), {d2} at ({}, {}) \
             (allowed {allowed:e})",
            m + s,
            n + s
        )));
    }
    Ok(Some(Agreement {
        max_abs: (d1 - d2).abs(),
        worst_ratio: if allowed > 0.0 {
            (d1 - d2).abs() / allowed
        } else {
            0.0
        },
        count: 1,
        ..Agreement::default()
    }))
}

fn scaling() -> impl Strategy<Value = (Scaling, usize)> {
    prop_oneof![
        2 => Just((Scaling::Default, 2048)),
        1 => (1.0f64..16.0).prop_map(|f| (Scaling::Linear(f), 2048)),
        1 => (1.0f64..8.0).prop_map(|a| (Scaling::Ntk(a), 2048)),
        1 => (1.0f64..8.0, 16usize..4096).prop_map(|(f, m)| (Scaling::Dynamic(f), m)),
        1 => (1.0f64..32.0, 16usize..4096, 8.0f64..64.0, 0.25f64..2.0, any::<bool>(), any::<bool>())
            .prop_map(|(f, o, bf, bs, orig, ms)| {
                let mut y = Yarn::new(f);
                y.beta_fast = Some(bf);
                y.beta_slow = Some(bs);
                if ms {
                    y.mscale = Some(0.707);
                    y.mscale_all_dim = Some(1.0);
                }
                let mut m = o;
                if orig {
                    y.original_max_position_embeddings = Some(o);
                    m = (o as f64 * f) as usize + 1;
                }
                (Scaling::Yarn(y), m)
            }),
        1 => (1.0f64..16.0, 16usize..8192).prop_map(|(f, o)| (Scaling::Llama3(f, 1.0, 4.0, o), 2048)),
    ]
}

/// Random RoPE cases: shapes with odd lengths and non-power-of-two heads, partial rotary, both
/// layouts, every scaling, offsets and explicit positions up to 2^24 (per batch too), in place and
/// out of place, strided storage.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..3,
        1usize..4,
        crate::strategies::dim(17),
        prop::sample::select(vec![2usize, 4, 6, 8, 16, 24, 32, 64, 80]),
        0.0f64..1.0,
        any::<bool>(),
        scaling(),
        (
            prop::sample::select(vec![10_000.0f64, 500_000.0, 1e6, 10.0]),
            any::<bool>(),
        ),
        (any::<bool>(), 0u32..(1 << 24), any::<bool>()),
        (any::<bool>(), storage(), 0usize..8192),
    )
        .prop_flat_map(
            |(
                nb,
                nh,
                nl,
                nd,
                frac,
                inter,
                (sc, mp),
                (theta, f64mode),
                (ids, start, per_batch),
                (in_place, y, sl),
            )| {
                let mut rd = ((nd as f64 * frac) as usize / 2 * 2).max(2).min(nd);
                if frac > 0.5 {
                    rd = nd;
                }
                if matches!(sc, Scaling::Ntk(_) | Scaling::Dynamic(_)) && rd <= 2 {
                    rd = nd.max(4).min(nd);
                }
                let sc = if rd <= 2 && matches!(sc, Scaling::Ntk(_) | Scaling::Dynamic(_)) {
                    Scaling::Default
                } else {
                    sc
                };
                let count = if per_batch { nb * nl } else { nl };
                let pos = if ids {
                    prop::collection::vec(
                        prop_oneof![0u32..4096, 0u32..(1 << 24), Just((1u32 << 24) - 1)],
                        count,
                    )
                    .prop_map(move |v| Positions::Ids(v, per_batch))
                    .boxed()
                } else {
                    Just(Positions::Offset(u64::from(start))).boxed()
                };
                let x = tensor(
                    vec![nb, nh, nl, nd],
                    1.0,
                    Specials {
                        huge: true,
                        ..Specials::default()
                    },
                );
                (x, pos).prop_map(move |(x, positions)| Case {
                    x,
                    positions,
                    layout: if inter {
                        RopeLayout::Interleaved
                    } else {
                        RopeLayout::Half
                    },
                    rotary_dim: rd,
                    theta,
                    scaling: sc.clone(),
                    max_pos: mp,
                    seq_len: sl,
                    precision: if f64mode {
                        FreqPrecision::Float64
                    } else {
                        FreqPrecision::Float32
                    },
                    in_place,
                    y,
                })
            },
        )
}

fn ramp(n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 37 % 101) as f64 / 50.0 - 1.0) * scale)
        .collect()
}

/// Fixed cases: L = 0 and 1, head_dim 2, rotary 20 of 80, the positions of the numerics notes
/// (255 .. 2049, 65504, 2^20, 2^24 - 1 .. 2^24 + 1) in both layouts, a batch with its own
/// positions, LongRoPE's short and long factors, in place.
///
/// # Errors
/// Never for these shapes.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let base = |shape: &[usize], positions: Positions| -> Result<Case, Failure> {
        let n = shape.iter().product();
        Ok(Case {
            x: Tensor::contiguous(shape, ramp(n, 2.0))?,
            positions,
            layout: RopeLayout::Half,
            rotary_dim: shape.get(3).copied().unwrap_or(0),
            theta: 10_000.0,
            scaling: Scaling::Default,
            max_pos: 2048,
            seq_len: 0,
            precision: FreqPrecision::Float32,
            in_place: false,
            y: Storage::Contiguous,
        })
    };
    let far = vec![
        255,
        256,
        257,
        2047,
        2048,
        2049,
        65504,
        1 << 20,
        (1 << 24) - 1,
        1 << 24,
        (1 << 24) + 1,
    ];
    let mut v = vec![
        base(&[1, 2, 0, 8], Positions::Offset(0))?,
        base(&[1, 2, 1, 8], Positions::Offset(7))?,
        base(&[2, 1, 3, 2], Positions::Offset(1 << 24))?,
    ];
    for layout in [RopeLayout::Half, RopeLayout::Interleaved] {
        let mut c = base(&[1, 2, far.len(), 64], Positions::Ids(far.clone(), false))?;
        c.layout = layout;
        v.push(c.clone());
        c.precision = FreqPrecision::Float64;
        c.in_place = true;
        v.push(c);
        let mut p = base(&[1, 3, 5, 80], Positions::Offset(2040))?;
        p.rotary_dim = 20;
        p.layout = layout;
        v.push(p);
    }
    let mut pb = base(
        &[3, 2, 4, 16],
        Positions::Ids((0..12).map(|i| i * 1000 + 3).collect(), true),
    )?;
    pb.scaling = Scaling::Llama3(8.0, 1.0, 4.0, 64);
    v.push(pb);
    for sl in [10, 5000] {
        let mut lr = base(&[1, 2, 3, 8], Positions::Offset(4090))?;
        lr.scaling = Scaling::LongRope(
            vec![1.0, 1.5, 2.0, 4.0],
            vec![2.0, 3.0, 5.0, 9.0],
            None,
            Some(4096),
        );
        lr.max_pos = 131_072;
        lr.seq_len = sl;
        v.push(lr);
    }
    let mut y = base(&[1, 1, 4, 32], Positions::Offset(1_000_000))?;
    let mut yarn = Yarn::new(16.0);
    yarn.original_max_position_embeddings = Some(4096);
    y.scaling = Scaling::Yarn(yarn);
    y.max_pos = 65536;
    v.push(y);
    let mut dy = base(&[1, 1, 4, 32], Positions::Offset(9000))?;
    dy.scaling = Scaling::Dynamic(4.0);
    dy.seq_len = 9004;
    v.push(dy);
    Ok(v)
}

/// One small call, to learn whether `b` runs the kernel at all.
///
/// # Errors
/// The kernel's error.
pub fn probe<B: Allocate, T: Element>(b: &B) -> Result<(), Failure> {
    let x = Input::<B, T>::new(b, &Tensor::contiguous(&[1, 1, 1, 2], vec![1.0, 0.0])?)?;
    let mut y = Output::<B, T>::new(
        b,
        &Layout::contiguous(&[1, 1, 1, 2]).map_err(Failure::setup)?,
        None,
    )?;
    b.rope(
        RopeLayout::Half,
        &[1.0],
        1.0,
        RopePositions::Offset(0),
        Some(x.view()?),
        y.view()?,
    )
    .map_err(Failure::Kernel)
}

/// Timing: `[B, H, L, D]` rotated out of place, positions `0 .. L`.
///
/// # Errors
/// Setup failures.
pub fn bench<'a, B: Allocate, T: Element>(
    b: &'a B,
    nb: usize,
    nh: usize,
    nl: usize,
    nd: usize,
) -> Result<Bench<'a>, Failure> {
    let shape = [nb, nh, nl, nd];
    let n: usize = shape.iter().product();
    let x = Input::<B, T>::new(b, &Tensor::contiguous(&shape, ramp(n, 1.0))?)?;
    let mut y = Output::<B, T>::new(
        b,
        &Layout::contiguous(&shape).map_err(Failure::setup)?,
        None,
    )?;
    let mut tab = vec![0.0; nd / 2];
    let af = RopeConfig::new(10_000.0, nd)
        .inv_freq(nl, &mut tab)
        .map_err(Failure::Kernel)?;
    Ok(Bench {
        run: Box::new(move || {
            b.rope(
                RopeLayout::Half,
                &tab,
                af,
                RopePositions::Offset(0),
                Some(x.view()?),
                y.view()?,
            )
            .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(2.0 * (n * size_of::<T>()) as f64),
        size: format!("{nb}x{nh}x{nl}x{nd}"),
    })
}

fn num(v: &Value, key: &str) -> Result<Option<f64>, Failure> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => crate::vectors::number(x).map(Some),
    }
}

fn count(v: &Value, key: &str) -> Result<Option<usize>, Failure> {
    num(v, key)?
        .map(|x| {
            if x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 {
                Ok(x as usize)
            } else {
                Err(bad(format!("`{key}` must be a count")))
            }
        })
        .transpose()
}

fn list(v: &Value, key: &str) -> Result<Vec<f64>, Failure> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("no `{key}` list")))?
        .iter()
        .map(crate::vectors::number)
        .collect()
}

/// Runs a `rope` vector: `x [L, H, D]` seen as `[1, H, L, D]`. Parameters of the format, plus
/// (this crate's copy) `scaling` types `dynamic` and `longrope`, the keys `max_position`
/// (`max_position_embeddings`; for YaRN it defaults to `original_max_position`, which makes
/// Hugging Face's factor `max_position / original_max_position`), `mscale`, `mscale_all_dim`,
/// `attention_factor`, `truncate`, `short_factor`, `long_factor`, `seq_len` (default: largest
/// position + 1, as Hugging Face), and `freq_dtype` (`f32`, the default, as Hugging Face; or `f64`).
///
/// # Errors
/// Why the case failed.
pub fn run_vector<B: Allocate, T: Element>(b: &B, case: &VCase) -> Result<Agreement, Failure> {
    let x = case.input("x")?;
    let [nl, nh, nd] = match *x.shape() {
        [l, h, d] => [l, h, d],
        _ => return Err(bad("`x` must be [L, H, D]")),
    };
    let pos = case.input("positions")?;
    let ids: Vec<u32> = pos
        .values
        .iter()
        .map(|&p| {
            if p >= 0.0 && p.fract() == 0.0 && p <= f64::from(u32::MAX) {
                Ok(p as u32)
            } else {
                Err(bad("positions must be integers in u32"))
            }
        })
        .collect::<Result<_, _>>()?;
    if ids.len() != nl {
        return Err(bad("`positions` must be [L]"));
    }
    let theta = case.param_f64("theta", None)?;
    let layout = match case.param_str("layout")? {
        "half" => RopeLayout::Half,
        "interleaved" => RopeLayout::Interleaved,
        other => return Err(bad(format!("unknown layout `{other}`"))),
    };
    let rotary_dim = match case.params.get("rotary_dim") {
        Some(v) => crate::vectors::number(v)? as usize,
        None => nd,
    };
    let precision = match case.params.get("freq_dtype").and_then(Value::as_str) {
        None | Some("f32") => FreqPrecision::Float32,
        Some("f64") => FreqPrecision::Float64,
        Some(o) => return Err(bad(format!("unknown freq_dtype `{o}`"))),
    };
    let max_id = ids.iter().copied().max().map_or(0, |m| m as usize + 1);
    let sc = case.params.get("scaling").cloned().unwrap_or(Value::Null);
    let seq_len = match count(&sc, "seq_len")? {
        Some(s) => s,
        None => max_id,
    };
    let (scaling, max_pos) = if sc.is_null() {
        (Scaling::Default, 2048)
    } else {
        let ty = sc
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("scaling without type"))?;
        let factor = num(&sc, "factor")?;
        let f = || factor.ok_or_else(|| bad("scaling without factor"));
        let orig = count(&sc, "original_max_position")?;
        let mp = count(&sc, "max_position")?;
        match ty {
            "linear" => (Scaling::Linear(f()?), mp.unwrap_or(2048)),
            "ntk" => (Scaling::Ntk(f()?), mp.unwrap_or(2048)),
            "dynamic" => (
                Scaling::Dynamic(f()?),
                mp.ok_or_else(|| bad("dynamic needs max_position"))?,
            ),
            "yarn" => {
                let mut y = Yarn::new(f()?);
                y.original_max_position_embeddings = orig;
                y.beta_fast = num(&sc, "beta_fast")?;
                y.beta_slow = num(&sc, "beta_slow")?;
                y.mscale = num(&sc, "mscale")?;
                y.mscale_all_dim = num(&sc, "mscale_all_dim")?;
                y.attention_factor = num(&sc, "attention_factor")?;
                y.truncate = sc.get("truncate").and_then(Value::as_bool).unwrap_or(true);
                let m = mp
                    .or(orig)
                    .ok_or_else(|| bad("yarn needs max_position or original_max_position"))?;
                (Scaling::Yarn(y), m)
            }
            "llama3" => (
                Scaling::Llama3(
                    f()?,
                    num(&sc, "low_freq_factor")?.ok_or_else(|| bad("no low_freq_factor"))?,
                    num(&sc, "high_freq_factor")?.ok_or_else(|| bad("no high_freq_factor"))?,
                    orig.ok_or_else(|| bad("no original_max_position"))?,
                ),
                mp.unwrap_or(2048),
            ),
            "longrope" => (
                Scaling::LongRope(
                    list(&sc, "short_factor")?,
                    list(&sc, "long_factor")?,
                    factor,
                    orig,
                ),
                mp.ok_or_else(|| bad("longrope needs max_position"))?,
            ),
            other => return Err(bad(format!("unknown scaling `{other}`"))),
        }
    };
    // [L, H, D] stored row-major, seen as [1, H, L, D].
    let tshape = [1, nh, nl, nd];
    let lay = Layout::contiguous(&[nl, nh, nd])
        .and_then(|l| l.permute(&[1, 0, 2]))
        .and_then(|l| l.unsqueeze(0))
        .map_err(Failure::setup)?;
    let c = Case {
        x: Tensor::with_layout(lay, nl * nh * nd, permuted(&x.values, nl, nh, nd))?,
        positions: Positions::Ids(ids, false),
        layout,
        rotary_dim,
        theta,
        scaling,
        max_pos,
        seq_len,
        precision,
        in_place: false,
        y: Storage::Contiguous,
    };
    let _ = tshape;
    let (tab, af) = table(&c)?;
    let xin = Input::<B, T>::new(b, &c.x)?;
    let ids_buf = match &c.positions {
        Positions::Ids(v, _) => upload_u32(b, v)?,
        Positions::Offset(_) => return Err(bad("positions")),
    };
    let mut out = crate::vectors::out::<B, T>(b, case, "y")?;
    let pv = seqcore::View::new(
        core::borrow::Borrow::borrow(&ids_buf),
        Layout::contiguous(&[nl]).map_err(Failure::setup)?,
    )
    .map_err(Failure::setup)?;
    let yv = out
        .view()?
        .map_layout(|l| l.permute(&[1, 0, 2])?.unsqueeze(0))
        .map_err(Failure::setup)?;
    b.rope(
        layout,
        &tab,
        af,
        RopePositions::Ids(pv),
        Some(xin.view()?),
        yv,
    )
    .map_err(Failure::Kernel)?;
    case.check("y", &widen(&out.finish(b, "y")?))
}

/// `[L, H, D]` row-major values reordered to `[H, L, D]` row-major (the logical order of the
/// permuted view).
fn permuted(v: &[f64], nl: usize, nh: usize, nd: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(v.len());
    for h in 0..nh {
        for l in 0..nl {
            for d in 0..nd {
                out.push(v.get((l * nh + h) * nd + d).copied().unwrap_or(f64::NAN));
            }
        }
    }
    out
}
