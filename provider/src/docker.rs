//! The Docker engine a `target = "docker"` host runs on, driven through the
//! `docker` CLI (what an operator would type, and no engine-API client to
//! keep in step with the engine's versions). `docker { host }` in the
//! provider block, else `DOCKER_HOST`, else the CLI's default (the local
//! socket). Each call has a timeout and is killed with the provider; the
//! first use checks the engine answers, so a missing engine is said once,
//! with what to fix. Scripts go to containers on stdin, never in argv.
//! Refreshes read from one listing of every managed container (one `docker
//! ps` and one `docker inspect` of them all, see `listing`), not a CLI call
//! per container.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value as Json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::Instant;

use crate::listing::{Listed, ListingCache, Source};

/// How long one short CLI call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of a failed bootstrap's output an error carries.
const OUTPUT_TAIL: usize = 30;
/// The label every host container carries (`key=value`): what the
/// refresh listing filters on.
pub const MANAGED_LABEL: (&str, &str) = ("launch.managed-by", "terraform-provider-launch");
/// Containers a single `docker inspect` of the listing names, so argv stays
/// far below the system's limit however many hosts there are.
const INSPECT_CHUNK: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "the docker CLI is not installed or not on PATH ({0}): install Docker (the CLI is enough when docker {{ host }} points at a remote engine)"
    )]
    NoCli(String),
    #[error(
        "cannot reach the Docker engine at {host} ({detail}): start Docker, or point docker {{ host }} in provider \"launch\" (or DOCKER_HOST) at a running engine, e.g. \"unix:///var/run/docker.sock\""
    )]
    Unreachable { host: String, detail: String },
    #[error("`docker {command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("`docker {command}` did not finish within {secs}s")]
    Timeout { command: String, secs: u64 },
    #[error("Docker answered `docker {command}` with something unexpected ({detail})")]
    Decode { command: String, detail: String },
}

/// Where the engine is: `None` leaves it to `DOCKER_HOST` and the CLI.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub host: Option<String>,
}

impl Settings {
    /// How errors name the engine.
    pub fn shown(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "the local socket (unix:///var/run/docker.sock)".to_owned())
    }
}

/// Whether `host` is an address the docker CLI accepts.
pub fn valid_host(host: &str) -> bool {
    ["unix://", "tcp://", "ssh://", "npipe://"]
        .iter()
        .any(|scheme| host.starts_with(scheme) && host.len() > scheme.len())
}

pub struct Docker {
    settings: Settings,
    cache: ListingCache<Inspected>,
    /// CLI calls made: what the listing saves is counted in tests.
    calls: AtomicUsize,
}

/// One container as `docker inspect` shows it, known by its full ID.
#[derive(Clone, Debug)]
pub struct Inspected(pub Json);

impl Listed for Inspected {
    fn id(&self) -> &str {
        self.0["Id"].as_str().unwrap_or_default()
    }
}

#[async_trait]
impl Source<Inspected> for Docker {
    type Error = DockerError;

    /// `docker ps` of the managed label, then `docker inspect` of them all
    /// (in chunks). A container removed between the two is left out: its
    /// read goes the direct way.
    async fn list_managed(&self) -> Result<Vec<Inspected>, DockerError> {
        let ids = self
            .containers_labeled(&format!("{}={}", MANAGED_LABEL.0, MANAGED_LABEL.1))
            .await?;
        let mut all = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(INSPECT_CHUNK) {
            let mut args = vec!["container", "inspect", "--format", "{{json .}}"];
            args.extend(chunk.iter().map(String::as_str));
            let out = self.call(&args, None).await?;
            let gone_only = out
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .all(|l| l.contains("No such container") || l.contains("No such object"));
            if !out.ok && !gone_only {
                return Err(DockerError::Command {
                    command: "container inspect".into(),
                    detail: last_line(&out.stderr),
                });
            }
            all.extend(parse_inspect_lines(&out.stdout)?);
        }
        Ok(all)
    }

    async fn describe(&self, id: &str) -> Result<Option<Inspected>, DockerError> {
        Ok(self.inspect(id).await?.map(Inspected))
    }
}

/// `docker inspect --format '{{json .}}'` of many containers: one JSON
/// object a line.
fn parse_inspect_lines(stdout: &str) -> Result<Vec<Inspected>, DockerError> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .map(Inspected)
                .map_err(|e| DockerError::Decode {
                    command: "container inspect".into(),
                    detail: e.to_string(),
                })
        })
        .collect()
}

