//! Properties of the decoders (proptest) and their edge cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    missing_docs
)]

use proptest::prelude::*;
use seq_decode::{
    BackspaceDecoding, BeamSearch, DiverseBeamSearch, EarlyStopping, Hypotheses, LanguageModel,
    PointerDecoding, PointerScorer, Processors, Sampling, StepTable, TreeSearch, WorkspaceBuf,
    beam::NBest,
};
use seqcore::{Error, Result};

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
    let s: f64 = row.iter().map(|&x| (f64::from(x) - m).exp()).sum();
    row.iter().map(|&x| f64::from(x) - m - s.ln()).collect()
}

/// Every sequence of exactly `len` tokens (no EOS), by summed log-probability, best first.
fn exhaustive(table: &[f32], v: usize, len: usize, bos: u32) -> Vec<(Vec<u32>, f64)> {
    let mut all = vec![(vec![], 0.0f64)];
    for s in 0..len {
        let mut next = vec![];
        for (seq, sc) in &all {
            let prev = *seq.last().unwrap_or(&bos) as usize;
            let lp = log_softmax(&table[(s * v + prev) * v..(s * v + prev + 1) * v]);
            for (t, l) in lp.iter().enumerate() {
                let mut q = seq.clone();
                q.push(t as u32);
                next.push((q, sc + l));
            }
        }
        all = next;
    }
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

fn table_strategy(max_v: usize, steps: usize) -> impl Strategy<Value = (usize, Vec<f32>)> {
    (2..=max_v).prop_flat_map(move |v| {
        (
            Just(v),
            proptest::collection::vec(-4.0f32..4.0, steps * v * v),
        )
    })
}

proptest! {
    #![proptest_config(cfg())]

    /// When the beam holds every prefix, beam search returns the exhaustive n-best list.
    #[test]
    fn beam_search_equals_exhaustive((v, table) in table_strategy(3, 3), len in 1usize..=3) {
        let beams = v.pow(len as u32);
        let mut model = StepTable::new(&table, 3, v).unwrap();
        let bs = BeamSearch {
            beams,
            max_new_tokens: len,
            eos: None,
            length_penalty: 0.0,
            early_stopping: EarlyStopping::Never,
            num_return: beams,
            processors: Processors::default(),
        };
        let got = bs.generate(&mut model, &[0]).unwrap();
        let want = exhaustive(&table, v, len, 0);
        prop_assert_eq!(got.len(), want.len());
        for (i, (g, (w, ws))) in got.iter().zip(&want).enumerate() {
            prop_assert!((f64::from(g.score) - ws).abs() < 1e-4, "{i}: {} vs {ws}", g.score);
            // tokens must agree unless a neighbour's score is within rounding
            let near = want.iter().enumerate().any(|(j, (_, s))| j != i && (s - ws).abs() < 1e-4);
            if !near {
                prop_assert_eq!(&g.tokens, w);
            }
        }
    }

    /// Diverse beam search with one group is beam search; the group code run with one group
    /// agrees with the vectorised beam search on its best hypothesis when EOS is absent.
    #[test]
    fn diverse_one_group_is_beam_search((v, table) in table_strategy(6, 5), beams in 2usize..5,
                                        len in 1usize..=5, lp in -1.0f64..2.0) {
        let mut model = StepTable::new(&table, 5, v).unwrap();
        let bs = BeamSearch { beams, max_new_tokens: len, eos: None, length_penalty: lp,
            early_stopping: EarlyStopping::False, num_return: beams, processors: Processors::default() };
        let dbs = DiverseBeamSearch { beams, groups: 1, diversity_penalty: 1.0, max_new_tokens: len,
            eos: None, length_penalty: lp, early_stopping: EarlyStopping::False, num_return: beams,
            processors: Processors::default() };
        let a = bs.generate(&mut model, &[1]).unwrap();
        prop_assert_eq!(&a, &dbs.generate(&mut model, &[1]).unwrap());
        let g = dbs.generate_grouped(&mut model, &[1]).unwrap();
        prop_assert_eq!(&a[0].tokens, &g[0].tokens);
        prop_assert!((a[0].score - g[0].score).abs() <= 1e-6 * a[0].score.abs().max(1.0));
    }

    /// With diversity penalty 0 every group runs the same independent beam search.
    #[test]
    fn diverse_penalty_zero_is_independent_groups((v, table) in table_strategy(6, 5),
            gs in 1usize..4, groups in 2usize..4, len in 1usize..=5, eos in 0u32..2) {
        let mut model = StepTable::new(&table, 5, v).unwrap();
        let beams = gs * groups;
        let dbs = DiverseBeamSearch { beams, groups, diversity_penalty: 0.0, max_new_tokens: len,
            eos: Some(eos), length_penalty: 1.0, early_stopping: EarlyStopping::False,
            num_return: beams, processors: Processors::default() };
        let all = dbs.generate_grouped(&mut model, &[1]).unwrap();
        let one = DiverseBeamSearch { beams: gs, groups: 1, num_return: gs, ..dbs }
            .generate_grouped(&mut model, &[1]).unwrap();
        for (i, h) in all.iter().enumerate() {
            prop_assert_eq!(h, &one[i / groups]);
        }
    }

    /// Top-k keeps exactly the tokens at or above the k-th largest; top-p the smallest set of
    /// largest tokens whose mass reaches p (Hugging Face's rule).
    #[test]
    fn top_k_top_p_support(row in proptest::collection::vec(-5.0f32..5.0, 2..40),
                           k in 1usize..10, p in 0.05f32..1.0, seed in 0u64..1000) {
        let v = row.len();
        // top-k alone, sampling many times from a fixed row: every drawn token in the support
        let mut sorted = row.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[k.min(v) - 1];
        let probs = log_softmax(&row).iter().map(|x| x.exp()).collect::<Vec<_>>();
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)));
        let mut cum = 0.0;
        let mut keep_p = vec![false; v];
        let mut near = false;
        for (rank, &i) in order.iter().enumerate() {
            cum += probs[i];
            near |= (cum - (1.0 - f64::from(p))).abs() < 1e-5;
            keep_p[i] = cum > 1.0 - f64::from(p) || rank == v - 1;
        }
        let table: Vec<f32> = row.iter().copied().cycle().take(v * v).collect();
        let mut model = StepTable::new(&table, 1, v).unwrap();
        for (which, procs) in [(0, Processors { top_k: k, ..Processors::default() }),
                               (1, Processors { top_p: p, ..Processors::default() })] {
            if which == 1 && near { continue; }
            for s in 0..20 {
                let out = Sampling { max_new_tokens: 1, eos: None, do_sample: true,
                    seed: seed * 100 + s, processors: procs }.generate(&mut model, &[0]).unwrap();
                let t = out[0] as usize;
                if which == 0 { prop_assert!(row[t] >= kth); } else { prop_assert!(keep_p[t]); }
            }
        }
    }

    /// Tree search with room for every node finds the exhaustive n best, in order.
    #[test]
    fn tree_search_equals_exhaustive((v, table) in table_strategy(3, 3), n in 1usize..6) {
        let len = 3;
        let mut model = StepTable::new(&table, 3, v).unwrap();
        let ts = TreeSearch { branch: v, n, budget: 1000, max_nodes: 200, max_new_tokens: len, eos: None };
        let wl = ts.workspace_len(v, 1).unwrap();
        let mut ws = WorkspaceBuf::new(wl);
        let mut tokens = vec![0; n * len];
        let mut lengths = vec![0; n];
        let mut scores = vec![0.0; n];
        let st = ts.run(&mut model, &[0], ws.workspace(), NBest { tokens: &mut tokens,
            lengths: &mut lengths, scores: &mut scores }).unwrap();
        let want = exhaustive(&table, v, len, 0);
        prop_assert_eq!(st.found, n.min(want.len()));
        for j in 0..st.found {
            prop_assert!((f64::from(scores[j]) - want[j].1).abs() < 1e-4);
            let near = want.iter().enumerate().any(|(i, (_, s))| i != j && (s - want[j].1).abs() < 1e-4);
            if !near { prop_assert_eq!(&tokens[j * len..(j + 1) * len], &want[j].0[..]); }
        }
    }

    /// Pointer decoding under the permutation mask never repeats a position.
    #[test]
    fn pointer_never_repeats(xs in proptest::collection::vec(-10.0f32..10.0, 2..9), beams in 1usize..4) {
        struct Sorter(Vec<f32>);
        impl PointerScorer for Sorter {
            fn positions(&self) -> usize { self.0.len() }
            fn scores(&mut self, chosen: Hypotheses<'_>, scores: &mut [f32]) -> Result<()> {
                let n = self.0.len();
                for i in 0..chosen.count() {
                    for j in 0..n { scores[i * n + j] = -self.0[j]; }
                }
                Ok(())
            }
        }
        let n = xs.len();
        let beams = beams.min(n);
        let pd = PointerDecoding { beams, length: n, permutation: true, num_return: beams };
        let mut s = Sorter(xs.clone());
        let out = pd.generate(&mut s).unwrap();
        for h in &out {
            let mut seen = vec![false; n];
            prop_assert_eq!(h.tokens.len(), n);
            for &t in &h.tokens { prop_assert!(!seen[t as usize]); seen[t as usize] = true; }
        }
        // greedy pointing at the smallest remaining value sorts ascending (beam search maximises
        // the summed log-softmax over shrinking sets, which need not be the sorted order)
        let greedy = PointerDecoding { beams: 1, num_return: 1, ..pd }.generate(&mut s).unwrap();
        let vals: Vec<f32> = greedy[0].tokens.iter().map(|&t| xs[t as usize]).collect();
        prop_assert!(vals.windows(2).all(|w| w[0] <= w[1]), "{vals:?}");
    }

    /// Backspace never removes the prompt and stays within its bound.
    #[test]
    fn backspace_never_underflows(table in proptest::collection::vec(-3.0f32..3.0, 4 * 4),
                                  bias in 0.0f32..6.0, max_bk in 0usize..6, seed in 0u64..50) {
        struct Model { table: Vec<f32>, bias: f32, rollbacks: usize }
        impl LanguageModel for Model {
            fn vocab_size(&self) -> usize { 4 }
            fn logits(&mut self, h: Hypotheses<'_>, out: &mut [f32]) -> Result<()> {
                let p = h.last(0).unwrap() as usize;
                out.copy_from_slice(&self.table[p * 4..p * 4 + 4]);
                out[3] += self.bias; // token 3 is backspace
                Ok(())
            }
            fn rollback(&mut self, hyp: usize, n: usize) -> Result<()> {
                assert_eq!((hyp, n), (0, 1));
                self.rollbacks += 1;
                Ok(())
            }
        }
        let mut m = Model { table, bias, rollbacks: 0 };
        let bd = BackspaceDecoding { backspace: 3, max_new_tokens: 5, max_backspaces: max_bk,
            eos: Some(0), do_sample: seed % 2 == 0, seed, processors: Processors::default() };
        let mut ws = WorkspaceBuf::new(bd.workspace_len(4, 1).unwrap());
        let mut out = [9u32; 5];
        let st = bd.run(&mut m, &[1], ws.workspace(), &mut out).unwrap();
        prop_assert!(st.backspaces <= max_bk);
        prop_assert_eq!(st.backspaces, m.rollbacks);
        prop_assert!(st.steps <= 5 + 2 * max_bk);
        prop_assert!(out[..st.len].iter().all(|&t| t != 3));
    }

    /// Bad configurations and inputs are errors, never panics.
    #[test]
    fn bad_input_never_panics(beams in 0usize..5, groups in 0usize..5, top_p in -0.5f32..1.5,
                              temp in -1.0f32..2.0, eos in 0u32..10, v in 1usize..8,
                              nan in proptest::bool::ANY, max_new in 0usize..4, nret in 0usize..5) {
        let mut table = vec![0.5f32; 4 * v * v];
        if nan { table[0] = f32::NAN; }
        let mut model = StepTable::new(&table, 4, v).unwrap();
        let procs = Processors { top_p, temperature: temp, ..Processors::default() };
        let _ = BeamSearch { beams, max_new_tokens: max_new, eos: Some(eos), length_penalty: 1.0,
            early_stopping: EarlyStopping::True, num_return: nret, processors: procs }
            .generate(&mut model, &[0]);
        let _ = DiverseBeamSearch { beams, groups, diversity_penalty: 0.5, max_new_tokens: max_new,
            eos: Some(eos), length_penalty: 1.0, early_stopping: EarlyStopping::Never,
            num_return: nret, processors: procs }.generate(&mut model, &[0]);
        let _ = Sampling { max_new_tokens: max_new, eos: Some(eos), do_sample: true, seed: 1,
            processors: procs }.generate(&mut model, &[0]);
    }
}

