//! moto's S3 for tests: a `moto_server` on a free 127.0.0.1 port (from the
//! venv `scripts/setup` makes under `target/py`, else from PATH), killed on
//! drop; [`MotoS3::shared`] is one per test process (killed at exit), and
//! each test makes a bucket of its own with [`MotoS3::new_bucket`]. moto
//! takes any credentials and needs path-style addressing
//! (`http://127.0.0.1:PORT/BUCKET/KEY`), which the control plane uses
//! whenever an endpoint URL is set.
//!
//! Only std and libc, because the control crate's unit tests include this
//! file by path as well as the e2e crate using it (as `postgres.rs` is).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The region moto's buckets are made in (moto answers in any).
pub const REGION: &str = "us-east-1";
/// Credentials for moto, which checks none.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

/// How long moto may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct MotoS3 {
    child: Mutex<Child>,
    port: u16,
}

static SHARED: OnceLock<MotoS3> = OnceLock::new();
static BUCKETS: AtomicU32 = AtomicU32::new(0);

extern "C" fn stop_shared_at_exit() {
    if let Some(moto) = SHARED.get() {
        moto.stop();
    }
}

impl MotoS3 {
    /// This process's moto, started on first use and killed when the
    /// process exits.
    pub fn shared() -> &'static MotoS3 {
        SHARED.get_or_init(|| {
            let moto = MotoS3::start();
            // SAFETY: registers a plain function with no captured state.
            unsafe { libc::atexit(stop_shared_at_exit) };
            moto
        })
    }

    /// Starts a moto_server; panics saying what to run when it is missing
    /// or does not answer.
    pub fn start() -> MotoS3 {
        let port = free_port();
        let program = moto_server();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {}: {err}: run scripts/setup (it installs moto into target/py)",
                    program.display()
                )
            });
        let moto = MotoS3 {
            child: Mutex::new(child),
            port,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = moto.child.lock().unwrap().try_wait() {
                panic!("moto_server exited with {status} before answering on port {port}");
            }
            match moto.request("GET", "/moto-api/") {
                Ok(200) => return moto,
                Ok(code) => last = format!("HTTP {code}"),
                Err(err) => last = err,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not answer on port {port} within {START_TIMEOUT:?}: {last}");
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL (`AWS_ENDPOINT_URL_S3`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes a bucket no other test uses and returns its name.
    pub fn new_bucket(&self) -> String {
        let name = format!(
            "launch-test-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let code = self
            .request("PUT", &format!("/{name}"))
            .unwrap_or_else(|err| panic!("create bucket {name} on moto: {err}"));
        assert_eq!(code, 200, "create bucket {name} on moto");
        name
    }

    /// The status of a request with an unsigned `Authorization` header
    /// (moto checks no signature, but answers an anonymous request for an
    /// object 403), e.g. `HEAD /BUCKET/KEY` to see whether it is there.
    pub fn request(&self, method: &str, path: &str) -> Result<u16, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&response);
        head.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no HTTP status in {:?}", head.lines().next()))
    }

    /// Kills moto (and reaps it).
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `target/py/bin/moto_server` if `scripts/setup` made it, else from PATH.
fn moto_server() -> PathBuf {
    let local = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/py/bin/moto_server"
    ));
    if local.is_file() {
        local
    } else {
        PathBuf::from("moto_server")
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a free port")
}
