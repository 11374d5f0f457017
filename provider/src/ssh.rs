//! Running the host bootstrap over SSH, for hosts without cloud-init (a
//! Proxmox LXC). The provider makes a fresh ed25519 key pair per create with
//! the system `ssh-keygen` in a private temp dir (0700, removed on drop), puts
//! the public half into the container at creation (`ssh-public-keys`), and
//! runs the rendered script with the system `ssh` as `sh -s`, the script on
//! stdin so the join token never appears in a process list. The private key
//! never leaves that temp dir: it is not in state, so nothing needs it after
//! create (a replaced container gets a new key).
//!
//! The container's host key is new and unknown, so it is accepted on first
//! use and not remembered (`StrictHostKeyChecking=no`, no known_hosts).
//!
//! For tests only: `LAUNCH_PROXMOX_SSH_OVERRIDE=<ip>=<host>:<port>[,…]`
//! sends SSH for a container address somewhere else (the e2e harness maps a
//! fake PVE's container address to a real sshd on a loopback port).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

/// The test hook described in the module docs.
pub const OVERRIDE_ENV: &str = "LAUNCH_PROXMOX_SSH_OVERRIDE";
/// Lines of the script's output put in a diagnostic on failure.
pub const OUTPUT_TAIL: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "cannot make an SSH key with ssh-keygen: {0}. Install the OpenSSH client (Debian: openssh-client) where terraform runs"
    )]
    Keygen(String),
    #[error(
        "cannot run ssh: {0}. Install the OpenSSH client (Debian: openssh-client) where terraform runs"
    )]
    Spawn(String),
    #[error(
        "no SSH login to {user}@{host}:{port} within {waited_secs}s; the last attempt said: {last}. Check that the template runs sshd and the container's address is reachable from where terraform runs"
    )]
    Unreachable {
        user: String,
        host: String,
        port: u16,
        waited_secs: u64,
        last: String,
    },
    #[error("the bootstrap script failed on {host} ({status}); last lines of its output:\n{tail}")]
    Script {
        host: String,
        status: String,
        tail: String,
    },
    #[error(
        "the bootstrap script on {host} did not finish in time; last lines of its output:\n{tail}"
    )]
    Timeout { host: String, tail: String },
}

/// A key pair in a private temp dir, removed on drop.
pub struct KeyPair {
    dir: PathBuf,
    pub public: String,
}

impl KeyPair {
    pub async fn generate(comment: &str) -> Result<KeyPair, SshError> {
        let dir = std::env::temp_dir().join(format!("launch-ssh-{}", ulid::Ulid::new()));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| SshError::Keygen(format!("creating {}: {e}", dir.display())))?;
        }
        let mut pair = KeyPair {
            dir,
            public: String::new(),
        };
        let key = pair.private_path();
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| SshError::Keygen(e.to_string()))?;
        if !out.status.success() {
            return Err(SshError::Keygen(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        let public = std::fs::read_to_string(key.with_extension("pub"))
            .map_err(|e| SshError::Keygen(e.to_string()))?;
        pair.public = public.trim().to_owned();
        Ok(pair)
    }

    fn private_path(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where to SSH for a container address: `(host, port)`, port 22 unless
/// the test hook says otherwise.
pub fn target_for(ip: &str, overrides: Option<&str>) -> (String, u16) {
    for entry in overrides.unwrap_or_default().split(',') {
        if let Some((from, to)) = entry.trim().split_once('=')
            && from == ip
            && let Some((host, port)) = to.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            return (host.to_owned(), port);
        }
    }
    (ip.to_owned(), 22)
}

fn ssh_command(key: &Path, user: &str, host: &str, port: u16) -> Command {
    let mut command = Command::new("ssh");
    command
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "ServerAliveInterval=15",
            "-i",
        ])
        .arg(key)
        .args(["-p", &port.to_string(), "-l", user, host])
        .kill_on_drop(true);
    command
}

/// Waits for an SSH login to work, then runs `script` as root (through
/// `sudo` for another user) with it on stdin. Each output line is logged;
/// on failure the error carries the last [`OUTPUT_TAIL`] lines.
pub async fn run_script(
    keys: &KeyPair,
    user: &str,
    ip: &str,
    script: &str,
    deadline: Instant,
) -> Result<(), SshError> {
    let overrides = std::env::var(OVERRIDE_ENV).ok();
    let (host, port) = target_for(ip, overrides.as_deref());
    let key = keys.private_path();
    let started = Instant::now();
    let mut last: String;
    loop {
        let probe = ssh_command(&key, user, &host, port)
            .arg("true")
            .stdin(Stdio::null())
            .output();
        match tokio::time::timeout(Duration::from_secs(15), probe).await {
            Ok(Ok(out)) if out.status.success() => break,
            Ok(Ok(out)) => {
                last = String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .trim_end_matches('.')
                    .to_owned()
            }
            Ok(Err(e)) => return Err(SshError::Spawn(e.to_string())),
            Err(_) => last = "no answer within 15s".to_owned(),
        }
        if Instant::now() + Duration::from_secs(1) > deadline {
            return Err(SshError::Unreachable {
                user: user.to_owned(),
                host,
                port,
                waited_secs: started.elapsed().as_secs(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::info!(%host, port, "SSH is up: running the bootstrap script");
    let remote = if user == "root" {
        "sh -s"
    } else {
        "sudo -n sh -s"
    };
    let mut child = ssh_command(&key, user, &host, port)
        .arg(remote)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SshError::Spawn(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let script = script.to_owned();
    let feeder = tokio::spawn(async move {
        let _ = stdin.write_all(script.as_bytes()).await;
        let _ = stdin.shutdown().await;
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut readers = Vec::new();
    for stream in [
        Box::new(child.stdout.take().expect("piped stdout"))
            as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().expect("piped stderr")),
    ] {
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        }));
    }
    drop(tx);
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let collect = async {
        while let Some(line) = rx.recv().await {
            tracing::info!(target: "launch_bootstrap", %host, "{line}");
            if tail.len() == OUTPUT_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        child.wait().await
    };
    let waited = tokio::time::timeout_at(deadline, collect).await;
    let _ = feeder.await;
    for reader in readers {
        reader.abort();
    }
    let tail_text = || {
        let t: Vec<String> = tail.iter().map(|l| format!("  {l}")).collect();
        if t.is_empty() {
            "  (no output)".to_owned()
        } else {
            t.join("\n")
        }
    };
    match waited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(SshError::Script {
            host: ip.to_owned(),
            status: status.to_string(),
            tail: tail_text(),
        }),
        Ok(Err(e)) => Err(SshError::Spawn(e.to_string())),
        Err(_) => Err(SshError::Timeout {
            host: ip.to_owned(),
            tail: tail_text(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_override_maps_only_the_named_address() {
        let hook = Some("10.0.0.5=127.0.0.1:2222, 10.0.0.6=127.0.0.1:2223");
        assert_eq!(target_for("10.0.0.6", hook), ("127.0.0.1".into(), 2223));
        assert_eq!(target_for("10.0.0.9", hook), ("10.0.0.9".into(), 22));
        assert_eq!(target_for("10.0.0.9", None), ("10.0.0.9".into(), 22));
    }
}
