//! Linear-memory properties: every preset of seq-memory, recurrent and chunkwise, streamed token
//! by token, and split into parts merged by their chunk states (LASP-2), each against the f64
//! recurrence of the reference backend on the same (rounded) inputs.
//!
//! Tolerance: the numerics notes' rule for linear attention / DeltaNet (A2: relative L2 error at
//! most 1e-12 in f64, 1e-5 in f32, 5e-3 in f16 and bf16, fla's ceiling), checked as the
//! normalised error `sum((a-b)^2)/sum(b^2) <= r^2`, and per element
//! `|a - b| <= floor + r max|b| + 2u |b|` (the same relative budget measured against the output's
//! scale, plus the store's rounding), so a single far-off element fails even when the tensor's
//! error is small.

use proptest::prelude::*;
use seq_memory::parallel::{advance, chunk_state};
use seq_memory::{FeatureMap, LinearMemory, MemoryInputs};
use seqcore::{Allocate, Backend, DType, Element, Layout, Real, Reference};

use crate::Failure;
use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, Tensor, round, widen};
use crate::perf::Timing;
use crate::properties::{Bench, Work};
use crate::tolerance;

/// The presets the rows run, by index.
pub const PRESETS: [&str; 5] = [
    "linear_attention(identity)",
    "linear_attention(elu1)",
    "decayed_linear_attention",
    "delta_net",
    "gated_delta_net",
];

fn preset(i: usize) -> LinearMemory {
    match i % 5 {
        0 => LinearMemory::linear_attention(FeatureMap::Identity),
        1 => LinearMemory::linear_attention(FeatureMap::Elu1),
        2 => LinearMemory::decayed_linear_attention(),
        3 => LinearMemory::delta_net(),
        _ => LinearMemory::gated_delta_net(),
    }
}

/// One linear-memory call.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Index into [`PRESETS`].
    pub preset: usize,
    /// Tokens, heads, key and value features.
    pub dims: [usize; 4],
    /// `q, k [L, H, Dk]` (k rows unit-norm), `v [L, H, Dv]`.
    pub q: Vec<f64>,
    /// Keys.
    pub k: Vec<f64>,
    /// Values.
    pub v: Vec<f64>,
    /// `beta [L, H]` in (0, 1).
    pub beta: Vec<f64>,
    /// `log_decay [L, H]`.
    pub g: Vec<f64>,
    /// Initial state `[H, Dv, Dk]`.
    pub s0: Vec<f64>,
}

fn unit_rows(x: &mut [f64], d: usize) {
    for row in x.chunks_mut(d.max(1)) {
        let n = row.iter().map(|a| a * a).sum::<f64>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|a| *a /= n);
        }
    }
}

/// Random cases: lengths 0..80 (odd ones, and past the chunk sizes), 1-3 heads, 1-17 features,
/// log-decays in (-1, 0) or the extremes 0, -1e-4 and -20.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        0usize..5,
        0usize..80,
        1usize..4,
        1usize..18,
        1usize..18,
        0usize..4,
        any::<bool>(),
    )
        .prop_flat_map(|(preset, l, h, dk, dv, gate, init)| {
            let f = |n: usize, s: f64| proptest::collection::vec(-s..s, n);
            let g = match gate {
                0 => proptest::collection::vec(-1.0f64..0.0, l * h).boxed(),
                1 => Just(vec![0.0; l * h]).boxed(),
                2 => Just(vec![-1e-4; l * h]).boxed(),
                _ => Just(vec![-20.0; l * h]).boxed(),
            };
            (
                f(l * h * dk, 1.0),
                f(l * h * dk, 1.0),
                f(l * h * dv, 1.0),
                proptest::collection::vec(0.0f64..1.0, l * h),
                g,
                f(if init { h * dv * dk } else { 0 }, 1.0),
            )
                .prop_map(move |(q, mut k, v, beta, g, s0)| {
                    unit_rows(&mut k, dk);
                    let s0 = if s0.is_empty() {
                        vec![0.0; h * dv * dk]
                    } else {
                        s0
                    };
                    Case {
                        preset,
                        dims: [l, h, dk, dv],
                        q,
                        k,
                        v,
                        beta,
                        g,
                        s0,
                    }
                })
        })
}

