//! The monorepo kit: the `launch-service` module, the `infrastructure/` root,
//! the examples, the GitHub workflows and the `launch-deploy` action. HCL is
//! formatted and validates offline (terraform installs `launch/launch` from a
//! filesystem mirror made by the template's own install script); the
//! workflows and the action match GitHub's schemas, keep their triggers,
//! concurrency and wiring, and their shell passes shellcheck;
//! `infrastructure/` as committed (the PRD example, public) applies against
//! moto, the Cloudflare fake and a real control plane, and the action's
//! script, run as a runner would run it, then takes the template's `hello`
//! service live on the host terraform made, its `url` answering over HTTPS
//! through the agent's front door with a certificate from pebble; a release
//! that never becomes healthy fails the step.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use launch_e2e::binaries::{self, workspace_root};
use launch_e2e::cloudflare::CloudflareFake;
use launch_e2e::docker::ComposeProject;
use launch_e2e::front_door::{Ports, env_refs};
use launch_e2e::moto::{Moto, script_value, venv_tool};
use launch_e2e::pebble::{Pebble, PebbleOptions, tls_exchange};
use launch_e2e::poll::eventually;
use launch_e2e::process::Process;
use launch_e2e::server::SCRUBBED_ENV;
use launch_e2e::service::copy_tree;
use launch_e2e::terraform::{self, Terraform};
use launch_e2e::{Agent, Server, cli, unique};

/// The directories of the kit that hold Terraform, relative to the workspace.
const HCL_DIRS: [&str; 6] = [
    "modules",
    "infrastructure",
    "examples/aws",
    "examples/proxmox",
    "examples/docker",
    "examples/monorepo",
];

/// Every Terraform root (or module) that `terraform validate` must accept.
/// `examples/proxmox` validates too: the provider refuses `target =
/// "proxmox"` only at plan, once the module's inputs are known.
const VALIDATED_ROOTS: [&str; 6] = [
    "modules/launch-service",
    "infrastructure",
    "examples/aws",
    "examples/proxmox",
    "examples/docker",
    "examples/monorepo/infrastructure",
];

const WORKFLOWS: [&str; 3] = [
    "examples/monorepo/.github/workflows/infra.yml",
    "examples/monorepo/.github/workflows/deploy.yml",
    "examples/monorepo/.github/workflows/preview.yml",
];

const ACTIONS: [&str; 2] = [
    ".github/actions/launch-deploy/action.yml",
    "examples/monorepo/.github/actions/launch-deploy/action.yml",
];

const SCRIPTS: [&str; 3] = [
    ".github/actions/launch-deploy/deploy.sh",
    "examples/monorepo/.github/scripts/changed-services.sh",
    "examples/monorepo/.github/scripts/install-terraform-provider.sh",
];

const DEPLOY_SCRIPT: &str = ".github/actions/launch-deploy/deploy.sh";
const INSTALL_PROVIDER_SCRIPT: &str =
    "examples/monorepo/.github/scripts/install-terraform-provider.sh";

