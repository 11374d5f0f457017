//! A service retired (terraform destroy) and created again under the same
//! name (terraform apply) starts clean: `services`, `status` and `logs` show
//! nothing of the retired host until the new one deploys, while the old
//! missions stay reachable by id for audit.

use super::*;

/// Deploys `hello/prod` through a registered agent that logs three lines and
/// reports healthy with a URL; returns the mission id.
async fn healthy_deploy(server: &TestServer) -> String {
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut session = AgentSession::open(server, &agent_token).await.unwrap();
    let deploy = server.deploy("hello", "prod", good_bundle("1")).await;
    session.next_mission().await;
    session.ack(&deploy.mission_id).await;
    session.logs(&deploy.mission_id, 1..=3).await;
    assert_eq!(session.next_log_ack(&deploy.mission_id).await, 3);
    session
        .update(
            &deploy.mission_id,
            MissionState::Healthy,
            &deploy.release_id,
        )
        .await;
    wait_for_state(server, &deploy.mission_id, MissionState::Healthy).await;
    deploy.mission_id
}

async fn only_service(
    control: &mut ControlServiceClient<Channel>,
    server: &TestServer,
) -> ServiceInfo {
    let mut services = control
        .list_services(server.admin(ListServicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .services;
    assert_eq!(services.len(), 1, "{services:?}");
    services.remove(0)
}

on_both_engines! {
#[tokio::test]
async fn recreated_service_shows_no_mission_url_or_log_of_the_retired_one(db) {
    let server = TestServer::start(&db).await;
    let old_mission = healthy_deploy(&server).await;
    let mut control = server.control().await;

    // Positive control: before the retire, the service shows all three.
    let before = only_service(&mut control, &server).await;
    assert_eq!(
        (before.last_mission_id.as_str(), before.last_mission_state()),
        (old_mission.as_str(), MissionState::Healthy)
    );
    assert_eq!(before.url, "http://127.0.0.1:8080/");
    assert_eq!(
        server.stored_logs("").await.unwrap().len(),
        3
    );

    control
        .retire_service(server.admin(RetireServiceRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap();
    // terraform apply of the same name: the provider ensures the service.
    control
        .ensure_service(server.admin(EnsureServiceRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap();

    let after = only_service(&mut control, &server).await;
    assert_eq!(
        (
            after.last_mission_id.as_str(),
            after.last_mission_state(),
            after.url.as_str(),
            after.current_release_id.as_str()
        ),
        ("", MissionState::Unspecified, "", ""),
        "{after:?}"
    );
    let status = control
        .status(server.admin(StatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<_> = status
        .services
        .iter()
        .map(|s| (s.last_mission_id.as_str(), s.url.as_str()))
        .collect();
    assert_eq!(listed, vec![("", "")], "{status:?}");
    let logs = server.stored_logs("").await.unwrap_err();
    assert_eq!(logs.code(), Code::NotFound, "{logs:?}");
    assert!(logs.message().contains("no missions"), "{logs:?}");

    // The retired mission and its lines are still there when asked by id.
    assert_eq!(server.mission(&old_mission).await.mission_id, old_mission);
    assert_eq!(
        server.stored_logs(&old_mission)
            .await
            .unwrap()
            .len(),
        3
    );
    server.stop().await;
}
}

async fn releases(server: &TestServer, include_retired: bool) -> Vec<ReleaseInfo> {
    server
        .control()
        .await
        .list_releases(server.admin(ListReleasesRequest {
            target: Some(target("hello", "prod")),
            include_retired,
        }))
        .await
        .unwrap()
        .into_inner()
        .releases
}

on_both_engines! {
#[tokio::test]
async fn retired_releases_are_listed_only_when_asked_for_and_a_new_deploy_starts_the_history(db) {
    let server = TestServer::start(&db).await;
    let old_mission = healthy_deploy(&server).await;
    let mut control = server.control().await;
    control
        .retire_service(server.admin(RetireServiceRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(releases(&server, false).await, vec![]);
    let audit = releases(&server, true).await;
    assert_eq!(
        audit
            .iter()
            .map(|r| (r.mission_id.as_str(), r.retired, r.current))
            .collect::<Vec<_>>(),
        vec![(old_mission.as_str(), true, false)]
    );

    // The new host deploys: the service's history starts with it.
    let new_mission = healthy_deploy(&server).await;
    let service = only_service(&mut control, &server).await;
    assert_eq!(
        (
            service.last_mission_id.as_str(),
            service.last_mission_state()
        ),
        (new_mission.as_str(), MissionState::Healthy)
    );
    let listed = releases(&server, false).await;
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.mission_id.as_str(), r.retired, r.current))
            .collect::<Vec<_>>(),
        vec![(new_mission.as_str(), false, true)]
    );
    assert_eq!(releases(&server, true).await.len(), 2);
    server.stop().await;
}
}
