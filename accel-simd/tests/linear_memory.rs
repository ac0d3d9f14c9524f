//! The SIMD linear-memory kernels against the reference: recurrent (every rule, feature map,
//! optional beta / decay) at f64 and in the same dtype, tails over `Dk` and `Dv` up to
//! `3 LANES + 1`, strided views, a log-decay of -20 per token, infinities in the same places,
//! chunkwise == recurrent for every chunk size `1..=L+2`, and the same `Err` for bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::too_many_arguments,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seq_accel_simd::lanes::F32_LANES;
use seqcore::portable::linear_memory::{FeatureMap, LinearMemorySpec, MemoryInputs, MemoryRule};
use seqcore::{Backend, Element, Layout, Reference, View, ViewMut, bf16, f16};

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

#[derive(Clone, Debug)]
struct Case {
    l: usize,
    h: usize,
    dk: usize,
    dv: usize,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    beta: Option<Vec<f64>>,
    g: Option<Vec<f64>>,
    s0: Vec<f64>,
    spec: LinearMemorySpec,
}

fn spec(rule: usize, elu: bool) -> LinearMemorySpec {
    LinearMemorySpec {
        rule: if rule == 0 {
            MemoryRule::Additive
        } else {
            MemoryRule::Delta
        },
        feature_map: if elu {
            FeatureMap::Elu1
        } else {
            FeatureMap::Identity
        },
    }
}

fn case<T: Element>(
    dims: [usize; 4],
    sp: LinearMemorySpec,
    beta: bool,
    decay: Option<f64>,
    seed: u64,
) -> Case {
    let [l, h, dk, dv] = dims;
    let mut r = Rng(seed);
    let rnd = |x: Vec<f64>| -> Vec<f64> { x.iter().map(|&v| T::from_f64(v).to_f64()).collect() };
    let q = rnd(r.vec(l * h * dk, 1.0));
    // Keys of norm about 1 (the delta rule's stable regime).
    let mut k = r.vec(l * h * dk, 1.0);
    for row in k.chunks_mut(dk.max(1)) {
        let nrm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-3);
        row.iter_mut().for_each(|x| *x /= nrm);
    }
    let k = rnd(k);
    let v = rnd(r.vec(l * h * dv, 1.0));
    let beta = beta.then(|| rnd((0..l * h).map(|_| 0.5 + 0.5 * r.next().abs()).collect()));
    let g = decay.map(|g0| {
        rnd((0..l * h)
            .map(|_| g0 * (0.5 + 0.5 * r.next().abs()))
            .collect())
    });
    let s0 = r
        .vec(h * dv * dk, 0.5)
        .iter()
        .map(|&x| T::Acc::from_f64(x).to_f64())
        .collect();
    Case {
        l,
        h,
        dk,
        dv,
        q,
        k,
        v,
        beta,
        g,
        s0,
        spec: sp,
    }
}

/// Runs `c` on the SIMD backend in `T` (recurrent, or chunkwise with `chunk`); returns
/// `(o, state)`.
fn run_simd<T: Element>(b: &Simd, c: &Case, chunk: Option<usize>) -> (Vec<f64>, Vec<f64>) {
    let t = |x: &[f64]| -> Vec<T> { x.iter().map(|&v| T::from_f64(v)).collect() };
    let (q, k, v) = (t(&c.q), t(&c.k), t(&c.v));
    let beta = c.beta.as_deref().map(t);
    let g = c.g.as_deref().map(t);
    let mut s: Vec<T::Acc> = c.s0.iter().map(|&x| T::Acc::from_f64(x)).collect();
    let mut o = vec![T::from_f64(f64::NAN); c.l * c.h * c.dv];
    let inputs = MemoryInputs {
        q: b.view(&q, &[c.l, c.h, c.dk]).unwrap(),
        k: b.view(&k, &[c.l, c.h, c.dk]).unwrap(),
        v: b.view(&v, &[c.l, c.h, c.dv]).unwrap(),
        beta: beta.as_ref().map(|x| b.view(x, &[c.l, c.h]).unwrap()),
        log_decay: g.as_ref().map(|x| b.view(x, &[c.l, c.h]).unwrap()),
    };
    let sv = b.view_mut(&mut s, &[c.h, c.dv, c.dk]).unwrap();
    let ov = Some(b.view_mut(&mut o, &[c.l, c.h, c.dv]).unwrap());
    match chunk {
        None => b.linear_memory_recurrent(c.spec, inputs, sv, ov).unwrap(),
        Some(ch) => {
            let wl = b
                .linear_memory_chunkwise_workspace_len(ch, c.dk, c.dv)
                .unwrap();
            let mut ws = vec![T::Acc::from_f64(f64::NAN); wl];
            b.linear_memory_chunkwise(
                c.spec,
                ch,
                inputs,
                sv,
                ov,
                b.view_mut(&mut ws, &[wl]).unwrap(),
            )
            .unwrap();
        }
    }
    (
        o.iter().map(|x| x.to_f64()).collect(),
        s.iter().map(|x| x.to_f64()).collect(),
    )
}

