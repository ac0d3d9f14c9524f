//! The golden-vector runner: every committed case passes on the reference, the shared examples
//! pass where this build runs their mechanism and fail with a one-line reason where it does not,
//! malformed input is a failed entry (never a panic), and a wrong expected value fails.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: clippy.toml allows these in #[test] functions, and the helpers here are \
              test code too"
)]

extern crate alloc;

use alloc::collections::BTreeSet;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use seq_conformance::Failure;
use seq_conformance::vectors::{self, Entry, mechanisms};
use seqcore::{DType, Reference};
use serde_json::{Map, Value, json};

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn shared_examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/examples")
}

/// Parses and runs one entry on the reference.
#[allow(
    clippy::result_large_err,
    reason = "the crate's runner answers `Failure` by value"
)]
fn outcome(e: &Entry) -> Result<vectors::Case, Failure> {
    let case = e.case.clone()?;
    vectors::run(&Reference, &case)?;
    Ok(case)
}

/// A fresh, empty folder under the system's temporary folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "seq-conformance-tests-vectors-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch folder");
        Scratch(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create a scratch subfolder");
        }
        std::fs::write(&p, text).expect("write a scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The committed vectors.

#[test]
fn every_committed_case_passes_on_the_reference() {
    let dir = committed();
    let entries = vectors::load(&dir);
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    let mut dtypes = BTreeSet::new();
    let mut files = BTreeSet::new();
    for e in &entries {
        files.insert(e.file.clone());
        match outcome(e) {
            Ok(case) => {
                seen.insert(case.mechanism.clone());
                dtypes.insert(case.dtype.name());
            }
            Err(f) => failures.push(format!("{} ({}): {f}", e.id, e.file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} committed cases fail:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
    assert!(
        entries.len() > 400,
        "only {} committed cases under {}",
        entries.len(),
        dir.display()
    );
    for m in mechanisms() {
        assert!(seen.contains(m), "no committed case of `{m}`");
    }
    for dt in DType::ALL {
        assert!(dtypes.contains(dt.name()), "no committed case in {dt}");
    }
    // Every committed `*.json` file was read (the loader finds them all, and only them).
    let on_disk: BTreeSet<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the vectors folder")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files, on_disk);
}

#[test]
fn committed_ids_are_unique() {
    let entries = vectors::load(&committed());
    let mut seen = BTreeSet::new();
    for e in &entries {
        assert!(seen.insert(e.id.clone()), "id `{}` appears twice", e.id);
    }
}

// ---------------------------------------------------------------------------------------------
// The shared examples.

#[test]
fn shared_examples_pass_or_name_the_unknown_mechanism() {
    let dir = shared_examples();
    assert!(
        dir.is_dir(),
        "the shared examples are missing: expected a folder at {} (it sits beside the checkout on \
         developer machines and in CI, and this test is part of that contract)",
        dir.display()
    );
    let entries = vectors::load(&dir);
    assert!(
        !entries.is_empty(),
        "no case under {}: the shared examples are part of the contract",
        dir.display()
    );
    let (mut ran, mut refused) = (0, 0);
    for e in &entries {
        let case = match &e.case {
            Ok(c) => c,
            Err(f) => panic!("{} ({}) does not parse: {f}", e.id, e.file.display()),
        };
        let r = vectors::run(&Reference, case);
        if mechanisms().contains(&case.mechanism.as_str()) {
            ran += 1;
            if let Err(f) = r {
                panic!("{} ({}) fails: {f}", e.id, e.file.display());
            }
        } else {
            refused += 1;
            match r {
                Err(Failure::Setup(why)) => {
                    assert!(
                        why.contains("unknown mechanism"),
                        "{}: the reason does not name the unknown mechanism: {why}",
                        e.id
                    );
                    assert!(why.contains(&case.mechanism), "{}: {why}", e.id);
                    assert!(!why.contains('\n'), "{}: reason on several lines", e.id);
                }
                other => panic!(
                    "{} (mechanism `{}`): expected a Setup failure, got {other:?}",
                    e.id, case.mechanism
                ),
            }
        }
    }
    assert!(ran > 0, "no shared example of a mechanism this build runs");
    // Every mechanism of the shared examples has landed; an example of a new mechanism is refused
    // with a one-line reason naming it (checked above) until its crate runs it.
    let _ = refused;
}

// ---------------------------------------------------------------------------------------------
// Malformed input.

fn good_softmax() -> Value {
    json!({
        "format": "seq-vectors/1",
        "id": "t/softmax",
        "mechanism": "softmax",
        "dtype": "f64",
        "inputs": {"x": {"shape": [1, 2], "data": [0.0, 0.0]}},
        "expected": {"y": {"shape": [1, 2], "data": [0.5, 0.5]}},
        "tolerance": {"atol": 1e-12, "rtol": 1e-12}
    })
}

fn good_top_k() -> Value {
    json!({
        "format": "seq-vectors/1",
        "id": "t/top_k",
        "mechanism": "top_k",
        "dtype": "f32",
        "params": {"k": 2},
        "inputs": {"x": {"shape": [1, 3], "data": [1.0, 3.0, 2.0]}},
        "expected": {
            "values": {"shape": [1, 2], "data": [3.0, 2.0]},
            "indices": {"shape": [1, 2], "data": [1, 2]}
        },
        "tolerance": {"atol": 0.0, "rtol": 0.0}
    })
}

fn good_gemm() -> Value {
    json!({
        "format": "seq-vectors/1",
        "id": "t/gemm",
        "mechanism": "gemm",
        "dtype": "f64",
        "params": {"alpha": 2.0, "beta": 1.0},
        "inputs": {
            "a": {"shape": [1, 1, 2], "data": [1.0, 2.0]},
            "b": {"shape": [1, 2, 1], "data": [3.0, 4.0]},
            "c": {"shape": [1, 1, 1], "data": [5.0]}
        },
        "expected": {"c": {"shape": [1, 1, 1], "data": [27.0]}},
        "tolerance": {"atol": 1e-12, "rtol": 0.0}
    })
}

fn good_unary() -> Value {
    json!({
        "format": "seq-vectors/1",
        "id": "t/unary",
        "mechanism": "unary",
        "dtype": "f64",
        "params": {"op": "square"},
        "inputs": {"x": {"shape": [3], "data": [1.0, -2.0, "inf"]}},
        "expected": {"y": {"shape": [3], "data": [1.0, 4.0, "inf"]}},
        "tolerance": {"atol": 0.0, "rtol": 0.0}
    })
}

/// `v` with `path` (keys separated by `/`) set to `to`, or removed when `to` is `None`.
fn with(mut v: Value, path: &str, to: Option<Value>) -> Value {
    let keys: Vec<&str> = path.split('/').collect();
    let (last, parents) = keys.split_last().expect("a non-empty path");
    let mut obj = &mut v;
    for k in parents {
        obj = obj.get_mut(*k).expect("the path exists");
    }
    let map = obj.as_object_mut().expect("an object");
    match to {
        Some(t) => {
            map.insert((*last).to_owned(), t);
        }
        None => {
            map.remove(*last);
        }
    }
    v
}

/// Loads `text` as the only file of a fresh folder and returns its entries with their outcomes.
fn load_text(name: &str, text: &str) -> Vec<(Entry, Result<vectors::Case, Failure>)> {
    let dir = Scratch::new(name);
    dir.write("case.json", text);
    vectors::load(&dir.0)
        .into_iter()
        .map(|e| {
            let r = outcome(&e);
            (e, r)
        })
        .collect()
}

/// `text` is one entry that fails as a Setup failure whose one-line reason contains `needle`.
#[track_caller]
fn fails_setup(name: &str, text: &str, needle: &str) {
    let entries = load_text(name, text);
    assert_eq!(entries.len(), 1, "{name}: {entries:?}");
    let (e, r) = &entries[0];
    match r {
        Err(Failure::Setup(why)) => {
            assert!(why.contains(needle), "{name}: `{why}` lacks `{needle}`");
            assert!(
                !why.contains('\n'),
                "{name}: reason on several lines: {why}"
            );
            assert!(!e.id.is_empty());
        }
        other => panic!("{name}: expected a Setup failure with `{needle}`, got {other:?}"),
    }
}

/// `v` is one entry that fails (in any way), with a one-line reason.
#[track_caller]
fn fails(name: &str, v: &Value) -> Failure {
    let entries = load_text(name, &v.to_string());
    assert_eq!(entries.len(), 1, "{name}: {entries:?}");
    match &entries[0].1 {
        Err(f) => {
            assert!(!f.to_string().contains('\n'), "{name}: {f}");
            f.clone()
        }
        Ok(_) => panic!("{name}: passed"),
    }
}

#[test]
fn the_good_templates_pass() {
    for v in [good_softmax(), good_top_k(), good_gemm(), good_unary()] {
        let entries = load_text("good", &v.to_string());
        assert_eq!(entries.len(), 1);
        assert!(entries[0].1.is_ok(), "{v}: {:?}", entries[0].1);
    }
}

#[test]
fn bad_json_is_one_failed_entry() {
    fails_setup(
        "bad-json",
        r#"{"format": "seq-vectors/1", "id": "#,
        "bad JSON",
    );
    fails_setup("empty-file", "", "bad JSON");
    fails_setup("trailing", &format!("{} x", good_softmax()), "bad JSON");
}

#[test]
fn a_json_number_is_one_failed_entry() {
    fails_setup("number", "42", "format");
    fails_setup("string", "\"seq-vectors/1\"", "format");
    fails_setup("null", "null", "format");
    // An array of non-objects gives one failed entry per element.
    let entries = load_text("array", "[1, true, []]");
    assert_eq!(entries.len(), 3);
    for (i, (e, r)) in entries.iter().enumerate() {
        assert_eq!(e.id, format!("#{i}"));
        assert!(matches!(r, Err(Failure::Setup(_))), "{r:?}");
    }
    // An empty array holds no case.
    assert!(load_text("empty-array", "[]").is_empty());
}

#[test]
fn wrong_format_fails() {
    let v = with(good_softmax(), "format", Some(json!("seq-vectors/2")));
    fails_setup("format-2", &v.to_string(), "seq-vectors/2");
    let v = with(good_softmax(), "format", None);
    fails_setup("format-missing", &v.to_string(), "expected `seq-vectors/1`");
    let v = with(good_softmax(), "format", Some(json!(1)));
    fails_setup("format-number", &v.to_string(), "expected `seq-vectors/1`");
}

#[test]
fn unknown_dtype_fails() {
    for d in ["f8", "F32", "int8", ""] {
        let v = with(good_softmax(), "dtype", Some(json!(d)));
        fails_setup("dtype", &v.to_string(), "unknown dtype");
    }
    let v = with(good_softmax(), "dtype", Some(json!(32)));
    fails_setup("dtype-number", &v.to_string(), "no `dtype`");
    let v = with(good_softmax(), "dtype", None);
    fails_setup("dtype-missing", &v.to_string(), "no `dtype`");
}

#[test]
fn unknown_mechanism_fails() {
    let v = with(
        good_softmax(),
        "mechanism",
        Some(json!("no_such_mechanism")),
    );
    fails_setup(
        "mech-unknown",
        &v.to_string(),
        "unknown mechanism `no_such_mechanism`",
    );
    let v = with(good_softmax(), "mechanism", Some(json!("Softmax")));
    fails_setup("mech-case", &v.to_string(), "unknown mechanism");
    let v = with(good_softmax(), "mechanism", None);
    fails_setup("mech-missing", &v.to_string(), "no `mechanism`");
    let v = with(good_softmax(), "id", None);
    fails_setup("id-missing", &v.to_string(), "no `id`");
}

#[test]
fn missing_input_fails() {
    let v = with(good_softmax(), "inputs/x", None);
    fails_setup("no-x", &v.to_string(), "no input `x`");
    let v = with(good_gemm(), "inputs/b", None);
    fails_setup("no-b", &v.to_string(), "no input `b`");
    let v = with(good_softmax(), "inputs", None);
    fails_setup("no-inputs", &v.to_string(), "no `inputs` object");
    let v = with(good_softmax(), "inputs", Some(json!([1, 2])));
    fails_setup("inputs-array", &v.to_string(), "no `inputs` object");
}

#[test]
fn missing_expected_fails() {
    let v = with(good_softmax(), "expected/y", None);
    fails_setup("no-y", &v.to_string(), "no expected `y`");
    let v = with(good_top_k(), "expected/indices", None);
    fails_setup("no-indices", &v.to_string(), "no expected `indices`");
    let v = with(good_softmax(), "expected", None);
    fails_setup("no-expected", &v.to_string(), "no `expected` object");
    let v = with(good_softmax(), "tolerance", None);
    fails_setup("no-tolerance", &v.to_string(), "no `tolerance`");
}

#[test]
fn shape_and_data_length_must_agree() {
    let v = with(
        good_softmax(),
        "inputs/x",
        Some(json!({"shape": [2, 2], "data": [0.0, 0.0]})),
    );
    fails_setup(
        "short-data",
        &v.to_string(),
        "has shape [2, 2] but 2 elements",
    );
    let v = with(
        good_softmax(),
        "expected/y",
        Some(json!({"shape": [1, 2], "data": [0.5, 0.5, 0.5]})),
    );
    fails_setup("long-data", &v.to_string(), "but 3 elements");
    let v = with(good_softmax(), "inputs/x/shape", None);
    fails_setup("no-shape", &v.to_string(), "`x` has no shape");
    let v = with(good_softmax(), "inputs/x/data", None);
    fails_setup("no-data", &v.to_string(), "`x` has no data");
    for extent in [json!(-1), json!(1.5), json!("2"), json!(null)] {
        let v = with(good_softmax(), "inputs/x/shape", Some(json!([1, extent])));
        fails_setup("bad-extent", &v.to_string(), "bad extent");
    }
    let huge = json!([u64::MAX, u64::MAX]);
    let v = with(good_softmax(), "inputs/x/shape", Some(huge));
    fails_setup("overflow", &v.to_string(), "overflows");
}

#[test]
fn non_numbers_in_data_fail() {
    for bad in [
        json!("abc"),
        json!("Inf"),
        json!(true),
        json!(null),
        json!([1.0]),
    ] {
        let v = with(
            good_softmax(),
            "inputs/x/data",
            Some(json!([0.0, bad.clone()])),
        );
        fails_setup("bad-element", &v.to_string(), "is not a number");
    }
    let v = with(good_softmax(), "expected/y/data", Some(json!(["abc", 0.5])));
    fails_setup("abc-expected", &v.to_string(), "`abc` is not a number");
}

#[test]
fn negative_or_nan_tolerance_fails() {
    let v = with(good_softmax(), "tolerance/atol", Some(json!(-1e-6)));
    fails_setup("neg-atol", &v.to_string(), "non-negative");
    let v = with(good_softmax(), "tolerance/rtol", Some(json!(-0.5)));
    fails_setup("neg-rtol", &v.to_string(), "non-negative");
    let v = with(good_softmax(), "tolerance/rtol", Some(json!("nan")));
    fails_setup("nan-rtol", &v.to_string(), "non-negative");
    let v = with(good_softmax(), "tolerance/atol", Some(json!("-inf")));
    fails_setup("ninf-atol", &v.to_string(), "non-negative");
    let v = with(good_softmax(), "tolerance/atol", Some(json!("abc")));
    fails_setup("abc-atol", &v.to_string(), "`abc` is not a number");
}

#[test]
fn top_k_needs_a_count_within_the_row() {
    for k in [
        json!(-1),
        json!(2.5),
        json!("nan"),
        json!("inf"),
        json!(1e300),
    ] {
        let v = with(good_top_k(), "params/k", Some(k.clone()));
        fails_setup("k-not-count", &v.to_string(), "is not a count");
    }
    let v = with(good_top_k(), "params/k", None);
    fails_setup("k-missing", &v.to_string(), "no parameter `k`");
    let v = with(good_top_k(), "params/k", Some(json!("two")));
    fails_setup("k-string", &v.to_string(), "`two` is not a number");

    // k larger than the row, with outputs shaped for that k: the kernel refuses it.
    let v = with(good_top_k(), "params/k", Some(json!(4)));
    let v = with(
        v,
        "expected",
        Some(json!({
            "values": {"shape": [1, 4], "data": [3.0, 2.0, 1.0, 0.0]},
            "indices": {"shape": [1, 4], "data": [1, 2, 0, 3]}
        })),
    );
    let f = fails("k-too-large", &v);
    assert!(matches!(f, Failure::Kernel(_)), "{f:?}");
    // k larger than the row, with outputs shaped for the row: still refused.
    let v = with(good_top_k(), "params/k", Some(json!(4)));
    fails("k-too-large-row-shaped", &v);
    // A huge k that passes the count check is refused by the kernel, without allocating.
    let v = with(good_top_k(), "params/k", Some(json!(1e9)));
    fails("k-1e9", &v);

    // Bad expected indices.
    for i in [json!(-1), json!(0.5), json!(1e10)] {
        let v = with(
            good_top_k(),
            "expected/indices/data",
            Some(json!([1, i.clone()])),
        );
        fails_setup("bad-index", &v.to_string(), "index");
    }
}

#[test]
fn gemm_with_beta_needs_c() {
    let v = with(good_gemm(), "inputs/c", None);
    fails_setup("beta-no-c", &v.to_string(), "no input `c`");
    // With beta = 0, `c` is not read, and its absence is fine.
    let v = with(good_gemm(), "inputs/c", None);
    let v = with(v, "params/beta", Some(json!(0.0)));
    let v = with(v, "expected/c/data", Some(json!([22.0])));
    let entries = load_text("beta-0-no-c", &v.to_string());
    assert!(entries[0].1.is_ok(), "{:?}", entries[0].1);
    // The default beta is 0.
    let v = with(good_gemm(), "inputs/c", None);
    let v = with(v, "params", Some(json!({})));
    let v = with(v, "expected/c/data", Some(json!([11.0])));
    let entries = load_text("default-beta", &v.to_string());
    assert!(entries[0].1.is_ok(), "{:?}", entries[0].1);
    let v = with(good_gemm(), "params/alpha", Some(json!("two")));
    fails_setup("alpha-string", &v.to_string(), "`two` is not a number");
    // Inner extents that disagree are the kernel's to refuse.
    let v = with(
        good_gemm(),
        "inputs/b",
        Some(json!({"shape": [1, 3, 1], "data": [3.0, 4.0, 5.0]})),
    );
    fails("gemm-inner", &v);
}

#[test]
fn unknown_unary_op_fails() {
    let v = with(good_unary(), "params/op", Some(json!("cube")));
    fails_setup("op-cube", &v.to_string(), "unknown unary op `cube`");
    let v = with(good_unary(), "params", None);
    fails_setup("op-missing", &v.to_string(), "no parameter `op`");
    let v = with(good_unary(), "params/op", Some(json!(3)));
    fails_setup("op-number", &v.to_string(), "no parameter `op`");
    let v = with(good_unary(), "mechanism", Some(json!("reduce")));
    let v = with(v, "params/op", Some(json!("median")));
    fails_setup(
        "reduce-median",
        &v.to_string(),
        "unknown reduction `median`",
    );
}

#[test]
fn an_expected_shape_the_kernel_does_not_produce_fails() {
    // Same element count, other shape.
    let v = with(
        good_softmax(),
        "inputs/x",
        Some(json!({"shape": [2, 3], "data": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]})),
    );
    let v = with(
        v,
        "expected/y",
        Some(json!({"shape": [3, 2], "data": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]})),
    );
    fails("transposed", &v);
    // Fewer elements.
    let v = with(
        good_softmax(),
        "expected/y",
        Some(json!({"shape": [1, 1], "data": [1.0]})),
    );
    fails("smaller", &v);
    // A scalar where a vector is expected.
    let v = with(
        good_unary(),
        "expected/y",
        Some(json!({"shape": [], "data": [1.0]})),
    );
    fails("scalar", &v);
    // top_k indices shaped otherwise than values.
    let v = with(
        good_top_k(),
        "expected/indices",
        Some(json!({"shape": [2, 1], "data": [1, 2]})),
    );
    fails("top-k-indices", &v);
    // A right shape but a wrong value still fails (the templates are not vacuous).
    let v = with(good_softmax(), "expected/y/data", Some(json!([0.4, 0.6])));
    assert!(matches!(fails("wrong", &v), Failure::Tolerance { .. }));
    let v = with(good_softmax(), "expected/y/data", Some(json!(["nan", 0.5])));
    assert!(matches!(fails("nan", &v), Failure::Structure { .. }));
}

#[test]
fn a_huge_extent_beside_a_zero_one_is_quick() {
    // Shapes like [2^40, 0] hold no element, so their data is `[]` and they parse; a kernel must
    // not walk their 2^40 empty rows. Each case runs on a watchdog thread, so that a regression
    // fails this test instead of hanging the run.
    let huge = 1u64 << 40;
    let t = |shape: Value| json!({"shape": shape, "data": []});
    let cases = [
        (
            "softmax",
            json!({"x": t(json!([huge, 0]))}),
            json!({"y": t(json!([huge, 0]))}),
            json!({}),
        ),
        (
            "log_softmax",
            json!({"x": t(json!([huge, 0]))}),
            json!({"y": t(json!([huge, 0]))}),
            json!({}),
        ),
        (
            "unary",
            json!({"x": t(json!([huge, 0]))}),
            json!({"y": t(json!([huge, 0]))}),
            json!({"op": "exp"}),
        ),
        (
            "top_k",
            json!({"x": t(json!([huge, 0]))}),
            json!({"values": t(json!([huge, 0])), "indices": t(json!([huge, 0]))}),
            json!({"k": 0}),
        ),
        (
            "gemm",
            json!({"a": t(json!([huge, 0, 0])), "b": t(json!([huge, 0, 0]))}),
            json!({"c": t(json!([huge, 0, 0]))}),
            json!({}),
        ),
        (
            "gemm",
            json!({"a": t(json!([1, huge, 0])), "b": t(json!([1, 0, 0]))}),
            json!({"c": t(json!([1, huge, 0]))}),
            json!({}),
        ),
        (
            "gemm",
            json!({"a": t(json!([1, 0, huge])), "b": t(json!([1, huge, 0]))}),
            json!({"c": t(json!([1, 0, 0]))}),
            json!({}),
        ),
        (
            "gemm",
            json!({"a": t(json!([huge, 0])), "b": t(json!([0, 0]))}),
            json!({"c": t(json!([huge, 0]))}),
            json!({}),
        ),
    ];
    for (mechanism, inputs, expected, params) in cases {
        let v = json!({
            "format": "seq-vectors/1", "id": "t/huge", "mechanism": mechanism, "dtype": "f32",
            "params": params, "inputs": inputs, "expected": expected,
            "tolerance": {"atol": 0.0, "rtol": 0.0}
        });
        let case = vectors::parse_case(&v).expect("an empty tensor parses");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = vectors::run(&Reference, &case).map_err(|f| f.to_string());
            let _ = tx.send(r);
        });
        match rx.recv_timeout(core::time::Duration::from_secs(10)) {
            Ok(Ok(a)) => assert_eq!(a.count, 0, "{v}"),
            // Refusing the shape is fine too; only walking it is not.
            Ok(Err(why)) => assert!(!why.contains('\n'), "{why}"),
            Err(_) => panic!("{mechanism} walks the empty rows of {v}"),
        }
    }
}

