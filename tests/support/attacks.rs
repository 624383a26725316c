//! The attack suite's material: presentation attacks and genuine sequences built from the real images in
//! `../shared/testdata`, driven through the service with the real models, and a table of what stopped each.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use image::codecs::jpeg::JpegEncoder;
use image::{imageops, Rgb, RgbImage};
use liveness::domain::{Challenge, ChallengeType, Session};
use liveness::service::{Caller, Clock, LivenessService, ManualClock, ServiceSettings};
use liveness::store::{MemoryStore, SessionStore};
use uuid::Uuid;

use super::real_models::{analyzer, testdata, video_jpegs};

/// Camera frames are 640x480, 8 a second.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;
pub const FRAME_MS: i64 = 125;

/// One session's frames against its challenges (most have one).
pub struct Sequence {
    pub challenges: Vec<ChallengeType>,
    pub frames: Vec<Vec<u8>>,
}

/// A named group of sequences that must all end the same way.
pub struct Case {
    pub name: String,
    /// Genuine sequences must pass; attacks must not.
    pub genuine: bool,
    pub sequences: Vec<Sequence>,
}

/// How one session ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub live: bool,
    /// Frames the session took before it ended (or all of them).
    pub frames_used: usize,
    /// The end reason (a session still open when its frames ran out is read after its deadline: a timeout).
    pub rule: String,
}

// --- images ---

/// A photo as the camera would frame it: scaled to fit 640x480, on grey.
pub fn framed(relative: &str) -> RgbImage {
    let photo = image::open(testdata(relative)).unwrap_or_else(|e| panic!("{relative}: {e}")).to_rgb8();
    fit(&photo)
}

fn fit(photo: &RgbImage) -> RgbImage {
    let scale = (WIDTH as f32 / photo.width() as f32).min(HEIGHT as f32 / photo.height() as f32);
    let (w, h) = ((photo.width() as f32 * scale) as u32, (photo.height() as f32 * scale) as u32);
    let resized = imageops::resize(photo, w, h, imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([96, 96, 96]));
    imageops::overlay(&mut canvas, &resized, i64::from((WIDTH - w) / 2), i64::from((HEIGHT - h) / 2));
    canvas
}

pub fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut bytes), quality).encode_image(image).unwrap();
    bytes
}

/// The image moved by (dx, dy) pixels, the uncovered edge filled grey.
pub fn shifted(image: &RgbImage, dx: i64, dy: i64) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(image.width(), image.height(), Rgb([96, 96, 96]));
    imageops::overlay(&mut canvas, image, dx, dy);
    canvas
}

/// A flat print of `image` tilted by `degrees` about its vertical axis (`about_vertical`, a fake head turn) or its
/// horizontal axis (a fake look up/down), seen through a pinhole camera: a true homography of the plane.
pub fn tilted(image: &RgbImage, degrees: f32, about_vertical: bool) -> RgbImage {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let focal = 1.2 * w; // the print's distance equals the focal length: unit scale when flat
    let (sin, cos) = degrees.to_radians().sin_cos();
    let mut out = RgbImage::from_pixel(image.width(), image.height(), Rgb([96, 96, 96]));
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let (u, v) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        // Intersect the pixel's ray with the rotated plane; (a, b) are the plane's own coordinates.
        let (a, b) = if about_vertical {
            let a = u * focal / (focal * cos + u * sin);
            (a, v * (focal - a * sin) / focal)
        } else {
            let b = v * focal / (focal * cos + v * sin);
            (u * (focal - b * sin) / focal, b)
        };
        let (sx, sy) = (a + cx, b + cy);
        if sx >= 0.0 && sy >= 0.0 && sx < w - 1.0 && sy < h - 1.0 {
            *pixel = bilinear(image, sx, sy);
        }
    }
    out
}

fn bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |dx: u32, dy: u32| image.get_pixel(x0 + dx, y0 + dy).0;
    let mut out = [0u8; 3];
    for (c, value) in out.iter_mut().enumerate() {
        let top = f32::from(p(0, 0)[c]) * (1.0 - fx) + f32::from(p(1, 0)[c]) * fx;
        let bottom = f32::from(p(0, 1)[c]) * (1.0 - fx) + f32::from(p(1, 1)[c]) * fx;
        *value = (top * (1.0 - fy) + bottom * fy).round() as u8;
    }
    Rgb(out)
}

