//! seq-decode's rows: beam search properties on table models whose logits are rounded to the
//! row's element type, and the per-step overhead benchmark (beams 8, groups 4, vocabulary 32000)
//! set against one f32 gemv of a 512 x 32000 vocabulary projection on the same backend.

use std::time::Duration;

use proptest::prelude::*;
use seq_decode::{BeamSearch, DiverseBeamSearch, EarlyStopping, Hypothesis, Processors, StepTable};
use seqcore::{Allocate, Element};

use crate::Failure;
use crate::compare::{Agreement, Bound, compare, compare_exact};
use crate::perf;
use crate::properties::{Bench, Work};
use crate::suite::{Config, Row, sample};

/// A random table case.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    v: usize,
    len: usize,
    gs: usize,
    groups: usize,
    eos: Option<u32>,
    table: Vec<f32>,
}

fn cases() -> impl Strategy<Value = Case> {
    (2usize..=3, 1usize..=3, 1usize..=3, 2usize..=3, 0u32..3).prop_flat_map(
        |(v, len, gs, groups, e)| {
            proptest::collection::vec(-4.0f32..4.0, 3 * v * v).prop_map(move |table| Case {
                v,
                len,
                gs,
                groups,
                eos: (e < 2).then_some(e),
                table,
            })
        },
    )
}

fn round<T: Element>(x: &[f32]) -> Vec<f32> {
    #[allow(clippy::cast_possible_truncation)]
    x.iter()
        .map(|&v| T::from_f64(f64::from(v)).to_f64() as f32)
        .collect()
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
    let s: f64 = row.iter().map(|&x| (f64::from(x) - m).exp()).sum();
    row.iter().map(|&x| f64::from(x) - m - s.ln()).collect()
}

/// Every sequence of `len` tokens, best first (f64).
fn exhaustive(table: &[f32], v: usize, len: usize) -> Vec<(Vec<u32>, f64)> {
    let mut all = vec![(vec![], 0.0f64)];
    for s in 0..len {
        let mut next = vec![];
        for (seq, sc) in &all {
            let prev = seq.last().copied().unwrap_or(0) as usize;
            let start = (s * v + prev) * v;
            let lp = log_softmax(table.get(start..start + v).unwrap_or(&[]));
            for (t, l) in (0u32..).zip(&lp) {
                let mut q: Vec<u32> = seq.clone();
                q.push(t);
                next.push((q, sc + l));
            }
        }
        all = next;
    }
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

fn flat(h: &[Hypothesis]) -> Vec<u32> {
    h.iter()
        .flat_map(|x| x.tokens.iter().copied().chain([u32::MAX]))
        .collect()
}

/// Beam search holding every prefix == exhaustive search (no EOS, length penalty 0).
pub(crate) fn check_exhaustive<T: Element>(c: &Case) -> Result<Agreement, Failure> {
    let table = round::<T>(&c.table);
    let beams = c.v.pow(u32::try_from(c.len).unwrap_or(1));
    let mut model = StepTable::new(&table, 3, c.v).map_err(Failure::setup)?;
    let bs = BeamSearch {
        beams,
        max_new_tokens: c.len,
        eos: None,
        length_penalty: 0.0,
        early_stopping: EarlyStopping::Never,
        num_return: beams,
        processors: Processors::default(),
    };
    let got = bs.generate(&mut model, &[0]).map_err(Failure::Kernel)?;
    let want = exhaustive(&table, c.v, c.len);
    let bound = Bound {
        atol: 1e-5,
        rtol: 1e-5,
    };
    let gs: Vec<f64> = got.iter().map(|h| f64::from(h.score)).collect();
    let ws: Vec<f64> = want.iter().map(|w| w.1).collect();
    let a = compare("scores", &gs, &ws, |_| bound)?;
    // tokens, where no other sequence's score lies within rounding
    for (i, (h, (w, s))) in got.iter().zip(&want).enumerate() {
        let near = want
            .iter()
            .enumerate()
            .any(|(j, (_, t))| j != i && (t - s).abs() < 1e-4);
        if !near {
            compare_exact("sequences", &h.tokens, w)?;
        }
    }
    Ok(a)
}

/// Diverse beam search: with penalty 0 each group is the same independent beam search; with one
/// group it is beam search.
pub(crate) fn check_groups<T: Element>(c: &Case) -> Result<Agreement, Failure> {
    let table = round::<T>(&c.table);
    let mut model = StepTable::new(&table, 3, c.v).map_err(Failure::setup)?;
    let beams = c.gs * c.groups;
    let dbs = DiverseBeamSearch {
        beams,
        groups: c.groups,
        diversity_penalty: 0.0,
        max_new_tokens: c.len,
        eos: c.eos,
        length_penalty: 1.0,
        early_stopping: EarlyStopping::False,
        num_return: beams,
        processors: Processors::default(),
    };
    let all = dbs
        .generate_grouped(&mut model, &[0])
        .map_err(Failure::Kernel)?;
    let one = DiverseBeamSearch {
        beams: c.gs,
        groups: 1,
        num_return: c.gs,
        ..dbs
    }
    .generate_grouped(&mut model, &[0])
    .map_err(Failure::Kernel)?;
    let repeated: Vec<Hypothesis> = one
        .iter()
        .flat_map(|h| std::iter::repeat_n(h.clone(), c.groups))
        .collect();
    compare_exact("sequences", &flat(&all), &flat(&repeated))?;
    let a: Vec<f64> = all.iter().map(|h| f64::from(h.score)).collect();
    let b: Vec<f64> = repeated.iter().map(|h| f64::from(h.score)).collect();
    let agree = compare("scores", &a, &b, |_| Bound::EXACT)?;
    // one group == plain beam search (Hugging Face's dispatch)
    let d1 = DiverseBeamSearch {
        groups: 1,
        diversity_penalty: 1.0,
        ..dbs
    };
    let plain = BeamSearch {
        beams,
        max_new_tokens: c.len,
        eos: c.eos,
        length_penalty: 1.0,
        early_stopping: EarlyStopping::False,
        num_return: beams,
        processors: Processors::default(),
    };
    let x = d1.generate(&mut model, &[0]).map_err(Failure::Kernel)?;
    let y = plain.generate(&mut model, &[0]).map_err(Failure::Kernel)?;
    compare_exact("sequences", &flat(&x), &flat(&y))?;
    Ok(agree)
}

/// A model that copies fixed logits: the decoder's overhead is what remains.
struct Fixed<'a> {
    logits: &'a [f32],
    v: usize,
}

