//! Scoped API tokens through the `launch` CLI: `token create --scope` prints
//! the token once, `token list` never shows it, a token outside its scope is
//! refused with exit 3 and a message naming the scope the call needs, and a
//! revoked token is refused from then on.

use launch_e2e::{Server, Service, cli};

/// `launch <args>` with `token` instead of the admin token.
fn as_token(server: &Server, token: &str, args: &[&str]) -> cli::CliOutput {
    let mut command = cli::command(server, args);
    command.env("LAUNCH_TOKEN", token);
    cli::finish(args, command, None)
}

#[test]
fn a_scoped_token_does_what_its_scope_allows_and_nothing_else_until_revoked() {
    let server = Server::start();
    let service = Service::quickstart();
    let created = server.cli(&[
        "token",
        "create",
        "--scope",
        "read",
        "--service",
        &service.name,
        "--env",
        &service.environment,
        "--name",
        "dashboard",
        "--output",
        "json",
    ]);
    created.success();
    let json = created.json();
    let token = cli::field(&json, "token").to_owned();
    let token_id = cli::field(&json, "token_id").to_owned();
    assert!(token.starts_with("lt_api_"), "{created}");
    assert_eq!(cli::field(&json, "scope"), "read", "{created}");

    // Allowed: reading its own service (none deployed yet: a clean "no releases").
    as_token(
        &server,
        &token,
        &["releases", &service.name, "--env", &service.environment],
    )
    .success();
    // Refused: deploying, and reading every service.
    let dir = service.dir_arg();
    let deploy = as_token(&server, &token, &service.deploy_args(&dir, &[]));
    deploy.expect_code(3);
    assert!(deploy.stderr.contains("needs a deploy token"), "{deploy}");
    let status = as_token(&server, &token, &["status"]);
    status.expect_code(3);
    assert!(
        status.stderr.contains("--service '*' --env '*'"),
        "{status}"
    );
    // Refused: minting tokens.
    let mint = as_token(&server, &token, &["token", "create", "--scope", "read"]);
    mint.expect_code(3);
    assert!(mint.stderr.contains("needs an admin token"), "{mint}");

    let listed = server.cli(&["token", "list", "--output", "json"]);
    listed.success();
    assert!(
        !listed.stdout.contains(&token),
        "the list shows a token\n{listed}"
    );
    let rows = cli::list(&listed.json(), "tokens").expect("a token list");
    let row = rows
        .iter()
        .find(|t| cli::field(t, "token_id") == token_id)
        .unwrap_or_else(|| panic!("{token_id} is not listed\n{listed}"));
    assert_eq!(cli::field(row, "name"), "dashboard");
    assert_eq!(cli::field(row, "service"), service.name);
    assert_eq!(cli::field(row, "creator"), "admin");
    assert!(row["last_used_unix_ms"].as_i64().unwrap_or(0) > 0, "{row}");

    server.cli(&["token", "revoke", &token_id]).success();
    let refused = as_token(
        &server,
        &token,
        &["releases", &service.name, "--env", &service.environment],
    );
    refused.expect_code(3);
    assert!(refused.stderr.contains("was revoked"), "{refused}");
}

#[test]
fn bad_token_flags_are_refused_before_anything_is_sent() {
    let server = Server::start();
    let no_service = server.cli(&["token", "create", "--scope", "deploy", "--env", "prod"]);
    no_service.expect_code(2);
    assert!(no_service.stderr.contains("--service"), "{no_service}");
    let bad_pattern = server.cli(&[
        "token",
        "create",
        "--scope",
        "read",
        "--service",
        "Hello World",
    ]);
    bad_pattern.expect_code(2);
    assert!(bad_pattern.stderr.contains("pattern"), "{bad_pattern}");
    let listed = server.cli(&["token", "list", "--output", "json"]);
    listed.success();
    assert_eq!(
        cli::list(&listed.json(), "tokens").map(|t| t.len()),
        Some(0),
        "a refused create made a token\n{listed}"
    );
}
