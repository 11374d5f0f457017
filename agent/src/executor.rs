//! What each mission does, one at a time. Deploy and rollback share one path:
//! fetch the release's bundle (sha256 and size checked) unless its directory
//! already exists, unpack it (confined, atomic), write `.env`, `compose up`,
//! gate on health, and only then flip `current`. A release that fails is
//! replaced by the previous current one (`rolled_back`); with none to go back
//! to, it is taken down (`failed`). Every step can run again after a crash,
//! which is how journalled missions resume when the agent restarts.
//!
//! A mission about a preview (`crate::preview`) runs the same path on the
//! preview's own project and directory, then hands back to the
//! environment's log follower; between missions the executor sweeps the
//! previews the control plane no longer knows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use launch_core::bundle::{self, COMPOSE_FILES, SERVICE_CONFIG_FILE};
use launch_core::redact::Redactor;
use launch_core::service_config::ServiceConfig;
use launch_proto::{FetchBundleRequest, MissionKind, MissionState, MissionUpdate};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::cancels::Cancels;
use crate::compose::Compose;
use crate::config::Config;
use crate::follow::{self, Follower};
use crate::identity;
use crate::journal::{Journal, Outcome, Record};
use crate::release::{self, ServiceDir};
use crate::uplink::{Sink, Uplink};

pub struct Executor {
    config: Arc<Config>,
    journal: Arc<Journal>,
    uplink: Uplink,
    identity: identity::Shared,
    limits: bundle::Limits,
    follower: Option<Follower>,
    /// The compose flavour, found once (probing runs `docker-compose version`,
    /// a Python start-up of about a second) and kept while it works.
    compose: Option<Compose>,
    /// The front door, when it runs (`--ingress on`).
    front: Option<crate::cutover::Front>,
    /// Cancels the control plane asked for (`launch cancel`).
    cancels: Cancels,
    /// The agent's shutdown, for what runs after a cancelled mission.
    shutdown: CancellationToken,
    /// Whether a session is open (a self-upgraded agent confirms then).
    connected: crate::session::Connected,
    /// The preview the current mission is about (`None`: the environment).
    preview: Option<String>,
    /// The previews the control plane knows (from `Welcome`, then kept up
    /// by missions); `None` until told, and nothing is swept before.
    known_previews: Option<std::collections::BTreeSet<String>>,
    previews_told: Option<tokio::sync::watch::Receiver<crate::preview::Known>>,
}

/// How a mission ended.
struct End {
    state: MissionState,
    message: String,
    release_id: String,
    url: String,
}

impl Executor {
    pub fn new(
        config: Arc<Config>,
        journal: Arc<Journal>,
        uplink: Uplink,
        identity: identity::Shared,
        cancels: Cancels,
        connected: crate::session::Connected,
    ) -> Self {
        Executor {
            config,
            journal,
            uplink,
            identity,
            limits: bundle::Limits::default(),
            follower: None,
            compose: None,
            front: None,
            cancels,
            shutdown: CancellationToken::new(),
            connected,
            preview: None,
            known_previews: None,
            previews_told: None,
        }
    }

    /// Sweeps the previews the control plane's lists (from `Welcome`) do not name.
    pub fn with_previews(
        mut self,
        told: tokio::sync::watch::Receiver<crate::preview::Known>,
    ) -> Self {
        self.previews_told = Some(told);
        self
    }

    /// Routes deployed releases through the front door.
    pub fn with_front(mut self, front: crate::cutover::Front) -> Self {
        self.front = Some(front);
        self
    }

    fn project(&self) -> String {
        match &self.preview {
            Some(preview) => crate::preview::project(
                self.config.labels.service.as_str(),
                self.config.labels.environment.as_str(),
                preview,
            ),
            None => format!(
                "{}-{}",
                self.config.labels.service, self.config.labels.environment
            ),
        }
    }

