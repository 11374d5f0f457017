//! The create order walked with a fake target and a fake control plane,
//! failing at each step in turn: before a host exists the control plane is
//! undone and nothing is returned; after, the host is returned (tainted by
//! the error) and the control plane is left as it is.

use std::sync::Mutex;

use async_trait::async_trait;
use tf_provider::schema::Block;
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};
use tokio::time::Instant;

use super::{ControlSide, run};
use crate::control::JoinToken;
use crate::provider::Clients;
use crate::service::state::State;
use crate::service::target::{Created, Failure, HostSpec, HostView, Imported, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Connect,
    Prepare,
    /// The target refuses the create: no host.
    Launch,
    /// The host exists but does not come up.
    Start,
    Dns,
    Agent,
}

const STEPS: [Step; 6] = [
    Step::Connect,
    Step::Prepare,
    Step::Launch,
    Step::Start,
    Step::Dns,
    Step::Agent,
];

/// What the fakes saw.
#[derive(Default, Debug)]
struct Seen {
    prepared: bool,
    undone: usize,
    hosts: Vec<String>,
    join_token: Option<String>,
}

struct Fake {
    fail: Option<Step>,
    seen: Mutex<Seen>,
}

impl Fake {
    fn fails(&self, step: Step) -> bool {
        self.fail == Some(step)
    }
}

#[async_trait]
impl ControlSide for Fake {
    fn control_url(&self) -> &str {
        "http://control.test:7400"
    }

    async fn prepare(&self, _planned: &State) -> Result<JoinToken, String> {
        self.seen.lock().unwrap().prepared = true;
        if self.fails(Step::Prepare) {
            return Err("the control plane is unreachable".into());
        }
        Ok(JoinToken {
            id: "jt-1".into(),
            token: "secret-join-token".into(),
        })
    }

    async fn undo(&self) {
        self.seen.lock().unwrap().undone += 1;
    }

    async fn dns(
        &self,
        diags: &mut Diagnostics,
        _state: &mut State,
        _planned_fqdn: Value<String>,
        what: &str,
    ) -> bool {
        if self.fails(Step::Dns) {
            diags.error(
                "cannot create the service's DNS record",
                format!("{what} is kept"),
                AttributePath::new("public"),
            );
            return false;
        }
        true
    }

    async fn wait_for_agent(&self, diags: &mut Diagnostics, state: &mut State, what: &str) {
        if self.fails(Step::Agent) {
            diags.root_error(
                "the host's agent did not register in time",
                format!("{what} is kept"),
            );
            return;
        }
        state.agent_id = Value::Value("agent-1".into());
    }
}

#[async_trait]
impl Target for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn noun(&self) -> &'static str {
        "Host"
    }
    fn block(&self) -> Block {
        Block::default()
    }
    fn block_in_use(&self, _state: &State) -> bool {
        false
    }
    fn validate(&self, _config: &State, _diags: &mut Diagnostics) {}
    fn plan(&self, _planned: &mut State, _prior: Option<&State>) {}
    fn replacements(&self, _prior: &State, _planned: &State) -> Vec<AttributePath> {
        Vec::new()
    }

    async fn connect(&self, _clients: &Clients) -> Result<(), Failure> {
        match self.fails(Step::Connect) {
            true => Err(Failure::new("cannot create launch_service", "no engine")),
            false => Ok(()),
        }
    }

    async fn create(&self, _clients: &Clients, spec: &HostSpec<'_>, _planned: &State) -> Created {
        self.seen.lock().unwrap().join_token = Some(spec.join.token.clone());
        if self.fails(Step::Launch) {
            return Created::Nothing(Failure::new("cannot create launch_service", "refused"));
        }
        let id = format!("host-{}", spec.labels.service.as_str());
        self.seen.lock().unwrap().hosts.push(id.clone());
        let view = HostView {
            id: id.clone(),
            instance_type: Some("small".into()),
            ..HostView::default()
        };
        let failed = self
            .fails(Step::Start)
            .then(|| Failure::new(format!("host {id} did not start"), "timed out"));
        Created::Host { view, failed }
    }

    async fn read(
        &self,
        _diags: &mut Diagnostics,
        _clients: &Clients,
        _instance_id: &str,
        _prior: &State,
    ) -> Result<Option<HostView>, Failure> {
        Ok(None)
    }

    async fn update(
        &self,
        _clients: &Clients,
        _instance_id: &str,
        _prior: &State,
        _planned: &State,
        _deadline: Instant,
    ) -> Result<HostView, (Failure, Option<HostView>)> {
        Err((Failure::new("unused", "unused"), None))
    }

    async fn destroy(
        &self,
        _clients: &Clients,
        _instance_id: &str,
        _deadline: Instant,
    ) -> Result<(), Failure> {
        Ok(())
    }

    async fn import(&self, _diags: &mut Diagnostics, _clients: &Clients, _id: &str) -> Imported {
        Imported::NotMine
    }
}

