//! A `launch server` under test: its own temp data dir, `--listen
//! 127.0.0.1:0`, the address parsed from the one line it prints, the admin
//! token read from `<data-dir>/admin.token`. It can be killed with SIGKILL and
//! restarted on the same address with the same data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries;
use crate::cli::{self, CliOutput};
use crate::process::Process;

/// How long a server may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables of the developer's shell that must not leak into the
/// processes under test.
pub const SCRUBBED_ENV: &[&str] = &[
    "LAUNCH_AGENT_INGRESS",
    "LAUNCH_AGENT_HTTP_LISTEN",
    "LAUNCH_AGENT_HTTPS_LISTEN",
    "LAUNCH_AGENT_INGRESS_HOSTS",
    "LAUNCH_AGENT_BINARY",
    "LAUNCH_CLI_BINARY",
    "LAUNCH_TLS_CERT",
    "LAUNCH_TLS_KEY",
    "LAUNCH_CA_CERT",
    "LAUNCH_AGENT_CA_CERT",
    "LAUNCH_MAX_BUNDLE_BYTES",
    "LAUNCH_ADDR",
    "LAUNCH_TOKEN",
    "LAUNCH_TOKEN_FILE",
    "LAUNCH_LISTEN",
    "LAUNCH_DATA_DIR",
    "LAUNCH_DATABASE_URL",
    "LAUNCH_SECRET_KEY",
    "LAUNCH_AGENT_CONTROL_URL",
    "LAUNCH_AGENT_JOIN_TOKEN",
    "LAUNCH_AGENT_LABELS",
    "LAUNCH_AGENT_DATA_DIR",
    "LAUNCH_AGENT_ADVERTISE_HOST",
    "LAUNCH_OUTPUT",
    "RUST_LOG",
    "LAUNCH_GITHUB_WEBHOOK_SECRET_FILE",
    "LAUNCH_GITHUB_TOKEN_FILE",
    "LAUNCH_GITHUB_API_URL",
    "GITHUB_REPOSITORY",
    "LAUNCH_AGENT_ACME_DIRECTORY",
    "LAUNCH_AGENT_ACME_CA_ROOT",
    "LAUNCH_AGENT_ACME_EMAIL",
    "LAUNCH_AGENT_MAX_BUNDLE_BYTES",
    "LAUNCH_PROVIDER_DIR",
    "LAUNCH_PREVIEW_CAP",
    "LAUNCH_PREVIEW_TTL",
    "LAUNCH_PREVIEW_MEMORY_MIB",
    "LAUNCH_PREVIEW_MILLICPUS",
    "LAUNCH_BUNDLE_STORE",
    // The AWS chain an S3 bundle store reads: only what a test passes.
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
];

pub struct Server {
    pub process: Process,
    pub addr: SocketAddr,
    pub admin_token: String,
    extra_args: Vec<String>,
    /// Environment variables set for the process (and its replicas).
    env: Vec<(String, String)>,
    data_dir: PathBuf,
    _temp: TempDir,
}

impl Server {
    /// Starts a server with default flags.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra flags (e.g. `--max-bundle-bytes 1048576`).
    pub fn start_with(extra_args: &[&str]) -> Server {
        Server::start_with_env(extra_args, &[])
    }

