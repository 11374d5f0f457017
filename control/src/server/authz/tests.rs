//! The authorization layer, checked from the outside: every `ControlService`
//! method found in the compiled descriptor set has a rule, and for each
//! scope every method is either served or refused with `PermissionDenied`
//! naming the scope it needs, over the wire against a real server.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use launch_proto::agent_service_client::AgentServiceClient;
use launch_proto::control_service_client::ControlServiceClient;
use launch_proto::*;

use super::{RULES, matches, rule_for};
use crate::server::{ServerConfig, run};

const DEADLINE: Duration = Duration::from_secs(10);

/// The `ControlService` methods of the compiled proto files.
fn control_methods() -> Vec<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(launch_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let service = set
        .file
        .iter()
        .filter(|file| file.package() == "launch.v1")
        .flat_map(|file| &file.service)
        .find(|service| service.name() == "ControlService")
        .expect("launch.v1.ControlService is in the descriptor set");
    let methods: Vec<_> = service
        .method
        .iter()
        .map(|m| (m.name().to_owned(), m.input_type().to_owned()))
        .collect();
    assert!(
        methods.len() >= 20,
        "the descriptor lists {} methods: is it the whole service?",
        methods.len()
    );
    methods
}

#[test]
fn every_control_rpc_has_an_authorization_rule() {
    let methods = control_methods();
    let missing: Vec<_> = methods
        .iter()
        .map(|(name, _)| name)
        .filter(|name| rule_for(&format!("/launch.v1.ControlService/{name}")).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "ControlService RPC(s) {missing:?} (proto/proto/launch/v1/control.proto) have no authorization rule: \
         add (\"<Name>\", rule(Scope::…, …)) to RULES in control/src/server/authz.rs, saying which scope it \
         needs and, if a deploy or read token may call it for its own service, how to read the request's target; \
         then add the method's expectation to SPEC in control/src/server/authz/tests.rs"
    );
    let stale: Vec<_> = RULES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !methods.iter().any(|(method, _)| method == name))
        .collect();
    assert!(
        stale.is_empty(),
        "RULES in control/src/server/authz.rs names {stale:?}, which ControlService does not have: remove them"
    );
}

#[test]
fn an_unknown_path_has_no_rule() {
    assert!(rule_for("/launch.v1.ControlService/Deploy").is_some());
    assert!(rule_for("/launch.v1.ControlService/NoSuchMethod").is_none());
    assert!(rule_for("/launch.v1.AgentService/Register").is_none());
}

#[test]
fn patterns_match_whole_names_with_stars() {
    let table = [
        ("*", "hello", true),
        ("*", "", true),
        ("hello", "hello", true),
        ("hello", "hello2", false),
        ("hello", "hell", false),
        ("web-*", "web-api", true),
        ("web-*", "web-", true),
        ("web-*", "api-web", false),
        ("*-prod", "eu-prod", true),
        ("*-prod", "eu-production", false),
        ("a*b*c", "abc", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "acb", false),
        ("a*a", "a", false),
        ("a*a", "aa", true),
    ];
    for (pattern, name, expected) in table {
        assert_eq!(
            matches(pattern, name),
            expected,
            "{pattern:?} against {name:?}"
        );
    }
}

/// What each method needs, written out as the product promises it (not
/// read from RULES): the table test holds the layer to this.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    /// A read token covering the request's service.
    Read,
    /// A read token covering every service (`*`/`*`).
    ReadAll,
    /// A deploy token covering the request's service.
    Deploy,
    Admin,
    /// Any valid token.
    Any,
}

const SPEC: &[(&str, Need)] = &[
    ("Deploy", Need::Deploy),
    ("Rollback", Need::Deploy),
    ("GetMission", Need::Read),
    ("WatchMission", Need::Read),
    ("StreamLogs", Need::Read),
    ("Status", Need::ReadAll),
    ("ListServices", Need::ReadAll),
    ("TagVocabulary", Need::ReadAll),
    ("EnsureService", Need::Admin),
    ("RetireService", Need::Admin),
    ("ListReleases", Need::Read),
    ("ListAgents", Need::ReadAll),
    ("RevokeAgent", Need::Admin),
    ("CreateJoinToken", Need::Admin),
    ("RevokeJoinToken", Need::Admin),
    ("SetSecret", Need::Admin),
    ("ListSecrets", Need::Admin),
    ("DeleteSecret", Need::Admin),
    ("CreateApiToken", Need::Admin),
    ("ListApiTokens", Need::Admin),
    ("RevokeApiToken", Need::Admin),
    ("AllowService", Need::Admin),
    ("DisallowService", Need::Admin),
    ("ListAllowances", Need::Read),
    ("Restart", Need::Deploy),
    ("Retire", Need::Admin),
    ("UpgradeAgents", Need::Admin),
    ("CancelMission", Need::Deploy),
    ("GetService", Need::Read),
    ("ListPreviews", Need::Read),
    ("RemovePreview", Need::Deploy),
    ("WhoAmI", Need::Any),
    ("WatchEvents", Need::ReadAll),
    ("SetServiceTags", Need::Deploy),
];

