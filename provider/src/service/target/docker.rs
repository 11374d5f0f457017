//! `target = "docker"`: the host is a container on a Docker engine, for a
//! laptop, a CI runner or a homelab without Proxmox. The container runs
//! systemd (like a small VM: the image must have it, plus `curl` and a
//! `docker` CLI with compose), gets the same bootstrap script as the other
//! targets through `docker exec` on stdin, and drives the engine it runs on
//! through the mounted socket, so the service's containers are its siblings.
//! Sizes are CPU and memory limits, changed live; destroy removes the host
//! and the compose project its agent ran.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};
use tokio::time::Instant;
use tracing::info;

use super::{Created, Failure, HostSpec, HostView, Imported, Size, Target};
use crate::bootstrap::Bootstrap;
use crate::docker::{Docker, MANAGED_LABEL};
use crate::provider::{Clients, attribute};
use crate::service::state::{State, Text};

/// The network a host joins unless `docker { network }` says otherwise:
/// the engine host's own, so a control plane on `localhost` is reachable and
/// the service's published ports land on the engine's machine.
pub const DEFAULT_NETWORK: &str = "host";
/// Labels every host container carries; import and destroy go by them.
const LABEL_SERVICE: &str = "launch.service";
const LABEL_ENVIRONMENT: &str = "launch.environment";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DockerArgs {
    pub image: Text,
    pub network: Text,
}

pub struct DockerTarget;

pub fn args(state: &State) -> DockerArgs {
    state
        .docker
        .as_ref_option()
        .and_then(|b| b.first())
        .cloned()
        .unwrap_or_default()
}

/// CPUs and memory (MiB) a size means.
pub fn limits(size: Size) -> (i64, i64) {
    match size {
        Size::Small => (1, 1024),
        Size::Medium => (2, 2048),
        Size::Large => (4, 4096),
    }
}

/// How `instance_type` shows the limits, e.g. `1 cpus, 1024 MiB`.
fn label((cpus, memory_mib): (i64, i64)) -> String {
    format!("{cpus} cpus, {memory_mib} MiB")
}

/// The host container's name: what import finds it by.
pub fn container_name(service: &str, environment: &str) -> String {
    format!("launch-{service}-{environment}")
}

fn network(args: &DockerArgs) -> String {
    args.network
        .as_ref_option()
        .cloned()
        .unwrap_or_else(|| DEFAULT_NETWORK.to_owned())
}

/// What `docker inspect` says about a host.
fn view_of(inspect: &Json) -> HostView {
    let host_config = &inspect["HostConfig"];
    let cpus = host_config["NanoCpus"].as_i64().unwrap_or(0) / 1_000_000_000;
    let memory_mib = host_config["Memory"].as_i64().unwrap_or(0) / (1024 * 1024);
    let address = inspect["NetworkSettings"]["Networks"]
        .as_object()
        .and_then(|networks| {
            networks
                .values()
                .filter_map(|n| n["IPAddress"].as_str())
                .find(|ip| !ip.is_empty())
                .map(str::to_owned)
        });
    HostView {
        id: inspect["Id"].as_str().unwrap_or_default().to_owned(),
        instance_type: Some(label((cpus, memory_mib))),
        container: None,
        image: inspect["Config"]["Image"].as_str().map(str::to_owned),
        private_ip: address,
        public_ip: None,
        tags: None,
        firewall: None,
    }
}

async fn engine<'a>(clients: &'a Clients, summary: &str) -> Result<&'a Docker, Failure> {
    clients.docker().await.map_err(|e| Failure::new(summary, e))
}

