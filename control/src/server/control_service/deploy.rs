//! `Deploy`, the careful call: the bundle is streamed to a temp file,
//! size-limited, hash-checked and inspected with `launch_core::bundle` (and
//! its compose checked against what the host runs) before anything is
//! recorded; then it is put in the bundle store, service, secrets, release
//! and mission are written in one transaction — the mission already
//! `dispatched` when its agent holds a session here, so the send needs no
//! second write — and only then is the mission sent, built from what the
//! deploy read (once, for the check and the message both) and wrote,
//! nothing read back. A refusal at any step leaves nothing behind.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, info};

use launch_core::bundle::{self, Limits};
use launch_core::service_config::ServiceConfig;
use launch_proto::*;

use super::super::bundle_store::{Spool, Upload};
use super::super::github::ReportEvent;
use super::super::secrets;
use super::super::state::{Known, internal};
use super::super::store::NewDeploy;
use super::super::store::github::ReleaseSource;
use super::super::tokens;
use super::{Control, target};

/// Where the deploy says its release came from: `repo` checked, `pr` only with a repo.
fn release_source(header: &DeployHeader) -> Result<Option<ReleaseSource>, Status> {
    if header.repo.is_empty() {
        if header.pr != 0 {
            return Err(Status::invalid_argument(
                "a pull request number needs its repository: pass --repo owner/name with --pr",
            ));
        }
        return Ok(None);
    }
    launch_core::repo::validate_repo(&header.repo)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(Some(ReleaseSource {
        repo: header.repo.clone(),
        pr: header.pr,
    }))
}

/// An upload this small (compressed) is inspected on the deploy's own task
/// first, within tighter limits: most bundles are a few KB, and handing
/// one to a blocking thread and back cost more than inspecting it.
const INLINE_BYTES: usize = 64 * 1024;

/// What an inspection on the deploy's task may unpack, at most: a few
/// milliseconds' work however the bundle was made.
const INLINE_UNPACKED_BYTES: u64 = 512 * 1024;
const INLINE_ENTRIES: u64 = 1000;