impl seq_decode::LanguageModel for Fixed<'_> {
    fn vocab_size(&self) -> usize {
        self.v
    }

    fn logits(&mut self, h: seq_decode::Hypotheses<'_>, out: &mut [f32]) -> seqcore::Result<()> {
        let n = h.count() * self.v;
        if let (Some(dst), Some(src)) = (out.get_mut(..n), self.logits.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(())
    }
}

const BEAMS: usize = 8;
const GROUPS: usize = 4;
const VOCAB: usize = 32_000;
const STEPS: usize = 8;

/// One search of `STEPS` steps (beams 8, vocabulary 32000; groups 4 when `diverse`), timed as a
/// whole; the work is the bytes of logits the decoder reads per search.
fn bench(diverse: bool) -> Bench<'static> {
    #[allow(clippy::cast_precision_loss)]
    let logits: Vec<f32> = (0..BEAMS * VOCAB)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let bs = BeamSearch {
        beams: BEAMS,
        max_new_tokens: STEPS,
        eos: Some(2),
        length_penalty: 1.0,
        early_stopping: EarlyStopping::Never,
        num_return: 1,
        processors: Processors::default(),
    };
    let dbs = DiverseBeamSearch {
        beams: BEAMS,
        groups: GROUPS,
        diversity_penalty: 0.5,
        max_new_tokens: STEPS,
        eos: Some(2),
        length_penalty: 1.0,
        early_stopping: EarlyStopping::Never,
        num_return: 1,
        processors: Processors::default(),
    };
    let len = if diverse {
        dbs.workspace_len(VOCAB, 1)
    } else {
        bs.workspace_len(VOCAB, 1)
    }
    .unwrap_or_default();
    let mut ws = seq_decode::WorkspaceBuf::new(len);
    let (mut tokens, mut lengths, mut scores) = (vec![0u32; STEPS], vec![0usize; 1], vec![0f32; 1]);
    #[allow(clippy::cast_precision_loss)]
    let bytes = (BEAMS * VOCAB * 4 * STEPS) as f64;
    Bench {
        run: Box::new(move || {
            let mut model = Fixed {
                logits: &logits,
                v: VOCAB,
            };
            let out = seq_decode::NBest {
                tokens: &mut tokens,
                lengths: &mut lengths,
                scores: &mut scores,
            };
            if diverse {
                dbs.run(&mut model, &[0], ws.workspace(), out)
            } else {
                bs.run(&mut model, &[0], ws.workspace(), out)
            }
            .map_err(Failure::Kernel)
        }),
        work: Work::Bytes(bytes),
        size: format!(
            "beams{BEAMS}{} V{VOCAB} x{STEPS} steps",
            if diverse { " groups4" } else { "" }
        ),
    }
}

/// The seconds of one f32 gemv 512 x 32000 on `b`, for the ratio.
fn gemv_seconds<B: Allocate>(b: &B, budget: Duration) -> Option<f64> {
    let bench = crate::properties::gemm::bench::<B, f32>(b, 1, 512, VOCAB).ok()?;
    perf::time(bench, budget).ok().map(|t| t.seconds)
}

/// Appends the `beam_search` and `diverse_beam_search` rows.
pub(crate) fn rows<B: Allocate, T: Element>(
    b: &B,
    config: &Config,
    seed: u64,
    n: usize,
    rows: &mut Vec<Row>,
) {
    let timed = config.timing.is_some() && T::DTYPE == seqcore::DType::F32;
    let gemv = if timed {
        config.timing.and_then(|t| gemv_seconds(b, t))
    } else {
        None
    };
    for (kernel, diverse) in [("beam_search", false), ("diverse_beam_search", true)] {
        if !config.wants(kernel) {
            continue;
        }
        let mut row = Row::new::<B, T>(b, kernel);
        for c in sample(&cases(), n, seed ^ if diverse { 0xD1 } else { 0xB5 }) {
            let r = if diverse {
                check_groups::<T>(&c)
            } else {
                check_exhaustive::<T>(&c)
            };
            row.add(&c, r);
        }
        if timed {
            row.time(config, Ok(bench(diverse)));
            if let (Some(t), Some(g)) = (row.timing.as_mut(), gemv) {
                #[allow(clippy::cast_precision_loss)]
                let per_step = t.seconds / STEPS as f64;
                t.size = format!(
                    "{}: {:.1} us/step = {:.1}% of a 512x{VOCAB} f32 gemv ({:.1} us)",
                    t.size,
                    per_step * 1e6,
                    100.0 * per_step / g,
                    g * 1e6
                );
            }
        }
        rows.push(row);
    }
}