/// What a command did, with everything needed for a failure message.
struct Ran {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn of(what: impl Into<String>, command: &mut Command) -> Ran {
        let what = what.into();
        let Output {
            status,
            stdout,
            stderr,
        } = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        Ran {
            what,
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    fn text(&self) -> String {
        format!(
            "{} exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }

    fn success(self) -> Ran {
        assert_eq!(self.code, Some(0), "{}", self.text());
        self
    }
}

/// A command with none of the developer's Launch, GitHub or terraform
/// variables, so what a test sets is all the script sees.
fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("GITHUB_")
            || key.starts_with("RUNNER_")
            || key.starts_with("INPUT_")
            || key.starts_with("TF_")
        {
            command.env_remove(&key);
        }
    }
    command.env_remove("LAUNCH_CLI");
    command
}

/// The newest terraform, which must be new enough for `use_lockfile`.
fn terraform_for_the_kit() -> Terraform {
    let terraform = terraform::newest();
    let version: Vec<u32> = terraform
        .version
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        version >= vec![1, 10],
        "infrastructure/ needs terraform >= 1.10 (S3 use_lockfile); the newest found is {} at {}: put a newer terraform on PATH",
        terraform.version,
        terraform.binary.display()
    );
    terraform
}

/// A copy of the kit's Terraform directories, so `init` writes nothing into
/// the checkout, and a provider mirror made by the template's install script
/// from the freshly built provider.
struct Kit {
    dir: tempfile::TempDir,
    terraform: Terraform,
    cli_config: PathBuf,
}

impl Kit {
    fn new() -> Kit {
        let dir = tempfile::Builder::new()
            .prefix("launch-e2e-kit-")
            .tempdir()
            .expect("create a temp dir");
        let root = workspace_root();
        for rel in HCL_DIRS {
            copy_tree(&root.join(rel), &dir.path().join(rel));
        }
        let cli_config = install_provider(&dir.path().join("provider-mirror"));
        Kit {
            dir,
            terraform: terraform_for_the_kit(),
            cli_config,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn terraform(&self, root: &str, args: &[&str]) -> Command {
        let mut command = clean_command(&self.terraform.binary);
        command
            .args(args)
            .current_dir(self.path(root))
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1");
        command
    }

    fn run(&self, root: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let mut command = self.terraform(root, args);
        command.envs(env.iter().copied());
        Ran::of(
            format!(
                "terraform {} {} in {root}",
                self.terraform.version,
                args.join(" ")
            ),
            &mut command,
        )
    }
}

/// Runs the template's install script on the built provider (a `file://`
/// URL) and returns the CLI config it wrote.
fn install_provider(mirror: &Path) -> PathBuf {
    let provider = binaries::binary("terraform-provider-launch");
    let sha = Ran::of("sha256sum", Command::new("sha256sum").arg(&provider)).success();
    let sha = sha.stdout.split_whitespace().next().unwrap().to_owned();
    let ran = Ran::of(
        INSTALL_PROVIDER_SCRIPT,
        clean_command("bash")
            .arg(workspace_root().join(INSTALL_PROVIDER_SCRIPT))
            .env(
                "LAUNCH_PROVIDER_URL",
                format!("file://{}", provider.display()),
            )
            .env("LAUNCH_PROVIDER_SHA256", &sha)
            .env("MIRROR_DIR", mirror),
    )
    .success();
    let config = PathBuf::from(ran.stdout.trim());
    assert!(
        config.is_file(),
        "the install script printed no config\n{}",
        ran.text()
    );
    config
}

#[test]
fn provider_install_script_refuses_a_binary_whose_sha256_does_not_match() {
    let temp = tempfile::tempdir().unwrap();
    let download = temp.path().join("terraform-provider-launch");
    fs::write(&download, "#!/bin/sh\necho not the provider\n").unwrap();
    let mirror = temp.path().join("mirror");
    let ran = Ran::of(
        INSTALL_PROVIDER_SCRIPT,
        clean_command("bash")
            .arg(workspace_root().join(INSTALL_PROVIDER_SCRIPT))
            .env(
                "LAUNCH_PROVIDER_URL",
                format!("file://{}", download.display()),
            )
            .env("LAUNCH_PROVIDER_SHA256", "0".repeat(64))
            .env("MIRROR_DIR", &mirror)
            .env("GITHUB_ENV", temp.path().join("github-env")),
    );
    assert_eq!(ran.code, Some(1), "{}", ran.text());
    assert!(ran.stderr.contains("sha256 mismatch"), "{}", ran.text());
    let installed = mirror.join("registry.terraform.io/launch/launch/0.1.0/linux_amd64");
    let left: Vec<_> = fs::read_dir(&installed)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing may be installed: {left:?}");
    assert!(
        !mirror.join("terraform.rc").exists(),
        "no CLI config for an unchecked provider"
    );
    assert!(
        !temp.path().join("github-env").exists(),
        "TF_CLI_CONFIG_FILE must not reach later steps"
    );
}

#[test]
fn kit_terraform_files_are_formatted() {
    let terraform = terraform_for_the_kit();
    let mut command = clean_command(&terraform.binary);
    command
        .args(["fmt", "-check", "-recursive", "-diff", "-no-color"])
        .args(HCL_DIRS)
        .current_dir(workspace_root())
        .env("CHECKPOINT_DISABLE", "1");
    let ran = Ran::of("terraform fmt -check -recursive", &mut command);
    assert_eq!(
        ran.code,
        Some(0),
        "run `terraform fmt -recursive {}`\n{}",
        HCL_DIRS.join(" "),
        ran.text()
    );
}

#[test]
fn module_infrastructure_and_examples_init_offline_and_validate() {
    let kit = Kit::new();
    for root in VALIDATED_ROOTS {
        // The provider comes from the mirror and every module is local, so
        // init needs no registry; -backend=false skips the S3 backend.
        kit.run(root, &["init", "-backend=false", "-no-color"], &[])
            .success();
        let validate = kit.run(root, &["validate", "-no-color"], &[]).success();
        assert!(
            validate.stdout.contains("The configuration is valid"),
            "{}",
            validate.text()
        );
    }
}

#[test]
fn proxmox_example_plan_without_proxmox_settings_says_which_to_set() {
    let kit = Kit::new();
    let root = "examples/proxmox";
    kit.run(root, &["init", "-backend=false", "-no-color"], &[])
        .success();
    // Nothing is contacted: without an endpoint and token the provider
    // stops the plan and names both settings and their variables.
    let plan = kit.run(
        root,
        &["plan", "-no-color", "-input=false"],
        &[
            ("LAUNCH_ADDR", "http://127.0.0.1:9"),
            ("LAUNCH_TOKEN", "unused"),
        ],
    );
    assert_eq!(plan.code, Some(1), "{}", plan.text());
    let text = plan.text().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains("Proxmox is not configured")
            && text.contains("PROXMOX_VE_ENDPOINT")
            && text.contains("PROXMOX_VE_API_TOKEN"),
        "the plan must say which Proxmox settings are missing\n{}",
        plan.text()
    );
}

#[test]
fn module_refuses_an_unknown_target_at_plan_with_its_own_message() {
    let kit = Kit::new();
    let root = "examples/aws";
    let main = kit.path(root).join("main.tf");
    let text = fs::read_to_string(&main).unwrap();
    assert!(text.contains("target       = \"aws\""), "{text}");
    fs::write(
        &main,
        text.replace("target       = \"aws\"", "target       = \"gcp\""),
    )
    .unwrap();
    kit.run(root, &["init", "-backend=false", "-no-color"], &[])
        .success();
    let plan = kit.run(
        root,
        &["plan", "-no-color", "-input=false"],
        &[
            ("LAUNCH_ADDR", "http://127.0.0.1:9"),
            ("LAUNCH_TOKEN", "unused"),
        ],
    );
    assert_eq!(plan.code, Some(1), "{}", plan.text());
    assert!(
        plan.stderr
            .contains("target must be \"aws\", \"proxmox\" or \"docker\""),
        "{}",
        plan.text()
    );
}

#[test]
fn monorepo_template_carries_exact_copies_of_the_module_and_the_action() {
    let root = workspace_root();
    for (original, copy) in [
        (
            "modules/launch-service",
            "examples/monorepo/modules/launch-service",
        ),
        (
            ".github/actions/launch-deploy",
            "examples/monorepo/.github/actions/launch-deploy",
        ),
    ] {
        let names = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let (from, to) = (root.join(original), root.join(copy));
        assert_eq!(
            names(&from),
            names(&to),
            "{copy} must hold the same files as {original}: copy it again"
        );
        for name in names(&from) {
            assert_eq!(
                fs::read(from.join(&name)).unwrap(),
                fs::read(to.join(&name)).unwrap(),
                "{copy}/{name} differs from {original}/{name}: the template's copy must be exact (cp -r {original} {})",
                Path::new(copy).parent().unwrap().display()
            );
        }
    }
}

#[test]
fn workflows_and_actions_match_githubs_schemas() {
    let root = workspace_root();
    let tool = venv_tool("check-jsonschema");
    for (schema, files) in [
        ("vendor.github-workflows", &WORKFLOWS[..]),
        ("vendor.github-actions", &ACTIONS[..]),
    ] {
        let ran = Ran::of(
            format!("check-jsonschema --builtin-schema {schema}"),
            Command::new(&tool)
                .args(["--builtin-schema", schema])
                .args(files)
                .current_dir(&root),
        );
        assert_eq!(
            ran.code,
            Some(0),
            "(no check-jsonschema? run scripts/setup)\n{}",
            ran.text()
        );
    }
}

/// Every `run:` of a workflow or composite action, as
/// `(where, shell, script)`, read with the YAML parser check-jsonschema uses.
fn run_steps(file: &Path) -> Vec<(String, String, String)> {
    const EXTRACT: &str = r#"
import json, sys
from ruamel.yaml import YAML
doc = YAML(typ="safe").load(open(sys.argv[1]))
out = []
def default_shell(*scopes):
    for scope in scopes:
        shell = ((scope or {}).get("defaults") or {}).get("run", {}).get("shell")
        if shell:
            return shell
    return "bash"
if "jobs" in doc:
    for name, job in doc["jobs"].items():
        shell = default_shell(job, doc)
        for i, step in enumerate(job.get("steps") or []):
            if "run" in step:
                out.append([f"jobs.{name}.steps[{i}]", step.get("shell", shell), step["run"]])
else:
    for i, step in enumerate(doc["runs"].get("steps") or []):
        if "run" in step:
            out.append([f"runs.steps[{i}]", step["shell"], step["run"]])
print(json.dumps(out))
"#;
    let ran = Ran::of(
        format!("extract run steps of {}", file.display()),
        Command::new(venv_tool("python"))
            .args(["-c", EXTRACT])
            .arg(file),
    )
    .success();
    let steps: Vec<(String, String, String)> =
        serde_json::from_str(&ran.stdout).expect("run steps as JSON");
    steps
}

/// A workflow as JSON, read with the YAML parser check-jsonschema uses.
fn workflow(rel: &str) -> serde_json::Value {
    let ran = Ran::of(
        format!("read {rel}"),
        Command::new(venv_tool("python"))
            .args([
                "-c",
                "import json, sys\nfrom ruamel.yaml import YAML\nprint(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))",
            ])
            .arg(workspace_root().join(rel)),
    )
    .success();
    serde_json::from_str(&ran.stdout).expect("the workflow as JSON")
}

/// The `uses:` of every step of a job.
fn uses(job: &serde_json::Value) -> Vec<String> {
    job["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["uses"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn infra_workflow_comments_plans_on_pull_requests_and_applies_main_one_at_a_time() {
    let infra = workflow(WORKFLOWS[0]);
    assert!(infra["on"]["pull_request"].is_object(), "{infra}");
    assert_eq!(
        infra["on"]["push"]["branches"],
        serde_json::json!(["main"]),
        "{infra}"
    );
    let plan = &infra["jobs"]["plan"];
    assert_eq!(plan["if"], "github.event_name == 'pull_request'");
    assert_eq!(
        plan["permissions"]["pull-requests"], "write",
        "the comment needs it"
    );
    assert!(
        uses(plan)
            .iter()
            .any(|u| u.starts_with("actions/github-script@")),
        "the plan is posted with actions/github-script: {:?}",
        uses(plan)
    );
    let apply = &infra["jobs"]["apply"];
    assert!(
        apply["if"].as_str().unwrap_or_default().contains("'push'"),
        "{apply}"
    );
    // One queue for every apply, never cancelled half-way.
    assert_eq!(apply["concurrency"]["group"], "infra-apply", "{apply}");
    assert_eq!(apply["concurrency"]["cancel-in-progress"], false, "{apply}");
    let steps = apply["steps"].to_string();
    assert!(steps.contains("terraform apply -auto-approve"), "{steps}");
    assert!(
        steps.contains("-lock-timeout="),
        "wait for the S3 lock, don't fail: {steps}"
    );
}

#[test]
fn deploy_workflow_runs_the_action_once_per_changed_service() {
    let deploy = workflow(WORKFLOWS[1]);
    assert_eq!(
        deploy["on"]["push"]["paths"],
        serde_json::json!(["services/**"]),
        "{deploy}"
    );
    let changes = &deploy["jobs"]["changes"];
    assert_eq!(
        changes["outputs"]["services"],
        "${{ steps.find.outputs.services }}"
    );
    assert_eq!(
        changes["steps"][0]["with"]["fetch-depth"], 0,
        "the diff needs the commit before the push"
    );
    let job = &deploy["jobs"]["deploy"];
    assert_eq!(
        job["strategy"]["matrix"]["service"],
        "${{ fromJSON(needs.changes.outputs.services) }}"
    );
    assert_eq!(
        job["strategy"]["fail-fast"], false,
        "one broken service must not stop the others"
    );
    assert_eq!(job["concurrency"]["cancel-in-progress"], false, "{job}");
    assert!(
        uses(job).contains(&"./.github/actions/launch-deploy".to_owned()),
        "{job}"
    );
    let with = &job["steps"][1]["with"];
    assert_eq!(
        with["token"], "${{ secrets.LAUNCH_DEPLOY_TOKEN }}",
        "CI deploys with a deploy-scoped token, never the admin token: {with}"
    );
    assert_eq!(
        with["control-url"], "${{ secrets.LAUNCH_CONTROL_URL }}",
        "{with}"
    );
    assert_eq!(
        with["service-dir"], "services/${{ matrix.service }}",
        "{with}"
    );
}

#[test]
fn preview_workflow_previews_changed_services_per_pull_request_and_removes_them_on_close() {
    let preview = workflow(WORKFLOWS[2]);
    assert_eq!(
        preview["on"]["pull_request"]["types"],
        serde_json::json!(["opened", "synchronize", "reopened", "closed"]),
        "{preview}"
    );
    let changes = &preview["jobs"]["changes"];
    assert_eq!(
        changes["if"], "github.event.pull_request.head.repo.full_name == github.repository",
        "pull requests from forks get no secrets, so no preview jobs: {changes}"
    );
    let number = "pr-${{ github.event.pull_request.number }}";
    for (job, remove) in [("preview", false), ("remove", true)] {
        let job = &preview["jobs"][job];
        assert_eq!(
            job["strategy"]["matrix"]["service"], "${{ fromJSON(needs.changes.outputs.services) }}",
            "{job}"
        );
        let step = job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["uses"] == "./.github/actions/launch-deploy")
            .unwrap_or_else(|| panic!("no launch-deploy step: {job}"));
        let with = &step["with"];
        assert_eq!(with["preview"], number, "{with}");
        assert_eq!(
            with["token"], "${{ secrets.LAUNCH_DEPLOY_TOKEN }}",
            "{with}"
        );
        assert_eq!(
            with["remove-preview"] == "true",
            remove,
            "only the closed job removes: {with}"
        );
    }
}

#[test]
fn workflow_run_steps_and_action_scripts_pass_shellcheck() {
    let root = workspace_root();
    let temp = tempfile::tempdir().unwrap();
    let mut checked: Vec<PathBuf> = SCRIPTS.iter().map(|s| root.join(s)).collect();
    for file in WORKFLOWS.iter().chain(ACTIONS.iter()) {
        let steps = run_steps(&root.join(file));
        assert!(!steps.is_empty(), "{file} has no run steps");
        for (index, (location, shell, script)) in steps.into_iter().enumerate() {
            assert_eq!(
                shell, "bash",
                "{file} {location}: only bash steps are linted"
            );
            // An expression spliced into a script is an injection waiting to
            // happen (a branch name, a PR title); values go through env:.
            assert!(
                !script.contains("${{"),
                "{file} {location} splices a ${{{{ }}}} expression into its script: pass it through env: instead\n{script}"
            );
            // GitHub runs `bash -e {0}` with pipefail.
            let path = temp
                .path()
                .join(format!("step-{index}-{}.sh", file.replace('/', "_")));
            fs::write(
                &path,
                format!("#!/usr/bin/env bash\nset -eo pipefail\n# {file} {location}\n{script}"),
            )
            .unwrap();
            checked.push(path);
        }
    }
    let ran = Ran::of(
        "shellcheck",
        Command::new("shellcheck")
            .args(["--shell=bash", "--severity=style"])
            .args(&checked),
    );
    assert_eq!(
        ran.code,
        Some(0),
        "(no shellcheck? run scripts/setup)\n{}",
        ran.text()
    );
}

/// A git repository in a temp dir, for the changed-services script.
fn git(dir: &Path, args: &[&str]) -> String {
    let ran = Ran::of(
        format!("git {}", args.join(" ")),
        clean_command("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "kit")
            .env("GIT_AUTHOR_EMAIL", "kit@example.com")
            .env("GIT_COMMITTER_NAME", "kit")
            .env("GIT_COMMITTER_EMAIL", "kit@example.com")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1"),
    )
    .success();
    ran.stdout.trim().to_owned()
}

fn changed_services(dir: &Path, before: &str, after: &str) -> (Vec<String>, String) {
    let output = dir.join("github-output");
    fs::write(&output, "").unwrap();
    let ran = Ran::of(
        "changed-services.sh",
        clean_command("bash")
            .arg(workspace_root().join("examples/monorepo/.github/scripts/changed-services.sh"))
            .current_dir(dir)
            .env("BEFORE", before)
            .env("AFTER", after)
            .env("GITHUB_OUTPUT", &output),
    )
    .success();
    let printed: Vec<String> = serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("not a JSON array of names ({e})\n{}", ran.text()));
    (printed, fs::read_to_string(&output).unwrap())
}

#[test]
fn changed_services_lists_the_existing_service_directories_a_push_touched() {
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git(dir, &["init", "-q", "-b", "main"]);
    for service in ["api", "hello", "web"] {
        fs::create_dir_all(dir.join("services").join(service)).unwrap();
        fs::write(
            dir.join("services").join(service).join("compose.yaml"),
            "services: {}\n",
        )
        .unwrap();
    }
    fs::create_dir_all(dir.join("infrastructure")).unwrap();
    fs::write(dir.join("infrastructure/services.tf"), "# v1\n").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "one"]);
    let first = git(dir, &["rev-parse", "HEAD"]);

