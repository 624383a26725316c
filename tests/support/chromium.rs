//! Debian's headless Chromium driven over the DevTools protocol (a WebSocket, spoken with tokio-tungstenite), with
//! a `.y4m` video file as its camera.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A browser with one page open.
pub struct Browser {
    child: Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: Option<String>,
    next_id: u64,
    profile: PathBuf,
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("LIVENESS_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(path.exists(), "{} not found; scripts/test.sh installs Debian's chromium", path.display());
    path
}

impl Browser {
    /// Starts Chromium with `camera` as the camera. `grant_camera` false leaves the permission prompt
    /// unanswered, which a headless browser treats as a refusal.
    pub async fn launch(camera: &Path, grant_camera: bool) -> Browser {
        let profile = std::env::temp_dir().join(format!("liveness-chromium-{}-{}", std::process::id(), rand_suffix()));
        let mut command = Command::new(chromium());
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .args(["--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=900,1300"])
            .arg("--use-fake-device-for-media-stream")
            .arg(format!("--use-file-for-fake-video-capture={}", camera.display()))
            .arg(format!("--user-data-dir={}", profile.display()));
        if grant_camera {
            command.arg("--use-fake-ui-for-media-stream");
        }
        let mut child = command.arg("about:blank").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (found, endpoint) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let (false, Some(at)) = (sent, line.find("ws://")) {
                    let _ = found.send(line[at..].trim().to_owned());
                    sent = true;
                }
            }
        });
        let url = endpoint.recv_timeout(Duration::from_secs(30)).expect("Chromium prints its DevTools endpoint");
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("DevTools accepts the connection");
        Browser { child, socket, session: None, next_id: 0, profile }
    }

    /// Sends a DevTools command (to the page once one is open) and returns its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = Value::String(session.clone());
        }
        self.socket.send(Message::Text(command.to_string().into())).await.unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .expect("DevTools answers")
                .expect("DevTools stays connected")
                .unwrap();
            let Message::Text(text) = message else { continue };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page and attaches to it.
    pub async fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({ "url": url })).await;
        let attached =
            self.call("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true })).await;
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        self.call("Runtime.enable", json!({})).await;
    }

    /// Evaluates JavaScript in the page and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let result = self.call("Runtime.evaluate", params).await;
        assert!(result["exceptionDetails"].is_null(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy; returns its value. On timeout, panics with what `describe` shows.
    pub async fn wait_for(&mut self, expression: &str, timeout: Duration, describe: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(expression).await;
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            if started.elapsed() > timeout {
                let seen = self.eval(describe).await;
                panic!("waited {timeout:?} for {expression}; the page shows {seen}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Saves a PNG screenshot of the page.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true })).await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000_007
}

/// Makes a `.y4m` camera file with ffmpeg: `input_args` choose the source, `filter` shapes it to 640x480.
pub fn camera_file(dir: &Path, name: &str, input_args: &[&str], filter: &str, seconds: f32) -> PathBuf {
    let out = dir.join(format!("{name}.y4m"));
    if out.exists() {
        return out;
    }
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(input_args)
        .args(["-vf", &format!("{filter},scale=640:480,format=yuv420p"), "-r", "15", "-t", &seconds.to_string()])
        .arg(&out)
        .status()
        .expect("ffmpeg is installed (scripts/test.sh installs it)");
    assert!(status.success(), "ffmpeg made {name}.y4m");
    out
}
