//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir (as the
//! `postgres` user when running as root, since initdb refuses root), the
//! server on a free 127.0.0.1 port with its unix socket in the temp dir,
//! `trust` authentication, fsync off; stopped and removed on drop.
//! [`Cluster::shared`] is one cluster per test process (stopped at exit);
//! each test takes a database of its own with [`Cluster::new_database`], so
//! tests run in parallel on one server.
//!
//! Only std and libc, because the control crate's unit tests include this
//! file by path as well as the e2e crate using it: the file is the one
//! harness for both. Needs Debian's `postgresql` (`scripts/setup`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running cluster; dropping it stops the server and removes its files.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    stopped: std::sync::atomic::AtomicBool,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

extern "C" fn stop_shared_at_exit() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop();
    }
}

impl Cluster {
    /// This process's cluster, started on first use and stopped when the
    /// process exits.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| {
            let cluster = Cluster::start();
            // SAFETY: registers a plain function with no captured state.
            unsafe { libc::atexit(stop_shared_at_exit) };
            cluster
        })
    }

    /// Starts a new cluster; panics saying what to install when PostgreSQL
    /// is missing.
    pub fn start() -> Cluster {
        let bin = server_bin().unwrap_or_else(|| {
            panic!("no PostgreSQL server under /usr/lib/postgresql/*/bin: run scripts/setup (it installs Debian's postgresql)")
        });
        let root = std::env::temp_dir().join(format!(
            "launch-pg-{}-{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the cluster's temp dir");
        set_mode(&root, 0o755);
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            run(Command::new("chown").arg("postgres").arg(&root), "chown");
        }
        run(
            pg_command(as_root, &bin.join("initdb"))
                .arg("-D")
                .arg(root.join("data"))
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]),
            "initdb",
        );
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            if pg_ctl_start(as_root, &bin, &root, port) {
                return Cluster {
                    root,
                    bin,
                    port,
                    stopped: Default::default(),
                };
            }
            last = std::fs::read_to_string(root.join("log")).unwrap_or_default();
        }
        panic!("pg_ctl start failed five times; the server log:\n{last}");
    }

    /// The URL of `database` over TCP as the `postgres` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The URL of `database` over the cluster's unix socket, as a
    /// PostgreSQL on the same machine is reached (no TCP stack between).
    #[allow(dead_code)]
    pub fn socket_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{database}?host={}",
            self.port,
            self.root.display()
        )
    }

    /// Creates an empty database with a name no other test uses and
    /// returns its URL.
    pub fn new_database(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "t_{}_{}_{nanos}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The postmaster's process id (from `postmaster.pid`), e.g. to add up
    /// the CPU time of the server and its backends; `None` when unreadable. Only the load bench
    /// asks (the control crate's tests include this file too).
    #[allow(dead_code)]
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.root.join("data").join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Runs `pgbench` on `database` (a name [`Cluster::new_database`]'s URL
    /// ends with): `script` by `clients` connections, `transactions` each,
    /// as prepared statements; returns its transactions per second. Only
    /// the load bench asks.
    #[allow(dead_code)]
    pub fn pgbench(&self, database: &str, script: &Path, clients: u32, transactions: u32) -> f64 {
        let output = Command::new(self.bin.join("pgbench"))
            .arg("-h")
            .arg(&self.root)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-n", "-M", "prepared", "-j", "1"])
            .arg(format!("--client={clients}"))
            .arg(format!("--transactions={transactions}"))
            .arg("-f")
            .arg(script)
            .arg(database)
            .output()
            .unwrap_or_else(|err| panic!("run pgbench: {err}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "pgbench -f {} failed: {}{stdout}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find_map(|line| {
                line.strip_prefix("tps = ")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no `tps = ` line in pgbench's output: {stdout}"))
    }

    /// Runs one SQL statement as the superuser on the `postgres` database.
    pub fn psql(&self, sql: &str) {
        run(
            Command::new(self.bin.join("psql"))
                .arg("-h")
                .arg(&self.root)
                .arg("-p")
                .arg(self.port.to_string())
                .args([
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-q",
                    "-c",
                ])
                .arg(sql),
            "psql",
        );
    }

    /// Stops the server as an outage would (fast shutdown: open sessions
    /// are ended), keeping its files for [`Cluster::resume`].
    pub fn pause(&self) {
        let as_root = unsafe { libc::geteuid() } == 0;
        run(
            pg_command(as_root, &self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.root.join("data"))
                .args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Starts a paused server again on the same port.
    pub fn resume(&self) {
        let as_root = unsafe { libc::geteuid() } == 0;
        assert!(
            pg_ctl_start(as_root, &self.bin, &self.root, self.port),
            "pg_ctl start on port {} failed: {}",
            self.port,
            std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: open sessions are ended) and removes
    /// its files; later calls do nothing.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let as_root = unsafe { libc::geteuid() } == 0;
        let _ = pg_command(as_root, &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.root.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the cluster in `root` on `port`; false when pg_ctl failed.
fn pg_ctl_start(as_root: bool, bin: &Path, root: &Path, port: u16) -> bool {
    pg_command(as_root, &bin.join("pg_ctl"))
        .arg("-D")
        .arg(root.join("data"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            root.display()
        ))
        .arg("-l")
        .arg(root.join("log"))
        .args(["-w", "-t", "30", "start"])
        .output()
        .expect("run pg_ctl")
        .status
        .success()
}

/// The newest `/usr/lib/postgresql/<major>/bin` holding `initdb`.
fn server_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn pg_command(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("run {what}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("chmod {}: {err}", path.display()));
}
