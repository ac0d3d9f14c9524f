//! seq-decode in the suite (see [`super`]): the `beam_search` golden vectors (Hugging Face
//! `generate` on a step-indexed table model), decoding properties, and the per-step overhead
//! benchmark of beam and diverse beam search.

use seqcore::{Allocate, Element};
use serde_json::Value;

use crate::Failure;
use crate::compare::{Agreement, compare_exact};
use crate::suite::{Config, Row};
use crate::vectors::{Case, bad};

mod properties;

/// Row names, in report order.
pub const KERNELS: &[&str] = &["beam_search", "diverse_beam_search"];

/// Vector-format mechanisms run here.
pub const VECTORS: &[&str] = &["beam_search", "logits_processors"];

/// Appends this crate's rows (see [`super::rows`]).
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    properties::rows::<B, T>(b, config, seed, n, rows);
}

/// Runs a case whose mechanism is in [`VECTORS`]; `None` for any other.
pub(crate) fn run_vector<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
) -> Option<Result<Agreement, Failure>> {
    let _ = b;
    match case.mechanism.as_str() {
        "beam_search" => Some(beam_search::<T>(case)),
        "logits_processors" => Some(logits_processors::<T>(case)),
        _ => None,
    }
}

fn count(case: &Case, name: &str, default: Option<f64>) -> Result<usize, Failure> {
    let x = case.param_f64(name, default)?;
    if !(x >= 0.0 && x.fract() == 0.0 && x <= 1e9) {
        return Err(bad(format!("`{name}` = {x} is not a count")));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(x as usize)
}

fn early_stopping(case: &Case) -> Result<seq_decode::EarlyStopping, Failure> {
    use seq_decode::EarlyStopping as E;
    match case.params.get("early_stopping") {
        Some(Value::Bool(true)) => Ok(E::True),
        Some(Value::Bool(false)) | None => Ok(E::False),
        Some(Value::String(s)) if s == "never" => Ok(E::Never),
        Some(other) => Err(bad(format!(
            "`early_stopping` = {other} is not true, false or \"never\""
        ))),
    }
}

/// The `beam_search` mechanism: the table rounded to `T`, decoded by seq-decode's beam search
/// (or diverse beam search when `groups > 1`), tokens compared exactly, scores within tolerance.
fn beam_search<T: Element>(case: &Case) -> Result<Agreement, Failure> {
    let table = case
        .inputs
        .get("table")
        .ok_or_else(|| bad("no input `table`"))?;
    let [steps, v, v2] = table.shape[..] else {
        return Err(bad(format!(
            "`table` has shape {:?}, expected [S, V, V]",
            table.shape
        )));
    };
    if v != v2 {
        return Err(bad(format!(
            "`table` has shape {:?}, expected [S, V, V]",
            table.shape
        )));
    }
    #[allow(clippy::cast_possible_truncation)]
    let data: Vec<f32> = table
        .data
        .iter()
        .map(|&x| T::from_f64(x).to_f64() as f32)
        .collect();
    let bos = case
        .inputs
        .get("bos")
        .ok_or_else(|| bad("no input `bos`"))?;
    let prompt: Vec<u32> = bos
        .data
        .iter()
        .map(|&x| {
            if x >= 0.0 && x.fract() == 0.0 && x < 4e9 {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(x as u32)
            } else {
                Err(bad(format!("`bos` holds {x}, not a token")))
            }
        })
        .collect::<Result<_, _>>()?;
    let beams = count(case, "beams", None)?;
    let max_new_tokens = count(case, "max_new_tokens", None)?;
    let eos = u32::try_from(count(case, "eos", None)?).map_err(|_| bad("`eos` too large"))?;
    let length_penalty = case.param_f64("length_penalty", Some(1.0))?;
    let num_return = count(case, "num_return", Some(1.0))?;
    let groups = count(case, "groups", Some(1.0))?;
    let diversity_penalty = case.param_f64("diversity_penalty", Some(0.0))?;
    let early_stopping = early_stopping(case)?;
    if beams > 1024 || max_new_tokens > 4096 || num_return > 1024 || groups > 1024 {
        return Err(bad(
            "`beams`, `groups`, `num_return` or `max_new_tokens` too large for a vector case",
        ));
    }
    #[allow(clippy::cast_possible_truncation)]
    let processors = seq_decode::Processors {
        repetition_penalty: case.param_f64("repetition_penalty", Some(1.0))? as f32,
        no_repeat_ngram_size: count(case, "no_repeat_ngram_size", Some(0.0))?,
        min_new_tokens: count(case, "min_new_tokens", Some(0.0))?,
        ..seq_decode::Processors::default()
    };
    let mut model = seq_decode::StepTable::new(&data, steps, v).map_err(Failure::setup)?;
    let hyps = if groups > 1 {
        #[allow(clippy::cast_possible_truncation)]
        let dbs = seq_decode::DiverseBeamSearch {
            beams,
            groups,
            diversity_penalty: diversity_penalty as f32,
            max_new_tokens,
            eos: Some(eos),
            length_penalty,
            early_stopping,
            num_return,
            processors,
        };
        dbs.generate(&mut model, &prompt)
    } else {
        let bs = seq_decode::BeamSearch {
            beams,
            max_new_tokens,
            eos: Some(eos),
            length_penalty,
            early_stopping,
            num_return,
            processors,
        };
        bs.generate(&mut model, &prompt)
    }
    .map_err(Failure::Kernel)?;
    let want = case.expected("sequences")?;
    let width = want.shape.get(1).copied().unwrap_or(0);
    let mut got = Vec::with_capacity(hyps.len() * width);
    for h in &hyps {
        if h.tokens.len() > width {
            return Err(bad(format!(
                "a hypothesis of {} tokens does not fit the expected width {width}",
                h.tokens.len()
            )));
        }
        got.extend(h.tokens.iter().map(|&t| i64::from(t)));
        got.extend(std::iter::repeat_n(-1i64, width - h.tokens.len()));
    }
    // tokens as u32 with -1 padding mapped to u32::MAX
    let to_u32 = |x: i64| u32::try_from(x).unwrap_or(u32::MAX);
    #[allow(clippy::cast_possible_truncation)]
    let want_tokens: Vec<u32> = want.data.iter().map(|&x| to_u32(x as i64)).collect();
    let got_tokens: Vec<u32> = got.into_iter().map(to_u32).collect();
    compare_exact("sequences", &got_tokens, &want_tokens)?;
    let scores: Vec<f64> = hyps.iter().map(|h| f64::from(h.score)).collect();
    case.check("scores", &scores)
}

fn tokens(d: &crate::vectors::Data, name: &str) -> Result<Vec<u32>, Failure> {
    d.data
        .iter()
        .map(|&x| {
            if x >= 0.0 && x.fract() == 0.0 && x < 4e9 {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(x as u32)
            } else {
                Err(bad(format!("`{name}` holds {x}, not a token")))
            }
        })
        .collect()
}

/// The `logits_processors` mechanism: seq-decode's processors, row by row, on scores rounded to
/// `T` (then float32), against transformers' processor classes.
fn logits_processors<T: Element>(case: &Case) -> Result<Agreement, Failure> {
    let scores = case
        .inputs
        .get("scores")
        .ok_or_else(|| bad("no input `scores`"))?;
    let ids = case
        .inputs
        .get("input_ids")
        .ok_or_else(|| bad("no input `input_ids`"))?;
    let (&[rows, v], &[rows2, len]) = (&scores.shape[..], &ids.shape[..]) else {
        return Err(bad("`scores` is not [R, V] or `input_ids` not [R, L]"));
    };
    if rows != rows2 {
        return Err(bad("`scores` and `input_ids` differ in rows"));
    }
    let ids = tokens(ids, "input_ids")?;
    let banned: Vec<u32> = match case.params.get("banned") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| bad("`banned` holds a non-token"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`banned` is not a list")),
    };
    let sampling = matches!(case.params.get("sampling"), Some(Value::Bool(true)));
    #[allow(clippy::cast_possible_truncation)]
    let procs = seq_decode::Processors {
        repetition_penalty: case.param_f64("repetition_penalty", Some(1.0))? as f32,
        no_repeat_ngram_size: count(case, "no_repeat_ngram_size", Some(0.0))?,
        banned: &banned,
        min_new_tokens: count(case, "min_new_tokens", Some(0.0))?,
        temperature: case.param_f64("temperature", Some(1.0))? as f32,
        top_k: count(case, "top_k", Some(0.0))?,
        top_p: case.param_f64("top_p", Some(1.0))? as f32,
        min_p: case.param_f64("min_p", Some(0.0))? as f32,
        ..seq_decode::Processors::default()
    };
    procs.validate(v).map_err(Failure::Kernel)?;
    let eos = u32::try_from(count(case, "eos", Some(0.0))?).map_err(|_| bad("`eos` too large"))?;
    let prompt_len = count(case, "prompt_len", Some(0.0))?;
    let mut got = Vec::with_capacity(rows * v);
    let (mut counts, mut probs) = (vec![0u32; v], vec![0f32; v]);
    for r in 0..rows {
        #[allow(clippy::cast_possible_truncation)]
        let mut row: Vec<f32> = scores
            .data
            .get(r * v..(r + 1) * v)
            .ok_or_else(|| bad("`scores` too short"))?
            .iter()
            .map(|&x| T::from_f64(x).to_f64() as f32)
            .collect();
        let toks = ids
            .get(r * len..(r + 1) * len)
            .ok_or_else(|| bad("`input_ids` too short"))?;
        procs
            .apply(
                toks,
                prompt_len,
                Some(eos),
                sampling,
                &mut row,
                &mut counts,
                &mut probs,
            )
            .map_err(Failure::Kernel)?;
        got.extend(row.iter().map(|&x| f64::from(x)));
    }
    case.check("scores", &got)
}
