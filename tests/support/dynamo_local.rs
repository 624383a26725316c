//! AWS's DynamoDB Local on loopback for the tests (no mocks). Each test starts its own server from
//! `LIVENESS_DYNAMODB_LOCAL_DIR` (set by `scripts/test.sh`) and stops it when done.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use liveness::aws::{client_settings, https_client};
use liveness::store::dynamodb::DynamoStore;

/// The table the tests use.
pub const TABLE: &str = "liveness-sessions-test";

/// A DynamoDB Local server, killed on drop.
pub struct DynamoLocal {
    child: Option<Child>,
    pub port: u16,
    db_path: Option<PathBuf>,
}

impl DynamoLocal {
    pub fn start(db_path: Option<&Path>) -> DynamoLocal {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = DynamoLocal { child: None, port, db_path: db_path.map(Path::to_owned) };
        server.launch();
        server
    }

    pub fn launch(&mut self) {
        let dir = PathBuf::from(std::env::var("LIVENESS_DYNAMODB_LOCAL_DIR").expect(
            "LIVENESS_DYNAMODB_LOCAL_DIR must name DynamoDB Local's folder; scripts/test.sh installs and sets it",
        ));
        let mut command = Command::new("java");
        command
            .arg("-Xmx256m")
            .arg("-XX:TieredStopAtLevel=1")
            .arg(format!("-Djava.library.path={}", dir.join("DynamoDBLocal_lib").display()))
            .arg("-jar")
            .arg(dir.join("DynamoDBLocal.jar"))
            .args(["-sharedDb", "-port", &self.port.to_string()]);
        match &self.db_path {
            Some(path) => command.arg("-dbPath").arg(path),
            None => command.arg("-inMemory"),
        };
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("java runs DynamoDB Local");
        self.child = Some(child);
        // Ready means answering a request, not only an open port: a cold JVM takes seconds more for its first
        // answer, longer than the store's own request timeouts.
        let started = Instant::now();
        while !self.answers() {
            assert!(started.elapsed() < Duration::from_secs(60), "DynamoDB Local did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the server answers an (unsigned) API request with any HTTP response.
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let request = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\
            Content-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 8];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/")
    }

    /// Stops the server: SIGTERM first, so an on-disk database is closed cleanly, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).status();
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and requests queue, unanswered, until [`Self::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT); it then handles what queued meanwhile.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server runs");
        let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill {signal}");
    }

    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        let (timeouts, retries) = client_settings();
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .timeout_config(timeouts)
            .retry_config(retries)
            .http_client(https_client())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Points this process's AWS environment at this server (table, endpoint, dummy credentials, region), as a
    /// deployed function would find its own. Only for test binaries with a single test: the environment is shared.
    pub fn become_the_environment(&self, extra: &[(&str, String)]) {
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        let standard = [
            ("LIVENESS_TABLE_NAME", TABLE.to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", endpoint),
            ("AWS_ACCESS_KEY_ID", "local".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ];
        for (name, value) in standard.iter().map(|(n, v)| (*n, v.clone())).chain(extra.iter().cloned()) {
            std::env::set_var(name, value);
        }
    }

    pub async fn store(&self) -> DynamoStore {
        let store = DynamoStore::new(self.client(), TABLE);
        store.ensure_table().await.unwrap();
        store
    }
}

impl Drop for DynamoLocal {
    fn drop(&mut self) {
        self.stop();
    }
}