#[test]
fn a_folder_ignores_other_files_and_reads_nested_folders() {
    let dir = Scratch::new("folder");
    dir.write("a.json", &good_softmax().to_string());
    dir.write("notes.txt", "not JSON at all {");
    dir.write("README.md", "# readme");
    dir.write("b.json.bak", "{");
    dir.write(
        "nested/c.json",
        &json!([good_top_k(), good_gemm()]).to_string(),
    );
    dir.write("nested/deeper/d.json", &good_unary().to_string());
    dir.write("nested/deeper/e.json", "{ broken");
    let entries = vectors::load(&dir.0);
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert_eq!(&ids[..4], ["t/softmax", "t/top_k", "t/gemm", "t/unary"]);
    assert!(ids[4].ends_with("e.json"), "{ids:?}");
    for e in &entries[..4] {
        assert!(outcome(e).is_ok(), "{}: {:?}", e.id, outcome(e));
    }
    assert!(matches!(
        &entries[4].case,
        Err(Failure::Setup(why)) if why.contains("bad JSON")
    ));
    // A file given by name is read whatever its extension.
    let single = dir.0.join("notes.txt");
    let entries = vectors::load(&single);
    assert_eq!(entries.len(), 1);
    assert!(entries[0].case.is_err());
}

#[test]
fn a_missing_path_is_one_failed_entry() {
    let dir = Scratch::new("missing");
    let entries = vectors::load(&dir.0.join("no-such-file.json"));
    assert_eq!(entries.len(), 1);
    assert!(
        matches!(&entries[0].case, Err(Failure::Setup(why)) if why.contains("cannot read")),
        "{entries:?}"
    );
    // An empty folder holds no case.
    assert!(vectors::load(&dir.0).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Random JSON never panics.

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..100).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        prop::sample::select(vec![
            "inf",
            "-inf",
            "nan",
            "abc",
            "",
            "f32",
            "softmax",
            "seq-vectors/1"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An element of `data`: mostly numbers, sometimes the special strings or extreme values.
fn element() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (-10f64..10.0).prop_map(Value::from),
        2 => (-3i64..8).prop_map(Value::from),
        1 => prop::sample::select(vec!["inf", "-inf", "nan"]).prop_map(Value::from),
        1 => prop::sample::select(vec![
            json!(1e300), json!(-1e-300), json!(65504.0), json!(1e38), json!(0.0), json!(-0.0),
        ]),
    ]
}

/// A small shape: rank 0 to 3, extents 0 to 3 (mostly 1 to 3).
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1 => Just(0usize), 6 => 1usize..4], 0..4)
}