fn run_ref(c: &Case) -> (Vec<f64>, Vec<f64>) {
    let b = Reference;
    let mut s = c.s0.clone();
    let mut o = vec![f64::NAN; c.l * c.h * c.dv];
    let inputs = MemoryInputs {
        q: b.view(&c.q, &[c.l, c.h, c.dk]).unwrap(),
        k: b.view(&c.k, &[c.l, c.h, c.dk]).unwrap(),
        v: b.view(&c.v, &[c.l, c.h, c.dv]).unwrap(),
        beta: c.beta.as_ref().map(|x| b.view(x, &[c.l, c.h]).unwrap()),
        log_decay: c.g.as_ref().map(|x| b.view(x, &[c.l, c.h]).unwrap()),
    };
    b.linear_memory_recurrent(
        c.spec,
        inputs,
        b.view_mut(&mut s, &[c.h, c.dv, c.dk]).unwrap(),
        Some(b.view_mut(&mut o, &[c.l, c.h, c.dv]).unwrap()),
    )
    .unwrap();
    (o, s)
}

/// Bound: the store's rounding plus `c (L + Dk) u_acc` times the scale of the values (inputs of
/// order 1, unit keys, |beta| <= 1: the state stays of order `sqrt(Dk) + L`).
fn close<T: Element>(what: &str, got: &[f64], want: &[f64], c: &Case, slack: f64) {
    let ua = <T::Acc as Element>::DTYPE.unit_roundoff();
    let ut = T::DTYPE.unit_roundoff();
    // The largest value computed bounds the terms that were summed (relative to it, each
    // rounding is at most `u_acc`).
    let big = want.iter().fold(
        0.0f64,
        |m, x| if x.is_finite() { m.max(x.abs()) } else { m },
    );
    let scale = (1.0 + c.l as f64) * (1.0 + c.dk as f64).sqrt() * 4.0 + big;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 2.0 * ut * w.abs() + slack * 16.0 * (c.l + c.dk + 4) as f64 * ua * scale;
        assert!(
            (g - w).abs() <= tol
                || (g.is_nan() && w.is_nan())
                // Overflow of the store: the reference value rounds to the same infinity.
                || (T::from_f64(*w).to_f64().is_infinite() && T::from_f64(*w).to_f64() == *g),
            "{what}[{i}] {} {:?}: {g} vs {w} (tol {tol})",
            T::DTYPE.name(),
            (c.l, c.h, c.dk, c.dv, c.spec)
        );
    }
}

fn check<T: Element>(
    dims: [usize; 4],
    rule: usize,
    elu: bool,
    beta: bool,
    decay: Option<f64>,
    seed: u64,
) {
    let Some(b) = Simd::new().ok() else { return };
    let c = case::<T>(dims, spec(rule, elu), beta, decay, seed);
    let (o, s) = run_simd::<T>(&b, &c, None);
    let (ow, sw) = run_ref(&c);
    close::<T>("o", &o, &ow, &c, 1.0);
    close::<T::Acc>("state", &s, &sw, &c, 1.0);
}

