//! Compiles every kernel source with NVRTC for each architecture the backend targets, without a
//! GPU (NVRTC needs none): syntax and type errors in the CUDA C show here, not on the GPU.
//! Skips with a printed line when NVRTC cannot be loaded (see `scripts/nvrtc-env.sh`).

use seq_accel_cuda::module;

fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen NVRTC under its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

#[test]
fn every_kernel_compiles_and_is_defined() {
    if !nvrtc_present() {
        println!(
            "SKIPPED every_kernel_compiles_and_is_defined: NVRTC (libnvrtc.so) not found on LD_LIBRARY_PATH"
        );
        return;
    }
    for arch in ["compute_75", "compute_90"] {
        let ptx = match module::compile(arch) {
            Ok(p) => p,
            Err(log) => panic!("{arch}: {log}"),
        };
        for name in module::kernel_names() {
            let entry = format!(".entry {name}(");
            assert!(
                ptx.contains(&entry),
                "{arch}: no kernel `{name}` in the PTX"
            );
        }
        println!("{arch}: {} bytes of PTX, every kernel defined", ptx.len());
    }
}