/// Frames of the shared video (`every`-th frame from `from`, `count` of them): the adult, cropped square as in
/// `tests/e2e_real_models.rs`, in a 640x480 frame.
pub fn video_frames(from: u32, every: u32, count: u32) -> Vec<RgbImage> {
    let last = from + every * count;
    let select = format!(
        "select=between(n\\,{from}\\,{last})*not(mod(n-{from}\\,{every})),crop=400:400:550:0,scale=480:480,pad=640:480:80:0"
    );
    let jpegs = video_jpegs(&format!("attacks-{from}-{every}-{count}"), &select, &["-q:v", "2"]);
    jpegs.iter().take(count as usize).map(|jpeg| image::load_from_memory(jpeg).unwrap().to_rgb8()).collect()
}

/// Frames as a camera would send them: each re-encoded at a quality between 70 and 95, jittered by a pixel or two.
pub fn as_camera(images: &[RgbImage]) -> Vec<Vec<u8>> {
    images
        .iter()
        .enumerate()
        .map(|(i, image)| jpeg(&shifted(image, (i % 5) as i64 - 2, (i % 3) as i64 - 1), 70 + (i * 7 % 26) as u8))
        .collect()
}

/// `image` held still for `frames` frames, each re-encoded and shifted so identical bytes are not what stops it.
pub fn held(image: &RgbImage, frames: usize) -> Vec<RgbImage> {
    vec![image.clone(); frames]
}

// --- running ---

/// Runs one sequence as a session with its challenges, frames 125 ms apart; then lets the deadline pass.
pub async fn run(sequence: &Sequence) -> Outcome {
    run_every(sequence, FRAME_MS).await
}

/// [`run`] with frames `frame_ms` apart.
pub async fn run_every(sequence: &Sequence, frame_ms: i64) -> Outcome {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let store = Arc::new(MemoryStore::new());
    let service = LivenessService::new(store.clone(), analyzer(), clock.clone(), ServiceSettings::default());
    let id = Uuid::new_v4();
    let challenges = sequence.challenges.iter().map(|&kind| Challenge { kind, timeout_seconds: 5.0 }).collect();
    store.create(&Session::new(id, challenges, clock.now_ms(), 180_000)).await.unwrap();
    let mut frames_used = 0;
    for frame in &sequence.frames {
        frames_used += 1;
        match service.submit_frame(&Caller::Operator, id, frame.clone()).await {
            Ok(result) if result.session.state.is_terminal() => break,
            Ok(_) => {}
            Err(_) => break,
        }
        clock.advance_ms(frame_ms);
    }
    clock.advance_ms(6_000);
    let ended = service.get(&Caller::Operator, id).await.unwrap();
    let rule = match ended.end_reason {
        Some(reason) => serde_json::to_value(reason).unwrap().as_str().unwrap().to_owned(),
        None => format!("{:?}", ended.state),
    };
    Outcome { live: ended.is_live == Some(true), frames_used, rule }
}

/// Runs every case; returns each case's outcomes.
pub async fn run_all(cases: &[Case]) -> Vec<Vec<Outcome>> {
    let mut results = Vec::new();
    for case in cases {
        let runs = case.sequences.iter().map(run);
        results.push(futures_util::future::join_all(runs).await);
    }
    results
}

/// The table: case, sessions, rejected, and by which rule.
pub fn table(cases: &[Case], results: &[Vec<Outcome>]) -> String {
    let mut out = String::from("| case | kind | sessions | rejected | by rule |\n|---|---|---|---|---|\n");
    for (case, outcomes) in cases.iter().zip(results) {
        let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
        for outcome in outcomes {
            *rules.entry(if outcome.live { "LIVE" } else { outcome.rule.as_str() }).or_default() += 1;
        }
        let rejected = outcomes.iter().filter(|o| !o.live).count();
        let rules: Vec<String> = rules.iter().map(|(rule, n)| format!("{rule} {n}")).collect();
        let kind = if case.genuine { "genuine" } else { "attack" };
        out += &format!("| {} | {kind} | {} | {rejected} | {} |\n", case.name, outcomes.len(), rules.join(", "));
    }
    out
}