/// A tensor of `shape`: usually data of the matching length, sometimes not, sometimes junk.
fn tensor_of(shape: Vec<usize>) -> impl Strategy<Value = Value> {
    let n: usize = shape.iter().product();
    let s = shape.clone();
    let matched = prop::collection::vec(element(), n)
        .prop_map(move |data| json!({"shape": s.clone(), "data": data}));
    let loose = (
        Just(shape),
        prop::collection::vec(prop_oneof![9 => element(), 1 => Just(json!("abc"))], 0..12),
    )
        .prop_map(|(shape, data)| json!({"shape": shape, "data": data}));
    prop_oneof![
        20 => matched,
        1 => loose,
        1 => any_json(),
    ]
}

fn tensor() -> impl Strategy<Value = Value> {
    shape().prop_flat_map(tensor_of)
}

/// A map of tensors with the given names (and, rarely, others), or junk.
fn tensors(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let extra = prop::sample::subsequence(vec!["x", "a", "c", "values"], 0..2);
    let keep = prop::collection::vec(prop::bool::weighted(0.95), names.len());
    let map = (extra, keep, prop::option::weighted(0.8, shape())).prop_flat_map(
        move |(extra, keep, shared)| {
            let chosen: Vec<&'static str> = names
                .iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(n, _)| *n)
                .chain(extra.into_iter().filter(|_| shared.is_none()))
                .collect();
            // With a shared shape, every tensor has it (softmax, unary, reduce see agreeing
            // shapes); without one, each draws its own.
            let ts: Vec<BoxedStrategy<Value>> = chosen
                .iter()
                .map(|_| match &shared {
                    Some(s) => prop_oneof![
                        4 => tensor_of(s.clone()),
                        1 => tensor(),
                    ]
                    .boxed(),
                    None => tensor().boxed(),
                })
                .collect();
            ts.prop_map(move |ts| {
                Value::Object(
                    chosen
                        .iter()
                        .map(|n| (*n).to_owned())
                        .zip(ts)
                        .collect::<Map<String, Value>>(),
                )
            })
        },
    );
    prop_oneof![
        12 => map,
        1 => any_json(),
    ]
}

