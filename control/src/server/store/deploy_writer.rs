//! Concurrent deploys recorded together on SQLite (group commit). SQLite
//! takes one writer at a time, so each deploy's transaction queued on the
//! one writer connection and paid its own BEGIN, statements and COMMIT, each
//! a hand-off to that connection's thread and back. Instead every deploy
//! hands its write to this task, which takes all that are waiting (up to
//! [`MOST_AT_ONCE`]) and records them in one transaction, each deploy's
//! statements one [`super::batch::Batch`]: a hand-off a deploy and one
//! commit for the group. If the group fails, each deploy is recorded
//! alone, so a deploy fails only for its own fault. On PostgreSQL, where writers do not
//! exclude each other, each deploy keeps its own transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::missions::{record_deploys, record_one};
use super::{Engine, NewDeploy, RecordedDeploy, Result};

/// Deploys recorded in one transaction at most.
const MOST_AT_ONCE: usize = 64;

struct Job {
    deploy: NewDeploy,
    done: oneshot::Sender<Result<RecordedDeploy>>,
}

/// The handle deploys send their writes to; the task ends with the last.
#[derive(Clone, Debug)]
pub(super) struct DeployWriter {
    jobs: mpsc::Sender<Job>,
    /// Transactions begun for more than one deploy.
    groups: Arc<AtomicU64>,
}

impl DeployWriter {
    /// Starts the task, writing through `writer` (SQLite's one connection).
    pub fn start(writer: AnyPool) -> Self {
        let (jobs, waiting) = mpsc::channel(4 * MOST_AT_ONCE);
        let groups = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(writer, waiting, groups.clone()));
        DeployWriter { jobs, groups }
    }

    /// Transactions begun for more than one deploy so far.
    pub fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }

    /// Records `deploy` with whichever others are waiting. Once handed
    /// over, the write happens even if the caller stops waiting.
    pub async fn record(&self, deploy: NewDeploy) -> Result<RecordedDeploy> {
        let (done, recorded) = oneshot::channel();
        self.jobs
            .send(Job { deploy, done })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        recorded.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn run(writer: AnyPool, mut waiting: mpsc::Receiver<Job>, groups: Arc<AtomicU64>) {
    let mut group = Vec::with_capacity(MOST_AT_ONCE);
    // Waits for one, then takes every other one waiting, up to the most.
    while waiting.recv_many(&mut group, MOST_AT_ONCE).await > 0 {
        if group.len() > 1 {
            groups.fetch_add(1, Ordering::Relaxed);
        }
        let (deploys, dones): (Vec<NewDeploy>, Vec<_>) =
            group.drain(..).map(|job| (job.deploy, job.done)).unzip();
        match record_deploys(Engine::Sqlite, &writer, &deploys).await {
            Ok(recorded) => {
                for (done, recorded) in dones.into_iter().zip(recorded) {
                    let _ = done.send(Ok(recorded));
                }
            }
            Err(err) if deploys.len() == 1 => {
                if let Some(done) = dones.into_iter().next() {
                    let _ = done.send(Err(err));
                }
            }
            Err(err) => {
                debug!(cause = %err, deploys = deploys.len(), "a group of deploys failed together: recording each alone");
                for (deploy, done) in deploys.iter().zip(dones) {
                    let _ = done.send(record_one(Engine::Sqlite, &writer, deploy).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use launch_proto::MissionState;

    use super::super::Store;
    use super::*;

    fn deploy(service: &str, mission_id: &str) -> NewDeploy {
        NewDeploy {
            service: service.to_owned(),
            environment: "production".to_owned(),
            git_ref: "main".to_owned(),
            bundle_sha256: "ab".repeat(32),
            bundle_size: 100,
            secrets: vec![("API_KEY".to_owned(), vec![1; 12], vec![2; 20])],
            release_id: format!("r-{mission_id}"),
            mission_id: mission_id.to_owned(),
            source: None,
            preview: String::new(),
            tags: vec![("team".to_owned(), "web".to_owned())],
            dispatch_to: (service == "dispatched").then(|| "a-1".to_owned()),
        }
    }

    #[tokio::test]
    async fn concurrent_deploys_are_recorded_together_and_a_bad_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/launch.db", dir.path().display()))
            .await
            .unwrap();
        store
            .record_deploy(&deploy("first", "m-taken"))
            .await
            .unwrap();
        // Sent at once: the writer finds them all waiting. One reuses a
        // mission id, which the database refuses.
        let mut deploys: Vec<NewDeploy> = (0..20)
            .map(|i| {
                deploy(
                    if i % 2 == 0 { "web" } else { "dispatched" },
                    &format!("m-{i}"),
                )
            })
            .collect();
        deploys[7].mission_id = "m-taken".to_owned();
        deploys[7].release_id = "r-other".to_owned();
        let results =
            futures::future::join_all(deploys.iter().map(|d| store.record_deploy(d))).await;

        let groups = store.deploy_writer.as_ref().unwrap().groups();
        assert!(groups >= 1, "no group was written ({groups})");
        for (i, result) in results.iter().enumerate() {
            match (i, result) {
                (7, Err(_)) => {}
                (7, Ok(_)) => panic!("the duplicate mission id was recorded"),
                (_, Err(err)) => panic!("deploy {i} failed with the bad one: {err}"),
                (_, Ok(recorded)) => {
                    let stored = store.mission(&recorded.mission.id).await.unwrap().unwrap();
                    assert_eq!(stored.state, recorded.mission.state);
                    assert_eq!(stored.release_id, deploys[i].release_id);
                }
            }
        }
        let dispatched = results[1].as_ref().unwrap();
        assert_eq!(
            (
                dispatched.mission.state,
                dispatched.mission.agent_id.as_str()
            ),
            (MissionState::Dispatched, "a-1")
        );
        assert_eq!(
            results[0].as_ref().unwrap().mission.state,
            MissionState::Queued
        );
        // The bad deploy left nothing behind: no release of its own.
        assert!(store.release("r-other").await.unwrap().is_none());
        assert_eq!(store.secrets("web", "production").await.unwrap().len(), 1);
    }
}