/// Fixed cases: `L = 0`, `L = 1`, and 67 tokens (past a chunk of 64) of every preset.
///
/// # Errors
/// Never.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let mut v = Vec::new();
    for preset in 0..5 {
        for (l, h, dk, dv) in [(0, 2, 3, 2), (1, 1, 4, 4), (67, 1, 8, 5)] {
            let q: Vec<f64> = (0..l * h * dk)
                .map(|i| ((i * 37 % 19) as f64 - 9.0) / 9.0)
                .collect();
            let mut k: Vec<f64> = (0..l * h * dk)
                .map(|i| ((i * 53 % 23) as f64 - 11.0) / 11.0)
                .collect();
            unit_rows(&mut k, dk);
            v.push(Case {
                preset,
                dims: [l, h, dk, dv],
                q,
                k,
                v: (0..l * h * dv)
                    .map(|i| ((i * 29 % 17) as f64 - 8.0) / 8.0)
                    .collect(),
                beta: (0..l * h).map(|i| 0.05 + (i % 10) as f64 / 10.0).collect(),
                g: (0..l * h).map(|i| -((i % 7) as f64) / 7.0).collect(),
                s0: vec![0.0; h * dv * dk],
            });
        }
    }
    Ok(v)
}

/// The relative-L2 ceiling of the module docs.
fn rel_l2<T: Element>() -> f64 {
    match T::DTYPE {
        DType::F64 => 1e-12,
        DType::F32 => 1e-5,
        _ => 5e-3,
    }
}

/// The A2 rule alone: normalised error at most `r^2`, and per element `|a - b| <= r ||b||_2`
/// (which the normalised bound implies). Used for the Miras memories, whose normalisations (Lq,
/// softmax) spread a rounding error over a whole weight matrix, so that no per-element bound
/// tighter than the tensor's own follows from the rule.
fn check_rel_l2<T: Element>(
    arg: &'static str,
    got: &[f64],
    want: &[f64],
) -> Result<Agreement, Failure> {
    let r = rel_l2::<T>();
    let norm = want
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt();
    let bound = Bound {
        atol: tolerance::floor::<T>() + r * norm,
        rtol: 0.0,
    };
    let a = compare(arg, got, want, |_| bound)?;
    if a.nmse > r * r {
        return Err(Failure::Nmse {
            arg,
            nmse: a.nmse,
            max: r * r,
        });
    }
    Ok(a)
}

fn check_close<T: Element>(
    arg: &'static str,
    got: &[f64],
    want: &[f64],
) -> Result<Agreement, Failure> {
    let want = want.iter().map(|&w| round::<T>(w)).collect::<Vec<_>>();
    let r = rel_l2::<T>();
    let scale = want
        .iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |a, &x| a.max(x.abs()));
    let bound = Bound {
        atol: tolerance::floor::<T>() + r * scale,
        rtol: 2.0 * tolerance::u::<T>(),
    };
    let a = compare(arg, got, &want, |_| bound)?;
    if a.nmse > r * r {
        return Err(Failure::Nmse {
            arg,
            nmse: a.nmse,
            max: r * r,
        });
    }
    Ok(a)
}

/// The case's tensors rounded to `T` (the state to `T::Acc`), as f64.
struct Rounded {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    beta: Vec<f64>,
    g: Vec<f64>,
    s0: Vec<f64>,
}

fn rounded<T: Element>(c: &Case) -> Rounded {
    let r = |x: &[f64]| x.iter().map(|&v| round::<T>(v)).collect::<Vec<_>>();
    Rounded {
        q: r(&c.q),
        k: r(&c.k),
        v: r(&c.v),
        beta: r(&c.beta),
        g: r(&c.g),
        s0: c.s0.iter().map(|&v| round::<T::Acc>(v)).collect(),
    }
}

