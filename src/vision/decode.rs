//! Frame bytes to an upright RGB image, within fixed bounds on bytes, pixels and memory.

use std::io::Cursor;
use std::sync::OnceLock;

use image::error::{LimitErrorKind, UnsupportedErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use super::memory::{MemoryBudget, Reservation};

/// Bounds every decoded frame must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Smallest accepted width and height in pixels.
    pub min_side: u32,
    /// Largest accepted width and height in pixels.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_bytes: 5 * 1024 * 1024, min_side: 64, max_side: 4096 }
    }
}

/// Why a frame could not be turned into an image. Each kind of bad input has its own variant.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("the image is empty")]
    Empty,
    /// More bytes than [`DecodeLimits::max_bytes`].
    #[error("the image is {size} bytes; at most {limit} are accepted")]
    TooLarge { size: usize, limit: usize },
    /// The bytes are no image format we recognise.
    #[error("the bytes are not a recognised image format; send JPEG or PNG")]
    UnrecognisedFormat,
    /// A real image format, but not JPEG or PNG.
    #[error("{0} images are not accepted; send JPEG or PNG")]
    UnsupportedFormat(String),
    /// Width or height outside the accepted range.
    #[error("the image is {width}x{height} pixels; each side must be between {min} and {max}")]
    DimensionsOutOfBounds { width: u32, height: u32, min: u32, max: u32 },
    /// Decoding would need more memory than allowed (a decompression bomb, say).
    #[error("decoding the image would need more memory than allowed")]
    MemoryLimit,
    /// JPEG or PNG, but broken: truncated, corrupt or internally inconsistent.
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
}

impl DecodeError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty_image",
            DecodeError::TooLarge { .. } => "image_too_large",
            DecodeError::UnrecognisedFormat | DecodeError::UnsupportedFormat(_) => "unsupported_image_format",
            DecodeError::DimensionsOutOfBounds { .. } => "image_dimensions",
            DecodeError::MemoryLimit => "image_too_complex",
            DecodeError::Corrupt(_) => "undecodable_image",
        }
    }
}

/// Frames with a longer side than this are scaled down to it right after decoding: the models look at a face
/// crop of a few hundred pixels, and a smaller working copy bounds the memory of conversion and rotation.
pub const MAX_WORKING_SIDE: u32 = 2560;

/// The memory all decodes of the process share: what the largest frame accepted needs, a 4096x4096 RGB image
/// and its scaled-down working copy. One such decode at a time; many of camera size side by side.
pub const DECODE_MEMORY_BYTES: u64 = 4096 * 4096 * 3 + (MAX_WORKING_SIDE as u64).pow(2) * 3;

/// The budget every frame decode of this process shares.
fn decode_budget() -> &'static MemoryBudget {
    static BUDGET: OnceLock<MemoryBudget> = OnceLock::new();
    BUDGET.get_or_init(|| MemoryBudget::new(DECODE_MEMORY_BYTES))
}

/// A decoded frame: an upright 8-bit RGB image (dereferences to it), holding its share of the decode memory
/// budget until dropped.
#[derive(Debug)]
pub struct DecodedFrame {
    image: RgbImage,
    _memory: Reservation<'static>,
}

impl DecodedFrame {
    /// The image, giving back its memory reservation.
    pub fn into_image(self) -> RgbImage {
        self.image
    }
}

impl std::ops::Deref for DecodedFrame {
    type Target = RgbImage;

    fn deref(&self) -> &RgbImage {
        &self.image
    }
}