#[test]
fn recurrent_every_tail() {
    let w = F32_LANES;
    for d in 0..=3 * w + 1 {
        for rule in 0..2 {
            check::<f64>(
                [3, 2, d, 5],
                rule,
                d % 2 == 0,
                rule == 1,
                Some(-0.1),
                d as u64,
            );
            check::<f32>([3, 1, 7, d], rule, d % 3 == 0, true, None, d as u64 + 9);
            check::<f32>(
                [2, 2, d, d],
                rule,
                false,
                d % 2 == 1,
                Some(-0.3),
                d as u64 + 99,
            );
        }
    }
}

#[test]
fn recurrent_half_types_and_wide_heads() {
    for rule in 0..2 {
        check::<f16>([5, 2, 19, 13], rule, true, true, Some(-0.2), 1);
        check::<bf16>([5, 2, 16, 17], rule, false, true, Some(-0.2), 2);
        check::<f32>([4, 1, 128, 128], rule, false, true, Some(-0.05), 3);
        // Wider than the stack buffers: the portable path.
        check::<f32>([2, 1, 600, 3], rule, false, true, None, 4);
    }
}

#[test]
fn recurrent_log_decay_minus_20() {
    for rule in 0..2 {
        check::<f32>([6, 2, 9, 11], rule, false, true, Some(-40.0), 5);
        check::<f64>([6, 2, 9, 11], rule, true, false, Some(-40.0), 6);
    }
}

#[test]
fn recurrent_infinities_in_the_same_places() {
    let Some(b) = Simd::new().ok() else { return };
    for rule in 0..2 {
        let mut c = case::<f32>([2, 1, 11, 3], spec(rule, false), true, Some(-0.1), 7);
        c.v[1] = f64::INFINITY;
        c.k[3] = 0.0;
        let (o, s) = run_simd::<f32>(&b, &c, None);
        let (ow, sw) = run_ref(&c);
        for (x, y) in o.iter().zip(&ow).chain(s.iter().zip(&sw)) {
            assert_eq!(x.is_nan(), y.is_nan(), "{x} vs {y}");
            assert_eq!(x.is_infinite(), y.is_infinite(), "{x} vs {y}");
        }
    }
}

