//! Evidence for choices in the vision pipeline, on real images: `cargo run --release --example measure -- IMAGE...`
//! - expressions: the blendshape scores beside the mesh's eye and mouth aspect ratios;
//! - anti-spoofing: MiniFASNet's "real" score (V2 and V1SE averaged) for several choices of the box its crop is
//!   scaled from, and each model's score alone for the chosen box.

use liveness::vision::antispoof::{AntiSpoofEnsemble, AntiSpoofModels};
use liveness::vision::blendshapes::BlendshapesModel;
use liveness::vision::detector::FaceDetector;
use liveness::vision::face_metrics::{eye_aspect_ratios, mouth_aspect_ratio};
use liveness::vision::mesh::FaceMeshModel;
use liveness::vision::model_files::{self, default_models_dir};
use liveness::vision::{decode_frame, BoundingBox, DecodeLimits};

fn scaled(b: &BoundingBox, sx: f32, sy: f32, shift_y: f32) -> BoundingBox {
    let (cx, cy) = b.center();
    let (w, h) = (b.width * sx, b.height * sy);
    BoundingBox { x: cx - w / 2.0, y: cy - h / 2.0 + shift_y * b.height, width: w, height: h }
}

fn main() {
    let dir = default_models_dir();
    let detector = FaceDetector::load(&dir.join(model_files::DETECTOR_FILE)).unwrap();
    let mesh_model = FaceMeshModel::load(&dir.join(model_files::MESH_FILE)).unwrap();
    let blendshapes = BlendshapesModel::load(&dir.join(model_files::BLENDSHAPES_FILE)).unwrap();
    let antispoof = AntiSpoofModels::load(&dir.join(model_files::ANTISPOOF_DIR), AntiSpoofEnsemble::Both)
        .unwrap()
        .expect("install the models");
    let variants: [(&str, &dyn Fn(&BoundingBox, &BoundingBox) -> BoundingBox); 8] = [
        ("detector", &|d, _| *d),
        ("mesh", &|_, m| *m),
        ("mesh x0.8", &|_, m| scaled(m, 0.8, 0.8, 0.0)),
        ("mesh x0.85", &|_, m| scaled(m, 0.85, 0.85, 0.0)),
        ("mesh x0.9", &|_, m| scaled(m, 0.9, 0.9, 0.0)),
        ("mesh x0.95", &|_, m| scaled(m, 0.95, 0.95, 0.0)),
        ("mesh x0.9 up", &|_, m| scaled(m, 0.9, 0.9, -0.05)),
        ("mesh x0.9 down", &|_, m| scaled(m, 0.9, 0.9, 0.05)),
    ];
    print!("{:<48}", "image");
    for (name, _) in &variants {
        print!("{name:>18}");
    }
    println!();
    for file in std::env::args().skip(1) {
        let image = decode_frame(&std::fs::read(&file).unwrap(), &DecodeLimits::default()).unwrap();
        let detections = detector.detect(&image).unwrap();
        let Some(main) = detections.iter().max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area())) else {
            continue;
        };
        let first = mesh_model.run(&image, &main.mesh_region()).unwrap();
        let mesh = mesh_model.run(&image, &first.next_region()).unwrap();
        let e = blendshapes.run(&mesh).unwrap();
        let [ear_left, ear_right] = eye_aspect_ratios(&mesh);
        println!(
            "{:<48} blink L {:.3} R {:.3} | EAR L {:.3} R {:.3} | smile {:.3} | jawOpen {:.3} MAR {:.3}",
            file.rsplit('/').next().unwrap(),
            e.eye_blink_left,
            e.eye_blink_right,
            ear_left,
            ear_right,
            e.smile,
            e.jaw_open,
            mouth_aspect_ratio(&mesh)
        );
        let per_model = antispoof.real_score_per_model(&image, &mesh.extent().scaled(0.8)).unwrap();
        println!("{:<48} chosen box: V2 {:.3} V1SE {:.3}", "", per_model[0], per_model[1]);
        print!("{:<48}", "");
        for (_, make) in &variants {
            let score = antispoof.real_score(&image, &make(&main.bbox, &mesh.extent())).unwrap();
            print!("{score:>18.3}");
        }
        println!();
    }
}