    // A push that edits hello, deletes web and touches infrastructure/.
    fs::write(
        dir.join("services/hello/compose.yaml"),
        "services: {web: {}}\n",
    )
    .unwrap();
    fs::remove_dir_all(dir.join("services/web")).unwrap();
    fs::write(dir.join("infrastructure/services.tf"), "# v2\n").unwrap();
    git(dir, &["add", "-A", "."]);
    git(dir, &["commit", "-q", "-m", "two"]);
    let second = git(dir, &["rev-parse", "HEAD"]);

    let (services, output) = changed_services(dir, &first, &second);
    assert_eq!(services, ["hello"], "only hello changed and still exists");
    assert_eq!(output, "services=[\"hello\"]\n");

    // A new branch (before is all zeros) deploys every service there is.
    let (services, _) = changed_services(dir, &"0".repeat(40), &second);
    assert_eq!(services, ["api", "hello"]);

    // A push that touches no service deploys nothing.
    fs::write(dir.join("infrastructure/services.tf"), "# v3\n").unwrap();
    git(dir, &["commit", "-q", "-am", "three"]);
    let third = git(dir, &["rev-parse", "HEAD"]);
    let (services, output) = changed_services(dir, &second, &third);
    assert!(services.is_empty(), "{services:?}");
    assert_eq!(output, "services=[]\n");
}