/// Decodes JPEG or PNG bytes into an upright 8-bit RGB image: EXIF orientation is applied, grey and alpha are
/// converted, frames over [`MAX_WORKING_SIDE`] are scaled down, and every bound in `limits` is enforced before
/// pixels are decoded. The decode first reserves the most memory it can need from the process's budget
/// ([`DECODE_MEMORY_BYTES`]), waiting while other decodes hold it; one that can never fit is
/// [`DecodeError::MemoryLimit`].
pub fn decode_frame(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedFrame, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge { size: bytes.len(), limit: limits.max_bytes });
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnrecognisedFormat)?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png) {
        return Err(DecodeError::UnsupportedFormat(format_name(format)));
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(DecodeError::Corrupt("the JPEG is truncated: its last scan has no end-of-image marker".into()));
    }
    let budget = decode_budget();
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut memory = Limits::default();
    memory.max_image_width = Some(limits.max_side);
    memory.max_image_height = Some(limits.max_side);
    memory.max_alloc = Some(budget.capacity());
    reader.limits(memory);
    let mut decoder = reader.into_decoder().map_err(|e| map_image_error(e, bytes, limits))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let plan = DecodePlan {
        width,
        height,
        decoded_bytes: decoder.total_bytes(),
        is_rgb8: decoder.color_type() == image::ColorType::Rgb8,
        progressive: format == ImageFormat::Jpeg && jpeg_is_progressive(bytes),
        rotates: rotates(orientation),
    };
    let reservation = budget.reserve(plan.peak_bytes()).ok_or(DecodeError::MemoryLimit)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, bytes, limits))?;
    let (working_width, working_height) = plan.working_size();
    if (working_width, working_height) != (width, height) {
        // thumbnail averages areas in integers; resize would hold an f32 copy of the whole frame.
        image = image.thumbnail_exact(working_width, working_height);
    }
    let mut upright = DynamicImage::ImageRgb8(image.into_rgb8());
    upright.apply_orientation(orientation);
    Ok(DecodedFrame { image: upright.into_rgb8(), _memory: reservation })
}

/// What a decode will hold at its peak, from the header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DecodePlan {
    width: u32,
    height: u32,
    /// The decoder's output buffer, bytes.
    decoded_bytes: u64,
    /// Whether the decoder's output is already 8-bit RGB (no conversion copy).
    is_rgb8: bool,
    /// A progressive JPEG keeps every coefficient until its last scan.
    progressive: bool,
    /// Whether the orientation turns the image by 90 degrees (a rotated copy; flips work in place).
    rotates: bool,
}

impl DecodePlan {
    /// The size of the working copy: the frame, scaled down to [`MAX_WORKING_SIDE`] if it is larger.
    fn working_size(&self) -> (u32, u32) {
        let longer = self.width.max(self.height);
        if longer <= MAX_WORKING_SIDE {
            return (self.width, self.height);
        }
        let scale = |side: u32| ((u64::from(side) * u64::from(MAX_WORKING_SIDE)).div_ceil(u64::from(longer))) as u32;
        (scale(self.width).max(1), scale(self.height).max(1))
    }

    /// The most bytes alive at once, stage by stage: decoding, scaling down, conversion to RGB, rotation.
    fn peak_bytes(&self) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        let (working_width, working_height) = self.working_size();
        let working_pixels = u64::from(working_width) * u64::from(working_height);
        let scaled = working_pixels != pixels;
        // A progressive JPEG's coefficients: two bytes for each of up to three full-resolution components.
        let coefficients = if self.progressive { pixels * 6 } else { 0 };
        let decoding = self.decoded_bytes + coefficients;
        let bytes_per_pixel = self.decoded_bytes.div_ceil(pixels.max(1));
        let working_bytes = working_pixels * bytes_per_pixel;
        let scaling = if scaled { self.decoded_bytes + working_bytes } else { 0 };
        let before_conversion = if scaled { working_bytes } else { self.decoded_bytes };
        let converting = before_conversion + if self.is_rgb8 { 0 } else { working_pixels * 3 };
        let rotating = working_pixels * 3 * if self.rotates { 2 } else { 1 };
        decoding.max(scaling).max(converting).max(rotating)
    }
}

fn rotates(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// Whether a JPEG's frame header is progressive (SOF2), as opposed to baseline or extended sequential.
fn jpeg_is_progressive(bytes: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return false;
        }
        let marker = bytes[at + 1];
        match marker {
            0xC2 | 0xC6 | 0xCA | 0xCE => return true,
            0xC0 | 0xC1 | 0xC3 | 0xC5 | 0xC7 | 0xC9 | 0xCB | 0xCD | 0xCF | 0xDA => return false,
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        at += 2 + length;
    }
    false
}

