//! Self-upgrade (`launch agents upgrade`): the agent replaces its own binary
//! with the one the control plane serves and restarts into it, leaving every
//! container running (they are Docker's, not the agent's children).
//!
//! [`begin`], in the old binary: fetch the binary (FetchAgentBinary), check
//! its sha256, write it beside the running one, keep the running one as
//! `<exe>.old` (a hard link), rename the new one over `<exe>` (atomic), write
//! the [`Marker`] (`<data-dir>/upgrade.json`, phase `pending`), start the
//! watchdog from `<exe>.old` in its own session (under systemd: its own
//! transient unit, so restarting the agent's unit does not kill it), then
//! restart: under systemd exit and let `Restart=always` start the new binary;
//! otherwise re-exec `<exe>` with the same arguments (same pid).
//!
//! The new binary resumes the journalled upgrade mission, waits for a session
//! to open (the control plane accepted its version) and moves the marker to
//! `confirmed`; the mission ends healthy. The watchdog (`watchdog`) moves a
//! marker still `pending` after the window (`--upgrade-window`, 60 s) to
//! `rolled_back`, puts `<exe>.old` back and starts the old binary, which
//! reports the mission failed with what happened. Both moves happen under
//! one lock on the marker, so exactly one of them wins.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use launch_proto::FetchAgentBinaryRequest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use launch_core::private_file;

use crate::config::Config;
use crate::identity;
use crate::journal::Record;
use crate::uplink::{Sink, Uplink};

pub mod watchdog;

pub const MARKER_FILE: &str = "upgrade.json";
const LOCK_FILE: &str = "upgrade.lock";
/// The watchdog's own output (and a restarted old agent's).
pub const WATCHDOG_LOG: &str = "upgrade-watchdog.log";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    Confirmed,
    RolledBack,
}

/// One upgrade in progress, shared by the old binary, the new one and the
/// watchdog through the data dir.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Marker {
    pub mission_id: String,
    pub from_version: String,
    pub to_version: String,
    pub to_sha256: String,
    /// The agent's executable, and where the old one is kept.
    pub exe: PathBuf,
    pub old: PathBuf,
    /// The agent's arguments, to start it again the same way.
    pub argv: Vec<String>,
    /// The agent's pid (the same after a re-exec).
    pub pid: u32,
    pub window_ms: u64,
    /// The systemd unit the agent runs under, if any.
    pub systemd_unit: Option<String>,
    pub phase: Phase,
    /// The old agent the watchdog started after a rollback (no systemd).
    #[serde(default)]
    pub restarted_pid: Option<u32>,
}

/// Reads and changes the marker under an exclusive lock on the data dir's
/// `upgrade.lock`; `change` returns whether to write the marker back.
pub fn with_marker<T>(
    data_dir: &Path,
    change: impl FnOnce(&mut Option<Marker>) -> (bool, T),
) -> io::Result<T> {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&lock);
    // SAFETY: flock on a file descriptor we own; released when `lock` closes.
    if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let path = data_dir.join(MARKER_FILE);
    let mut marker = match fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(io::Error::other)?),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    let (write, out) = change(&mut marker);
    if write {
        match &marker {
            Some(marker) => private_file::write_private(
                &path,
                &serde_json::to_vec_pretty(marker).map_err(io::Error::other)?,
            )?,
            None => match fs::remove_file(&path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            },
        }
    }
    drop(lock);
    Ok(out)
}

/// The marker of `mission_id`, if an upgrade of that mission is under way.
pub fn marker(data_dir: &Path, mission_id: &str) -> io::Result<Option<Marker>> {
    with_marker(data_dir, |marker| {
        (false, marker.clone().filter(|m| m.mission_id == mission_id))
    })
}

/// Moves a pending marker of `mission_id` to `to`; returns the phase it has
/// afterwards (another phase when someone else moved it first).
pub fn settle(data_dir: &Path, mission_id: &str, to: Phase) -> io::Result<Option<Phase>> {
    with_marker(data_dir, |marker| match marker {
        Some(m) if m.mission_id == mission_id && m.phase == Phase::Pending => {
            m.phase = to;
            (true, Some(to))
        }
        Some(m) if m.mission_id == mission_id => (false, Some(m.phase)),
        _ => (false, None),
    })
}

/// Forgets the marker (the mission is over).
pub fn clear(data_dir: &Path) -> io::Result<()> {
    with_marker(data_dir, |marker| (marker.take().is_some(), ()))
}

/// The sha256 of this agent's executable, or "" until a thread started by
/// the first call has read it (a debug build is large, and a Hello must not
/// wait for it: a self-upgraded agent has its window to reconnect in).
pub fn own_sha256() -> String {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            let sha = std::env::current_exe()
                .and_then(|exe| sha256_file(&exe))
                .unwrap_or_default();
            let _ = SHA.set(sha);
        });
    });
    SHA.get().cloned().unwrap_or_default()
}

