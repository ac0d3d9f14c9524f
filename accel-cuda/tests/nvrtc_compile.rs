//! Compiles every kernel source with NVRTC, to a CUBIN as the backend does, for the oldest and a
//! current architecture the backend targets, without a GPU (NVRTC needs none): syntax and type
//! errors in the CUDA C show here, not on the GPU. Skips with a printed line when NVRTC cannot be
//! loaded (`source accel-cuda/scripts/cuda-libs.sh` finds it).

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
    for arch in ["sm_75", "sm_90"] {
        let cubin = match module::compile(arch) {
            Ok(c) => c,
            Err(log) => panic!("{arch}: {log}"),
        };
        assert!(cubin.starts_with(b"\x7fELF"), "{arch}: not an ELF image");
        for name in module::kernel_names() {
            // A kernel's name is a NUL-terminated symbol in the ELF string table.
            let sym = format!("\0{name}\0");
            assert!(
                cubin.windows(sym.len()).any(|w| w == sym.as_bytes()),
                "{arch}: no kernel `{name}` in the CUBIN"
            );
        }
        println!(
            "{arch}: {} bytes of CUBIN, every kernel defined",
            cubin.len()
        );
    }
}
