//! The authorization table: for every `ControlService` method, the scope
//! a token needs and how to read from the request's first message what the
//! call is about. `authz` applies it; a test walks the service descriptor
//! so that no method is missing.

use launch_proto::*;
use prost::Message;

use super::Scope;

/// What a request is about.
#[derive(Debug, PartialEq, Eq)]
pub enum Subject {
    /// Every service (lists, status) or the control plane itself.
    Fleet,
    Service {
        service: String,
        environment: String,
    },
    Mission(String),
    /// The caller's own token (`WhoAmI`): every valid token covers it.
    Itself,
}

/// Reads the subject from the request's first message.
type Extract = fn(&[u8]) -> Result<Subject, prost::DecodeError>;

/// What one RPC needs: a scope, and what the scope must cover.
#[derive(Clone, Copy)]
pub struct Rule {
    pub scope: Scope,
    /// `None`: the RPC concerns the fleet (or the scope is admin, which
    /// covers everything).
    pub subject: Option<Extract>,
}

fn service_of(target: Option<ServiceRef>) -> Subject {
    let target = target.unwrap_or_default();
    Subject::Service {
        service: target.service,
        environment: target.environment,
    }
}

const fn rule(scope: Scope, subject: Option<Extract>) -> Rule {
    Rule { scope, subject }
}

/// Every `ControlService` method and what it needs. The test
/// `every_control_rpc_has_an_authorization_rule` fails for a method missing here.
pub const RULES: &[(&str, Rule)] = &[
    (
        "Deploy",
        rule(
            Scope::Deploy,
            Some(|bytes| {
                let header = match DeployRequest::decode(bytes)?.msg {
                    Some(deploy_request::Msg::Header(header)) => header.target,
                    _ => None,
                };
                Ok(service_of(header))
            }),
        ),
    ),
    (
        "Rollback",
        rule(
            Scope::Deploy,
            Some(|b| Ok(service_of(RollbackRequest::decode(b)?.target))),
        ),
    ),
    (
        "GetMission",
        rule(
            Scope::Read,
            Some(|b| Ok(Subject::Mission(GetMissionRequest::decode(b)?.mission_id))),
        ),
    ),
    (
        "WatchMission",
        rule(
            Scope::Read,
            Some(|b| Ok(Subject::Mission(WatchMissionRequest::decode(b)?.mission_id))),
        ),
    ),
    (
        "StreamLogs",
        rule(
            Scope::Read,
            Some(|b| Ok(service_of(StreamLogsRequest::decode(b)?.target))),
        ),
    ),
    ("Status", rule(Scope::Read, None)),
    ("ListServices", rule(Scope::Read, None)),
    ("EnsureService", rule(Scope::Admin, None)),
    ("RetireService", rule(Scope::Admin, None)),
    (
        "ListReleases",
        rule(
            Scope::Read,
            Some(|b| Ok(service_of(ListReleasesRequest::decode(b)?.target))),
        ),
    ),
    ("ListAgents", rule(Scope::Read, None)),
    ("RevokeAgent", rule(Scope::Admin, None)),
    ("CreateJoinToken", rule(Scope::Admin, None)),
    ("RevokeJoinToken", rule(Scope::Admin, None)),
    ("SetSecret", rule(Scope::Admin, None)),
    ("ListSecrets", rule(Scope::Admin, None)),
    ("DeleteSecret", rule(Scope::Admin, None)),
    ("CreateApiToken", rule(Scope::Admin, None)),
    ("ListApiTokens", rule(Scope::Admin, None)),
    ("RevokeApiToken", rule(Scope::Admin, None)),
    // Host policy: only an admin changes what a deploy may do to its host.
    ("AllowService", rule(Scope::Admin, None)),
    ("DisallowService", rule(Scope::Admin, None)),
    (
        "ListAllowances",
        rule(
            Scope::Read,
            Some(|b| Ok(service_of(ListAllowancesRequest::decode(b)?.target))),
        ),
    ),
    (
        "GetService",
        rule(
            Scope::Read,
            Some(|b| Ok(service_of(GetServiceRequest::decode(b)?.target))),
        ),
    ),
    // An empty service means every service's previews: only a token for
    // `*`/`*` covers it.
    (
        "ListPreviews",
        rule(
            Scope::Read,
            Some(|b| Ok(service_of(ListPreviewsRequest::decode(b)?.target))),
        ),
    ),
    (
        "RemovePreview",
        rule(
            Scope::Deploy,
            Some(|b| Ok(service_of(RemovePreviewRequest::decode(b)?.target))),
        ),
    ),
    // A deploy token may restart its own service and stop its own missions;
    // taking a service down is an admin's call.
    (
        "Restart",
        rule(
            Scope::Deploy,
            Some(|b| Ok(service_of(RestartRequest::decode(b)?.target))),
        ),
    ),
    // Tags describe a service; whoever may deploy it may label it.
    (
        "SetServiceTags",
        rule(
            Scope::Deploy,
            Some(|b| Ok(service_of(SetServiceTagsRequest::decode(b)?.target))),
        ),
    ),
    // Fleet-wide like ListServices: the tags of every service.
    ("TagVocabulary", rule(Scope::Read, None)),
    ("Retire", rule(Scope::Admin, None)),
    ("UpgradeAgents", rule(Scope::Admin, None)),
    ("WhoAmI", rule(Scope::Read, Some(|_| Ok(Subject::Itself)))),
    // Fleet-wide like Status: only a token for `*`/`*` follows every service.
    ("WatchEvents", rule(Scope::Read, None)),
    (
        "CancelMission",
        rule(
            Scope::Deploy,
            Some(|b| {
                Ok(Subject::Mission(
                    CancelMissionRequest::decode(b)?.mission_id,
                ))
            }),
        ),
    ),
];

/// The rule of a gRPC path `/launch.v1.ControlService/<Method>`.
pub fn rule_for(path: &str) -> Option<Rule> {
    let method = path.strip_prefix(&format!(
        "/{}/",
        launch_proto::control_service_server::SERVICE_NAME
    ))?;
    RULES
        .iter()
        .find(|(name, _)| *name == method)
        .map(|(_, rule)| *rule)
}
