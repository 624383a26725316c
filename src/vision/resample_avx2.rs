//! The inside-the-image run of a crop's row, eight samples at a time with AVX2: each sample's four neighbours
//! fetched by four gathers (one 32-bit load per neighbour and sample, where the plain loop loads twelve bytes) and
//! blended as eight-wide vectors. Same arithmetic in the same order as the plain loop in [`super::geometry`], so
//! the outputs are identical; the tests there compare the two.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::geometry::RowOut;
#[cfg(target_arch = "x86_64")]
use super::wide::has_avx2;

/// A row of a crop: the image position of its sample `u` is `start + u * step`.
#[derive(Debug, Clone, Copy)]
pub struct RowWalk {
    pub start: (f32, f32),
    pub step: (f32, f32),
}

/// Samples `first..first + count` of `row` into `out` (each value times `scale`), eight at a time, from the RGB
/// image `raw` whose rows are `stride` bytes apart. Every sample must lie inside the image with its right and
/// lower neighbours (the caller's inside span). Returns how many samples it wrote, from `first` on: a multiple of
/// eight, fewer than `count` when the rest is not a whole eight or would read past the image's last bytes, and
/// none without AVX2; the caller samples the rest one by one.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn sample_inside(
    raw: &[u8],
    stride: usize,
    row: RowWalk,
    first: usize,
    count: usize,
    scale: f32,
    out: &mut RowOut<'_>,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // Safe: the processor has AVX2, and every load is checked against `raw`'s bounds inside.
        return unsafe { sample_inside_avx2(raw, stride, row, first, count, scale, out) };
    }
    0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sample_inside_avx2(
    raw: &[u8],
    stride: usize,
    row: RowWalk,
    first: usize,
    count: usize,
    scale: f32,
    out: &mut RowOut<'_>,
) -> usize {
    // Offsets are 32-bit lanes; the last gather of a sample reads 4 bytes from its lower-right neighbour, one byte
    // past that pixel, so no offset may come closer than `stride + 7` bytes to the end.
    let (Ok(stride_lanes), Ok(len)) = (i32::try_from(stride), i32::try_from(raw.len())) else { return 0 };
    let highest_top = len - stride_lanes - 7;
    let lanes = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
    let (start_x, start_y) = (_mm256_set1_ps(row.start.0), _mm256_set1_ps(row.start.1));
    let (step_x, step_y) = (_mm256_set1_ps(row.step.0), _mm256_set1_ps(row.step.1));
    let (three, stride_v, highest) =
        (_mm256_set1_epi32(3), _mm256_set1_epi32(stride_lanes), _mm256_set1_epi32(highest_top));
    let scale = _mm256_set1_ps(scale);
    let base = raw.as_ptr();
    let mut done = 0;
    while done + 8 <= count && first + done + 8 < 1 << 24 {
        let u = _mm256_add_ps(_mm256_set1_ps((first + done) as f32), lanes);
        let sx = _mm256_add_ps(start_x, _mm256_mul_ps(u, step_x));
        let sy = _mm256_add_ps(start_y, _mm256_mul_ps(u, step_y));
        let (x0, y0) = (_mm256_cvttps_epi32(sx), _mm256_cvttps_epi32(sy));
        let fx = _mm256_sub_ps(sx, _mm256_cvtepi32_ps(x0));
        let fy = _mm256_sub_ps(sy, _mm256_cvtepi32_ps(y0));
        let top = _mm256_add_epi32(_mm256_mullo_epi32(y0, stride_v), _mm256_mullo_epi32(x0, three));
        let outside =
            _mm256_or_si256(_mm256_cmpgt_epi32(top, highest), _mm256_cmpgt_epi32(_mm256_setzero_si256(), top));
        if _mm256_movemask_epi8(outside) != 0 {
            break;
        }
        // Each gather reads bytes `offset..offset + 4`, checked above to lie inside `raw`.
        let upper_left = _mm256_i32gather_epi32::<1>(base as *const i32, top);
        let upper_right = _mm256_i32gather_epi32::<1>(base.add(3) as *const i32, top);
        let lower_left = _mm256_i32gather_epi32::<1>(base.add(stride) as *const i32, top);
        let lower_right = _mm256_i32gather_epi32::<1>(base.add(stride + 3) as *const i32, top);
        let (a, b, c, d) = (channels(upper_left), channels(upper_right), channels(lower_left), channels(lower_right));
        let mut channels = [[0.0f32; 8]; 3];
        for k in 0..3 {
            let upper = _mm256_add_ps(a[k], _mm256_mul_ps(_mm256_sub_ps(b[k], a[k]), fx));
            let lower = _mm256_add_ps(c[k], _mm256_mul_ps(_mm256_sub_ps(d[k], c[k]), fx));
            let value = _mm256_mul_ps(_mm256_add_ps(upper, _mm256_mul_ps(_mm256_sub_ps(lower, upper), fy)), scale);
            _mm256_storeu_ps(channels[k].as_mut_ptr(), value);
        }
        out.put_eight(first + done, &channels);
        done += 8;
    }
    done
}

/// The red, green and blue bytes of eight gathered pixels (the low three bytes of each lane) as floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn channels(pixels: __m256i) -> [__m256; 3] {
    let byte = _mm256_set1_epi32(0xff);
    [
        _mm256_cvtepi32_ps(_mm256_and_si256(pixels, byte)),
        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<8>(pixels), byte)),
        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<16>(pixels), byte)),
    ]
}
