//! What every GPU test file shares: the backend (or the reason there is none), uploads and
//! downloads.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub(crate) mod attention;
pub(crate) mod rng;

use std::sync::OnceLock;

use seq_accel_cuda::{CudaBackend, CudaMem};
use seqcore::{Allocate, Backend, Error};

/// The GPU backend, or `None` after printing (once) why every GPU test is skipped.
pub(crate) fn gpu() -> Option<&'static CudaBackend> {
    static B: OnceLock<Result<CudaBackend, Error>> = OnceLock::new();
    match B.get_or_init(|| CudaBackend::new(0)) {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::Unavailable {
                        backend: "cuda",
                        ..
                    }
                ),
                "construction must fail only as Unavailable, got {e:?}"
            );
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| println!("SKIPPED every GPU test (no usable GPU): {e}"));
            None
        }
    }
}

/// `v` uploaded to new device memory.
pub(crate) fn up<T: seqcore::Scalar>(b: &CudaBackend, v: &[T]) -> CudaMem<T> {
    let mut m = b.alloc::<T>(v.len()).unwrap();
    b.write(v, &mut m).unwrap();
    m
}

/// `m` downloaded.
pub(crate) fn down<T: seqcore::Scalar>(b: &CudaBackend, m: &CudaMem<T>) -> Vec<T> {
    let mut v = vec![T::default(); m.len()];
    b.read(m, &mut v).unwrap();
    v
}
