//! BlazeFace short range: every face near the camera, with six keypoints each.

use std::path::Path;

use image::RgbImage;

use super::geometry::{resample, Border, BoundingBox, CropRegion};
use super::onnx::{ModelError, OnnxModel};

const SIZE: usize = 128;
const ANCHORS: usize = 896;
const MIN_SCORE: f32 = 0.5;
const NMS_IOU: f32 = 0.3;

/// One detected face in image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: BoundingBox,
    /// Sigmoid of the detector's logit.
    pub score: f32,
    /// The user's right eye, left eye, nose tip, mouth centre, right ear, left ear.
    pub keypoints: [(f32, f32); 6],
}

impl Detection {
    /// The crop the face mesh expects: centred on the box, 1.5 times its longer side, eyes level.
    pub fn mesh_region(&self) -> CropRegion {
        let (center_x, center_y) = self.bbox.center();
        let side = 1.5 * self.bbox.width.max(self.bbox.height);
        let (right_eye, left_eye) = (self.keypoints[0], self.keypoints[1]);
        let angle = (left_eye.1 - right_eye.1).atan2(left_eye.0 - right_eye.0);
        CropRegion { center_x, center_y, width: side, height: side, angle }
    }
}

/// The face detector, loaded once.
#[derive(Debug, Clone)]
pub struct FaceDetector {
    model: OnnxModel,
    anchors: Vec<(f32, f32)>,
}

impl FaceDetector {
    /// Loads `blazeface_short.onnx`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Ok(Self { model: OnnxModel::load(path, &[1, SIZE, SIZE, 3])?, anchors: anchors() })
    }

    /// All faces in the image, best first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, ModelError> {
        let side = image.width().max(image.height()) as f32;
        let letterbox = CropRegion {
            center_x: image.width() as f32 / 2.0,
            center_y: image.height() as f32 / 2.0,
            width: side,
            height: side,
            angle: 0.0,
        };
        let input = resample(image, &letterbox, SIZE, SIZE, Border::Zero)
            .into_iter()
            .flat_map(|rgb| rgb.map(|v| v / 127.5 - 1.0))
            .collect();
        let outputs = self.model.run(input)?;
        let (regressors, logits) = (&outputs[0], &outputs[1]);
        let to_image = |nx: f32, ny: f32| letterbox.to_image(nx * SIZE as f32, ny * SIZE as f32, SIZE, SIZE);
        let mut candidates = Vec::new();
        for (i, &(ax, ay)) in self.anchors.iter().enumerate() {
            let score = sigmoid(logits[i].clamp(-100.0, 100.0));
            if score < MIN_SCORE {
                continue;
            }
            let r = &regressors[i * 16..(i + 1) * 16];
            let s = SIZE as f32;
            let (cx, cy) = (r[0] / s + ax, r[1] / s + ay);
            let (w, h) = (r[2] / s, r[3] / s);
            let (x0, y0) = to_image(cx - w / 2.0, cy - h / 2.0);
            let (x1, y1) = to_image(cx + w / 2.0, cy + h / 2.0);
            let keypoints = std::array::from_fn(|k| to_image(r[4 + 2 * k] / s + ax, r[5 + 2 * k] / s + ay));
            let bbox = BoundingBox { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
            candidates.push(Detection { bbox, score, keypoints });
        }
        Ok(weighted_nms(candidates))
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Anchor centres: a 16x16 grid with 2 anchors a cell, then an 8x8 grid with 6.
fn anchors() -> Vec<(f32, f32)> {
    let mut anchors = Vec::with_capacity(ANCHORS);
    for (grid, per_cell) in [(16usize, 2usize), (8, 6)] {
        for y in 0..grid {
            for x in 0..grid {
                let centre = ((x as f32 + 0.5) / grid as f32, (y as f32 + 0.5) / grid as f32);
                anchors.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    anchors
}

/// Groups overlapping candidates around the best-scoring one and blends each group's boxes and keypoints by
/// score, as MediaPipe does: steadier boxes than plain suppression, one detection per face.
fn weighted_nms(mut candidates: Vec<Detection>) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut faces = Vec::new();
    while let Some(best) = candidates.first().cloned() {
        let (group, rest): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| c.bbox.iou(&best.bbox) > NMS_IOU);
        candidates = rest;
        let total: f32 = group.iter().map(|c| c.score).sum();
        let blend = |f: &dyn Fn(&Detection) -> f32| group.iter().map(|c| f(c) * c.score).sum::<f32>() / total;
        let bbox = BoundingBox {
            x: blend(&|c| c.bbox.x),
            y: blend(&|c| c.bbox.y),
            width: blend(&|c| c.bbox.width),
            height: blend(&|c| c.bbox.height),
        };
        let keypoints = std::array::from_fn(|k| (blend(&|c| c.keypoints[k].0), blend(&|c| c.keypoints[k].1)));
        faces.push(Detection { bbox, score: best.score, keypoints });
    }
    faces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_layout_matches_the_model() {
        let anchors = anchors();
        assert_eq!(anchors.len(), ANCHORS);
        assert_eq!(anchors[0], (1.0 / 32.0, 1.0 / 32.0));
        assert_eq!(anchors[511], (31.0 / 32.0, 31.0 / 32.0));
        assert_eq!(anchors[512], (1.0 / 16.0, 1.0 / 16.0));
    }

    #[test]
    fn overlapping_candidates_merge_and_distant_ones_stay() {
        let face = |x: f32, score: f32| Detection {
            bbox: BoundingBox { x, y: 0.0, width: 10.0, height: 10.0 },
            score,
            keypoints: [(x, 0.0); 6],
        };
        let merged = weighted_nms(vec![face(0.0, 0.9), face(1.0, 0.6), face(50.0, 0.7)]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].score, 0.9);
        assert!((merged[0].bbox.x - 0.4).abs() < 1e-5);
        assert_eq!(merged[1].bbox.x, 50.0);
    }
}
