//! Frame bytes to an upright RGB image, within fixed bounds on bytes, pixels and memory.

use std::io::Cursor;

use image::error::{LimitErrorKind, UnsupportedErrorKind};
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

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

/// Decodes JPEG or PNG bytes into an upright 8-bit RGB image: EXIF orientation is applied, grey and alpha are
/// converted, and every bound in `limits` is enforced before pixels are decoded.
pub fn decode_frame(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
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
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut memory = Limits::default();
    memory.max_image_width = Some(limits.max_side);
    memory.max_image_height = Some(limits.max_side);
    // RGBA at the largest size, plus room for the decoder's own buffers.
    memory.max_alloc = Some(u64::from(limits.max_side).pow(2) * 4 + 64 * 1024 * 1024);
    reader.limits(memory);
    let mut decoder = reader.into_decoder().map_err(|e| map_image_error(e, bytes, limits))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, bytes, limits))?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
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

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn gradient(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 128])))
    }

    #[test]
    fn decodes_jpeg_and_png() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png] {
            let decoded = decode_frame(&encode(&gradient(120, 80), format), &DecodeLimits::default()).unwrap();
            assert_eq!(decoded.dimensions(), (120, 80));
        }
    }

    #[test]
    fn grey_and_alpha_become_rgb() {
        let grey = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(70, 70, image::Luma([200u8])));
        let decoded = decode_frame(&encode(&grey, ImageFormat::Png), &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.get_pixel(3, 3).0, [200, 200, 200]);
        let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(70, 70, image::Rgba([10u8, 20, 30, 0])));
        let decoded = decode_frame(&encode(&rgba, ImageFormat::Png), &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.get_pixel(3, 3).0, [10, 20, 30]);
    }

    #[test]
    fn rejects_empty_and_oversized_input() {
        let limits = DecodeLimits::default();
        assert_eq!(decode_frame(&[], &limits), Err(DecodeError::Empty));
        let big = vec![0xFFu8; limits.max_bytes + 1];
        assert_eq!(
            decode_frame(&big, &limits),
            Err(DecodeError::TooLarge { size: limits.max_bytes + 1, limit: limits.max_bytes })
        );
    }

    #[test]
    fn rejects_unknown_and_unsupported_formats() {
        let limits = DecodeLimits::default();
        let random: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        assert_eq!(decode_frame(&random, &limits), Err(DecodeError::UnrecognisedFormat));
        let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
        assert!(matches!(decode_frame(gif, &limits), Err(DecodeError::UnsupportedFormat(name)) if name == "GIF"));
    }

    #[test]
    fn rejects_truncated_jpeg() {
        let jpeg = encode(&gradient(256, 256), ImageFormat::Jpeg);
        let truncated = &jpeg[..jpeg.len() / 3];
        assert!(matches!(decode_frame(truncated, &DecodeLimits::default()), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn rejects_sides_out_of_bounds_without_decoding() {
        let limits = DecodeLimits::default();
        let small = encode(&gradient(40, 200), ImageFormat::Png);
        assert_eq!(
            decode_frame(&small, &limits),
            Err(DecodeError::DimensionsOutOfBounds { width: 40, height: 200, min: 64, max: 4096 })
        );
        assert_eq!(
            decode_frame(&png_header_only(100_000, 100_000), &limits),
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
        let rotated = decode_frame(&with_exif_orientation(&jpeg, 6), &DecodeLimits::default()).unwrap();
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