/// One token of the table: its scope and patterns.
#[derive(Clone, Copy, Debug)]
struct Grant {
    scope: TokenScope,
    service: &'static str,
    environment: &'static str,
}

/// Who calls, in the table.
#[derive(Clone, Copy, Debug)]
enum Who {
    Admin,
    /// No token, or one the server does not know.
    Nobody,
    Agent,
    Token(Grant),
}

/// Whether `grant` may call a method needing `need` on hello/prod.
fn allowed(grant: Grant, need: Need) -> bool {
    let covers_hello_prod = matches(grant.service, "hello") && matches(grant.environment, "prod");
    let covers_all = grant.service == "*" && grant.environment == "*";
    match (grant.scope, need) {
        (TokenScope::Admin, _) => true,
        (TokenScope::Deploy | TokenScope::Read, Need::Any) => true,
        (_, Need::Admin) => false,
        (TokenScope::Deploy, Need::Deploy) => covers_hello_prod,
        (_, Need::Deploy) => false,
        (TokenScope::Deploy | TokenScope::Read, Need::Read) => covers_hello_prod,
        (TokenScope::Deploy | TokenScope::Read, Need::ReadAll) => covers_all,
        (TokenScope::Unspecified, _) => false,
    }
}

fn scope_named(need: Need) -> &'static str {
    match need {
        Need::Read | Need::ReadAll | Need::Any => "needs a read token",
        Need::Deploy => "needs a deploy token",
        Need::Admin => "needs an admin token",
    }
}

struct Server {
    addr: SocketAddr,
    data_dir: tempfile::TempDir,
    admin_token: String,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    async fn start() -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let config = ServerConfig::for_data_dir(
            data_dir.path().join("server"),
            "127.0.0.1:0".parse().unwrap(),
        );
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(run(config, shutdown.clone(), ready_tx));
        let addr = tokio::time::timeout(DEADLINE, ready_rx)
            .await
            .expect("server ready within the deadline")
            .expect("server sent its address");
        let admin_token =
            std::fs::read_to_string(data_dir.path().join("server/admin.token")).unwrap();
        Server {
            addr,
            data_dir,
            admin_token: admin_token.trim().to_owned(),
            shutdown,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn control(&self) -> ControlServiceClient<Channel> {
        ControlServiceClient::new(self.channel().await)
    }

    async fn create_token(&self, grant: Grant) -> (String, String) {
        let response = self
            .control()
            .await
            .create_api_token(with_token(
                CreateApiTokenRequest {
                    scope: grant.scope as i32,
                    service: grant.service.into(),
                    environment: grant.environment.into(),
                    ttl_secs: 0,
                    name: format!("{:?}", grant),
                },
                &self.admin_token,
            ))
            .await
            .unwrap()
            .into_inner();
        (response.info.unwrap().token_id, response.token)
    }

    /// The token of an agent registered for hello/prod.
    async fn agent_token(&self) -> String {
        let join_token = self
            .control()
            .await
            .create_join_token(with_token(
                CreateJoinTokenRequest {
                    target: Some(hello_prod()),
                    ttl_secs: 0,
                },
                &self.admin_token,
            ))
            .await
            .unwrap()
            .into_inner()
            .join_token;
        AgentServiceClient::new(self.channel().await)
            .register(RegisterRequest {
                join_token,
                labels: [
                    ("service-name".to_owned(), "hello".to_owned()),
                    ("environment".to_owned(), "prod".to_owned()),
                ]
                .into(),
                hostname: "host-1".into(),
                version: "test".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .agent_token
    }

    /// A queued deploy mission of hello/prod (no agent runs it).
    async fn deploy_hello_prod(&self) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services: {}\n").unwrap();
        let mut bundle = Vec::new();
        launch_core::bundle::pack_dir(dir.path(), &mut bundle).unwrap();
        let messages = vec![
            DeployRequest {
                msg: Some(deploy_request::Msg::Header(DeployHeader {
                    target: Some(hello_prod()),
                    git_ref: "main".into(),
                    secrets: Default::default(),
                    bundle_sha256: launch_core::bundle::sha256_hex(&bundle),
                    ..Default::default()
                })),
            },
            DeployRequest {
                msg: Some(deploy_request::Msg::Chunk(bundle)),
            },
        ];
        self.control()
            .await
            .deploy(with_token(tokio_stream::iter(messages), &self.admin_token))
            .await
            .unwrap()
            .into_inner()
            .mission_id
    }

    /// Calls `method` with `body` (an encoded request) as `token`.
    async fn call(&self, method: &str, body: Vec<u8>, token: &str) -> Result<(), Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel().await);
        grpc.ready().await.unwrap();
        let path = format!("/launch.v1.ControlService/{method}")
            .parse()
            .unwrap();
        let request = with_token(tokio_stream::iter(vec![body]), token);
        tokio::time::timeout(DEADLINE, grpc.streaming(request, path, Raw))
            .await
            .map_err(|_| Status::deadline_exceeded(format!("{method} did not answer")))?
            .map(drop)
    }
}

