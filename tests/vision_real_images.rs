//! The real analyser on real photographs from `../shared/testdata` (see its MANIFEST for what each shows).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use liveness::vision::model_files::{self, default_models_dir};
use liveness::vision::{
    AnalysisError, Analyzer, AnalyzerOptions, DecodeError, FaceObservation, FaceSearch, FrameAnalyzer, FrameObservation,
};

fn testdata(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata").join(relative)
}

fn analyzer() -> &'static Analyzer {
    static ANALYZER: OnceLock<Analyzer> = OnceLock::new();
    ANALYZER.get_or_init(|| Analyzer::load(&default_models_dir(), AnalyzerOptions::default()).unwrap())
}

fn observe(relative: &str) -> FrameObservation {
    let bytes = std::fs::read(testdata(relative)).unwrap();
    analyzer().analyze(&bytes, FaceSearch::Detect).unwrap()
}

fn main_face(relative: &str) -> FaceObservation {
    let observation = observe(relative);
    assert_eq!(observation.faces, 1, "{relative}: {observation:?}");
    observation.face.unwrap()
}

#[test]
fn counts_faces() {
    assert_eq!(observe("multi/mediapipe_testImg_two_faces.jpeg").faces, 2);
    assert_eq!(observe("multi/pexels5919213_three_faces.jpg").faces, 3);
    // BlazeFace short range finds 6 of the 7 (its known limit in group photos); what matters is "several".
    assert!(observe("multi/pexels4262414_seven_faces.jpg").faces >= 5);
    for file in ["expression/pexels4195444_neutral_frontal.jpg", "spoof/minivision_T1_live.jpg"] {
        assert_eq!(observe(file).faces, 1, "{file}");
    }
}

#[test]
fn finds_no_face_where_there_is_none() {
    for file in [
        "noface/pexels5325840_eye_closeup.jpg",
        "noface/pexels6945091_eye_closeup.jpg",
        "noface/skimage_chelsea_cat.png",
        "noface/skimage_coffee.png",
    ] {
        let observation = observe(file);
        assert_eq!(observation.faces, 0, "{file}");
        assert!(observation.face.is_none(), "{file}");
    }
}

#[test]
fn yaw_sign_and_size_on_turned_heads() {
    // Turned to the subject's right (image left): negative yaw.
    let right = main_face("pose/pexels6140931_yaw_looking_aside.jpg").pose;
    assert!((-50.0..=-20.0).contains(&right.yaw), "{right:?}");
    // Looking to image right, which is the subject's left: positive yaw.
    let left = main_face("pose/pexels6567248_yaw_looking_aside.jpg").pose;
    assert!((20.0..=50.0).contains(&left.yaw), "{left:?}");
    for file in ["expression/pexels4195444_neutral_frontal.jpg", "expression/skimage_astronaut_smile_frontal.png"] {
        let pose = main_face(file).pose;
        assert!(pose.yaw.abs() < 10.0 && pose.roll.abs() < 10.0, "{file}: {pose:?}");
    }
}

#[test]
fn pitch_is_near_level_on_frontal_faces() {
    for file in ["expression/pexels4195444_neutral_frontal.jpg", "expression/pexels3780866_smile_frontal.jpg"] {
        let pose = main_face(file).pose;
        assert!(pose.pitch.abs() < 10.0, "{file}: {pose:?}");
    }
}

#[test]
fn wink_closes_one_eye() {
    // The subject winks with their right eye.
    let [left, right] = main_face("expression/pexels7142955_wink_mouth_open.jpg").eye_closure;
    assert!(right > 0.5 && left < 0.3 && right - left > 0.3, "left {left}, right {right}");
    for file in ["expression/pexels4195444_neutral_frontal.jpg", "spoof/minivision_T1_live.jpg"] {
        let [left, right] = main_face(file).eye_closure;
        assert!(left < 0.4 && right < 0.4, "{file}: {left} {right}");
    }
}

#[test]
fn smiling_versus_neutral() {
    for file in [
        "expression/pexels3780866_smile_frontal.jpg",
        "expression/skimage_astronaut_smile_frontal.png",
        "expression/pexels5709614_smile_head_turned.jpg",
    ] {
        assert!(main_face(file).smile > 0.6, "{file}");
    }
    for file in ["expression/pexels4195444_neutral_frontal.jpg", "spoof/minivision_T1_live.jpg"] {
        assert!(main_face(file).smile < 0.1, "{file}");
    }
}

#[test]
fn mouth_open_versus_closed() {
    assert!(main_face("expression/pexels7142955_wink_mouth_open.jpg").mouth_open > 0.4);
    for file in ["expression/pexels4195444_neutral_frontal.jpg", "expression/skimage_astronaut_smile_frontal.png"] {
        assert!(main_face(file).mouth_open < 0.1, "{file}");
    }
}

#[test]
fn antispoof_separates_live_from_spoof_samples() {
    assert!(
        analyzer().has_antispoof(),
        "install the models: liveness models install --from ../shared/models/antispoof"
    );
    let score = |file: &str| main_face(file).antispoof_real.unwrap();
    for file in ["spoof/minivision_T1_live.jpg", "spoof/minivision_T2_live.jpg"] {
        assert!(score(file) > 0.5, "{file}: {}", score(file));
    }
    for file in ["spoof/minivision_F1_print_attack.jpg", "spoof/minivision_F2_screen_replay.jpg"] {
        assert!(score(file) < 0.5, "{file}: {}", score(file));
    }
}

