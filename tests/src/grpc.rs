//! Talking gRPC to the control plane directly, with `launch_proto`'s tonic
//! clients, for what the CLI cannot do: acting as an agent (with an agent
//! token read from an agent's data dir) to check what it may and may not reach.

use launch_proto::agent_service_client::AgentServiceClient;
use launch_proto::control_service_client::ControlServiceClient;
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