/// The sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = fs::File::open(path)?;
    io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Installs the binary `record` names and restarts into it; returns only
/// when something failed before the binary was replaced (then nothing
/// changed) or the restart itself failed (then the watchdog rolls back).
pub async fn begin(
    config: &Config,
    identity: &identity::Shared,
    record: &Record,
    sink: &Sink,
    uplink: &Uplink,
) -> String {
    if record.agent_sha256.len() != 64 {
        return "the upgrade mission names no agent binary: upgrade the control plane".to_owned();
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return format!("cannot find this agent's executable: {err}"),
    };
    let new = sibling(&exe, ".new");
    let old = sibling(&exe, ".old");
    sink.say(&format!(
        "fetching launch-agent {} (sha256 {}) from the control plane",
        shown(&record.agent_version),
        &record.agent_sha256[..12]
    ));
    if let Err(err) = fetch(config, identity, record, &new).await {
        let _ = fs::remove_file(&new);
        return err;
    }
    if let Err(err) = swap(&exe, &new, &old) {
        let _ = fs::remove_file(&new);
        return format!(
            "cannot replace {}: {err}; the running binary is unchanged",
            exe.display()
        );
    }
    let systemd_unit =
        std::env::var_os("INVOCATION_ID").map(|_| crate::install::UNIT_NAME.to_owned());
    let marker = Marker {
        mission_id: record.mission_id.clone(),
        from_version: crate::VERSION.to_owned(),
        to_version: record.agent_version.clone(),
        to_sha256: record.agent_sha256.clone(),
        exe: exe.clone(),
        old: old.clone(),
        argv: std::env::args().collect(),
        pid: std::process::id(),
        window_ms: config.upgrade_window.as_millis() as u64,
        systemd_unit: systemd_unit.clone(),
        phase: Phase::Pending,
        restarted_pid: None,
    };
    if let Err(err) = with_marker(&config.data_dir, |m| (true, *m = Some(marker.clone()))) {
        let _ = restore(&exe, &old);
        return format!("cannot write the upgrade marker: {err}; the old binary is back");
    }
    if let Err(err) = watchdog::spawn(&config.data_dir, &old, systemd_unit.as_deref()) {
        let _ = restore(&exe, &old);
        let _ = clear(&config.data_dir);
        return format!("cannot start the upgrade watchdog: {err}; the old binary is back");
    }
    sink.say(&format!(
        "launch-agent replaced ({} kept as {}); restarting into it{}; containers keep running",
        exe.display(),
        old.display(),
        if systemd_unit.is_some() {
            " through systemd"
        } else {
            ""
        }
    ));
    // What the mission said reaches the control plane before the restart.
    let deadline = tokio::time::Instant::now() + FLUSH;
    while !uplink.settled() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if systemd_unit.is_some() {
        // Restart=always starts the new binary.
        std::process::exit(0);
    }
    // The front door's sockets go to the new process (see `ingress::handover`),
    // once its open connections have finished what their clients sent.
    let grace = crate::ingress::DRAIN_WAIT + Duration::from_secs(1);
    let inherited = crate::ingress::handover::hand_over(grace).await;
    let mut command = Command::new(&exe);
    command
        .arg0(
            marker
                .argv
                .first()
                .map(String::as_str)
                .unwrap_or("launch-agent"),
        )
        .args(marker.argv.iter().skip(1));
    if let Some(inherited) = &inherited {
        command.env(crate::ingress::handover::ENV, inherited);
    }
    let err = command.exec();
    if inherited.is_some() {
        // The front door stopped accepting here: leave it to the watchdog,
        // which restarts the old binary after the window.
        eprintln!(
            "launch-agent: cannot re-exec {} ({err}) after handing the front door over; exiting for the upgrade watchdog",
            exe.display()
        );
        std::process::exit(1);
    }
    // Still the old process: undo here rather than wait for the watchdog
    // (which finds the marker settled and leaves).
    let undone = match settle(&config.data_dir, &record.mission_id, Phase::RolledBack) {
        Ok(Some(Phase::RolledBack)) => restore(&exe, &old)
            .and_then(|()| clear(&config.data_dir))
            .map(|()| "the old binary is back".to_owned())
            .unwrap_or_else(|e| format!("putting the old binary back failed: {e}")),
        _ => "the watchdog puts the old binary back".to_owned(),
    };
    format!("cannot re-exec {}: {err}; {undone}", exe.display())
}

fn shown(version: &str) -> &str {
    if version.is_empty() {
        "(version unknown)"
    } else {
        version
    }
}

