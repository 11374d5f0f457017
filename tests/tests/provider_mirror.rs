//! Installing the provider with no registry, as a newcomer would, with the
//! real terraform binaries: from the control plane's provider network mirror
//! over TLS (a test CA trusted through `SSL_CERT_FILE`, the CLI config
//! written by the template's install script as on a runner), and from the
//! filesystem mirror `launch provider install` lays out (in
//! `~/.terraform.d/plugins`, which terraform searches with no configuration
//! at all). Each time the lock file must record the hashes Launch computed,
//! so Launch's `h1:` is checked against terraform's own.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use launch_e2e::binaries::{self, bin_dir};
use launch_e2e::process::Process;
use launch_e2e::server::SCRUBBED_ENV;
use launch_e2e::terraform::{self, Terraform};

use crate::certs::Certs;

const MAIN_TF: &str = r#"terraform {
  required_providers {
    launch = {
      source = "launch/launch"
    }
  }
}

provider "launch" {
  control_url = "http://127.0.0.1:9"
  token       = "unused"
}
"#;

/// The hashes `launch provider install --output json` reports for the built
/// provider, installed into `dir`.
fn install(dir: &Path, home: &Path) -> serde_json::Value {
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .env("HOME", home)
        .args(["provider", "install", "--output", "json"]);
    if dir != home.join(".terraform.d/plugins") {
        command.arg("--dir").arg(dir);
    }
    let out = command.output().expect("run launch provider install");
    assert!(
        out.status.success(),
        "launch provider install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--output json prints JSON")
}

/// `terraform <args>` in `dir` with only what the test gives it: HOME, the
/// CLI config (or none), and the extra variables.
fn terraform_in(
    terraform: &Terraform,
    dir: &Path,
    home: &Path,
    cli_config: Option<&Path>,
    env: &[(&str, &Path)],
    args: &[&str],
) -> (bool, String) {
    let mut command = Command::new(&terraform.binary);
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("TF_") {
            command.env_remove(&key);
        }
    }
    command
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0");
    match cli_config {
        Some(path) => command.env("TF_CLI_CONFIG_FILE", path),
        None => command.env_remove("TF_CLI_CONFIG_FILE"),
    };
    command.envs(env.iter().copied());
    let out = command.output().expect("run terraform");
    let text = format!(
        "terraform {} {}:\n{}\n{}",
        terraform.version,
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `hashes` recorded for `launch/launch` in the lock file.
fn locked_hashes(dir: &Path) -> Vec<String> {
    let lock = fs::read_to_string(dir.join(".terraform.lock.hcl")).expect("a lock file");
    let start = lock
        .find("provider \"registry.terraform.io/launch/launch\"")
        .unwrap_or_else(|| panic!("launch/launch is not in the lock file:\n{lock}"));
    let block = &lock[start..];
    let block = &block[..block.find("\n}").unwrap_or(block.len())];
    block
        .split('"')
        .filter(|part| part.starts_with("h1:") || part.starts_with("zh:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn launch_provider_install_makes_terraform_init_work_with_no_registry_and_no_config() {
    for terraform in terraform::versions() {
        let home = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("main.tf"), MAIN_TF).unwrap();

        // Positive control: without the mirror, init cannot find the provider.
        let (ok, text) = terraform_in(
            &terraform,
            root.path(),
            home.path(),
            None,
            &[],
            &["init", "-no-color", "-backend=false"],
        );
        if ok {
            panic!("init found launch/launch before it was installed:\n{text}");
        }

        let installed = install(&home.path().join(".terraform.d/plugins"), home.path());
        let (ok, text) = terraform_in(
            &terraform,
            root.path(),
            home.path(),
            None,
            &[],
            &["init", "-no-color", "-backend=false"],
        );
        assert!(ok, "{text}");
        let h1 = installed["h1"].as_str().unwrap().to_owned();
        assert!(
            locked_hashes(root.path()).contains(&h1),
            "terraform's own h1 differs from Launch's {h1}: {:?}\n{text}",
            locked_hashes(root.path())
        );
        let (ok, text) = terraform_in(
            &terraform,
            root.path(),
            home.path(),
            None,
            &[],
            &["validate", "-no-color"],
        );
        assert!(ok, "the installed provider must start:\n{text}");
    }
}

/// `launch server --tls-cert --tls-key --provider-dir <target/debug>`.
fn tls_server(certs: &Certs, data_dir: &Path) -> (Process, u16) {
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .env("RUST_LOG", "info")
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--tls-cert")
        .arg(certs.path("server.pem"))
        .arg("--tls-key")
        .arg(certs.path("server.key"))
        .arg("--provider-dir")
        .arg(bin_dir());
    let process = Process::spawn("mirror server", command);
    let prefix = "launch server listening on https://";
    let line = process
        .stdout
        .wait_for(Duration::from_secs(30), |l| l.starts_with(prefix))
        .unwrap_or_else(|e| panic!("the server did not start: {e}\n{}", process.stderr.text()));
    let addr: std::net::SocketAddr = line[prefix.len()..].trim().parse().unwrap();
    (process, addr.port())
}

#[test]
fn terraform_init_installs_the_provider_from_the_control_planes_network_mirror() {
    binaries::binary("terraform-provider-launch");
    let certs = Certs::new();
    let data = tempfile::tempdir().unwrap();
    let (_server, port) = tls_server(&certs, &data.path().join("data"));
    let home = tempfile::tempdir().unwrap();
    let expected = install(&home.path().join("expected"), home.path());
    // The CLI config comes from the template's install script, as on a
    // runner whose control plane speaks https.
    let script = binaries::workspace_root()
        .join("examples/monorepo/.github/scripts/install-terraform-provider.sh");
    let mut command = Command::new("bash");
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    let out = command
        .arg(&script)
        .env_remove("LAUNCH_PROVIDER_URL")
        .env_remove("GITHUB_ENV")
        .env("LAUNCH_ADDR", format!("https://localhost:{port}/"))
        .env("MIRROR_DIR", home.path().join("mirror"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!(
            "url     = \"https://localhost:{port}/v1/terraform/providers/\""
        )),
        "{text}"
    );
    let ca = certs.path("ca.pem");
    for terraform in terraform::versions() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("main.tf"), MAIN_TF).unwrap();

        // Positive control: the mirror's certificate is checked.
        let (ok, text) = terraform_in(
            &terraform,
            root.path(),
            home.path(),
            Some(&config),
            &[],
            &["init", "-no-color", "-backend=false"],
        );
        assert!(
            !ok,
            "init trusted a certificate nobody vouched for:\n{text}"
        );

        let (ok, text) = terraform_in(
            &terraform,
            root.path(),
            home.path(),
            Some(&config),
            &[("SSL_CERT_FILE", &ca)],
            &["init", "-no-color", "-backend=false"],
        );
        assert!(ok, "{text}");
        // Terraform records the h1 it verified the mirror's package against.
        let locked = locked_hashes(root.path());
        let ours = expected["h1"].as_str().unwrap().to_owned();
        assert!(
            locked.contains(&ours),
            "the lock file lacks the mirror's {ours}: {locked:?}\n{text}"
        );
        let (ok, text) = terraform_in(
            &terraform,
            root.path(),
            home.path(),
            Some(&config),
            &[("SSL_CERT_FILE", &ca)],
            &["validate", "-no-color"],
        );
        assert!(ok, "the installed provider must start:\n{text}");
    }
}
