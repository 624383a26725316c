//! The reference image a relying party may keep: the face of a frame with a margin around it, as a JPEG of at most
//! a given size, for comparing with an identity document.

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;

use super::{decode_frame, BoundingBox, DecodeError, DecodeLimits};

/// The face box is widened by this much on each side before cropping.
const MARGIN: f32 = 0.4;
/// The crop's longer side at most, pixels: enough for a face match, small enough to keep.
const MAX_SIDE: u32 = 480;

/// The face `face` of the frame `bytes` with a margin, as a JPEG of at most `max_bytes` (quality lowered until it
/// fits).
pub fn reference_jpeg(
    bytes: &[u8],
    face: &BoundingBox,
    limits: &DecodeLimits,
    max_bytes: usize,
) -> Result<Vec<u8>, DecodeError> {
    let image = decode_frame(bytes, limits)?;
    let (width, height) = (image.width() as f32, image.height() as f32);
    let widened = face.scaled(1.0 + 2.0 * MARGIN);
    let left = widened.x.clamp(0.0, width - 1.0);
    let top = widened.y.clamp(0.0, height - 1.0);
    let right = (widened.x + widened.width).clamp(left + 1.0, width);
    let bottom = (widened.y + widened.height).clamp(top + 1.0, height);
    let crop =
        image::imageops::crop_imm(&*image, left as u32, top as u32, (right - left) as u32, (bottom - top) as u32)
            .to_image();
    let longer = crop.width().max(crop.height());
    let crop = if longer > MAX_SIDE {
        let scale = |side: u32| ((side as f32 * MAX_SIDE as f32 / longer as f32).round() as u32).max(1);
        image::imageops::resize(&crop, scale(crop.width()), scale(crop.height()), FilterType::Triangle)
    } else {
        crop
    };
    for quality in [90, 80, 70, 60, 50, 40, 30] {
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, quality)
            .encode_image(&crop)
            .map_err(|e| DecodeError::Corrupt(format!("cannot encode the reference image: {e}")))?;
        if jpeg.len() <= max_bytes {
            return Ok(jpeg);
        }
    }
    Err(DecodeError::TooLarge { size: max_bytes + 1, limit: max_bytes })
}