fn hello_prod() -> ServiceRef {
    ServiceRef {
        service: "hello".into(),
        environment: "prod".into(),
    }
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    request
}

/// A request for each input type, aimed at hello/prod (or its mission).
fn sample(input_type: &str, mission_id: &str) -> Vec<u8> {
    let target = Some(hello_prod());
    match input_type.trim_start_matches(".launch.v1.") {
        "DeployRequest" => DeployRequest {
            msg: Some(deploy_request::Msg::Header(DeployHeader {
                target,
                ..Default::default()
            })),
        }
        .encode_to_vec(),
        "RollbackRequest" => RollbackRequest {
            target,
            to_release_id: String::new(),
        }
        .encode_to_vec(),
        "GetMissionRequest" => GetMissionRequest {
            mission_id: mission_id.into(),
        }
        .encode_to_vec(),
        "WatchMissionRequest" => WatchMissionRequest {
            mission_id: mission_id.into(),
            since_seq: 0,
        }
        .encode_to_vec(),
        "StreamLogsRequest" => StreamLogsRequest {
            target,
            mission_id: String::new(),
            since_seq: 0,
            follow: false,
        }
        .encode_to_vec(),
        "StatusRequest"
        | "ListServicesRequest"
        | "ListAgentsRequest"
        | "ListApiTokensRequest"
        | "TagVocabularyRequest" => Vec::new(),
        "EnsureServiceRequest" => EnsureServiceRequest {
            target,
            ..Default::default()
        }
        .encode_to_vec(),
        // Another service: retiring hello/prod would cancel the mission.
        "RetireServiceRequest" => RetireServiceRequest {
            target: Some(ServiceRef {
                service: "other".into(),
                environment: "prod".into(),
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        "ListReleasesRequest" => ListReleasesRequest {
            target,
            ..Default::default()
        }
        .encode_to_vec(),
        "RevokeAgentRequest" => RevokeAgentRequest {
            agent_id: "a-none".into(),
        }
        .encode_to_vec(),
        "CreateJoinTokenRequest" => CreateJoinTokenRequest {
            target,
            ttl_secs: 0,
        }
        .encode_to_vec(),
        "RevokeJoinTokenRequest" => RevokeJoinTokenRequest {
            join_token_id: "j-none".into(),
        }
        .encode_to_vec(),
        "SetSecretRequest" => SetSecretRequest {
            target,
            key: "API_KEY".into(),
            value: "v".into(),
        }
        .encode_to_vec(),
        "ListSecretsRequest" => ListSecretsRequest { target }.encode_to_vec(),
        "DeleteSecretRequest" => DeleteSecretRequest {
            target,
            key: "NONE".into(),
        }
        .encode_to_vec(),
        "CreateApiTokenRequest" => CreateApiTokenRequest {
            scope: TokenScope::Read as i32,
            ..Default::default()
        }
        .encode_to_vec(),
        "RevokeApiTokenRequest" => RevokeApiTokenRequest {
            token_id: "t-none".into(),
        }
        .encode_to_vec(),
        "AllowServiceRequest" => AllowServiceRequest {
            target,
            allowances: vec!["host-network".into()],
        }
        .encode_to_vec(),
        "ListAllowancesRequest" => ListAllowancesRequest { target }.encode_to_vec(),
        "GetServiceRequest" => GetServiceRequest { target }.encode_to_vec(),
        "ListPreviewsRequest" => ListPreviewsRequest { target }.encode_to_vec(),
        "RemovePreviewRequest" => RemovePreviewRequest {
            target,
            preview: "pr-1".into(),
        }
        .encode_to_vec(),
        "RestartRequest" => RestartRequest { target }.encode_to_vec(),
        "SetServiceTagsRequest" => SetServiceTagsRequest {
            target,
            set: [("team".to_owned(), "platform".to_owned())].into(),
            remove: Vec::new(),
        }
        .encode_to_vec(),
        // Another service: taking hello/prod down would change what others see.
        "RetireRequest" => RetireRequest {
            target: Some(ServiceRef {
                service: "other".into(),
                environment: "prod".into(),
            }),
        }
        .encode_to_vec(),
        "UpgradeAgentsRequest" => UpgradeAgentsRequest::default().encode_to_vec(),
        "WhoAmIRequest" => WhoAmIRequest::default().encode_to_vec(),
        "WatchEventsRequest" => WatchEventsRequest::default().encode_to_vec(),
        "CancelMissionRequest" => CancelMissionRequest {
            mission_id: mission_id.into(),
        }
        .encode_to_vec(),
        other => panic!(
            "no sample request for {other}: add one to `sample` in control/src/server/authz/tests.rs"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scope_is_served_or_refused_naming_the_scope_it_needs() {
    let server = Server::start().await;
    let mission_id = server.deploy_hello_prod().await;
    let grants = [
        Grant {
            scope: TokenScope::Admin,
            service: "*",
            environment: "*",
        },
        Grant {
            scope: TokenScope::Deploy,
            service: "hello",
            environment: "prod",
        },
        Grant {
            scope: TokenScope::Deploy,
            service: "hello",
            environment: "staging",
        },
        Grant {
            scope: TokenScope::Deploy,
            service: "*",
            environment: "staging",
        },
        Grant {
            scope: TokenScope::Deploy,
            service: "*",
            environment: "*",
        },
        Grant {
            scope: TokenScope::Read,
            service: "hello",
            environment: "prod",
        },
        Grant {
            scope: TokenScope::Read,
            service: "web-*",
            environment: "*",
        },
        Grant {
            scope: TokenScope::Read,
            service: "*",
            environment: "*",
        },
    ];
    let agent_token = server.agent_token().await;
    let mut tokens = vec![
        (
            "the admin token".to_owned(),
            server.admin_token.clone(),
            Who::Admin,
        ),
        ("no token".to_owned(), String::new(), Who::Nobody),
        (
            "an unknown token".to_owned(),
            "lt_api_unknown".to_owned(),
            Who::Nobody,
        ),
        ("an agent token".to_owned(), agent_token, Who::Agent),
    ];
    for grant in grants {
        let (_, token) = server.create_token(grant).await;
        tokens.push((format!("{grant:?}"), token, Who::Token(grant)));
    }
    let mut wrong = Vec::new();
    let mut served = 0;
    for (method, input_type) in control_methods() {
        let need = SPEC
            .iter()
            .find(|(name, _)| *name == method)
            .map(|(_, need)| *need)
            .unwrap_or_else(|| {
                panic!("{method} has no expectation: add it to SPEC in control/src/server/authz/tests.rs")
            });
        for (label, token, who) in &tokens {
            let outcome = server
                .call(&method, sample(&input_type, &mission_id), token)
                .await;
            let refusal = match who {
                Who::Admin => None,
                Who::Token(grant) if allowed(*grant, need) => None,
                Who::Token(_) => Some((Code::PermissionDenied, scope_named(need))),
                Who::Nobody => Some((Code::Unauthenticated, "pass --token or set LAUNCH_TOKEN")),
                Who::Agent => Some((
                    Code::PermissionDenied,
                    "an agent token cannot call the control service",
                )),
            };
            match (&outcome, refusal) {
                (Err(status), None)
                    if matches!(
                        status.code(),
                        Code::PermissionDenied | Code::Unauthenticated
                    ) =>
                {
                    wrong.push(format!(
                        "{method} as {label}: refused but should be served: {status:?}"
                    ));
                }
                (Err(status), Some((code, _))) if status.code() != code => {
                    wrong.push(format!(
                        "{method} as {label}: should be {code:?}, got {status:?}"
                    ));
                }
                (Err(status), Some((_, says))) if !status.message().contains(says) => {
                    wrong.push(format!(
                        "{method} as {label}: the refusal does not say {says:?}: {:?}",
                        status.message()
                    ));
                }
                (Ok(()), Some(_)) => {
                    wrong.push(format!("{method} as {label}: served but should be refused"));
                }
                (_, None) => served += 1,
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Positive control: the table served calls, not only refused them.
    assert!(served > 40, "only {served} calls were served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_token_for_hello_prod_cannot_touch_staging_secrets_or_tokens() {
    let server = Server::start().await;
    let (_, token) = server
        .create_token(Grant {
            scope: TokenScope::Deploy,
            service: "hello",
            environment: "prod",
        })
        .await;
    let mut control = server.control().await;
    let staging = ServiceRef {
        service: "hello".into(),
        environment: "staging".into(),
    };
    // Positive control: the same token may read its own service.
    control
        .list_releases(with_token(
            ListReleasesRequest {
                target: Some(hello_prod()),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("a deploy token reads its own service");
    let refused = control
        .rollback(with_token(
            RollbackRequest {
                target: Some(staging.clone()),
                to_release_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("hello/staging"),
        "{}",
        refused.message()
    );
    let refused = control
        .list_secrets(with_token(
            ListSecretsRequest {
                target: Some(hello_prod()),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = control
        .create_api_token(with_token(
            CreateApiTokenRequest {
                scope: TokenScope::Deploy as i32,
                service: "hello".into(),
                environment: "prod".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("needs an admin token"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let server = Server::start().await;
    let (token_id, token) = server
        .create_token(Grant {
            scope: TokenScope::Read,
            service: "*",
            environment: "*",
        })
        .await;
    let mut control = server.control().await;
    control
        .status(with_token(StatusRequest {}, &token))
        .await
        .expect("the token works before it expires");
    // Expire it in the store (a second connection, as an operator's sqlite3 would).
    let url = format!(
        "sqlite://{}",
        server.data_dir.path().join("server/launch.db").display()
    );
    let store = crate::server::store::Store::open(&url).await.unwrap();
    store.expire_api_token_for_test(&token_id).await;
    store.close().await;
    let refused = control
        .status(with_token(StatusRequest {}, &token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("has expired"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_and_its_open_log_stream_ends() {
    let server = Server::start().await;
    server.deploy_hello_prod().await;
    let (token_id, token) = server
        .create_token(Grant {
            scope: TokenScope::Read,
            service: "hello",
            environment: "prod",
        })
        .await;
    let mut control = server.control().await;
    let mut logs = control
        .stream_logs(with_token(
            StreamLogsRequest {
                target: Some(hello_prod()),
                mission_id: String::new(),
                since_seq: 0,
                follow: true,
            },
            &token,
        ))
        .await
        .expect("a read token follows its service's logs")
        .into_inner();
    control
        .revoke_api_token(with_token(
            RevokeApiTokenRequest {
                token_id: token_id.clone(),
            },
            &server.admin_token,
        ))
        .await
        .unwrap();
    let ended = tokio::time::timeout(DEADLINE, logs.message())
        .await
        .expect("the stream ends within the deadline once its token is revoked")
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("revoked"), "{}", ended.message());
    let refused = control
        .list_releases(with_token(
            ListReleasesRequest {
                target: Some(hello_prod()),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let listed = control
        .list_api_tokens(with_token(ListApiTokensRequest {}, &server.admin_token))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let row = listed
        .iter()
        .find(|t| t.token_id == token_id)
        .expect("listed");
    assert!(row.revoked);
    assert!(row.last_used_unix_ms > 0, "the use was recorded");
    let listing = format!("{listed:?}");
    assert!(!listing.contains(&token), "the list never holds a token");
}

/// Raw bytes in and out, so the table can call any method by its path.
#[derive(Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; bytes::Buf::remaining(src)];
        bytes::Buf::copy_to_slice(src, &mut out);
        Ok(Some(out))
    }
}