#[test]
fn recurrent_strided_views() {
    let Some(b) = Simd::new().ok() else { return };
    let (l, h, dk, dv) = (3, 2, 10, 9);
    let c = case::<f64>([l, h, dk, dv], spec(1, false), true, Some(-0.2), 8);
    let (ow, sw) = run_ref(&c);
    // q stored [H, L, Dk]; state stored [H, Dk, Dv] (rows not contiguous); o stored [Dv, L, H].
    let mut qt = vec![0.0; l * h * dk];
    for t in 0..l {
        for hh in 0..h {
            for j in 0..dk {
                qt[(hh * l + t) * dk + j] = c.q[(t * h + hh) * dk + j];
            }
        }
    }
    let mut st = vec![0.0; h * dk * dv];
    for hh in 0..h {
        for i in 0..dv {
            for j in 0..dk {
                st[(hh * dk + j) * dv + i] = c.s0[(hh * dv + i) * dk + j];
            }
        }
    }
    let mut ot = vec![f64::NAN; l * h * dv];
    let inputs = MemoryInputs {
        q: View::new(
            &qt[..],
            Layout::new(0, &[l, h, dk], &[dk, l * dk, 1]).unwrap(),
        )
        .unwrap(),
        k: b.view(&c.k, &[l, h, dk]).unwrap(),
        v: b.view(&c.v, &[l, h, dv]).unwrap(),
        beta: c.beta.as_ref().map(|x| b.view(x, &[l, h]).unwrap()),
        log_decay: c.g.as_ref().map(|x| b.view(x, &[l, h]).unwrap()),
    };
    b.linear_memory_recurrent(
        c.spec,
        inputs,
        ViewMut::new(
            &mut st[..],
            Layout::new(0, &[h, dv, dk], &[dk * dv, 1, dv]).unwrap(),
        )
        .unwrap(),
        Some(
            ViewMut::new(
                &mut ot[..],
                Layout::new(0, &[l, h, dv], &[h, 1, l * h]).unwrap(),
            )
            .unwrap(),
        ),
    )
    .unwrap();
    for t in 0..l {
        for hh in 0..h {
            for i in 0..dv {
                let (g, w) = (ot[i * l * h + t * h + hh], ow[(t * h + hh) * dv + i]);
                assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "o {g} vs {w}");
            }
        }
    }
    for hh in 0..h {
        for i in 0..dv {
            for j in 0..dk {
                let (g, w) = (st[(hh * dk + j) * dv + i], sw[(hh * dv + i) * dk + j]);
                assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "s {g} vs {w}");
            }
        }
    }
    // Strided k and v rows (stride 2 over features) through the vector path.
    let mut k2 = vec![0.0; 2 * c.k.len()];
    for (i, x) in c.k.iter().enumerate() {
        k2[2 * i] = *x;
    }
    let mut s = c.s0.clone();
    let mut o = vec![f64::NAN; l * h * dv];
    let inputs = MemoryInputs {
        q: b.view(&c.q, &[l, h, dk]).unwrap(),
        k: View::new(
            &k2[..],
            Layout::new(0, &[l, h, dk], &[2 * h * dk, 2 * dk, 2]).unwrap(),
        )
        .unwrap(),
        v: b.view(&c.v, &[l, h, dv]).unwrap(),
        beta: c.beta.as_ref().map(|x| b.view(x, &[l, h]).unwrap()),
        log_decay: c.g.as_ref().map(|x| b.view(x, &[l, h]).unwrap()),
    };
    b.linear_memory_recurrent(
        c.spec,
        inputs,
        b.view_mut(&mut s, &[h, dv, dk]).unwrap(),
        Some(b.view_mut(&mut o, &[l, h, dv]).unwrap()),
    )
    .unwrap();
    close::<f64>("o", &o, &ow, &c, 1.0);
    close::<f64>("state", &s, &sw, &c, 1.0);
}

