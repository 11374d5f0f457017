//! Bundles shared by replicas: with one S3 bundle store an agent held by
//! one replica fetches what was uploaded through another; with bundles in
//! each data dir it is told clearly that the bundle is not there; a server
//! whose bucket does not answer refuses to start, naming it.

use super::super::super::bundle_store::{self, Location};
use super::super::super::test_moto_s3::MotoS3;
use super::*;

/// Keeps bundles in `bucket` (under `bundles/`) on `moto`.
fn on_s3(moto: &MotoS3, bucket: &str) -> impl Fn(&mut ServerConfig) + Clone {
    let location = Location::parse(&format!("s3://{bucket}/bundles")).unwrap();
    let aws = bundle_store::moto_aws(&moto.url());
    move |config: &mut ServerConfig| {
        config.bundle_store = location.clone();
        config.aws = Some(aws.clone());
    }
}

/// FetchBundle as the agent holding `agent_token` calls it, on `server`.
async fn fetch_bundle(
    server: &TestServer,
    agent_token: &str,
    release_id: &str,
) -> Result<Vec<u8>, Status> {
    let mut chunks = server
        .agents()
        .await
        .fetch_bundle(with_token(
            FetchBundleRequest {
                release_id: release_id.into(),
            },
            agent_token,
        ))
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        bytes.extend(chunk?.data);
    }
    Ok(bytes)
}

/// Every file a replica keeps in its data dir's `bundles/`.
fn bundle_files(server: &TestServer) -> Vec<String> {
    std::fs::read_dir(server.server_dir().join("bundles"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_held_by_one_replica_fetches_a_bundle_uploaded_through_another_from_s3() {
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let (holder, other, agent_token, mut session) = two_replicas(on_s3(moto, &bucket)).await;

    let bundle = good_bundle("through the other replica");
    let deployed = other.deploy("web", "prod", bundle.clone()).await;
    let mission = session.next_mission().await;
    assert_eq!(mission.mission_id, deployed.mission_id);
    let fetched = fetch_bundle(&holder, &agent_token, &mission.release_id)
        .await
        .expect("the holder serves the bundle the other replica stored");
    assert_eq!(
        launch_core::bundle::sha256_hex(&fetched),
        mission.bundle_sha256
    );
    assert_eq!(fetched, bundle);
    assert_eq!(
        moto.request(
            "HEAD",
            &format!("/{bucket}/bundles/{}.tar.gz", mission.bundle_sha256)
        ),
        Ok(200)
    );
    // Neither replica kept it (or a half upload) on its own disk.
    assert!(
        bundle_files(&holder).is_empty(),
        "{:?}",
        bundle_files(&holder)
    );
    assert!(
        bundle_files(&other).is_empty(),
        "{:?}",
        bundle_files(&other)
    );
    drop(session);
    other.stop().await;
    holder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bundles_in_each_data_dir_another_replicas_agent_is_told_the_bundle_is_missing() {
    let (holder, other, agent_token, mut session) = two_replicas(|_| {}).await;

    let deployed = other.deploy("web", "prod", good_bundle("1")).await;
    let mission = session.next_mission().await;
    assert_eq!(mission.mission_id, deployed.mission_id);
    let refused = fetch_bundle(&holder, &agent_token, &mission.release_id)
        .await
        .expect_err("the holder has no copy of the other replica's bundle");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    for needle in [
        mission.release_id.as_str(),
        mission.bundle_sha256.as_str(),
        "deploy the service again",
        "--bundle-store",
    ] {
        assert!(refused.message().contains(needle), "{needle}: {refused:?}");
    }
    // Positive control: the replica it was uploaded through serves it.
    let fetched = fetch_bundle(&other, &agent_token, &mission.release_id)
        .await
        .expect("the other replica has it in its data dir");
    assert_eq!(
        launch_core::bundle::sha256_hex(&fetched),
        mission.bundle_sha256
    );
    drop(session);
    other.stop().await;
    holder.stop().await;
}

#[tokio::test]
async fn a_server_whose_bucket_does_not_answer_refuses_to_start_naming_it() {
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let dirs = tempfile::tempdir().unwrap();
    let config = |name: &str, bucket: &str| {
        let mut config = TestDb::Sqlite.config(dirs.path().join(name));
        on_s3(moto, bucket)(&mut config);
        config
    };
    let refused = start_replica(config("a", "launch-no-such-bucket"))
        .await
        .map(|_| ())
        .expect_err("a server with a missing bucket must not start");
    assert!(refused.contains("\"launch-no-such-bucket\""), "{refused}");
    assert!(refused.contains(&moto.url()), "{refused}");
    assert!(refused.contains("create the bucket"), "{refused}");

    // Positive control: the same config with a bucket that exists starts.
    let (_, stop, handle) = start_replica(config("b", &bucket))
        .await
        .expect("a server with an existing bucket starts");
    stop.cancel();
    handle.await.unwrap().unwrap();
}