    fn service_dir(&self) -> ServiceDir {
        match &self.preview {
            Some(preview) => crate::preview::dir(&self.config.data_dir, preview),
            None => ServiceDir::new(&self.config.data_dir, self.config.labels.service.as_str()),
        }
    }

    async fn compose(&mut self) -> Result<Compose, crate::compose::Error> {
        if let Some(compose) = &self.compose {
            return Ok(compose.clone());
        }
        let compose = Compose::detect(self.config.command_timeout).await?;
        self.compose = Some(compose.clone());
        Ok(compose)
    }

    pub async fn run(
        mut self,
        mut missions: mpsc::UnboundedReceiver<Record>,
        shutdown: CancellationToken,
    ) {
        self.shutdown = shutdown.clone();
        let unfinished = self.journal.unfinished();
        if unfinished.is_empty() {
            self.follow_current().await;
        }
        for record in unfinished {
            info!(mission_id = %record.mission_id, "resuming a mission accepted before the agent stopped");
            self.execute(record, &shutdown).await;
        }
        let mut watch = crate::watch::Watch::default();
        let mut tick = tokio::time::interval(crate::watch::EVERY);
        let mut sweep = tokio::time::interval(crate::preview::SWEEP_EVERY);
        let mut told = self.previews_told.take();
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.watch(&mut watch).await;
                    continue;
                }
                _ = sweep.tick() => {
                    self.sweep_previews(&shutdown).await;
                    continue;
                }
                told_now = next_told(&mut told) => {
                    match told_now {
                        Some(Some(known)) => self.known_previews = Some(known),
                        Some(None) => {}
                        // The session is gone for good: stop listening.
                        None => told = None,
                    }
                    self.sweep_previews(&shutdown).await;
                    continue;
                }
                record = missions.recv() => match record { Some(record) => record, None => break },
            };
            self.execute(record, &shutdown).await;
            watch.reset();
        }
        if let Some(follower) = self.follower.take() {
            follower.stop().await;
        }
    }

    /// Follows the current release's containers as lines of the newest
    /// finished mission, resuming each from its cursor (agent start, restart
    /// missions).
    async fn follow_current(&mut self) {
        if let Some(follower) = self.follower.take() {
            follower.stop().await;
        }
        let dir = self.service_dir();
        let (Some(current), Some(record)) = (dir.current(), self.journal.latest_finished()) else {
            return;
        };
        // A finished mission's journal entry keeps no secrets: the running
        // release's `.env` says what to redact.
        let secrets = release::secret_values(&dir.release(&current));
        let sink = self.uplink.sink(
            &record.mission_id,
            Arc::new(Redactor::new(secrets.iter().map(String::as_str))),
        );
        self.follower = Some(Follower::start(
            self.project(),
            follow::Start::Now,
            sink,
            self.cursor_file(),
        ));
    }

    /// Looks at the current release between missions (see `watch`).
    async fn watch(&mut self, watch: &mut crate::watch::Watch) {
        let dir = self.service_dir();
        let (Some(current), Some(record)) = (dir.current(), self.journal.latest_finished()) else {
            return;
        };
        let redactor = redactor(&record.secrets);
        if let Some(report) = watch
            .look(&self.project(), &current, &dir.release(&current), &redactor)
            .await
        {
            if report.degraded {
                warn!(release_id = %current, message = %report.message, "the current release is degraded");
            }
            self.uplink.health(report);
        }
    }

    fn cursor_file(&self) -> PathBuf {
        self.service_dir().root().join("follow.cursors")
    }

    async fn execute(&mut self, record: Record, shutdown: &CancellationToken) {
        if let Some(follower) = self.follower.take() {
            follower.stop().await;
        }
        self.preview = (!record.preview.is_empty()).then(|| record.preview.clone());
        let span = info_span!("mission", service = %record.service, environment = %record.environment, preview = %record.preview, mission_id = %record.mission_id, release_id = %record.release_id);
        let sink = self
            .uplink
            .sink(&record.mission_id, redactor(&record.secrets));
        self.uplink.update(MissionUpdate {
            mission_id: record.mission_id.clone(),
            state: MissionState::Running as i32,
            message: format!(
                "{} of {} started on {}",
                record.kind, record.release_id, self.config.hostname
            ),
            release_id: record.release_id.clone(),
            url: String::new(),
        });
        let cancel = self.cancels.start(&record.mission_id, shutdown);
        let end = async {
            match record.kind() {
                _ if self.cancels.requested(&record.mission_id) => End {
                    state: MissionState::Cancelled,
                    message: "cancelled before it started".to_owned(),
                    release_id: self.service_dir().current().unwrap_or_default(),
                    url: String::new(),
                },
                MissionKind::Deploy | MissionKind::Rollback => {
                    self.deploy(&record, &sink, &cancel).await
                }
                MissionKind::Restart => self.restart(&record, &sink, &cancel).await,
                MissionKind::Retire => self.retire(&record, &sink, &cancel).await,
                MissionKind::Upgrade => self.upgrade(&record, &sink, &cancel).await,
                MissionKind::PreviewRemove => self.remove_preview(&record, &sink, &cancel).await,
                MissionKind::Unspecified => End {
                    state: MissionState::Failed,
                    message: format!(
                        "unknown mission kind {:?}: upgrade launch-agent",
                        record.kind
                    ),
                    release_id: String::new(),
                    url: String::new(),
                },
            }
        }
        .instrument(span.clone())
        .await;
        let mut end = end;
        if self.cancels.requested(&record.mission_id) && end.state == MissionState::Failed {
            end.state = MissionState::Cancelled;
        }
        self.cancels.finish(&record.mission_id);
        if shutdown.is_cancelled() && end.state != MissionState::Healthy {
            // Stopped mid-mission: leave it unfinished so the next start resumes it.
            return;
        }
        span.in_scope(
            || info!(state = end.state.label(), message = %end.message, "mission finished"),
        );
        sink.say(&format!("mission {}: {}", end.state.label(), end.message));
        let outcome = Outcome {
            state: end.state.label().to_owned(),
            message: end.message.clone(),
            release_id: end.release_id.clone(),
            url: end.url.clone(),
        };
        if let Err(err) = self.journal.finish(&record.mission_id, outcome) {
            span.in_scope(|| error!(cause = %err, "cannot record the mission's outcome"));
        }
        self.uplink.update(MissionUpdate {
            mission_id: record.mission_id.clone(),
            state: end.state as i32,
            message: end.message,
            release_id: end.release_id,
            url: end.url,
        });
        if self.preview.take().is_some() {
            // Back to the environment: its follower, and the known previews.
            if let Some(follower) = self.follower.take() {
                follower.stop().await;
            }
            if let Some(known) = &mut self.known_previews {
                match record.kind() {
                    MissionKind::PreviewRemove => known.remove(&record.preview),
                    _ => known.insert(record.preview.clone()),
                };
            }
        }
        if record.kind() != MissionKind::Retire && self.follower.is_none() {
            self.follow_current().await;
        }
    }

    fn teardown<'a>(
        &'a self,
        preview: &'a str,
        compose: Option<&'a Compose>,
    ) -> crate::preview::Teardown<'a> {
        crate::preview::Teardown {
            data_dir: &self.config.data_dir,
            service: self.config.labels.service.as_str(),
            environment: self.config.labels.environment.as_str(),
            preview,
            compose,
            front: self.front.as_ref(),
        }
    }

    /// Tears down one preview (see `crate::preview::Teardown`).
    async fn remove_preview(
        &mut self,
        record: &Record,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> End {
        let compose = self.compose().await.ok();
        let teardown = self.teardown(&record.preview, compose.as_ref());
        let (state, message) = match teardown.run(sink, cancel).await {
            Ok(message) => (MissionState::Healthy, message),
            Err(message) => (MissionState::Failed, message),
        };
        End {
            state,
            message,
            release_id: String::new(),
            url: String::new(),
        }
    }

    /// Tears down every preview on disk the control plane does not know.
    async fn sweep_previews(&mut self, shutdown: &CancellationToken) {
        let Some(known) = &self.known_previews else {
            return;
        };
        let strays = crate::preview::strays(&self.config.data_dir, known);
        if strays.is_empty() {
            return;
        }
        let compose = self.compose().await.ok();
        for preview in strays {
            info!(%preview, "sweeping a preview the control plane no longer knows");
            // No mission to log to: the sweep's compose output goes to a
            // queue nobody sends (bounded), its outcome to the agent's log.
            let sink = Uplink::new(64).sink("sweep", redactor(&BTreeMap::new()));
            let teardown = self.teardown(&preview, compose.as_ref());
            match teardown.run(&sink, shutdown).await {
                Ok(message) => info!(%preview, %message, "preview swept"),
                Err(message) => {
                    warn!(%preview, %message, "preview sweep failed; retrying at the next sweep")
                }
            }
        }
    }

    async fn deploy(&mut self, record: &Record, sink: &Sink, cancel: &CancellationToken) -> End {
        let dir = self.service_dir();
        let previous = dir.current().filter(|id| *id != record.release_id);
        // A failed deploy leaves running what ran before it (nothing, for a
        // first deploy): never the failed release.
        let running = previous.clone().unwrap_or_default();
        let failed = |message: String| End {
            state: MissionState::Failed,
            message,
            release_id: running.clone(),
            url: String::new(),
        };
        let compose = match self.compose().await {
            Ok(compose) => compose,
            Err(err) => return failed(err.to_string()),
        };
        if let Err(message) = self.ensure_release(record, &dir, sink).await {
            return failed(message);
        }
        match self
            .bring_up(&compose, record, &record.release_id, sink, cancel, true)
            .await
        {
            Ok((url, follower)) => {
                self.follower = Some(follower);
                if let Err(err) = dir.set_current(&record.release_id) {
                    return failed(format!(
                        "release is healthy but `current` could not be updated: {err}"
                    ));
                }
                if let Err(err) = dir.prune(&record.release_id) {
                    sink.say(&format!("could not prune old releases: {err}"));
                }
                End {
                    state: MissionState::Healthy,
                    message: format!("{} is healthy", record.release_id),
                    release_id: record.release_id.clone(),
                    url,
                }
            }
            Err(reason) if self.cancels.requested(&record.mission_id) => {
                self.after_cancel(&compose, record, previous, &reason, sink)
                    .await
            }
            Err(reason) if cancel.is_cancelled() => failed(reason),
            Err(reason) => match previous {
                Some(previous) => {
                    sink.say(&format!(
                        "release {} failed: {reason}; rolling back to {previous}",
                        record.release_id
                    ));
                    match self
                        .bring_up(&compose, record, &previous, sink, cancel, false)
                        .await
                    {
                        Ok((url, follower)) => {
                            self.follower = Some(follower);
                            End {
                                state: MissionState::RolledBack,
                                message: format!(
                                    "release {} failed ({reason}); rolled back to {previous}",
                                    record.release_id
                                ),
                                release_id: previous,
                                url,
                            }
                        }
                        Err(again) => failed(format!(
                            "release {} failed ({reason}) and rolling back to {previous} failed too ({again})",
                            record.release_id
                        )),
                    }
                }
                None => {
                    sink.say(&format!("release {} failed: {reason}; no earlier release to go back to, taking it down", record.release_id));
                    let _ = self
                        .take_down(
                            &compose,
                            &record.release_id,
                            sink,
                            &CancellationToken::new(),
                        )
                        .await;
                    failed(format!("release {} failed: {reason}", record.release_id))
                }
            },
        }
    }

    /// A deploy cancelled by request: the release that ran before it is
    /// brought back (the new one may have replaced its containers), or, with
    /// none, the new one is taken down.
    async fn after_cancel(
        &mut self,
        compose: &Compose,
        record: &Record,
        previous: Option<String>,
        reason: &str,
        sink: &Sink,
    ) -> End {
        let release_id = &record.release_id;
        let Some(previous) = previous else {
            sink.say(&format!(
                "deploy of {release_id} cancelled ({reason}); nothing ran before it, taking it down"
            ));
            let _ = self
                .take_down(compose, release_id, sink, &self.shutdown.child_token())
                .await;
            return End {
                state: MissionState::Cancelled,
                message: format!("deploy of {release_id} cancelled; nothing runs"),
                release_id: String::new(),
                url: String::new(),
            };
        };
        sink.say(&format!(
            "deploy of {release_id} cancelled ({reason}); bringing back {previous}"
        ));
        let cancel = self.shutdown.child_token();
        match self
            .bring_up(compose, record, &previous, sink, &cancel, false)
            .await
        {
            Ok((url, follower)) => {
                self.follower = Some(follower);
                End {
                    state: MissionState::Cancelled,
                    message: format!("deploy of {release_id} cancelled; {previous} serves"),
                    release_id: previous,
                    url,
                }
            }
            Err(again) => End {
                state: MissionState::Failed,
                message: format!(
                    "deploy of {release_id} cancelled, and bringing back {previous} failed: {again}"
                ),
                release_id: String::new(),
                url: String::new(),
            },
        }
    }

    /// `compose up` a release and gate it. When healthy: its URL and the
    /// follower already reading its containers' output, which goes on as the
    /// runtime log (handing it over leaves no gap in which lines are lost).
    async fn bring_up(
        &mut self,
        compose: &Compose,
        record: &Record,
        release_id: &str,
        sink: &Sink,
        cancel: &CancellationToken,
        new: bool,
    ) -> Result<(String, Follower), String> {
        let release_dir = self.service_dir().release(release_id);
        let file = compose_file(&release_dir).ok_or_else(|| {
            format!(
                "release {release_id} has no compose file (one of {})",
                COMPOSE_FILES.join(", ")
            )
        })?;
        let config = service_config(&release_dir)?;
        let vars = release::env_vars(&release_dir, &config.env, &record.secrets);
        let env = release::env_file(
            &vars,
            compose.flavor,
            &record.service,
            &record.environment,
            release_id,
        );
        release::write_env(&release_dir, &env).map_err(|e| format!("cannot write .env: {e}"))?;
        let vars = release::read_env(&release_dir);
        let one_shots = crate::policy::enforce(&release_dir, &file, &vars, &record.allowances)?;
        sink.say(&format!(
            "starting {} release {release_id}",
            if new { "new" } else { "previous" }
        ));
        let started = follow::Start::now();
        let project = self.project();
        let release = crate::cutover::Release {
            compose,
            dir: &release_dir,
            file: &file,
            project: &project,
            release_id,
            config: &config,
            mission_hosts: &record.host_names,
            preview: self.preview.as_deref(),
        };
        let front = self.front.as_ref();
        let plan = crate::cutover::Plan::up(front, &release, sink, cancel).await?;
        let mut gate_config = plan.gate_config(&config);
        if self.preview.is_some() {
            crate::preview::limit(&project, record.preview_limits(), sink).await?;
            // A preview publishes no host port of its own to probe: the
            // front door's check of its container address is its probe.
            gate_config.health.path = None;
        }
        // What the containers print from `up` on goes into the mission log;
        // once healthy this follower carries on as the runtime log.
        let follower = Follower::start(self.project(), started, sink.clone(), self.cursor_file());
        let gated =
            crate::health::gate_with(&project, &gate_config, &one_shots, sink, cancel).await;
        if let Err(reason) = gated {
            plan.abandon(&project, sink).await;
            follower.stop().await;
            return Err(reason);
        }
        sink.say(&format!("release {release_id} passed the health gate"));
        let routed = match plan.finish(front, &release, sink, cancel).await {
            Ok(routed) => routed,
            Err(reason) => {
                plan.abandon(&project, sink).await;
                follower.stop().await;
                return Err(reason);
            }
        };
        let url = match routed {
            Some(url) => url,
            // `port` is the environment's host port, never a preview's address.
            None if self.preview.is_some() => String::new(),
            None => {
                crate::service_url::unrouted(&self.config, &record.host_address, config.port).await
            }
        };
        Ok((url, follower))
    }

    /// `compose down --remove-orphans` for a release (nothing if it has no compose file).
    async fn take_down(
        &self,
        compose: &Compose,
        release_id: &str,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Result<(), crate::compose::Error> {
        let release_dir = self.service_dir().release(release_id);
        let Some(file) = compose_file(&release_dir) else {
            return Ok(());
        };
        compose
            .run(
                &release_dir,
                &file,
                &self.project(),
                &["down", "--remove-orphans"],
                sink,
                cancel,
            )
            .await
    }

    /// Makes sure `releases/<id>/` holds the unpacked bundle.
    async fn ensure_release(
        &self,
        record: &Record,
        dir: &ServiceDir,
        sink: &Sink,
    ) -> Result<(), String> {
        let release_dir = dir.release(&record.release_id);
        if release_dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(dir.releases())
            .map_err(|e| format!("cannot create {}: {e}", dir.releases().display()))?;
        let limits = crate::limits::for_mission(&self.limits, &self.config, record);
        if record.bundle_size > limits.max_compressed_bytes {
            return Err(crate::limits::too_large(
                record.bundle_size,
                &limits,
                &self.config,
            ));
        }
        let download = dir.root().join(format!(".{}.tar.gz", record.release_id));
        sink.say(&format!(
            "fetching bundle {} ({} bytes)",
            &record.bundle_sha256[..record.bundle_sha256.len().min(12)],
            record.bundle_size
        ));
        let result = self.fetch(record, &download).await;
        let result = match result {
            Ok(()) => {
                let file_path = download.clone();
                let target = release_dir.clone();
                tokio::task::spawn_blocking(move || {
                    let file = std::fs::File::open(&file_path).map_err(|e| e.to_string())?;
                    bundle::unpack(std::io::BufReader::new(file), &target, &limits)
                        .map_err(|e| e.to_string())?;
                    release::keep_bundle_env(&target)
                        .map_err(|e| format!("cannot keep the bundle's .env: {e}"))
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            }
            Err(err) => Err(err),
        };
        let _ = std::fs::remove_file(&download);
        result
    }

    async fn fetch(&self, record: &Record, path: &Path) -> Result<(), String> {
        let identity = self
            .identity
            .get()
            .ok_or("the agent is not registered yet")?;
        let channel = identity::channel(&self.config.control_urls.current())
            .await
            .map_err(|e| e.to_string())?;
        let mut client = identity::client(channel, &identity.token).map_err(|e| e.to_string())?;
        let mut chunks = client
            .fetch_bundle(FetchBundleRequest {
                release_id: record.release_id.clone(),
            })
            .await
            .map_err(|s| format!("cannot fetch the bundle: {}", s.message()))?
            .into_inner();
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = chunks
            .message()
            .await
            .map_err(|s| format!("bundle download broke: {}", s.message()))?
        {
            size += chunk.data.len() as u64;
            if size > record.bundle_size.max(1)
                || size
                    > crate::limits::for_mission(&self.limits, &self.config, record)
                        .max_compressed_bytes
            {
                return Err(format!(
                    "bundle is larger than the {} bytes announced",
                    record.bundle_size
                ));
            }
            hasher.update(&chunk.data);
            file.write_all(&chunk.data)
                .await
                .map_err(|e| e.to_string())?;
        }
        file.sync_all().await.map_err(|e| e.to_string())?;
        let sha = hex::encode(hasher.finalize());
        if sha != record.bundle_sha256 {
            return Err(format!(
                "bundle sha256 is {sha}, expected {}: refusing it",
                record.bundle_sha256
            ));
        }
        Ok(())
    }

    async fn restart(&mut self, record: &Record, sink: &Sink, cancel: &CancellationToken) -> End {
        let dir = self.service_dir();
        let end = |state, message: String, url| End {
            state,
            message,
            release_id: dir.current().unwrap_or_default(),
            url,
        };
        let Some(current) = dir.current() else {
            return end(
                MissionState::Failed,
                "nothing is deployed here to restart".into(),
                String::new(),
            );
        };
        let compose = match self.compose().await {
            Ok(compose) => compose,
            Err(err) => return end(MissionState::Failed, err.to_string(), String::new()),
        };
        let release_dir = dir.release(&current);
        let Some(file) = compose_file(&release_dir) else {
            return end(
                MissionState::Failed,
                "the current release has no compose file".into(),
                String::new(),
            );
        };
        if let Err(err) = compose
            .run(
                &release_dir,
                &file,
                &self.project(),
                &["restart"],
                sink,
                cancel,
            )
            .await
        {
            return end(MissionState::Failed, err.to_string(), String::new());
        }
        let config = match service_config(&release_dir) {
            Ok(config) => config,
            Err(err) => return end(MissionState::Failed, err, String::new()),
        };
        match crate::health::gate(&self.project(), &config, sink, cancel).await {
            Ok(()) => {
                let project = self.project();
                let release = crate::cutover::Release {
                    compose: &compose,
                    dir: &release_dir,
                    file: &file,
                    project: &project,
                    release_id: &current,
                    config: &config,
                    mission_hosts: &record.host_names,
                    preview: None,
                };
                let routed =
                    crate::cutover::Plan::reroute(self.front.as_ref(), &release, sink, cancel)
                        .await;
                let routed = match routed {
                    Ok(routed) => routed,
                    Err(reason) => return end(MissionState::Failed, reason, String::new()),
                };
                let url = match routed {
                    Some(url) => url,
                    None => {
                        crate::service_url::unrouted(
                            &self.config,
                            &record.host_address,
                            config.port,
                        )
                        .await
                    }
                };
                end(MissionState::Healthy, format!("{current} restarted"), url)
            }
            Err(reason) => end(MissionState::Failed, reason, String::new()),
        }
    }

    /// Self-upgrade (`upgrade`): the old binary installs the new one and
    /// restarts into it (returning only on failure); the new one, resuming
    /// the mission, confirms once a session is open; an old one restarted by
    /// the watchdog reports the rollback.
    async fn upgrade(&mut self, record: &Record, sink: &Sink, cancel: &CancellationToken) -> End {
        use crate::upgrade::{self, Phase};
        let data_dir = self.config.data_dir.clone();
        let end = |state, message: String| End {
            state,
            message,
            release_id: self.service_dir().current().unwrap_or_default(),
            url: String::new(),
        };
        let marker = match upgrade::marker(&data_dir, &record.mission_id) {
            Ok(marker) => marker,
            Err(err) => {
                return end(
                    MissionState::Failed,
                    format!("cannot read the upgrade marker: {err}"),
                );
            }
        };
        let Some(marker) = marker else {
            let message =
                upgrade::begin(&self.config, &self.identity, record, sink, &self.uplink).await;
            return end(MissionState::Failed, message);
        };
        let window = humantime::format_duration(Duration::from_millis(marker.window_ms));
        let phase = if marker.phase == Phase::Pending {
            tokio::select! {
                _ = cancel.cancelled() => return end(MissionState::Failed, "stopped before the new agent could confirm".into()),
                _ = self.connected.wait() => {}
            }
            upgrade::settle(&data_dir, &record.mission_id, Phase::Confirmed)
        } else {
            Ok(Some(marker.phase))
        };
        let _ = upgrade::clear(&data_dir);
        match phase {
            Ok(Some(Phase::Confirmed)) => end(
                MissionState::Healthy,
                format!(
                    "launch-agent {} replaced {} and reconnected (sha256 {}…); the previous binary is kept as {}",
                    if marker.to_version.is_empty() {
                        "(version unknown)"
                    } else {
                        &marker.to_version
                    },
                    marker.from_version,
                    &marker.to_sha256[..12.min(marker.to_sha256.len())],
                    marker.old.display()
                ),
            ),
            Ok(_) => end(
                MissionState::Failed,
                format!(
                    "the new launch-agent did not reconnect within {window}: the watchdog put {} back ({}); see {}",
                    marker.from_version,
                    marker.old.display(),
                    upgrade::log_path(&data_dir).display()
                ),
            ),
            Err(err) => end(
                MissionState::Failed,
                format!("cannot settle the upgrade: {err}"),
            ),
        }
    }

    async fn retire(&mut self, _record: &Record, sink: &Sink, cancel: &CancellationToken) -> End {
        let dir = self.service_dir();
        let done = |state, message: String| End {
            state,
            message,
            release_id: String::new(),
            url: String::new(),
        };
        if let Some(current) = dir.current() {
            let compose = match self.compose().await {
                Ok(compose) => compose,
                Err(err) => return done(MissionState::Failed, err.to_string()),
            };
            if let Err(err) = self.take_down(&compose, &current, sink, cancel).await {
                return done(MissionState::Failed, err.to_string());
            }
        }
        // The service's previews go with it.
        let compose = self.compose().await.ok();
        for preview in crate::preview::on_disk(&self.config.data_dir) {
            let teardown = self.teardown(&preview, compose.as_ref());
            if let Err(err) = teardown.run(sink, cancel).await {
                return done(MissionState::Failed, err);
            }
        }
        // Every route left is the service's own (its previews' went with
        // their teardowns), keyed by the compose service it routes to.
        if let Some(front) = &self.front
            && let Err(err) = front.router.remove_matching(|_| true)
        {
            sink.say(&format!("could not remove the service's routes: {err}"));
        }
        match std::fs::remove_dir_all(dir.root()) {
            Ok(()) => done(MissionState::Healthy, "retired: containers removed".into()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => done(
                MissionState::Healthy,
                "retired: nothing was deployed".into(),
            ),
            Err(err) => done(
                MissionState::Failed,
                format!(
                    "containers removed but {} could not be deleted: {err}",
                    dir.root().display()
                ),
            ),
        }
    }
}

/// The next list of previews the session hears (`None`: the session's
/// sender is gone); pends forever without a receiver.
async fn next_told(
    told: &mut Option<tokio::sync::watch::Receiver<crate::preview::Known>>,
) -> Option<crate::preview::Known> {
    let Some(rx) = told else {
        return std::future::pending().await;
    };
    rx.changed().await.ok()?;
    Some(rx.borrow_and_update().clone())
}

fn redactor(secrets: &BTreeMap<String, String>) -> Arc<Redactor> {
    Arc::new(Redactor::new(secrets.values().map(String::as_str)))
}

pub(crate) fn compose_file(release_dir: &Path) -> Option<String> {
    COMPOSE_FILES
        .iter()
        .find(|f| release_dir.join(f).is_file())
        .map(|f| f.to_string())
}

fn service_config(release_dir: &Path) -> Result<ServiceConfig, String> {
    let path: PathBuf = release_dir.join(SERVICE_CONFIG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            ServiceConfig::parse(&text, Path::new(SERVICE_CONFIG_FILE)).map_err(|e| e.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ServiceConfig::default()),
        Err(e) => Err(format!("cannot read {SERVICE_CONFIG_FILE}: {e}")),
    }
}
