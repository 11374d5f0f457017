//! Talking gRPC to the control plane directly, with `launch_proto`'s tonic
//! clients, for what the CLI cannot do: acting as an agent (with an agent
//! token read from an agent's data dir) to check what it may and may not reach,
//! and simulating agents on the wire for the benchmarks.

use std::collections::HashMap;

use launch_proto::agent_service_client::AgentServiceClient;
use launch_proto::control_service_client::ControlServiceClient;
use launch_proto::{
    AgentMessage, ControlMessage, CreateJoinTokenRequest, EnsureServiceRequest, GetServiceRequest,
    Hello, RegisterRequest, ServiceInfo, ServiceRef, agent_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::server::Server;

/// A single-threaded runtime for a test's gRPC calls (tests are synchronous).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}

/// Wraps `message` with `authorization: Bearer <token>`.
pub fn request<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        launch_proto::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("token is valid metadata"),
    );
    request
}

async fn channel(server: &Server) -> Channel {
    Channel::from_shared(server.url())
        .expect("server URL is a valid URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", server.url()))
}

/// An `AgentService` client connected to `server`.
pub async fn agent_client(server: &Server) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(channel(server).await)
}

/// A `ControlService` client connected to `server`.
pub async fn control_client(server: &Server) -> ControlServiceClient<Channel> {
    ControlServiceClient::new(channel(server).await)
}

/// An agent simulated on the wire (for benches): registered with a fresh
/// join token and holding an open Session. Messages sent on `up` go to the
/// control plane; the session ends when `up` is dropped.
pub struct SimulatedAgent {
    pub up: mpsc::Sender<AgentMessage>,
    pub down: tonic::Streaming<ControlMessage>,
}

/// Creates a join token for `target` (with the admin token), registers as
/// `hostname` and opens a Session that starts with Hello.
pub async fn simulate_agent(
    control: &mut ControlServiceClient<Channel>,
    agents: &mut AgentServiceClient<Channel>,
    admin_token: &str,
    target: &ServiceRef,
    hostname: &str,
) -> SimulatedAgent {
    simulate_agent_with_compose(control, agents, admin_token, target, hostname, "").await
}

/// [`simulate_agent`] on a host whose Hello reports `compose`, e.g.
/// "docker-compose 1.29.2".
pub async fn simulate_agent_with_compose(
    control: &mut ControlServiceClient<Channel>,
    agents: &mut AgentServiceClient<Channel>,
    admin_token: &str,
    target: &ServiceRef,
    hostname: &str,
    compose: &str,
) -> SimulatedAgent {
    let join = control
        .create_join_token(request(
            CreateJoinTokenRequest {
                target: Some(target.clone()),
                ttl_secs: 0,
            },
            admin_token,
        ))
        .await
        .expect("CreateJoinToken")
        .into_inner();
    let registered = agents
        .register(RegisterRequest {
            join_token: join.join_token,
            labels: HashMap::from([
                ("service-name".to_owned(), target.service.clone()),
                ("environment".to_owned(), target.environment.clone()),
            ]),
            hostname: hostname.to_owned(),
            version: "bench".to_owned(),
        })
        .await
        .expect("Register")
        .into_inner();
    let (up, up_rx) = mpsc::channel::<AgentMessage>(1024);
    up.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            version: "bench".to_owned(),
            hostname: hostname.to_owned(),
            advertise_host: "127.0.0.1".to_owned(),
            current_release_id: String::new(),
            compose: compose.to_owned(),
            ..Default::default()
        })),
    })
    .await
    .expect("the session's channel is open");
    let down = agents
        .session(request(ReceiverStream::new(up_rx), &registered.agent_token))
        .await
        .expect("Session")
        .into_inner();
    SimulatedAgent { up, down }
}

/// `GetService` for `service`/`environment` with the admin token: what the
/// control plane holds for it (fqdn, host address, the host's compose).
pub fn service_info(server: &Server, service: &str, environment: &str) -> ServiceInfo {
    runtime().block_on(async {
        control_client(server)
            .await
            .get_service(request(
                GetServiceRequest {
                    target: Some(ServiceRef {
                        service: service.to_owned(),
                        environment: environment.to_owned(),
                    }),
                },
                &server.admin_token,
            ))
            .await
            .unwrap_or_else(|e| panic!("GetService {service}/{environment}: {e}"))
            .into_inner()
    })
}

/// `EnsureService` as the provider calls it after a create: the service's
/// public name (`""`: none) and the address its host is reached at.
pub fn ensure_service(
    server: &Server,
    service: &str,
    environment: &str,
    fqdn: &str,
    host_address: &str,
) -> ServiceInfo {
    runtime().block_on(async {
        control_client(server)
            .await
            .ensure_service(request(
                EnsureServiceRequest {
                    target: Some(ServiceRef {
                        service: service.to_owned(),
                        environment: environment.to_owned(),
                    }),
                    fqdn: fqdn.to_owned(),
                    host_address: host_address.to_owned(),
                    ..Default::default()
                },
                &server.admin_token,
            ))
            .await
            .unwrap_or_else(|e| panic!("EnsureService {service}/{environment}: {e}"))
            .into_inner()
    })
}
