//! What one frame tells about the face in front of the camera: the observation the judge reads. Vision produces it
//! from real models (or tests script it); the domain owns its shape.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl BoundingBox {
    /// Centre point.
    pub fn center(&self) -> (f32, f32) {
        (self.x + self.width / 2.0, self.y + self.height / 2.0)
    }

    /// Whether the point lies inside the box (edges included).
    pub fn contains(&self, (x, y): (f32, f32)) -> bool {
        x >= self.x && x <= self.x + self.width && y >= self.y && y <= self.y + self.height
    }

    /// Area in square pixels.
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// The box scaled by `factor` about its centre.
    pub fn scaled(&self, factor: f32) -> BoundingBox {
        let (cx, cy) = self.center();
        let (width, height) = (self.width * factor, self.height * factor);
        BoundingBox { x: cx - width / 2.0, y: cy - height / 2.0, width, height }
    }

    /// Intersection over union with another box, 0 when they do not overlap.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let left = self.x.max(other.x);
        let top = self.y.max(other.y);
        let right = (self.x + self.width).min(other.x + other.width);
        let bottom = (self.y + self.height).min(other.y + other.height);
        let intersection = (right - left).max(0.0) * (bottom - top).max(0.0);
        let union = self.area() + other.area() - intersection;
        if union > 0.0 {
            intersection / union
        } else {
            0.0
        }
    }

    /// The smallest box holding every point.
    pub fn around(points: impl IntoIterator<Item = (f32, f32)>) -> Option<BoundingBox> {
        let mut iter = points.into_iter();
        let (x0, y0) = iter.next()?;
        let (mut left, mut top, mut right, mut bottom) = (x0, y0, x0, y0);
        for (x, y) in iter {
            left = left.min(x);
            right = right.max(x);
            top = top.min(y);
            bottom = bottom.max(y);
        }
        Some(BoundingBox { x: left, y: top, width: right - left, height: bottom - top })
    }
}

/// Head orientation in degrees, the user's own left and right whatever the camera mirrors: yaw > 0 the user
/// turned their head to their left; pitch > 0 they look up; roll > 0 the head tilts toward their left shoulder.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadPose {
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
}

/// Where the eyes look, 0..1 each: the blendshapes' eyeLookDown and eyeLookUp, both eyes averaged. A person asked
/// to look down lowers their eyes as well as their head, some more than their head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Gaze {
    pub down: f32,
    pub up: f32,
}

/// Brightness and sharpness of the face region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceQuality {
    /// Mean luma of the face, 0..255.
    pub brightness: f32,
    /// Variance of the Laplacian of the face resampled to 128x128: higher is sharper. Measured: still photos
    /// 100-2000; a live photo box-blurred by 8 pixels twice 3.2; soft video frames of a 90-pixel face 2.8-66.
    pub sharpness: f32,
}

/// Everything one frame tells about the face in front of the camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameObservation {
    /// Decoded (upright) image size in pixels.
    pub width: u32,
    pub height: u32,
    /// Faces in the frame. When the detector was skipped because a known face region was reused, 1.
    pub faces: usize,
    /// Whether the detector ran on this frame (false when a known face region was reused).
    pub detector_ran: bool,
    /// The main (largest) face, if there is one.
    pub face: Option<FaceObservation>,
    /// Milliseconds spent per stage.
    pub timings_ms: StageTimings,
}

/// The main face of a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceObservation {
    /// The box spanned by the face mesh, in image pixels.
    pub bbox: BoundingBox,
    /// Mesh face-presence probability.
    pub presence: f32,
    /// Head pose; see [`HeadPose`] for the signs.
    pub pose: HeadPose,
    /// Eye closure `[left, right]` (the user's own eyes), 0 open, 1 closed, from the mesh's eye aspect ratio
    /// (it separated a closed eye from open ones more clearly than the blendshapes' eyeBlink; see docs/accuracy.md).
    pub eye_closure: [f32; 2],
    /// Smile, 0..1: the blendshapes' mouthSmile, left and right averaged.
    pub smile: f32,
    /// Mouth opening, 0..1: the blendshapes' jawOpen.
    pub mouth_open: f32,
    /// Where the eyes look.
    #[serde(default)]
    pub gaze: Gaze,
    /// Brightness and sharpness of the face.
    pub quality: FaceQuality,
    /// MiniFASNet's probability that the face is live; `None` when the models are not installed.
    pub antispoof_real: Option<f32>,
    /// Where the analyser should look for this face in the next frame, so the detector can be skipped.
    pub next_region: TrackingHint,
    /// The 478 mesh landmarks `(x, y, z)` in image pixels (z: depth, away from the camera).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub landmarks: Vec<[f32; 3]>,
}

/// Time per stage, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimings {
    pub decode: f32,
    pub detect: f32,
    pub mesh: f32,
    pub expressions: f32,
    pub antispoof: f32,
    pub total: f32,
}

/// Where the analyser found the face, for it to look there again in the next frame. The domain stores it with the
/// session and hands it back, but never interprets it: its meaning belongs to whoever produced it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackingHint(pub [f32; 5]);
