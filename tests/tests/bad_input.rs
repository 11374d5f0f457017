//! Bad input is refused early with exit code 2 and a message that says what to
//! fix: a directory without a compose file, invalid service names, hand-made
//! bundles with `..`, absolute or symbolic-link entries, an oversized bundle.
//! A refused deploy records nothing, writes nothing outside a release
//! directory and leaves the running release serving.

use std::path::{Path, PathBuf};

use launch_e2e::bundle::{self, COMPOSE, RawEntry};
use launch_e2e::{Agent, Server, Service, cli, unique};

/// Every file name under `dir` (recursively).
fn file_names(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            file_names(&path, out);
        }
        out.push(path);
    }
}

fn count_files(dir: &Path) -> usize {
    let mut names = Vec::new();
    file_names(dir, &mut names);
    names.len()
}

#[test]
fn deploying_a_directory_without_a_compose_file_exits_2_and_names_the_fix() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hi").unwrap();
    let dir_arg = dir.path().display().to_string();
    let name = unique::service_name();
    let out = server.cli(&["deploy", &dir_arg, "--service", &name, "--env", "prod"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("no compose file") && out.stderr.contains("compose.yaml"),
        "the error must say a compose file is missing and how to add one\n{out}"
    );
}

#[test]
fn invalid_service_names_exit_2_with_the_naming_rule() {
    let server = Server::start();
    let service = Service::quickstart();
    let dir = service.dir_arg();
    let long = "a".repeat(64);
    for name in ["../x", "Hello", long.as_str()] {
        let out = server.cli(&["deploy", &dir, "--service", name, "--env", "prod"]);
        out.expect_code(2);
        assert!(
            out.stderr.contains("service name") && out.stderr.contains("lower-case"),
            "the error must name the rule for service names\n{out}"
        );
    }
    let out = server.cli(&["deploy", &dir, "--service", "Hello", "--env", "prod"]);
    assert!(
        out.stderr.contains("\"hello\""),
        "suggest the lower-case name\n{out}"
    );
    let out = server.cli(&["token", "create", "--service", "../x", "--env", "prod"]);
    out.expect_code(2);
    let out = server.cli(&["deploy", &dir, "--service", &service.name, "--env", "Prod"]);
    out.expect_code(2);
    assert!(out.stderr.contains("environment"), "{out}");
}

#[test]
fn hostile_bundles_exit_2_and_leave_the_running_release_untouched() {
    let service = Service::quickstart();
    let server = Server::start();
    let agent = Agent::start(&server, &service.name, &service.environment);
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();
    let releases = cli::releases(&server, &service.name, &service.environment);
    let containers = service.running_containers();
    let current = std::fs::read_link(
        agent
            .data_dir()
            .join("services")
            .join(&service.name)
            .join("current"),
    )
    .ok();
    let bundles = count_files(&server.data_dir().join("bundles"));

    let marker = format!("launch-e2e-evil-{}", unique::hex(6));
    let absolute = format!("/tmp/{marker}");
    let dotdot = format!("../{marker}");
    let nested = format!("www/../../{marker}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a `..` entry",
            bundle::raw_tar_gz(&[
                RawEntry::file(b"compose.yaml", COMPOSE),
                RawEntry::file(dotdot.as_bytes(), b"evil"),
            ]),
            "..",
        ),
        (
            "a nested `..` entry",
            bundle::raw_tar_gz(&[
                RawEntry::file(b"compose.yaml", COMPOSE),
                RawEntry::file(nested.as_bytes(), b"evil"),
            ]),
            "..",
        ),
        (
            "an absolute entry",
            bundle::raw_tar_gz(&[
                RawEntry::file(b"compose.yaml", COMPOSE),
                RawEntry::file(absolute.as_bytes(), b"evil"),
            ]),
            "absolute",
        ),
        (
            "a symbolic link entry",
            bundle::raw_tar_gz(&[
                RawEntry::file(b"compose.yaml", COMPOSE),
                RawEntry::symlink(b"www", b"/tmp"),
                RawEntry::file(format!("www/{marker}").as_bytes(), b"evil"),
            ]),
            "link",
        ),
        (
            "no compose file",
            bundle::raw_tar_gz(&[RawEntry::file(b"index.html", b"hi")]),
            "compose",
        ),
    ];
    let files = tempfile::tempdir().unwrap();
    for (i, (what, bytes, expected)) in cases.iter().enumerate() {
        let path = bundle::write(files.path(), &format!("bundle-{i}.tar.gz"), bytes);
        let path = path.display().to_string();
        let out = server.cli(&service.deploy_args(&dir, &["--bundle", &path]));
        assert_eq!(out.code, Some(2), "a bundle with {what} must exit 2\n{out}");
        assert!(
            out.stderr.contains("error:") && out.stderr.contains(expected),
            "the error for a bundle with {what} must mention {expected:?}\n{out}"
        );
    }

    // Nothing landed outside a release directory, nothing was recorded.
    assert!(!Path::new(&absolute).exists(), "{absolute} was written");
    for root in [
        server.data_dir().parent().unwrap(),
        agent.data_dir().parent().unwrap(),
        service.dir().parent().unwrap(),
        Path::new("/tmp"),
    ] {
        let mut names = Vec::new();
        if root == Path::new("/tmp") {
            names.extend(std::fs::read_dir(root).unwrap().flatten().map(|e| e.path()));
        } else {
            file_names(root, &mut names);
        }
        let evil: Vec<_> = names
            .iter()
            .filter(|p| p.to_string_lossy().contains(&marker))
            .collect();
        assert!(evil.is_empty(), "a refused bundle wrote {evil:?}");
    }
    assert_eq!(
        count_files(&server.data_dir().join("bundles")),
        bundles,
        "a refused bundle was stored"
    );
    assert_eq!(
        cli::releases(&server, &service.name, &service.environment),
        releases,
        "a refused bundle was recorded as a release"
    );

    // The running release still serves, unchanged.
    let (code, _) = service.get("/").expect("the running release answers");
    assert_eq!(code, 200);
    assert_eq!(service.running_containers(), containers);
    let current_after = std::fs::read_link(
        agent
            .data_dir()
            .join("services")
            .join(&service.name)
            .join("current"),
    )
    .ok();
    assert_eq!(current_after, current, "the current release changed");
}

#[test]
fn an_oversized_bundle_exits_2_with_the_limit() {
    let limit = 1024 * 1024;
    let server = Server::start_with(&["--max-bundle-bytes", &limit.to_string()]);
    let service = Service::quickstart();
    let files = tempfile::tempdir().unwrap();
    let path = bundle::write(files.path(), "big.tar.gz", &bundle::oversized(2 * limit));
    let path = path.display().to_string();
    let dir = service.dir_arg();
    let out = server.cli(&service.deploy_args(&dir, &["--bundle", &path]));
    out.expect_code(2);
    assert!(
        out.stderr.contains("limit") && out.stderr.contains(&limit.to_string()),
        "the error must name the limit\n{out}"
    );
    assert_eq!(
        count_files(&server.data_dir().join("bundles")),
        0,
        "an oversized bundle was stored"
    );
    let out = server.cli(&[
        "releases",
        &service.name,
        "--env",
        &service.environment,
        "--output",
        "json",
    ]);
    match out.code {
        Some(0) => assert_eq!(
            cli::list(&out.json(), "releases").map(|r| r.len()),
            Some(0),
            "an oversized bundle was recorded\n{out}"
        ),
        _ => {
            out.expect_code(2);
        }
    }
}
