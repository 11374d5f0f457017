//! A child process under test: every stdout and stderr line is captured (and
//! echoed to the test's stderr with a prefix, which nextest shows only when a
//! test fails), tests wait for lines with a deadline, and the process is
//! killed with SIGKILL when dropped — or dies with the test process, through
//! `PR_SET_PDEATHSIG`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines read so far from one stream, and whether the stream has ended.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    closed: bool,
}

/// One captured output stream shared with its reader thread.
#[derive(Clone, Default)]
pub struct Captured {
    inner: Arc<(Mutex<Lines>, Condvar)>,
}

impl Captured {
    fn start(
        &self,
        reader: impl Read + Send + 'static,
        prefix: String,
        echo: bool,
    ) -> JoinHandle<()> {
        let captured = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\n', '\r'])
                            .to_owned();
                        if echo {
                            eprintln!("{prefix} {line}");
                        }
                        let (lock, cvar) = &*captured.inner;
                        lock.lock().unwrap().lines.push(line);
                        cvar.notify_all();
                    }
                }
            }
            let (lock, cvar) = &*captured.inner;
            lock.lock().unwrap().closed = true;
            cvar.notify_all();
        })
    }

    /// Every line captured so far.
    pub fn lines(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().lines.clone()
    }

    /// Every line captured so far, joined with newlines.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// How many lines have been captured so far.
    pub fn len(&self) -> usize {
        self.inner.0.lock().unwrap().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until a line at index `from` or later matches `pred` and returns
    /// it; `Err` with the lines seen if the deadline passes or the stream ends.
    pub fn wait_for_from(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let start = Instant::now();
        let deadline = start + timeout;
        let (lock, cvar) = &*self.inner;
        let mut state = lock.lock().unwrap();
        loop {
            if let Some(line) = state.lines.iter().skip(from).find(|l| pred(l)) {
                return Ok(line.clone());
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                let why = if state.closed {
                    "the stream ended"
                } else {
                    "timed out"
                };
                let tail: Vec<_> = state.lines.iter().rev().take(40).rev().collect();
                return Err(format!(
                    "{why} after {:.1}s; last lines:\n{}",
                    start.elapsed().as_secs_f64(),
                    tail.iter()
                        .map(|l| format!("  {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
            state = cvar.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// Waits until any captured line matches `pred`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        self.wait_for_from(0, timeout, pred)
    }
}

/// A running child with captured output; SIGKILLed on drop.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    pub stdout: Captured,
    pub stderr: Captured,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Spawns `command` with piped stdout/stderr. `name` prefixes echoed lines.
    pub fn spawn(name: &str, command: Command) -> Process {
        Process::spawn_with_stdin(name, command, None)
    }

    /// Like [`Process::spawn`], writing `stdin` to the child and closing it.
    pub fn spawn_with_stdin(name: &str, mut command: Command, stdin: Option<Vec<u8>>) -> Process {
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            // Small inputs fit the pipe buffer; the pipe closes when `pipe` drops.
            let _ = pipe.write_all(&bytes);
        }
        let stdout = Captured::default();
        let stderr = Captured::default();
        let readers = vec![
            stdout.start(child.stdout.take().unwrap(), format!("[{name} out]"), true),
            stderr.start(child.stderr.take().unwrap(), format!("[{name} err]"), true),
        ];
        Process {
            name: name.to_owned(),
            child: Some(child),
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the process has exited (and with what), without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGKILL (kill -9) and reaps the process.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Sends SIGINT and waits up to `timeout` for the exit, then SIGKILLs.
    pub fn interrupt(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_status() {
                Some(status) => {
                    self.child = None;
                    for reader in self.readers.drain(..) {
                        let _ = reader.join();
                    }
                    return Ok(status);
                }
                None if Instant::now() >= deadline => {
                    return Err(format!(
                        "{} still running after {:.1}s; stderr:\n{}",
                        self.name,
                        timeout.as_secs_f64(),
                        self.stderr.text()
                    ));
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
