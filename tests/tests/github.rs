//! GitHub, against the GitHub REST fake and the real engine: deploys from a
//! pull request keep one comment on it up to date across pushes (re-created
//! if someone deletes it), commit statuses go pending → success/failure and
//! each release gets a Deployment; rate limits are waited out and a 5xx storm
//! never fails a deploy. The webhook refuses every delivery it cannot trust
//! (bad, missing or wrong-secret signatures, truncated, oversize, not JSON)
//! without changing anything, and handles a `pull_request` `closed` once.

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use launch_e2e::github::GithubFake;
use launch_e2e::{Agent, Server, Service, cli, http, poll};
use sha2::Sha256;

const REPO: &str = "octo-org/monorepo";
const TOKEN: &str = "ghs_fake_reporting_token";
const WEBHOOK_SECRET: &str = "a webhook secret";
/// How long GitHub may take to show a report after the deploy ended.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

struct Setup {
    _files: tempfile::TempDir,
    server: Server,
}

/// A server with GitHub reporting to `github` and webhooks on.
fn server_for(github: &GithubFake) -> Setup {
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let token = write("token", &format!("{}\n", github.token));
    let secret = write("secret", WEBHOOK_SECRET);
    let api = github.api_url();
    let server = Server::start_with(&[
        "--github-token-file",
        token.to_str().unwrap(),
        "--github-webhook-secret-file",
        secret.to_str().unwrap(),
        "--github-api-url",
        &api,
    ]);
    Setup {
        _files: files,
        server,
    }
}

fn sha(n: u32) -> String {
    format!("{n:040x}")
}

fn deploy_from_pr(server: &Server, service: &Service, pr: &str, git_ref: &str) -> cli::CliOutput {
    let dir = service.dir_arg();
    server.cli(&service.deploy_args(
        &dir,
        &["--wait", "--repo", REPO, "--pr", pr, "--ref", git_ref],
    ))
}

fn final_status(github: &GithubFake, git_ref: &str) -> Result<String, String> {
    let statuses = github.statuses(REPO, git_ref);
    match statuses.last() {
        Some(s) if s.state != "pending" => Ok(s.state.clone()),
        _ => Err(format!("{statuses:?}")),
    }
}

#[test]
fn pull_request_deploys_keep_one_comment_and_statuses_go_pending_to_success() {
    let github = GithubFake::start(TOKEN);
    let setup = server_for(&github);
    let server = &setup.server;
    let service = Service::quickstart();
    let _agent = Agent::start(server, &service.name, &service.environment);

    for push in 1..=5u32 {
        if push == 4 {
            // Someone deletes the comment: the next report makes a new one.
            let comments = github.comments(REPO, 7);
            assert_eq!(comments.len(), 1, "{comments:?}");
            github.delete_comment(comments[0].id);
        }
        let git_ref = sha(push);
        service.set_index(&format!("push {push}"));
        deploy_from_pr(server, &service, "7", &git_ref).success();
        let state = poll::eventually(REPORT_TIMEOUT, "the commit status", || {
            final_status(&github, &git_ref)
        });
        assert_eq!(state, "success");
        let statuses = github.statuses(REPO, &git_ref);
        assert_eq!(statuses[0].state, "pending", "{statuses:?}");
        assert_eq!(statuses[0].context, format!("launch/{}", service.name));
        let last = statuses.last().unwrap();
        assert_eq!(last.target_url, service.url(), "{statuses:?}");
        poll::eventually(REPORT_TIMEOUT, "the comment names the push", || {
            let comments = github.comments(REPO, 7);
            match comments.as_slice() {
                [one] if one.body.contains(&git_ref[..12]) && one.body.contains("| live |") => {
                    Ok(())
                }
                _ => Err(format!("{comments:?}")),
            }
        });
    }
    let comments = github.comments(REPO, 7);
    assert_eq!(
        comments.len(),
        1,
        "one comment per pull request: {comments:?}"
    );
    assert!(comments[0].edits >= 1, "{comments:?}");
    assert!(
        comments[0].body.contains(&service.url()),
        "{}",
        comments[0].body
    );

    let deployments = github.deployments(REPO);
    assert_eq!(
        deployments.len(),
        5,
        "one deployment per release: {deployments:?}"
    );
    for deployment in &deployments {
        assert!(deployment.transient, "{deployment:?}");
        assert_eq!(
            deployment
                .statuses
                .last()
                .map(|(s, u)| (s.as_str(), u.as_str())),
            Some(("success", service.url().as_str())),
            "{deployment:?}"
        );
    }
    let releases = cli::releases(server, &service.name, &service.environment);
    assert_eq!(releases[0]["repo"], REPO, "{releases:?}");
    assert_eq!(releases[0]["pr"], 7, "{releases:?}");
}

