//! `ListServices` reads each table once for all the services it lists; this
//! holds its answer to `GetService`'s, which reads a query per table, over a
//! fleet with a bit of everything: environments, a connected agent, a
//! deployed release with its URL, a failed and a queued mission, previews,
//! tags of every source, a front-door report, a degraded health report, a
//! registered address and name, and a retired service.

use super::*;

async fn deploy_preview(server: &TestServer, preview: &str) -> DeployResponse {
    let bundle = good_bundle(preview);
    let messages = vec![
        DeployRequest {
            msg: Some(deploy_request::Msg::Header(DeployHeader {
                target: Some(target("hello", "prod")),
                git_ref: format!("ref-{preview}"),
                bundle_sha256: launch_core::bundle::sha256_hex(&bundle),
                preview: preview.into(),
                ..Default::default()
            })),
        },
        DeployRequest {
            msg: Some(deploy_request::Msg::Chunk(bundle)),
        },
    ];
    server
        .control()
        .await
        .deploy(server.admin(tokio_stream::iter(messages)))
        .await
        .unwrap()
        .into_inner()
}

/// Runs `deploy`'s mission on `session` to `state`, leaving `url`.
async fn finish(
    server: &TestServer,
    session: &mut AgentSession,
    deploy: &DeployResponse,
    state: MissionState,
    url: &str,
) {
    session.next_mission().await;
    session.ack(&deploy.mission_id).await;
    session
        .send(agent_message::Msg::Update(MissionUpdate {
            mission_id: deploy.mission_id.clone(),
            state: state as i32,
            message: format!("{state:?}"),
            release_id: deploy.release_id.clone(),
            url: url.into(),
        }))
        .await;
    wait_for_state(server, &deploy.mission_id, state).await;
}

async fn ensure(server: &TestServer, request: EnsureServiceRequest) {
    server
        .control()
        .await
        .ensure_service(server.admin(request))
        .await
        .unwrap();
}

async fn listed(server: &TestServer, tags: &[&str]) -> Vec<ServiceInfo> {
    server
        .control()
        .await
        .list_services(server.admin(ListServicesRequest {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .services
}

async fn one_by_one(server: &TestServer, services: &[ServiceInfo]) -> Vec<ServiceInfo> {
    let mut answers = Vec::new();
    for info in services {
        answers.push(
            server
                .control()
                .await
                .get_service(server.admin(GetServiceRequest {
                    target: info.target.clone(),
                }))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    answers
}

on_both_engines! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batched_listing_equals_each_services_own_answer(db) {
    let server = TestServer::start(&db).await;
    let store = server.store().await;

    // hello/prod: deployed and healthy, routed, degraded, two previews.
    ensure(&server, EnsureServiceRequest {
        target: Some(target("hello", "prod")),
        fqdn: "hello.example.com".into(),
        host_address: "203.0.113.7".into(),
        tags: [("team".to_owned(), "core".to_owned())].into(),
        replace_tags: true,
    })
    .await;
    let (agent_id, agent_token) = server.register("hello", "prod").await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let first = server.deploy("hello", "prod", good_bundle("one")).await;
    finish(&server, &mut session, &first, MissionState::Healthy, "https://hello.example.com/").await;
    let second = server.deploy("hello", "prod", good_bundle("two")).await;
    finish(&server, &mut session, &second, MissionState::Healthy, "").await;
    for preview in ["pr-1", "pr-2"] {
        let deploy = deploy_preview(&server, preview).await;
        finish(&server, &mut session, &deploy, MissionState::Healthy, "https://pr.test/").await;
    }
    server
        .control()
        .await
        .set_service_tags(server.admin(SetServiceTagsRequest {
            target: Some(target("hello", "prod")),
            set: [("owner".to_owned(), "Jane".to_owned())].into(),
            remove: Vec::new(),
        }))
        .await
        .unwrap();
    let report = FrontDoorReport {
        routes: vec![FrontDoorRoute {
            route: "web".into(),
            hosts: vec!["hello.example.com".into()],
            release_id: second.release_id.clone(),
            certificates: Vec::new(),
        }],
        ..Default::default()
    };
    store
        .set_front_door_routes(&agent_id, "hello", "prod", &prost::Message::encode_to_vec(&report))
        .await
        .unwrap();
    store
        .set_service_health("hello", "prod", &store::HealthRow {
            release_id: second.release_id.clone(),
            degraded: true,
            message: "web exited with 1".into(),
        })
        .await
        .unwrap();

    // hello/staging: its agent failed the deploy; an older report of a
    // revoked agent is not shown.
    let (staging_id, staging_token) = server.register("hello", "staging").await;
    let mut staging = AgentSession::open(&server, &staging_token).await.unwrap();
    let failed = server.deploy("hello", "staging", good_bundle("bad")).await;
    finish(&server, &mut staging, &failed, MissionState::Failed, "").await;
    store
        .set_front_door_routes(&staging_id, "hello", "staging", &prost::Message::encode_to_vec(&report))
        .await
        .unwrap();
    server
        .control()
        .await
        .revoke_agent(server.admin(RevokeAgentRequest { agent_id: staging_id.clone() }))
        .await
        .unwrap();

    // api/prod: Terraform's tags only; db/prod: a deploy still queued;
    // old/prod: retired.
    ensure(&server, EnsureServiceRequest {
        target: Some(target("api", "prod")),
        tags: [("team".to_owned(), "web".to_owned()), ("tier".to_owned(), "1".to_owned())].into(),
        replace_tags: true,
        ..Default::default()
    })
    .await;
    server.deploy("db", "prod", good_bundle("db")).await;
    ensure(&server, EnsureServiceRequest {
        target: Some(target("old", "prod")),
        tags: [("team".to_owned(), "core".to_owned())].into(),
        replace_tags: true,
        ..Default::default()
    })
    .await;
    server
        .control()
        .await
        .retire_service(server.admin(RetireServiceRequest {
            target: Some(target("old", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap();

    let all = listed(&server, &[]).await;
    let names: Vec<String> = all
        .iter()
        .map(|info| {
            let target = info.target.clone().unwrap_or_default();
            format!("{}/{}", target.service, target.environment)
        })
        .collect();
    assert_eq!(names, ["api/prod", "db/prod", "hello/prod", "hello/staging"]);
    let hello = &all[2];
    assert_eq!(hello.url, "https://hello.example.com/");
    assert_eq!(hello.current_release_id, second.release_id);
    assert_eq!(hello.previews, 2);
    assert_eq!(hello.routes.len(), 1);
    assert_eq!(hello.health, "degraded: web exited with 1");
    assert_eq!((hello.fqdn.as_str(), hello.host_address.as_str()), ("hello.example.com", "203.0.113.7"));
    assert_eq!(hello.tags.len(), 2);
    assert_eq!(hello.agents_connected, 1);
    assert_eq!(all[3].last_mission_state(), MissionState::Failed);
    assert!(all[3].routes.is_empty(), "a revoked agent's report");
    assert_eq!(all[1].last_mission_state(), MissionState::Queued);
    assert_eq!(one_by_one(&server, &all).await, all);

    let team_core = listed(&server, &["team=core"]).await;
    assert_eq!(team_core, [all[2].clone()]);
    let tier = listed(&server, &["tier"]).await;
    assert_eq!(tier, [all[0].clone()]);
    drop((session, staging));
}
}
