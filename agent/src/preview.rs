//! Pull-request previews on this host: an ephemeral copy of the agent's
//! service beside its environment, as its own compose project
//! `<service>-<environment>-<preview>`, with its releases in
//! `<data-dir>/previews/<preview>/` (the same layout as the service's:
//! `releases/<id>/`, `current`), routed at `<preview>.<name>` for each name
//! the service answers to, with every container capped by `docker update`
//! (memory and CPU; works with compose v1 and v2 alike).
//!
//! The preview's directory is created before any of its containers and
//! removed last, so it is the agent's record that a preview may have
//! something on the host: teardown ("refurbish") removes containers,
//! networks, volumes, the images built for the project, the route and the
//! certificates of its names, then the directory; every step finds nothing
//! to do the second time. The sweep tears down every directory the control
//! plane's list of live previews (sent in `Welcome`) does not name, which is
//! how an agent killed mid-teardown, or one that missed a teardown mission,
//! ends with nothing left behind. Nothing here touches the environment's own
//! project, directory or routes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::compose::{Compose, docker_output};
use crate::cutover::Front;
use crate::release::ServiceDir;
use crate::uplink::Sink;

const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the executor sweeps between missions (and at every `Welcome`).
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What the session last heard from the control plane: the live previews
/// of the agent's service (`None`: no `Welcome` yet).
pub type Known = Option<BTreeSet<String>>;

/// Where every preview's directory lives.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("previews")
}

/// A preview's release directories (`releases/<id>/`, `current`).
pub fn dir(data_dir: &Path, preview: &str) -> ServiceDir {
    ServiceDir::at(root(data_dir).join(preview))
}

/// The preview's compose project: `<service>-<environment>-<preview>`.
pub fn project(service: &str, environment: &str, preview: &str) -> String {
    format!("{service}-{environment}-{preview}")
}

/// The names a preview answers: `<preview>.<name>` for each of the service's.
pub fn host_names(preview: &str, names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|name| format!("{preview}.{name}"))
        .collect()
}

/// The preview's key in the route table (the routed compose service's
/// key is its name; a preview's is `<compose service>@<preview>`).
pub fn route_key(compose_service: &str, preview: &str) -> String {
    format!("{compose_service}@{preview}")
}

/// The previews that have a directory on this host.
pub fn on_disk(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root(data_dir)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| launch_core::names::PreviewName::parse(name).is_ok())
        .collect();
    names.sort();
    names
}

/// The previews to sweep: on disk, and not among those the control plane knows.
pub fn strays(data_dir: &Path, known: &BTreeSet<String>) -> Vec<String> {
    on_disk(data_dir)
        .into_iter()
        .filter(|name| !known.contains(name))
        .collect()
}

/// What each container of a preview may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub millicpus: u32,
}

impl Limits {
    /// The `docker update` flags, empty when there is no limit.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.memory_bytes > 0 {
            // The swap limit equal to the memory limit: no swap on top.
            flags.push(format!("--memory={}", self.memory_bytes));
            flags.push(format!("--memory-swap={}", self.memory_bytes));
        }
        if self.millicpus > 0 {
            flags.push(format!(
                "--cpus={}.{:03}",
                self.millicpus / 1000,
                self.millicpus % 1000
            ));
        }
        flags
    }
}

/// Applies `limits` to every container of the project (after `compose up`,
/// before the health gate, so a preview that does not fit fails its gate).
pub async fn limit(project: &str, limits: Limits, sink: &Sink) -> Result<(), String> {
    let flags = limits.flags();
    if flags.is_empty() {
        return Ok(());
    }
    let ids = containers(project).await?;
    if ids.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&str> = vec!["update"];
    args.extend(flags.iter().map(String::as_str));
    args.extend(ids.iter().map(String::as_str));
    docker_output(&args, DOCKER_TIMEOUT)
        .await
        .map_err(|e| format!("cannot limit the preview's containers: {e}"))?;
    sink.say(&format!(
        "preview limits applied to {} container(s): {}",
        ids.len(),
        flags.join(" ")
    ));
    Ok(())
}

async fn listed(args: &[&str]) -> Result<Vec<String>, String> {
    docker_output(args, DOCKER_TIMEOUT)
        .await
        .map(|out| out.split_whitespace().map(str::to_owned).collect())
        .map_err(|e| e.to_string())
}

fn project_label(project: &str) -> String {
    format!("label=com.docker.compose.project={project}")
}

async fn containers(project: &str) -> Result<Vec<String>, String> {
    listed(&[
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "--filter",
        &project_label(project),
    ])
    .await
}

/// What a teardown needs from the agent.
pub struct Teardown<'a> {
    pub data_dir: &'a Path,
    pub service: &'a str,
    pub environment: &'a str,
    pub preview: &'a str,
    pub compose: Option<&'a Compose>,
    pub front: Option<&'a Front>,
}

