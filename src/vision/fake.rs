//! A scripted stand-in for the real analyser, for tests of sessions and transports without models.
//!
//! A frame whose bytes are a JSON [`FrameObservation`] yields that observation; any other bytes go through the real
//! decoder, so bad images still produce the real errors (and a decodable image yields a frame with no face).

use super::face_metrics::{FaceQuality, HeadPose};
use super::geometry::{BoundingBox, CropRegion};
use super::{
    decode_frame, AnalysisError, DecodeLimits, FaceObservation, FaceSearch, FrameAnalyzer, FrameObservation,
    StageTimings,
};
use crate::domain::Gaze;

/// Analyser that reads observations out of the frames themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScriptedAnalyzer {
    /// What [`FrameAnalyzer::has_antispoof`] answers.
    pub antispoof: bool,
}

impl FrameAnalyzer for ScriptedAnalyzer {
    fn analyze(&self, bytes: &[u8], _search: FaceSearch<'_>) -> Result<FrameObservation, AnalysisError> {
        if let Ok(observation) = serde_json::from_slice::<FrameObservation>(bytes) {
            return Ok(observation);
        }
        let image = decode_frame(bytes, &DecodeLimits::default())?;
        Ok(FrameObservation {
            width: image.width(),
            height: image.height(),
            faces: 0,
            detector_ran: true,
            face: None,
            timings_ms: StageTimings::default(),
        })
    }

    fn has_antispoof(&self) -> bool {
        self.antispoof
    }
}

/// The measurable parts of a synthetic face; `Default` is a neutral, frontal, live-looking face in the middle of a
/// 640x480 frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeFace {
    pub yaw: f32,
    pub pitch: f32,
    pub eye_closure: f32,
    pub smile: f32,
    pub mouth_open: f32,
    /// Horizontal shift of the face box, pixels.
    pub shift_x: f32,
    /// Face box width, pixels (height is 1.2 times it).
    pub width: f32,
    pub brightness: f32,
    pub antispoof_real: Option<f32>,
}

impl Default for FakeFace {
    fn default() -> Self {
        Self {
            yaw: 1.0,
            pitch: -8.0,
            eye_closure: 0.1,
            smile: 0.02,
            mouth_open: 0.02,
            shift_x: 0.0,
            width: 200.0,
            brightness: 120.0,
            antispoof_real: Some(0.9),
        }
    }
}

impl FakeFace {
    /// The observation of a 640x480 frame holding this one face.
    pub fn observation(&self) -> FrameObservation {
        let bbox = BoundingBox {
            x: 320.0 - self.width / 2.0 + self.shift_x,
            y: 240.0 - self.width * 0.6,
            width: self.width,
            height: self.width * 1.2,
        };
        FrameObservation {
            width: 640,
            height: 480,
            faces: 1,
            detector_ran: true,
            face: Some(FaceObservation {
                bbox,
                presence: 1.0,
                pose: HeadPose { yaw: self.yaw, pitch: self.pitch, roll: 0.0 },
                eye_closure: [self.eye_closure; 2],
                smile: self.smile,
                mouth_open: self.mouth_open,
                gaze: Gaze::default(),
                quality: FaceQuality { brightness: self.brightness, sharpness: 300.0 },
                antispoof_real: self.antispoof_real,
                next_region: CropRegion::axis_aligned(&bbox.scaled(1.5)).into(),
                landmarks: Vec::new(),
            }),
            timings_ms: StageTimings::default(),
        }
    }

    /// The observation as frame bytes for [`ScriptedAnalyzer`].
    pub fn frame(&self) -> Vec<u8> {
        serde_json::to_vec(&self.observation()).expect("observations serialise")
    }
}

/// A frame with `faces` faces, the main one `face`.
pub fn crowd(face: &FakeFace, faces: usize) -> FrameObservation {
    FrameObservation { faces, ..face.observation() }
}

/// A frame with no face at all.
pub fn empty_frame() -> FrameObservation {
    FrameObservation { faces: 0, face: None, ..FakeFace::default().observation() }
}
