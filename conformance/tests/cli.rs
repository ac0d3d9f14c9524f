//! The `seq-conformance` binary: its commands, exit codes and output formats.
//!
//! `perf` is not run here: it times every kernel for a second per element type.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: clippy.toml allows these in #[test] functions, and the helpers here are \
              test code too"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn committed(file: &str) -> PathBuf {
    manifest().join("vectors").join(file)
}

fn fixture(file: &str) -> PathBuf {
    manifest().join("tests/fixtures").join(file)
}

/// What a run of the binary gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl core::fmt::Debug for Run {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_seq-conformance"))
        .args(args)
        .output()
        .expect("run seq-conformance");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

fn case_count(file: &Path) -> usize {
    let text = std::fs::read_to_string(file).expect("read a vector file");
    match serde_json::from_str::<Value>(&text).expect("valid JSON") {
        Value::Array(a) => a.len(),
        _ => 1,
    }
}

#[test]
fn backends_lists_the_reference_as_available() {
    let r = run(&["backends"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.lines().any(|l| {
            l.starts_with("reference") && l.split_whitespace().nth(1) == Some("available")
        }),
        "{r:?}"
    );
}

#[test]
fn vectors_on_the_committed_softmax_file_passes_every_case() {
    let file = committed("softmax.json");
    let n = case_count(&file);
    assert!(n > 0);
    let r = run(&[
        std::ffi::OsStr::new("vectors"),
        file.as_os_str(),
        std::ffi::OsStr::new("--backend"),
        std::ffi::OsStr::new("reference"),
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    let pass = lines.iter().filter(|l| l.starts_with("PASS ")).count();
    assert_eq!(pass, n, "{r:?}");
    assert!(!lines.iter().any(|l| l.starts_with("FAIL")), "{r:?}");
    assert_eq!(
        lines.last().copied(),
        Some(format!("{n} passed, 0 failed").as_str()),
        "{r:?}"
    );
    // Every PASS line names its case, the backend and the element type.
    for l in lines.iter().filter(|l| l.starts_with("PASS ")) {
        assert!(l.contains("[reference "), "{l}");
        assert!(l.contains("softmax/"), "{l}");
    }
}

#[test]
fn vectors_with_a_failing_case_exits_1_with_the_reason_on_one_line() {
    let file = fixture("one_good_one_bad.json");
    // One backend, so that each case is one line (every available backend runs it otherwise).
    let r = run(&[
        std::ffi::OsStr::new("vectors"),
        file.as_os_str(),
        std::ffi::OsStr::new("--backend"),
        std::ffi::OsStr::new("reference"),
    ]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let pass: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("PASS "))
        .collect();
    let fail: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert_eq!(pass.len(), 1, "{r:?}");
    assert!(pass[0].starts_with("PASS fixture/softmax/good "), "{r:?}");
    assert_eq!(fail.len(), 1, "{r:?}");
    let f = fail[0];
    assert!(
        f.starts_with("FAIL fixture/softmax/bad [reference f32]"),
        "{f}"
    );
    assert!(f.contains("one_good_one_bad.json"), "{f}");
    // The reason: the element, what the kernel gave, the reference, and the bound.
    assert!(f.contains("`y`[1]"), "{f}");
    assert!(f.contains("7.5e-1"), "{f}");
    assert!(f.contains("atol"), "{f}");
    assert_eq!(r.stdout.lines().last(), Some("1 passed, 1 failed"), "{r:?}");
}

#[test]
fn vectors_with_a_malformed_file_fails_without_crashing() {
    // A file that is not a vector file at all (this very source file) is one failed entry.
    let file = manifest().join("tests/cli.rs");
    let r = run(&[
        std::ffi::OsStr::new("vectors"),
        file.as_os_str(),
        std::ffi::OsStr::new("--backend"),
        std::ffi::OsStr::new("reference"),
    ]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("FAIL ") && l.contains("bad JSON")),
        "{r:?}"
    );
    assert_eq!(r.stdout.lines().last(), Some("0 passed, 1 failed"), "{r:?}");
    // A path that does not exist likewise.
    let r = run(&["vectors", "/nonexistent/seq-conformance/none.json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("cannot read"), "{r:?}");
}

#[test]
fn vectors_without_a_path_exits_2() {
    let r = run(&["vectors"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("PATH"), "{r:?}");
    assert!(r.stderr.contains("usage:"), "{r:?}");
}

#[test]
fn an_unknown_option_exits_2() {
    for args in [
        &["--frobnicate"][..],
        &["report", "--nope"],
        &["vectors", "-x"],
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(r.stderr.contains("unknown option"), "{args:?}: {r:?}");
        assert!(r.stderr.contains("usage:"), "{args:?}: {r:?}");
    }
    let r = run(&["frobnicate"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("unexpected argument"), "{r:?}");
    let r = run(&["report", "--filter", "("]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--filter"), "{r:?}");
    let r = run(&["report", "--filter"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--filter needs a REGEX"), "{r:?}");
}

#[test]
fn an_unknown_backend_exits_2_naming_the_compiled_in_ones() {
    let file = committed("softmax.json");
    for args in [
        vec!["vectors".to_owned(), file.display().to_string()],
        vec!["report".to_owned(), "--quick".to_owned()],
    ] {
        let mut args = args;
        args.extend(["--backend".to_owned(), "nope".to_owned()]);
        let r = run(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(r.stderr.contains("`nope`"), "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("compiled in: reference"),
            "{args:?}: {r:?}"
        );
        assert!(!r.stdout.contains("PASS"), "{args:?}: {r:?}");
    }
    let r = run(&["vectors", "--backend"]);
    assert_eq!(r.code, Some(2), "{r:?}");
}

#[test]
fn help_exits_0_with_the_usage() {
    let r = run(&["--help"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("usage:"), "{r:?}");
    for cmd in ["[report]", "vectors PATH", "perf", "backends"] {
        assert!(
            r.stdout.contains(&format!("seq-conformance {cmd}")),
            "{cmd}: {r:?}"
        );
    }
}

#[test]
fn report_json_on_softmax() {
    let r = run(&[
        "report",
        "--quick",
        "--filter",
        "^softmax$",
        "--json",
        "--backend",
        "reference",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).expect("the report is JSON");
    assert_eq!(v["mode"], "report", "{v}");
    let peak = &v["peak"];
    assert!(peak.is_object(), "{v}");
    for k in ["gflops", "gbps"] {
        let x = peak[k].as_f64().unwrap_or(0.0);
        assert!(x > 0.0 && x.is_finite(), "peak {k} = {}", peak[k]);
    }
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{v}");
    let mut dtypes: Vec<&str> = rows
        .iter()
        .map(|r| r["dtype"].as_str().expect("a dtype"))
        .collect();
    dtypes.sort_unstable();
    assert_eq!(dtypes, ["bf16", "f16", "f32", "f64"]);
    for row in rows {
        assert_eq!(row["kernel"], "softmax", "{row}");
        assert_eq!(row["backend"], "reference", "{row}");
        assert_eq!(row["passed"], true, "{row}");
        assert_eq!(row["failed"], 0, "{row}");
        assert!(row["cases"].as_u64().unwrap_or(0) > 0, "{row}");
        assert!(row["first_failure"].is_null(), "{row}");
        let rate = row["timing"]["rate"].as_f64().unwrap_or(0.0);
        assert!(rate > 0.0 && rate.is_finite(), "{row}");
        assert!(row["timing"]["unit"].is_string(), "{row}");
    }
}

#[test]
fn report_table_on_top_k() {
    let r = run(&[
        "report",
        "--quick",
        "--filter",
        "top_k",
        "--backend",
        "reference",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("kernel"))
        .unwrap_or_else(|| panic!("no header line: {r:?}"));
    assert!(lines[header].contains("% peak"), "{r:?}");
    let rows: Vec<&str> = lines[header + 1..]
        .iter()
        .copied()
        .filter(|l| l.starts_with("top_k "))
        .collect();
    assert_eq!(rows.len(), 4, "{r:?}");
    for row in &rows {
        assert!(row.contains(" pass "), "{row}");
        assert!(row.contains("reference"), "{row}");
    }
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .copied()
        .unwrap_or("");
    let n = rows.len();
    assert!(
        last.starts_with(&format!(
            "{n} rows, {n} passed, 0 unsupported by the backend, 0 failed"
        )),
        "{r:?}"
    );
}
