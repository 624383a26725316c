//! Passive anti-spoofing with the two Silent-Face MiniFASNet models, pre-processed exactly as upstream does.

use std::path::Path;

use image::RgbImage;

use super::geometry::{resample, Border, BoundingBox, CropRegion};
use super::model_files::{self, ANTISPOOF_FILES};
use super::onnx::{ModelError, OnnxModel};

const SIZE: usize = 80;
/// The face box upstream's crops are scaled from, relative to the box spanned by the mesh's 468 face points.
/// Upstream's own detector gives a tighter box than the mesh (which reaches the hairline), and the score depends
/// on it: over the 15 one-face-or-more test images, 0.8 gave the widest gap between the lowest live score (0.76)
/// and the highest spoof score (0.18); the plain mesh box scored the small live face T2 0.43 (see the README).
pub const MESH_BOX_SCALE: f32 = 0.8;
/// Class 1 of the three logits is "real".
const REAL_CLASS: usize = 1;

/// V2's score at or above which a frame is live without asking V1SE (see [`AntiSpoofEnsemble::V2ThenV1se`]).
pub const SURE_LIVE: f32 = 0.9;

/// Which MiniFASNet models score a face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AntiSpoofEnsemble {
    /// MiniFASNet V2, and where it is not sure the face is live (under [`SURE_LIVE`]) V2 and V1SE averaged, as
    /// upstream always averages them (the default). V2 alone separated the test photos best (lowest live 0.88
    /// against the spoof samples' 0.04-0.06), but it doubts some real people: man H of the genuine clips (round
    /// glasses, head down) reads 0.10-0.80 a frame under V2 and 0.86-0.95 under V1SE, and failed `SPOOF_DETECTED`
    /// on V2 alone. Upstream's average keeps the spoof samples far under the threshold (0.12-0.16); asking the second
    /// model only on doubtful frames keeps its cost off the frames of nearly every genuine user (V2 reads 0.97-1.00
    /// on their median frame).
    #[default]
    V2ThenV1se,
    /// MiniFASNet V2 alone, at half the cost of both.
    V2Only,
    /// V2 and V1SE averaged on every frame, as upstream does.
    Both,
}

/// The MiniFASNet models, loaded once.
#[derive(Debug, Clone)]
pub struct AntiSpoofModels {
    /// Each model with the factor its crop scales the face box by (2.7 for V2, 4.0 for V1SE), V2 first.
    models: Vec<(OnnxModel, f32)>,
    ensemble: AntiSpoofEnsemble,
}

impl AntiSpoofModels {
    /// Loads the models `ensemble` names from `dir` after checking their pinned sha256. `Ok(None)` when no
    /// anti-spoofing file is there at all; an error when a needed one is missing or is not the pinned file.
    pub fn load(dir: &Path, ensemble: AntiSpoofEnsemble) -> Result<Option<Self>, ModelError> {
        if !ANTISPOOF_FILES.iter().any(|f| dir.join(f.name).exists()) {
            return Ok(None);
        }
        let wanted = match ensemble {
            AntiSpoofEnsemble::V2Only => &ANTISPOOF_FILES[..1],
            AntiSpoofEnsemble::Both | AntiSpoofEnsemble::V2ThenV1se => &ANTISPOOF_FILES[..],
        };
        let mut models = Vec::new();
        for file in wanted {
            let path = dir.join(file.name);
            let bytes = model_files::read_verified(&path, file.sha256)?;
            models.push((OnnxModel::from_bytes(&path, &bytes, &[1, 3, SIZE, SIZE])?, file.crop_scale));
        }
        Ok(Some(Self { models, ensemble }))
    }

    /// The probability that the face whose mesh spans `mesh_box` is live: see [`AntiSpoofModels::real_score`].
    pub fn real_score_for_mesh(&self, image: &RgbImage, mesh_box: &BoundingBox) -> Result<f32, ModelError> {
        self.real_score(image, &mesh_box.scaled(MESH_BOX_SCALE))
    }

