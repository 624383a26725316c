//! Where tract spends its time in each model: the share of every operator kind over many runs on one thread.
//!
//! `cargo run --release --example profile_models [-- RUNS [NODES]]` (models from `models/`, anti-spoofing ones if
//! installed); with NODES, also the NODES slowest nodes of each model, with their output shapes. It answers "which
//! operators make tract slower than onnxruntime here" without the tract CLI.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use liveness::vision::model_files::{self, default_models_dir};
use liveness::vision::onnx::OnnxModel;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

/// How the service loads a model: as read, or (FaceMesh) reading planes, its input transpose dropped.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    AsRead,
    Planar,
}

fn profile(path: &Path, shape: &[usize], load: Load, runs: usize, nodes: usize) -> TractResult<()> {
    // Loaded as the service loads it, rewrites included.
    let model = match load {
        Load::AsRead => OnnxModel::load(path, shape)?,
        Load::Planar => OnnxModel::load_planar(path, [shape[0], shape[1], shape[2], shape[3]])?,
    };
    let run_shape: Vec<usize> = match load {
        Load::AsRead => shape.to_vec(),
        Load::Planar => vec![shape[0], shape[3], shape[1], shape[2]],
    };
    let plan = model.plan();
    let input: Tensor = tract_ndarray::ArrayD::<f32>::from_elem(&*run_shape, 0.5).into();
    let as_read_input: Tensor = tract_ndarray::ArrayD::<f32>::from_elem(shape, 0.5).into();
    let mut by_op: HashMap<String, (Duration, usize)> = HashMap::new();
    let mut by_node: HashMap<usize, Duration> = HashMap::new();
    let mut total = Duration::ZERO;
    for run in 0..=runs {
        let mut state = SimpleState::new(plan)?;
        let started = Instant::now();
        let mut timings = Vec::new();
        state.run_plan_with_eval(tvec!(input.clone().into()), |context, op_state, node, inputs| {
            let op_started = Instant::now();
            let outputs = eval(context, op_state, node, inputs);
            timings.push((node.id, node.op().name().to_string(), op_started.elapsed()));
            outputs
        })?;
        // The first run warms caches and is not counted.
        if run > 0 {
            total += started.elapsed();
            for (id, name, time) in timings {
                *by_node.entry(id).or_default() += time;
                let entry = by_op.entry(name).or_default();
                entry.0 += time;
                entry.1 += 1;
            }
        }
    }
    let as_read = tract_onnx::onnx()
        .model_for_path(path)?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let plain = |plan: &Arc<TypedRunnableModel>, input: &Tensor| -> TractResult<f64> {
        let mut times = (0..=runs)
            .map(|_| {
                let started = Instant::now();
                plan.run(tvec!(input.clone().into()))?;
                Ok(started.elapsed().as_secs_f64() * 1000.0)
            })
            .collect::<TractResult<Vec<f64>>>()?;
        times.sort_by(f64::total_cmp);
        Ok(times[runs / 2])
    };
    println!(
        "\n{}: median {:.2} ms as the service loads it, {:.2} ms as tract reads the file",
        path.display(),
        plain(plan, &input)?,
        plain(&as_read, &as_read_input)?
    );
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1 .0));
    let per_run = |d: Duration| d.as_secs_f64() * 1000.0 / runs as f64;
    println!("timed node by node: {:.2} ms a run ({} nodes)", per_run(total), plan.model().nodes.len());
    for (name, (time, count)) in rows.iter().take(12) {
        println!(
            "  {name:<28} {:>7.2} ms  {:>5.1} %  ({} nodes)",
            per_run(*time),
            100.0 * time.as_secs_f64() / total.as_secs_f64(),
            count / runs
        );
    }
    let mut slowest: Vec<_> = by_node.into_iter().collect();
    slowest.sort_by_key(|node| std::cmp::Reverse(node.1));
    for (id, time) in slowest.into_iter().take(nodes) {
        let node = &plan.model().nodes[id];
        let shape = plan
            .model()
            .outlet_fact(OutletId::new(id, 0))?
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        println!("  node {id:>4} {:<24} {:>7.3} ms  out {shape}  {}", node.op().name(), per_run(time), node.name);
    }
    Ok(())
}

fn main() -> TractResult<()> {
    let runs = std::env::args().nth(1).and_then(|r| r.parse().ok()).unwrap_or(50);
    let nodes = std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    let models = default_models_dir();
    let antispoof = models.join(model_files::ANTISPOOF_DIR);
    let all = [
        (models.join(model_files::DETECTOR_FILE), vec![1, 128, 128, 3], Load::AsRead),
        (models.join(model_files::MESH_FILE), vec![1, 256, 256, 3], Load::Planar),
        (models.join(model_files::BLENDSHAPES_FILE), vec![1, 146, 2], Load::AsRead),
        (antispoof.join("2.7_80x80_MiniFASNetV2.onnx"), vec![1, 3, 80, 80], Load::AsRead),
    ];
    for (path, shape, load) in all {
        if path.exists() {
            profile(&path, &shape, load, runs, nodes)?;
        } else {
            println!("\n{}: not installed, skipped", path.display());
        }
    }
    Ok(())
}