/// The files a runner gives a step, and the step's environment.
struct Runner {
    dir: tempfile::TempDir,
}

impl Runner {
    fn new() -> Runner {
        let dir = tempfile::Builder::new()
            .prefix("launch-e2e-runner-")
            .tempdir()
            .unwrap();
        fs::create_dir_all(dir.path().join("temp")).unwrap();
        for file in ["output", "summary"] {
            fs::write(dir.path().join(file), "").unwrap();
        }
        Runner { dir }
    }

    /// Runs the action's script as its composite step does: inputs as
    /// `INPUT_*`, the runner's output, summary and temp dir, from `workdir`.
    fn deploy(&self, workdir: &Path, inputs: &[(&str, &str)], extra_env: &[(&str, &str)]) -> Ran {
        let mut command = clean_command("bash");
        command
            .arg(workspace_root().join(DEPLOY_SCRIPT))
            .current_dir(workdir)
            .env("GITHUB_OUTPUT", self.dir.path().join("output"))
            .env("GITHUB_STEP_SUMMARY", self.dir.path().join("summary"))
            .env("RUNNER_TEMP", self.dir.path().join("temp"))
            .env("GITHUB_ACTIONS", "true");
        for (name, value) in inputs {
            command.env(
                format!("INPUT_{}", name.to_uppercase().replace('-', "_")),
                value,
            );
        }
        command.envs(extra_env.iter().copied());
        Ran::of("deploy.sh", &mut command)
    }

