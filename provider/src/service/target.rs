//! What differs between the kinds of host a `launch_service` can have. The
//! resource (`service`) orders the steps (control plane, host, DNS, agent
//! wait) and knows no kind; each kind implements [`Target`] in its own
//! module (`aws`, `proxmox`, `docker`): its schema block, plan-time validation and
//! computed values, which of its settings force a new host, and the host's
//! create, read, update, destroy and import. [`Kind::target`] is the one
//! place that picks a kind.

mod aws;
mod docker;
mod proxmox;

pub use aws::AwsArgs;
pub use docker::DockerArgs;
pub use proxmox::ProxmoxArgs;

use std::collections::BTreeMap;

use async_trait::async_trait;
use launch_core::labels::Labels;
use tf_provider::schema::Block;
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};
use tokio::time::Instant;

use super::state::State;
use crate::control::JoinToken;
use crate::provider::Clients;
use crate::proxmox::firewall::Ingress;

/// The kinds of host, in the order an import looks for a service: the one
/// whose IDs are unambiguous first, AWS (which answers every
/// `<environment>/<name>`) last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Proxmox,
    Docker,
    Aws,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Proxmox, Kind::Docker, Kind::Aws];

    /// The dispatch point: the one `match` from a kind to its code.
    pub fn target(self) -> &'static dyn Target {
        match self {
            Kind::Aws => &aws::Aws,
            Kind::Proxmox => &proxmox::ProxmoxTarget,
            Kind::Docker => &docker::DockerTarget,
        }
    }

    /// The kind `target = "…"` names.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.target().name() == name)
    }

    /// Every `target` value, for messages and the schema.
    pub fn names() -> Vec<&'static str> {
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.target().name()).collect();
        names.sort_unstable();
        names
    }
}

/// The target a state names, when it names a known one.
pub fn of(state: &State) -> Option<&'static dyn Target> {
    state
        .target
        .as_ref_option()
        .and_then(|t| Kind::parse(t))
        .map(Kind::target)
}

/// `size`: what every target maps to its own shape of host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Small,
    Medium,
    Large,
}

impl Size {
    pub const ALL: [Size; 3] = [Size::Small, Size::Medium, Size::Large];
    pub const DEFAULT: Size = Size::Small;

    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
        }
    }

    pub fn parse(name: &str) -> Option<Size> {
        Size::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The size a configuration asks for: `None` while it is unknown; a
    /// name that is not a size was refused at validation and reads as the
    /// default.
    pub fn wanted(size: &Value<String>) -> Option<Size> {
        match size {
            Value::Value(name) => Some(Size::parse(name).unwrap_or(Size::DEFAULT)),
            Value::Null => Some(Size::DEFAULT),
            Value::Unknown => None,
        }
    }
}

/// What a target observed of its host, copied into the state's computed
/// fields by [`HostView::observe`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostView {
    /// `instance_id`: the target's own ID of the host.
    pub id: String,
    /// `instance_type`: the EC2 instance type, or a Docker host's limits.
    pub instance_type: Option<String>,
    /// A Proxmox container's cores, memory and disk (its block's computed
    /// attributes).
    pub container: Option<proxmox::Shape>,
    /// `image_id`: what the host booted from, if known.
    pub image: Option<String>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    /// `tags_all`, for targets with key/value tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// What the host's own firewall lets in, for a target that manages
    /// one (Proxmox) and a configuration that asks it to.
    pub firewall: Option<Ingress>,
}

impl HostView {
    pub fn observe(&self, state: &mut State) {
        let text = |v: &Option<String>| v.clone().map(Value::Value).unwrap_or(Value::Null);
        state.instance_id = Value::Value(self.id.clone());
        state.instance_type = text(&self.instance_type);
        state.image_id = text(&self.image);
        state.private_ip = text(&self.private_ip);
        state.public_ip = text(&self.public_ip);
        state.tags_all = match &self.tags {
            Some(tags) => super::state::to_text_map(tags.clone()),
            None => Value::Null,
        };
        if let Some(shape) = self.container {
            proxmox::observe_shape(state, shape);
        }
        if let Some(seen) = &self.firewall {
            proxmox::observe_firewall(state, seen);
        }
    }
}

/// An error for terraform: a one-line summary and a detail saying what to do.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{summary}: {detail}")]
pub struct Failure {
    pub summary: String,
    pub detail: String,
}

