//! The conformance suite on the simd backend: every row of `check_backend` (every seqcore kernel
//! and every mechanism row, in every element type) passes, none is unsupported (this backend's
//! memory is on the host, so every fused kernel runs), and every golden-vector file (the
//! project's `conformance/vectors` and the shared `../shared/vectors/examples`) passes, through
//! the suite's library API, as `seq-conformance report --backend simd` and
//! `seq-conformance vectors ... --backend simd` would.
//!
//! On a CPU without the build's level (an x86-64-v4 build here), `Simd::new()` refuses and the
//! tests print why and return.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    reason = "test code: clippy.toml allows these in #[test] functions"
)]

use std::path::{Path, PathBuf};

use seq_accel_simd::Simd;
use seq_conformance::vectors::{self, mechanisms};
use seq_conformance::{Config, Failure, check_backend, kernels};
use seqcore::{DType, Reference};

fn simd() -> Option<Simd> {
    match Simd::new() {
        Ok(s) => Some(s),
        Err(e) => {
            println!("simd backend unavailable, test skipped: {e}");
            None
        }
    }
}

/// `seq-conformance report --quick` without its timing: 12 random cases per row on top of the
/// fixed edge cases.
fn quick() -> Config {
    Config {
        cases: if cfg!(miri) { 1 } else { 12 },
        timing: None,
        ..Config::quick()
    }
}

#[test]
#[cfg_attr(miri, ignore = "the whole suite: hours under Miri")]
fn every_row_passes_in_every_dtype() {
    let Some(s) = simd() else { return };
    let report = check_backend(&s, &quick());
    let mut bad = Vec::new();
    for row in &report.rows {
        assert_eq!(row.backend, "simd");
        if row.is_unsupported() || row.unsupported.is_some() {
            bad.push(format!(
                "{} {}: unsupported ({:?}), but simd memory is on the host",
                row.kernel, row.dtype, row.unsupported
            ));
        } else if !row.passed() {
            bad.push(format!(
                "{} {}: {} of {} cases failed, first: {:?}",
                row.kernel, row.dtype, row.failed, row.cases, row.first_failure
            ));
        } else if row.cases == 0 {
            bad.push(format!("{} {}: ran no case", row.kernel, row.dtype));
        }
        assert!(row.on_host, "{} {}: not on the host", row.kernel, row.dtype);
    }
    assert!(
        bad.is_empty(),
        "{} of {} rows fail on simd:\n{}",
        bad.len(),
        report.rows.len(),
        bad.join("\n")
    );
    for dt in DType::ALL {
        for k in kernels() {
            assert!(
                report.rows.iter().any(|r| r.kernel == k && r.dtype == dt),
                "no row for {k} {dt}"
            );
        }
    }
    println!("{} rows pass on simd", report.rows.len());
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The vector folders: the project's, and the shared examples beside the checkout.
fn folders() -> [PathBuf; 2] {
    [
        manifest().join("../conformance/vectors"),
        manifest().join("../../shared/vectors/examples"),
    ]
}

#[test]
#[cfg_attr(miri, ignore = "hundreds of cases with file I/O: run natively")]
fn every_vector_file_passes() {
    let Some(s) = simd() else { return };
    let (mut pass, mut fail, mut refused) = (0usize, Vec::new(), 0usize);
    for dir in folders() {
        assert!(
            dir.is_dir(),
            "missing vector folder {} (the shared examples sit beside the checkout)",
            dir.display()
        );
        let entries = vectors::load(&dir);
        assert!(!entries.is_empty(), "no case under {}", dir.display());
        for e in &entries {
            let case = match &e.case {
                Ok(c) => c,
                Err(f) => {
                    fail.push(format!(
                        "{} ({}): does not parse: {f}",
                        e.id,
                        e.file.display()
                    ));
                    continue;
                }
            };
            let got = vectors::run(&s, case);
            if mechanisms().contains(&case.mechanism.as_str()) {
                match got {
                    Ok(_) => pass += 1,
                    Err(f) => fail.push(format!(
                        "{} [{}] ({}): {f}",
                        e.id,
                        case.dtype,
                        e.file.display()
                    )),
                }
            } else {
                // A mechanism this build does not run: refused as the reference refuses it.
                let want = vectors::run(&Reference, case);
                match (&got, &want) {
                    (Err(Failure::Setup(g)), Err(Failure::Setup(w))) if g == w => refused += 1,
                    _ => fail.push(format!(
                        "{} (mechanism `{}`): simd {got:?}, reference {want:?}",
                        e.id, case.mechanism
                    )),
                }
            }
        }
    }
    println!(
        "{pass} passed, {refused} refused as on the reference, {} failed",
        fail.len()
    );
    assert!(
        fail.is_empty(),
        "{} vector cases fail on simd:\n{}",
        fail.len(),
        fail.join("\n")
    );
    assert!(pass > 400, "only {pass} vector cases ran");
}
