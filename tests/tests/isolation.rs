//! Tenancy between services: an agent token for service `a` gets nothing of
//! service `b` — not its bundle, not its secrets, not its missions — and is
//! refused by the control service altogether.

use std::path::Path;

use launch_e2e::{Agent, Server, Service, cli, grpc};
use launch_proto::{
    FetchBundleRequest, GetMissionRequest, ListSecretsRequest, MissionState, ServiceRef,
};

/// Every path under `dir`, as text.
fn all_paths(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            all_paths(&path, out);
        }
    }
}

#[test]
fn an_agent_token_of_one_service_cannot_reach_another_services_bundle_secrets_or_missions() {
    let a = Service::quickstart();
    let b = Service::quickstart();
    let server = Server::start();
    let agent_a = Agent::start(&server, &a.name, &a.environment);

    // Service b: a secret and a queued release, and no agent of its own.
    cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            &b.name,
            "B_SECRET",
            "--env",
            &b.environment,
        ],
        "b-only-value\n",
    )
    .success();
    let b_dir = b.dir_arg();
    let queued = server.cli(&b.deploy_args(&b_dir, &[]));
    queued.success();
    let (b_mission, b_release) = cli::ids(&format!("{}\n{}", queued.stdout, queued.stderr));
    let b_mission = b_mission.unwrap_or_else(|| panic!("no mission id printed\n{queued}"));
    let b_release = b_release.unwrap_or_else(|| panic!("no release id printed\n{queued}"));

    // Service a deploys through agent a: by then agent a had every chance to
    // be handed b's mission.
    let a_dir = a.dir_arg();
    let deployed = server.cli(&a.deploy_args(&a_dir, &["--wait", "--output", "json"]));
    deployed.success();
    let a_release = cli::field(&deployed.json(), "release_id").to_owned();

    let mut paths = Vec::new();
    all_paths(agent_a.data_dir(), &mut paths);
    // Positive control: the walk sees agent a's own service and release, so
    // an empty match below means b's are absent, not that nothing was read.
    assert!(
        paths.iter().any(|p| p.contains(&a.name)) && paths.iter().any(|p| p.contains(&a_release)),
        "the walk of {} did not find service a's own release {a_release}: {paths:?}",
        agent_a.data_dir().display()
    );
    let leaked: Vec<_> = paths
        .iter()
        .filter(|p| p.contains(&b.name) || p.contains(&b_mission) || p.contains(&b_release))
        .collect();
    assert!(
        leaked.is_empty(),
        "agent a holds service b's files: {leaked:?}"
    );

    let token = agent_a.agent_token();
    let runtime = grpc::runtime();
    runtime.block_on(async {
        let agents = grpc::agent_client(&server).await;
        let fetch = |release_id: String| {
            let mut agents = agents.clone();
            let token = token.clone();
            async move {
                let mut stream = agents
                    .fetch_bundle(grpc::request(FetchBundleRequest { release_id }, &token))
                    .await?
                    .into_inner();
                let mut bytes = 0usize;
                while let Some(chunk) = stream.message().await? {
                    bytes += chunk.data.len();
                }
                Ok::<usize, tonic::Status>(bytes)
            }
        };
        let own = fetch(a_release.clone()).await;
        assert!(
            own.as_ref().is_ok_and(|n| *n > 0),
            "agent a cannot fetch its own bundle: {own:?}"
        );
        let other = fetch(b_release.clone()).await;
        match other {
            Err(status) => assert_eq!(
                status.code(),
                tonic::Code::PermissionDenied,
                "fetching b's bundle with a's token: {status:?}"
            ),
            Ok(n) => panic!("agent a fetched {n} bytes of service b's bundle"),
        }

        let mut control = grpc::control_client(&server).await;
        let target = ServiceRef {
            service: b.name.clone(),
            environment: b.environment.clone(),
        };
        let status = control
            .list_secrets(grpc::request(
                ListSecretsRequest {
                    target: Some(target),
                },
                &token,
            ))
            .await
            .expect_err("an agent token listed service b's secrets");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

        let mission = control
            .get_mission(grpc::request(
                GetMissionRequest {
                    mission_id: b_mission.clone(),
                },
                &server.admin_token,
            ))
            .await
            .expect("GetMission with the admin token")
            .into_inner();
        assert_eq!(
            mission.state(),
            MissionState::Queued,
            "service b's mission left the queue without an agent of b: {mission:?}"
        );
        assert!(
            mission.agent_id.is_empty(),
            "service b's mission went to agent {}",
            mission.agent_id
        );
    });
}
