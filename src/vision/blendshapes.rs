//! MediaPipe's blendshapes model: 52 expression scores in 0..1 from 146 of the mesh's points.

use std::path::Path;

use super::mesh::Mesh;
use super::onnx::{ModelError, OnnxModel};
use crate::domain::Gaze;

/// The mesh points the model reads, in its input order.
const INPUT_POINTS: [usize; 146] = [
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153,
    154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249, 251,
    263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318,
    321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386,
    387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
];

/// Output positions of the scores we use.
const EYE_BLINK_LEFT: usize = 9;
const EYE_BLINK_RIGHT: usize = 10;
const EYE_LOOK_DOWN_LEFT: usize = 11;
const EYE_LOOK_DOWN_RIGHT: usize = 12;
const EYE_LOOK_UP_LEFT: usize = 17;
const EYE_LOOK_UP_RIGHT: usize = 18;
const JAW_OPEN: usize = 25;
const MOUTH_SMILE_LEFT: usize = 44;
const MOUTH_SMILE_RIGHT: usize = 45;

/// The expression scores the service uses, each 0..1. "Left" and "right" are the user's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expressions {
    pub eye_blink_left: f32,
    pub eye_blink_right: f32,
    pub smile: f32,
    pub jaw_open: f32,
    pub gaze: Gaze,
}

/// The blendshapes model, loaded once.
#[derive(Debug, Clone)]
pub struct BlendshapesModel {
    model: OnnxModel,
}

impl BlendshapesModel {
    /// Loads `face_blendshapes.onnx`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Ok(Self { model: OnnxModel::load(path, &[1, INPUT_POINTS.len(), 2])? })
    }

    /// Scores the expressions of one mesh.
    pub fn run(&self, mesh: &Mesh) -> Result<Expressions, ModelError> {
        let input = INPUT_POINTS.iter().flat_map(|&i| [mesh.points[i][0], mesh.points[i][1]]).collect();
        let scores = &self.model.run(input)?[0];
        Ok(Expressions {
            eye_blink_left: scores[EYE_BLINK_LEFT],
            eye_blink_right: scores[EYE_BLINK_RIGHT],
            smile: (scores[MOUTH_SMILE_LEFT] + scores[MOUTH_SMILE_RIGHT]) / 2.0,
            jaw_open: scores[JAW_OPEN],
            gaze: Gaze {
                down: (scores[EYE_LOOK_DOWN_LEFT] + scores[EYE_LOOK_DOWN_RIGHT]) / 2.0,
                up: (scores[EYE_LOOK_UP_LEFT] + scores[EYE_LOOK_UP_RIGHT]) / 2.0,
            },
        })
    }
}