#[test]
fn chunkwise_equals_recurrent_every_chunk() {
    let Some(b) = Simd::new().ok() else { return };
    for (rule, elu, decay) in [
        (0, false, None),
        (0, true, Some(-0.3)),
        (1, false, Some(-0.2)),
        (1, false, Some(-40.0)),
    ] {
        let l = 9;
        let c = case::<f64>([l, 2, 11, 7], spec(rule, elu), true, decay, 10);
        let (o, s) = run_simd::<f64>(&b, &c, None);
        for ch in 1..=l + 2 {
            let (oc, sc) = run_simd::<f64>(&b, &c, Some(ch));
            close::<f64>("o chunkwise", &oc, &o, &c, 4.0);
            close::<f64>("state chunkwise", &sc, &s, &c, 4.0);
        }
        let c32 = case::<f32>([l, 2, 11, 7], spec(rule, elu), true, decay, 11);
        let (ow, sw) = run_ref(&c32);
        for ch in 1..=l + 2 {
            let (oc, sc) = run_simd::<f32>(&b, &c32, Some(ch));
            close::<f32>("o chunkwise f32", &oc, &ow, &c32, 4.0);
            close::<f32>("state chunkwise f32", &sc, &sw, &c32, 4.0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn recurrent_random(l in 0usize..6, h in 1usize..3, dk in 0usize..40, dv in 0usize..40,
                        rule in 0usize..2, elu in any::<bool>(), beta in any::<bool>(),
                        decay in proptest::option::of(-3.0f64..0.0), seed in any::<u64>()) {
        check::<f32>([l, h, dk, dv], rule, elu, beta, decay, seed);
        check::<f64>([l, h, dk, dv], rule, elu, beta, decay, seed);
    }

    #[test]
    fn chunkwise_random(l in 0usize..12, dk in 0usize..20, dv in 0usize..20, chunk in 1usize..14,
                        rule in 0usize..2, decay in proptest::option::of(-3.0f64..0.0), seed in any::<u64>()) {
        let Some(b) = Simd::new().ok() else { return Ok(()) };
        let c = case::<f32>([l, 2, dk, dv], spec(rule, false), true, decay, seed);
        let (ow, sw) = run_ref(&c);
        let (oc, sc) = run_simd::<f32>(&b, &c, Some(chunk));
        close::<f32>("o", &oc, &ow, &c, 4.0);
        close::<f32>("state", &sc, &sw, &c, 4.0);
    }

    #[test]
    fn bad_input_same_err(which in 0usize..8, chunk in proptest::option::of(0usize..4)) {
        let Some(s) = Simd::new().ok() else { return Ok(()) };
        if which == 7 && chunk.is_none() {
            // Nothing wrong: the workspace only exists for the chunkwise form.
            return Ok(());
        }
        let r = Reference;
        let (l, h, dk, dv) = (3, 2, 4, 5);
        let buf = vec![0.25f32; 256];
        let mut sh = [vec![l, h, dk], vec![l, h, dk], vec![l, h, dv], vec![l, h], vec![l, h], vec![h, dv, dk], vec![l, h, dv]];
        match which {
            0 => sh[0] = vec![l, h, dk + 1],
            1 => sh[1] = vec![l, h],
            2 => sh[2] = vec![l + 1, h, dv],
            3 => sh[3] = vec![l, h + 1],
            4 => sh[4] = vec![l],
            5 => sh[5] = vec![h, dk, dv],
            6 => sh[6] = vec![l, h, dv + 1],
            _ => {}
        }
        let mut st1 = vec![0.0f32; 64];
        let mut st2 = st1.clone();
        let mut o1 = vec![0.0f32; 64];
        let mut o2 = o1.clone();
        let sp = spec(1, false);
        let si = MemoryInputs {
            q: s.view(&buf, &sh[0]).unwrap(), k: s.view(&buf, &sh[1]).unwrap(),
            v: s.view(&buf, &sh[2]).unwrap(), beta: Some(s.view(&buf, &sh[3]).unwrap()),
            log_decay: Some(s.view(&buf, &sh[4]).unwrap()),
        };
        let ri = MemoryInputs {
            q: r.view(&buf, &sh[0]).unwrap(), k: r.view(&buf, &sh[1]).unwrap(),
            v: r.view(&buf, &sh[2]).unwrap(), beta: Some(r.view(&buf, &sh[3]).unwrap()),
            log_decay: Some(r.view(&buf, &sh[4]).unwrap()),
        };
        let (e1, e2) = match chunk {
            None => (
                s.linear_memory_recurrent(sp, si, s.view_mut(&mut st1, &sh[5]).unwrap(), Some(s.view_mut(&mut o1, &sh[6]).unwrap())),
                r.linear_memory_recurrent(sp, ri, r.view_mut(&mut st2, &sh[5]).unwrap(), Some(r.view_mut(&mut o2, &sh[6]).unwrap())),
            ),
            Some(ch) => {
                let wl = s.linear_memory_chunkwise_workspace_len(ch.max(1), dk, dv).unwrap();
                // One element short when the shapes are right: a capacity error.
                let mut w1 = vec![0.0f32; wl - 1];
                let mut w2 = w1.clone();
                (
                    s.linear_memory_chunkwise(sp, ch, si, s.view_mut(&mut st1, &sh[5]).unwrap(), Some(s.view_mut(&mut o1, &sh[6]).unwrap()), s.view_mut(&mut w1, &[wl - 1]).unwrap()),
                    r.linear_memory_chunkwise(sp, ch, ri, r.view_mut(&mut st2, &sh[5]).unwrap(), Some(r.view_mut(&mut o2, &sh[6]).unwrap()), r.view_mut(&mut w2, &[wl - 1]).unwrap()),
                )
            }
        };
        prop_assert!(e1.is_err());
        prop_assert_eq!(e1, e2);
    }
}
