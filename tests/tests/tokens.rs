//! Join tokens: `launch token create` gives a token an agent registers with;
//! the same token is single-use, and its reuse is refused with a message that
//! says how to get a new one (to the agent, and in the service's note).

use std::collections::HashMap;
use std::time::Duration;

use launch_e2e::agent::{self, Agent};
use launch_e2e::grpc;
use launch_e2e::poll::eventually;
use launch_e2e::{Server, cli, unique};
use launch_proto::{ListServicesRequest, RegisterRequest};

fn labels(service: &str, environment: &str) -> HashMap<String, String> {
    HashMap::from([
        ("service-name".to_owned(), service.to_owned()),
        ("environment".to_owned(), environment.to_owned()),
    ])
}

#[test]
fn token_create_lets_an_agent_register_and_connect() {
    let server = Server::start();
    let service = unique::service_name();
    let agent = Agent::start(&server, &service, "prod");
    let agent_id = agent.agent_id.clone().unwrap();
    assert!(
        agent_id.starts_with("a-"),
        "agent id {agent_id:?} is not a-<ulid>"
    );
    let token = agent.agent_token();
    assert!(
        token.starts_with("lt_agent_"),
        "agent.token holds {:.12}…",
        token
    );

    let listed = eventually(
        Duration::from_secs(15),
        "the agent listed as connected",
        || {
            let agents = cli::agents(&server);
            agents
                .iter()
                .find(|a| cli::field(a, "agent_id") == agent_id)
                .filter(|a| a.get("connected").and_then(|c| c.as_bool()) == Some(true))
                .cloned()
                .ok_or_else(|| format!("{agents:?}"))
        },
    );
    let text = listed.to_string();
    assert!(
        text.contains(&service) && text.contains("prod"),
        "the listed agent does not carry its labels: {text}"
    );
}

#[test]
fn reusing_a_join_token_is_refused_with_a_clear_error() {
    let server = Server::start();
    let service = unique::service_name();
    let first = Agent::start(&server, &service, "prod");

    // Straight at the wire: FailedPrecondition naming the fix.
    let runtime = grpc::runtime();
    let status = runtime
        .block_on(async {
            let mut client = grpc::agent_client(&server).await;
            client
                .register(RegisterRequest {
                    join_token: first.join_token.clone(),
                    labels: labels(&service, "prod"),
                    hostname: "e2e-second-host".to_owned(),
                    version: "e2e".to_owned(),
                })
                .await
        })
        .expect_err("a used join token must not register a second agent");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("already used")
            && status.message().contains("launch token create"),
        "the refusal must say the token was used and how to get a new one: {:?}",
        status.message()
    );

    // A second agent process with the same token logs the server's message and never connects.
    let second = Agent::spawn(&server, &service, "prod", &first.join_token);
    second
        .process
        .stderr
        .wait_for(Duration::from_secs(30), |line| {
            line.contains("already used")
        })
        .unwrap_or_else(|e| panic!("the second agent did not log the refusal: {e}"));
    assert!(
        !second
            .process
            .stdout
            .text()
            .contains(agent::CONNECTED_PREFIX),
        "a second agent connected with a used join token"
    );

    // The service's note records why.
    let services = runtime
        .block_on(async {
            let mut client = grpc::control_client(&server).await;
            client
                .list_services(grpc::request(
                    ListServicesRequest::default(),
                    &server.admin_token,
                ))
                .await
        })
        .expect("ListServices with the admin token")
        .into_inner()
        .services;
    let info = services
        .iter()
        .find(|s| s.target.as_ref().is_some_and(|t| t.service == service))
        .unwrap_or_else(|| panic!("{service} is not listed: {services:?}"));
    assert!(
        info.note.contains("already used"),
        "the service note must say why a registration was refused: {:?}",
        info.note
    );
}

#[test]
fn unknown_and_mislabelled_join_tokens_are_refused() {
    let server = Server::start();
    let service = unique::service_name();
    let token = agent::create_join_token(&server, &service, "prod");
    let runtime = grpc::runtime();
    let register = |join_token: &str, labels: HashMap<String, String>| {
        runtime.block_on(async {
            let mut client = grpc::agent_client(&server).await;
            client
                .register(RegisterRequest {
                    join_token: join_token.to_owned(),
                    labels,
                    hostname: "e2e".to_owned(),
                    version: "e2e".to_owned(),
                })
                .await
        })
    };
    let status = register("lt_join_0000000000000000", labels(&service, "prod")).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = register(&token, labels(&service, "staging")).unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}
