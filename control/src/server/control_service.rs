//! The gRPC service the CLI and the Terraform provider talk to. Who may call
//! which RPC is decided before any handler runs, by `authz::Authorize`. The
//! handlers are here, except the two long ones, `deploy` (the upload and its
//! checks) and `follow` (`WatchMission` and `StreamLogs`), and two groups:
//! `services` (a service as the CLI and the provider see it, `ListServices`,
//! `EnsureService`, `RetireService`) and `agents` (agents and join tokens).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use launch_core::names::{EnvironmentName, ServiceName};
use launch_proto::control_service_server::ControlService;
use launch_proto::*;

use super::secrets;
use super::state::{State, internal};
use super::store::{MissionRow, ReleaseRow};
use super::tokens;

pub struct Control {
    state: Arc<State>,
}

impl Control {
    pub fn new(state: Arc<State>) -> Self {
        Control { state }
    }
}

mod agents;
mod deploy;
mod follow;
mod services;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Validated `(service, environment)` of a request.
pub(super) fn target(target: Option<&ServiceRef>) -> Result<(String, String), Status> {
    let target = target.ok_or_else(|| {
        Status::invalid_argument("the request has no target: give a service and an environment")
    })?;
    let service =
        ServiceName::parse(&target.service).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let environment = EnvironmentName::parse(&target.environment)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok((service.to_string(), environment.to_string()))
}

fn service_ref(service: &str, environment: &str) -> ServiceRef {
    ServiceRef {
        service: service.to_owned(),
        environment: environment.to_owned(),
    }
}

pub(super) fn mission_info(m: &MissionRow) -> MissionInfo {
    MissionInfo {
        mission_id: m.id.clone(),
        kind: m.kind as i32,
        target: Some(service_ref(&m.service, &m.environment)),
        release_id: m.release_id.clone(),
        state: m.state as i32,
        message: m.message.clone(),
        url: m.url.clone(),
        agent_id: m.agent_id.clone(),
        created_unix_ms: m.created,
        updated_unix_ms: m.updated,
    }
}