/// The f64 reference: the recurrent kernel of [`Reference`] on the rounded inputs, tokens
/// `[a, e)`, from `s0`; returns `(o, state)`.
fn reference(
    m: LinearMemory,
    c: &Case,
    x: &Rounded,
    s0: &[f64],
    a: usize,
    e: usize,
) -> Result<(Vec<f64>, Vec<f64>), Failure> {
    let r = Reference;
    let [l, h, dk, dv] = c.dims;
    let setup = Failure::setup;
    let n = e - a;
    let inp = MemoryInputs {
        q: r.view(&x.q, &[l, h, dk])
            .and_then(|v| v.narrow(0, a, n))
            .map_err(setup)?,
        k: r.view(&x.k, &[l, h, dk])
            .and_then(|v| v.narrow(0, a, n))
            .map_err(setup)?,
        v: r.view(&x.v, &[l, h, dv])
            .and_then(|v| v.narrow(0, a, n))
            .map_err(setup)?,
        beta: gate_view(m, true, &x.beta, [l, h], a, n)?,
        log_decay: gate_view(m, false, &x.g, [l, h], a, n)?,
    };
    let mut s = s0.to_vec();
    let mut o = vec![0.0; n * h * dv];
    m.recurrent()
        .forward(
            &r,
            inp,
            r.view_mut(&mut s, &[h, dv, dk]).map_err(setup)?,
            Some(r.view_mut(&mut o, &[n, h, dv]).map_err(setup)?),
            None,
        )
        .map_err(setup)?;
    Ok((o, s))
}

fn gate_view<'a>(
    m: LinearMemory,
    beta: bool,
    data: &'a [f64],
    [l, h]: [usize; 2],
    a: usize,
    n: usize,
) -> Result<Option<seqcore::View<'a, Reference, f64>>, Failure> {
    use seq_memory::Gates as G;
    let want = matches!(
        (m.gates, beta),
        (G::Beta | G::BetaAndDecay, true) | (G::Decay | G::BetaAndDecay, false)
    );
    if !want {
        return Ok(None);
    }
    Reference
        .view(data, &[l, h])
        .and_then(|v| v.narrow(0, a, n))
        .map(Some)
        .map_err(Failure::setup)
}

/// Backend-side inputs of a case.
struct Uploaded<B: Allocate, T: Element> {
    q: Input<B, T>,
    k: Input<B, T>,
    v: Input<B, T>,
    beta: Option<Input<B, T>>,
    g: Option<Input<B, T>>,
}

impl<B: Allocate, T: Element> Uploaded<B, T> {
    fn new(b: &B, m: LinearMemory, c: &Case) -> Result<Self, Failure> {
        use seq_memory::Gates as G;
        let [l, h, dk, dv] = c.dims;
        let t = |shape: &[usize], v: &[f64]| Tensor::contiguous(shape, v.to_vec());
        let (wb, wg) = match m.gates {
            G::None => (false, false),
            G::Decay => (false, true),
            G::Beta => (true, false),
            _ => (true, true),
        };
        Ok(Uploaded {
            q: Input::new(b, &t(&[l, h, dk], &c.q)?)?,
            k: Input::new(b, &t(&[l, h, dk], &c.k)?)?,
            v: Input::new(b, &t(&[l, h, dv], &c.v)?)?,
            beta: if wb {
                Some(Input::new(b, &t(&[l, h], &c.beta)?)?)
            } else {
                None
            },
            g: if wg {
                Some(Input::new(b, &t(&[l, h], &c.g)?)?)
            } else {
                None
            },
        })
    }

    /// Views of tokens `[a, a + n)`.
    fn views(&self, a: usize, n: usize) -> Result<MemoryInputs<'_, B, T>, Failure> {
        fn cut<B: Allocate, T: Element>(
            i: &Input<B, T>,
            a: usize,
            n: usize,
        ) -> Result<seqcore::View<'_, B, T>, Failure> {
            i.view()?.narrow(0, a, n).map_err(Failure::setup)
        }
        Ok(MemoryInputs {
            q: cut(&self.q, a, n)?,
            k: cut(&self.k, a, n)?,
            v: cut(&self.v, a, n)?,
            beta: self.beta.as_ref().map(|i| cut(i, a, n)).transpose()?,
            log_decay: self.g.as_ref().map(|i| cut(i, a, n)).transpose()?,
        })
    }
}

fn acc_values<T: Element>(v: &[f64]) -> Vec<T::Acc> {
    v.iter()
        .map(|&x| <T::Acc as Element>::from_f64(x))
        .collect()
}