fn param_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-1i64..5).prop_map(Value::from),
        2 => (-3f64..3.0).prop_map(Value::from),
        4 => prop::sample::select(vec![
            "exp", "log", "sigmoid", "gelu", "square", "recip", "sum", "mean", "max", "min",
            "logsumexp", "l2norm", "cube", "inf", "nan", "abc", "forward_kl", "jsd",
        ])
        .prop_map(Value::from),
        1 => Just(json!(1e9)),
        1 => Just(json!(2.5)),
        1 => any_json(),
    ]
}

fn params() -> impl Strategy<Value = Value> {
    // seqcore's mechanisms' parameters: the random cases are drawn from those mechanisms
    let keys = prop::sample::subsequence(vec!["k", "op", "alpha", "beta", "theta"], 0..5);
    prop_oneof![
        8 => keys.prop_flat_map(|keys| {
            prop::collection::vec(param_value(), keys.len()).prop_map(move |vs| {
                Value::Object(keys.iter().map(|k| (*k).to_owned()).zip(vs).collect())
            })
        }),
        1 => any_json(),
    ]
}

/// The inputs and expected outputs a mechanism reads.
fn names_of(mechanism: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match mechanism {
        "gemm" => (&["a", "b", "c"], &["c"]),
        "top_k" => (&["x"], &["values", "indices"]),
        "kd_loss" => (&["teacher", "student"], &["loss", "grad"]),
        "kd_loss_sparse" => (&["values", "indices", "student"], &["loss", "grad"]),
        "cross_entropy" => (&["logits", "targets"], &["loss", "grad"]),
        "linear_attention" => (&["q", "k", "v"], &["o"]),
        "delta_rule" => (&["q", "k", "v", "beta", "g"], &["o"]),
        _ => (&["x"], &["y"]),
    }
}

