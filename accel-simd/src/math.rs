//! Vectorised elementary functions on the build's vectors, each with its error bound in ULPs
//! against the correctly rounded result (documented per function and tested against `libm`).
//!
//! Kernels call these through [`Lanes`], generic over f32 and f64.

use crate::lanes::{Lanes, Vector};

/// `e^x` lane by lane. Stub: `libm` per lane until the vectorised polynomial lands.
#[inline]
pub fn exp<A: Lanes>(x: A::V) -> A::V {
    x.map(A::exp)
}

/// `ln x` lane by lane. Stub: `libm` per lane until the vectorised polynomial lands.
#[inline]
pub fn ln<A: Lanes>(x: A::V) -> A::V {
    x.map(A::ln)
}