fn bs(beams: usize, eos: Option<u32>) -> BeamSearch<'static> {
    BeamSearch {
        beams,
        max_new_tokens: 3,
        eos,
        length_penalty: 1.0,
        early_stopping: EarlyStopping::False,
        num_return: beams,
        processors: Processors::default(),
    }
}

#[test]
fn errors_name_the_argument() {
    let table = vec![0.0f32; 3 * 4 * 4];
    let mut m = StepTable::new(&table, 3, 4).unwrap();
    let arg = |r: Result<Vec<seq_decode::Hypothesis>>| match r {
        Err(Error::Param { arg, .. }) => arg,
        other => panic!("{other:?}"),
    };
    assert_eq!(arg(bs(0, None).generate(&mut m, &[0])), "beams");
    assert_eq!(arg(bs(2, Some(4)).generate(&mut m, &[0])), "eos");
    assert_eq!(arg(bs(2, None).generate(&mut m, &[7])), "prompt");
    let d = DiverseBeamSearch {
        beams: 4,
        groups: 3,
        ..DiverseBeamSearch::default()
    };
    assert_eq!(arg(d.generate(&mut m, &[0])), "groups");
    let p = Processors {
        top_p: 0.0,
        ..Processors::default()
    };
    assert_eq!(
        arg(BeamSearch {
            processors: p,
            ..bs(2, None)
        }
        .generate(&mut m, &[0])),
        "top_p"
    );
    let p = Processors {
        temperature: -1.0,
        ..Processors::default()
    };
    let s = Sampling {
        max_new_tokens: 2,
        do_sample: true,
        processors: p,
        ..Sampling::default()
    };
    assert!(matches!(
        s.generate(&mut m, &[0]),
        Err(Error::Param {
            arg: "temperature",
            ..
        })
    ));
    let mut nan = table.clone();
    nan[1] = f32::NAN;
    let mut m = StepTable::new(&nan, 3, 4).unwrap();
    assert_eq!(arg(bs(2, None).generate(&mut m, &[0])), "logits");
    // a model whose vocabulary differs from the logits it writes
    struct Liar;
    impl LanguageModel for Liar {
        fn vocab_size(&self) -> usize {
            4
        }
        fn logits(&mut self, _: Hypotheses<'_>, out: &mut [f32]) -> Result<()> {
            if out.len() % 5 != 0 {
                return Err(Error::Shape {
                    arg: "logits",
                    axis: 1,
                    got: 4,
                    expected: 5,
                    shape: seqcore::Dims::new(&[out.len()]),
                });
            }
            Ok(())
        }
    }
    assert!(matches!(
        bs(2, None).generate(&mut Liar, &[0]),
        Err(Error::Shape { arg: "logits", .. })
    ));
}