impl Teardown<'_> {
    /// Removes everything of the preview; idempotent.
    pub async fn run(&self, sink: &Sink, cancel: &CancellationToken) -> Result<String, String> {
        let project = project(self.service, self.environment, self.preview);
        let dir = dir(self.data_dir, self.preview);
        // compose first: it knows the project's networks, volumes and images.
        if let Some(compose) = self.compose {
            for release in release_dirs(&dir) {
                let Some(file) = crate::executor::compose_file(&release) else {
                    continue;
                };
                if let Err(err) = compose
                    .run(
                        &release,
                        &file,
                        &project,
                        // No `--rmi`: compose removes images with their
                        // untagged parents, the build cache a concurrent
                        // build on this host may be using (`No such
                        // image`). The images go below, with `--no-prune`.
                        &["down", "--remove-orphans", "--volumes"],
                        sink,
                        cancel,
                    )
                    .await
                {
                    sink.say(&format!(
                        "compose down failed ({err}); removing the project's objects one by one"
                    ));
                }
                break; // one release's file names the project's services
            }
        }
        // Then whatever carries the project's label (a crash before compose
        // down, a release dir without its compose file).
        let label = project_label(&project);
        let removals: [(&[&str], &[&str]); 3] = [
            (
                &["ps", "-a", "-q", "--no-trunc", "--filter"],
                &["rm", "-f", "-v"],
            ),
            (&["network", "ls", "-q", "--filter"], &["network", "rm"]),
            (&["volume", "ls", "-q", "--filter"], &["volume", "rm", "-f"]),
        ];
        for (list, remove) in removals {
            let mut args = list.to_vec();
            args.push(&label);
            let ids = listed(&args).await?;
            if ids.is_empty() {
                continue;
            }
            let mut args = remove.to_vec();
            args.extend(ids.iter().map(String::as_str));
            docker_output(&args, DOCKER_TIMEOUT)
                .await
                .map_err(|e| format!("cannot remove the preview's objects: {e}"))?;
        }
        // Images built for the project: compose v2 labels them, v1 names
        // them `<project>_<service>` ('_' is in no project name).
        let v1_reference = format!("reference={project}_*");
        let mut images = listed(&["images", "-q", "--filter", &label]).await?;
        images.extend(listed(&["images", "-q", "--filter", &v1_reference]).await?);
        images.sort();
        images.dedup();
        if !images.is_empty() {
            let mut args = vec!["rmi", "-f", "--no-prune"];
            args.extend(images.iter().map(String::as_str));
            docker_output(&args, DOCKER_TIMEOUT)
                .await
                .map_err(|e| format!("cannot remove the preview's images: {e}"))?;
        }
        if let Some(front) = self.front {
            let suffix = format!("@{}", self.preview);
            front
                .router
                .remove_matching(|key| key.ends_with(&suffix))
                .map_err(|e| format!("cannot remove the preview's routes: {e}"))?;
        }
        match std::fs::remove_dir_all(dir.root()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!("cannot remove {}: {e}", dir.root().display()));
            }
        }
        Ok(format!("preview {} removed", self.preview))
    }
}

/// The release directories of a preview, newest name first.
fn release_dirs(dir: &ServiceDir) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(dir.releases()) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    };
    if let Some(current) = dir.current() {
        dirs.insert(0, dir.release(&current));
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_its_own_project_dir_and_names() {
        assert_eq!(project("hello", "prod", "pr-7"), "hello-prod-pr-7");
        assert_eq!(
            host_names(
                "pr-7",
                &["hello.example.com".into(), "www.example.com".into()]
            ),
            ["pr-7.hello.example.com", "pr-7.www.example.com"]
        );
        assert_eq!(route_key("web", "pr-7"), "web@pr-7");
        let data = tempfile::tempdir().unwrap();
        assert!(
            dir(data.path(), "pr-7")
                .root()
                .starts_with(data.path().join("previews"))
        );
    }

    #[test]
    fn strays_are_the_previews_on_disk_the_control_plane_does_not_know() {
        let data = tempfile::tempdir().unwrap();
        assert!(on_disk(data.path()).is_empty(), "no previews dir yet");
        for name in ["pr-1", "pr-2", "not a preview"] {
            std::fs::create_dir_all(root(data.path()).join(name)).unwrap();
        }
        std::fs::write(root(data.path()).join("pr-3"), b"a file").unwrap();
        assert_eq!(on_disk(data.path()), ["pr-1", "pr-2"]);
        let known = BTreeSet::from(["pr-2".to_owned(), "pr-9".to_owned()]);
        assert_eq!(strays(data.path(), &known), ["pr-1"]);
    }

    #[test]
    fn limits_become_docker_update_flags() {
        assert!(Limits::default().flags().is_empty());
        let limits = Limits {
            memory_bytes: 64 * 1024 * 1024,
            millicpus: 500,
        };
        assert_eq!(
            limits.flags(),
            [
                "--memory=67108864",
                "--memory-swap=67108864",
                "--cpus=0.500"
            ]
        );
        let two = Limits {
            memory_bytes: 0,
            millicpus: 2000,
        };
        assert_eq!(two.flags(), ["--cpus=2.000"]);
    }
}
