//! The store's write path under concurrency: every write goes through one
//! writer (SQLite: a pool of one connection; PostgreSQL: the shared pool),
//! so many deploys recorded at once must each land once, be read back as
//! `record_deploy` returned them, and move on to `dispatched`, on both
//! engines, without any writer waiting for itself.

use super::*;

/// Deploys recorded at once: enough to queue many writers behind one.
const DEPLOYS: usize = 40;

fn new_deploy(i: usize) -> store::NewDeploy {
    store::NewDeploy {
        service: format!("svc{i}"),
        environment: "prod".to_owned(),
        git_ref: format!("ref{i}"),
        bundle_sha256: format!("{i:064x}"),
        bundle_size: 100 + i as i64,
        secrets: vec![(format!("KEY{i}"), vec![1; 12], vec![2; 20])],
        release_id: format!("r-{i:04}"),
        mission_id: format!("m-{i:04}"),
        source: None,
        preview: String::new(),
        tags: vec![("team".to_owned(), format!("t{i}"))],
        // Every other deploy as when its agent holds a session here.
        dispatch_to: (i % 2 == 1).then(|| format!("a{i}")),
    }
}

on_both_engines! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploys_are_each_stored_as_returned_then_dispatched(db) {
    let dir = tempfile::tempdir().unwrap();
    let url = match &db {
        TestDb::Sqlite => format!("sqlite://{}/writes.db", dir.path().display()),
        TestDb::Postgres(url) => url.clone(),
    };
    let store = store::Store::open(&url).await.unwrap();
    let writers: Vec<_> = (0..DEPLOYS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let returned = store.record_deploy(&new_deploy(i)).await?.mission;
                // A read between two writes, as a dispatch by the wake-up does.
                let stored = store.mission(&returned.id).await?;
                if returned.state == MissionState::Queued {
                    store.mark_dispatched(&returned.id, &format!("a{i}")).await?;
                }
                Ok::<_, sqlx::Error>((returned, stored))
            })
        })
        .collect();
    let finished = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(writers))
        .await
        .expect("every writer finished within 60 s (a writer waiting for itself would hang here)");
    for (i, writer) in finished.into_iter().enumerate() {
        let (returned, stored) = writer.unwrap().unwrap_or_else(|err| panic!("deploy {i}: {err}"));
        let stored = stored.unwrap_or_else(|| panic!("mission of deploy {i} not stored"));
        assert_eq!(format!("{returned:?}"), format!("{stored:?}"), "deploy {i}");
        let recorded = if i % 2 == 1 { MissionState::Dispatched } else { MissionState::Queued };
        assert_eq!(returned.state, recorded, "deploy {i}");
        let release = store.release(&returned.release_id).await.unwrap().unwrap();
        assert_eq!(release.mission_id, returned.id);
        assert_eq!(store.secrets(&returned.service, "prod").await.unwrap().len(), 1);
    }
    for i in 0..DEPLOYS {
        let mission = store.mission(&format!("m-{i:04}")).await.unwrap().unwrap();
        assert_eq!(mission.state, MissionState::Dispatched, "mission {i}");
        assert_eq!(mission.agent_id, format!("a{i}"));
    }
    assert_eq!(store.services().await.unwrap().len(), DEPLOYS);
    store.close().await;
}
}