/// Runs the case's preset on `b` in `T` (recurrent, or chunkwise with `chunk`), from the case's
/// initial state, and compares outputs and final state with the f64 recurrence.
///
/// # Errors
/// The first [`Failure`].
pub fn check_forward<B: Allocate, T: Element>(
    b: &B,
    c: &Case,
    chunk: Option<usize>,
) -> Result<Agreement, Failure> {
    let [l, h, dk, dv] = c.dims;
    let base = preset(c.preset);
    let m = chunk.map_or(base, |ch| base.chunkwise(ch));
    let x = rounded::<T>(c);
    let (want_o, want_s) = reference(base, c, &x, &x.s0, 0, l)?;
    let up = Uploaded::<B, T>::new(b, m, c)?;
    let sl = Layout::contiguous(&[h, dv, dk]).map_err(Failure::setup)?;
    let mut state = Output::<B, T::Acc>::new(b, &sl, Some(&acc_values::<T>(&x.s0)))?;
    let ol = Layout::contiguous(&[l, h, dv]).map_err(Failure::setup)?;
    let mut o = Output::<B, T>::new(b, &ol, None)?;
    let wl = m.workspace_len(b, dk, dv).map_err(Failure::Kernel)?;
    let wsl = Layout::contiguous(&[wl]).map_err(Failure::setup)?;
    let mut ws = Output::<B, T::Acc>::new(b, &wsl, None)?;
    let wsv = if wl > 0 { Some(ws.view()?) } else { None };
    m.forward(b, up.views(0, l)?, state.view()?, Some(o.view()?), wsv)
        .map_err(Failure::Kernel)?;
    let a = check_close::<T>("o", &widen(&o.finish(b, "o")?), &want_o)?;
    let s = check_close::<T::Acc>("state", &widen(&state.finish(b, "state")?), &want_s)?;
    Ok(a.worst(s))
}

/// Token-by-token calls (a decode loop) against one call of the whole sequence, both on `b` in
/// `T`: equal, element for element, and both within the bound of the f64 recurrence.
///
/// # Errors
/// The first [`Failure`].
pub fn check_streaming<B: Allocate, T: Element>(b: &B, c: &Case) -> Result<Agreement, Failure> {
    let [l, h, dk, dv] = c.dims;
    let m = preset(c.preset);
    let x = rounded::<T>(c);
    let up = Uploaded::<B, T>::new(b, m, c)?;
    let sl = Layout::contiguous(&[h, dv, dk]).map_err(Failure::setup)?;
    let ol = Layout::contiguous(&[l, h, dv]).map_err(Failure::setup)?;
    let init = acc_values::<T>(&x.s0);
    let mut s_all = Output::<B, T::Acc>::new(b, &sl, Some(&init))?;
    let mut o_all = Output::<B, T>::new(b, &ol, None)?;
    m.forward(b, up.views(0, l)?, s_all.view()?, Some(o_all.view()?), None)
        .map_err(Failure::Kernel)?;
    let mut s = Output::<B, T::Acc>::new(b, &sl, Some(&init))?;
    let mut o = Output::<B, T>::new(b, &ol, None)?;
    for t in 0..l {
        let ov = o.view()?.narrow(0, t, 1).map_err(Failure::setup)?;
        m.forward(b, up.views(t, 1)?, s.view()?, Some(ov), None)
            .map_err(Failure::Kernel)?;
    }
    let (go, gs) = (widen(&o.finish(b, "o")?), widen(&s.finish(b, "state")?));
    let (wo, ws) = (
        widen(&o_all.finish(b, "o")?),
        widen(&s_all.finish(b, "state")?),
    );
    compare("o", &go, &wo, |_| Bound::EXACT)?;
    compare("state", &gs, &ws, |_| Bound::EXACT)?;
    let (ro, _) = reference(m, c, &x, &x.s0, 0, l)?;
    check_close::<T>("o", &go, &ro)
}

