//! Missions on disk. A mission is written here before it is acknowledged, and
//! its final update when it ends, so a restarted agent resumes what it had
//! accepted, never runs a mission id twice, and can tell the control plane an
//! outcome it may have missed. One 0600 JSON file per mission; it holds the
//! mission's secrets only while the mission may still run (a resumed deploy
//! writes `.env` from them) and drops them when the mission finishes, so no
//! secret outlives its use here. Finished ones beyond the newest
//! [`KEEP_FINISHED`] are pruned.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use launch_proto::{Mission, MissionKind, MissionState, MissionUpdate};
use serde::{Deserialize, Serialize};

use launch_core::private_file;

pub const KEEP_FINISHED: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub mission_id: String,
    pub kind: String,
    pub service: String,
    pub environment: String,
    pub release_id: String,
    pub bundle_sha256: String,
    pub bundle_size: u64,
    pub secrets: BTreeMap<String, String>,
    pub created_unix_ms: i64,
    pub outcome: Option<Outcome>,
    /// Host-policy allowances an admin granted this service (`launch_core::policy`).
    #[serde(default)]
    pub allowances: Vec<String>,
    /// The control plane's bundle limit (0: not sent).
    #[serde(default)]
    pub max_bundle_bytes: u64,
    /// Names the front door routes to the service (from the control plane).
    #[serde(default)]
    pub host_names: Vec<String>,
    /// Upgrade missions: the agent binary to fetch, and its version.
    #[serde(default)]
    pub agent_sha256: String,
    #[serde(default)]
    pub agent_version: String,
    /// The address the provider registered for this host (from the control plane).
    #[serde(default)]
    pub host_address: String,
    /// The preview the mission is about (empty: the environment itself).
    #[serde(default)]
    pub preview: String,
    #[serde(default)]
    pub preview_memory_bytes: u64,
    #[serde(default)]
    pub preview_millicpus: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub state: String,
    pub message: String,
    pub release_id: String,
    pub url: String,
}

impl Record {
    pub fn from_mission(mission: &Mission) -> Self {
        Record {
            mission_id: mission.mission_id.clone(),
            kind: mission.kind().label().to_owned(),
            service: mission.service.clone(),
            environment: mission.environment.clone(),
            release_id: mission.release_id.clone(),
            bundle_sha256: mission.bundle_sha256.clone(),
            bundle_size: mission.bundle_size,
            secrets: mission.secrets.clone().into_iter().collect(),
            created_unix_ms: mission.created_unix_ms,
            outcome: None,
            allowances: mission.allowances.clone(),
            max_bundle_bytes: mission.max_bundle_bytes,
            host_names: mission.host_names.clone(),
            agent_sha256: mission.agent_sha256.clone(),
            agent_version: mission.agent_version.clone(),
            host_address: mission.host_address.clone(),
            preview: mission.preview.clone(),
            preview_memory_bytes: mission.preview_memory_bytes,
            preview_millicpus: mission.preview_millicpus,
        }
    }

    /// What each container of the mission's preview may use.
    pub fn preview_limits(&self) -> crate::preview::Limits {
        crate::preview::Limits {
            memory_bytes: self.preview_memory_bytes,
            millicpus: self.preview_millicpus,
        }
    }

    pub fn kind(&self) -> MissionKind {
        MissionKind::from_label(&self.kind).unwrap_or(MissionKind::Unspecified)
    }

    pub fn final_update(&self) -> Option<MissionUpdate> {
        let outcome = self.outcome.as_ref()?;
        Some(MissionUpdate {
            mission_id: self.mission_id.clone(),
            state: MissionState::from_label(&outcome.state).unwrap_or_default() as i32,
            message: outcome.message.clone(),
            release_id: outcome.release_id.clone(),
            url: outcome.url.clone(),
        })
    }
}

pub struct Journal {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl Journal {
    pub fn open(dir: &Path) -> io::Result<Self> {
        private_file::create_private_dir(dir)?;
        Ok(Journal {
            dir: dir.to_owned(),
            lock: Mutex::new(()),
        })
    }

