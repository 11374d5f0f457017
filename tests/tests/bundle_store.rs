//! Bundles off the local disk (issue #17): `launch server --bundle-store
//! s3://…` against moto's S3, configured as any AWS tool is (region,
//! credentials, `AWS_ENDPOINT_URL_S3`). Two replicas on one PostgreSQL
//! database and one bucket serve one fleet: `deploy --wait` through one
//! reaches a real agent connected to the other and ends healthy; a bundle
//! gone from the bucket fails its mission saying so; a bucket that does not
//! answer keeps the server from starting (exit 64, before binding).

use std::time::Duration;

use launch_e2e::moto_s3::MotoS3;
use launch_e2e::poll::eventually;
use launch_e2e::server;
use launch_e2e::{Agent, Server, Service, cli, grpc};
use launch_proto::{GetMissionRequest, MissionState};

/// The releases of `service` as `server` lists them once `ready` holds.
fn wait_for_release(
    server: &Server,
    service: &Service,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(cli::TIMEOUT, what, || {
        let releases = cli::releases(server, &service.name, &service.environment);
        releases
            .iter()
            .find(|release| ready(release))
            .cloned()
            .ok_or_else(|| format!("{releases:?}"))
    })
}

#[test]
fn a_deploy_through_one_replica_reaches_an_agent_on_another_through_one_bucket() {
    let cluster = launch_e2e::postgres::Cluster::start();
    let url = cluster.new_database();
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let store = format!("s3://{bucket}/launch");
    let env = server::s3_env(moto);
    let first = Server::start_with_env(
        &["--database-url", &url, "--bundle-store", &store],
        &server::env_refs(&env),
    );
    let second = Server::start_replica(&first).expect("a second replica starts");
    let service = Service::quickstart();
    let _agent = Agent::start(&first, &service.name, &service.environment);

    // Uploaded through the replica the agent is not connected to. Its
    // mission reaches the agent through the database, its bundle through S3,
    // and its outcome comes back to `deploy --wait` through the relay.
    service.set_index("served from the bucket\n");
    let dir = service.dir_arg();
    let deployed = second.cli(&service.deploy_args(&dir, &["--wait"]));
    deployed.success();
    let healthy = wait_for_release(&second, &service, "the release to be healthy", |r| {
        cli::field(r, "state") == "healthy"
    });
    let (code, body) = service
        .get("/")
        .unwrap_or_else(|e| panic!("{} does not answer: {e}", service.url()));
    assert_eq!((code, body.trim()), (200, "served from the bucket"));
    let sha256 = cli::field(&healthy, "bundle_sha256");
    assert_eq!(
        moto.request("HEAD", &format!("/{bucket}/launch/{sha256}.tar.gz")),
        Ok(200),
        "{healthy}"
    );
    for server in [&first, &second] {
        let kept: Vec<_> = std::fs::read_dir(server.data_dir().join("bundles"))
            .unwrap()
            .collect();
        assert!(kept.is_empty(), "a replica kept bundles on disk: {kept:?}");
    }
}

#[test]
fn a_bundle_gone_from_the_bucket_fails_its_mission_saying_so() {
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let env = server::s3_env(moto);
    let server = Server::start_with_env(
        &["--bundle-store", &format!("s3://{bucket}")],
        &server::env_refs(&env),
    );
    let service = Service::quickstart();
    // Queued with no agent yet; the object goes before any agent asks.
    let dir = service.dir_arg();
    let queued = server.cli(&service.deploy_args(&dir, &[]));
    queued.success();
    let (mission_id, _) = cli::ids(&format!("{}\n{}", queued.stdout, queued.stderr));
    let mission_id = mission_id.unwrap_or_else(|| panic!("no mission id printed\n{queued}"));
    let release = wait_for_release(&server, &service, "the queued release", |_| true);
    let sha256 = cli::field(&release, "bundle_sha256").to_owned();
    let object = format!("/{bucket}/{sha256}.tar.gz");
    assert_eq!(moto.request("HEAD", &object), Ok(200), "positive control");
    assert_eq!(moto.request("DELETE", &object), Ok(204));

    let _agent = Agent::start(&server, &service.name, &service.environment);
    let runtime = grpc::runtime();
    let mission = eventually(cli::TIMEOUT, "the mission to end", || {
        let mission = runtime.block_on(async {
            grpc::control_client(&server)
                .await
                .get_mission(grpc::request(
                    GetMissionRequest {
                        mission_id: mission_id.clone(),
                    },
                    &server.admin_token,
                ))
                .await
                .expect("GetMission")
                .into_inner()
        });
        if mission.state() == MissionState::Failed {
            Ok(mission)
        } else {
            Err(format!("{mission:?}"))
        }
    });
    for needle in [
        sha256.as_str(),
        &format!("s3://{bucket}"),
        "deploy the service again",
    ] {
        assert!(mission.message.contains(needle), "{needle}: {mission:?}");
    }
}

#[test]
fn server_refuses_a_bundle_bucket_that_does_not_answer_with_exit_64_before_binding() {
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let env = server::s3_env(moto);
    let (status, out) = server::run_refused(
        &["--bundle-store", "s3://launch-no-such-bucket/p"],
        &server::env_refs(&env),
        Duration::from_secs(60),
        "a server with a missing bucket",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("\"launch-no-such-bucket\""), "{stderr}");
    assert!(stderr.contains(&moto.url()), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it bound a port with a bucket that does not answer"
    );

    // Positive control: the bucket that exists, with the same settings.
    let server = Server::start_with_env(
        &["--bundle-store", &format!("s3://{bucket}/p")],
        &server::env_refs(&env),
    );
    let (code, _) = launch_e2e::http::get(server.addr.port(), "/healthz").expect("GET /healthz");
    assert_eq!(code, 200);
}