/// Splits the case at a third and two thirds of its length; each part computes its chunk state
/// `(M, D)` alone (from its own tokens, on `b` in `T`), the states are combined by a prefix on the
/// host side (as a collective would after an all-gather), each part then runs from its combined
/// start state; outputs and final state against the f64 recurrence of the whole.
///
/// # Errors
/// The first [`Failure`].
pub fn check_merge<B: Allocate, T: Element>(
    b: &B,
    c: &Case,
    chunk: Option<usize>,
) -> Result<Agreement, Failure> {
    let [l, h, dk, dv] = c.dims;
    let base = preset(c.preset);
    let m = chunk.map_or(base, |ch| base.chunkwise(ch));
    let x = rounded::<T>(c);
    let (want_o, want_s) = reference(base, c, &x, &x.s0, 0, l)?;
    let up = Uploaded::<B, T>::new(b, m, c)?;
    let cuts = [0, l / 3, 2 * l / 3, l];
    let setup = Failure::setup;
    let sl = Layout::contiguous(&[h, dv, dk]).map_err(setup)?;
    let ml = Layout::contiguous(&[h, dk, dk]).map_err(setup)?;
    let zero = Input::<B, T>::new(b, &Tensor::contiguous(&[1], vec![0.0])?)?;
    let wl = m
        .workspace_len(b, dk, dv.max(dk))
        .map_err(Failure::Kernel)?;
    let wsl = Layout::contiguous(&[wl]).map_err(setup)?;
    let mut ws = Output::<B, T::Acc>::new(b, &wsl, None)?;
    let mut eye = vec![<T::Acc as Real>::zero(); h * dk * dk];
    for hh in 0..h {
        for j in 0..dk {
            if let Some(e) = eye.get_mut((hh * dk + j) * dk + j) {
                *e = <T::Acc as Real>::one();
            }
        }
    }
    let zeros = vec![<T::Acc as Real>::zero(); h * dv * dk];
    let ol = Layout::contiguous(&[l, h, dv]).map_err(setup)?;
    let mut o = Output::<B, T>::new(b, &ol, None)?;
    let mut start = acc_values::<T>(&x.s0);
    for w in cuts.windows(2) {
        let (a, e) = match *w {
            [a, e] => (a, e),
            _ => continue,
        };
        // The part's chunk state, alone.
        let mut d = Output::<B, T::Acc>::new(b, &sl, Some(&zeros))?;
        let mut mm = Output::<B, T::Acc>::new(b, &ml, Some(&eye))?;
        let wsv = if wl > 0 { Some(ws.view()?) } else { None };
        chunk_state(
            b,
            &m,
            up.views(a, e - a)?,
            zero.view()?,
            d.view()?,
            mm.view()?,
            wsv,
        )
        .map_err(Failure::Kernel)?;
        // The part's outputs from its start state.
        let mut s = Output::<B, T::Acc>::new(b, &sl, Some(&start))?;
        let ov = o.view()?.narrow(0, a, e - a).map_err(setup)?;
        let wsv = if wl > 0 { Some(ws.view()?) } else { None };
        m.forward(b, up.views(a, e - a)?, s.view()?, Some(ov), wsv)
            .map_err(Failure::Kernel)?;
        // The next start: start M + D.
        let st = Input::<B, T::Acc>::new(
            b,
            &Tensor::contiguous(&[h, dv, dk], start.iter().map(|v| v.to_f64()).collect())?,
        )?;
        let mv = mm.finish(b, "transition")?;
        let mi = Input::<B, T::Acc>::new(
            b,
            &Tensor::contiguous(&[h, dk, dk], mv.iter().map(|v| v.to_f64()).collect())?,
        )?;
        advance(b, st.view()?, mi.view()?, d.view()?).map_err(Failure::Kernel)?;
        start = d.finish(b, "state")?;
    }
    let a = check_close::<T>("o", &widen(&o.finish(b, "o")?), &want_o)?;
    let s = check_close::<T::Acc>("state", &widen(&start), &want_s)?;
    Ok(a.worst(s))
}

fn bench_case(l: usize, h: usize, d: usize) -> Case {
    let mut k: Vec<f64> = (0..l * h * d)
        .map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0)
        .collect();
    unit_rows(&mut k, d);
    Case {
        preset: 4,
        dims: [l, h, d, d],
        q: (0..l * h * d)
            .map(|i| ((i * 104_729) % 1000) as f64 / 500.0 - 1.0)
            .collect(),
        k,
        v: (0..l * h * d)
            .map(|i| ((i * 7907) % 1000) as f64 / 500.0 - 1.0)
            .collect(),
        beta: vec![0.5; l * h],
        g: vec![-0.05; l * h],
        s0: vec![0.0; h * d * d],
    }
}

