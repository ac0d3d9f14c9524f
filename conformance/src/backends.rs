//! The backends compiled into this build, constructed by name so that one process can compare
//! them side by side.

use std::sync::OnceLock;

use seq_accel_cuda::CudaBackend;
use seq_accel_simd::Simd;
use seqcore::{Allocate, Reference};

/// The SIMD backend at the build's level, or why this CPU cannot run it.
fn simd() -> Result<Simd, String> {
    Simd::new().map_err(|e| e.to_string())
}

/// The CUDA backend on device 0, made once per process (its kernels compile once), or why not.
fn cuda() -> &'static Result<CudaBackend, String> {
    static CUDA: OnceLock<Result<CudaBackend, String>> = OnceLock::new();
    CUDA.get_or_init(|| {
        CudaBackend::new(0).map_err(|e| match e {
            seqcore::Error::Unavailable { reason, .. } => reason.to_string(),
            other => other.to_string(),
        })
    })
}

/// A compiled-in backend and whether it can run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    /// The name `--backend` takes.
    pub name: &'static str,
    /// `Ok` when it can run on this machine, else why not.
    pub status: Result<(), String>,
}

/// Something to do with a backend, whatever its type.
pub trait Visit {
    /// The result.
    type Out;
    /// Does it.
    fn visit<B: Allocate>(&mut self, backend: &B) -> Self::Out;
}

/// Every backend compiled in, available or not, in report order.
pub fn compiled() -> Vec<Available> {
    vec![
        Available {
            name: "reference",
            status: Ok(()),
        },
        Available {
            name: "simd",
            status: simd().map(|_| ()),
        },
        Available {
            name: "cuda",
            status: cuda().as_ref().map(|_| ()).map_err(Clone::clone),
        },
    ]
}

/// Calls `v` with the backend called `name`.
///
/// # Errors
/// The reason, when no backend has that name or it cannot run here.
pub fn with<V: Visit>(name: &str, v: &mut V) -> Result<V::Out, String> {
    match name {
        "reference" => Ok(v.visit(&Reference)),
        "simd" => match simd() {
            Ok(b) => Ok(v.visit(&b)),
            Err(why) => Err(format!("backend `simd` is unavailable: {why}")),
        },
        "cuda" => match cuda() {
            Ok(b) => Ok(v.visit(b)),
            Err(why) => Err(format!("backend `cuda` is unavailable: {why}")),
        },
        _ => Err(format!(
            "no backend `{name}` in this build (compiled in: {})",
            compiled()
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The names of the backends that can run here (all of them, or the one asked for).
///
/// # Errors
/// When `only` names no compiled-in backend, or one that cannot run here.
pub fn selected(only: Option<&str>) -> Result<Vec<&'static str>, String> {
    let all = compiled();
    match only {
        None => Ok(all
            .iter()
            .filter(|a| a.status.is_ok())
            .map(|a| a.name)
            .collect()),
        Some(n) => match all.iter().find(|a| a.name == n) {
            Some(Available {
                name,
                status: Ok(()),
            }) => Ok(vec![*name]),
            Some(Available {
                name,
                status: Err(why),
            }) => Err(format!("backend `{name}` is unavailable: {why}")),
            None => Err(format!(
                "no backend `{n}` in this build (compiled in: {})",
                all.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
            )),
        },
    }
}
