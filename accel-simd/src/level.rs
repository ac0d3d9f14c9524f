//! The instruction-set level a build was compiled for, and whether this CPU has it.
//!
//! `wide` picks its instructions when it is compiled (`cfg(target_feature)`), so the level is a
//! property of the build, chosen with `RUSTFLAGS` (see the README); [`Level::BUILT`] names it and
//! [`crate::Simd::new`] refuses a CPU that lacks it, so a v3 or v4 build never executes an illegal
//! instruction.

/// An x86-64 micro-architecture level (or a non-x86 build).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Level {
    /// Not x86-64: `wide` uses the target's own vectors (NEON, simd128) or scalar code.
    Portable,
    /// Baseline x86-64 (SSE2): `f32x8` as two 128-bit halves. The default build.
    X86_64,
    /// x86-64-v3: AVX2, FMA, F16C (`-C target-cpu=x86-64-v3`): 256-bit vectors and fused
    /// multiply-adds.
    X86_64V3,
    /// x86-64-v4: AVX-512 F/BW/CD/DQ/VL (`-C target-cpu=x86-64-v4`): 512-bit vectors.
    X86_64V4,
}

impl Level {
    /// The level this build was compiled for.
    pub const BUILT: Level = if cfg!(all(target_arch = "x86_64", target_feature = "avx512f")) {
        Level::X86_64V4
    } else if cfg!(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )) {
        Level::X86_64V3
    } else if cfg!(target_arch = "x86_64") {
        Level::X86_64
    } else {
        Level::Portable
    };

    /// The name used in reports and in `SEQ_SIMD_EXPECT_LEVEL`: `x86-64`, `x86-64-v3`,
    /// `x86-64-v4` or `portable`.
    pub const fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::X86_64 => "x86-64",
            Level::X86_64V3 => "x86-64-v3",
            Level::X86_64V4 => "x86-64-v4",
        }
    }

    /// Parses a name as written by [`Level::name`].
    pub fn from_name(name: &str) -> Option<Level> {
        [
            Level::Portable,
            Level::X86_64,
            Level::X86_64V3,
            Level::X86_64V4,
        ]
        .into_iter()
        .find(|l| l.name() == name)
    }

    /// Lanes of the build's f32 vector (16 with AVX-512, else 8).
    pub const fn f32_lanes(self) -> usize {
        crate::lanes::F32_LANES
    }

    /// Whether this CPU (and its operating system, which must save the wider registers) runs
    /// code of this level, asked of `cpuid` and `xgetbv` directly (so it works without std, and is
    /// not short-circuited by the build's own target features as `is_x86_feature_detected!` is).
    pub fn detected(self) -> bool {
        match self {
            Level::Portable | Level::X86_64 => true,
            Level::X86_64V3 => v3::get(),
            Level::X86_64V4 => v3::get() && v4::get(),
        }
    }
}

impl core::fmt::Display for Level {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod v3 {
    /// AVX2, FMA, F16C, BMI1/2 and an OS that saves the YMM registers (cpuid leaves 1 and 7,
    /// XCR0 bits 1-2).
    pub(super) fn get() -> bool {
        let l1 = super::cpuid(1);
        let l7 = super::cpuid(7);
        let (fma, osxsave, avx, f16c) = (1 << 12, 1 << 27, 1 << 28, 1 << 29);
        let (bmi1, avx2, bmi2) = (1 << 3, 1 << 5, 1 << 8);
        let ecx = fma | osxsave | avx | f16c;
        let ebx = bmi1 | avx2 | bmi2;
        l1.ecx & ecx == ecx && l7.ebx & ebx == ebx && super::xcr0() & 0b110 == 0b110
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod v4 {
    /// AVX-512 F, DQ, CD, BW, VL and an OS that saves the opmask and ZMM registers (XCR0 bits
    /// 5-7).
    pub(super) fn get() -> bool {
        let l7 = super::cpuid(7);
        let ebx = (1 << 16) | (1 << 17) | (1 << 28) | (1 << 30) | (1 << 31);
        l7.ebx & ebx == ebx && super::xcr0() & 0b1110_0110 == 0b1110_0110
    }
}

/// `cpuid` leaf `leaf`, sub-leaf 0.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[allow(unused_unsafe)] // `__cpuid_count` is a safe function in newer Rust
fn cpuid(leaf: u32) -> core::arch::x86_64::CpuidResult {
    // SAFETY: `cpuid` exists on every x86-64 CPU and only writes the four output registers.
    unsafe { core::arch::x86_64::__cpuid_count(leaf, 0) }
}

/// XCR0, the register states the OS saves; 0 when the OS has not enabled `xgetbv` (OSXSAVE).
#[cfg(all(target_arch = "x86_64", not(miri)))]
fn xcr0() -> u64 {
    if cpuid(1).ecx & (1 << 27) == 0 {
        return 0;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: `xgetbv` with ECX = 0 is valid when CPUID.1:ECX.OSXSAVE is set (checked above);
    // it reads XCR0 into EDX:EAX and touches no memory or flags.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

// Miri cannot run `cpuid`; it interprets whatever the build enables. Elsewhere the v3/v4 levels do
// not exist (their builds are x86-64 only).
#[cfg(any(not(target_arch = "x86_64"), miri))]
mod v3 {
    pub(super) fn get() -> bool {
        cfg!(miri)
    }
}
#[cfg(any(not(target_arch = "x86_64"), miri))]
mod v4 {
    pub(super) fn get() -> bool {
        cfg!(miri)
    }
}