/// Timing: one Gated DeltaNet decode step (one token, one head, `Dk = Dv = d`), recurrent form.
/// The time per call is the time per token (tokens/s = 1 / time). Work: `6 Dk Dv` flops (the
/// read of `S k`, the rank-one write, the read of `S q`).
///
/// # Errors
/// Setup failures.
pub fn bench_recurrent<B: Allocate, T: Element>(b: &B, d: usize) -> Result<Bench<'_>, Failure> {
    let c = bench_case(1, 1, d);
    let m = preset(4);
    let up = Uploaded::<B, T>::new(b, m, &c)?;
    let sl = Layout::contiguous(&[1, d, d]).map_err(Failure::setup)?;
    let mut s = Output::<B, T::Acc>::new(b, &sl, Some(&acc_values::<T>(&c.s0)))?;
    let ol = Layout::contiguous(&[1, 1, d]).map_err(Failure::setup)?;
    let mut o = Output::<B, T>::new(b, &ol, None)?;
    Ok(Bench {
        run: Box::new(move || {
            m.forward(b, up.views(0, 1)?, s.view()?, Some(o.view()?), None)
                .map_err(Failure::Kernel)
        }),
        work: Work::Flops(6.0 * (d * d) as f64),
        size: format!("1 token, Dk=Dv={d}"),
    })
}

/// Timing: Gated DeltaNet, chunkwise, `chunk` tokens per chunk, `l` tokens, one head,
/// `Dk = Dv = d`. Work per chunk of `n` tokens: `6 n Dk Dv + n^2 (Dk + Dv)` flops (chunk-start
/// reads and the state update; the triangular solve and the intra-chunk scores, each about half of
/// an `n x n` product).
///
/// # Errors
/// Setup failures.
pub fn bench_chunkwise<B: Allocate, T: Element>(
    b: &B,
    chunk: usize,
    l: usize,
    d: usize,
) -> Result<Bench<'_>, Failure> {
    let c = bench_case(l, 1, d);
    let m = preset(4).chunkwise(chunk);
    let up = Uploaded::<B, T>::new(b, m, &c)?;
    let sl = Layout::contiguous(&[1, d, d]).map_err(Failure::setup)?;
    let mut s = Output::<B, T::Acc>::new(b, &sl, Some(&acc_values::<T>(&c.s0)))?;
    let ol = Layout::contiguous(&[l, 1, d]).map_err(Failure::setup)?;
    let mut o = Output::<B, T>::new(b, &ol, None)?;
    let wl = m.workspace_len(b, d, d).map_err(Failure::Kernel)?;
    let mut ws =
        Output::<B, T::Acc>::new(b, &Layout::contiguous(&[wl]).map_err(Failure::setup)?, None)?;
    let (n, dd) = (chunk as f64, d as f64);
    let chunks = l.div_ceil(chunk) as f64;
    Ok(Bench {
        run: Box::new(move || {
            m.forward(
                b,
                up.views(0, l)?,
                s.view()?,
                Some(o.view()?),
                Some(ws.view()?),
            )
            .map_err(Failure::Kernel)
        }),
        work: Work::Flops(chunks * (6.0 * n * dd * dd + n * n * 2.0 * dd)),
        size: format!("L={l}, chunk={chunk}, Dk=Dv={d}"),
    })
}

/// Tokens per second of a recurrent timing (one token per call).
pub fn tokens_per_second(t: &Timing) -> f64 {
    1.0 / t.seconds
}

/// One Miras memory run (host code in the accumulation type: the same on every backend).
#[derive(Clone, Debug, PartialEq)]
pub struct MirasCase {
    /// 0 Titans, 1 Moneta (p 3, q 4), 2 Yaad (delta 100: the L2 branch; the discontinuous
    /// mixture is not a rounding question and is covered by the crate's f64 tests), 3 Memora.
    pub preset: usize,
    /// Tokens, features.
    pub dims: [usize; 2],
    /// Chunk size.
    pub chunk: usize,
    /// `q, k, v [L, d]` (k rows unit-norm).
    pub qkv: [Vec<f64>; 3],
    /// Learning rate, keep and momentum gates `[L]`.
    pub gates: [Vec<f64>; 3],
    /// Initial parameters.
    pub p0: Vec<f64>,
}

fn miras(preset: usize, d: usize) -> seq_memory::Miras {
    use seq_memory::Miras;
    let h = 2 * d;
    match preset % 4 {
        0 => Miras::titans(h),
        1 => Miras::moneta(h, 3.0, 4.0),
        2 => Miras::yaad(h, 100.0),
        _ => Miras::memora(h, 1.0),
    }
}

