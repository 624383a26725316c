//! Where a frame's analysis time goes, stage by stage (decode, detector, mesh, expressions, anti-spoofing), over a
//! folder of real frames analysed in order as one session would: tracked from the previous frame's region, or with
//! `--cold` from scratch (detector and mesh) every frame. Prints each stage's median over rounds 2 and 3.
//!
//!     ffmpeg -i ../shared/testdata/genuine/Fellway_face_smile.mp4 -vf fps=8 -q:v 3 /tmp/frames/f%03d.jpg
//!     cargo run --release --example stage_times -- /tmp/frames [--cold]

use liveness::vision::model_files::default_models_dir;
use liveness::vision::{Analyzer, AnalyzerOptions, FaceSearch, FrameAnalyzer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = args.next().ok_or("usage: stage_times FOLDER [--cold]")?;
    let cold = args.next().as_deref() == Some("--cold");
    let analyzer = Analyzer::load(&default_models_dir(), AnalyzerOptions::default())?;
    let mut paths: Vec<_> =
        std::fs::read_dir(&folder)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    paths.sort();
    let frames = paths.iter().map(std::fs::read).collect::<Result<Vec<_>, _>>()?;
    let mut stages: Vec<[f32; 6]> = Vec::new();
    for round in 0..3 {
        let mut region = None;
        for bytes in &frames {
            let search = match &region {
                Some(region) if !cold => FaceSearch::Track(region),
                _ => FaceSearch::Detect,
            };
            let observation = analyzer.analyze(bytes, search)?;
            let t = observation.timings_ms;
            // A session's first frame is always cold: left out of the tracked figures.
            if round > 0 && (cold || region.is_some()) {
                stages.push([t.decode, t.detect, t.mesh, t.expressions, t.antispoof, t.total]);
            }
            region = observation.face.map(|face| face.next_region);
        }
    }
    println!("{} frames, {}", stages.len(), if cold { "each from scratch" } else { "tracked" });
    for (index, name) in ["decode", "detector", "mesh", "expressions", "anti-spoofing", "total"].iter().enumerate() {
        let mut times: Vec<f32> = stages.iter().map(|s| s[index]).collect();
        times.sort_by(f32::total_cmp);
        println!("  {name:<14} p50 {:.2} ms", times.get(times.len() / 2).copied().unwrap_or(f32::NAN));
    }
    Ok(())
}
