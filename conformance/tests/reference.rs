//! The reference backend passes its own suite in every element type, and every kernel is covered.

use seq_conformance::{Config, check_backend, kernels};
use seqcore::{DType, Reference};

#[test]
fn reference_passes_every_kernel_in_every_dtype() {
    let report = check_backend(
        &Reference,
        &Config {
            cases: 24,
            ..Config::default()
        },
    );
    for row in &report.rows {
        assert!(
            row.passed(),
            "{} {}: {:?}",
            row.kernel,
            row.dtype,
            row.first_failure
        );
        assert!(row.cases > 0, "{} {} ran no case", row.kernel, row.dtype);
    }
    for dt in DType::ALL {
        for k in kernels() {
            assert!(
                report.rows.iter().any(|r| r.kernel == k && r.dtype == dt),
                "no row for {k} {dt}"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let c = Config {
        cases: 4,
        dtypes: vec![DType::F32],
        ..Config::default()
    };
    assert_eq!(check_backend(&Reference, &c), check_backend(&Reference, &c));
}

/// A longer soak than CI runs: `cargo test --release -p seq-conformance -- --ignored`.
#[test]
#[ignore = "about 90 s in release; run before changing a tolerance or a reference kernel"]
fn reference_passes_a_long_soak() {
    for seed in 0..3 {
        let report = check_backend(
            &Reference,
            &Config {
                cases: 300,
                seed,
                ..Config::default()
            },
        );
        for row in &report.rows {
            assert!(
                row.passed(),
                "seed {seed}: {} {}: {:?}",
                row.kernel,
                row.dtype,
                row.first_failure
            );
        }
    }
}