#[tonic::async_trait]
impl ControlService for Control {
    async fn deploy(
        &self,
        request: Request<Streaming<DeployRequest>>,
    ) -> Result<Response<DeployResponse>, Status> {
        self.accept_deploy(request).await
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<MissionRef>, Status> {
        let request = request.into_inner();
        let (service, environment) = target(request.target.as_ref())?;
        let store = &self.state.store;
        let row = store
            .service(&service, &environment)
            .await
            .map_err(internal)?
            .filter(|s| !s.retired)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no service {service} in {environment}: deploy it first with `launch deploy`"
                ))
            })?;
        let releases = store
            .releases(&service, &environment)
            .await
            .map_err(internal)?;
        let chosen: ReleaseRow = if request.to_release_id.is_empty() {
            let current = row.current_release_id.clone().unwrap_or_default();
            releases
                .iter()
                .filter(|r| r.id < current || current.is_empty())
                .filter(|r| r.id != current && r.state == ReleaseState::Healthy)
                .max_by(|a, b| a.id.cmp(&b.id))
                .cloned()
                .ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "no earlier healthy release to roll back to for {service} in {environment}: see `launch releases {service} --env {environment}`"
                    ))
                })?
        } else {
            releases
                .iter()
                .find(|r| r.id == request.to_release_id)
                .cloned()
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "no release {} for {service} in {environment}: see `launch releases {service} --env {environment}`",
                        request.to_release_id
                    ))
                })?
        };
        let mission_id = tokens::new_id("m");
        store
            .insert_mission(
                &mission_id,
                MissionKind::Rollback,
                &service,
                &environment,
                &chosen.id,
            )
            .await
            .map_err(internal)?;
        info!(service = %service, environment = %environment, mission_id = %mission_id, release_id = %chosen.id, "rollback queued");
        let mission = store
            .mission(&mission_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("mission vanished after insert"))?;
        self.state.dispatch(&mission).await?;
        Ok(Response::new(MissionRef {
            mission_id,
            release_id: chosen.id,
        }))
    }

    async fn get_mission(
        &self,
        request: Request<GetMissionRequest>,
    ) -> Result<Response<MissionInfo>, Status> {
        let mission_id = request.into_inner().mission_id;
        let mission = self
            .state
            .store
            .mission(&mission_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no mission {mission_id}")))?;
        Ok(Response::new(mission_info(&mission)))
    }

    type WatchMissionStream = BoxStream<MissionEvent>;

    async fn watch_mission(
        &self,
        request: Request<WatchMissionRequest>,
    ) -> Result<Response<Self::WatchMissionStream>, Status> {
        self.watch(request).await
    }

    type StreamLogsStream = BoxStream<LogEvent>;

    async fn stream_logs(
        &self,
        request: Request<StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        self.logs(request).await
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(StatusResponse {
            services: self.all_services().await?,
            agents: self.all_agents().await?,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        self.services_page(request).await
    }

    async fn ensure_service(
        &self,
        request: Request<EnsureServiceRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        self.ensure(request).await
    }

    async fn retire_service(
        &self,
        request: Request<RetireServiceRequest>,
    ) -> Result<Response<RetireServiceResponse>, Status> {
        self.retire_host_or_service(request).await
    }

    async fn list_releases(
        &self,
        request: Request<ListReleasesRequest>,
    ) -> Result<Response<ListReleasesResponse>, Status> {
        let request = request.into_inner();
        let (service, environment) = target(request.target.as_ref())?;
        let store = &self.state.store;
        let current = store
            .service(&service, &environment)
            .await
            .map_err(internal)?
            .and_then(|s| s.current_release_id)
            .unwrap_or_default();
        let releases = if request.include_retired {
            store.releases_with_retired(&service, &environment).await
        } else {
            store
                .releases(&service, &environment)
                .await
                .map(|rows| rows.into_iter().map(|r| (r, false)).collect())
        };
        let releases = releases
            .map_err(internal)?
            .into_iter()
            .map(|(r, retired)| ReleaseInfo {
                retired,
                current: r.id == current,
                target: Some(service_ref(&r.service, &r.environment)),
                state: r.state as i32,
                git_ref: r.git_ref,
                bundle_sha256: r.bundle_sha256,
                bundle_size: r.bundle_size.max(0) as u64,
                mission_id: r.mission_id,
                created_unix_ms: r.created,
                release_id: r.id,
                ..ReleaseInfo::default()
            })
            .collect::<Vec<_>>();
        let mut releases = releases;
        for release in &mut releases {
            if let Some(source) = store
                .release_source(&release.release_id)
                .await
                .map_err(internal)?
            {
                release.repo = source.repo;
                release.pr = source.pr;
            }
        }
        Ok(Response::new(ListReleasesResponse { releases }))
    }

    async fn list_agents(
        &self,
        _request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        Ok(Response::new(ListAgentsResponse {
            agents: self.all_agents().await?,
            served_version: super::agent_upgrade::served(&self.state)
                .await
                .map(|served| served.version)
                .unwrap_or_default(),
        }))
    }

    async fn revoke_agent(
        &self,
        request: Request<RevokeAgentRequest>,
    ) -> Result<Response<RevokeAgentResponse>, Status> {
        self.revoke_one_agent(request).await
    }

    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        self.mint_join_token(request).await
    }

    async fn revoke_join_token(
        &self,
        request: Request<RevokeJoinTokenRequest>,
    ) -> Result<Response<RevokeJoinTokenResponse>, Status> {
        self.revoke_one_join_token(request).await
    }

    async fn set_secret(
        &self,
        request: Request<SetSecretRequest>,
    ) -> Result<Response<SetSecretResponse>, Status> {
        let request = request.into_inner();
        let (service, environment) = target(request.target.as_ref())?;
        if !secrets::valid_key(&request.key) {
            return Err(Status::invalid_argument(format!(
                "secret name {:?} is not valid: use letters, digits and '_', not starting with a digit",
                request.key
            )));
        }
        let store = &self.state.store;
        store
            .ensure_service(&service, &environment)
            .await
            .map_err(internal)?;
        let (nonce, ciphertext) = self.state.secrets.seal(
            &secrets::address(&service, &environment, &request.key),
            &request.value,
        );
        store
            .put_secret(&service, &environment, &request.key, &nonce, &ciphertext)
            .await
            .map_err(internal)?;
        info!(service = %service, environment = %environment, key = %request.key, "secret set");
        Ok(Response::new(SetSecretResponse {}))
    }

    async fn list_secrets(
        &self,
        request: Request<ListSecretsRequest>,
    ) -> Result<Response<ListSecretsResponse>, Status> {
        let (service, environment) = target(request.into_inner().target.as_ref())?;
        let secrets = self
            .state
            .store
            .secrets(&service, &environment)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|s| SecretInfo {
                key: s.key,
                updated_unix_ms: s.updated,
            })
            .collect();
        Ok(Response::new(ListSecretsResponse { secrets }))
    }

    async fn delete_secret(
        &self,
        request: Request<DeleteSecretRequest>,
    ) -> Result<Response<DeleteSecretResponse>, Status> {
        let request = request.into_inner();
        let (service, environment) = target(request.target.as_ref())?;
        if !self
            .state
            .store
            .delete_secret(&service, &environment, &request.key)
            .await
            .map_err(internal)?
        {
            return Err(Status::not_found(format!(
                "no secret {} for {service} in {environment}: see `launch secrets list {service} --env {environment}`",
                request.key
            )));
        }
        info!(service = %service, environment = %environment, key = %request.key, "secret deleted");
        Ok(Response::new(DeleteSecretResponse {}))
    }

    async fn create_api_token(
        &self,
        request: Request<CreateApiTokenRequest>,
    ) -> Result<Response<CreateApiTokenResponse>, Status> {
        super::api_tokens::create(&self.state, request).await
    }

    async fn list_api_tokens(
        &self,
        _request: Request<ListApiTokensRequest>,
    ) -> Result<Response<ListApiTokensResponse>, Status> {
        super::api_tokens::list(&self.state).await
    }

    async fn revoke_api_token(
        &self,
        request: Request<RevokeApiTokenRequest>,
    ) -> Result<Response<RevokeApiTokenResponse>, Status> {
        super::api_tokens::revoke(&self.state, request).await
    }

    async fn allow_service(
        &self,
        request: Request<AllowServiceRequest>,
    ) -> Result<Response<AllowancesResponse>, Status> {
        self.change_allowances(request, super::allowances::Change::Allow)
            .await
    }

    async fn disallow_service(
        &self,
        request: Request<AllowServiceRequest>,
    ) -> Result<Response<AllowancesResponse>, Status> {
        self.change_allowances(request, super::allowances::Change::Disallow)
            .await
    }

    async fn list_allowances(
        &self,
        request: Request<ListAllowancesRequest>,
    ) -> Result<Response<AllowancesResponse>, Status> {
        let (service, environment) = target(request.into_inner().target.as_ref())?;
        super::allowances::list(&self.state, &service, &environment)
            .await
            .map(Response::new)
    }

    async fn set_service_tags(
        &self,
        request: Request<SetServiceTagsRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let row = super::tags::set(&self.state, request.get_ref()).await?;
        self.service_info(&row).await.map(Response::new)
    }

    async fn tag_vocabulary(
        &self,
        request: Request<TagVocabularyRequest>,
    ) -> Result<Response<TagVocabularyResponse>, Status> {
        super::tags::vocabulary(&self.state, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn get_service(
        &self,
        request: Request<GetServiceRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let (service, environment) = target(request.into_inner().target.as_ref())?;
        let row = self
            .state
            .store
            .service(&service, &environment)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no service {service} in {environment}: see `launch services`"
                ))
            })?;
        self.service_info(&row).await.map(Response::new)
    }

    async fn list_previews(
        &self,
        request: Request<ListPreviewsRequest>,
    ) -> Result<Response<ListPreviewsResponse>, Status> {
        super::previews::list(&self.state, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn restart(
        &self,
        request: Request<RestartRequest>,
    ) -> Result<Response<MissionRef>, Status> {
        let target = request.into_inner().target;
        super::missions::queue(&self.state, MissionKind::Restart, target.as_ref())
            .await
            .map(Response::new)
    }

    async fn remove_preview(
        &self,
        request: Request<RemovePreviewRequest>,
    ) -> Result<Response<RemovePreviewResponse>, Status> {
        super::previews::remove(&self.state, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn retire(
        &self,
        request: Request<RetireRequest>,
    ) -> Result<Response<MissionRef>, Status> {
        let target = request.into_inner().target;
        super::missions::queue(&self.state, MissionKind::Retire, target.as_ref())
            .await
            .map(Response::new)
    }

    async fn cancel_mission(
        &self,
        request: Request<CancelMissionRequest>,
    ) -> Result<Response<MissionInfo>, Status> {
        super::missions::cancel(&self.state, &request.into_inner().mission_id)
            .await
            .map(Response::new)
    }

    async fn upgrade_agents(
        &self,
        request: Request<UpgradeAgentsRequest>,
    ) -> Result<Response<UpgradeAgentsResponse>, Status> {
        super::agent_upgrade::upgrade(&self.state, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        super::fleet::who_am_i(request.extensions().get::<super::authz::Caller>())
            .map(Response::new)
    }

    type WatchEventsStream = super::fleet::FleetStream;

    async fn watch_events(
        &self,
        _request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Ok(Response::new(super::fleet::watch(self.state.clone())))
    }
}

impl Control {
    /// Grants or revokes host-policy allowances (the `authz` layer has
    /// already checked the caller is an admin).
    async fn change_allowances(
        &self,
        request: Request<AllowServiceRequest>,
        change: super::allowances::Change,
    ) -> Result<Response<AllowancesResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let (service, environment) = target(request.target.as_ref())?;
        super::allowances::change(
            &self.state,
            &metadata,
            &service,
            &environment,
            &request,
            change,
        )
        .await
        .map(Response::new)
    }
}
