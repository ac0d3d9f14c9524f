//! The CUDA C sources of the kernels, compiled by NVRTC to a CUBIN once per process (per target
//! architecture) and loaded once per backend.

use std::collections::HashMap;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, OnceLock};
use std::vec::Vec;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;
use seqcore::Result;

use crate::error::{driver, intern, unavailable};

/// The kernel sources, in the order they are concatenated into one translation unit.
pub const SOURCES: &[(&str, &str)] = &[
    ("common.cuh", include_str!("kernels/common.cuh")),
    ("elementwise.cu", include_str!("kernels/elementwise.cu")),
    ("rows.cu", include_str!("kernels/rows.cu")),
    ("gemm.cu", include_str!("kernels/gemm.cu")),
    ("attention.cu", include_str!("kernels/attention.cu")),
    ("flash.cu", include_str!("kernels/flash.cu")),
    ("rope.cu", include_str!("kernels/rope.cu")),
    ("relative.cu", include_str!("kernels/relative.cu")),
    ("ssm.cu", include_str!("kernels/ssm.cu")),
    ("memory.cu", include_str!("kernels/memory.cu")),
    ("distill.cu", include_str!("kernels/distill.cu")),
];

/// The whole program: every source, in order.
pub fn program() -> String {
    let mut s = String::new();
    for &(name, text) in SOURCES {
        s.push_str("// ---- ");
        s.push_str(name);
        s.push_str(" ----\n");
        s.push_str(text);
        s.push('\n');
    }
    s
}

/// The real architecture to compile for (`sm_90` for compute capability 9.0), or `None` below
/// 7.5.
///
/// The kernels are compiled by NVRTC to a CUBIN for the device itself, not to PTX: PTX from a
/// newer NVRTC than the driver (for example NVRTC 13.2 from PyTorch's pip packages on a CUDA 13.0
/// driver, release 580) carries a PTX version the driver cannot JIT, while a CUBIN runs on any
/// driver of the same major version (CUDA's minor-version compatibility).
pub(crate) fn arch_for(major: i32, minor: i32) -> Option<String> {
    if major < 7 || (major == 7 && minor < 5) {
        return None;
    }
    Some(std::format!("sm_{major}{minor}"))
}

fn log_text(log: &[core::ffi::c_char]) -> String {
    let bytes: Vec<u8> = log
        .iter()
        .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compiles the program with NVRTC into a CUBIN for `arch` (`sm_75`, `sm_90`, ...), without
/// caching: what the backend (once per process and architecture) and the compile-only test call.
///
/// # Errors
/// NVRTC's error and log, as text.
pub fn compile(arch: &str) -> core::result::Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result, sys};
    let src = std::ffi::CString::new(program()).map_err(|e| e.to_string())?;
    let prog = result::create_program(&src, None)
        .map_err(|e| std::format!("NVRTC could not create the program: {e:?}"))?;
    let opts = [
        std::format!("--gpu-architecture={arch}"),
        // IEEE semantics everywhere: no flush of subnormals, correctly rounded division and
        // square root, as the reference.
        "--ftz=false".to_string(),
        "--prec-div=true".to_string(),
        "--prec-sqrt=true".to_string(),
        "--std=c++17".to_string(),
    ];
    // SAFETY: `prog` was just created and is destroyed once, below, after its last use.
    let out = unsafe {
        match result::compile_program(prog, &opts) {
            Err(e) => {
                let log = result::get_program_log(prog)
                    .map(|l| log_text(&l))
                    .unwrap_or_default();
                Err(std::format!(
                    "NVRTC failed to compile the kernels for {arch} ({e:?}): {log}"
                ))
            }
            Ok(()) => {
                let mut size = 0usize;
                match sys::nvrtcGetCUBINSize(prog, &mut size).result() {
                    Err(e) => Err(std::format!("NVRTC gave no CUBIN for {arch}: {e:?}")),
                    Ok(()) => {
                        let mut cubin = std::vec![0u8; size];
                        sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast())
                            .result()
                            .map(|()| cubin)
                            .map_err(|e| std::format!("NVRTC gave no CUBIN for {arch}: {e:?}"))
                    }
                }
            }
        }
    };
    // SAFETY: as above; nothing uses `prog` after this.
    let _ = unsafe { result::destroy_program(prog) };
    out
}

/// FNV-1a, 64 bits: names a cached CUBIN after what it was made from.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Where the CUBIN for `arch` is cached between processes: `$SEQ_CUDA_CACHE_DIR`, or
/// `seq-accel-cuda` in the system's temporary directory; the file is named after a hash of the
/// program, the architecture and NVRTC's version. `SEQ_CUDA_CACHE_DIR=off` disables the cache.
fn cache_file(arch: &str) -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("SEQ_CUDA_CACHE_DIR") {
        Some(d) if d == "off" => return None,
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join("seq-accel-cuda"),
    };
    let (mut major, mut minor) = (0i32, 0i32);
    // SAFETY: two valid out-pointers; NVRTC is loaded (checked before any compilation).
    let _ = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    let version = std::format!("{major}.{minor}");
    let h = fnv(&[program().as_bytes(), arch.as_bytes(), version.as_bytes()]);
    Some(dir.join(std::format!("kernels-{arch}-{h:016x}.cubin")))
}

/// The cached CUBIN for `arch`, or a fresh compilation (then cached; a cache that cannot be
/// written is only skipped).
fn cached_compile(arch: &str) -> core::result::Result<Vec<u8>, String> {
    let file = cache_file(arch);
    if let Some(f) = &file {
        if let Ok(bin) = std::fs::read(f) {
            if bin.starts_with(b"\x7fELF") {
                return Ok(bin);
            }
        }
    }
    let bin = compile(arch)?;
    if let Some(f) = &file {
        if let Some(dir) = f.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = f.with_extension(std::format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &bin).is_ok() {
            let _ = std::fs::rename(&tmp, f);
        }
    }
    Ok(bin)
}

/// The CUBIN of the program for `arch`, compiled at most once per process (and cached on disk
/// between processes, see [`cached_compile`]).
///
/// # Errors
/// `Unavailable` with NVRTC's text when compilation fails (kept for the process).
pub(crate) fn cubin(arch: &str) -> Result<Arc<Vec<u8>>> {
    type Cache = Mutex<HashMap<String, core::result::Result<Arc<Vec<u8>>, &'static str>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut c = match cache.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    let entry = c
        .entry(arch.to_string())
        .or_insert_with(|| cached_compile(arch).map(Arc::new).map_err(intern));
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
    pub(crate) fn load(ctx: &Arc<CudaContext>, arch: &str) -> Result<Kernels> {
        let bin = cubin(arch)?;
        let module = ctx
            .load_module(Ptx::from_binary(bin.as_ref().clone()))
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
        // rope.cu
        v.push(std::format!("rope_{t}"));

        // relative.cu
        v.push(std::format!("relative_attention_{t}"));

        // ssm.cu
        for k in ["ssm_scan", "ssm_vandermonde", "ssm_conv"] {
            v.push(std::format!("{k}_{t}"));
        }

        // memory.cu
        v.push(std::format!("linear_memory_{t}"));

        // distill.cu
        for k in [
            "kd_dense",
            "kd_sparse",
            "cross_entropy",
            "kd_count",
            "kd_total",
        ] {
            v.push(std::format!("{k}_{t}"));
        }
    }
    for t in ["f16", "bf16"] {
        for d in [64, 128] {
            v.push(std::format!("flash_{t}_d{d}"));
            v.push(std::format!("flash_{t}_rounded_d{d}"));
        }
    }
    v
}