#[test]
fn without_antispoof_models_the_score_is_absent() {
    let dir = std::env::temp_dir().join(format!("liveness-no-antispoof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in [model_files::DETECTOR_FILE, model_files::MESH_FILE, model_files::BLENDSHAPES_FILE] {
        std::fs::copy(default_models_dir().join(file), dir.join(file)).unwrap();
    }
    let analyzer = Analyzer::load(&dir, AnalyzerOptions::default()).unwrap();
    assert!(!analyzer.has_antispoof());
    let bytes = std::fs::read(testdata("spoof/minivision_T1_live.jpg")).unwrap();
    let face = analyzer.analyze(&bytes, FaceSearch::Detect).unwrap().face.unwrap();
    assert_eq!(face.antispoof_real, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_known_region_skips_detection_and_agrees_with_a_cold_frame() {
    let bytes = std::fs::read(testdata("pose/pexels6140931_yaw_looking_aside.jpg")).unwrap();
    let cold = analyzer().analyze(&bytes, FaceSearch::Detect).unwrap();
    let cold_face = cold.face.unwrap();
    let tracked = analyzer().analyze(&bytes, FaceSearch::Track(&cold_face.next_region)).unwrap();
    assert!(cold.detector_ran && !tracked.detector_ran);
    let tracked_face = tracked.face.unwrap();
    assert!((tracked_face.pose.yaw - cold_face.pose.yaw).abs() < 3.0);
    assert!(tracked_face.bbox.iou(&cold_face.bbox) > 0.9);
}

#[test]
fn tracking_with_a_count_keeps_the_tracked_face_and_sees_the_others() {
    // One face: the detector confirms the tracked face, which is kept as it is.
    let bytes = std::fs::read(testdata("spoof/minivision_T1_live.jpg")).unwrap();
    let cold = analyzer().analyze(&bytes, FaceSearch::Detect).unwrap().face.unwrap();
    let tracked = analyzer().analyze(&bytes, FaceSearch::Track(&cold.next_region)).unwrap();
    let counted = analyzer().analyze(&bytes, FaceSearch::TrackAndCount(&cold.next_region)).unwrap();
    assert!(counted.detector_ran);
    assert_eq!(counted.faces, 1);
    assert_eq!(counted.face.unwrap().bbox, tracked.face.unwrap().bbox, "the tracked mesh, not a new one");

    // Several faces: tracking one of them, the count still sees every face.
    let group = std::fs::read(testdata("multi/pexels5919213_three_faces.jpg")).unwrap();
    let detected = analyzer().analyze(&group, FaceSearch::Detect).unwrap();
    let region = detected.face.unwrap().next_region;
    assert_eq!(analyzer().analyze(&group, FaceSearch::Track(&region)).unwrap().faces, 1);
    let counted = analyzer().analyze(&group, FaceSearch::TrackAndCount(&region)).unwrap();
    assert_eq!(counted.faces, detected.faces);
    assert!(counted.faces >= 2, "{counted:?}");
}

#[test]
fn tracking_with_a_count_drops_a_face_the_detector_does_not_see() {
    // The region of the face in one photo, applied to another photo whose face is elsewhere: whatever the
    // mesh makes of that region, the detector's face decides.
    let two = std::fs::read(testdata("multi/mediapipe_testImg_two_faces.jpeg")).unwrap();
    let detected = analyzer().analyze(&two, FaceSearch::Detect).unwrap();
    let other = std::fs::read(testdata("spoof/minivision_T1_live.jpg")).unwrap();
    let elsewhere = analyzer().analyze(&other, FaceSearch::Detect).unwrap().face.unwrap().next_region;
    let counted = analyzer().analyze(&two, FaceSearch::TrackAndCount(&elsewhere)).unwrap();
    assert_eq!(counted.faces, detected.faces);
    assert_eq!(counted.face.map(|f| f.bbox), detected.face.map(|f| f.bbox));
}

#[test]
fn a_stale_region_falls_back_to_detection() {
    let face_bytes = std::fs::read(testdata("spoof/minivision_T1_live.jpg")).unwrap();
    let region = analyzer().analyze(&face_bytes, FaceSearch::Detect).unwrap().face.unwrap().next_region;
    let no_face = std::fs::read(testdata("noface/skimage_coffee.png")).unwrap();
    let observation = analyzer().analyze(&no_face, FaceSearch::Track(&region)).unwrap();
    assert!(observation.detector_ran);
    assert_eq!(observation.faces, 0);
}

#[test]
fn bad_bytes_are_decode_errors() {
    let error = analyzer().analyze(b"definitely not an image, just some text bytes", FaceSearch::Detect).unwrap_err();
    assert!(matches!(error, AnalysisError::Decode(DecodeError::UnrecognisedFormat)), "{error}");
    let jpeg = std::fs::read(testdata("spoof/minivision_T1_live.jpg")).unwrap();
    let error = analyzer().analyze(&jpeg[..jpeg.len() / 2], FaceSearch::Detect).unwrap_err();
    assert!(matches!(error, AnalysisError::Decode(DecodeError::Corrupt(_))), "{error}");
}
