//! Cleanup of what a test left in the Docker engine: every container, network
//! and volume labelled `com.docker.compose.project=<project>`, and the images
//! compose built for it (`<project>_<svc>` with v1, `<project>-<svc>` with v2).
//! A [`ComposeProject`] guard does this on drop, even when the test panicked.

use std::process::{Command, Stdio};

/// Removes a compose project's resources when dropped.
pub struct ComposeProject {
    pub name: String,
}

impl ComposeProject {
    pub fn new(name: impl Into<String>) -> ComposeProject {
        ComposeProject { name: name.into() }
    }

    fn label(&self) -> String {
        format!("label=com.docker.compose.project={}", self.name)
    }

    /// Ids of the project's containers (`running_only`: only running ones).
    pub fn containers(&self, running_only: bool) -> Vec<String> {
        let label = self.label();
        let mut args = vec!["ps", "-q", "--no-trunc", "--filter", &label];
        if !running_only {
            args.insert(1, "-a");
        }
        docker_lines(&args)
    }

    /// Removes containers, networks, volumes and built images of the project.
    pub fn remove(&self) {
        let label = self.label();
        let containers = self.containers(false);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            docker_quiet(&args);
        }
        let networks = docker_lines(&["network", "ls", "-q", "--filter", &label]);
        if !networks.is_empty() {
            let mut args = vec!["network", "rm"];
            args.extend(networks.iter().map(String::as_str));
            docker_quiet(&args);
        }
        let volumes = docker_lines(&["volume", "ls", "-q", "--filter", &label]);
        if !volumes.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(volumes.iter().map(String::as_str));
            docker_quiet(&args);
        }
        let images: Vec<String> = docker_lines(&["images", "--format", "{{.Repository}}"])
            .into_iter()
            .filter(|repo| {
                repo.strip_prefix(&self.name)
                    .is_some_and(|rest| rest.starts_with('_') || rest.starts_with('-'))
            })
            .collect();
        if !images.is_empty() {
            // `--no-prune`: untagged parents are build cache other tests'
            // concurrent builds may be using.
            let mut args = vec!["rmi", "-f", "--no-prune"];
            args.extend(images.iter().map(String::as_str));
            docker_quiet(&args);
        }
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `docker <args>` and returns its non-empty stdout lines (none on error).
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    match Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn docker_quiet(args: &[&str]) {
    let _ = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