#[test]
fn a_failed_deploy_reports_failure_with_the_last_log_lines() {
    let github = GithubFake::start(TOKEN);
    let setup = server_for(&github);
    let server = &setup.server;
    let service = Service::quickstart();
    let _agent = Agent::start(server, &service.name, &service.environment);

    service.set_health("/no-such-file", "3s");
    let out = deploy_from_pr(server, &service, "8", &sha(99));
    out.expect_code(1);
    let state = poll::eventually(REPORT_TIMEOUT, "the commit status", || {
        final_status(&github, &sha(99))
    });
    assert_eq!(state, "failure");
    let body = poll::eventually(REPORT_TIMEOUT, "a failed comment", || {
        let comments = github.comments(REPO, 8);
        match comments.as_slice() {
            [one] if one.body.contains("| failed |") || one.body.contains("| rolled back |") => {
                Ok(one.body.clone())
            }
            _ => Err(format!("{comments:?}")),
        }
    });
    assert!(body.contains("<details>"), "{body}");
    assert!(body.contains("```"), "the log lines are quoted: {body}");
}

#[test]
fn rate_limits_are_waited_out_and_a_github_outage_never_fails_a_deploy() {
    let github = GithubFake::start(TOKEN);
    let setup = server_for(&github);
    let server = &setup.server;
    let service = Service::quickstart();
    let _agent = Agent::start(server, &service.name, &service.environment);

    github.fail_all(true);
    deploy_from_pr(server, &service, "9", &sha(1)).success();
    poll::eventually(
        REPORT_TIMEOUT,
        "the reporter to try GitHub",
        || match github.answered_5xx() {
            0 => Err("no request yet".to_owned()),
            n => Ok(n),
        },
    );
    github.fail_all(false);

    github.rate_limit_next(2);
    deploy_from_pr(server, &service, "9", &sha(2)).success();
    let state = poll::eventually(REPORT_TIMEOUT, "the commit status", || {
        final_status(&github, &sha(2))
    });
    assert_eq!(state, "success");
    assert_eq!(github.answered_rate_limited(), 2);
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn deliver(
    server: &Server,
    event: &str,
    delivery: &str,
    signature: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut headers = vec![
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", delivery),
        ("Content-Type", "application/json"),
    ];
    if let Some(signature) = signature {
        headers.push(("X-Hub-Signature-256", signature));
    }
    http::post(server.addr.port(), "/v1/github/webhook", &headers, body)
        .unwrap_or_else(|e| panic!("POST /v1/github/webhook: {e}"))
}

#[test]
fn webhook_refuses_untrusted_deliveries_and_handles_a_closed_pull_request_once() {
    let github = GithubFake::start(TOKEN);
    let setup = server_for(&github);
    let server = &setup.server;
    let service = Service::quickstart();
    let _agent = Agent::start(server, &service.name, &service.environment);
    deploy_from_pr(server, &service, "12", &sha(12)).success();
    let comment = poll::eventually(
        REPORT_TIMEOUT,
        "the pull request's comment",
        || match github.comments(REPO, 12).as_slice() {
            [one] if one.body.contains("| live |") => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        },
    );

    let closed = serde_json::json!({
        "action": "closed",
        "number": 12,
        "pull_request": {"number": 12, "merged": true},
        "repository": {"full_name": REPO},
    })
    .to_string()
    .into_bytes();
    let good = sign(WEBHOOK_SECRET, &closed);
    let refused: Vec<(&str, Option<String>, Vec<u8>, u16)> = vec![
        (
            "bad signature",
            Some(format!("sha256={}", "0".repeat(64))),
            closed.clone(),
            401,
        ),
        ("no signature", None, closed.clone(), 400),
        (
            "wrong secret",
            Some(sign("not the secret", &closed)),
            closed.clone(),
            401,
        ),
        (
            "truncated body",
            Some(good.clone()),
            closed[..closed.len() - 5].to_vec(),
            401,
        ),
        (
            "oversize body",
            Some(good.clone()),
            vec![b' '; 30 * 1024 * 1024],
            413,
        ),
        (
            "not JSON",
            Some(sign(WEBHOOK_SECRET, b"closed=12")),
            b"closed=12".to_vec(),
            400,
        ),
    ];
    for (what, signature, body, expected) in refused {
        let (code, text) = deliver(
            server,
            "pull_request",
            &format!("d-{what}"),
            signature.as_deref(),
            body,
        );
        assert_eq!(code, expected, "{what}: {text}");
    }
    let (code, text) = deliver(
        server,
        "ping",
        "d-ping",
        Some(&sign(WEBHOOK_SECRET, b"{}")),
        b"{}".to_vec(),
    );
    assert_eq!((code, text.trim()), (200, "pong"));
    // Nothing above changed the pull request: its comment was not edited.
    assert_eq!(github.comments(REPO, 12), vec![comment.clone()]);

    let (code, text) = deliver(
        server,
        "pull_request",
        "d-closed",
        Some(&good),
        closed.clone(),
    );
    assert_eq!(code, 200, "{text}");
    let edited = poll::eventually(REPORT_TIMEOUT, "the comment to say closed", || match github
        .comments(REPO, 12)
        .as_slice()
    {
        [one] if one.body.contains("This pull request is closed.") => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });
    // The same delivery again changes nothing; a new delivery of the same
    // event is handled (the positive control that replays would be seen).
    let (code, text) = deliver(
        server,
        "pull_request",
        "d-closed",
        Some(&good),
        closed.clone(),
    );
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("handled before"), "{text}");
    let (code, _) = deliver(
        server,
        "pull_request",
        "d-closed-again",
        Some(&good),
        closed,
    );
    assert_eq!(code, 200);
    let after = poll::eventually(
        REPORT_TIMEOUT,
        "the second delivery's edit",
        || match github.comments(REPO, 12).as_slice() {
            [one] if one.edits > edited.edits => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(
        after.edits,
        edited.edits + 1,
        "the replayed delivery edited the comment"
    );
}

#[test]
fn webhook_is_off_without_a_secret_and_deploy_refuses_a_bad_repo_before_upload() {
    let server = Server::start();
    let (code, text) = http::post(
        server.addr.port(),
        "/v1/github/webhook",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "d1"),
            ("X-Hub-Signature-256", "sha256=00"),
        ],
        b"{}".to_vec(),
    )
    .unwrap();
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("--github-webhook-secret-file"), "{text}");

    let service = Service::quickstart();
    let dir = service.dir_arg();
    let out = server.cli(&service.deploy_args(&dir, &["--repo", "not a repo"]));
    out.expect_code(2);
    assert!(out.to_string().contains("owner/name"), "{out}");
    let out = server.cli(&service.deploy_args(&dir, &["--pr", "3"]));
    out.expect_code(2);
    assert!(out.to_string().contains("--repo"), "{out}");
    assert!(
        cli::releases(&server, &service.name, &service.environment).is_empty(),
        "nothing was uploaded"
    );
}