async fn create(fail: Option<Step>) -> (Option<State>, Diagnostics, Seen) {
    let fake = Fake {
        fail,
        seen: Mutex::default(),
    };
    let planned = State {
        name: Value::Value("web".into()),
        environment: Value::Value("prod".into()),
        target: Value::Value("fake".into()),
        instance_id: Value::Unknown,
        ..Default::default()
    };
    let labels = planned.labels().expect("labels");
    let clients = Clients::offline();
    let mut diags = Diagnostics::default();
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let state = run(
        &mut diags, &fake, &fake, &clients, &labels, planned, deadline,
    )
    .await;
    (state, diags, fake.seen.into_inner().unwrap())
}

#[tokio::test]
async fn a_create_that_fails_before_a_host_exists_undoes_the_control_plane_and_keeps_nothing() {
    let mut walked = Vec::new();
    for step in STEPS {
        let (state, diags, seen) = create(Some(step)).await;
        if !seen.hosts.is_empty() {
            continue;
        }
        walked.push(step);
        assert!(
            state.is_none(),
            "{step:?}: nothing exists, nothing is returned"
        );
        assert_eq!(seen.undone, 1, "{step:?}: the control plane is undone once");
        assert_eq!(diags.errors.len(), 1, "{step:?}");
        assert_eq!(seen.prepared, step != Step::Connect, "{step:?}");
    }
    assert_eq!(walked, [Step::Connect, Step::Prepare, Step::Launch]);
}

#[tokio::test]
async fn a_create_that_fails_once_the_host_exists_returns_it_for_terraform_to_taint() {
    let mut walked = Vec::new();
    for step in STEPS {
        let (state, diags, seen) = create(Some(step)).await;
        if seen.hosts.is_empty() {
            continue;
        }
        walked.push(step);
        let state = state.unwrap_or_else(|| panic!("{step:?}: the host must be returned"));
        assert_eq!(
            state.instance_id,
            Value::Value("host-web".into()),
            "{step:?}"
        );
        assert_eq!(state.join_token_id, Value::Value("jt-1".into()), "{step:?}");
        assert_eq!(
            seen.undone, 0,
            "{step:?}: a host exists, so nothing is undone"
        );
        assert_eq!(diags.errors.len(), 1, "{step:?}: the error taints it");
        let text: String = diags
            .errors
            .iter()
            .map(|d| format!("{} | {}\n", d.summary, d.detail))
            .collect();
        assert!(
            text.contains("kept"),
            "{step:?}: the error says the host is kept: {text}"
        );
        assert!(
            !text.contains("secret-join-token"),
            "{step:?}: the join token leaked into {text}"
        );
    }
    assert_eq!(walked, [Step::Start, Step::Dns, Step::Agent]);
}

#[tokio::test]
async fn a_create_where_every_step_succeeds_returns_the_host_with_its_agent() {
    let (state, diags, seen) = create(None).await;
    assert!(diags.errors.is_empty());
    let state = state.expect("the host");
    assert_eq!(state.agent_id, Value::Value("agent-1".into()));
    assert_eq!(state.instance_type, Value::Value("small".into()));
    assert_eq!(seen.undone, 0);
    assert_eq!(seen.join_token.as_deref(), Some("secret-join-token"));
}