/// Random Miras cases: every preset, lengths 0..40, widths 1..9, chunks 1..8.
pub fn miras_cases() -> impl Strategy<Value = MirasCase> {
    (0usize..4, 0usize..40, 1usize..9, 1usize..8).prop_flat_map(|(preset, l, d, chunk)| {
        let f = |n: usize, a: f64, b: f64| proptest::collection::vec(a..b, n);
        let np = 4 * d * d;
        (
            [
                f(l * d, -1.0, 1.0),
                f(l * d, -1.0, 1.0),
                f(l * d, -1.0, 1.0),
            ],
            [f(l, 0.0, 0.5), f(l, 0.8, 1.0), f(l, 0.0, 0.9)],
            f(np, -1.0, 1.0),
        )
            .prop_map(move |(mut qkv, gates, p)| {
                if let Some(k) = qkv.get_mut(1) {
                    unit_rows(k, d);
                }
                let h = 2 * d;
                let p0 = if preset == 3 {
                    // Positive rows summing to 1: W0 rows over d, W1 rows over h.
                    let mut w: Vec<f64> = p.iter().map(|x| x.exp()).collect();
                    let (w0, w1) = w.split_at_mut(h * d);
                    for r in w0.chunks_mut(d).chain(w1.chunks_mut(h)) {
                        let s: f64 = r.iter().sum();
                        r.iter_mut().for_each(|x| *x /= s);
                    }
                    w
                } else {
                    p.iter()
                        .enumerate()
                        .map(|(i, x)| x / (if i < h * d { d } else { h } as f64).sqrt())
                        .collect()
                };
                MirasCase {
                    preset,
                    dims: [l, d],
                    chunk,
                    qkv,
                    gates,
                    p0,
                }
            })
    })
}

/// Runs a Miras memory chunkwise in `R` on values rounded to `T`; returns (outputs, parameters).
fn run_miras<T: Element, R: Real>(c: &MirasCase) -> Result<(Vec<f64>, Vec<f64>), Failure> {
    let [l, d] = c.dims;
    let m = miras(c.preset, d);
    let r = |x: &[f64]| -> Vec<R> { x.iter().map(|&v| R::from_f64(round::<T>(v))).collect() };
    let (q, k, v) = {
        let [q, k, v] = &c.qkv;
        (r(q), r(k), r(v))
    };
    let (lr, keep, mom) = {
        let [a, b, g] = &c.gates;
        (r(a), r(b), r(g))
    };
    let p0 = r(&c.p0);
    let setup = Failure::setup;
    let mut state = vec![R::zero(); m.state_len(d, d).map_err(setup)?];
    m.init(d, d, &p0, &mut state).map_err(setup)?;
    let mut o = vec![R::zero(); l * d];
    let mut ws = vec![R::zero(); m.workspace_len(c.chunk, d, d).map_err(setup)?];
    let gates = seq_memory::miras::Gates {
        lr: &lr,
        keep: Some(&keep),
        momentum: Some(&mom),
    };
    m.chunkwise(
        c.chunk, d, d, &q, &k, &v, gates, &mut state, &mut o, &mut ws,
    )
    .map_err(Failure::Kernel)?;
    let p = m.params_len(d, d).map_err(setup)?;
    let w = |x: &[R]| x.iter().map(|v| v.to_f64()).collect::<Vec<_>>();
    Ok((w(&o), w(state.get(..p).unwrap_or(&[]))))
}

/// A Miras preset computed in `T`'s accumulation type on inputs rounded to `T`, against the same
/// computation in f64: outputs and final parameters within the relative-L2 rule of the module
/// docs for the accumulation type (alone: see `check_rel_l2`) (these memories run on the host, so the row is the same on
/// every backend).
///
/// # Errors
/// The first [`Failure`].
pub fn check_miras<T: Element>(c: &MirasCase) -> Result<Agreement, Failure> {
    let (go, gp) = run_miras::<T, T::Acc>(c)?;
    let (wo, wp) = run_miras::<T, f64>(c)?;
    let a = check_rel_l2::<T::Acc>("o", &go, &wo)?;
    let p = check_rel_l2::<T::Acc>("params", &gp, &wp)?;
    Ok(a.worst(p))
}
