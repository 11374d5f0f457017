//! A bearer token on every RPC: each ControlService RPC and the agent's
//! `Session` and `FetchBundle` refused with no token and with a wrong one
//! (the admin token is not an agent token), `Register` refused with a wrong
//! join token, and the right token passing the same door.

use launch_e2e::{Server, grpc, http};
use launch_proto::agent_service_client::AgentServiceClient;
use launch_proto::control_service_client::ControlServiceClient;
use tonic::transport::Channel;

/// Asserts that `call` fails with `Unauthenticated` (directly or on the
/// first message of a stream).
macro_rules! assert_unauthenticated {
    ($what:expr, $call:expr) => {{
        let code = match $call.await {
            Err(status) => status.code(),
            Ok(_) => tonic::Code::Ok,
        };
        assert_eq!(
            code,
            tonic::Code::Unauthenticated,
            "{} was not refused",
            $what
        );
    }};
}

/// Calls every ControlService RPC with `token` (or none) and asserts each is
/// refused as Unauthenticated.
async fn every_control_rpc_is_refused(
    client: &mut ControlServiceClient<Channel>,
    token: Option<&str>,
) {
    use launch_proto::*;
    let target = || {
        Some(ServiceRef {
            service: "svc".into(),
            environment: "prod".into(),
        })
    };
    let label = token.map_or("no token".to_owned(), |_| "a wrong token".to_owned());
    let deploy = futures_lite_stream(DeployRequest {
        msg: Some(deploy_request::Msg::Header(DeployHeader {
            target: target(),
            ..Default::default()
        })),
    });
    assert_unauthenticated!(
        format!("Deploy with {label}"),
        client.deploy(with(token, deploy))
    );
    assert_unauthenticated!(
        format!("Rollback with {label}"),
        client.rollback(with(
            token,
            RollbackRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("GetMission with {label}"),
        client.get_mission(with(token, GetMissionRequest::default()))
    );
    assert_unauthenticated!(format!("WatchMission with {label}"), async {
        let mut stream = client
            .watch_mission(with(token, WatchMissionRequest::default()))
            .await?
            .into_inner();
        stream.message().await
    });
    assert_unauthenticated!(format!("StreamLogs with {label}"), async {
        let mut stream = client
            .stream_logs(with(
                token,
                StreamLogsRequest {
                    target: target(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner();
        stream.message().await
    });
    assert_unauthenticated!(
        format!("Status with {label}"),
        client.status(with(token, StatusRequest::default()))
    );
    assert_unauthenticated!(
        format!("ListServices with {label}"),
        client.list_services(with(token, ListServicesRequest::default()))
    );
    assert_unauthenticated!(
        format!("EnsureService with {label}"),
        client.ensure_service(with(
            token,
            EnsureServiceRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("RetireService with {label}"),
        client.retire_service(with(
            token,
            RetireServiceRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("ListReleases with {label}"),
        client.list_releases(with(
            token,
            ListReleasesRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("ListAgents with {label}"),
        client.list_agents(with(token, ListAgentsRequest::default()))
    );
    assert_unauthenticated!(
        format!("RevokeAgent with {label}"),
        client.revoke_agent(with(token, RevokeAgentRequest::default()))
    );
    assert_unauthenticated!(
        format!("CreateJoinToken with {label}"),
        client.create_join_token(with(
            token,
            CreateJoinTokenRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("RevokeJoinToken with {label}"),
        client.revoke_join_token(with(token, RevokeJoinTokenRequest::default()))
    );
    assert_unauthenticated!(
        format!("SetSecret with {label}"),
        client.set_secret(with(
            token,
            SetSecretRequest {
                target: target(),
                key: "KEY".into(),
                value: "value".into(),
            }
        ))
    );
    assert_unauthenticated!(
        format!("ListSecrets with {label}"),
        client.list_secrets(with(token, ListSecretsRequest { target: target() }))
    );
    assert_unauthenticated!(
        format!("DeleteSecret with {label}"),
        client.delete_secret(with(
            token,
            DeleteSecretRequest {
                target: target(),
                key: "KEY".into(),
            }
        ))
    );
}

/// Calls the AgentService RPCs that need an agent token with `token` (or
/// none) and asserts each is refused as Unauthenticated.
async fn every_agent_rpc_is_refused(client: &mut AgentServiceClient<Channel>, token: Option<&str>) {
    use launch_proto::*;
    let label = token.map_or("no token".to_owned(), |t| format!("token {t:.12}…"));
    let hello = futures_lite_stream(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello::default())),
    });
    assert_unauthenticated!(format!("Session with {label}"), async {
        let mut stream = client.session(with(token, hello)).await?.into_inner();
        stream.message().await
    });
    assert_unauthenticated!(format!("FetchBundle with {label}"), async {
        let mut stream = client
            .fetch_bundle(with(token, FetchBundleRequest::default()))
            .await?
            .into_inner();
        stream.message().await
    });
}

/// `message` with `token` as its bearer token, or with none.
fn with<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    match token {
        Some(token) => grpc::request(message, token),
        None => tonic::Request::new(message),
    }
}

/// A request stream of one message that then stays open, like a client that
/// waits for the server's answer.
fn futures_lite_stream<T: Send + 'static>(
    first: T,
) -> impl tokio_stream::Stream<Item = T> + Send + 'static {
    use tokio_stream::StreamExt;
    tokio_stream::once(first).chain(tokio_stream::pending())
}

#[test]
fn every_rpc_refuses_a_missing_or_wrong_token() {
    let server = Server::start();
    let runtime = grpc::runtime();
    runtime.block_on(async {
        let mut control = grpc::control_client(&server).await;
        every_control_rpc_is_refused(&mut control, None).await;
        every_control_rpc_is_refused(&mut control, Some("lt_admin_wrong")).await;
        let mut agents = grpc::agent_client(&server).await;
        every_agent_rpc_is_refused(&mut agents, None).await;
        every_agent_rpc_is_refused(&mut agents, Some("lt_agent_wrong")).await;
        // The admin token is not an agent token.
        every_agent_rpc_is_refused(&mut agents, Some(&server.admin_token)).await;

        // Register is public but needs a valid join token.
        let refused = agents
            .register(launch_proto::RegisterRequest {
                join_token: "lt_join_wrong".into(),
                labels: [
                    ("service-name".to_owned(), "svc".to_owned()),
                    ("environment".to_owned(), "prod".to_owned()),
                ]
                .into(),
                hostname: "h".into(),
                version: "0".into(),
            })
            .await
            .expect_err("a wrong join token registered an agent");
        assert!(
            matches!(
                refused.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ),
            "{refused:?}"
        );
    });
    // The right token passes the same door (or this test proves nothing).
    server.cli(&["status"]).success();
    // The public HTTP endpoints stay public; RELIABILITY.md lists them.
    assert_eq!(http::get(server.addr.port(), "/healthz").unwrap().0, 200);
}
