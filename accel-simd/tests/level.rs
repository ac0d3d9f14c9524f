//! The build reports the level CI asked for, so a job cannot pass without running its path.
//!
//! `.ci/run` builds this crate at each level with `SEQ_SIMD_EXPECT_LEVEL` set to the level's name;
//! a plain `cargo test` (the variable unset) checks only that the report is consistent.

use seq_accel_simd::{Level, Simd};

#[test]
fn build_reports_the_expected_level() {
    let expected = std::env::var("SEQ_SIMD_EXPECT_LEVEL").ok();
    if let Some(name) = expected {
        let want = Level::from_name(&name)
            .unwrap_or_else(|| panic!("SEQ_SIMD_EXPECT_LEVEL={name}: no such level"));
        assert_eq!(Level::BUILT, want, "this build's level");
    }
    assert_eq!(Level::from_name(Level::BUILT.name()), Some(Level::BUILT));
    let lanes = seq_accel_simd::lanes::F32_LANES;
    match Level::BUILT {
        Level::X86_64V4 => assert_eq!(lanes, 16),
        _ => assert_eq!(lanes, 8),
    }
}

#[test]
fn construction_follows_the_cpu() {
    match Simd::new() {
        Ok(b) => {
            assert_eq!(b.level(), Level::BUILT);
            assert!(Level::BUILT.detected());
        }
        Err(e) => {
            // Only a build above what this CPU runs may refuse, and it says why.
            assert!(!Level::BUILT.detected(), "{e}");
            assert!(
                matches!(
                    e,
                    seqcore::Error::Unavailable {
                        backend: "simd",
                        ..
                    }
                ),
                "{e}"
            );
            println!("simd backend skipped on this CPU: {e}");
        }
    }
    // The baseline levels run everywhere they compile.
    assert!(Level::X86_64.detected() && Level::Portable.detected());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn detection_agrees_with_std() {
    let v3 = std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c");
    // `is_x86_feature_detected!` answers true without asking when the build enables the
    // feature, so compare only on a build that does not.
    if !cfg!(target_feature = "avx2") {
        assert_eq!(Level::X86_64V3.detected(), v3);
    }
    if !cfg!(target_feature = "avx512f") {
        let v4 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl");
        assert_eq!(Level::X86_64V4.detected(), v3 && v4);
    }
}
