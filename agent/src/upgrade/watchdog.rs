//! The watchdog the old binary leaves behind during a self-upgrade
//! (`launch-agent upgrade-watchdog --data-dir D`, run from `<exe>.old`). It
//! polls the marker until the new binary confirms it, or the window passes:
//! then it moves the marker to `rolled_back` (under the marker's lock, so a
//! late confirmation cannot also win), puts `<exe>.old` back as `<exe>`,
//! stops the new binary and starts the old one — `systemctl restart` of the
//! agent's unit under systemd, else the saved command line in a new session
//! with its output in `<data-dir>/upgrade-watchdog.log`. The restarted old
//! agent finds the marker and reports the mission failed.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Phase, log_stdio, restore, with_marker};

/// How often the watchdog looks at the marker.
const POLL: Duration = Duration::from_millis(200);
/// How long a stopped new binary gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Starts the watchdog from `old` (the kept binary), detached from the
/// agent: in a new session, or in its own transient systemd unit.
pub fn spawn(data_dir: &Path, old: &Path, systemd_unit: Option<&str>) -> io::Result<()> {
    let (stdout, stderr) = log_stdio(data_dir)?;
    let mut command = match systemd_unit {
        Some(_) => {
            let mut command = Command::new("systemd-run");
            command
                .arg(format!(
                    "--unit=launch-agent-upgrade-watchdog-{}",
                    std::process::id()
                ))
                .args(["--collect", "--quiet", "--"])
                .arg(old);
            command
        }
        None => Command::new(old),
    };
    command
        .arg("upgrade-watchdog")
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if systemd_unit.is_none() {
        // SAFETY: setsid is async-signal-safe; the child only execs after it.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        command.spawn().map(drop)
    } else {
        let status = command.status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "systemd-run exited with {status}"
            )))
        }
    }
}

/// The watchdog process: returns once the upgrade is confirmed or rolled back.
pub fn run(data_dir: &Path) -> Result<String, String> {
    let started = Instant::now();
    let read = |what: &str| {
        with_marker(data_dir, |m| (false, m.clone()))
            .map_err(|e| format!("cannot read the upgrade marker ({what}): {e}"))
    };
    let Some(marker) = read("at start")? else {
        return Ok("no upgrade under way".to_owned());
    };
    let window = Duration::from_millis(marker.window_ms);
    loop {
        match read("while waiting")? {
            Some(m) if m.mission_id == marker.mission_id && m.phase == Phase::Pending => {}
            _ => {
                return Ok(
                    "the agent settled the upgrade (confirmed, or undone itself)".to_owned(),
                );
            }
        }
        if started.elapsed() >= window {
            break;
        }
        std::thread::sleep(POLL);
    }
    let won = super::settle(data_dir, &marker.mission_id, Phase::RolledBack)
        .map_err(|e| format!("cannot settle the upgrade marker: {e}"))?;
    if won != Some(Phase::RolledBack) {
        return Ok("the new agent confirmed the upgrade at the last moment".to_owned());
    }
    restore(&marker.exe, &marker.old)
        .map_err(|e| format!("cannot put {} back: {e}", marker.old.display()))?;
    if let Some(unit) = &marker.systemd_unit {
        for args in [["reset-failed", unit.as_str()], ["restart", unit.as_str()]] {
            let status = Command::new("systemctl")
                .args(args)
                .status()
                .map_err(|e| format!("cannot run systemctl: {e}"))?;
            if !status.success() && args[0] == "restart" {
                return Err(format!("systemctl restart {unit} failed: {status}"));
            }
        }
        return Ok(format!("rolled back; {unit} restarted"));
    }
    stop(marker.pid);
    let (stdout, stderr) = log_stdio(data_dir).map_err(|e| e.to_string())?;
    let mut command = Command::new(&marker.exe);
    command
        .arg0(
            marker
                .argv
                .first()
                .map(String::as_str)
                .unwrap_or("launch-agent"),
        )
        .args(marker.argv.iter().skip(1))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: setsid is async-signal-safe; the child only execs after it.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", marker.exe.display()))?;
    let pid = child.id();
    with_marker(data_dir, |m| match m {
        Some(m) => {
            m.restarted_pid = Some(pid);
            (true, ())
        }
        None => (false, ()),
    })
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "rolled back; the old agent runs again as pid {pid}"
    ))
}

/// Stops the new binary if it still runs (it may hang instead of exiting).
fn stop(pid: u32) {
    // A zombie (exited, not yet reaped by its parent) counts as stopped.
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    let pid = pid as libc::pid_t;
    // SAFETY: signal 0 only checks that the pid exists.
    let alive = || unsafe { libc::kill(pid, 0) } == 0 && !zombie();
    if !alive() {
        return;
    }
    // SAFETY: signals to the agent's own pid, recorded in the marker.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
