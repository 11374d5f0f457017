//! The template's scripts as a runner meets them, each run for real with a
//! fake control plane on disk: the deploy action refuses to run without `jq`
//! (else the job would pass with an empty url and state) and leaves `url`
//! empty when the deploy fails, as `action.yml` promises; the provider
//! install script says itself what is wrong when the `.sha256` is missing and
//! accepts an upper-case digest; the plan comment names the pull request's
//! head commit, not the test-merge commit GitHub checks out.

use super::*;

/// Like `fake_download`, but the stand-in `launch` prints `result` and exits
/// with `code`.
fn fake_download_ending(dir: &Path, result: &str, code: i32) -> String {
    let url = fake_download(dir, None);
    let cli = dir.join("v1/cli/download/linux-amd64");
    fs::write(
        &cli,
        format!("#!/bin/sh\necho '[compose] building' >&2\necho '{result}'\nexit {code}\n"),
    )
    .unwrap();
    let sum = Ran::of("sha256sum", Command::new("sha256sum").arg(&cli)).success();
    let sum = sum.stdout.split_whitespace().next().unwrap().to_owned();
    fs::write(
        dir.join("v1/cli/download/linux-amd64.sha256"),
        format!("{sum}  launch\n"),
    )
    .unwrap();
    url
}

fn inputs<'a>(url: &'a str, service: &'a Path) -> Vec<(&'static str, String)> {
    vec![
        ("control-url", url.to_owned()),
        ("token", "lt_admin_test".to_owned()),
        ("service-dir", service.display().to_string()),
    ]
}

fn as_refs<'a>(given: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    given.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn deploy_script_refuses_to_run_without_jq() {
    let service = tempfile::tempdir().unwrap();
    let fake = tempfile::tempdir().unwrap();
    let url = fake_download(fake.path(), None);
    let given = inputs(&url, service.path());

    // A PATH with every tool the script uses except jq.
    let tools = tempfile::tempdir().unwrap();
    for tool in [
        "bash",
        "curl",
        "sha256sum",
        "cut",
        "tr",
        "mktemp",
        "rm",
        "chmod",
        "mv",
        "cat",
    ] {
        let found = Ran::of("which", Command::new("which").arg(tool)).success();
        std::os::unix::fs::symlink(found.stdout.trim(), tools.path().join(tool)).unwrap();
    }
    let runner = Runner::new();
    let path = tools.path().display().to_string();
    let ran = runner.deploy(service.path(), &as_refs(&given), &[("PATH", &path)]);
    assert_eq!(ran.code, Some(2), "{}", ran.text());
    assert!(
        ran.stderr.contains("jq is not installed on this runner"),
        "{}",
        ran.text()
    );
    assert!(
        !fake.path().join("ran").exists(),
        "nothing may be deployed without a way to read the outcome"
    );
    assert!(runner.outputs().is_empty(), "{:?}", runner.outputs());

    // Positive control: the same step with jq on PATH deploys.
    let with_jq = tempfile::tempdir().unwrap();
    let jq = Ran::of("which", Command::new("which").arg("jq")).success();
    std::os::unix::fs::symlink(jq.stdout.trim(), with_jq.path().join("jq")).unwrap();
    let path = format!("{}:{path}", with_jq.path().display());
    let runner = Runner::new();
    let ran = runner.deploy(service.path(), &as_refs(&given), &[("PATH", &path)]);
    assert_eq!(ran.code, Some(0), "{}", ran.text());
    assert_eq!(
        runner.outputs().get("url").map(String::as_str),
        Some("http://fake/")
    );
}

#[test]
fn deploy_script_leaves_url_empty_when_the_deploy_rolled_back() {
    let service = tempfile::tempdir().unwrap();
    let fake = tempfile::tempdir().unwrap();
    // A rolled-back deploy: launch still reports where the previous release answers.
    let url = fake_download_ending(
        fake.path(),
        r#"{"state":"rolled_back","url":"http://old-release/","release_id":"r-2","running_release_id":"r-1","message":"health check failed"}"#,
        1,
    );
    let given = inputs(&url, service.path());
    let runner = Runner::new();
    let ran = runner.deploy(service.path(), &as_refs(&given), &[]);
    assert_eq!(ran.code, Some(1), "{}", ran.text());
    let outputs = runner.outputs();
    assert_eq!(
        (
            outputs.get("url").map(String::as_str),
            outputs.get("state").map(String::as_str),
            outputs.get("release-id").map(String::as_str)
        ),
        (Some(""), Some("rolled_back"), Some("r-2")),
        "{}",
        ran.text()
    );
}

/// Runs the install script on a `file://` provider with the given sha256
/// setting (None: read `<url>.sha256`).
fn install_script(download: &Path, sha256: Option<&str>, mirror: &Path) -> Ran {
    let mut command = clean_command("bash");
    command
        .arg(workspace_root().join(INSTALL_PROVIDER_SCRIPT))
        .env(
            "LAUNCH_PROVIDER_URL",
            format!("file://{}", download.display()),
        )
        .env("MIRROR_DIR", mirror);
    if let Some(sha256) = sha256 {
        command.env("LAUNCH_PROVIDER_SHA256", sha256);
    }
    Ran::of(INSTALL_PROVIDER_SCRIPT, &mut command)
}

#[test]
fn provider_install_script_names_a_missing_sha256_file_and_accepts_upper_case() {
    let temp = tempfile::tempdir().unwrap();
    let download = temp.path().join("terraform-provider-launch");
    fs::write(&download, "#!/bin/sh\necho a provider\n").unwrap();
    let sum = Ran::of("sha256sum", Command::new("sha256sum").arg(&download)).success();
    let sum = sum.stdout.split_whitespace().next().unwrap().to_owned();

    let ran = install_script(&download, None, &temp.path().join("m1"));
    assert_eq!(ran.code, Some(2), "{}", ran.text());
    assert!(
        ran.stderr.contains("could not download")
            && ran.stderr.contains(".sha256")
            && ran.stderr.contains("LAUNCH_PROVIDER_SHA256"),
        "{}",
        ran.text()
    );

    // Published beside it, in upper case: accepted, read from the file too.
    fs::write(
        temp.path().join("terraform-provider-launch.sha256"),
        format!("{}  terraform-provider-launch\n", sum.to_uppercase()),
    )
    .unwrap();
    let ran = install_script(&download, None, &temp.path().join("m2")).success();
    assert!(PathBuf::from(ran.stdout.trim()).is_file(), "{}", ran.text());
    let ran = install_script(
        &download,
        Some(&sum.to_uppercase()),
        &temp.path().join("m3"),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.text());
}

#[test]
fn plan_comment_names_the_pull_requests_head_commit() {
    let text = fs::read_to_string(workspace_root().join(WORKFLOWS[0])).unwrap();
    assert!(
        text.contains("context.payload.pull_request.head.sha"),
        "the comment must name the pushed commit"
    );
    assert!(
        !text.contains("context.sha"),
        "context.sha is the test-merge commit, which nobody pushed"
    );
}
