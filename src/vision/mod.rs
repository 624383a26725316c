//! Vision: frame bytes in, one [`FrameObservation`] out, computed with real models run by tract.
//!
//! The pipeline: decode ([`decode`]), detect faces (BlazeFace), mesh the main face (FaceMesh v2, 478 points),
//! score expressions (blendshapes), derive pose and openness from the mesh ([`face_metrics`]), and score passive
//! anti-spoofing (MiniFASNet) when its models are installed. Models load once into an [`Analyzer`], which is
//! `Send + Sync` and shared by reference; services depend on the [`FrameAnalyzer`] trait so tests can use fakes.

pub mod antispoof;
pub mod axes;
pub mod blendshapes;
pub mod broadcast;
pub mod conv;
pub mod decode;
pub mod depthwise;
pub mod detector;
pub mod face_metrics;
/// Test doubles: never in a release binary (`--features test-support` builds them for the tests).
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod geometry;
pub mod layer_norm;
pub mod max_pool;
pub mod memory;
pub mod mesh;
pub mod model_files;
pub mod onnx;
pub mod pad;
pub mod pointwise;
pub mod prelu;
pub mod reduce;
pub mod reference;
pub mod resample_avx2;
pub mod separable;
pub mod wide;

use std::path::Path;
use std::time::Instant;

pub use crate::domain::observation::{
    BoundingBox, FaceObservation, FaceQuality, FrameObservation, HeadPose, StageTimings, TrackingHint,
};
pub use decode::{decode_frame, DecodeError, DecodeLimits, DecodedFrame};
pub use geometry::CropRegion;
pub use onnx::ModelError;

pub use antispoof::AntiSpoofEnsemble;
use antispoof::AntiSpoofModels;
use blendshapes::BlendshapesModel;
use detector::{Detection, FaceDetector};
use mesh::{FaceMeshModel, Mesh};
use model_files::{ANTISPOOF_DIR, BLENDSHAPES_FILE, DETECTOR_FILE, MESH_FILE};

/// Below this mesh face-presence, the detector's face is taken for something else (a cat, a cup, a pattern).
const MIN_PRESENCE: f32 = 0.5;

/// Why a frame could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The bytes are not an acceptable image.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A model failed while running: a server-side fault, not the client's.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// How the analyser finds the face in a frame. The hints are the previous frame's
/// [`FaceObservation::next_region`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaceSearch<'a> {
    /// Run the detector and mesh its largest face.
    Detect,
    /// Mesh the face where it was; run the detector only if no face is there any more.
    Track(&'a TrackingHint),
    /// Mesh the face where it was, and run the detector as well to count the faces in view. The tracked face is
    /// kept only if the detector finds it too, or finds no face at all (it misses strongly turned heads); when
    /// the detector sees faces but not that one, the frame is analysed as with [`FaceSearch::Detect`].
    TrackAndCount(&'a TrackingHint),
}

/// A frame analysed but for passive anti-spoofing, which can be added when it turns out to be needed.
pub struct AnalysedFrame {
    /// The observation; its face's `antispoof_real` is `None` while `unscored` holds the face.
    pub observation: FrameObservation,
    /// What scoring the face needs, when it has a face and the analyser has the models.
    pub unscored: Option<UnscoredFace>,
}

/// The decoded frame and where its face is, kept to score the face later ([`FrameAnalyzer::score`]).
pub struct UnscoredFace {
    image: DecodedFrame,
    bbox: BoundingBox,
}

impl AnalysedFrame {
    /// Scores the face with `analyzer` if it is still unscored, and writes the score into the observation.
    pub fn score(&mut self, analyzer: &dyn FrameAnalyzer) -> Result<(), AnalysisError> {
        let Some(unscored) = self.unscored.take() else { return Ok(()) };
        let clock = Instant::now();
        let score = analyzer.score(&unscored)?;
        if let Some(face) = &mut self.observation.face {
            face.antispoof_real = Some(score);
        }
        let timings = &mut self.observation.timings_ms;
        timings.antispoof = ms(clock);
        timings.total += timings.antispoof;
        Ok(())
    }
}

/// Frame analysis as the rest of the service sees it: real models in production, fakes in tests.
pub trait FrameAnalyzer: Send + Sync {
    /// Analyses one encoded frame, finding its face as `search` says, passive anti-spoofing included.
    fn analyze(&self, bytes: &[u8], search: FaceSearch<'_>) -> Result<FrameObservation, AnalysisError>;

    /// As [`FrameAnalyzer::analyze`], leaving the passive anti-spoofing score to [`AnalysedFrame::score`], for a
    /// caller that scores only the frames that need it. An analyser that cannot defer it scores at once.
    fn analyze_unscored(&self, bytes: &[u8], search: FaceSearch<'_>) -> Result<AnalysedFrame, AnalysisError> {
        Ok(AnalysedFrame { observation: self.analyze(bytes, search)?, unscored: None })
    }

    /// The passive anti-spoofing score of a face [`FrameAnalyzer::analyze_unscored`] left unscored.
    fn score(&self, face: &UnscoredFace) -> Result<f32, AnalysisError> {
        let _ = face;
        Err(AnalysisError::Model(ModelError::Inference {
            model: "antispoof".into(),
            message: "this analyser leaves no face unscored".into(),
        }))
    }

    /// Whether passive anti-spoofing scores are produced.
    fn has_antispoof(&self) -> bool;
}

/// Tunable parts of the real analyser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalyzerOptions {
    /// Bounds on incoming frames.
    pub decode: DecodeLimits,
    /// Run the mesh a second time on the crop its first result implies (sharper landmarks, one more mesh run).
    pub refine_mesh: bool,
    /// Keep the 478 landmarks in the observation.
    pub keep_landmarks: bool,
    /// Which anti-spoofing models score each face.
    pub antispoof: AntiSpoofEnsemble,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        Self {
            decode: DecodeLimits::default(),
            refine_mesh: false,
            keep_landmarks: false,
            antispoof: AntiSpoofEnsemble::default(),
        }
    }
}

