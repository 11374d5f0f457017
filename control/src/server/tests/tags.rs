//! Service tags over the wire: `SetServiceTags` (the CLI's `tag`/`untag`),
//! the tag filter of `ListServices`, the tags in `ServiceInfo`, and the two
//! declarations that own their keys: the provider's `tags` through
//! `EnsureService` and a deploy's `launch.toml` `[tags]`.

use super::*;

async fn ensure(server: &TestServer, service: &str, tags: Option<&[(&str, &str)]>) {
    server
        .control()
        .await
        .ensure_service(
            server.admin(EnsureServiceRequest {
                target: Some(target(service, "prod")),
                tags: tags
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                replace_tags: tags.is_some(),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
}

async fn set_tags(
    server: &TestServer,
    service: &str,
    set: &[(&str, &str)],
    remove: &[&str],
) -> Result<ServiceInfo, Status> {
    server
        .control()
        .await
        .set_service_tags(
            server.admin(SetServiceTagsRequest {
                target: Some(target(service, "prod")),
                set: set
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                remove: remove.iter().map(|k| k.to_string()).collect(),
            }),
        )
        .await
        .map(tonic::Response::into_inner)
}

/// `key=value (source)` of each tag, by key.
fn shown(info: &ServiceInfo) -> Vec<String> {
    info.tags
        .iter()
        .map(|t| format!("{}={} ({})", t.key, t.value, t.source))
        .collect()
}

async fn tags_of(server: &TestServer, service: &str) -> Vec<String> {
    let info = server
        .control()
        .await
        .get_service(server.admin(GetServiceRequest {
            target: Some(target(service, "prod")),
        }))
        .await
        .unwrap()
        .into_inner();
    shown(&info)
}

async fn listed(server: &TestServer, filters: &[&str]) -> Result<Vec<String>, Status> {
    let services = server
        .control()
        .await
        .list_services(server.admin(ListServicesRequest {
            tags: filters.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .services;
    Ok(services
        .into_iter()
        .map(|s| s.target.unwrap_or_default().service)
        .collect())
}

/// A bundle whose launch.toml is `launch_toml`.
fn bundle_with_config(launch_toml: &str) -> Vec<u8> {
    bundle_of("services:\n  web:\n    image: busybox\n", launch_toml)
}

on_both_engines! {
#[tokio::test]
async fn tags_set_by_hand_are_shown_and_select_services_with_and(db) {
    let server = TestServer::start(&db).await;
    ensure(&server, "api", None).await;
    ensure(&server, "web", None).await;
    let info = set_tags(&server, "api", &[("team", "platform"), ("tier", "1")], &[])
        .await
        .unwrap();
    assert_eq!(shown(&info), ["team=platform (cli)", "tier=1 (cli)"]);
    set_tags(&server, "web", &[("team", "platform")], &[])
        .await
        .unwrap();

    assert_eq!(listed(&server, &[]).await.unwrap(), ["api", "web"]);
    assert_eq!(
        listed(&server, &["team=platform"]).await.unwrap(),
        ["api", "web"]
    );
    assert_eq!(
        listed(&server, &["team:platform", "tier"]).await.unwrap(),
        ["api"]
    );
    assert!(listed(&server, &["team=plat"]).await.unwrap().is_empty());

    let info = set_tags(&server, "api", &[], &["tier"]).await.unwrap();
    assert_eq!(shown(&info), ["team=platform (cli)"]);
    let bad = listed(&server, &["team name"]).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("\"team name\""), "{}", bad.message());
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_bad_tag_is_refused_by_name_and_nothing_is_written(db) {
    let server = TestServer::start(&db).await;
    ensure(&server, "api", None).await;
    set_tags(&server, "api", &[("team", "platform")], &[])
        .await
        .unwrap();
    let refused = set_tags(
        &server,
        "api",
        &[("owner", "jane doe"), ("tier", "1")],
        &["team"],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("invalid tag \"owner=jane doe\"")
            && refused.message().contains("a tag value is")
            && refused.message().ends_with("nothing was changed"),
        "{}",
        refused.message()
    );
    assert_eq!(tags_of(&server, "api").await, ["team=platform (cli)"]);

    let missing = set_tags(&server, "nope", &[("team", "x")], &[])
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let empty = set_tags(&server, "api", &[], &[]).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn terraform_owns_the_keys_it_sets_and_each_apply_replaces_them(db) {
    let server = TestServer::start(&db).await;
    ensure(&server, "api", None).await;
    set_tags(&server, "api", &[("owner", "jane")], &[])
        .await
        .unwrap();
    ensure(&server, "api", Some(&[("team", "platform"), ("tier", "1")])).await;
    assert_eq!(
        tags_of(&server, "api").await,
        [
            "owner=jane (cli)",
            "team=platform (terraform)",
            "tier=1 (terraform)"
        ]
    );
    // The CLI may not change Terraform's keys, and changes nothing then.
    let refused = set_tags(
        &server,
        "api",
        &[("team", "other"), ("owner", "joe")],
        &["tier"],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("tag team=platform is set by Terraform")
            && message.contains("tag tier=1 is set by Terraform")
            && message.contains("change it there"),
        "{message}"
    );
    assert_eq!(
        tags_of(&server, "api").await,
        [
            "owner=jane (cli)",
            "team=platform (terraform)",
            "tier=1 (terraform)"
        ]
    );
    // An EnsureService without `replace_tags` (an older provider) leaves them.
    ensure(&server, "api", None).await;
    // The next apply drops `tier`; the CLI's key stays.
    ensure(&server, "api", Some(&[("team", "platform")])).await;
    assert_eq!(
        tags_of(&server, "api").await,
        ["owner=jane (cli)", "team=platform (terraform)"]
    );
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_deploy_makes_launch_toml_tags_the_services(db) {
    let server = TestServer::start(&db).await;
    server
        .deploy(
            "api",
            "prod",
            bundle_with_config("[tags]\nteam = \"platform\"\nlang = \"rust\"\n"),
        )
        .await;
    assert_eq!(
        tags_of(&server, "api").await,
        ["lang=rust (launch.toml)", "team=platform (launch.toml)"]
    );
    let refused = set_tags(&server, "api", &[], &["lang"]).await.unwrap_err();
    assert!(
        refused
            .message()
            .contains("set by the deployed launch.toml"),
        "{}",
        refused.message()
    );
    set_tags(&server, "api", &[("owner", "jane")], &[])
        .await
        .unwrap();
    server
        .deploy(
            "api",
            "prod",
            bundle_with_config("[tags]\nteam = \"platform\"\n"),
        )
        .await;
    assert_eq!(
        tags_of(&server, "api").await,
        ["owner=jane (cli)", "team=platform (launch.toml)"]
    );
    // A bad tag in the bundle's launch.toml refuses the deploy.
    let refused = server
        .deploy_with(
            "api",
            "prod",
            bundle_with_config("[tags]\nteam = \"a b\"\n"),
            Default::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("tags.team"),
        "{}",
        refused.message()
    );
    assert_eq!(
        tags_of(&server, "api").await,
        ["owner=jane (cli)", "team=platform (launch.toml)"]
    );
    server.stop().await;
}
}
