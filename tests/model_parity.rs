//! tract against onnxruntime: each model, fed a fixed input, must give the outputs onnxruntime 1.x gave for it.
//! The reference figures were computed once with `tools/onnx_reference.py`; the input formula is the same here.

use std::path::{Path, PathBuf};

use liveness::vision::model_files::{ANTISPOOF_DIR, ANTISPOOF_FILES};
use liveness::vision::onnx::OnnxModel;

/// Output of onnxruntime for one model output: the sum of all values and the first four.
struct Reference {
    sum: f64,
    first: [f32; 4],
}

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn fixed_input(len: usize, scale: f32, offset: f32) -> Vec<f32> {
    (0..len as u64).map(|i| ((i * 7919) % 251) as f32 / 250.0 * scale + offset).collect()
}

fn check(path: &Path, shape: &[usize], scale: f32, offset: f32, expected: &[Option<Reference>]) {
    let model = OnnxModel::load(path, shape).unwrap();
    let input = fixed_input(shape.iter().product(), scale, offset);
    // Another input first: the checked run reuses the first run's state, as every run in the service does.
    let mut other = input.clone();
    other.reverse();
    let first_run = model.run(other).unwrap();
    let outputs = model.run(input).unwrap();
    assert_ne!(first_run, outputs, "{path:?}: two inputs, one output");
    for (index, (output, reference)) in outputs.iter().zip(expected).enumerate() {
        let Some(reference) = reference else { continue };
        for (k, (&got, &want)) in output.iter().zip(&reference.first).enumerate() {
            let tolerance = 1e-3 * want.abs().max(1.0);
            assert!(
                (got - want).abs() <= tolerance,
                "{path:?} output {index} value {k}: tract {got}, onnxruntime {want}"
            );
        }
        let sum: f64 = output.iter().map(|&v| f64::from(v)).sum();
        let tolerance = 1e-4 * reference.sum.abs().max(1.0) + 1e-3 * (output.len() as f64).sqrt();
        assert!(
            (sum - reference.sum).abs() <= tolerance,
            "{path:?} output {index}: sum {sum}, onnxruntime {}",
            reference.sum
        );
    }
}

#[test]
fn detector_matches_onnxruntime() {
    check(
        &models_dir().join("blazeface_short.onnx"),
        &[1, 128, 128, 3],
        2.0,
        -1.0,
        &[
            Some(Reference { sum: 85651.138049, first: [0.373378, -0.41221, 26.354328, 26.354128] }),
            Some(Reference { sum: -4541.254816, first: [-4.491879, -4.095714, -4.311935, -3.81281] }),
        ],
    );
}

#[test]
fn face_mesh_matches_onnxruntime() {
    check(
        &models_dir().join("facemesh_v2.onnx"),
        &[1, 256, 256, 3],
        1.0,
        0.0,
        &[
            Some(Reference { sum: 126731.561550, first: [148.473206, 163.361176, -28.315628, 152.269547] }),
            Some(Reference { sum: -13.115877, first: [-13.115877, 0.0, 0.0, 0.0] }),
        ],
    );
}

#[test]
fn face_mesh_loaded_planar_as_the_service_loads_it_gives_the_same_outputs() {
    let path = models_dir().join("facemesh_v2.onnx");
    let interleaved = fixed_input(256 * 256 * 3, 1.0, 0.0);
    let planes: Vec<f32> = (0..3).flat_map(|c| interleaved.iter().skip(c).step_by(3).copied()).collect();
    let as_read = OnnxModel::load(&path, &[1, 256, 256, 3]).unwrap().run(interleaved).unwrap();
    let planar = OnnxModel::load_planar(&path, [1, 256, 256, 3]).unwrap().run(planes).unwrap();
    for (index, (a, b)) in as_read.iter().zip(&planar).enumerate() {
        assert_eq!(a.len(), b.len());
        let worst = a.iter().zip(b).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "output {index}: planar differs by {worst}");
    }
}

#[test]
fn blendshapes_match_onnxruntime() {
    check(
        &models_dir().join("face_blendshapes.onnx"),
        &[1, 146, 2],
        256.0,
        0.0,
        &[Some(Reference { sum: 11.286637, first: [0.006109, 0.056378, 0.025482, 0.772515] })],
    );
}

#[test]
fn antispoof_models_match_onnxruntime() {
    let dir = models_dir().join(ANTISPOOF_DIR);
    let references = [
        Reference { sum: -0.002436, first: [-4.608594, 4.045268, 0.560891, 0.0] },
        Reference { sum: -0.002755, first: [-3.699839, 7.210624, -3.513541, 0.0] },
    ];
    for (file, reference) in ANTISPOOF_FILES.iter().zip(references) {
        check(&dir.join(file.name), &[1, 3, 80, 80], 255.0, 0.0, &[Some(reference)]);
    }
}