#[test]
fn ties_go_to_the_lower_token_id() {
    let table = vec![0.0f32; 3 * 5 * 5];
    let mut m = StepTable::new(&table, 3, 5).unwrap();
    let got = bs(3, None).generate(&mut m, &[0]).unwrap();
    let toks: Vec<_> = got.iter().map(|h| h.tokens.clone()).collect();
    assert_eq!(toks, vec![vec![0, 0, 0], vec![0, 0, 1], vec![0, 0, 2]]);
    let g = Sampling {
        max_new_tokens: 3,
        ..Sampling::default()
    }
    .generate(&mut m, &[0])
    .unwrap();
    assert_eq!(g, vec![0, 0, 0]);
}

#[test]
fn eos_at_step_zero_and_all_neg_inf_and_few_finite() {
    // EOS (token 1) is by far the best first token
    let v = 4;
    let mut table = vec![0.0f32; 3 * v * v];
    table[1] = 20.0; // step 0, previous token 0, token 1
    let mut m = StepTable::new(&table, 3, v).unwrap();
    let got = bs(2, Some(1)).generate(&mut m, &[0]).unwrap();
    assert_eq!(got[0].tokens, vec![1]);
    let lp = log_softmax(&table[..v])[1];
    assert!((f64::from(got[0].score) - lp).abs() < 1e-6);
    // every logit -inf: no panic; no hypothesis gets a finite score, so the list holds Hugging
    // Face's placeholders (score -1e9, no tokens), as transformers returns
    let table = vec![f32::NEG_INFINITY; 3 * v * v];
    let mut m = StepTable::new(&table, 3, v).unwrap();
    let got = bs(2, None).generate(&mut m, &[0]).unwrap();
    assert!(
        got.iter().all(|h| h.score <= -1e9 && h.tokens.is_empty()),
        "{got:?}"
    );
    // one finite token per row, four beams: the finite path wins, the rest are far below
    let mut table = vec![f32::NEG_INFINITY; 3 * v * v];
    for s in 0..3 {
        for p in 0..v {
            table[(s * v + p) * v + 2] = 0.0;
        }
    }
    let mut m = StepTable::new(&table, 3, v).unwrap();
    let got = bs(4, None).generate(&mut m, &[0]).unwrap();
    assert_eq!(got[0].tokens, vec![2, 2, 2]);
    assert_eq!(got[0].score, 0.0);
    assert!(got[1..].iter().all(|h| h.score < -1e8));
}