/// Inspects the upload with `limits`. A small one is tried on this task
/// first within `limits` made tighter, so a bundle accepted there is
/// accepted by `limits` the same; anything else —
/// a larger upload, or one the tight limits or any other check refused —
/// is inspected on a blocking thread with `limits`, whose answer (and
/// refusal message) is the one returned.
async fn inspect(upload: &Upload, limits: Limits) -> Result<bundle::Summary, Status> {
    let tight = Limits {
        max_compressed_bytes: limits.max_compressed_bytes.min(INLINE_BYTES as u64),
        max_unpacked_bytes: limits.max_unpacked_bytes.min(INLINE_UNPACKED_BYTES),
        max_entries: limits.max_entries.min(INLINE_ENTRIES),
    };
    if let Upload::Memory(bytes) = upload
        && bytes.len() <= INLINE_BYTES
        && let Ok(summary) = bundle::inspect(&bytes[..], &tight)
    {
        return Ok(summary);
    }
    let reader = upload.reader().map_err(internal)?;
    tokio::task::spawn_blocking(move || bundle::inspect(reader, &limits))
        .await
        .map_err(internal)?
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

impl Control {
    /// `Deploy`: see the module's comment.
    pub(super) async fn accept_deploy(
        &self,
        request: Request<Streaming<DeployRequest>>,
    ) -> Result<Response<DeployResponse>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(DeployRequest {
                msg: Some(deploy_request::Msg::Header(header)),
            }) => header,
            _ => {
                return Err(Status::invalid_argument(
                    "a deploy stream starts with a header: send DeployHeader first",
                ));
            }
        };
        let (service, environment) = target(header.target.as_ref())?;
        let source = release_source(&header)?;
        if !header.preview.is_empty() {
            super::super::previews::check_deploy(
                &self.state,
                &service,
                &environment,
                &header.preview,
            )
            .await?;
        }
        for key in header.secrets.keys() {
            if !secrets::valid_key(key) {
                return Err(Status::invalid_argument(format!(
                    "secret name {key:?} is not valid: use letters, digits and '_', not starting with a digit"
                )));
            }
        }
        let (upload, sha256, size) = self.receive_bundle(&mut stream, &header).await?;

        let limits = Limits::for_max_bundle_bytes(self.state.max_bundle_bytes);
        let summary = inspect(&upload, limits).await?;
        let config = match &summary.service_config {
            Some(text) => {
                ServiceConfig::parse(text, std::path::Path::new(bundle::SERVICE_CONFIG_FILE))
                    .map_err(|e| Status::invalid_argument(e.to_string()))?
            }
            None => ServiceConfig::default(),
        };
        let secrets_environment =
            super::super::store::previews::secrets_environment(&environment, &header.preview);
        // Read once, before the transaction, for the check and the
        // mission's message both: a secret set by another call while this
        // deploy is recorded reaches the agent with the next mission, as
        // any secret set after a deploy.
        let stored = self
            .state
            .store
            .read_for_deploy(&service, &environment, &secrets_environment)
            .await
            .map_err(internal)?;
        let mut secret_names: BTreeSet<&str> = header.secrets.keys().map(String::as_str).collect();
        secret_names.extend(
            stored
                .secrets
                .iter()
                .chain(&stored.overrides)
                .map(|row| row.key.as_str()),
        );
        super::super::bundle_check::check(
            &summary,
            &config,
            secret_names.into_iter(),
            stored.host_compose.as_deref(),
        )?;
        let put = self.state.bundles.put(upload, &sha256).await.map_err(|err| {
            error!(cause = %err, bundle_sha256 = %sha256, "cannot store a bundle");
            Status::unavailable(format!(
                "the control plane cannot store the bundle in {}: see its log, then deploy again",
                self.state.bundles.describe()
            ))
        })?;
        debug!(bundle_sha256 = %sha256, ?put, "bundle stored");

        let sealed = header
            .secrets
            .iter()
            .map(|(key, value)| {
                let (nonce, ciphertext) = self.state.secrets.seal(
                    &secrets::address(&service, &secrets_environment, key),
                    value,
                );
                (key.clone(), nonce, ciphertext)
            })
            .collect();
        // The agent's session here, if it has one: the mission is recorded
        // as dispatched to it in the deploy's one transaction.
        let session = self.state.hub.session_for(&service, &environment);
        let deploy = NewDeploy {
            service: service.clone(),
            environment: environment.clone(),
            git_ref: header.git_ref.clone(),
            bundle_sha256: sha256.clone(),
            bundle_size: size as i64,
            secrets: sealed,
            release_id: tokens::new_id("r"),
            mission_id: tokens::new_id("m"),
            source,
            preview: header.preview.clone(),
            tags: config.tags.into_iter().collect(),
            dispatch_to: session.as_ref().map(|(agent_id, _)| agent_id.clone()),
        };
        // The agent's secrets, opened before anything is written: those
        // read above, the preview's overrides on the environment's, and
        // this deploy's own on top.
        let mut secrets = self
            .state
            .open_rows(&service, &environment, stored.secrets)?;
        secrets.extend(
            self.state
                .open_rows(&service, &secrets_environment, stored.overrides)?,
        );
        secrets.extend(header.secrets);
        let response = DeployResponse {
            mission_id: deploy.mission_id.clone(),
            release_id: deploy.release_id.clone(),
        };
        // Recorded and sent by a task of its own, which a client hanging up
        // does not cancel: a mission recorded `dispatched` is always sent.
        let state = self.state.clone();
        tokio::spawn(async move {
            let recorded = state.store.record_deploy(&deploy).await.map_err(internal)?;
            state.hub.deploys_total.fetch_add(1, Ordering::Relaxed);
            info!(service = %service, environment = %environment, mission_id = %deploy.mission_id, release_id = %deploy.release_id, bundle_sha256 = %sha256, bundle_size = size, agent_id = deploy.dispatch_to.as_deref().unwrap_or(""), "deploy queued");
            let known = Known {
                bundle_sha256: sha256,
                bundle_size: size,
                fqdn: recorded.fqdn,
                host_address: recorded.host_address,
                secrets,
                allowances: stored.allowances,
            };
            state
                .send_mission(&recorded.mission, session, Some(&known))
                .await?;
            state.github.send(ReportEvent::Mission(deploy.mission_id));
            Ok::<_, Status>(())
        })
        .await
        .map_err(internal)??;
        Ok(Response::new(response))
    }

    /// Receives the bundle (in memory, or in a temp file in the bundle
    /// store's staging dir once it is large), checking size and hash;
    /// returns it, its sha256 and size.
    async fn receive_bundle(
        &self,
        stream: &mut Streaming<DeployRequest>,
        header: &DeployHeader,
    ) -> Result<(Upload, String, u64), Status> {
        let limit = self.state.max_bundle_bytes;
        let mut spool = Spool::default();
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(message) = stream.message().await? {
            let chunk = match message.msg {
                Some(deploy_request::Msg::Chunk(chunk)) => chunk,
                Some(deploy_request::Msg::Header(_)) => {
                    return Err(Status::invalid_argument(
                        "a deploy stream carries one header, first: send the bundle as chunks after it",
                    ));
                }
                None => continue,
            };
            size += chunk.len() as u64;
            if size > limit {
                continue; // keep counting to report the real size
            }
            hasher.update(&chunk);
            spool
                .write(&chunk, self.state.bundles.staging_dir())
                .await
                .map_err(internal)?;
        }
        if size > limit {
            return Err(Status::invalid_argument(format!(
                "bundle is {size} bytes, over the limit of {limit}: move large files out of the service directory (or add them to .dockerignore-style exclusions) or start the server with a larger --max-bundle-bytes"
            )));
        }
        if size == 0 {
            return Err(Status::invalid_argument(
                "the deploy carried no bundle: send the tar.gz as chunks after the header",
            ));
        }
        // Synced to disk only if the store keeps it (`BundleStore::put`).
        let upload = spool.finish().await.map_err(internal)?;
        let sha256 = hex::encode(hasher.finalize());
        if !header.bundle_sha256.is_empty() && !header.bundle_sha256.eq_ignore_ascii_case(&sha256) {
            return Err(Status::invalid_argument(format!(
                "bundle sha256 is {sha256} but the header says {}: the upload was corrupted, deploy again",
                header.bundle_sha256
            )));
        }
        Ok((upload, sha256, size))
    }
}