    fn outputs(&self) -> std::collections::BTreeMap<String, String> {
        fs::read_to_string(self.dir.path().join("output"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn summary(&self) -> String {
        fs::read_to_string(self.dir.path().join("summary")).unwrap()
    }

    /// The step's temp dir holds nothing once the script is done.
    fn temp_is_empty(&self) -> bool {
        fs::read_dir(self.dir.path().join("temp"))
            .unwrap()
            .next()
            .is_none()
    }
}

/// A fake control plane on disk (curl reads `file://` URLs the same way):
/// `v1/cli/download/linux-amd64` is a script standing in for `launch` that
/// records that it ran and prints a healthy JSON result; the `.sha256` file
/// holds `sha256`, or the right checksum when `None`.
fn fake_download(dir: &Path, sha256: Option<&str>) -> String {
    let download = dir.join("v1/cli/download");
    fs::create_dir_all(&download).unwrap();
    let cli = download.join("linux-amd64");
    let marker = dir.join("ran");
    fs::write(
        &cli,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\necho '[compose] building' >&2\necho '{{\"state\":\"healthy\",\"url\":\"http://fake/\",\"release_id\":\"r-1\",\"mission_id\":\"m-1\",\"running_release_id\":\"r-1\",\"message\":\"\"}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    let actual = Ran::of("sha256sum", Command::new("sha256sum").arg(&cli)).success();
    let actual = actual.stdout.split_whitespace().next().unwrap().to_owned();
    fs::write(
        download.join("linux-amd64.sha256"),
        format!("{}  launch\n", sha256.unwrap_or(&actual)),
    )
    .unwrap();
    format!("file://{}", dir.display())
}

#[test]
fn deploy_script_runs_the_downloaded_cli_only_when_its_sha256_matches() {
    let service = tempfile::tempdir().unwrap();
    let inputs = |url: &str| -> Vec<(&'static str, String)> {
        vec![
            ("control-url", url.to_owned()),
            ("token", "lt_admin_test".to_owned()),
            ("service-dir", service.path().display().to_string()),
        ]
    };

    let good = tempfile::tempdir().unwrap();
    let url = fake_download(good.path(), None);
    let runner = Runner::new();
    let given = inputs(&url);
    let given: Vec<(&str, &str)> = given.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ran = runner.deploy(service.path(), &given, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.text());
    let args = fs::read_to_string(good.path().join("ran")).expect("the checked CLI ran");
    assert_eq!(
        args.trim(),
        format!(
            "deploy {} --env prod --wait --timeout 10m --output json",
            service.path().display()
        ),
        "defaults: environment prod, timeout 10m"
    );
    assert_eq!(
        runner.outputs().get("url").map(String::as_str),
        Some("http://fake/")
    );
    assert_eq!(
        runner.outputs().get("release-id").map(String::as_str),
        Some("r-1")
    );
    assert!(
        runner.summary().contains("http://fake/"),
        "{}",
        runner.summary()
    );
    assert!(
        ran.stderr.contains("[compose] building"),
        "log lines reach the job log\n{}",
        ran.text()
    );
    assert!(runner.temp_is_empty(), "the downloaded CLI is left behind");

    let bad = tempfile::tempdir().unwrap();
    let url = fake_download(bad.path(), Some(&"0".repeat(64)));
    let runner = Runner::new();
    let given = inputs(&url);
    let given: Vec<(&str, &str)> = given.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ran = runner.deploy(service.path(), &given, &[]);
    assert_eq!(ran.code, Some(3), "{}", ran.text());
    assert!(ran.stderr.contains("::error"), "{}", ran.text());
    assert!(ran.stderr.contains("sha256 mismatch"), "{}", ran.text());
    assert!(
        !bad.path().join("ran").exists(),
        "a CLI whose sha256 does not match must never run"
    );
    assert_eq!(runner.outputs().get("url"), None);
}

/// A copy of the template's `services/hello` under a unique name, on a free
/// port, with a static busybox in `bin/` (the template does not commit it).
struct HelloCopy {
    name: String,
    port: u16,
    dir: PathBuf,
    _project: ComposeProject,
    _temp: tempfile::TempDir,
}

impl HelloCopy {
    fn new() -> HelloCopy {
        HelloCopy::named(&unique::service_name())
    }

    fn named(name: &str) -> HelloCopy {
        let name = name.to_owned();
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-hello-")
            .tempdir()
            .unwrap();
        // The action runs from the repository root with service-dir
        // services/<name>, as the deploy workflow's matrix passes it.
        let dir = temp.path().join("services").join(&name);
        copy_tree(
            &workspace_root().join("examples/monorepo/services/hello"),
            &dir,
        );
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::copy("/bin/busybox", dir.join("bin/busybox"))
            .expect("copy /bin/busybox (run scripts/setup to install busybox-static)");
        let port = unique::free_port();
        let hello = HelloCopy {
            _project: ComposeProject::new(format!("{name}-prod")),
            name,
            port,
            dir,
            _temp: temp,
        };
        hello.rewrite("compose.yaml", "\"8080:8080\"", &format!("\"{port}:8080\""));
        hello.rewrite("launch.toml", "port = 8080", &format!("port = {port}"));
        hello.rewrite(
            "launch.toml",
            "name = \"hello\"",
            &format!("name = {:?}", hello.name),
        );
        hello
    }

    fn rewrite(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.join(file);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(from),
            "{} no longer contains {from:?}: update this fixture\n{text}",
            path.display()
        );
        fs::write(&path, text.replace(from, to)).unwrap();
    }

    fn repo_root(&self) -> &Path {
        self.dir.parent().unwrap().parent().unwrap()
    }

    fn service_dir(&self) -> String {
        format!("services/{}", self.name)
    }
}

#[test]
fn deploy_script_deploys_the_template_hello_service_and_reports_its_url() {
    let hello = HelloCopy::new();
    let server = Server::start();
    let _agent = Agent::start(&server, &hello.name, "prod");
    let runner = Runner::new();
    let url = server.url();
    let service_dir = hello.service_dir();
    // The token the docs tell people to store as LAUNCH_DEPLOY_TOKEN.
    let deploy_token = server
        .cli(&[
            "token",
            "create",
            "--scope",
            "deploy",
            "--service",
            "*",
            "--env",
            "prod",
            "--name",
            "ci-deploy",
        ])
        .success()
        .stdout
        .trim()
        .to_owned();
    assert!(deploy_token.starts_with("lt_api_"), "{deploy_token:?}");
    let ran = runner.deploy(
        hello.repo_root(),
        &[
            ("control-url", &url),
            ("token", &deploy_token),
            ("service-dir", &service_dir),
            ("environment", "prod"),
            ("timeout", "3m"),
        ],
        &[],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.text());
    assert!(
        ran.stdout.contains(&format!(
            "Downloading the launch CLI from {url}/v1/cli/download/linux-amd64"
        )),
        "the CLI comes from the control plane, as on a GitHub runner\n{}",
        ran.text()
    );
    let expected = format!("http://127.0.0.1:{}/", hello.port);
    assert_eq!(
        runner.outputs().get("url"),
        Some(&expected),
        "{}",
        ran.text()
    );
    let release_id = runner
        .outputs()
        .get("release-id")
        .cloned()
        .unwrap_or_default();
    assert!(release_id.starts_with("r-"), "{:?}", runner.outputs());
    assert!(runner.summary().contains(&expected), "{}", runner.summary());
    assert!(
        ran.stderr.contains("[compose]"),
        "compose output must stream into the job log\n{}",
        ran.text()
    );
    // The runner swallows `::add-mask::` lines; anything else would show.
    let printed = format!("{}\n{}", ran.stdout, ran.stderr);
    let leaks: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains(&deploy_token) && !l.starts_with("::add-mask::"))
        .collect();
    assert!(leaks.is_empty(), "the token reached the job log: {leaks:?}");
    let (code, body) = launch_e2e::http::get(hello.port, "/")
        .unwrap_or_else(|e| panic!("{expected} does not answer: {e}"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from Launch"), "{body}");
    let releases = cli::releases(&server, &hello.name, "prod");
    assert_eq!(
        cli::field(&releases[0], "release_id"),
        release_id,
        "{releases:?}"
    );
}

#[test]
fn deploy_script_fails_the_step_when_the_release_never_becomes_healthy() {
    let hello = HelloCopy::new();
    hello.rewrite(
        "launch.toml",
        "path = \"/healthz\"",
        "path = \"/no-such-page\"",
    );
    hello.rewrite("launch.toml", "timeout = \"60s\"", "timeout = \"3s\"");
    let server = Server::start();
    let _agent = Agent::start(&server, &hello.name, "prod");
    let runner = Runner::new();
    let url = server.url();
    let service_dir = hello.service_dir();
    let ran = runner.deploy(
        hello.repo_root(),
        &[
            ("control-url", &url),
            ("token", &server.admin_token),
            ("service-dir", &service_dir),
            ("timeout", "3m"),
        ],
        &[],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.text());
    assert!(
        ran.stderr.contains("::error title=launch deploy::"),
        "the failure is annotated\n{}",
        ran.text()
    );
    let outputs = runner.outputs();
    assert_eq!(
        outputs.get("url").map(String::as_str),
        Some(""),
        "{outputs:?}"
    );
    let state = outputs.get("state").cloned().unwrap_or_default();
    assert!(
        state == "failed" || state == "rolled_back",
        "{outputs:?}\n{}",
        ran.text()
    );
    assert!(runner.summary().contains(&state), "{}", runner.summary());
}

#[test]
fn infrastructure_applies_a_private_service_without_waiting_for_an_agent_and_destroys() {
    let kit = Kit::new();
    let server = Server::start();
    let moto = Moto::start();
    let ec2 = moto.peer();
    let name = unique::service_name();
    let root = "infrastructure";
    // The module's other path: a private service (no DNS record, no
    // Cloudflare settings needed) whose apply does not wait for an agent,
    // with every other input set so each is seen to reach the resource.
    let secret = format!("kit-secret-{}", unique::hex(12));
    let services = kit.path(root).join("services.tf");
    let prd = fs::read_to_string(&services).unwrap();
    assert!(prd.contains("service_name = \"librechat\""), "{prd}");
    fs::write(
        &services,
        format!(
            "module \"svc\" {{\n  source         = \"../modules/launch-service\"\n  service_name   = \"{name}\"\n  environment    = \"staging\"\n  target         = \"aws\"\n  public         = false\n  wait_for_agent = false\n  tags           = {{ team = \"kit\" }}\n  secrets        = {{ API_KEY = \"{secret}\" }}\n  aws            = {{ instance_type = \"t3.large\" }}\n}}\n\noutput \"instance_id\" {{\n  value = module.svc.instance_id\n}}\n"
        ),
    )
    .unwrap();
    // State stays local in the test; the committed backend is S3.
    fs::write(
        kit.path(root).join("backend_override.tf"),
        "terraform {\n  backend \"local\" {}\n}\n",
    )
    .unwrap();
    let url = server.url();
    let moto_url = moto.url();
    let missing = kit.path("no-such-aws-file").display().to_string();
    let env = [
        ("LAUNCH_ADDR", url.as_str()),
        ("LAUNCH_TOKEN", server.admin_token.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", launch_e2e::moto::REGION),
        ("AWS_ENDPOINT_URL_EC2", moto_url.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", missing.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", missing.as_str()),
    ];
    kit.run(root, &["init", "-no-color", "-input=false"], &env)
        .success();
    let apply = kit
        .run(
            root,
            &["apply", "-auto-approve", "-no-color", "-input=false"],
            &env,
        )
        .success();
    assert!(
        !apply.text().contains(&secret),
        "a secret value reached terraform's output\n{}",
        apply.text()
    );

    let instances = ec2.live_instances(&name, "staging");
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(
        instances[0].tags.get("team").map(String::as_str),
        Some("kit")
    );
    assert_eq!(instances[0].instance_type, "t3.large", "aws.instance_type");
    let keys = server.cli(&["secrets", "list", &name, "--env", "staging"]);
    keys.success();
    assert!(
        keys.stdout.contains("API_KEY"),
        "the module's secrets reach the control plane\n{keys}"
    );
    let output = kit
        .run(root, &["output", "-raw", "instance_id"], &env)
        .success();
    assert_eq!(output.stdout.trim(), instances[0].id);
    let listed = server.cli(&["services", "--output", "json"]);
    listed.success();
    let services = cli::list(&listed.json(), "services").expect("services as JSON");
    assert!(
        services
            .iter()
            .any(|s| cli::field(s, "service") == name && cli::field(s, "environment") == "staging"),
        "the control plane must know {name}/staging\n{listed}"
    );

    let plan = kit.run(
        root,
        &["plan", "-detailed-exitcode", "-no-color", "-input=false"],
        &env,
    );
    assert_eq!(
        plan.code,
        Some(0),
        "a second plan must be empty\n{}",
        plan.text()
    );

    kit.run(
        root,
        &["destroy", "-auto-approve", "-no-color", "-input=false"],
        &env,
    )
    .success();
    assert!(
        ec2.live_instances(&name, "staging").is_empty(),
        "destroy left an instance"
    );
    let listed = server.cli(&["services", "--output", "json"]);
    listed.success();
    let services = cli::list(&listed.json(), "services").expect("services as JSON");
    assert!(
        !services.iter().any(|s| cli::field(s, "service") == name),
        "destroy must retire {name}\n{listed}"
    );
}

#[test]
fn prd_example_applies_with_its_dns_record_and_the_deploy_action_takes_a_service_live() {
    let kit = Kit::new();
    let server = Server::start();
    let moto = Moto::start();
    let ec2 = moto.peer();
    let domain = "kit-e2e.example";
    let cloudflare = CloudflareFake::start(
        &format!("cf-token-{}", unique::hex(16)),
        &unique::hex(16),
        domain,
    );
    let name = unique::service_name();
    let fqdn = format!("{name}.{domain}");
    let root = "infrastructure";
    // infrastructure/ as committed (public = true, waiting for the agent),
    // under a unique name, with local state instead of S3.
    let services = kit.path(root).join("services.tf");
    let prd = fs::read_to_string(&services).unwrap();
    assert!(prd.contains("service_name = \"librechat\""), "{prd}");
    assert!(prd.contains("public       = true"), "{prd}");
    fs::write(
        &services,
        prd.replace(
            "service_name = \"librechat\"",
            &format!("service_name = \"{name}\""),
        ),
    )
    .unwrap();
    fs::write(
        kit.path(root).join("backend_override.tf"),
        "terraform {\n  backend \"local\" {}\n}\n",
    )
    .unwrap();
    let url = server.url();
    let moto_url = moto.url();
    let cloudflare_url = cloudflare.api_url();
    let missing = kit.path("no-such-aws-file").display().to_string();
    let env = [
        ("LAUNCH_ADDR", url.as_str()),
        ("LAUNCH_TOKEN", server.admin_token.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", launch_e2e::moto::REGION),
        ("AWS_ENDPOINT_URL_EC2", moto_url.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", missing.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", missing.as_str()),
        ("CLOUDFLARE_API_TOKEN", cloudflare.token.as_str()),
        ("CLOUDFLARE_ZONE_ID", cloudflare.zone_id.as_str()),
        ("CLOUDFLARE_DOMAIN", domain),
        ("CLOUDFLARE_API_URL", cloudflare_url.as_str()),
    ];
    kit.run(root, &["init", "-no-color", "-input=false"], &env)
        .success();

    // apply waits for the host's agent: play the booted host meanwhile,
    // with the join token from the instance's user-data.
    let mut command = kit.terraform(
        root,
        &["apply", "-auto-approve", "-no-color", "-input=false"],
    );
    command.envs(env.iter().copied());
    let mut apply = Process::spawn("terraform apply", command);
    let instance = eventually(
        Duration::from_secs(90),
        "the instance to exist in moto",
        || {
            ec2.live_instances(&name, "prod")
                .pop()
                .ok_or_else(|| format!("no instance yet\n{}", apply.stderr.text()))
        },
    );
    let user_data = ec2.user_data(&instance.id);
    let join_token =
        script_value(&user_data, "LAUNCH_JOIN_TOKEN").expect("user-data carries a join token");
    // The host's front door on free ports, its certificates from pebble
    // (whose DNS answers 127.0.0.1 for the record's name).
    let door = Ports::free();
    let pebble = Pebble::start(PebbleOptions {
        http_port: door.http,
        validity: None,
    });
    let mut agent_env = door.agent_env();
    agent_env.push(("LAUNCH_AGENT_ACME_DIRECTORY".into(), pebble.directory_url()));
    agent_env.push((
        "LAUNCH_AGENT_ACME_CA_ROOT".into(),
        pebble.listener_root_file().display().to_string(),
    ));
    let mut agent =
        Agent::spawn_with_env(&server, &name, "prod", &join_token, &env_refs(&agent_env));
    agent.wait_connected();
    let status = apply
        .wait_exit(Duration::from_secs(120))
        .expect("terraform apply finishes");
    assert_eq!(
        status.code(),
        Some(0),
        "apply failed:\n{}\n{}",
        apply.stdout.text(),
        apply.stderr.text()
    );

    let outputs = kit.run(root, &["output", "-json"], &env).success();
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).expect("output -json");
    assert_eq!(
        outputs["librechat_url"]["value"],
        format!("https://{fqdn}"),
        "{outputs}"
    );
    assert_eq!(
        outputs["librechat_instance_id"]["value"],
        instance.id.as_str(),
        "{outputs}"
    );
    let records = cloudflare.named(&fqdn);
    assert_eq!(records.len(), 1, "one A record for {fqdn}: {records:?}");
    assert_eq!(records[0].record_type, "A", "{records:?}");
    // The public service's own security group: 80 and 443, nothing else, attached.
    let group_name = format!("launch-{name}-prod");
    let (group_id, ports) = ec2
        .security_group(&group_name)
        .unwrap_or_else(|| panic!("no security group {group_name}"));
    assert_eq!(ports, vec![80, 443], "{group_name}");
    let attached = ec2
        .live_instances(&name, "prod")
        .pop()
        .expect("the instance");
    assert!(
        attached.security_group_ids.contains(&group_id),
        "{group_id} not attached: {:?}",
        attached.security_group_ids
    );

    let plan = kit.run(
        root,
        &["plan", "-detailed-exitcode", "-no-color", "-input=false"],
        &env,
    );
    assert_eq!(
        plan.code,
        Some(0),
        "a second plan must be empty\n{}",
        plan.text()
    );

    // The deploy workflow's step: the action's script ships the template's
    // hello service (named like the module) to the host terraform made.
    let hello = HelloCopy::named(&name);
    let runner = Runner::new();
    let service_dir = hello.service_dir();
    let ran = runner.deploy(
        hello.repo_root(),
        &[
            ("control-url", &url),
            ("token", &server.admin_token),
            ("service-dir", &service_dir),
            ("timeout", "3m"),
        ],
        &[],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.text());
    // The action's url is the service's public name over HTTPS (on the
    // test's HTTPS port), answering through the agent's front door with a
    // certificate from the ACME server; the client resolves the name to
    // 127.0.0.1, as pebble's DNS does.
    let live = format!("https://{fqdn}:{}/", door.https);
    assert_eq!(runner.outputs().get("url"), Some(&live), "{}", ran.text());
    let pebble_root = pebble.issuing_root_pem();
    let request = format!("GET / HTTP/1.1\r\nHost: {fqdn}\r\nConnection: close\r\n\r\n");
    let reply = eventually(
        Duration::from_secs(60),
        &format!("{live} to answer"),
        || {
            let reply = tls_exchange(
                &pebble_root,
                "127.0.0.1",
                door.https,
                &fqdn,
                request.as_bytes(),
            )?;
            let reply = String::from_utf8_lossy(&reply).into_owned();
            if reply.starts_with("HTTP/1.1 200") {
                Ok(reply)
            } else {
                Err(reply.lines().next().unwrap_or_default().to_owned())
            }
        },
    );
    assert!(reply.contains("hello from Launch"), "{reply}");

    kit.run(
        root,
        &["destroy", "-auto-approve", "-no-color", "-input=false"],
        &env,
    )
    .success();
    assert!(
        ec2.live_instances(&name, "prod").is_empty(),
        "destroy left an instance"
    );
    assert!(
        cloudflare.named(&fqdn).is_empty(),
        "destroy left the DNS record"
    );
    assert!(
        ec2.security_group(&group_name).is_none(),
        "destroy left the security group"
    );
    agent.kill_hard();
}

mod runner;
