//! A "host" for the boot tests: a container from the image
//! `tests/host-image/build.sh` makes (Debian with systemd as PID 1 and
//! cloud-init), started with a NoCloud seed holding the user-data under test,
//! the test machine's network and Docker socket. cloud-init runs the user-data
//! at boot exactly as on an EC2 instance. Removed on drop.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::binaries::workspace_root;
use crate::unique;

pub struct Host {
    pub name: String,
    _seed: TempDir,
}

/// The image tag, built (or found in the cache) once per test process.
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let script = workspace_root().join("tests/host-image/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .expect("run tests/host-image/build.sh");
            assert!(
                out.status.success(),
                "building the test host image failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .clone()
}

/// `docker run -d` of the host image as a machine: systemd as PID 1 with the
/// cgroup tree and mount namespaces it needs (for the agent unit's
/// hardening; not a fully privileged container, which these machines
/// refuse), the test machine's network and Docker socket, and `mounts`
/// (`-v` specs) for what the test gives it.
pub(crate) fn run_systemd_container(name: &str, mounts: &[String]) -> Output {
    let image = image();
    let cgroup_v2 = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/cgroup") && l.contains("cgroup2"));
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--tmpfs",
        "/tmp",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
    ];
    for mount in mounts {
        args.extend(["-v", mount.as_str()]);
    }
    if cgroup_v2 {
        args.extend(["--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]);
    } else {
        args.extend(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"]);
    }
    args.push(&image);
    docker(&args)
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

impl Host {
    /// Boots a host whose cloud-init gets `user_data`.
    pub fn boot(user_data: &str) -> Host {
        let seed = tempfile::Builder::new()
            .prefix("launch-e2e-seed-")
            .tempdir()
            .expect("temp dir");
        let name = format!("launch-e2e-host-{}", unique::hex(5));
        std::fs::write(seed.path().join("user-data"), user_data).expect("write user-data");
        std::fs::write(
            seed.path().join("meta-data"),
            format!("instance-id: {name}\nlocal-hostname: {name}\n"),
        )
        .expect("write meta-data");
        let seed_mount = format!("{}:/var/lib/cloud/seed/nocloud:ro", seed.path().display());
        let out = run_systemd_container(&name, &[seed_mount]);
        assert!(
            out.status.success(),
            "docker run of the host failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Host { name, _seed: seed }
    }

    /// Runs a command inside the host.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["exec", self.name.as_str()];
        full.extend_from_slice(args);
        docker(&full)
    }

    pub fn exec_text(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// A clean reboot: systemd is asked to halt (SIGRTMIN+3, what `docker
    /// stop` would send if it could be told), the container starts again
    /// from the same disk, and systemd boots once more.
    pub fn reboot(&self) {
        let out = docker(&["kill", "--signal", "RTMIN+3", &self.name]);
        assert!(
            out.status.success(),
            "docker kill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stopped = crate::poll::try_eventually(std::time::Duration::from_secs(30), || {
            let out = docker(&["inspect", "-f", "{{.State.Running}}", &self.name]);
            let running = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if running == "false" {
                Ok(())
            } else {
                Err(running)
            }
        });
        if stopped.is_err() {
            let _ = docker(&["kill", &self.name]);
        }
        let out = docker(&["start", &self.name]);
        assert!(
            out.status.success(),
            "docker start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What a person would look at when the host misbehaves.
    pub fn diagnostics(&self) -> String {
        [
            self.exec_text(&["cloud-init", "status", "--long"]),
            self.exec_text(&["tail", "-n", "40", "/var/log/cloud-init-output.log"]),
            self.exec_text(&["systemctl", "status", "--no-pager", "launch-agent"]),
            self.exec_text(&["journalctl", "--no-pager", "-n", "40", "-u", "launch-agent"]),
        ]
        .join("\n---\n")
    }

    pub fn file(&self, path: &str) -> Option<String> {
        let out = self.exec(&["cat", path]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `stat -c %a` of a path inside the host.
    pub fn mode(&self, path: &str) -> String {
        self.exec_text(&["stat", "-c", "%a", path])
            .trim()
            .to_owned()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// The agent release build that is linked statically, if it was built
/// (`scripts/test` builds it with `+crt-static`).
pub fn static_agent() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    dir.join("x86_64-unknown-linux-gnu/debug/launch-agent")
}
