//! The service fixture: a copy of `examples/quickstart` in a temp dir named
//! after a unique service, its published port and `launch.toml` port
//! rewritten to a free port, a static busybox in `bin/`, and a
//! [`ComposeProject`] guard that removes its containers and images on drop.
//! Tests change the copy (index page, health path, compose command) to make
//! new or broken releases.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::binaries;
use crate::docker::ComposeProject;
use crate::http;
use crate::unique;

pub struct Service {
    pub name: String,
    pub environment: String,
    /// The host port the service publishes (and `launch.toml` names).
    pub port: u16,
    /// Removes the service's containers and images on drop.
    pub project: ComposeProject,
    dir: PathBuf,
    _temp: TempDir,
}

impl Service {
    /// A copy of the quickstart for a fresh unique service in environment `prod`.
    pub fn quickstart() -> Service {
        Service::from_quickstart(&unique::service_name(), "prod")
    }

    /// A copy of `examples/quickstart` for `name` in `environment`.
    pub fn from_quickstart(name: &str, environment: &str) -> Service {
        let source = binaries::workspace_root()
            .join("examples")
            .join("quickstart");
        assert!(
            source.join("Dockerfile").is_file(),
            "{} has no Dockerfile: the quickstart example is missing",
            source.display()
        );
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-service-")
            .tempdir()
            .expect("create a temp dir");
        let dir = temp.path().join(name);
        copy_tree(&source, &dir);
        let busybox = dir.join("bin").join("busybox");
        if !busybox.is_file() {
            fs::create_dir_all(busybox.parent().unwrap()).unwrap();
            fs::copy("/bin/busybox", &busybox)
                .expect("copy /bin/busybox (run scripts/setup to install busybox-static)");
        }
        let port = unique::free_port();
        let service = Service {
            name: name.to_owned(),
            environment: environment.to_owned(),
            port,
            project: ComposeProject::new(format!("{name}-{environment}")),
            dir,
            _temp: temp,
        };
        service.rewrite("compose.yaml", "8080:8080", &format!("{port}:8080"));
        service.rewrite("launch.toml", "port = 8080", &format!("port = {port}"));
        service.rewrite("launch.toml", "\"hello\"", &format!("{name:?}"));
        service
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory as a string, for command lines.
    pub fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// `GET <path>` on the service's port.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http::get(self.port, path)
    }

    /// Writes a file in the service directory (creating parent dirs).
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Replaces the body of `www/index.html` (to tell releases apart).
    pub fn set_index(&self, body: &str) {
        self.write("www/index.html", body);
    }

    /// Rewrites `launch.toml` with this probe path and health timeout.
    pub fn set_health(&self, path: &str, timeout: &str) {
        self.write(
            "launch.toml",
            &format!(
                "name = {name:?}\nport = {port}\n\n[health]\npath = {path:?}\ntimeout = {timeout:?}\ninterval = \"1s\"\n",
                name = self.name,
                port = self.port,
            ),
        );
    }

    /// Appends `settle = SETTLE` to `launch.toml`'s `[health]` table (its
    /// last table), so a test's health gates wait less than the default 5 s.
    pub fn set_settle(&self, settle: &str) {
        let path = self.dir.join("launch.toml");
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.rsplit_once('[')
                .is_some_and(|(_, last)| last.starts_with("health]")),
            "{} does not end in its [health] table; update the service fixture\n{text}",
            path.display()
        );
        fs::write(&path, format!("{text}settle = {settle:?}\n")).unwrap();
    }

    /// Replaces `compose.yaml` with one whose `web` container runs
    /// `/bin/busybox sh -c <script>` (`$` must be written `$$`), still built
    /// from the quickstart Dockerfile, publishing the port, reading `.env`.
    pub fn set_compose_script(&self, script: &str) {
        let command = serde_json::to_string(&["/bin/busybox", "sh", "-c", script]).unwrap();
        self.write(
            "compose.yaml",
            &format!(
                r#"services:
  web:
    build: .
    ports:
      - "{port}:8080"
    env_file: .env
    command: {command}
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 30
"#,
                port = self.port
            ),
        );
    }

    /// `["deploy", DIR, "--service", S, "--env", E]` followed by `extra`.
    pub fn deploy_args<'a>(&'a self, dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "deploy",
            dir,
            "--service",
            &self.name,
            "--env",
            &self.environment,
        ];
        args.extend_from_slice(extra);
        args
    }

    /// Ids of the service's running containers.
    pub fn running_containers(&self) -> Vec<String> {
        self.project.containers(true)
    }

    fn rewrite(&self, rel: &str, from: &str, to: &str) {
        let path = self.dir.join(rel);
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            text.contains(from),
            "{} no longer contains {from:?}; update the service fixture\n{text}",
            path.display()
        );
        fs::write(&path, text.replace(from, to)).unwrap();
    }
}

/// Copies a directory tree (files and directories; links are followed).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.unwrap();
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if fs::metadata(&src).unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        }
    }
}
