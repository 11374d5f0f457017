//! Previews on the control plane with a test-driven agent: a preview needs
//! its environment deployed, is its own mission (named, limited, with its
//! own secret overrides) that never becomes the environment's release, URL
//! or history, is capped per service, is listed, named in `Welcome`, and
//! removed by a teardown mission exactly once.

use super::*;

async fn deploy_preview(
    server: &TestServer,
    preview: &str,
    secrets: std::collections::HashMap<String, String>,
) -> Result<DeployResponse, Status> {
    let bundle = good_bundle(preview);
    let mut messages = vec![DeployRequest {
        msg: Some(deploy_request::Msg::Header(DeployHeader {
            target: Some(target("hello", "prod")),
            git_ref: format!("ref-{preview}"),
            secrets,
            bundle_sha256: launch_core::bundle::sha256_hex(&bundle),
            preview: preview.into(),
            ..Default::default()
        })),
    }];
    messages.push(DeployRequest {
        msg: Some(deploy_request::Msg::Chunk(bundle)),
    });
    server
        .control()
        .await
        .deploy(server.admin(tokio_stream::iter(messages)))
        .await
        .map(tonic::Response::into_inner)
}

async fn healthy(session: &AgentSession, server: &TestServer, deploy: &DeployResponse, url: &str) {
    session.ack(&deploy.mission_id).await;
    session
        .send(agent_message::Msg::Update(MissionUpdate {
            mission_id: deploy.mission_id.clone(),
            state: MissionState::Healthy as i32,
            message: "healthy".into(),
            release_id: deploy.release_id.clone(),
            url: url.into(),
        }))
        .await;
    wait_for_state(server, &deploy.mission_id, MissionState::Healthy).await;
}

async fn previews(server: &TestServer) -> Vec<PreviewInfo> {
    server
        .control()
        .await
        .list_previews(server.admin(ListPreviewsRequest {
            target: Some(target("hello", "prod")),
        }))
        .await
        .unwrap()
        .into_inner()
        .previews
}

fn secrets(value: &str) -> std::collections::HashMap<String, String> {
    [("API_KEY".to_owned(), value.to_owned())].into()
}