/// A case object with the real keys and random values; each key is sometimes left out or junk.
fn case_json() -> impl Strategy<Value = Value> {
    let mechanism = prop_oneof![
        // seqcore's mechanisms only: `names_of` knows their tensors (a mechanism crate's random case
        // would only ever fail to set up)
        12 => prop::sample::select(vectors::MECHANISMS.to_vec()),
        1 => prop::sample::select(vec!["rope", "sdpa", ""]),
    ];
    mechanism.prop_flat_map(|mech| {
        let (ins, outs) = names_of(mech);
        let format = prop_oneof![
            20 => Just(json!("seq-vectors/1")),
            1 => any_json(),
        ];
        let mechanism = prop_oneof![
            20 => Just(json!(mech)),
            1 => any_json(),
        ];
        let dtype = prop_oneof![
            20 => prop::sample::select(vec!["f32", "f64", "f16", "bf16"]).prop_map(Value::from),
            1 => prop::sample::select(vec!["f8", "u32", "i64"]).prop_map(Value::from),
            1 => any_json(),
        ];
        let bound = prop_oneof![
            8 => (0f64..1e-2).prop_map(Value::from),
            2 => Just(json!(0)),
            1 => element(),
        ];
        let tolerance = prop_oneof![
            12 => (prop::option::weighted(0.97, bound.clone()), prop::option::weighted(0.97, bound)).prop_map(|(a, r)| {
                let mut m = Map::new();
                if let Some(a) = a {
                    m.insert("atol".into(), a);
                }
                if let Some(r) = r {
                    m.insert("rtol".into(), r);
                }
                Value::Object(m)
            }),
            1 => any_json(),
        ];
        let id = prop_oneof![
            12 => "[a-z/0-9]{0,8}".prop_map(Value::from),
            1 => any_json(),
        ];
        let fields = (
            format,
            id,
            mechanism,
            dtype,
            params(),
            tensors(ins),
            tensors(outs),
            tolerance,
        );
        let names = [
            "format",
            "id",
            "mechanism",
            "dtype",
            "params",
            "inputs",
            "expected",
            "tolerance",
        ];
        (fields, prop::collection::vec(prop::bool::weighted(0.97), 8)).prop_map(
            move |((f, i, m, d, p, inp, exp, t), keep)| {
                // A parameter the mechanism cannot run without, so that its cases reach it.
                let p = match (mech, p) {
                    ("linear_attention", Value::Object(mut o)) => {
                        o.entry("feature_map").or_insert(json!("identity"));
                        Value::Object(o)
                    }
                    (_, p) => p,
                };
                let vals = [f, i, m, d, p, inp, exp, t];
                Value::Object(
                    names
                        .iter()
                        .zip(vals)
                        .zip(keep)
                        .filter(|(_, k)| *k)
                        .map(|((n, v), _)| ((*n).to_owned(), v))
                        .collect(),
                )
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_cases_never_panic(v in prop_oneof![8 => case_json(), 1 => any_json()]) {
        if let Ok(case) = vectors::parse_case(&v) {
            let r = vectors::run(&Reference, &case);
            if let Err(f) = r {
                prop_assert!(!f.to_string().contains('\n'), "{}", f);
            }
        }
    }
}

#[test]
fn the_random_cases_reach_the_kernels() {
    // The strategy is not vacuous: a fair share of its cases parse, and some even pass.
    let cases = seq_conformance::sample(&case_json(), 200, 7);
    let parsed: Vec<_> = cases
        .iter()
        .filter_map(|v| vectors::parse_case(v).ok())
        .collect();
    let ran = parsed
        .iter()
        .filter(|c| !matches!(vectors::run(&Reference, c), Err(Failure::Setup(_))))
        .count();
    assert!(parsed.len() >= 60, "only {} of 200 parse", parsed.len());
    assert!(ran >= 20, "only {ran} of 200 reach a kernel");
}

// ---------------------------------------------------------------------------------------------
// The runner can fail.

fn committed_case(file: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let text = std::fs::read_to_string(committed().join(file)).expect("read a committed file");
    let all: Vec<Value> = serde_json::from_str(&text).expect("a JSON array");
    all.into_iter()
        .find(|v| pick(v))
        .expect("a committed case to mutate")
}

#[test]
fn a_softmax_value_off_by_a_relative_1e_3_fails_with_tolerance() {
    let mut v = committed_case("softmax.json", |v| {
        v["mechanism"] == "softmax"
            && v["dtype"] == "f32"
            && v["inputs"]["x"]["shape"]
                .as_array()
                .is_some_and(|s| s.iter().all(|d| d.as_u64().is_some_and(|d| d > 2)))
    });
    let id = v["id"].clone();
    let case = vectors::parse_case(&v).expect("the committed case parses");
    assert!(
        vectors::run(&Reference, &case).is_ok(),
        "{id} fails as committed"
    );
    // Nudge the largest expected value.
    let data = v["expected"]["y"]["data"]
        .as_array_mut()
        .expect("expected data");
    let (at, max) = data
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.as_f64().map(|d| (i, d)))
        .fold((0, 0.0f64), |b, x| if x.1 > b.1 { x } else { b });
    assert!(max > 0.01, "{id}: largest expected value {max}");
    data[at] = json!(max * (1.0 + 1e-3));
    let case = vectors::parse_case(&v).expect("the mutated case parses");
    match vectors::run(&Reference, &case) {
        Err(Failure::Tolerance {
            arg,
            index,
            expected,
            ..
        }) => {
            assert_eq!(arg, "y");
            assert_eq!(index, at);
            assert_eq!(expected, max * (1.0 + 1e-3));
        }
        other => panic!("{id}: expected a Tolerance failure, got {other:?}"),
    }
}

#[test]
fn a_top_k_with_two_indices_swapped_fails_as_discrete() {
    let mut v = committed_case("top_k.json", |v| {
        let ix = &v["expected"]["indices"]["data"];
        v["params"]["k"].as_u64().is_some_and(|k| k >= 2) && ix[0] != ix[1]
    });
    let id = v["id"].clone();
    let case = vectors::parse_case(&v).expect("the committed case parses");
    assert!(
        vectors::run(&Reference, &case).is_ok(),
        "{id} fails as committed"
    );
    let ix = v["expected"]["indices"]["data"]
        .as_array_mut()
        .expect("indices");
    ix.swap(0, 1);
    let (i0, i1) = (ix[0].as_u64(), ix[1].as_u64());
    let case = vectors::parse_case(&v).expect("the mutated case parses");
    match vectors::run(&Reference, &case) {
        Err(Failure::Discrete {
            arg,
            index,
            got,
            expected,
        }) => {
            assert_eq!(arg, "indices");
            assert_eq!(index, 0);
            assert_eq!(Some(u64::from(got)), i1);
            assert_eq!(Some(u64::from(expected)), i0);
        }
        other => panic!("{id}: expected a Discrete failure, got {other:?}"),
    }
}