/// The `docker run` arguments of a host: systemd as PID 1 with the cgroup
/// tree and the mounts it needs (not `--privileged`), the engine's socket,
/// the limits and the labels. cloud-init, if the image has it, stays off: a
/// docker host is bootstrapped through `docker exec`, not user-data, and
/// cloud-init's four units would otherwise hold `systemctl
/// is-system-running` back for seconds of CPU per host (its generator reads
/// `KERNEL_CMDLINE` in place of PID 1's command line).
fn run_args(name: &str, labels: [(&str, &str); 3], args: &DockerArgs, size: Size) -> Vec<String> {
    let (cpus, memory_mib) = limits(size);
    let mut run: Vec<String> = [
        "--name",
        name,
        "--network",
        &network(args),
        "--cpus",
        &cpus.to_string(),
        "--memory",
        &format!("{memory_mib}m"),
        "--memory-swap",
        &format!("{memory_mib}m"),
        "--restart",
        "unless-stopped",
        "--env",
        "KERNEL_CMDLINE=cloud-init=disabled",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--tmpfs",
        "/tmp",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "--cgroupns=host",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    ]
    .map(str::to_owned)
    .into();
    for (key, value) in labels {
        run.extend(["--label".to_owned(), format!("{key}={value}")]);
    }
    run.push(args.image.as_ref_option().cloned().unwrap_or_default());
    run
}

