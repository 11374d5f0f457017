//! The `launch.v1` wire contract: generated prost messages and tonic clients and
//! servers for the agent service (agents ↔ control plane) and the control
//! service (CLI and Terraform provider → control plane). Everything that
//! crosses a process boundary is defined here, so no process can drift from
//! another's idea of a message.

pub mod v1 {
    // A mission is sent once per deploy; boxing it would change the API of
    // every `ControlMessage` match for no measurable gain.
    #![allow(clippy::large_enum_variant)]
    tonic::include_proto!("launch.v1");
}

pub use v1::*;

/// The encoded `FileDescriptorSet` of every `launch.v1` file, so tests can
/// walk each service's methods instead of keeping a list by hand.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/launch_descriptor.bin"));

impl MissionState {
    /// A mission in a final state never changes again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MissionState::Healthy
                | MissionState::Failed
                | MissionState::RolledBack
                | MissionState::Cancelled
        )
    }

    /// The short lower-case name used in the CLI, the store and JSON output.
    pub fn label(self) -> &'static str {
        match self {
            MissionState::Unspecified => "unknown",
            MissionState::Queued => "queued",
            MissionState::Dispatched => "dispatched",
            MissionState::Running => "running",
            MissionState::Healthy => "healthy",
            MissionState::Failed => "failed",
            MissionState::RolledBack => "rolled_back",
            MissionState::Cancelled => "cancelled",
        }
    }

    /// Inverse of [`MissionState::label`].
    pub fn from_label(label: &str) -> Option<Self> {
        Some(match label {
            "queued" => MissionState::Queued,
            "dispatched" => MissionState::Dispatched,
            "running" => MissionState::Running,
            "healthy" => MissionState::Healthy,
            "failed" => MissionState::Failed,
            "rolled_back" => MissionState::RolledBack,
            "cancelled" => MissionState::Cancelled,
            _ => return None,
        })
    }
}

impl MissionKind {
    pub fn label(self) -> &'static str {
        match self {
            MissionKind::Unspecified => "unknown",
            MissionKind::Deploy => "deploy",
            MissionKind::Rollback => "rollback",
            MissionKind::Restart => "restart",
            MissionKind::Retire => "retire",
            MissionKind::Upgrade => "upgrade",
            MissionKind::PreviewRemove => "preview_remove",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Some(match label {
            "deploy" => MissionKind::Deploy,
            "rollback" => MissionKind::Rollback,
            "restart" => MissionKind::Restart,
            "retire" => MissionKind::Retire,
            "upgrade" => MissionKind::Upgrade,
            "preview_remove" => MissionKind::PreviewRemove,
            _ => return None,
        })
    }
}

impl ReleaseState {
    pub fn label(self) -> &'static str {
        match self {
            ReleaseState::Unspecified => "unknown",
            ReleaseState::Pending => "pending",
            ReleaseState::Deploying => "deploying",
            ReleaseState::Healthy => "healthy",
            ReleaseState::Failed => "failed",
            ReleaseState::RolledBack => "rolled_back",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Some(match label {
            "pending" => ReleaseState::Pending,
            "deploying" => ReleaseState::Deploying,
            "healthy" => ReleaseState::Healthy,
            "failed" => ReleaseState::Failed,
            "rolled_back" => ReleaseState::RolledBack,
            _ => return None,
        })
    }
}

/// The metadata key every authenticated call carries (`Bearer <token>`).
pub const AUTHORIZATION: &str = "authorization";

/// Metadata an agent sends when it opens a Session: its version, checked by
/// the control plane before Welcome.
pub const AGENT_VERSION_HEADER: &str = "launch-agent-version";

/// The largest gRPC message either side sends or accepts (bundle chunks are smaller).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Adds `authorization: Bearer <token>` to every request of a generated client
/// (`XClient::with_interceptor(channel, bearer)`), for the CLI, the agent and
/// the provider alike.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// `None` when the token holds characters a header cannot carry.
    pub fn new(token: &str) -> Option<Self> {
        tonic::metadata::MetadataValue::try_from(format!("Bearer {token}"))
            .ok()
            .map(Bearer)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(AUTHORIZATION, self.0.clone());
        Ok(request)
    }
}