/// The real analyser: every model loaded and optimised once.
#[derive(Debug, Clone)]
pub struct Analyzer {
    detector: FaceDetector,
    mesh: FaceMeshModel,
    blendshapes: BlendshapesModel,
    antispoof: Option<AntiSpoofModels>,
    options: AnalyzerOptions,
}

impl Analyzer {
    /// Loads the committed models from `models_dir` and the anti-spoofing models from `models_dir/antispoof`
    /// when they are installed (their absence is not an error; a corrupt or partial install is).
    pub fn load(models_dir: &Path, options: AnalyzerOptions) -> Result<Self, ModelError> {
        Ok(Self {
            detector: FaceDetector::load(&models_dir.join(DETECTOR_FILE))?,
            mesh: FaceMeshModel::load(&models_dir.join(MESH_FILE))?,
            blendshapes: BlendshapesModel::load(&models_dir.join(BLENDSHAPES_FILE))?,
            antispoof: AntiSpoofModels::load(&models_dir.join(ANTISPOOF_DIR), options.antispoof)?,
            options,
        })
    }

    /// Analyses an already decoded image but for passive anti-spoofing.
    fn observe(&self, image: &image::RgbImage, search: FaceSearch<'_>) -> Result<FrameObservation, ModelError> {
        let started = Instant::now();
        let mut timings = StageTimings::default();
        let mut observation = FrameObservation {
            width: image.width(),
            height: image.height(),
            faces: 0,
            detector_ran: false,
            face: None,
            timings_ms: timings,
        };

        // A reused region skips detection only if the mesh still finds a face there.
        let (known_region, count_faces) = match search {
            FaceSearch::Detect => (None, false),
            FaceSearch::Track(hint) => (Some(CropRegion::from(*hint)), false),
            FaceSearch::TrackAndCount(hint) => (Some(CropRegion::from(*hint)), true),
        };
        let mut mesh = None;
        if let Some(region) = known_region {
            let clock = Instant::now();
            let tracked = self.mesh.run(image, &region)?;
            timings.mesh += ms(clock);
            if tracked.presence >= MIN_PRESENCE {
                observation.faces = 1;
                mesh = Some(tracked);
            }
        }
        let mut detections = None;
        if count_faces {
            if let Some(tracked) = &mesh {
                let found = self.detect(image, &mut timings)?;
                observation.detector_ran = true;
                let extent = tracked.extent();
                let confirmed = found.is_empty() || found.iter().any(|d| extent.contains(d.bbox.center()));
                if confirmed {
                    observation.faces = found.len().max(1);
                } else {
                    mesh = None;
                    detections = Some(found);
                }
            }
        }
        if mesh.is_none() {
            let detections = match detections {
                Some(found) => found,
                None => self.detect(image, &mut timings)?,
            };
            observation.detector_ran = true;
            observation.faces = detections.len();
            let main = detections.iter().max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()));
            if let Some(main) = main {
                let clock = Instant::now();
                let mut first = self.mesh.run(image, &main.mesh_region())?;
                if self.options.refine_mesh && first.presence >= MIN_PRESENCE {
                    first = self.mesh.run(image, &first.next_region())?;
                }
                timings.mesh += ms(clock);
                if first.presence >= MIN_PRESENCE {
                    mesh = Some(first);
                } else {
                    observation.faces -= 1;
                }
            }
        }

        if let Some(mesh) = mesh {
            observation.face = Some(self.describe_face(image, mesh, &mut timings)?);
        }
        timings.total = ms(started);
        observation.timings_ms = timings;
        Ok(observation)
    }

    /// The detector's faces, its time recorded in `timings`.
    fn detect(&self, image: &image::RgbImage, timings: &mut StageTimings) -> Result<Vec<Detection>, ModelError> {
        let clock = Instant::now();
        let found = self.detector.detect(image)?;
        timings.detect = ms(clock);
        Ok(found)
    }

    fn describe_face(
        &self,
        image: &image::RgbImage,
        mesh: Mesh,
        timings: &mut StageTimings,
    ) -> Result<FaceObservation, ModelError> {
        let clock = Instant::now();
        let expressions = self.blendshapes.run(&mesh)?;
        timings.expressions = ms(clock);
        let bbox = mesh.extent();
        Ok(FaceObservation {
            bbox,
            presence: mesh.presence,
            pose: face_metrics::head_pose(&mesh),
            eye_closure: face_metrics::eye_closure(&mesh),
            smile: expressions.smile,
            mouth_open: expressions.jaw_open,
            gaze: expressions.gaze,
            quality: face_metrics::face_quality(image, &mesh),
            antispoof_real: None,
            next_region: mesh.next_region().into(),
            landmarks: if self.options.keep_landmarks { mesh.points } else { Vec::new() },
        })
    }
}

