//! FaceMesh v2: 478 landmarks (468 face points and 10 iris points) from an eyes-level crop of one face.

use std::path::Path;

use image::RgbImage;

use super::geometry::{resample_into, Border, BoundingBox, CropRegion, Layout};
use super::onnx::{ModelError, OnnxModel};

const SIZE: usize = 256;
/// Number of landmarks the model returns.
pub const LANDMARKS: usize = 478;
/// The outer corners of the user's right and left eyes.
const RIGHT_EYE_OUTER: usize = 33;
const LEFT_EYE_OUTER: usize = 263;

/// A mesh in image pixels. `z` is depth relative to the face centre, in the same pixel scale, growing away from
/// the camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    pub points: Vec<[f32; 3]>,
    /// Sigmoid of the model's face-presence logit: about 1 on a face, near 0 on anything else.
    pub presence: f32,
    /// The region the mesh was computed from.
    pub region: CropRegion,
}

impl Mesh {
    /// One landmark's image position.
    pub fn xy(&self, index: usize) -> (f32, f32) {
        (self.points[index][0], self.points[index][1])
    }

    /// The box spanned by the 468 face points (irises excluded).
    pub fn extent(&self) -> BoundingBox {
        BoundingBox::around(self.points[..468].iter().map(|p| (p[0], p[1]))).expect("a mesh has points")
    }

    /// The crop to run the mesh on next, for this face in this frame or the next: centred on the mesh, 1.5 times
    /// its longer side, rotated so the eyes are level.
    pub fn next_region(&self) -> CropRegion {
        let extent = self.extent();
        let (center_x, center_y) = extent.center();
        let side = 1.5 * extent.width.max(extent.height);
        let (right, left) = (self.xy(RIGHT_EYE_OUTER), self.xy(LEFT_EYE_OUTER));
        let angle = (left.1 - right.1).atan2(left.0 - right.0);
        CropRegion { center_x, center_y, width: side, height: side, angle }
    }
}

/// The face-mesh model, loaded once.
#[derive(Debug, Clone)]
pub struct FaceMeshModel {
    model: OnnxModel,
}

impl FaceMeshModel {
    /// Loads `facemesh_v2.onnx`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Ok(Self { model: OnnxModel::load_planar(path, [1, SIZE, SIZE, 3])? })
    }

    /// Runs the mesh on `region` of the image.
    pub fn run(&self, image: &RgbImage, region: &CropRegion) -> Result<Mesh, ModelError> {
        let mut input = vec![0.0; SIZE * SIZE * 3];
        resample_into(image, region, SIZE, SIZE, Border::Replicate, 1.0 / 255.0, Layout::Planar, &mut input);
        let outputs = self.model.run(input)?;
        let z_scale = region.width / SIZE as f32;
        let points = outputs[0]
            .chunks_exact(3)
            .take(LANDMARKS)
            .map(|p| {
                let (x, y) = region.to_image(p[0], p[1], SIZE, SIZE);
                [x, y, p[2] * z_scale]
            })
            .collect();
        let logit = outputs[1][0].clamp(-100.0, 100.0);
        Ok(Mesh { points, presence: 1.0 / (1.0 + (-logit).exp()), region: *region })
    }
}