#[async_trait]
impl Target for DockerTarget {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn noun(&self) -> &'static str {
        "Container"
    }

    fn block(&self) -> Block {
        use AttributeConstraint::Optional;
        use AttributeType::String;
        let attr = attribute;
        Block {
            attributes: [
                ("image", attr(String, Optional, "The host image, already on the engine (nothing is pulled): systemd as `/sbin/init`, `curl`, and a `docker` CLI with `docker compose` or `docker-compose`; `tests/host-image/build.sh` builds one. Required with `target = \"docker\"`. Changing it replaces the container.")),
                ("network", attr(String, Optional, "Docker network the host joins. Default `host` (the engine machine's network: a control plane on `localhost` is reachable and the service's ports are published on that machine). Changing it replaces the container.")),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .into(),
            description: Description::markdown("The container that is the host for `target = \"docker\"`."),
            ..Default::default()
        }
    }

    fn block_in_use(&self, state: &State) -> bool {
        state.docker.as_ref_option().is_some_and(|b| !b.is_empty())
    }

    fn validate(&self, config: &State, diags: &mut Diagnostics) {
        if config.tags.as_ref_option().is_some_and(|t| !t.is_empty()) {
            diags.error(
                "tags are not supported with target = \"docker\"",
                "The host container is labelled launch.service and launch.environment. Remove tags.",
                AttributePath::new("tags"),
            );
        }
        let blocks = match &config.docker {
            Value::Value(blocks) => blocks.as_slice(),
            Value::Null => &[][..],
            Value::Unknown => return,
        };
        let image = blocks.first().map(|b| b.image.clone()).unwrap_or_default();
        if image.is_null() || image.as_ref_option().is_some_and(|i| i.trim().is_empty()) {
            diags.error(
                "docker.image is required with target = \"docker\"",
                "Add docker { image = \"…\" } naming a host image on the engine: systemd, curl and a docker CLI with compose (tests/host-image/build.sh builds one and prints its tag).",
                AttributePath::new("docker").index(0).attribute("image"),
            );
        }
    }

    /// A missing engine or a bad `docker.host` is said at plan time.
    async fn missing_settings(&self, clients: &Clients) -> Option<Failure> {
        clients
            .docker()
            .await
            .err()
            .map(|e| Failure::new("target = \"docker\" needs a Docker engine that answers", e))
    }

    fn plan(&self, planned: &mut State, prior: Option<&State>) {
        planned.tags_all = Value::Null;
        planned.public_ip = Value::Null;
        if prior.is_none() {
            planned.image_id = args(planned).image;
            if planned.image_id.is_null() {
                planned.image_id = Value::Unknown;
            }
        }
        planned.instance_type = match Size::wanted(&planned.size) {
            Some(size) => Value::Value(label(limits(size))),
            None => Value::Unknown,
        };
    }

    fn replacements(&self, prior: &State, planned: &State) -> Vec<AttributePath> {
        let (before, after) = (args(prior), args(planned));
        let path = |field: &'static str| AttributePath::new("docker").index(0).attribute(field);
        let mut replace = Vec::new();
        if before.image != after.image {
            replace.push(path("image"));
        }
        if network(&before) != network(&after) {
            replace.push(path("network"));
        }
        replace
    }

    async fn connect(&self, clients: &Clients) -> Result<(), Failure> {
        engine(clients, "cannot create launch_service")
            .await
            .map(drop)
    }

    async fn create(&self, clients: &Clients, spec: &HostSpec<'_>, planned: &State) -> Created {
        let docker = match engine(clients, "cannot create launch_service").await {
            Ok(docker) => docker,
            Err(f) => return Created::Nothing(f),
        };
        let (service, environment) = (
            spec.labels.service.as_str(),
            spec.labels.environment.as_str(),
        );
        let name = container_name(service, environment);
        // A container of that name is not ours: never adopt (or later
        // destroy) it.
        match docker.inspect(&name).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Created::Nothing(Failure::new(
                    format!(
                        "cannot create launch_service: a container named {name} already exists"
                    ),
                    format!(
                        "Import it (terraform import <address> {environment}/{service}) or remove it (docker rm -f {name}), then apply again."
                    ),
                ));
            }
            Err(e) => return Created::Nothing(Failure::new("cannot create launch_service", e)),
        }
        let args = args(planned);
        let size = Size::wanted(&planned.size).unwrap_or(Size::DEFAULT);
        let labels = [
            (LABEL_SERVICE, service),
            (LABEL_ENVIRONMENT, environment),
            MANAGED_LABEL,
        ];
        let run = docker.run(&run_args(&name, labels, &args, size)).await;
        // `docker run` may create the container and then fail to start it.
        let inspect = match (run, docker.inspect(&name).await) {
            (Ok(_), Ok(Some(inspect))) => inspect,
            (Err(e), Ok(Some(inspect))) => {
                return Created::Host {
                    view: view_of(&inspect),
                    failed: Some(Failure::new(format!("container {name} did not start"), e)),
                };
            }
            (Err(e), _) => {
                return Created::Nothing(Failure::new(
                    format!("cannot create launch_service: container {name} was not created"),
                    e,
                ));
            }
            (Ok(id), _) => {
                return Created::Host {
                    view: HostView {
                        id,
                        instance_type: Some(label(limits(size))),
                        image: args.image.as_ref_option().cloned(),
                        ..HostView::default()
                    },
                    failed: Some(Failure::new(
                        format!("container {name} vanished right after it was started"),
                        "Look at the engine's events (docker events) for what removed it.",
                    )),
                };
            }
        };
        let view = view_of(&inspect);
        info!(container = %name, id = %view.id, "container started: bootstrapping through docker exec");
        let script = Bootstrap {
            control_url: spec.control_url,
            join_token: &spec.join.token,
            labels: spec.labels,
        }
        .script();
        let failed = docker
            .bootstrap(&view.id, &script, spec.deadline)
            .await
            .err()
            .map(|e| {
                Failure::new(
                    format!("the bootstrap did not complete on container {name}"),
                    e,
                )
            });
        Created::Host { view, failed }
    }

    /// A stopped container is reported as a warning.
    async fn read(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        instance_id: &str,
        _prior: &State,
    ) -> Result<Option<HostView>, Failure> {
        let docker = engine(clients, "cannot read launch_service").await?;
        let inspect = match docker.read(instance_id).await {
            Ok(Some(inspect)) => inspect,
            Ok(None) => {
                info!(%instance_id, "container is gone: removing it from state so the plan re-creates it");
                return Ok(None);
            }
            Err(e) => {
                return Err(Failure::new(
                    format!("cannot read container {instance_id}"),
                    e,
                ));
            }
        };
        if inspect["State"]["Running"] != Json::Bool(true) {
            let now = inspect["State"]["Status"].as_str().unwrap_or("unknown");
            let name = inspect["Name"]
                .as_str()
                .unwrap_or(instance_id)
                .trim_start_matches('/');
            diags.root_warning(
                format!("container {name} is {now}"),
                format!("Its service is down until it runs again: docker start {name}. Terraform does not start it."),
            );
        }
        Ok(Some(view_of(&inspect)))
    }

    /// CPU and memory limits, live.
    async fn update(
        &self,
        clients: &Clients,
        instance_id: &str,
        _prior: &State,
        planned: &State,
        _deadline: Instant,
    ) -> Result<HostView, (Failure, Option<HostView>)> {
        let docker = engine(clients, "cannot update launch_service")
            .await
            .map_err(|f| (f, None))?;
        let Some(size) = Size::wanted(&planned.size) else {
            return Err((
                Failure::new("size is not known", "Give size a value known at plan time."),
                None,
            ));
        };
        let (cpus, memory_mib) = limits(size);
        info!(%instance_id, cpus, memory_mib, "changing the container's limits");
        let changed = docker.set_limits(instance_id, cpus, memory_mib).await;
        let observed = docker.inspect(instance_id).await;
        match (changed, observed) {
            (Ok(()), Ok(Some(inspect))) => Ok(view_of(&inspect)),
            (Ok(()), Ok(None)) => Err((
                Failure::new(
                    format!("container {instance_id} is gone"),
                    "Run terraform apply again to re-create it.",
                ),
                None,
            )),
            (Ok(()), Err(e)) => Err((
                Failure::new(format!("cannot read container {instance_id}"), e),
                None,
            )),
            (Err(e), observed) => Err((
                Failure::new(format!("cannot resize container {instance_id}"), e),
                observed.ok().flatten().as_ref().map(view_of),
            )),
        }
    }

    /// The host, then what its agent ran beside it (the compose project
    /// `<service>-<environment>`): nothing of the service is left running.
    async fn destroy(
        &self,
        clients: &Clients,
        instance_id: &str,
        _deadline: Instant,
    ) -> Result<(), Failure> {
        let fail = |e: crate::docker::DockerError| {
            Failure::new(format!("cannot destroy container {instance_id}"), e)
        };
        let docker = clients.docker().await.map_err(fail)?;
        let project = match docker.inspect(instance_id).await.map_err(fail)? {
            Some(inspect) => {
                let labels = &inspect["Config"]["Labels"];
                match (
                    labels[LABEL_SERVICE].as_str(),
                    labels[LABEL_ENVIRONMENT].as_str(),
                ) {
                    (Some(service), Some(environment)) => Some(format!("{service}-{environment}")),
                    _ => None,
                }
            }
            None => None,
        };
        docker.remove(instance_id).await.map_err(fail)?;
        info!(%instance_id, "container removed");
        if let Some(project) = project {
            docker.remove_project(&project).await.map_err(fail)?;
            info!(%project, "the service's containers and networks removed");
        }
        Ok(())
    }

    /// `<environment>/<name>` names the container `launch-<name>-<environment>`
    /// when an engine is configured and has it.
    async fn import(&self, diags: &mut Diagnostics, clients: &Clients, id: &str) -> Imported {
        let Some((environment, name)) = id.split_once('/') else {
            return Imported::NotMine;
        };
        if !clients.docker_configured() {
            return Imported::NotMine;
        }
        let docker = match clients.docker().await {
            Ok(docker) => docker,
            Err(_) => return Imported::NotMine,
        };
        let inspect = match docker.inspect(&container_name(name, environment)).await {
            Ok(Some(inspect)) => inspect,
            Ok(None) => return Imported::NotMine,
            Err(e) => {
                diags.root_warning(
                    "cannot look for the service's container on Docker",
                    e.to_string(),
                );
                return Imported::NotMine;
            }
        };
        let labels = &inspect["Config"]["Labels"];
        if labels[LABEL_SERVICE].as_str() != Some(name)
            || labels[LABEL_ENVIRONMENT].as_str() != Some(environment)
        {
            diags.root_error(
                format!("container {} was not made by launch_service", container_name(name, environment)),
                "It lacks the labels launch.service and launch.environment: only containers this provider created can be imported.",
            );
            return Imported::Failed;
        }
        let view = view_of(&inspect);
        let cpus = inspect["HostConfig"]["NanoCpus"].as_i64().unwrap_or(0) / 1_000_000_000;
        let memory_mib = inspect["HostConfig"]["Memory"].as_i64().unwrap_or(0) / (1024 * 1024);
        let size = Size::ALL
            .into_iter()
            .find(|s| limits(*s) == (cpus, memory_mib))
            .unwrap_or(Size::DEFAULT);
        let network = inspect["HostConfig"]["NetworkMode"]
            .as_str()
            .filter(|n| *n != DEFAULT_NETWORK)
            .map(|n| Value::Value(n.to_owned()))
            .unwrap_or(Value::Null);
        let mut state = State {
            name: Value::Value(name.to_owned()),
            environment: Value::Value(environment.to_owned()),
            target: Value::Value(self.name().to_owned()),
            size: Value::Value(size.name().to_owned()),
            docker: Value::Value(vec![DockerArgs {
                image: view.image.clone().map(Value::Value).unwrap_or(Value::Null),
                network,
            }]),
            ..Default::default()
        };
        view.observe(&mut state);
        Imported::Found(Box::new(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_named_and_limited_by_its_size() {
        let args = DockerArgs {
            image: Value::Value("launch-host:1".into()),
            network: Value::Null,
        };
        let labels = [
            ("launch.service", "web"),
            ("launch.environment", "prod"),
            ("launch.managed-by", "x"),
        ];
        let run = run_args("launch-web-prod", labels, &args, Size::Medium).join(" ");
        assert!(run.contains("--name launch-web-prod"), "{run}");
        assert!(run.contains("--network host"), "{run}");
        assert!(run.contains("--cpus 2 --memory 2048m"), "{run}");
        assert!(run.contains("--label launch.service=web"), "{run}");
        assert!(run.ends_with("launch-host:1"), "{run}");
        assert!(!run.contains("--privileged"), "{run}");
    }

    #[test]
    fn docker_needs_an_image_and_refuses_tags() {
        let mut state = State {
            name: Value::Value("web".into()),
            target: Value::Value("docker".into()),
            ..Default::default()
        };
        let mut diags = Diagnostics::default();
        DockerTarget.validate(&state, &mut diags);
        assert_eq!(diags.errors.len(), 1);
        assert!(
            diags.errors[0]
                .summary
                .starts_with("docker.image is required")
        );
        state.docker = Value::Value(vec![DockerArgs {
            image: Value::Value("launch-host:1".into()),
            network: Value::Null,
        }]);
        let mut diags = Diagnostics::default();
        DockerTarget.validate(&state, &mut diags);
        assert!(diags.errors.is_empty());
    }

    #[test]
    fn inspect_output_reads_as_the_host() {
        let inspect: Json = serde_json::json!({
            "Id": "abc123",
            "Config": { "Image": "launch-host:1" },
            "HostConfig": { "NanoCpus": 2_000_000_000i64, "Memory": 2147483648i64 },
            "NetworkSettings": { "Networks": { "lan": { "IPAddress": "172.18.0.5" } } },
        });
        let view = view_of(&inspect);
        assert_eq!(view.id, "abc123");
        assert_eq!(view.instance_type.as_deref(), Some("2 cpus, 2048 MiB"));
        assert_eq!(view.private_ip.as_deref(), Some("172.18.0.5"));
        assert_eq!(view.image.as_deref(), Some("launch-host:1"));
    }
}
