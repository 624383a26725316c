//! Hot loops compiled twice: for the baseline x86-64 the build targets (4 floats an instruction) and for AVX (8),
//! the AVX copy run only when the processor has it. An operator using it (today the depthwise convolution) keeps
//! its loop in one `#[inline(always)]` function and wraps it in a `#[target_feature(enable = "avx")]` one. The
//! crops' AVX2 path (`resample_avx2`) asks [`has_avx2`] the same way.

/// Whether this processor runs AVX.
pub fn has_avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether this processor runs AVX2.
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether this processor runs AVX2 and fused multiply-adds (FMA).
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}
