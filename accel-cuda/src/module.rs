//! The CUDA C sources of the kernels, compiled by NVRTC once per process (per target
//! architecture) and loaded once per backend.

use std::collections::HashMap;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, OnceLock};
use std::vec::Vec;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};
use seqcore::Result;

use crate::error::{driver, intern, unavailable};

/// The kernel sources, in the order they are concatenated into one translation unit.
pub const SOURCES: [(&str, &str); 6] = [
    ("common.cuh", include_str!("kernels/common.cuh")),
    ("elementwise.cu", include_str!("kernels/elementwise.cu")),
    ("rows.cu", include_str!("kernels/rows.cu")),
    ("gemm.cu", include_str!("kernels/gemm.cu")),
    ("attention.cu", include_str!("kernels/attention.cu")),
    ("flash.cu", include_str!("kernels/flash.cu")),
];

/// The whole program: every source, in order.
pub fn program() -> String {
    let mut s = String::new();
    for (name, text) in SOURCES {
        s.push_str("// ---- ");
        s.push_str(name);
        s.push_str(" ----\n");
        s.push_str(text);
        s.push('\n');
    }
    s
}

/// The virtual architecture to compile for, from the device's compute capability: the PTX is
/// JIT-compiled by the driver for the actual device. Below 7.5 the backend is unavailable.
pub(crate) fn arch_for(major: i32, minor: i32) -> Option<&'static str> {
    match (major, minor) {
        (m, _) if m >= 10 => Some("compute_90"),
        (9, _) => Some("compute_90"),
        (8, n) if n >= 9 => Some("compute_89"),
        (8, _) => Some("compute_80"),
        (7, n) if n >= 5 => Some("compute_75"),
        _ => None,
    }
}

/// Compiles the program for `arch` with NVRTC, without caching: what [`ptx`] and the
/// compile-only test call.
///
/// # Errors
/// The NVRTC error and its log, as text.
pub fn compile(arch: &'static str) -> core::result::Result<String, String> {
    let opts = CompileOptions {
        arch: Some(arch),
        // IEEE semantics everywhere: no flush of subnormals, correctly rounded division and
        // square root, as the reference.
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        options: std::vec!["--std=c++17".to_string()],
        ..CompileOptions::default()
    };
    match cudarc::nvrtc::compile_ptx_with_opts(program(), opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(CompileError::CompileError { nvrtc, log, .. }) => Err(std::format!(
            "NVRTC failed to compile the kernels ({nvrtc:?}): {}",
            log.to_string_lossy()
        )),
        Err(e) => Err(std::format!("NVRTC error: {e:?}")),
    }
}

/// The PTX of the program for `arch`, compiled at most once per process.
///
/// # Errors
/// `Unavailable` with NVRTC's text when compilation fails (kept for the process).
pub(crate) fn ptx(arch: &'static str) -> Result<Arc<String>> {
    type Cache = Mutex<HashMap<&'static str, core::result::Result<Arc<String>, &'static str>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut c = match cache.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    let entry = c
        .entry(arch)
        .or_insert_with(|| compile(arch).map(Arc::new).map_err(intern));
    entry.clone().map_err(unavailable)
}

/// The kernels loaded into one context, with their functions looked up once each.
#[derive(Debug)]
pub(crate) struct Kernels {
    module: Arc<CudaModule>,
    functions: Mutex<HashMap<String, CudaFunction>>,
}

impl Kernels {
    /// Loads the program (compiled for `arch`) into `ctx`.
    ///
    /// # Errors
    /// NVRTC or driver errors, as `Unavailable` with their text.
    pub(crate) fn load(ctx: &Arc<CudaContext>, arch: &'static str) -> Result<Kernels> {
        let src = ptx(arch)?;
        let module = ctx
            .load_module(Ptx::from_src(src.as_str()))
            .map_err(driver)?;
        Ok(Kernels {
            module,
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// The kernel called `name`.
    ///
    /// # Errors
    /// The driver's error when the module has no such function.
    pub(crate) fn get(&self, name: &str) -> Result<CudaFunction> {
        let mut f = match self.functions.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        if let Some(func) = f.get(name) {
            return Ok(func.clone());
        }
        let func = self.module.load_function(name).map_err(driver)?;
        f.insert(name.to_string(), func.clone());
        Ok(func)
    }
}

/// Names of every kernel the program must define (checked by the compile-only test against the
/// PTX, so a typo in a launch name is caught without a GPU).
pub fn kernel_names() -> Vec<String> {
    let types = ["f32", "f64", "f16", "bf16"];
    let mut v = Vec::new();
    for t in types {
        for k in [
            "unary",
            "binary",
            "reduce",
            "softmax",
            "top_k",
            "gemm",
            "attention",
            "attention_merge",
        ] {
            v.push(std::format!("{k}_{t}"));
        }
        for d in types {
            v.push(std::format!("cast_{t}_{d}"));
        }
    }
    for t in ["f16", "bf16"] {
        for d in [64, 128] {
            v.push(std::format!("flash_{t}_d{d}"));
        }
    }
    v
}
