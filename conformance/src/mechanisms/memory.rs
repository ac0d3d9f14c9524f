//! seq-memory in the suite (see [`super`]): the linear-memory kernels (recurrent and chunkwise),
//! streaming, the LASP-2 chunk-state merge, and the `linear_attention` / `delta_rule` vectors.

pub mod properties;

use seq_memory::{FeatureMap, LinearMemory, MemoryInputs};
use seqcore::{Allocate, Element, Real};

use crate::Failure;
use crate::compare::Agreement;
use crate::harness::{Input, Output, widen};
use crate::suite::{Config, Row, sample};
use crate::vectors::{Case, bad};

/// Row names, in report order.
pub const KERNELS: &[&str] = &[
    "memory_recurrent",
    "memory_streaming",
    "memory_chunkwise",
    "memory_merge",
    "memory_miras",
];

/// Vector-format mechanisms run here.
pub const VECTORS: &[&str] = &["linear_attention", "delta_rule"];

/// Appends this crate's rows (see [`super::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    use properties as p;
    if config.wants("memory_recurrent") {
        let mut row = Row::new::<B, T>(b, "memory_recurrent");
        let cases = row.fixed(config, p::edge_cases()).into_iter().chain(sample(
            &p::cases(),
            n,
            seed ^ 0x4D01,
        ));
        for c in cases {
            row.add(&c, p::check_forward::<B, T>(b, &c, None));
        }
        row.time(config, p::bench_recurrent::<B, T>(b, 64));
        rows.push(row);
    }
    if config.wants("memory_streaming") {
        let mut row = Row::new::<B, T>(b, "memory_streaming");
        for c in sample(&p::cases(), n, seed ^ 0x4D02) {
            row.add(&c, p::check_streaming::<B, T>(b, &c));
        }
        row.time(config, p::bench_recurrent::<B, T>(b, 128));
        rows.push(row);
    }
    if config.wants("memory_chunkwise") {
        let mut row = Row::new::<B, T>(b, "memory_chunkwise");
        let edge = row.fixed(config, p::edge_cases());
        let random = sample(&p::cases(), n, seed ^ 0x4D03);
        for (i, c) in edge.into_iter().chain(random).enumerate() {
            let chunk = [1, 2, 3, 5, 7, 16, 64].get(i % 7).copied().unwrap_or(1);
            row.add(&(chunk, &c), p::check_forward::<B, T>(b, &c, Some(chunk)));
        }
        row.time(config, p::bench_chunkwise::<B, T>(b, 64, 4096, 64));
        rows.push(row);
    }
    if config.wants("memory_merge") {
        let mut row = Row::new::<B, T>(b, "memory_merge");
        for (i, c) in sample(&p::cases(), n, seed ^ 0x4D04)
            .into_iter()
            .enumerate()
        {
            let chunk = (i % 2 == 1).then_some(1 + i % 5);
            row.add(&(chunk, &c), p::check_merge::<B, T>(b, &c, chunk));
        }
        rows.push(row);
    }
    if config.wants("memory_miras") {
        let mut row = Row::new::<B, T>(b, "memory_miras");
        for c in sample(&p::miras_cases(), n, seed ^ 0x4D05) {
            row.add(&c, p::check_miras::<T>(&c));
        }
        rows.push(row);
    }
}

/// Runs a case whose mechanism is in [`VECTORS`]; `None` for any other.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    match case.mechanism.as_str() {
        "linear_attention" => Some(linear_attention::<B, T>(b, case)),
        "delta_rule" => Some(delta_rule::<B, T>(b, case)),
        _ => None,
    }
}

fn linear_attention<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let fm = match case.param_str("feature_map")? {
        "identity" => FeatureMap::Identity,
        "elu1" => FeatureMap::Elu1,
        other => return Err(bad(format!("unknown feature_map `{other}`"))),
    };
    run_memory::<B, T>(b, case, LinearMemory::linear_attention(fm), false, false)
}

fn delta_rule<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let gated = match case.params.get("gated") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| bad("`gated` is not a boolean"))?,
    };
    let m = if gated {
        LinearMemory::gated_delta_net()
    } else {
        LinearMemory::delta_net()
    };
    run_memory::<B, T>(b, case, m, true, gated)
}

fn run_memory<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
    m: LinearMemory,
    beta: bool,
    gated: bool,
) -> Result<Agreement, Failure> {
    let (q, k, v) = (case.input("q")?, case.input("k")?, case.input("v")?);
    // Extents for the state; a rank the kernel rejects is its error (naming the argument).
    let ax = |t: &crate::harness::Tensor, i: usize| t.shape().get(i).copied().unwrap_or(0);
    let (h, dk, dv) = (ax(&k, 1), ax(&k, 2), ax(&v, 2));
    let qi = Input::<B, T>::new(b, &q)?;
    let ki = Input::<B, T>::new(b, &k)?;
    let vi = Input::<B, T>::new(b, &v)?;
    let bi = match beta {
        true => Some(Input::<B, T>::new(b, &case.input("beta")?)?),
        false => None,
    };
    let gi = match gated {
        true => Some(Input::<B, T>::new(b, &case.input("g")?)?),
        false => None,
    };
    let zeros = vec![<T::Acc as Real>::zero(); h * dv * dk];
    let sl = seqcore::Layout::contiguous(&[h, dv, dk]).map_err(Failure::setup)?;
    let mut state = Output::<B, T::Acc>::new(b, &sl, Some(&zeros))?;
    let mut o = crate::vectors::out::<B, T>(b, case, "o")?;
    let x = MemoryInputs {
        q: qi.view()?,
        k: ki.view()?,
        v: vi.view()?,
        beta: bi.as_ref().map(Input::view).transpose()?,
        log_decay: gi.as_ref().map(Input::view).transpose()?,
    };
    m.forward(b, x, state.view()?, Some(o.view()?), None)
        .map_err(Failure::Kernel)?;
    let recurrent = case.check("o", &widen(&o.finish(b, "o")?))?;
    // The chunkwise form (chunks of 16: odd lengths leave a partial chunk) must meet the same
    // bound.
    let m = m.chunkwise(16);
    let wl = m.workspace_len(b, dk, dv).map_err(Failure::Kernel)?;
    let wsl = seqcore::Layout::contiguous(&[wl]).map_err(Failure::setup)?;
    let mut ws = Output::<B, T::Acc>::new(b, &wsl, None)?;
    let mut state = Output::<B, T::Acc>::new(b, &sl, Some(&zeros))?;
    let mut o = crate::vectors::out::<B, T>(b, case, "o")?;
    m.forward(b, x, state.view()?, Some(o.view()?), Some(ws.view()?))
        .map_err(Failure::Kernel)?;
    Ok(recurrent.worst(case.check("o", &widen(&o.finish(b, "o")?))?))
}
