//! A host reached over SSH, standing in for a Proxmox container: a container
//! from the test host image (`tests/host-image/build.sh`: Debian with systemd
//! as PID 1, the Docker CLI and Compose, sshd) with the test machine's
//! network and Docker socket, as `host::Host` boots it, but with cloud-init
//! disabled (an LXC has none) and sshd started on a free loopback port. The
//! provider reaches it through its test hook
//! `LAUNCH_PROXMOX_SSH_OVERRIDE=<container ip>=127.0.0.1:<port>`, so the
//! bootstrap it runs over SSH installs `launch-agent` under this host's
//! systemd, never on the test machine. Removed on drop.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::poll::try_eventually;
use crate::unique;

pub struct SshHost {
    pub name: String,
    pub port: u16,
    _config: TempDir,
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

impl SshHost {
    /// Boots the host with sshd on `127.0.0.1:<port>`, waits until it answers.
    pub fn boot_for_ssh(port: u16) -> SshHost {
        let config = tempfile::Builder::new()
            .prefix("launch-e2e-sshd-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(
            config.path().join("port.conf"),
            format!("Port {port}\nListenAddress 127.0.0.1\n"),
        )
        .expect("write the sshd drop-in");
        std::fs::write(config.path().join("cloud-init.disabled"), "").expect("write marker");
        let name = format!("launch-e2e-ssh-{}", unique::hex(5));
        let sshd_mount = format!(
            "{}:/etc/ssh/sshd_config.d/20-port.conf:ro",
            config.path().join("port.conf").display()
        );
        let cloud_init_off = format!(
            "{}:/etc/cloud/cloud-init.disabled:ro",
            config.path().join("cloud-init.disabled").display()
        );
        let out = crate::host::run_systemd_container(&name, &[sshd_mount, cloud_init_off]);
        assert!(
            out.status.success(),
            "docker run of the SSH host failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let host = SshHost {
            name,
            port,
            _config: config,
        };
        // systemd first (ssh.service is off in the image), then sshd.
        let booted = try_eventually(Duration::from_secs(90), || {
            let state = host.exec_text(&["systemctl", "is-system-running"]);
            match state.trim() {
                "running" | "degraded" => Ok(()),
                other => Err(other.to_owned()),
            }
        });
        if let Err(last) = booted {
            panic!(
                "the SSH host's systemd did not come up ({last}):\n{}",
                host.diagnostics()
            );
        }
        let started = host.exec(&["systemctl", "start", "ssh"]);
        assert!(
            started.status.success(),
            "starting sshd failed: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            host.diagnostics()
        );
        if let Err(e) = try_eventually(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port))
                .map(|_| ())
                .map_err(|e| e.to_string())
        }) {
            panic!(
                "sshd does not answer on port {port} ({e}):\n{}",
                host.diagnostics()
            );
        }
        host
    }

    /// Appends `keys` to root's `authorized_keys`, as PVE does at creation.
    pub fn authorize(&self, keys: &str) {
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                &self.name,
                "sh",
                "-c",
                "umask 077 && mkdir -p /root/.ssh && cat >> /root/.ssh/authorized_keys",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run docker exec");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(keys.as_bytes())
            .expect("write the keys");
        assert!(child.wait().expect("docker exec").success());
    }

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

    /// What a person would look at when the host misbehaves.
    pub fn diagnostics(&self) -> String {
        [
            self.exec_text(&["systemctl", "--failed", "--no-pager"]),
            self.exec_text(&["journalctl", "--no-pager", "-n", "30", "-u", "ssh"]),
            self.exec_text(&["systemctl", "status", "--no-pager", "launch-agent"]),
            self.exec_text(&["journalctl", "--no-pager", "-n", "40", "-u", "launch-agent"]),
        ]
        .join("\n---\n")
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}