    /// The probability that `face` (the box the crop is scaled from) shows a live face: the models' softmaxed
    /// "real" class, averaged, V1SE asked only as the ensemble says.
    pub fn real_score(&self, image: &RgbImage, face: &BoundingBox) -> Result<f32, ModelError> {
        let first = Self::score_with(&self.models[0], image, face)?;
        let ask_v1se = match self.ensemble {
            AntiSpoofEnsemble::V2Only => false,
            AntiSpoofEnsemble::Both => true,
            AntiSpoofEnsemble::V2ThenV1se => first < SURE_LIVE,
        };
        if !ask_v1se {
            return Ok(first);
        }
        Ok((first + Self::score_with(&self.models[1], image, face)?) / 2.0)
    }

    /// Each loaded model's softmaxed "real" class, V2 first.
    pub fn real_score_per_model(&self, image: &RgbImage, face: &BoundingBox) -> Result<Vec<f32>, ModelError> {
        self.models.iter().map(|model| Self::score_with(model, image, face)).collect()
    }

    fn score_with((model, scale): &(OnnxModel, f32), image: &RgbImage, face: &BoundingBox) -> Result<f32, ModelError> {
        let region = upstream_crop(image.width() as f32, image.height() as f32, face, *scale);
        let pixels = resample(image, &region, SIZE, SIZE, Border::Replicate);
        // NCHW, BGR, raw 0..255: exactly what the models were trained on.
        let input = [2usize, 1, 0].iter().flat_map(|&c| pixels.iter().map(move |p| p[c])).collect();
        Ok(softmax(&model.run(input)?[0])[REAL_CLASS])
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|v| v / sum).collect()
}

/// Upstream's crop: the box scaled about its centre (no more than the frame allows), then shifted to lie inside
/// the frame, with integer corners and inclusive right and bottom edges.
fn upstream_crop(src_w: f32, src_h: f32, face: &BoundingBox, scale: f32) -> CropRegion {
    let scale = scale.min((src_h - 1.0) / face.height).min((src_w - 1.0) / face.width);
    let (width, height) = (face.width * scale, face.height * scale);
    let (cx, cy) = face.center();
    let (mut left, mut top) = (cx - width / 2.0, cy - height / 2.0);
    let (mut right, mut bottom) = (cx + width / 2.0, cy + height / 2.0);
    if left < 0.0 {
        right -= left;
        left = 0.0;
    }
    if top < 0.0 {
        bottom -= top;
        top = 0.0;
    }
    if right > src_w - 1.0 {
        left -= right - src_w + 1.0;
        right = src_w - 1.0;
    }
    if bottom > src_h - 1.0 {
        top -= bottom - src_h + 1.0;
        bottom = src_h - 1.0;
    }
    let (left, top, right, bottom) = (left.trunc(), top.trunc(), right.trunc(), bottom.trunc());
    CropRegion::axis_aligned(&BoundingBox { x: left, y: top, width: right - left + 1.0, height: bottom - top + 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_scales_about_the_centre_and_stays_inside() {
        let face = BoundingBox { x: 300.0, y: 200.0, width: 40.0, height: 60.0 };
        let inside = upstream_crop(640.0, 480.0, &face, 2.7);
        assert_eq!((inside.center_x, inside.center_y), (320.5, 230.5));
        assert_eq!((inside.width, inside.height), (109.0, 163.0));
        let corner = BoundingBox { x: 0.0, y: 0.0, width: 100.0, height: 100.0 };
        let shifted = upstream_crop(640.0, 480.0, &corner, 4.0);
        assert_eq!(shifted.center_x - shifted.width / 2.0, 0.0);
        assert_eq!(shifted.center_y - shifted.height / 2.0, 0.0);
        // Upstream's right and bottom edges are inclusive: 400 pixels scaled, 401 taken.
        assert_eq!(shifted.height, 401.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
    }
}