    /// Starts a server with extra flags and environment variables (e.g.
    /// the AWS settings of an S3 bundle store), which its replicas and
    /// restarts get too.
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-server-")
            .tempdir()
            .expect("create a temp dir");
        let data_dir = temp.path().join("data");
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let (process, addr) = spawn(&data_dir, "127.0.0.1:0", &extra_args, &env)
            .unwrap_or_else(|e| panic!("launch server did not start: {e}"));
        let admin_token = read_admin_token(&data_dir);
        Server {
            process,
            addr,
            admin_token,
            extra_args,
            env,
            data_dir,
            _temp: temp,
        }
    }

    /// Another replica of `first`: its own data dir holding a copy of
    /// `first`'s secret key, started with `first`'s flags (its
    /// `--database-url` is the database they share) and using its admin token.
    pub fn start_replica(first: &Server) -> Result<Server, String> {
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-replica-")
            .tempdir()
            .expect("create a temp dir");
        let data_dir = temp.path().join("data");
        std::fs::create_dir(&data_dir).expect("create the data dir");
        std::fs::set_permissions(
            &data_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod the data dir");
        std::fs::copy(
            first.data_dir.join("secret.key"),
            data_dir.join("secret.key"),
        )
        .expect("copy the secret key");
        let (process, addr) = spawn(&data_dir, "127.0.0.1:0", &first.extra_args, &first.env)?;
        Ok(Server {
            process,
            addr,
            admin_token: first.admin_token.clone(),
            extra_args: first.extra_args.clone(),
            env: first.env.clone(),
            data_dir,
            _temp: temp,
        })
    }

    /// `http://127.0.0.1:<port>`, what the CLI and agents connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// kill -9.
    pub fn kill_hard(&mut self) {
        self.process.kill_hard();
    }

    /// Like [`Server::restart`], with these extra flags from now on.
    pub fn restart_with(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// Starts the server again on the same address with the same data dir
    /// (retrying while the port is still held by the previous process).
    pub fn restart(&mut self) {
        self.process.kill_hard();
        let listen = self.addr.to_string();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match spawn(&self.data_dir, &listen, &self.extra_args, &self.env) {
                Ok((process, addr)) => {
                    assert_eq!(addr, self.addr, "restarted server listens elsewhere");
                    self.process = process;
                    let token = read_admin_token(&self.data_dir);
                    assert_eq!(token, self.admin_token, "admin token changed on restart");
                    return;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("launch server did not restart on {listen}: {last}");
    }

    /// Runs `launch <args>` against this server with the admin token.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        cli::run(self, args)
    }

    /// The raw bytes of the SQLite store (database, WAL and shared-memory
    /// files), for checking that a secret value never reached the disk.
    pub fn store_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for name in ["launch.db", "launch.db-wal", "launch.db-shm"] {
            if let Ok(mut b) = std::fs::read(self.data_dir.join(name)) {
                bytes.append(&mut b);
            }
        }
        assert!(
            !bytes.is_empty(),
            "no launch.db in {}: where does the server keep its store?",
            self.data_dir.display()
        );
        bytes
    }
}

fn read_admin_token(data_dir: &Path) -> String {
    let path = data_dir.join("admin.token");
    let token = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    token.trim().to_owned()
}

/// Spawns `launch server` and waits for its listening line; `Err` with its
/// output if it exits or stays silent.
fn spawn(
    data_dir: &Path,
    listen: &str,
    extra: &[String],
    env: &[(String, String)],
) -> Result<(Process, SocketAddr), String> {
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command.envs(env.iter().map(|(name, value)| (name, value)));
    command
        .env("RUST_LOG", "info")
        .arg("server")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra);
    let mut process = Process::spawn("server", command);
    const PREFIX: &str = "launch server listening on http://";
    let found = process
        .stdout
        .wait_for(START_TIMEOUT, |line| line.starts_with(PREFIX));
    match found {
        Ok(line) => {
            let addr = line[PREFIX.len()..]
                .trim()
                .trim_end_matches('/')
                .parse()
                .map_err(|e| format!("cannot parse the address in {line:?}: {e}"))?;
            Ok((process, addr))
        }
        Err(e) => {
            let status = process.try_status();
            Err(format!(
                "{e}\nexit status: {status:?}\nstderr:\n{}",
                process.stderr.text()
            ))
        }
    }
}

/// The environment a `launch server` needs to keep its bundles on `moto`'s
/// S3, as in any AWS deployment: region, credentials, `AWS_ENDPOINT_URL_S3`.
pub fn s3_env(moto: &crate::moto_s3::MotoS3) -> Vec<(&'static str, String)> {
    use crate::moto_s3::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
    vec![
        ("AWS_ENDPOINT_URL_S3", moto.url()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// `env` as the `(name, value)` pairs [`Server::start_with_env`] takes.
pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// Runs `launch server` on a fresh data dir with `args` and `env`, expecting
/// it to refuse to start: its exit status and output once it exits, or a
/// panic saying `what` kept running past `within`.
pub fn run_refused(
    args: &[&str],
    env: &[(&str, &str)],
    within: std::time::Duration,
    what: &str,
) -> (std::process::ExitStatus, std::process::Output) {
    let temp = tempfile::tempdir().expect("create a temp dir");
    let mut command = std::process::Command::new(crate::binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(temp.path().join("data"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run launch server");
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for launch server") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} kept running for {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (
        status,
        child
            .wait_with_output()
            .expect("read launch server's output"),
    )
}
