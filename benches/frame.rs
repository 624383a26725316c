//! Per-stage timings of one frame on one thread: `cargo bench --bench frame`.
//!
//! Prints the median and 90th percentile of each stage over many runs on a 480x640 live JPEG from
//! `../shared/testdata`. Under `cargo test` (no `--bench` argument) it runs each stage a few times as a smoke test.

use std::path::Path;
use std::time::Instant;

use liveness::vision::antispoof::{AntiSpoofEnsemble, AntiSpoofModels};
use liveness::vision::blendshapes::BlendshapesModel;
use liveness::vision::detector::FaceDetector;
use liveness::vision::mesh::FaceMeshModel;
use liveness::vision::model_files::{self, default_models_dir};
use liveness::vision::{decode_frame, Analyzer, AnalyzerOptions, DecodeLimits, FaceSearch, FrameAnalyzer};

fn measure(name: &str, runs: usize, mut f: impl FnMut()) {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[runs / 2];
    let p90 = times[runs * 9 / 10];
    println!("{name:<40} median {median:>7.2} ms   p90 {p90:>7.2} ms   ({runs} runs)");
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let runs = if benchmarking { 200 } else { 3 };
    let runs = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(runs);
    let models = default_models_dir();
    let frame_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/spoof/minivision_T1_live.jpg");
    let bytes = std::fs::read(&frame_path).expect("the shared test data is beside the project");
    let limits = DecodeLimits::default();
    let image = decode_frame(&bytes, &limits).unwrap();
    println!("frame: {} ({}x{}, {} bytes)", frame_path.display(), image.width(), image.height(), bytes.len());

    let detector = FaceDetector::load(&models.join(model_files::DETECTOR_FILE)).unwrap();
    let mesh_model = FaceMeshModel::load(&models.join(model_files::MESH_FILE)).unwrap();
    let blendshapes = BlendshapesModel::load(&models.join(model_files::BLENDSHAPES_FILE)).unwrap();
    let antispoof_dir = models.join(model_files::ANTISPOOF_DIR);
    let antispoof = AntiSpoofModels::load(&antispoof_dir, AntiSpoofEnsemble::V2Only).unwrap();
    let antispoof_both = AntiSpoofModels::load(&antispoof_dir, AntiSpoofEnsemble::Both).unwrap();
    let detection = detector.detect(&image).unwrap().remove(0);
    let mesh = mesh_model.run(&image, &detection.mesh_region()).unwrap();

    let mesh_only =
        liveness::vision::onnx::OnnxModel::load(&models.join(model_files::MESH_FILE), &[1, 256, 256, 3]).unwrap();
    measure("mesh model alone (tract run, no pre/post)", runs, || {
        std::hint::black_box(mesh_only.run(vec![0.5; 256 * 256 * 3]).unwrap());
    });
    measure("decode", runs, || {
        std::hint::black_box(decode_frame(&bytes, &limits).unwrap());
    });
    measure("detect (BlazeFace short)", runs, || {
        std::hint::black_box(detector.detect(&image).unwrap());
    });
    measure("mesh (FaceMesh v2, one pass)", runs, || {
        std::hint::black_box(mesh_model.run(&image, &mesh.next_region()).unwrap());
    });
    measure("expressions (blendshapes)", runs, || {
        std::hint::black_box(blendshapes.run(&mesh).unwrap());
    });
    match &antispoof {
        Some(models) => measure("antispoof (MiniFASNet V2 alone)", runs, || {
            std::hint::black_box(models.real_score_for_mesh(&image, &mesh.extent()).unwrap());
        }),
        None => println!("antispoof: models not installed, skipped"),
    }
    if let Some(models) = &antispoof_both {
        measure("antispoof (MiniFASNet V2 + V1SE)", runs, || {
            std::hint::black_box(models.real_score_for_mesh(&image, &mesh.extent()).unwrap());
        });
    }

    for (name, refine) in
        [("whole frame, cold (detect + 2 mesh passes)", true), ("whole frame, cold (detect + 1 mesh)", false)]
    {
        let analyzer = Analyzer::load(&models, AnalyzerOptions { refine_mesh: refine, ..Default::default() }).unwrap();
        measure(name, runs, || {
            std::hint::black_box(analyzer.analyze(&bytes, FaceSearch::Detect).unwrap());
        });
    }
    let analyzer = Analyzer::load(&models, AnalyzerOptions::default()).unwrap();
    let known = analyzer.analyze(&bytes, FaceSearch::Detect).unwrap().face.unwrap().next_region;
    measure("whole frame, tracked (known region)", runs, || {
        let observation = analyzer.analyze(&bytes, FaceSearch::Track(&known)).unwrap();
        assert!(!observation.detector_ran);
    });
}
