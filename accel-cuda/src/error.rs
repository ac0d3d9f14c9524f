//! CUDA failures as [`seqcore::Error`]s.
//!
//! `seqcore::Error` is `Copy` and holds `&'static str`s. A driver error keeps its CUDA text
//! (`"CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered"`): the driver's own
//! name and description strings are static, and the joined text is made once per distinct error
//! code and kept for the life of the process (a bounded table, not a leak per call). An NVRTC
//! compilation log is kept the same way, once per process (the sources are compiled once). Every
//! such text is also printed to standard error when first seen.

use std::collections::HashMap;
use std::string::String;
use std::sync::{Mutex, OnceLock};

use cudarc::driver::DriverError;
use seqcore::Error;

/// The backend's name in errors and reports.
pub(crate) const BACKEND: &str = "cuda";

/// `Error::Unavailable` for `cuda` with `reason`.
pub(crate) fn unavailable(reason: &'static str) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        reason,
    }
}

/// A static copy of `text`, made once per distinct text (the table only grows with new texts, of
/// which there are finitely many: one per CUDA error code, one compile log).
pub(crate) fn intern(text: String) -> &'static str {
    static TABLE: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut t = match table.lock() {
        Ok(t) => t,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(s) = t.get(&text) {
        return s;
    }
    std::eprintln!("seq-accel-cuda: {text}");
    let s: &'static str = Box::leak(text.clone().into_boxed_str());
    t.insert(text, s);
    s
}

/// A driver error with its CUDA name and description.
pub(crate) fn driver(e: DriverError) -> Error {
    let name = e
        .error_name()
        .ok()
        .and_then(|c| c.to_str().ok())
        .unwrap_or("CUDA_ERROR_UNKNOWN");
    let desc = e
        .error_string()
        .ok()
        .and_then(|c| c.to_str().ok())
        .unwrap_or("");
    unavailable(intern(std::format!("{name}: {desc}")))
}