impl FrameAnalyzer for Analyzer {
    fn analyze(&self, bytes: &[u8], search: FaceSearch<'_>) -> Result<FrameObservation, AnalysisError> {
        let mut analysed = self.analyze_unscored(bytes, search)?;
        analysed.score(self)?;
        Ok(analysed.observation)
    }

    fn analyze_unscored(&self, bytes: &[u8], search: FaceSearch<'_>) -> Result<AnalysedFrame, AnalysisError> {
        let clock = Instant::now();
        let image = decode_frame(bytes, &self.options.decode)?;
        let decode_ms = ms(clock);
        let mut observation = self.observe(&image, search)?;
        observation.timings_ms.decode = decode_ms;
        observation.timings_ms.total += decode_ms;
        let bbox = observation.face.as_ref().map(|face| face.bbox);
        let unscored = bbox.filter(|_| self.antispoof.is_some()).map(|bbox| UnscoredFace { image, bbox });
        Ok(AnalysedFrame { observation, unscored })
    }

    fn score(&self, face: &UnscoredFace) -> Result<f32, AnalysisError> {
        let models = self.antispoof.as_ref().ok_or_else(|| ModelError::Inference {
            model: "antispoof".into(),
            message: "the anti-spoofing models are not installed".into(),
        })?;
        Ok(models.real_score_for_mesh(&face.image, &face.bbox)?)
    }

    fn has_antispoof(&self) -> bool {
        self.antispoof.is_some()
    }
}

fn ms(since: Instant) -> f32 {
    since.elapsed().as_secs_f32() * 1000.0
}