on_both_engines! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_sits_beside_its_environment_without_touching_it(db) {
    let server = TestServer::start_with(&db, |config| {
        config.previews.cap = 1;
        config.previews.memory_bytes = 64 * 1024 * 1024;
    })
    .await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    assert!(session.welcome.previews.is_empty());

    let early = deploy_preview(&server, "pr-1", secrets("x"))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    assert!(early.message().contains("deploy it first"), "{early:?}");

    let prod = server
        .deploy_with("hello", "prod", good_bundle("prod"), secrets("prod-key"))
        .await
        .unwrap();
    session.next_mission().await;
    healthy(&session, &server, &prod, "http://hello.test/").await;

    let bad = deploy_preview(&server, "PR_1", secrets("x"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");

    let preview = deploy_preview(&server, "pr-1", secrets("preview-key"))
        .await
        .unwrap();
    let mission = session.next_mission().await;
    assert_eq!(mission.preview, "pr-1");
    assert_eq!(mission.preview_memory_bytes, 64 * 1024 * 1024);
    assert_eq!(
        mission.secrets["API_KEY"], "preview-key",
        "the preview's override"
    );
    healthy(&session, &server, &preview, "http://pr-1.hello.test/").await;

    // The environment is untouched: its release, URL, history and secrets.
    let services = server
        .control()
        .await
        .list_services(server.admin(ListServicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .services;
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].current_release_id, prod.release_id);
    assert_eq!(services[0].url, "http://hello.test/");
    assert_eq!(services[0].last_mission_id, prod.mission_id);
    let releases = server
        .control()
        .await
        .list_releases(server.admin(ListReleasesRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .releases;
    assert_eq!(releases.len(), 1, "{releases:?}");
    let again = server.deploy("hello", "prod", good_bundle("prod-2")).await;
    let mission = session.next_mission().await;
    assert_eq!(
        (
            mission.preview.as_str(),
            mission.secrets["API_KEY"].as_str()
        ),
        ("", "prod-key")
    );
    healthy(&session, &server, &again, "http://hello.test/").await;

    // The cap: a second preview is refused naming it and the oldest; the
    // same preview deploys again.
    let capped = deploy_preview(&server, "pr-2", secrets("x"))
        .await
        .unwrap_err();
    assert_eq!(capped.code(), Code::FailedPrecondition, "{capped:?}");
    assert!(
        capped.message().contains("the cap (1)") && capped.message().contains("pr-1"),
        "{capped:?}"
    );
    let redeploy = deploy_preview(&server, "pr-1", Default::default())
        .await
        .unwrap();
    session.next_mission().await;
    healthy(&session, &server, &redeploy, "http://pr-1.hello.test/").await;
    let listed = previews(&server).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].release_id, redeploy.release_id);
    assert_eq!(listed[0].url, "http://pr-1.hello.test/");
    assert_eq!(listed[0].state, MissionState::Healthy as i32);
    assert_eq!(listed[0].git_ref, "ref-pr-1");
    let mission = redeploy_secrets(&server, &mut session).await;
    assert_eq!(mission, "preview-key", "the override outlives one deploy");

    // A new session's Welcome names the live previews.
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    assert_eq!(session.welcome.previews, ["pr-1"]);

    // Removal: one teardown mission, then nothing of it is listed.
    let mut control = server.control().await;
    let removed = control
        .remove_preview(server.admin(RemovePreviewRequest {
            target: Some(target("hello", "prod")),
            preview: "pr-1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.mission_ids.len(), 1);
    let mission = session.next_mission().await;
    assert_eq!(
        (mission.kind(), mission.preview.as_str()),
        (MissionKind::PreviewRemove, "pr-1")
    );
    assert!(previews(&server).await.is_empty());
    let twice = control
        .remove_preview(server.admin(RemovePreviewRequest {
            target: None,
            preview: "pr-1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(twice.removed.is_empty() && twice.mission_ids.is_empty());
    // The overrides went with it.
    let store = server.store().await;
    assert!(
        store
            .secrets("hello", "prod@pr-1")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.secrets("hello", "prod").await.unwrap().len(), 1);

    // Retiring the service forgets its previews and their overrides too.
    deploy_preview(&server, "pr-2", secrets("two"))
        .await
        .unwrap();
    assert_eq!(previews(&server).await.len(), 1);
    assert_eq!(store.secrets("hello", "prod@pr-2").await.unwrap().len(), 1);
    control
        .retire_service(server.admin(RetireServiceRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(previews(&server).await.is_empty());
    assert!(
        store
            .secrets("hello", "prod@pr-2")
            .await
            .unwrap()
            .is_empty()
    );
}
}

/// Deploys pr-1 again without secrets; the API_KEY its mission carries.
async fn redeploy_secrets(server: &TestServer, session: &mut AgentSession) -> String {
    let deploy = deploy_preview(server, "pr-1", Default::default())
        .await
        .unwrap();
    let mission = session.next_mission().await;
    healthy(session, server, &deploy, "http://pr-1.hello.test/").await;
    mission.secrets["API_KEY"].clone()
}

on_both_engines! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previews_log_lines_are_redacted_of_its_overrides_and_of_the_environments_values(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let prod = server
        .deploy_with(
            "hello",
            "prod",
            good_bundle("prod"),
            secrets("prod-value-1"),
        )
        .await
        .unwrap();
    session.next_mission().await;
    healthy(&session, &server, &prod, "http://hello.test/").await;
    let preview = deploy_preview(&server, "pr-1", secrets("preview-value-2"))
        .await
        .unwrap();
    let mission = session.next_mission().await;
    session.ack(&mission.mission_id).await;

    session
        .send(agent_message::Msg::Logs(LogBatch {
            mission_id: preview.mission_id.clone(),
            lines: vec![LogLine {
                seq: 1,
                unix_ms: 1,
                stream: LogStream::Stdout as i32,
                source: "web".into(),
                text: "override preview-value-2, environment prod-value-1".into(),
            }],
        }))
        .await;
    assert_eq!(session.next_log_ack(&preview.mission_id).await, 1);
    let line = server.stored_logs(&preview.mission_id).await.unwrap().remove(0).line.unwrap();
    assert_eq!(
        line.text, "override [REDACTED], environment [REDACTED]",
        "both the preview's override and the value it overrides are secrets"
    );
}
}