/// What a finished CLI call printed.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Docker {
    /// A client whose engine answered `docker version`.
    pub async fn connect(settings: &Settings) -> Result<Docker, DockerError> {
        let docker = Docker {
            settings: settings.clone(),
            cache: ListingCache::default(),
            calls: AtomicUsize::new(0),
        };
        let out = docker
            .call(&["version", "--format", "{{.Server.Version}}"], None)
            .await?;
        if !out.ok || out.stdout.trim().is_empty() {
            return Err(DockerError::Unreachable {
                host: settings.shown(),
                detail: last_line(&out.stderr),
            });
        }
        tracing::debug!(engine = %out.stdout.trim(), "Docker engine answered");
        Ok(docker)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker");
        if let Some(host) = &self.settings.host {
            command.args(["-H", host]);
        }
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn call(&self, args: &[&str], stdin: Option<&str>) -> Result<Output, DockerError> {
        self.call_within(args, stdin, CALL_TIMEOUT).await
    }

    async fn call_within(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        limit: Duration,
    ) -> Result<Output, DockerError> {
        let shown = args.first().copied().unwrap_or_default().to_owned();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut command = self.command(args);
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command
            .spawn()
            .map_err(|e| DockerError::NoCli(e.to_string()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let text = text.to_owned();
            // The pipe closes when the task ends, which ends the script.
            let _ = pipe.write_all(text.as_bytes()).await;
            let _ = pipe.shutdown().await;
        }
        let waited = tokio::time::timeout(limit, child.wait_with_output()).await;
        let out = match waited {
            Ok(out) => out.map_err(|e| DockerError::NoCli(e.to_string()))?,
            Err(_) => {
                return Err(DockerError::Timeout {
                    command: shown,
                    secs: limit.as_secs(),
                });
            }
        };
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// A call that must succeed; its stdout.
    async fn checked(&self, args: &[&str]) -> Result<String, DockerError> {
        let out = self.call(args, None).await?;
        if !out.ok {
            return Err(DockerError::Command {
                command: args.iter().take(2).copied().collect::<Vec<_>>().join(" "),
                detail: last_line(&out.stderr),
            });
        }
        Ok(out.stdout)
    }

    /// A container for a refresh: from this process's listing of every
    /// managed container, else inspected directly; `None` when it is gone.
    pub async fn read(&self, container: &str) -> Result<Option<Json>, DockerError> {
        Ok(self.cache.read(self, container).await?.map(|i| i.0))
    }

    /// `docker inspect` of a container, `None` when there is none.
    pub async fn inspect(&self, container: &str) -> Result<Option<Json>, DockerError> {
        let out = self
            .call(
                &["container", "inspect", "--format", "{{json .}}", container],
                None,
            )
            .await?;
        if !out.ok {
            if out.stderr.contains("No such container") || out.stderr.contains("No such object") {
                return Ok(None);
            }
            return Err(DockerError::Command {
                command: "container inspect".into(),
                detail: last_line(&out.stderr),
            });
        }
        serde_json::from_str(out.stdout.trim())
            .map(Some)
            .map_err(|e| DockerError::Decode {
                command: "container inspect".into(),
                detail: e.to_string(),
            })
    }

    /// `docker run -d ARGS…`: the new container's ID.
    pub async fn run(&self, args: &[String]) -> Result<String, DockerError> {
        let _changing = self.cache.changing();
        let mut all = vec!["run", "-d"];
        all.extend(args.iter().map(String::as_str));
        Ok(self.checked(&all).await?.trim().to_owned())
    }

    /// `docker update` of CPU and memory limits, live.
    pub async fn set_limits(
        &self,
        container: &str,
        cpus: i64,
        memory_mib: i64,
    ) -> Result<(), DockerError> {
        let _changing = self.cache.changing();
        let memory = format!("{memory_mib}m");
        let cpus = cpus.to_string();
        self.checked(&[
            "update",
            "--cpus",
            &cpus,
            "--memory",
            &memory,
            "--memory-swap",
            &memory,
            container,
        ])
        .await
        .map(drop)
    }

    /// `docker rm -f`; a container already gone is fine.
    pub async fn remove(&self, container: &str) -> Result<(), DockerError> {
        let _changing = self.cache.changing();
        let out = self.call(&["rm", "-f", "-v", container], None).await?;
        if out.ok || out.stderr.contains("No such container") {
            return Ok(());
        }
        Err(DockerError::Command {
            command: "rm -f".into(),
            detail: last_line(&out.stderr),
        })
    }

    /// IDs of the containers carrying `label` (`key=value`), stopped ones too.
    pub async fn containers_labeled(&self, label: &str) -> Result<Vec<String>, DockerError> {
        let filter = format!("label={label}");
        let out = self
            .checked(&["ps", "-aq", "--no-trunc", "--filter", &filter])
            .await?;
        Ok(out.split_whitespace().map(str::to_owned).collect())
    }

    /// Removes the containers and networks of a compose project.
    pub async fn remove_project(&self, project: &str) -> Result<(), DockerError> {
        let label = format!("com.docker.compose.project={project}");
        for container in self.containers_labeled(&label).await? {
            self.remove(&container).await?;
        }
        let filter = format!("label={label}");
        let networks = self
            .checked(&["network", "ls", "-q", "--filter", &filter])
            .await?;
        for network in networks.split_whitespace() {
            self.checked(&["network", "rm", network]).await?;
        }
        Ok(())
    }

    /// Waits until systemd in the container has booted (running or
    /// degraded), then runs `script` as root with it on stdin. On failure
    /// the error carries the script's last lines of output.
    pub async fn bootstrap(
        &self,
        container: &str,
        script: &str,
        deadline: Instant,
    ) -> Result<(), DockerError> {
        let started = Instant::now();
        loop {
            let out = self
                .call(&["exec", container, "systemctl", "is-system-running"], None)
                .await?;
            let state = out.stdout.trim().to_owned();
            if matches!(state.as_str(), "running" | "degraded") {
                break;
            }
            if !out.ok
                && let Some(looping) = self.restart_loop(container).await?
            {
                return Err(looping);
            }
            if Instant::now() + Duration::from_secs(1) > deadline {
                return Err(DockerError::Command {
                    command: "exec systemctl".into(),
                    detail: format!(
                        "systemd in {container} had not booted after {}s (last state {state:?}, {}): the image must run systemd as PID 1",
                        started.elapsed().as_secs(),
                        last_line(&out.stderr)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let out = self
            .call_within(
                &["exec", "-i", container, "sh", "-s"],
                Some(script),
                left.max(CALL_TIMEOUT),
            )
            .await?;
        if out.ok {
            return Ok(());
        }
        let text = format!("{}{}", out.stdout, out.stderr);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(OUTPUT_TAIL)..].join("\n");
        Err(DockerError::Command {
            command: "exec sh -s".into(),
            detail: format!("the bootstrap script failed; last lines of its output:\n{tail}"),
        })
    }
}

/// Restarts while waiting for systemd after which a host counts as
/// restarting in a loop (a host that boots does not restart at all).
const RESTART_LOOP: u64 = 3;

impl Docker {
    /// When the host container keeps exiting and being restarted by its
    /// `--restart` policy before systemd boots, the error that says so —
    /// rather than waiting out `timeouts.create`. Exit 255 at once is how
    /// systemd fails when it cannot get an inotify instance, the limit many
    /// hosts on one engine reach first.
    async fn restart_loop(&self, container: &str) -> Result<Option<DockerError>, DockerError> {
        let Some(inspected) = self.inspect(container).await? else {
            return Ok(None);
        };
        let restarts = inspected["RestartCount"].as_u64().unwrap_or(0);
        if restarts < RESTART_LOOP {
            return Ok(None);
        }
        let exit = inspected["State"]["ExitCode"].as_i64().unwrap_or(0);
        Ok(Some(DockerError::Command {
            command: "run".into(),
            detail: format!(
                "the host container {container} keeps exiting before systemd boots (exit code {exit}, restarted {restarts} times); see `docker logs {container}`. \
                 Exit code 255 at start is most often the engine machine's inotify limit: every systemd host takes about 5 of \
                 `fs.inotify.max_user_instances` (128 by default), so past about 25 hosts new ones cannot boot. \
                 On the Docker engine's machine run `sysctl -w fs.inotify.max_user_instances=1024` (and set it in /etc/sysctl.d/ to keep it), then apply again"
            ),
        }))
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Containers made with `docker create` of an empty image (nothing
    /// runs), labelled as hosts are, removed (with the image) on drop.
    struct Made {
        image: String,
        names: Vec<String>,
    }

    fn sh(command: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .args(["-c", command])
            .output()
            .expect("run sh")
    }

    /// A name part no other test process uses.
    fn unique() -> String {
        format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    impl Made {
        fn new(count: usize) -> Made {
            let unique = unique();
            let made = Made {
                image: format!("launch-provider-test-empty:{unique}"),
                names: (0..count)
                    .map(|n| format!("launch-provider-test-{unique}-{n}"))
                    .collect(),
            };
            let out = sh(&format!(
                "tar -cf - -T /dev/null | docker import - {}",
                made.image
            ));
            assert!(out.status.success(), "docker import: {out:?}");
            for name in &made.names {
                let out = sh(&format!(
                    "docker create --name {name} --label {}={} {} /none",
                    MANAGED_LABEL.0, MANAGED_LABEL.1, made.image
                ));
                assert!(out.status.success(), "docker create: {out:?}");
            }
            made
        }
    }

    impl Drop for Made {
        fn drop(&mut self) {
            for name in &self.names {
                sh(&format!("docker rm -f {name}"));
            }
            sh(&format!("docker rmi {}", self.image));
        }
    }

    /// Against the machine's engine (which the e2e tests need too).
    #[tokio::test]
    async fn a_refresh_of_many_containers_reads_them_from_one_listing() {
        let made = Made::new(3);
        let docker = Docker::connect(&Settings::default())
            .await
            .expect("the machine's Docker engine answers");
        let mut ids = Vec::new();
        for name in &made.names {
            let inspect = docker.inspect(name).await.unwrap().expect("created");
            ids.push(inspect["Id"].as_str().unwrap().to_owned());
        }
        let before = docker.calls.load(Ordering::Relaxed);
        for (id, name) in ids.iter().zip(&made.names) {
            let read = docker.read(id).await.unwrap().expect("listed");
            assert_eq!(read["Name"], format!("/{name}"));
        }
        assert_eq!(
            docker.calls.load(Ordering::Relaxed) - before,
            2,
            "one `docker ps` and one `docker inspect` for all the reads"
        );

        // A change made by this process: the next read lists again and
        // sees it.
        docker.remove(&ids[0]).await.unwrap();
        assert!(docker.read(&ids[0]).await.unwrap().is_none());
        assert!(docker.read(&ids[1]).await.unwrap().is_some());
    }

    /// Two running containers of a busybox image, as `--restart
    /// unless-stopped` hosts are: one whose PID 1 exits 255 at once (as
    /// systemd does without an inotify instance), one that stays up.
    fn busybox_hosts() -> Made {
        let unique = unique();
        let mut made = Made {
            image: format!("launch-provider-test-busybox:{unique}"),
            names: Vec::new(),
        };
        let out = sh(&format!(
            "tar -cf - -C / bin/busybox | docker import - {}",
            made.image
        ));
        assert!(
            out.status.success(),
            "docker import (busybox-static is installed by scripts/setup): {out:?}"
        );
        for (suffix, command) in [("looping", "exit 255"), ("up", "sleep 300")] {
            let name = format!("launch-provider-test-{unique}-{suffix}");
            let out = sh(&format!(
                "docker run -d --restart unless-stopped --name {name} {} /bin/busybox sh -c '{command}'",
                made.image
            ));
            assert!(out.status.success(), "docker run: {out:?}");
            made.names.push(name);
        }
        made
    }

    /// Against the machine's engine.
    #[tokio::test]
    async fn a_host_container_restarting_in_a_loop_fails_the_bootstrap_naming_the_inotify_limit() {
        let made = busybox_hosts();
        let (looping, up) = (&made.names[0], &made.names[1]);
        let docker = Docker::connect(&Settings::default())
            .await
            .expect("the machine's Docker engine answers");
        // Long enough that failing by the deadline would say "had not booted".
        let deadline = Instant::now() + Duration::from_secs(120);
        let err = docker
            .bootstrap(looping, "true", deadline)
            .await
            .expect_err("a container that never stays up cannot be bootstrapped")
            .to_string();
        assert!(err.contains("keeps exiting before systemd boots"), "{err}");
        assert!(err.contains("exit code 255"), "{err}");
        assert!(
            err.contains("sysctl -w fs.inotify.max_user_instances="),
            "{err}"
        );
        // The positive control: a container that stays up is no loop.
        assert!(docker.restart_loop(up).await.unwrap().is_none());
    }

    #[test]
    fn an_inspect_of_many_containers_reads_one_json_object_a_line() {
        let listed = parse_inspect_lines("{\"Id\":\"a\"}\n\n{\"Id\":\"b\"}\n").unwrap();
        let ids: Vec<&str> = listed.iter().map(Listed::id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(parse_inspect_lines("not json").is_err());
    }

    #[test]
    fn engine_addresses_need_a_scheme_the_cli_knows() {
        assert!(valid_host("unix:///var/run/docker.sock"));
        assert!(valid_host("tcp://10.0.0.5:2375"));
        assert!(valid_host("ssh://me@nas"));
        assert!(!valid_host("/var/run/docker.sock"));
        assert!(!valid_host("http://10.0.0.5:2375"));
        assert!(!valid_host("tcp://"));
    }
}