    fn path(&self, mission_id: &str) -> PathBuf {
        // Mission ids come from the control plane; keep them to one safe file name.
        let safe: String = mission_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    pub fn get(&self, mission_id: &str) -> Option<Record> {
        let text = fs::read_to_string(self.path(mission_id)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, record: &Record) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(record).expect("plain struct");
        private_file::write_private(&self.path(&record.mission_id), &json)
    }

    /// Records a mission; `Ok(false)` if it was already known.
    pub fn record(&self, record: &Record) -> io::Result<bool> {
        let _guard = self.lock.lock().expect("journal lock");
        if self.path(&record.mission_id).exists() {
            return Ok(false);
        }
        self.write(record)?;
        Ok(true)
    }

    /// Stores the final outcome of a mission, drops its secret values (the
    /// release's `.env` has them, and nothing runs the mission again) and
    /// prunes old finished ones.
    pub fn finish(&self, mission_id: &str, outcome: Outcome) -> io::Result<()> {
        let _guard = self.lock.lock().expect("journal lock");
        let Some(mut record) = self.get(mission_id) else {
            return Ok(());
        };
        record.outcome = Some(outcome);
        record.secrets.clear();
        self.write(&record)?;
        self.prune()
    }

    fn all(&self) -> Vec<Record> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut records: Vec<Record> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect();
        records.sort_by(|a, b| {
            (a.created_unix_ms, &a.mission_id).cmp(&(b.created_unix_ms, &b.mission_id))
        });
        records
    }

    /// Missions accepted but not finished, oldest first.
    pub fn unfinished(&self) -> Vec<Record> {
        self.all()
            .into_iter()
            .filter(|r| r.outcome.is_none())
            .collect()
    }

    /// The newest finished mission of the environment (not of a preview),
    /// whose logs the running release continues.
    pub fn latest_finished(&self) -> Option<Record> {
        self.all()
            .into_iter()
            .rev()
            .find(|r| r.outcome.is_some() && r.preview.is_empty())
    }

    fn prune(&self) -> io::Result<()> {
        let finished: Vec<Record> = self
            .all()
            .into_iter()
            .filter(|r| r.outcome.is_some())
            .collect();
        if finished.len() > KEEP_FINISHED {
            for record in &finished[..finished.len() - KEEP_FINISHED] {
                fs::remove_file(self.path(&record.mission_id))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mission(id: &str, created: i64) -> Record {
        Record::from_mission(&Mission {
            mission_id: id.into(),
            kind: MissionKind::Deploy as i32,
            service: "hello".into(),
            environment: "prod".into(),
            release_id: "r-1".into(),
            created_unix_ms: created,
            ..Mission::default()
        })
    }

    fn healthy() -> Outcome {
        Outcome {
            state: "healthy".into(),
            message: String::new(),
            release_id: "r-1".into(),
            url: String::new(),
        }
    }

    #[test]
    fn the_environment_log_continues_its_own_newest_mission_not_a_previews() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let prod = mission("m-1", 1);
        let mut preview = mission("m-2", 2);
        preview.preview = "pr-1".into();
        for record in [&prod, &preview] {
            journal.record(record).unwrap();
            journal.finish(&record.mission_id, healthy()).unwrap();
        }
        assert_eq!(journal.latest_finished().unwrap().mission_id, "m-1");
    }

    #[test]
    fn a_mission_is_recorded_once_and_resumed_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert!(journal.record(&mission("m-2", 2)).unwrap());
        assert!(journal.record(&mission("m-1", 1)).unwrap());
        assert!(
            !journal.record(&mission("m-1", 1)).unwrap(),
            "second record of m-1"
        );
        let ids: Vec<_> = journal
            .unfinished()
            .into_iter()
            .map(|r| r.mission_id)
            .collect();
        assert_eq!(ids, ["m-1", "m-2"]);

        journal.finish("m-1", healthy()).unwrap();
        let reopened = Journal::open(dir.path()).unwrap();
        assert_eq!(reopened.unfinished().len(), 1);
        let update = reopened.get("m-1").unwrap().final_update().unwrap();
        assert_eq!(update.state(), MissionState::Healthy);
        assert_eq!(reopened.latest_finished().unwrap().mission_id, "m-1");
    }

    #[test]
    fn old_finished_missions_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        for i in 0..(KEEP_FINISHED as i64 + 5) {
            let id = format!("m-{i:04}");
            journal.record(&mission(&id, i)).unwrap();
            journal.finish(&id, healthy()).unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), KEEP_FINISHED);
        assert!(journal.get("m-0000").is_none());
    }

    #[test]
    fn a_finished_mission_keeps_no_secret_values_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let mut record = mission("m-1", 1);
        record
            .secrets
            .insert("API_KEY".into(), "sekrit-value-1234".into());
        journal.record(&record).unwrap();
        let file = dir.path().join("m-1.json");
        let on_disk = || fs::read_to_string(&file).unwrap();
        // Positive control: while the mission may still run (and be resumed
        // after a restart), the journal holds what it needs.
        assert!(on_disk().contains("sekrit-value-1234"), "{}", on_disk());
        assert_eq!(
            journal.unfinished()[0].secrets["API_KEY"],
            "sekrit-value-1234"
        );
        journal.finish("m-1", healthy()).unwrap();
        assert!(
            !on_disk().contains("sekrit-value-1234"),
            "a finished mission's journal entry still holds a secret value: {}",
            on_disk()
        );
        assert!(journal.get("m-1").unwrap().final_update().is_some());
    }
}
