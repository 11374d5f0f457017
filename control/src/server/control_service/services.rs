//! The services as the CLI and the provider see them: `ServiceInfo` put
//! together from the store's rows and details (its host's compose among
//! them), a page of `ListServices`, `EnsureService` (the provider's create
//! and update) and `RetireService`, of one host or of the whole service.

use tonic::{Request, Response, Status};
use tracing::info;

use launch_proto::*;

use super::super::state::internal;
use super::super::store::{ServiceDetails, ServiceRow, TagSource};
use super::super::{front_door, tags};
use super::{Control, service_ref, target};

/// `EnsureService.host_address`: an IP address or a DNS name (`""`: none).
fn host_address(given: &str) -> Result<String, Status> {
    let address = given.trim().trim_end_matches('.').to_ascii_lowercase();
    if address.is_empty()
        || address.parse::<std::net::IpAddr>().is_ok()
        || launch_core::service_config::is_host_name(&address)
    {
        Ok(address)
    } else {
        Err(Status::invalid_argument(format!(
            "host_address {given:?} is neither an IP address nor a DNS name: give the address the host is reached at, e.g. 203.0.113.7"
        )))
    }
}

impl Control {
    /// One service as `GetService` and the answers of writes show it: its
    /// details read a query per table.
    pub(super) async fn service_info(&self, row: &ServiceRow) -> Result<ServiceInfo, Status> {
        let details = self
            .state
            .store
            .service_details(row)
            .await
            .map_err(internal)?;
        Ok(self.info_of(row, details))
    }

    /// `row` with its details.
    pub(super) fn info_of(&self, row: &ServiceRow, details: ServiceDetails) -> ServiceInfo {
        let agents_connected = details.agents_connected as u32;
        // A report on an older release says nothing about the current one.
        let health = details
            .health
            .filter(|h| h.degraded && Some(&h.release_id) == row.current_release_id.as_ref())
            .map(|h| format!("degraded: {}", h.message))
            .unwrap_or_default();
        let routes = details
            .front_door_report
            .map(|report| front_door::decode_routes(&report))
            .unwrap_or_default();
        let current_release = details.current_release;
        let newest = details.newest_mission;
        ServiceInfo {
            tags: details.tags.into_iter().map(tags::service_tag).collect(),
            current_release_git_ref: current_release
                .as_ref()
                .map(|r| r.git_ref.clone())
                .unwrap_or_default(),
            current_release_unix_ms: current_release.map(|r| r.created).unwrap_or_default(),
            previews: details.previews as u32,
            health,
            routes,
            target: Some(service_ref(&row.service, &row.environment)),
            current_release_id: row.current_release_id.clone().unwrap_or_default(),
            last_mission_state: newest.as_ref().map(|m| m.state as i32).unwrap_or_default(),
            last_mission_id: newest.map(|m| m.id).unwrap_or_default(),
            url: details.newest_url.unwrap_or_default(),
            agents_connected,
            note: row.note.clone(),
            created_unix_ms: row.created,
            created: false,
            host_compose: details.host_compose.unwrap_or_default(),
            host_address: details.host_address,
            fqdn: details.fqdn,
        }
    }

    pub(super) async fn all_services(&self) -> Result<Vec<ServiceInfo>, Status> {
        let rows = self.state.store.services().await.map_err(internal)?;
        self.service_infos(&rows).await
    }

    /// Every service of `rows` (fresh from the store), each table read once
    /// for all of them.
    async fn service_infos(&self, rows: &[ServiceRow]) -> Result<Vec<ServiceInfo>, Status> {
        let details = self
            .state
            .store
            .services_details(rows)
            .await
            .map_err(internal)?;
        Ok(rows
            .iter()
            .zip(details)
            .map(|(row, details)| self.info_of(row, details))
            .collect())
    }