#[test]
fn sampling_is_reproducible() {
    let table: Vec<f32> = (0..4 * 6 * 6)
        .map(|i| ((i * 37) % 11) as f32 * 0.3)
        .collect();
    let mut m = StepTable::new(&table, 4, 6).unwrap();
    let s = Sampling {
        max_new_tokens: 4,
        do_sample: true,
        seed: 42,
        processors: Processors {
            temperature: 0.7,
            top_k: 4,
            top_p: 0.9,
            min_p: 0.05,
            repetition_penalty: 1.3,
            no_repeat_ngram_size: 2,
            ..Processors::default()
        },
        ..Sampling::default()
    };
    let a = s.generate(&mut m, &[0]).unwrap();
    assert_eq!(a, s.generate(&mut m, &[0]).unwrap());
    let other: Vec<_> = (0..20)
        .map(|seed| Sampling { seed, ..s }.generate(&mut m, &[0]).unwrap())
        .collect();
    assert!(other.iter().any(|o| *o != a));
}

#[test]
fn sampling_follows_the_softmax() {
    // one step, 4 tokens: the empirical frequencies approach softmax(logits / T)
    let logits = [0.0f32, 1.0, 2.0, -1.0];
    let table: Vec<f32> = logits.iter().copied().cycle().take(16).collect();
    let mut m = StepTable::new(&table, 1, 4).unwrap();
    let temp = 0.8f32;
    let mut counts = [0usize; 4];
    let n = 20_000;
    for seed in 0..n {
        let s = Sampling {
            max_new_tokens: 1,
            do_sample: true,
            seed,
            processors: Processors {
                temperature: temp,
                ..Processors::default()
            },
            ..Sampling::default()
        };
        counts[s.generate(&mut m, &[0]).unwrap()[0] as usize] += 1;
    }
    let scaled: Vec<f32> = logits.iter().map(|x| x / temp).collect();
    let p: Vec<f64> = log_softmax(&scaled).iter().map(|l| l.exp()).collect();
    for (c, p) in counts.iter().zip(&p) {
        let f = *c as f64 / n as f64;
        // five standard deviations of a binomial proportion
        assert!(
            (f - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt(),
            "{f} vs {p}"
        );
    }
}

/// Logits computed on a backend (an LM head as a gemm on the reference backend) and downloaded
/// through `OnBackend` give the same beam search as the host model.
#[test]
fn logits_on_a_backend() {
    use seq_decode::{BackendLanguageModel, OnBackend};
    use seqcore::{Backend, Reference, ViewMut};
    struct Head {
        w: Vec<f32>, // [V, V]: row p holds the logits after token p
        v: usize,
    }
    impl BackendLanguageModel<Reference> for Head {
        fn vocab_size(&self) -> usize {
            self.v
        }
        fn logits(
            &mut self,
            b: &Reference,
            hyps: Hypotheses<'_>,
            out: ViewMut<'_, Reference, f32>,
        ) -> Result<()> {
            let mut onehot = vec![0.0f32; hyps.count() * self.v];
            for i in 0..hyps.count() {
                onehot[i * self.v + hyps.last(i).unwrap() as usize] = 1.0;
            }
            let a = b.view(&onehot, &[hyps.count(), self.v])?;
            let w = b.view(&self.w, &[self.v, self.v])?;
            b.gemm(1.0, a, w, 0.0, out)
        }
    }
    let v = 6;
    let w: Vec<f32> = (0..v * v)
        .map(|i| ((i * 13) % 7) as f32 * 0.4 - 1.0)
        .collect();
    let table: Vec<f32> = w.iter().copied().cycle().take(4 * v * v).collect();
    let search = BeamSearch {
        beams: 3,
        max_new_tokens: 4,
        eos: Some(1),
        length_penalty: 1.0,
        early_stopping: EarlyStopping::Never,
        num_return: 3,
        processors: Processors::default(),
    };
    let mut mem = vec![0.0f32; 3 * v];
    let mut on = OnBackend::new(&Reference, Head { w, v }, &mut mem[..]);
    let a = search.generate(&mut on, &[0]).unwrap();
    let b = search
        .generate(&mut StepTable::new(&table, 4, v).unwrap(), &[0])
        .unwrap();
    assert_eq!(a, b);
}
