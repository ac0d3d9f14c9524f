//! Every kernel property of `seq_conformance::properties`, in every element type, as a proptest
//! test on the reference backend.
//!
//! `check_backend` samples the same strategies but reports only the first failing case as drawn;
//! here proptest shrinks a failing case to a small one before printing it, with the [`Failure`]
//! that the property returned. Case counts are kept small (the reference runs each case twice,
//! once as the backend under test and once as the f64 oracle); `tests/reference.rs` and the
//! ignored soak run more.

use proptest::prelude::*;
use seq_conformance::Failure;
use seq_conformance::compare::Agreement;
use seq_conformance::properties::{elementwise, gemm, reduce, softmax, top_k};
use seqcore::{Reference, SoftmaxKind};

/// Random cases per kernel, element type and test.
const CASES: u32 = 32;
/// Random cases per (source, destination) pair of the cast tests (16 tests).
const CAST_CASES: u32 = 16;

/// Turns a property's verdict into a proptest verdict that prints the [`Failure`].
fn holds(verdict: Result<Agreement, Failure>) -> Result<(), TestCaseError> {
    if let Err(failure) = verdict {
        prop_assert!(false, "property failed: {failure}");
    }
    Ok(())
}

/// One module per element type `$t`, holding a test per kernel property.
macro_rules! kernel_properties {
    ($($module:ident: $t:ty),* $(,)?) => {$(
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(CASES))]

                #[test]
                fn gemm(case in gemm::cases()) {
                    holds(gemm::check::<_, $t>(&Reference, &case))?;
                }

                #[test]
                fn softmax(case in softmax::cases()) {
                    let case = softmax::Case { kind: SoftmaxKind::Softmax, ..case };
                    holds(softmax::check::<_, $t>(&Reference, &case))?;
                }

                #[test]
                fn log_softmax(case in softmax::cases()) {
                    let case = softmax::Case { kind: SoftmaxKind::LogSoftmax, ..case };
                    holds(softmax::check::<_, $t>(&Reference, &case))?;
                }

                #[test]
                fn unary(case in elementwise::unary_cases()) {
                    holds(elementwise::check_unary::<_, $t>(&Reference, &case))?;
                }

                #[test]
                fn binary(case in elementwise::binary_cases()) {
                    holds(elementwise::check_binary::<_, $t>(&Reference, &case))?;
                }

                #[test]
                fn reduce(case in reduce::cases()) {
                    holds(reduce::check::<_, $t>(&Reference, &case))?;
                }

                #[test]
                fn top_k(case in top_k::cases()) {
                    holds(top_k::check::<_, $t>(&Reference, &case))?;
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(CAST_CASES))]

                #[test]
                fn cast_to_f64((x, y) in elementwise::cast_inputs()) {
                    holds(elementwise::check_cast::<_, $t, f64>(&Reference, &x, y))?;
                }

                #[test]
                fn cast_to_f32((x, y) in elementwise::cast_inputs()) {
                    holds(elementwise::check_cast::<_, $t, f32>(&Reference, &x, y))?;
                }

                #[test]
                fn cast_to_f16((x, y) in elementwise::cast_inputs()) {
                    holds(elementwise::check_cast::<_, $t, seqcore::f16>(&Reference, &x, y))?;
                }

                #[test]
                fn cast_to_bf16((x, y) in elementwise::cast_inputs()) {
                    holds(elementwise::check_cast::<_, $t, seqcore::bf16>(&Reference, &x, y))?;
                }
            }
        }
    )*};
}

kernel_properties! {
    in_f64: f64,
    in_f32: f32,
    in_f16: seqcore::f16,
    in_bf16: seqcore::bf16,
}
