//! Load benchmark of the local server's WebSocket workflow.
//!
//!     cargo run --release --example ws_load -- [--url ws://127.0.0.1:8000/api/v1/liveness/ws] [--clients 8]
//!         [--fps 8] [--seconds 30] FRAME.jpg...
//!
//! Each client holds a workflow open (long passive phase and timeouts, `feedback=true` so every frame is
//! answered), sends the JPEG frames as binary messages at `--fps` with at most two unanswered, and reconnects when
//! a session ends. Prints answered frames/s and the latency from sending a frame to its answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Totals {
    latencies_ms: Vec<f64>,
    errors: usize,
    sessions: usize,
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_owned())
}

async fn client(url: String, frames: Arc<Vec<Vec<u8>>>, fps: f64, until: Instant, totals: Arc<Mutex<Totals>>) {
    let query = "passive_frames=30&num_challenges=6&timeout_seconds=60&feedback=true";
    let mut next_frame = 0usize;
    while Instant::now() < until {
        let Ok((socket, _)) = tokio_tungstenite::connect_async(format!("{url}?{query}")).await else {
            totals.lock().unwrap().errors += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        totals.lock().unwrap().sessions += 1;
        let (mut sink, mut stream) = socket.split();
        let mut pending: VecDeque<Instant> = VecDeque::new();
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / fps));
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if Instant::now() >= until { return; }
                    if pending.len() < 2 {
                        let frame = frames[next_frame % frames.len()].clone();
                        next_frame += 1;
                        if sink.send(Message::Binary(frame.into())).await.is_err() { break; }
                        pending.push_back(Instant::now());
                    }
                }
                message = stream.next() => {
                    let Some(Ok(Message::Text(text))) = message else { break };
                    let kind = serde_json::from_str::<serde_json::Value>(&text).ok()
                        .and_then(|m| m["type"].as_str().map(str::to_owned)).unwrap_or_default();
                    match kind.as_str() {
                        "frame_result" | "feedback" | "error" => {
                            if let Some(sent) = pending.pop_front() {
                                let mut totals = totals.lock().unwrap();
                                totals.latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                                totals.errors += usize::from(kind == "error");
                            }
                        }
                        "final_result" => break,
                        _ => {}
                    }
                }
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = arg(&args, "--url", "ws://127.0.0.1:8000/api/v1/liveness/ws");
    let clients: usize = arg(&args, "--clients", "8").parse().expect("--clients N");
    let fps: f64 = arg(&args, "--fps", "8").parse().expect("--fps F");
    let seconds: f64 = arg(&args, "--seconds", "30").parse().expect("--seconds S");
    let files: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map(|(_, a)| a)
        .collect();
    assert!(!files.is_empty(), "give JPEG frames to send");
    let frames = Arc::new(files.iter().map(|f| std::fs::read(f).expect("a readable frame")).collect::<Vec<_>>());
    let totals = Arc::new(Mutex::new(Totals::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> =
        (0..clients).map(|_| tokio::spawn(client(url.clone(), frames.clone(), fps, until, totals.clone()))).collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut totals = totals.lock().unwrap();
    totals.latencies_ms.sort_by(f64::total_cmp);
    let n = totals.latencies_ms.len();
    let p = |q: f64| if n == 0 { f64::NAN } else { totals.latencies_ms[((q * n as f64) as usize).min(n - 1)] };
    println!(
        "clients {clients} at {fps} fps each, {elapsed:.0} s: {n} frames answered, {:.1} frames/s, p50 {:.0} ms, \
         p99 {:.0} ms, sessions {}, errors {}",
        n as f64 / elapsed,
        p(0.5),
        p(0.99),
        totals.sessions,
        totals.errors
    );
}