impl Failure {
    pub fn new(summary: impl Into<String>, detail: impl ToString) -> Failure {
        Failure {
            summary: summary.into(),
            detail: detail.to_string(),
        }
    }

    pub fn report(self, diags: &mut Diagnostics) {
        diags.root_error(self.summary, self.detail);
    }
}

/// How a create on the target ended: the line between undoing the control
/// plane and keeping a host in state.
#[derive(Debug)]
// One per create, moved once: boxing the view would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Created {
    /// No host exists: the caller undoes the control-plane side.
    Nothing(Failure),
    /// A host exists. With a failure it stays in state, tainted, so the
    /// next apply replaces it and destroy removes it.
    Host {
        view: HostView,
        failed: Option<Failure>,
    },
}

/// What a new host is given: its labels, and how its agent joins.
pub struct HostSpec<'a> {
    pub labels: &'a Labels,
    pub control_url: &'a str,
    pub join: &'a JoinToken,
    pub deadline: Instant,
}

/// What an import found.
pub enum Imported {
    /// Not this target's: the next one looks.
    NotMine,
    /// The host, with the state import builds from it.
    Found(Box<State>),
    /// This target's, and it cannot be imported (the error is in diags).
    Failed,
}

/// One kind of host.
#[async_trait]
pub trait Target: Send + Sync {
    /// The `target` value that picks it, and its settings block's name.
    fn name(&self) -> &'static str;

    /// How errors name its host: "Instance", "Container".
    fn noun(&self) -> &'static str;

    /// Its settings block on the resource.
    fn block(&self) -> Block;

    /// Whether `state` has a non-empty settings block of this target.
    fn block_in_use(&self, state: &State) -> bool;

    /// Plan-time checks of its block and of attributes it does not support.
    fn validate(&self, config: &State, diags: &mut Diagnostics);

    /// What the provider block lacks for this target (or what it points at
    /// that does not answer), said at plan time, before the control plane
    /// is touched at apply.
    async fn missing_settings(&self, _clients: &Clients) -> Option<Failure> {
        None
    }

    /// The computed values it knows at plan time (shape, image, tags,
    /// public address). `prior` is the state updated in place, `None` for
    /// a new host.
    fn plan(&self, planned: &mut State, prior: Option<&State>);

    /// Moves what a state an older provider wrote keeps where this one no
    /// longer does; run on every state read and every prior state planned.
    fn migrate(&self, _state: &mut State) {}

    /// Its settings that changed in a way only a new host can honour.
    fn replacements(&self, prior: &State, planned: &State) -> Vec<AttributePath>;

    /// Makes sure the target is reachable before the control plane is
    /// touched.
    async fn connect(&self, clients: &Clients) -> Result<(), Failure>;

    /// Creates, starts and bootstraps the host.
    async fn create(&self, clients: &Clients, spec: &HostSpec<'_>, planned: &State) -> Created;

    /// Observes the host: `None` when it is gone (so the plan re-creates
    /// it). Warnings (e.g. a stopped host) go to `diags`.
    async fn read(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        instance_id: &str,
        prior: &State,
    ) -> Result<Option<HostView>, Failure>;

    /// Changes the host in place to what `planned` asks. On failure, what
    /// it could observe afterwards, if anything.
    async fn update(
        &self,
        clients: &Clients,
        instance_id: &str,
        prior: &State,
        planned: &State,
        deadline: Instant,
    ) -> Result<HostView, (Failure, Option<HostView>)>;

    /// Removes the host; one already gone is fine.
    async fn destroy(
        &self,
        clients: &Clients,
        instance_id: &str,
        deadline: Instant,
    ) -> Result<(), Failure>;

    /// Finds the host an import ID names.
    async fn import(&self, diags: &mut Diagnostics, clients: &Clients, id: &str) -> Imported;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_picked_by_its_own_name_and_has_a_block() {
        for kind in Kind::ALL {
            let target = kind.target();
            assert_eq!(Kind::parse(target.name()), Some(kind));
            assert!(!target.block().attributes.is_empty(), "{kind:?}");
        }
        assert_eq!(Kind::parse("gcp"), None);
        assert_eq!(Kind::names(), vec!["aws", "docker", "proxmox"]);
    }

    #[test]
    fn sizes_round_trip_by_name_and_default_to_small() {
        for size in Size::ALL {
            assert_eq!(Size::parse(size.name()), Some(size));
        }
        assert_eq!(Size::wanted(&Value::Null), Some(Size::Small));
        assert_eq!(Size::wanted(&Value::Unknown), None);
    }
}
