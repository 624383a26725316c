//! Boxes, rotated crops and bilinear resampling: the one place where image pixels become model inputs.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::resample_avx2::{self, RowWalk};
pub use crate::domain::BoundingBox;
use crate::domain::TrackingHint;

/// A rectangle in the image, possibly rotated, that a model sees stretched onto its whole input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CropRegion {
    pub center_x: f32,
    pub center_y: f32,
    pub width: f32,
    pub height: f32,
    /// Radians, clockwise in image coordinates (y down): the direction of the crop's x axis.
    pub angle: f32,
}

impl From<CropRegion> for TrackingHint {
    fn from(r: CropRegion) -> Self {
        TrackingHint([r.center_x, r.center_y, r.width, r.height, r.angle])
    }
}

impl From<TrackingHint> for CropRegion {
    fn from(TrackingHint([center_x, center_y, width, height, angle]): TrackingHint) -> Self {
        CropRegion { center_x, center_y, width, height, angle }
    }
}

impl CropRegion {
    /// An unrotated region.
    pub fn axis_aligned(bbox: &BoundingBox) -> Self {
        let (center_x, center_y) = bbox.center();
        Self { center_x, center_y, width: bbox.width, height: bbox.height, angle: 0.0 }
    }

    /// Maps a point given in the pixels of an `out_w` x `out_h` crop back to image pixels.
    pub fn to_image(&self, u: f32, v: f32, out_w: usize, out_h: usize) -> (f32, f32) {
        let dx = (u / out_w as f32 - 0.5) * self.width;
        let dy = (v / out_h as f32 - 0.5) * self.height;
        let (sin, cos) = self.angle.sin_cos();
        (self.center_x + dx * cos - dy * sin, self.center_y + dx * sin + dy * cos)
    }
}

/// What the sampler reads outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// Black, as letterboxing pads.
    Zero,
    /// The nearest edge pixel, as OpenCV's resize does.
    Replicate,
}

/// Resamples `region` of `image` onto an `out_w` x `out_h` grid with bilinear interpolation (pixel centres at
/// half-integers, as OpenCV and MediaPipe do). Returns row-major RGB values in 0..=255.
pub fn resample(image: &RgbImage, region: &CropRegion, out_w: usize, out_h: usize, border: Border) -> Vec<[f32; 3]> {
    let mut pixels = vec![[0.0; 3]; out_w * out_h];
    resample_into(image, region, out_w, out_h, border, 1.0, Layout::Interleaved, pixels.as_flattened_mut());
    pixels
}

/// How a crop's values are laid out in its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// RGB triples, row by row (a channels-last, NHWC model input).
    Interleaved,
    /// A red plane, then a green one, then a blue one, each row by row (a channels-first, NCHW model input).
    Planar,
}

/// [`resample`] written straight into `out` (`out_w * out_h * 3` values laid out as `layout` says), each value
/// times `scale`: a model's input without a copy in between.
#[allow(clippy::too_many_arguments)]
pub fn resample_into(
    image: &RgbImage,
    region: &CropRegion,
    out_w: usize,
    out_h: usize,
    border: Border,
    scale: f32,
    layout: Layout,
    out: &mut [f32],
) {
    resample_rows(image, region, (out_w, out_h), border, scale, layout, out, true);
}