/// `<exe><suffix>` in the same directory, so renames between them are atomic.
pub fn sibling(exe: &Path, suffix: &str) -> PathBuf {
    let mut name = exe.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    exe.with_file_name(name)
}

async fn fetch(
    config: &Config,
    identity: &identity::Shared,
    record: &Record,
    path: &Path,
) -> Result<(), String> {
    let identity = identity.get().ok_or("the agent is not registered yet")?;
    let channel = identity::channel(&config.control_urls.current())
        .await
        .map_err(|e| e.to_string())?;
    let mut client = identity::client(channel, &identity.token).map_err(|e| e.to_string())?;
    let mut chunks = client
        .fetch_agent_binary(FetchAgentBinaryRequest {
            sha256: record.agent_sha256.clone(),
        })
        .await
        .map_err(|s| format!("cannot fetch the agent binary: {}", s.message()))?
        .into_inner();
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = chunks
        .message()
        .await
        .map_err(|s| format!("the agent binary download broke: {}", s.message()))?
    {
        hasher.update(&chunk.data);
        file.write_all(&chunk.data)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    file.sync_all().await.map_err(|e| e.to_string())?;
    drop(file);
    let sha = hex::encode(hasher.finalize());
    if sha != record.agent_sha256 {
        return Err(format!(
            "the agent binary's sha256 is {sha}, expected {}: refusing it",
            record.agent_sha256
        ));
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

/// Keeps `exe` as `old` and renames `new` over `exe`.
fn swap(exe: &Path, new: &Path, old: &Path) -> io::Result<()> {
    keep(exe, old)?;
    fs::rename(new, exe)
}

/// Puts `old` back as `exe` (atomically), keeping `old`.
pub fn restore(exe: &Path, old: &Path) -> io::Result<()> {
    let temp = sibling(exe, ".restore");
    keep(old, &temp)?;
    fs::rename(&temp, exe)
}

/// `to` becomes another name of `from` (a copy where links do not work).
fn keep(from: &Path, to: &Path) -> io::Result<()> {
    match fs::remove_file(to) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)?;
    }
    Ok(())
}

/// How long [`begin`] waits for the uplink to deliver what the mission said.
pub const FLUSH: Duration = Duration::from_secs(3);

/// Where the watchdog and a restarted agent write their output.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join(WATCHDOG_LOG)
}

/// Standard output and error going to the watchdog log (append).
pub fn log_stdio(data_dir: &Path) -> io::Result<(Stdio, Stdio)> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(data_dir))?;
    Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(dir: &Path) -> Marker {
        Marker {
            mission_id: "m-1".into(),
            from_version: "0.1.0".into(),
            to_version: "0.1.1".into(),
            to_sha256: "0".repeat(64),
            exe: dir.join("launch-agent"),
            old: dir.join("launch-agent.old"),
            argv: vec!["launch-agent".into(), "run".into()],
            pid: 1,
            window_ms: 1000,
            systemd_unit: None,
            phase: Phase::Pending,
            restarted_pid: None,
        }
    }

    #[test]
    fn the_first_to_settle_a_pending_upgrade_wins() {
        let dir = tempfile::tempdir().unwrap();
        with_marker(dir.path(), |m| (true, *m = Some(marker(dir.path())))).unwrap();
        assert_eq!(
            settle(dir.path(), "m-1", Phase::Confirmed).unwrap(),
            Some(Phase::Confirmed)
        );
        assert_eq!(
            settle(dir.path(), "m-1", Phase::RolledBack).unwrap(),
            Some(Phase::Confirmed),
            "the watchdog comes too late"
        );
        assert_eq!(settle(dir.path(), "m-2", Phase::Confirmed).unwrap(), None);
        assert!(super::marker(dir.path(), "m-1").unwrap().is_some());
        clear(dir.path()).unwrap();
        assert!(super::marker(dir.path(), "m-1").unwrap().is_none());
        use std::os::unix::fs::PermissionsExt;
        with_marker(dir.path(), |m| (true, *m = Some(marker(dir.path())))).unwrap();
        let mode = fs::metadata(dir.path().join(MARKER_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn swap_keeps_the_old_binary_and_restore_puts_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("launch-agent");
        fs::write(&exe, "old").unwrap();
        let new = sibling(&exe, ".new");
        let old = sibling(&exe, ".old");
        fs::write(&new, "new").unwrap();
        fs::write(&old, "stale").unwrap();
        swap(&exe, &new, &old).unwrap();
        assert_eq!(fs::read_to_string(&exe).unwrap(), "new");
        assert_eq!(fs::read_to_string(&old).unwrap(), "old");
        assert!(!new.exists());
        restore(&exe, &old).unwrap();
        assert_eq!(fs::read_to_string(&exe).unwrap(), "old");
        assert_eq!(fs::read_to_string(&old).unwrap(), "old", "kept");
    }
}
