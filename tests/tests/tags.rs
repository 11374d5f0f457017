//! Service tags through the `launch` CLI: launch.toml `[tags]` applied by a
//! deploy, `services tag|untag` by hand, `services --tag` selecting with AND,
//! tags in the text and JSON listings, and bad tags refused with exit 2 and a
//! message naming the tag, with nothing written.

use launch_e2e::{Server, Service, cli};

/// The service's tags as `services --output json` lists them (`None`: not listed).
fn listed_tags(server: &Server, service: &Service, filters: &[&str]) -> Option<serde_json::Value> {
    let mut args = vec!["services", "--output", "json"];
    for filter in filters {
        args.extend(["--tag", filter]);
    }
    let listed = server.cli(&args);
    listed.success();
    cli::list(&listed.json(), "services")
        .unwrap_or_default()
        .into_iter()
        .find(|s| cli::field(s, "service") == service.name)
        .map(|s| s["tags"].clone())
}

fn with_tags(service: &Service, tags: &str) {
    let config = std::fs::read_to_string(service.dir().join("launch.toml")).unwrap();
    let config = match config.find("\n[tags]") {
        Some(at) => config[..at].to_owned(),
        None => config,
    };
    service.write("launch.toml", &format!("{config}\n[tags]\n{tags}"));
}

#[test]
fn tags_come_from_launch_toml_and_the_cli_and_select_services() {
    let server = Server::start();
    let service = Service::quickstart();
    let dir = service.dir_arg();
    let (name, env) = (service.name.as_str(), service.environment.as_str());
    with_tags(&service, "team = \"platform\"\n");
    server.cli(&service.deploy_args(&dir, &[])).success();
    assert_eq!(
        listed_tags(&server, &service, &[]),
        Some(serde_json::json!({ "team": "platform" }))
    );

    let tagged = server.cli(&[
        "services",
        "tag",
        name,
        "--env",
        env,
        "owner=jane",
        "tier=1",
    ]);
    tagged.success();
    assert!(
        tagged.stdout.contains("owner=jane,team=platform,tier=1"),
        "{tagged}"
    );
    let text = server.cli(&["services"]);
    text.success();
    assert!(
        text.stdout.contains("TAGS") && text.stdout.contains("owner=jane,team=platform,tier=1"),
        "{text}"
    );

    // AND: both tags select it, a second value does not.
    assert!(listed_tags(&server, &service, &["team=platform", "owner"]).is_some());
    assert!(listed_tags(&server, &service, &["team=platform", "owner=joe"]).is_none());

    server
        .cli(&["services", "untag", name, "--env", env, "tier"])
        .success();
    assert_eq!(
        listed_tags(&server, &service, &[]),
        Some(serde_json::json!({ "team": "platform", "owner": "jane" }))
    );
    assert!(listed_tags(&server, &service, &["tier"]).is_none());
}

#[test]
fn bad_tags_exit_2_naming_the_tag_and_change_nothing() {
    let server = Server::start();
    let service = Service::quickstart();
    let dir = service.dir_arg();
    let (name, env) = (service.name.as_str(), service.environment.as_str());
    with_tags(&service, "team = \"platform\"\n");
    server.cli(&service.deploy_args(&dir, &[])).success();
    let before = listed_tags(&server, &service, &[]);
    assert_eq!(before, Some(serde_json::json!({ "team": "platform" })));

    let spaced = server.cli(&[
        "services",
        "tag",
        name,
        "--env",
        env,
        "ok=1",
        "owner=jane doe",
    ]);
    spaced.expect_code(2);
    assert!(
        spaced.stderr.contains("invalid tag \"owner=jane doe\"")
            && spaced.stderr.contains("a tag value is 1 to 128 letters")
            && spaced.stderr.contains("nothing was changed"),
        "{spaced}"
    );
    let bare = server.cli(&["services", "tag", name, "--env", env, "owner"]);
    bare.expect_code(2);
    assert!(bare.stderr.contains("expected key=value"), "{bare}");
    // A key the deployed launch.toml owns is changed there, not by hand.
    let owned = server.cli(&["services", "tag", name, "--env", env, "team=other"]);
    owned.expect_code(2);
    assert!(
        owned.stderr.contains("set by the deployed launch.toml")
            && owned.stderr.contains("change it there"),
        "{owned}"
    );
    let filter = server.cli(&["services", "--tag", "bad key"]);
    filter.expect_code(2);
    assert!(filter.stderr.contains("--tag bad key"), "{filter}");
    assert_eq!(listed_tags(&server, &service, &[]), before);

    // A bad [tags] in launch.toml stops the deploy before anything is uploaded.
    with_tags(&service, "team = \"a b\"\n");
    let deploy = server.cli(&service.deploy_args(&dir, &[]));
    deploy.expect_code(2);
    assert!(
        deploy.stderr.contains("tags.team") && deploy.stderr.contains("invalid tag"),
        "{deploy}"
    );
    assert_eq!(cli::releases(&server, name, env).len(), 1);
    assert_eq!(listed_tags(&server, &service, &[]), before);
}