    /// `ListServices`: one page of the services the filters and the search
    /// match, and how many match in all.
    pub(super) async fn services_page(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let request = request.into_inner();
        let store = &self.state.store;
        // The filters and the search are evaluated by the store, which reads
        // only the page's rows (and a count); then only their tags.
        let filters = tags::filters(&request.tags)?;
        let search = tags::Search::parse(&request.search);
        let limit = (request.limit > 0).then_some(request.limit);
        let (page, matched) = store
            .services_found(&filters, search.terms(), request.offset, limit)
            .await
            .map_err(internal)?;
        let matched = u32::try_from(matched).unwrap_or(u32::MAX);
        let tags = store.tags_of_services(&page).await.map_err(internal)?;
        let details = self
            .state
            .store
            .services_details_with(&page, tags)
            .await
            .map_err(internal)?;
        Ok(Response::new(ListServicesResponse {
            services: page
                .iter()
                .zip(details)
                .map(|(row, details)| self.info_of(row, details))
                .collect(),
            matched,
        }))
    }

    /// `EnsureService`, the provider's create and update: the service created
    /// if missing, then its tags from Terraform (when it says to replace them),
    /// its public name and its host's address set.
    pub(super) async fn ensure(
        &self,
        request: Request<EnsureServiceRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let request = request.into_inner();
        let (service, environment) = target(request.target.as_ref())?;
        let fqdn = request
            .fqdn
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !fqdn.is_empty() && !launch_core::service_config::is_host_name(&fqdn) {
            return Err(Status::invalid_argument(format!(
                "fqdn {:?} is not a DNS name: give the service's public name, e.g. hello.example.com",
                request.fqdn
            )));
        }
        let address = host_address(&request.host_address)?;
        let tags = tags::checked(&request.tags)?;
        let store = &self.state.store;
        let (row, created) = store
            .ensure_service_created(&service, &environment)
            .await
            .map_err(internal)?;
        if request.replace_tags {
            store
                .replace_source_tags(&service, &environment, TagSource::Terraform, &tags)
                .await
                .map_err(internal)?;
        }
        store
            .set_fqdn(&service, &environment, &fqdn)
            .await
            .map_err(internal)?;
        if created || !address.is_empty() {
            store
                .set_host_address(&service, &environment, &address)
                .await
                .map_err(internal)?;
        }
        Ok(Response::new(ServiceInfo {
            created,
            ..self.service_info(&row).await?
        }))
    }

    /// `RetireService`: with an agent or a join token, that host retired, and
    /// the service only when no other host holds it; the agents' sessions here
    /// closed and the watchers of its cancelled missions told.
    pub(super) async fn retire_host_or_service(
        &self,
        request: Request<RetireServiceRequest>,
    ) -> Result<Response<RetireServiceResponse>, Status> {
        let request = request.into_inner();
        let (service, environment) = target(request.target.as_ref())?;
        let store = &self.state.store;
        if store
            .service(&service, &environment)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(Status::not_found(format!(
                "no service {service} in {environment}: see `launch services`"
            )));
        }
        if !request.agent_id.is_empty() || !request.join_token_id.is_empty() {
            let host = store
                .retire_host(
                    &service,
                    &environment,
                    &request.agent_id,
                    &request.join_token_id,
                )
                .await
                .map_err(internal)?;
            if host.agent_revoked {
                self.state.hub.close(&request.agent_id);
            }
            if host.others_remain {
                info!(service = %service, environment = %environment, agent_id = %request.agent_id, "host retired; another host keeps the service");
                return Ok(Response::new(RetireServiceResponse {
                    agents_revoked: host.agent_revoked as u32,
                    join_tokens_revoked: 0,
                    service_retired: false,
                }));
            }
        }
        let retired = store
            .retire_service(&service, &environment)
            .await
            .map_err(internal)?;
        for agent_id in &retired.agents {
            self.state.hub.close(agent_id);
        }
        for mission_id in &retired.cancelled_missions {
            self.state.hub.publish(
                mission_id,
                MissionEvent {
                    event: Some(mission_event::Event::Update(MissionUpdate {
                        mission_id: mission_id.clone(),
                        state: MissionState::Cancelled as i32,
                        message: "the service was retired".to_owned(),
                        release_id: String::new(),
                        url: String::new(),
                    })),
                },
            );
        }
        info!(service = %service, environment = %environment, agents_revoked = retired.agents.len(), join_tokens_revoked = retired.join_tokens, "service retired");
        Ok(Response::new(RetireServiceResponse {
            agents_revoked: retired.agents.len() as u32,
            join_tokens_revoked: retired.join_tokens as u32,
            service_retired: true,
        }))
    }
}
