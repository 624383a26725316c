//! The local server's connection handling (`http::serve`) on a real loopback port: clients that send half a header
//! are closed in time while a normal client is served, past the connection cap a new connection is closed at once,
//! and WebSocket upgrades still work through it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use liveness::http::serve::{serve, ConnectionLimits};
use liveness::service::{LivenessService, ServiceSettings, SystemClock};
use liveness::store::MemoryStore;
use liveness::vision::fake::ScriptedAnalyzer;

async fn server(limits: ConnectionLimits) -> SocketAddr {
    server_with(limits, liveness::http::HttpLimits::default()).await
}

async fn server_with(limits: ConnectionLimits, http: liveness::http::HttpLimits) -> SocketAddr {
    let service = LivenessService::new(
        Arc::new(MemoryStore::new()),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        Arc::new(SystemClock),
        ServiceSettings::default(),
    );
    let router = liveness::http::router_with(service, 1 << 20, http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, limits, std::future::pending()));
    addr
}

/// A whole `GET /health`, answered: the status line.
fn health(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Whether the server has closed `stream` (end of stream or reset), waiting at most `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buffer = [0u8; 512];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue, // an error answer before the close
            Err(error) => {
                return !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_headers_are_closed_in_time_while_a_normal_client_is_served() {
    let limits = ConnectionLimits { header_read: Duration::from_secs(1), ..ConnectionLimits::default() };
    let addr = server(limits).await;
    let result = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut slow: Vec<TcpStream> = (0..50)
            .map(|_| {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.write_all(b"GET /health HTTP/1.1\r\nHost: te").unwrap();
                stream
            })
            .collect();
        assert!(health(addr).ends_with("200 OK"), "a normal client is served meanwhile");
        for stream in &mut slow {
            assert!(closed_within(stream, Duration::from_secs(4)), "a half header is not held open");
        }
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(result < Duration::from_secs(5), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_a_connection_is_closed_at_once_and_room_returns() {
    let limits = ConnectionLimits { max_connections: 5, ..ConnectionLimits::default() };
    let addr = server(limits).await;
    tokio::task::spawn_blocking(move || {
        let idle: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut extra = TcpStream::connect(addr).unwrap();
        let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n");
        assert!(closed_within(&mut extra, Duration::from_secs(2)), "over the cap: closed, not left hanging");
        drop(idle);
        std::thread::sleep(Duration::from_millis(300));
        assert!(health(addr).ends_with("200 OK"), "room again once connections close");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let addr = server(ConnectionLimits::default()).await;
    let url = format!("ws://{addr}/api/v1/liveness/ws?passive_frames=3&num_challenges=1");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("the upgrade succeeds");
    let first = socket.next().await.unwrap().unwrap();
    assert_eq!(first.to_text().unwrap(), r#"{"type":"phase","value":"passive"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_frame_body_gets_408_in_time() {
    let http = liveness::http::HttpLimits { body_read: Duration::from_secs(1), ..Default::default() };
    let addr = server_with(ConnectionLimits::default(), http).await;
    // A session to send the frame to.
    let id = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(
                b"POST /api/v1/liveness/sessions HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n');
        let start = body.find("\"session_id\":\"").unwrap() + 14;
        body[start..start + 36].to_owned()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /api/v1/liveness/sessions/{id}/frame HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&[0xff, 0xd8, 0xff]).unwrap(); // and then nothing more
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = [0u8; 64];
        let read = stream.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..read]).lines().next().unwrap_or_default().to_owned()
    })
    .await
    .unwrap();
    assert!(status.contains("408"), "{status}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