/// One output row of a crop, in its layout.
pub enum RowOut<'a> {
    /// The row's RGB triples.
    Interleaved(&'a mut [f32]),
    /// The row in each of the three planes.
    Planar([&'a mut [f32]; 3]),
}

impl RowOut<'_> {
    /// Writes sample `u`.
    #[inline(always)]
    pub fn put(&mut self, u: usize, rgb: [f32; 3]) {
        match self {
            RowOut::Interleaved(row) => row[u * 3..u * 3 + 3].copy_from_slice(&rgb),
            RowOut::Planar(planes) => {
                for (plane, value) in planes.iter_mut().zip(rgb) {
                    plane[u] = value;
                }
            }
        }
    }

    /// Writes the eight samples from `u` on, given as one run of eight values per channel.
    #[inline(always)]
    pub fn put_eight(&mut self, u: usize, channels: &[[f32; 8]; 3]) {
        match self {
            RowOut::Interleaved(row) => {
                for (i, rgb) in row[u * 3..(u + 8) * 3].chunks_exact_mut(3).enumerate() {
                    rgb.copy_from_slice(&[channels[0][i], channels[1][i], channels[2][i]]);
                }
            }
            RowOut::Planar(planes) => {
                for (plane, values) in planes.iter_mut().zip(channels) {
                    plane[u..u + 8].copy_from_slice(values);
                }
            }
        }
    }
}

/// [`resample_into`]; with `wide`, the inside runs of rows are sampled eight at a time when the processor has AVX2.
#[allow(clippy::too_many_arguments)]
fn resample_rows(
    image: &RgbImage,
    region: &CropRegion,
    (out_w, out_h): (usize, usize),
    border: Border,
    scale: f32,
    layout: Layout,
    out: &mut [f32],
    wide: bool,
) {
    assert_eq!(out.len(), out_w * out_h * 3, "resample_into: output of the wrong size");
    let (width, height) = (image.width() as i64, image.height() as i64);
    let raw = image.as_raw();
    let stride = width as usize * 3;
    let pixel = |x: i64, y: i64| -> [f32; 3] {
        let (x, y) = match border {
            Border::Zero if x < 0 || y < 0 || x >= width || y >= height => return [0.0; 3],
            Border::Zero => (x, y),
            Border::Replicate => (x.clamp(0, width - 1), y.clamp(0, height - 1)),
        };
        let i = y as usize * stride + x as usize * 3;
        [f32::from(raw[i]), f32::from(raw[i + 1]), f32::from(raw[i + 2])]
    };
    // The crop is an affine map: the image position of crop pixel (u, v) is `origin + u * step_u + v * step_v`,
    // computed once here rather than per pixel (this runs for every pixel of every model input).
    let (sin, cos) = region.angle.sin_cos();
    let (scale_u, scale_v) = (region.width / out_w as f32, region.height / out_h as f32);
    let (step_u, step_v) = ((scale_u * cos, scale_u * sin), (-scale_v * sin, scale_v * cos));
    let (first_x, first_y) = region.to_image(0.5, 0.5, out_w, out_h);
    let origin = (first_x - 0.5, first_y - 0.5);
    // Safely inside: the pixel right of and below every sample exists (the margin absorbs rounding along the row).
    let limits = ((width - 1) as f32 - 0.01, (height - 1) as f32 - 0.01);
    let inside = |(x, y): (f32, f32)| x >= 0.0 && y >= 0.0 && x < limits.0 && y < limits.1;
    for (v, mut row_out) in rows(out, layout, out_w, out_h).enumerate() {
        let row = (origin.0 + v as f32 * step_v.0, origin.1 + v as f32 * step_v.1);
        let sample = |u: usize| (row.0 + u as f32 * step_u.0, row.1 + u as f32 * step_u.1);
        let span = inside_span(row, step_u, out_w, limits, |u| inside(sample(u)));
        // Inside the image, as nearly every sample is: no border rule to apply, and the four neighbours fetched
        // with two checked slices. Non-negative there, so truncation is the floor (and no libm call on a baseline
        // x86-64 build).
        let inner = |u: usize| {
            let (sx, sy) = sample(u);
            let (x0, y0) = (sx as usize, sy as usize);
            let top = y0 * stride + x0 * 3;
            let (upper, lower) = (&raw[top..top + 6], &raw[top + stride..top + stride + 6]);
            let at = |pair: &[u8], i: usize| [f32::from(pair[i]), f32::from(pair[i + 1]), f32::from(pair[i + 2])];
            let corners = [at(upper, 0), at(upper, 3), at(lower, 0), at(lower, 3)];
            blend(corners, sx - x0 as f32, sy - y0 as f32, scale)
        };
        let outer = |u: usize| {
            let (sx, sy) = sample(u);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let corners = [pixel(x0, y0), pixel(x0 + 1, y0), pixel(x0, y0 + 1), pixel(x0 + 1, y0 + 1)];
            blend(corners, fx, fy, scale)
        };
        for u in (0..span.start).chain(span.end..out_w) {
            row_out.put(u, outer(u));
        }
        let walk = RowWalk { start: row, step: step_u };
        let count = span.len();
        let wide_done = if wide {
            resample_avx2::sample_inside(raw, stride, walk, span.start, count, scale, &mut row_out)
        } else {
            0
        };
        for u in span.start + wide_done..span.end {
            row_out.put(u, inner(u));
        }
    }
}

/// The rows of a crop's output, in its layout.
fn rows(out: &mut [f32], layout: Layout, out_w: usize, out_h: usize) -> Box<dyn Iterator<Item = RowOut<'_>> + '_> {
    match layout {
        Layout::Interleaved => Box::new(out.chunks_exact_mut(out_w * 3).map(RowOut::Interleaved)),
        Layout::Planar => {
            let (red, rest) = out.split_at_mut(out_w * out_h);
            let (green, blue) = rest.split_at_mut(out_w * out_h);
            let planes =
                red.chunks_exact_mut(out_w).zip(green.chunks_exact_mut(out_w)).zip(blue.chunks_exact_mut(out_w));
            Box::new(planes.map(|((red, green), blue)| RowOut::Planar([red, green, blue])))
        }
    }
}

/// Bilinear blend of a sample's four neighbours (top left, top right, bottom left, bottom right) at offsets
/// `fx`, `fy` from the first, times `scale`.
#[inline(always)]
fn blend([a, b, c, d]: [[f32; 3]; 4], fx: f32, fy: f32, scale: f32) -> [f32; 3] {
    std::array::from_fn(|k| {
        let upper = a[k] + (b[k] - a[k]) * fx;
        let lower = c[k] + (d[k] - c[k]) * fx;
        (upper + (lower - upper) * fy) * scale
    })
}

/// The samples `u` (of `count`) of a row that starts at `start` and moves `step` a sample which lie inside
/// `0..limits` on both axes: one run, as a row is a straight line. Solved per axis, then its ends checked with
/// `inside` itself so rounding cannot let a sample in that `inside` refuses.
fn inside_span(
    start: (f32, f32),
    step: (f32, f32),
    count: usize,
    limits: (f32, f32),
    inside: impl Fn(usize) -> bool,
) -> std::ops::Range<usize> {
    let (mut low, mut high) = (0.0f32, count as f32 - 1.0);
    for (origin, step, limit) in [(start.0, step.0, limits.0), (start.1, step.1, limits.1)] {
        if step == 0.0 {
            if !(0.0..limit).contains(&origin) {
                return 0..0;
            }
            continue;
        }
        let (a, b) = ((0.0 - origin) / step, (limit - origin) / step);
        low = low.max(a.min(b));
        high = high.min(a.max(b));
    }
    if !(low <= high) {
        return 0..0;
    }
    let (mut first, mut last) = (low.ceil() as usize, (high.floor() as usize).min(count - 1));
    while first <= last && !inside(first) {
        first += 1;
    }
    while last >= first && !inside(last) {
        match last.checked_sub(1) {
            Some(before) => last = before,
            None => return 0..0,
        }
    }
    if first > last {
        return 0..0;
    }
    first..last + 1
}

/// Rec. 601 luma of an RGB triple.
pub fn luma(rgb: [f32; 3]) -> f32 {
    0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_crop_reproduces_pixels() {
        let image = RgbImage::from_fn(8, 6, |x, y| image::Rgb([(x * 10) as u8, (y * 20) as u8, 7]));
        let region = CropRegion { center_x: 4.0, center_y: 3.0, width: 8.0, height: 6.0, angle: 0.0 };
        let out = resample(&image, &region, 8, 6, Border::Zero);
        assert_eq!(out[6 * 8 - 1], [70.0, 100.0, 7.0]);
        assert_eq!(out[9], [10.0, 20.0, 7.0]);
    }

    #[test]
    fn a_rotated_crop_inside_the_image_interpolates_exactly() {
        // On an image linear in x and y, bilinear interpolation gives the linear function itself.
        let image = RgbImage::from_fn(60, 40, |x, y| image::Rgb([(2 * x + 3 * y) as u8, (x + y) as u8, y as u8]));
        let region = CropRegion { center_x: 30.0, center_y: 20.0, width: 20.0, height: 16.0, angle: 0.3 };
        let out = resample(&image, &region, 10, 8, Border::Zero);
        for v in 0..8 {
            for u in 0..10 {
                let (x, y) = region.to_image(u as f32 + 0.5, v as f32 + 0.5, 10, 8);
                let (x, y) = (x - 0.5, y - 0.5);
                let want = [2.0 * x + 3.0 * y, x + y, y];
                let got = out[v * 10 + u];
                assert!((0..3).all(|k| (got[k] - want[k]).abs() < 1e-3), "({u}, {v}): {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn the_avx2_path_samples_exactly_as_the_plain_one() {
        if !crate::vision::wide::has_avx2() {
            eprintln!("skipped: this processor has no AVX2");
            return;
        }
        // Bytes that vary in every channel, crops inside, over edges and corners, turned, and reaching the image's
        // last pixel (where a gather could read past the end).
        let image = RgbImage::from_fn(97, 61, |x, y| image::Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (x ^ y) as u8]));
        for (center_x, center_y, side, angle) in
            [(48.0, 30.0, 40.0, 0.0), (50.0, 31.0, 58.0, 0.31), (90.0, 55.0, 30.0, -0.2), (20.0, 10.0, 90.0, 1.1)]
        {
            let region = CropRegion { center_x, center_y, width: side, height: side * 0.8, angle };
            let sizes = [(64, 48), (33, 17), (8, 8)];
            let layouts = [Layout::Interleaved, Layout::Planar];
            for ((out_w, out_h), layout) in sizes.into_iter().flat_map(|size| layouts.map(|layout| (size, layout))) {
                let mut plain = vec![0.0; out_w * out_h * 3];
                let mut wide = vec![0.0; out_w * out_h * 3];
                let crop = |out: &mut [f32], wide| {
                    resample_rows(&image, &region, (out_w, out_h), Border::Replicate, 1.0 / 255.0, layout, out, wide)
                };
                crop(&mut plain, false);
                crop(&mut wide, true);
                assert!(plain == wide, "{region:?} at {out_w}x{out_h}");
            }
        }
    }

    #[test]
    fn planar_crops_hold_the_interleaved_values_plane_by_plane() {
        let image = RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8]));
        // Partly over the edge, so both the inside run and the border samples are written.
        let region = CropRegion { center_x: 35.0, center_y: 12.0, width: 24.0, height: 20.0, angle: 0.4 };
        let (mut interleaved, mut planar) = (vec![0.0; 12 * 10 * 3], vec![0.0; 12 * 10 * 3]);
        resample_into(&image, &region, 12, 10, Border::Replicate, 0.5, Layout::Interleaved, &mut interleaved);
        resample_into(&image, &region, 12, 10, Border::Replicate, 0.5, Layout::Planar, &mut planar);
        for (i, rgb) in interleaved.chunks_exact(3).enumerate() {
            assert_eq!([planar[i], planar[120 + i], planar[240 + i]], [rgb[0], rgb[1], rgb[2]], "sample {i}");
        }
    }

    #[test]
    fn a_crop_over_the_edge_samples_as_plain_bilinear_does() {
        let image = RgbImage::from_fn(50, 30, |x, y| image::Rgb([(x * 5) as u8, (y * 8) as u8, ((x * y) % 256) as u8]));
        // Plain bilinear interpolation, one sample at a time, the border rule applied to every neighbour.
        let by_hand = |x: f32, y: f32, border: Border| -> [f32; 3] {
            let (x0, y0) = (x.floor() as i64, y.floor() as i64);
            let (fx, fy) = (x - x0 as f32, y - y0 as f32);
            let at = |x: i64, y: i64| match border {
                Border::Zero if x < 0 || y < 0 || x >= 50 || y >= 30 => [0.0; 3],
                _ => image.get_pixel(x.clamp(0, 49) as u32, y.clamp(0, 29) as u32).0.map(f32::from),
            };
            let (a, b, c, d) = (at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1));
            std::array::from_fn(|k| {
                let (upper, lower) = (a[k] + (b[k] - a[k]) * fx, c[k] + (d[k] - c[k]) * fx);
                upper + (lower - upper) * fy
            })
        };
        // Over the left edge, over a corner, and turned so rows cross the edge at a slant.
        for (center_x, center_y, angle) in [(3.0, 15.0, 0.0), (48.0, 28.0, 0.2), (10.0, 5.0, -0.7)] {
            let region = CropRegion { center_x, center_y, width: 24.0, height: 20.0, angle };
            for border in [Border::Zero, Border::Replicate] {
                let out = resample(&image, &region, 16, 12, border);
                for v in 0..12 {
                    for u in 0..16 {
                        let (x, y) = region.to_image(u as f32 + 0.5, v as f32 + 0.5, 16, 12);
                        let (got, want) = (out[v * 16 + u], by_hand(x - 0.5, y - 0.5, border));
                        assert!(
                            (0..3).all(|k| (got[k] - want[k]).abs() < 0.05),
                            "({u}, {v}) {border:?}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rotated_crop_maps_points_back() {
        let region = CropRegion {
            center_x: 100.0,
            center_y: 50.0,
            width: 20.0,
            height: 20.0,
            angle: std::f32::consts::FRAC_PI_2,
        };
        // The crop's right edge midpoint lies below the centre when the crop is turned a quarter clockwise.
        let (x, y) = region.to_image(256.0, 128.0, 256, 256);
        assert!((x - 100.0).abs() < 1e-4 && (y - 60.0).abs() < 1e-4);
    }

    #[test]
    fn zero_border_pads_black_and_replicate_repeats_edges() {
        let image = RgbImage::from_pixel(4, 4, image::Rgb([200, 100, 50]));
        let region = CropRegion { center_x: 2.0, center_y: 2.0, width: 16.0, height: 16.0, angle: 0.0 };
        assert_eq!(resample(&image, &region, 4, 4, Border::Zero)[0], [0.0; 3]);
        assert_eq!(resample(&image, &region, 4, 4, Border::Replicate)[0], [200.0, 100.0, 50.0]);
    }

    #[test]
    fn iou_of_boxes() {
        let a = BoundingBox { x: 0.0, y: 0.0, width: 10.0, height: 10.0 };
        let b = BoundingBox { x: 5.0, y: 0.0, width: 10.0, height: 10.0 };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BoundingBox { x: 20.0, ..a }), 0.0);
    }
}