/// Whether an end-of-image marker follows the last start-of-scan marker. The JPEG decoder fills a truncated
/// image with grey rather than failing, and half a face must not reach the models.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_marker = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last_marker(0xDA), last_marker(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    let in_range = |side: u32| (limits.min_side..=limits.max_side).contains(&side);
    if in_range(width) && in_range(height) {
        Ok(())
    } else {
        Err(DecodeError::DimensionsOutOfBounds { width, height, min: limits.min_side, max: limits.max_side })
    }
}

fn map_image_error(error: ImageError, bytes: &[u8], limits: &DecodeLimits) -> DecodeError {
    match error {
        ImageError::Limits(limit) => match limit.kind() {
            LimitErrorKind::DimensionError => match header_dimensions(bytes) {
                Some((width, height)) => {
                    DecodeError::DimensionsOutOfBounds { width, height, min: limits.min_side, max: limits.max_side }
                }
                None => DecodeError::Corrupt(limit.to_string()),
            },
            _ => DecodeError::MemoryLimit,
        },
        ImageError::Unsupported(unsupported) => match unsupported.kind() {
            UnsupportedErrorKind::Format(hint) => DecodeError::UnsupportedFormat(hint.to_string()),
            _ => DecodeError::Corrupt(unsupported.to_string()),
        },
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// Reads width and height from a header the decoder refused because of its size, for a precise error.
fn header_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    // A PNG's IHDR sits at a fixed offset; the PNG decoder would want the image data before it says anything.
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR") {
        let word = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        return Some((word(16)?, word(20)?));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    reader.no_limits();
    reader.into_dimensions().ok()
}

fn format_name(format: ImageFormat) -> String {
    format.extensions_str().first().map_or_else(|| format!("{format:?}"), |ext| ext.to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb};

    fn decode_rgb(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
        decode_frame(bytes, limits).map(DecodedFrame::into_image)
    }

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn gradient(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 128])))
    }

    fn plan(width: u32, height: u32, bytes_per_pixel: u64) -> DecodePlan {
        DecodePlan {
            width,
            height,
            decoded_bytes: u64::from(width) * u64::from(height) * bytes_per_pixel,
            is_rgb8: bytes_per_pixel == 3,
            progressive: false,
            rotates: false,
        }
    }

    #[test]
    fn the_budget_fits_the_largest_frame_accepted_and_no_bomb() {
        let fits = |plan: DecodePlan| plan.peak_bytes() <= DECODE_MEMORY_BYTES;
        assert!(fits(plan(4096, 4096, 3)), "the largest RGB frame");
        assert!(fits(DecodePlan { rotates: true, ..plan(4096, 4096, 3) }), "rotated, it turns the small copy");
        assert!(fits(DecodePlan { rotates: true, ..plan(3024, 4032, 3) }), "a phone photo taken upright");
        assert!(fits(DecodePlan { progressive: true, ..plan(1920, 1080, 3) }), "a progressive HD frame");
        assert!(fits(plan(4096, 4096, 1)), "grey at the largest size");
        assert!(!fits(plan(4096, 4096, 8)), "16-bit RGBA at the largest size: the classic PNG bomb");
        assert!(!fits(plan(4096, 4096, 4)), "RGBA at the largest size");
        assert!(!fits(DecodePlan { progressive: true, ..plan(4096, 3072, 3) }), "a 12 MP progressive JPEG");
        let camera = plan(640, 480, 3).peak_bytes();
        assert_eq!(camera, 640 * 480 * 3, "a camera frame needs its own pixels and no more");
        assert!(DECODE_MEMORY_BYTES / camera > 50, "dozens of camera frames fit side by side");
    }

    #[test]
    fn large_frames_are_scaled_to_the_working_size() {
        assert_eq!(plan(4096, 2048, 3).working_size(), (MAX_WORKING_SIDE, MAX_WORKING_SIDE / 2));
        assert_eq!(plan(1617, 2160, 3).working_size(), (1617, 2160));
        let wide = encode(&gradient(3000, 1000), ImageFormat::Jpeg);
        let image = decode_rgb(&wide, &DecodeLimits::default()).unwrap();
        assert_eq!(image.dimensions(), (MAX_WORKING_SIDE, 854));
    }

    #[test]
    fn a_png_bomb_is_refused_before_its_pixels_are_allocated() {
        // 4096x4096, 16-bit RGBA: 128 MiB of pixels from a file of a few hundred kilobytes.
        let bomb = ImageBuffer::<image::Rgba<u16>, _>::new(4096, 4096);
        let bytes = encode(&DynamicImage::ImageRgba16(bomb), ImageFormat::Png);
        assert!(bytes.len() < 1_000_000, "{}", bytes.len());
        assert_eq!(decode_rgb(&bytes, &DecodeLimits::default()), Err(DecodeError::MemoryLimit));
    }

    #[test]
    fn progressive_jpegs_are_recognised() {
        let baseline = encode(&gradient(120, 80), ImageFormat::Jpeg);
        assert!(!jpeg_is_progressive(&baseline));
        let mut progressive = baseline.clone();
        let sof = progressive.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        progressive[sof + 1] = 0xC2;
        assert!(jpeg_is_progressive(&progressive));
    }

    #[test]
    fn decodes_jpeg_and_png() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png] {
            let decoded = decode_rgb(&encode(&gradient(120, 80), format), &DecodeLimits::default()).unwrap();
            assert_eq!(decoded.dimensions(), (120, 80));
        }
    }

    #[test]
    fn grey_and_alpha_become_rgb() {
        let grey = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(70, 70, image::Luma([200u8])));
        let decoded = decode_rgb(&encode(&grey, ImageFormat::Png), &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.get_pixel(3, 3).0, [200, 200, 200]);
        let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(70, 70, image::Rgba([10u8, 20, 30, 0])));
        let decoded = decode_rgb(&encode(&rgba, ImageFormat::Png), &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.get_pixel(3, 3).0, [10, 20, 30]);
    }

    #[test]
    fn rejects_empty_and_oversized_input() {
        let limits = DecodeLimits::default();
        assert_eq!(decode_rgb(&[], &limits), Err(DecodeError::Empty));
        let big = vec![0xFFu8; limits.max_bytes + 1];
        assert_eq!(
            decode_rgb(&big, &limits),
            Err(DecodeError::TooLarge { size: limits.max_bytes + 1, limit: limits.max_bytes })
        );
    }

    #[test]
    fn rejects_unknown_and_unsupported_formats() {
        let limits = DecodeLimits::default();
        let random: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        assert_eq!(decode_rgb(&random, &limits), Err(DecodeError::UnrecognisedFormat));
        let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
        assert!(matches!(decode_rgb(gif, &limits), Err(DecodeError::UnsupportedFormat(name)) if name == "GIF"));
    }

    #[test]
    fn rejects_truncated_jpeg() {
        let jpeg = encode(&gradient(256, 256), ImageFormat::Jpeg);
        let truncated = &jpeg[..jpeg.len() / 3];
        assert!(matches!(decode_rgb(truncated, &DecodeLimits::default()), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn rejects_sides_out_of_bounds_without_decoding() {
        let limits = DecodeLimits::default();
        let small = encode(&gradient(40, 200), ImageFormat::Png);
        assert_eq!(
            decode_rgb(&small, &limits),
            Err(DecodeError::DimensionsOutOfBounds { width: 40, height: 200, min: 64, max: 4096 })
        );
        assert_eq!(
            decode_rgb(&png_header_only(100_000, 100_000), &limits),
            Err(DecodeError::DimensionsOutOfBounds { width: 100_000, height: 100_000, min: 64, max: 4096 })
        );
    }

    /// A PNG signature and IHDR chunk claiming a huge image, followed by nothing: a decompression-bomb header.
    fn png_header_only(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend_from_slice(&(ihdr.len() as u32).to_be_bytes());
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&ihdr);
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn applies_exif_orientation() {
        // A 100x70 JPEG tagged "rotate 90 degrees clockwise" must come out 70x100.
        let jpeg = encode(&gradient(100, 70), ImageFormat::Jpeg);
        let rotated = decode_rgb(&with_exif_orientation(&jpeg, 6), &DecodeLimits::default()).unwrap();
        assert_eq!(rotated.dimensions(), (70, 100));
    }

    /// Inserts an APP1 Exif segment with one Orientation entry right after the JPEG's SOI marker.
    fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut payload = b"Exif\x00\x00".to_vec();
        payload.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}
