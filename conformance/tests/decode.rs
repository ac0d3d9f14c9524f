//! seq-decode's vector runners never panic on malformed cases, and the committed cases pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use proptest::prelude::*;
use seq_conformance::vectors;
use seqcore::Reference;
use serde_json::{Value, json};

fn junk() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(1e12)),
        Just(json!(-1)),
        Just(json!(0.5)),
        Just(json!("never")),
        Just(json!(true)),
        Just(json!(null)),
        Just(json!([1, 2])),
    ]
}

/// A parameter: mostly a small plausible value, sometimes junk.
fn param(lo: i64, hi: i64) -> impl Strategy<Value = Value> {
    prop_oneof![8 => (lo..hi).prop_map(Value::from), 1 => junk()]
}

fn floats(n: usize) -> impl Strategy<Value = Vec<Value>> {
    proptest::collection::vec(
        prop_oneof![
            12 => (-5.0f64..5.0).prop_map(Value::from),
            1 => Just(json!("-inf")),
            1 => Just(json!("nan")),
        ],
        n,
    )
}

fn case() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["beam_search", "logits_processors"]),
        1usize..5,
        1usize..4,
        1usize..4,
    )
        .prop_flat_map(|(mech, v, steps, rows)| {
            let ps = (
                (param(0, 5), param(0, 5), param(0, 6), param(-1, 3)),
                (
                    prop_oneof![
                        Just(json!(true)),
                        Just(json!(false)),
                        Just(json!("never")),
                        junk()
                    ],
                    param(0, 5),
                    param(0, 3),
                    param(0, 3),
                ),
                (param(0, 3), param(0, 4), param(0, 3), param(0, 4)),
                (param(0, 2), param(0, 3), param(0, 3)),
            );
            let n_in = if mech == "beam_search" {
                steps * v * v
            } else {
                rows * v
            };
            (
                Just(mech),
                Just((v, steps, rows)),
                ps,
                floats(n_in),
                proptest::collection::vec(0u32..6, rows * 3),
                proptest::collection::vec(-1i64..6, 0..8),
                floats(rows * v),
            )
        })
        .prop_map(|(mech, (v, steps, rows), ps, data, ids, seq, out)| {
            let (
                (beams, max_new, eos, lp),
                (es, nret, groups, div),
                (rep, ngram, minnew, topk),
                (topp, temp, prompt),
            ) = ps;
            let params = json!({
                "beams": beams, "max_new_tokens": max_new, "eos": eos, "length_penalty": lp,
                "early_stopping": es, "num_return": nret, "groups": groups,
                "diversity_penalty": div, "repetition_penalty": rep, "no_repeat_ngram_size": ngram,
                "min_new_tokens": minnew, "top_k": topk, "top_p": topp, "temperature": temp,
                "prompt_len": prompt, "banned": [0], "sampling": true,
            });
            let (ins, outs) = if mech == "beam_search" {
                let n = seq.len();
                (
                    json!({"table": {"shape": [steps, v, v], "data": data},
                           "bos": {"shape": [1], "data": [ids[0] % 5]}}),
                    json!({"sequences": {"shape": [1, n], "data": seq},
                           "scores": {"shape": [1], "data": [0.0]}}),
                )
            } else {
                (
                    json!({"scores": {"shape": [rows, v], "data": data},
                           "input_ids": {"shape": [rows, 3], "data": ids}}),
                    json!({"scores": {"shape": [rows, v], "data": out}}),
                )
            };
            json!({
                "format": "seq-vectors/1", "id": "fuzz", "mechanism": mech, "source": "fuzz",
                "dtype": "f32", "params": params, "inputs": ins, "expected": outs,
                "tolerance": {"atol": 1e-5, "rtol": 1e-5}
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn malformed_decode_cases_never_panic(v in case()) {
        if let Ok(c) = vectors::parse_case(&v) {
            if let Err(f) = vectors::run(&Reference, &c) {
                prop_assert!(!f.to_string().contains('\n'), "{}", f);
            }
        }
    }
}

#[test]
fn committed_decode_vectors_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    for file in ["beam_search.json", "logits_processors.json"] {
        let entries = vectors::load(&dir.join(file));
        assert!(entries.len() >= 30, "{file}: {} cases", entries.len());
        for e in entries {
            let case = e.case.as_ref().expect("parses");
            vectors::run(&Reference, case).unwrap_or_else(|f| panic!("{}: {f}", e.id));
        }
    }
}

#[test]
fn fuzz_cases_reach_the_decoders() {
    let cases = seq_conformance::sample(&case(), 300, 11);
    let parsed: Vec<_> = cases
        .iter()
        .filter_map(|v| vectors::parse_case(v).ok())
        .collect();
    let reached = parsed
        .iter()
        .filter(|c| {
            !matches!(
                vectors::run(&Reference, c),
                Err(seq_conformance::Failure::Setup(_))
            )
        })
        .count();
    assert!(parsed.len() >= 60, "only {} of 300 parse", parsed.len());
    assert!(reached >= 10, "only {reached} of 300 reach a decoder");
}
