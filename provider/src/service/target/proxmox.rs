//! `target = "proxmox"`: the host is an unprivileged LXC with nesting and
//! keyctl (for Docker), created through the PVE API (`crate::proxmox`) with
//! a fresh SSH key, started, its address awaited, and the bootstrap run over
//! SSH. Sizes are cores, memory and a disk that grows but never shrinks;
//! `config` holds everything decided without I/O.

mod config;
mod firewall;

use std::time::Duration;

use async_trait::async_trait;
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};
use tokio::time::Instant;
use tracing::info;

use super::{Created, Failure, HostSpec, HostView, Imported, Size, Target};
use crate::bootstrap::Bootstrap;
use crate::provider::{Clients, attribute};
use crate::proxmox::firewall::Ingress;
use crate::proxmox::{Proxmox, ProxmoxError, first_ipv4, split_tags};
use crate::service::state::State;
use crate::ssh::{self, KeyPair};
use config::{
    DEFAULT_BRIDGE, DEFAULT_IP, DEFAULT_STORAGE, args, description, description_fields, or_default,
    parse_container_id, wanted_shape,
};
pub use config::{ProxmoxArgs, Shape};

pub struct ProxmoxTarget;

/// Copies the container's shape into the state's `proxmox` block.
pub fn observe_shape(state: &mut State, shape: Shape) {
    if let Value::Value(blocks) = &mut state.proxmox
        && let Some(args) = blocks.first_mut()
    {
        args.set_shape(Some(shape));
    }
}

/// Copies what the container's firewall says into the state's `proxmox`
/// block (see `firewall::observe`).
pub fn observe_firewall(state: &mut State, seen: &Ingress) {
    if let Value::Value(blocks) = &mut state.proxmox
        && let Some(args) = blocks.first_mut()
    {
        firewall::observe(args, seen, false);
    }
}

/// The container as Proxmox has it, seen as `asked` (the state it is
/// read into) wants it seen.
async fn observe(
    proxmox: &Proxmox,
    node: &str,
    vmid: i64,
    instance_id: &str,
    asked: &State,
) -> Result<HostView, ProxmoxError> {
    let config = proxmox.config(node, vmid).await?;
    let mut view = view_of(instance_id, &config, asked);
    view.firewall = observed_firewall(proxmox, node, vmid, &config, asked).await?;
    Ok(view)
}

/// The firewall as Proxmox has it, when the configuration manages it:
/// enabled only if both the options and `net0` say so.
async fn observed_firewall(
    proxmox: &Proxmox,
    node: &str,
    vmid: i64,
    config: &config::Config,
    asked: &State,
) -> Result<Option<Ingress>, ProxmoxError> {
    if args(asked).firewall.is_null() {
        return Ok(None);
    }
    let mut seen = proxmox.ingress(node, vmid).await?;
    let net0 = config.get("net0").and_then(|v| v.as_str()).unwrap_or("");
    seen.enabled &= firewall::flagged(net0);
    Ok(Some(seen))
}

/// How an import names a container.
enum ContainerRef {
    /// `<node>/<vmid>`.
    Id(String, i64),
    /// `<environment>/<name>`: by the tags and host name create gives it.
    Labels(String, String),
}

fn bad_id(instance_id: &str) -> Failure {
    Failure::new(
        format!("instance_id {instance_id:?} is not <node>/<vmid>"),
        "Remove the resource from state (terraform state rm) and import it again.",
    )
}

/// What the container's config says, with the address known so far.
fn view_of(instance_id: &str, config: &config::Config, state: &State) -> HostView {
    HostView {
        id: instance_id.to_owned(),
        instance_type: None,
        container: Some(Shape::of(config)),
        image: description_fields(config)
            .remove("template")
            .or_else(|| state.image_id.as_ref_option().cloned()),
        private_ip: state.private_ip.as_ref_option().cloned(),
        public_ip: None,
        tags: None,
        firewall: None,
    }
}

async fn client<'a>(clients: &'a Clients, summary: &str) -> Result<&'a Proxmox, Failure> {
    clients
        .proxmox()
        .await
        .map_err(|e| Failure::new(summary, e))
}

/// The containers an import ID names, as `(node, vmid)`.
async fn find_containers(
    proxmox: &Proxmox,
    wanted: &ContainerRef,
) -> Result<Vec<(String, i64)>, ProxmoxError> {
    match wanted {
        ContainerRef::Id(node, vmid) => Ok(proxmox
            .status(node, *vmid)
            .await?
            .map(|_| vec![(node.clone(), *vmid)])
            .unwrap_or_default()),
        ContainerRef::Labels(environment, name) => {
            let hostname = format!("{name}-{environment}");
            Ok(proxmox
                .containers()
                .await?
                .into_iter()
                .filter(|r| {
                    let tags = split_tags(r.tags.as_deref().unwrap_or(""));
                    ["launch", name.as_str(), environment.as_str()]
                        .iter()
                        .all(|t| tags.iter().any(|have| have == t))
                        && r.name.as_deref() == Some(hostname.as_str())
                })
                .filter_map(|r| Some((r.node, r.vmid?)))
                .collect())
        }
    }
}

/// Waits for the container's first IPv4 address, as PVE reports it.
async fn wait_for_ip(
    proxmox: &Proxmox,
    node: &str,
    vmid: i64,
    deadline: Instant,
) -> Result<String, String> {
    let started = Instant::now();
    let mut last: String;
    loop {
        match proxmox.interfaces(node, vmid).await {
            Ok(interfaces) => {
                if let Some(ip) = first_ipv4(&interfaces) {
                    return Ok(ip);
                }
                last = format!("interfaces: {interfaces}");
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() + Duration::from_secs(1) > deadline {
            return Err(format!(
                "container {node}/{vmid} had no IPv4 address after {}s (last seen: {last}). With ip = \"dhcp\" check the bridge's DHCP server, or set a static ip",
                started.elapsed().as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[async_trait]
impl Target for ProxmoxTarget {
    fn name(&self) -> &'static str {
        "proxmox"
    }

    fn block_in_use(&self, state: &State) -> bool {
        state.proxmox.as_ref_option().is_some_and(|b| !b.is_empty())
    }

    fn noun(&self) -> &'static str {
        "Container"
    }

    fn block(&self) -> Block {
        use AttributeConstraint::{Computed, Optional};
        use AttributeType::{Bool, Number, Set, String};
        let attr = attribute;
        Block {
            attributes: [
                ("node", attr(String, Optional, "Proxmox node to create the container on, e.g. `pve1`. Required with `target = \"proxmox\"`. Changing it replaces the container.")),
                ("template", attr(String, Optional, "OS template volume, e.g. `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`: a Debian or Ubuntu template with sshd (the standard ones have it). Required with `target = \"proxmox\"`. Changing it replaces the container.")),
                ("storage", attr(String, Optional, "Storage for the root filesystem. Default `local-lvm`. Changing it replaces the container.")),
                ("bridge", attr(String, Optional, "Bridge for `eth0`. Default `vmbr0`. Changing it replaces the container.")),
                ("vmid", attr(Number, Optional, "VMID to use. Default: the cluster's next free one (`/cluster/nextid`). Changing it replaces the container.")),
                ("ip", attr(String, Optional, "`dhcp` (the default) or a static IPv4 address with prefix, e.g. `192.168.1.50/24`. Changing it replaces the container.")),
                ("gateway", attr(String, Optional, "IPv4 gateway for a static `ip`. Changing it replaces the container.")),
                ("firewall", attr(Bool, Optional, "Manage the container's Proxmox firewall: `true` enables it (inbound DROP, outbound ACCEPT, `firewall=1` on `eth0`) with one ACCEPT rule per `ingress_tcp_ports`; `false` disables it. Unset, the provider leaves it alone. Rules it did not make are kept. A managed rule changed out of band shows in the plan and is put back. Enabled after the bootstrap, which needs SSH. Updated in place.")),
                ("ingress_tcp_ports", attr(Set(Box::new(Number)), Optional, "Inbound TCP ports the firewall lets in, e.g. `[80, 443]` (the module passes 80 and 443 when public, plus `ingress_ports`). Needs `firewall = true`. Updated in place.")),
                ("cores", attr(Number, Computed, "The container's cores, as `size` sets them.")),
                ("memory_mib", attr(Number, Computed, "The container's memory in MiB, as `size` sets it.")),
                ("disk_gib", attr(Number, Computed, "The root disk's size in GiB: what `size` asks for, or more when it was larger (a disk grows, never shrinks).")),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .into(),
            description: Description::markdown("Where and how to create the LXC for `target = \"proxmox\"`."),
            ..Default::default()
        }
    }

    fn validate(&self, config: &State, diags: &mut Diagnostics) {
        config::validate(config, diags);
    }

    async fn missing_settings(&self, clients: &Clients) -> Option<Failure> {
        clients.proxmox_missing().map(|missing| {
            Failure::new(
                "target = \"proxmox\" needs the provider's Proxmox settings",
                format!("{missing}."),
            )
        })
    }

    /// The shape (a disk never shrinks), the template, no public address
    /// and no AWS tags.
    fn plan(&self, planned: &mut State, prior: Option<&State>) {
        planned.tags_all = Value::Null;
        planned.public_ip = Value::Null;
        if prior.is_none() {
            planned.image_id = args(planned).template;
            if planned.image_id.is_null() {
                planned.image_id = Value::Unknown;
            }
        }
        planned.instance_type = Value::Null;
        let shape = wanted_shape(planned).map(|mut shape| {
            if let Some(before) = prior.and_then(|p| args(p).shape()) {
                shape.disk_gib = shape.disk_gib.max(before.disk_gib);
            }
            shape
        });
        if let Value::Value(blocks) = &mut planned.proxmox
            && let Some(block) = blocks.first_mut()
        {
            block.set_shape(shape);
        }
    }

    /// Providers before this one kept the shape as a label in
    /// `instance_type` (`1 cores, 1024 MiB, 8 GiB`): it moves to the block.
    fn migrate(&self, state: &mut State) {
        let Value::Value(label) = &state.instance_type else {
            return;
        };
        if let Some(shape) = Shape::parse_label(label) {
            observe_shape(state, shape);
        }
        state.instance_type = Value::Null;
    }

    /// A setting unknown to the prior state (after an import) is adopted.
    fn replacements(&self, prior: &State, planned: &State) -> Vec<AttributePath> {
        let (before, after) = (args(prior), args(planned));
        let mut replace = Vec::new();
        let path = |field: &'static str| AttributePath::new("proxmox").index(0).attribute(field);
        for (field, b, a) in [
            ("node", before.node.clone(), after.node.clone()),
            ("template", before.template.clone(), after.template.clone()),
            (
                "storage",
                or_default(&before.storage, DEFAULT_STORAGE),
                or_default(&after.storage, DEFAULT_STORAGE),
            ),
            (
                "bridge",
                or_default(&before.bridge, DEFAULT_BRIDGE),
                or_default(&after.bridge, DEFAULT_BRIDGE),
            ),
            (
                "ip",
                or_default(&before.ip, DEFAULT_IP),
                or_default(&after.ip, DEFAULT_IP),
            ),
            ("gateway", before.gateway.clone(), after.gateway.clone()),
        ] {
            if b != a && !(field == "template" && b.is_null()) {
                replace.push(path(field));
            }
        }
        let actual = prior
            .instance_id
            .as_ref_option()
            .and_then(|id| parse_container_id(id))
            .map(|(_, vmid)| vmid);
        match after.vmid {
            Value::Value(v) if Some(v) != actual => replace.push(path("vmid")),
            Value::Unknown => replace.push(path("vmid")),
            _ => {}
        }
        replace
    }

    async fn connect(&self, clients: &Clients) -> Result<(), Failure> {
        client(clients, "cannot create launch_service")
            .await
            .map(drop)
    }

    async fn create(&self, clients: &Clients, spec: &HostSpec<'_>, planned: &State) -> Created {
        let args = args(planned);
        let node = args.node.as_ref_option().cloned().unwrap_or_default();
        let template = args.template.as_ref_option().cloned().unwrap_or_default();
        let text_or = |v: &Value<String>, default: &str| {
            v.as_ref_option()
                .cloned()
                .unwrap_or_else(|| default.to_owned())
        };
        let storage = text_or(&args.storage, DEFAULT_STORAGE);
        let bridge = text_or(&args.bridge, DEFAULT_BRIDGE);
        let ip = text_or(&args.ip, DEFAULT_IP);
        let shape = wanted_shape(planned).unwrap_or(Shape::for_size(Size::DEFAULT));
        let labels = spec.labels;
        let (service, environment) = (labels.service.as_str(), labels.environment.as_str());
        let deadline = spec.deadline;
        let nothing = |e: String| Created::Nothing(Failure::new("cannot create launch_service", e));

        // 1. The key and the VMID: nothing exists yet.
        let proxmox = match client(clients, "cannot create launch_service").await {
            Ok(proxmox) => proxmox,
            Err(f) => return Created::Nothing(f),
        };
        let keys = match KeyPair::generate(&format!("launch-{service}-{environment}")).await {
            Ok(keys) => keys,
            Err(e) => return nothing(e.to_string()),
        };
        let mut vmid = match args.vmid.as_ref_option() {
            Some(vmid) => *vmid,
            None => match proxmox.next_id().await {
                Ok(vmid) => vmid,
                Err(e) => return nothing(e.to_string()),
            },
        };
        let mut net0 = format!("name=eth0,bridge={bridge},ip={ip}");
        if let Some(gateway) = args.gateway.as_ref_option() {
            net0.push_str(&format!(",gw={gateway}"));
        }
        let wanted_firewall = firewall::wanted(&args);
        if wanted_firewall.as_ref().is_some_and(|w| w.enabled) {
            net0 = firewall::with_firewall_flag(&net0);
        }
        let params = |vmid: i64| -> Vec<(&str, String)> {
            vec![
                ("vmid", vmid.to_string()),
                ("ostemplate", template.clone()),
                ("hostname", format!("{service}-{environment}")),
                ("cores", shape.cores.to_string()),
                ("memory", shape.memory_mib.to_string()),
                ("swap", "512".to_owned()),
                ("rootfs", format!("{storage}:{}", shape.disk_gib)),
                ("net0", net0.clone()),
                ("features", "nesting=1,keyctl=1".to_owned()),
                ("unprivileged", "1".to_owned()),
                ("onboot", "1".to_owned()),
                ("tags", format!("launch;{service};{environment}")),
                ("description", description(labels, &template)),
                ("ssh-public-keys", keys.public.clone()),
            ]
        };
        // Terraform creates in parallel: a VMID from nextid can be taken by
        // another create before ours arrives. Then take the next free one.
        let mut attempt = 1;
        let upid = loop {
            match proxmox.create_lxc(&node, &params(vmid)).await {
                Err(ProxmoxError::VmidTaken { .. }) if args.vmid.is_null() && attempt < 5 => {
                    info!(vmid, "VMID taken meanwhile: taking the next free one");
                    attempt += 1;
                    match proxmox.next_id().await {
                        Ok(next) => vmid = next.max(vmid + 1),
                        Err(e) => break Err(e),
                    }
                }
                other => break other,
            }
        };
        let instance_id = format!("{node}/{vmid}");
        let created = match upid {
            Ok(upid) => {
                proxmox
                    .wait_task("creating the container", &upid, deadline)
                    .await
            }
            Err(e) => {
                return Created::Nothing(Failure::new(
                    format!(
                        "cannot create launch_service: container {instance_id} was not created"
                    ),
                    e,
                ));
            }
        };
        info!(%instance_id, %template, "container created");

        // 2. From here on the container may exist.
        let mut view = HostView {
            id: instance_id.clone(),
            container: Some(shape),
            image: Some(template.clone()),
            ..HostView::default()
        };
        let host = |view: &HostView, summary: String, e: String| Created::Host {
            view: view.clone(),
            failed: Some(Failure::new(summary, e)),
        };
        if let Err(e) = created {
            // PVE removes a container whose create task failed.
            if let Ok(None) = proxmox.status(&node, vmid).await {
                return Created::Nothing(Failure::new(
                    format!(
                        "cannot create launch_service: the Proxmox task creating container {instance_id} failed"
                    ),
                    e,
                ));
            }
            return host(
                &view,
                format!("the Proxmox task creating container {instance_id} did not succeed"),
                e.to_string(),
            );
        }
        let started = match proxmox.power(&node, vmid, "start").await {
            Ok(upid) => {
                proxmox
                    .wait_task("starting the container", &upid, deadline)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            return host(
                &view,
                format!("container {instance_id} did not start"),
                e.to_string(),
            );
        }
        if let Ok(config) = proxmox.config(&node, vmid).await {
            view.container = Some(Shape::of(&config));
            if let Some(template) = description_fields(&config).remove("template") {
                view.image = Some(template);
            }
        }
        let address = match wait_for_ip(proxmox, &node, vmid, deadline).await {
            Ok(address) => address,
            Err(e) => {
                return host(&view, format!("container {instance_id} got no address"), e);
            }
        };
        view.private_ip = Some(address.clone());
        info!(%instance_id, %address, "container is up: bootstrapping over SSH");
        let script = Bootstrap {
            control_url: spec.control_url,
            join_token: &spec.join.token,
            labels,
        }
        .script();
        if let Err(e) = ssh::run_script(&keys, &proxmox.ssh_user, &address, &script, deadline).await
        {
            return host(
                &view,
                format!("the bootstrap did not complete on container {instance_id}"),
                e.to_string(),
            );
        }
        // Last: the bootstrap needed SSH, which the firewall may not let in.
        if let Some(wanted) = &wanted_firewall {
            if let Err(e) = proxmox.set_ingress(&node, vmid, wanted).await {
                return host(
                    &view,
                    format!("the firewall of container {instance_id} was not set up"),
                    e.to_string(),
                );
            }
            view.firewall = Some(wanted.clone());
        }
        Created::Host { view, failed: None }
    }

    /// A stopped container is reported as a warning.
    async fn read(
        &self,
        diags: &mut Diagnostics,
        clients: &Clients,
        instance_id: &str,
        prior: &State,
    ) -> Result<Option<HostView>, Failure> {
        let (node, vmid) = parse_container_id(instance_id).ok_or_else(|| bad_id(instance_id))?;
        let proxmox = client(clients, "cannot read launch_service").await?;
        let cannot_read =
            |e: ProxmoxError| Failure::new(format!("cannot read container {instance_id}"), e);
        let status = match proxmox.status(&node, vmid).await.map_err(cannot_read)? {
            Some(status) => status,
            None => {
                info!(%instance_id, "container is gone: removing it from state so the plan re-creates it");
                return Ok(None);
            }
        };
        let config = proxmox.config(&node, vmid).await.map_err(cannot_read)?;
        let mut view = view_of(instance_id, &config, prior);
        view.firewall = observed_firewall(proxmox, &node, vmid, &config, prior)
            .await
            .map_err(cannot_read)?;
        if status["status"] == "running" {
            if let Ok(interfaces) = proxmox.interfaces(&node, vmid).await
                && let Some(ip) = first_ipv4(&interfaces)
            {
                view.private_ip = Some(ip);
            }
        } else {
            let now = status["status"].as_str().unwrap_or("unknown").to_owned();
            diags.root_warning(
                format!("container {instance_id} is {now}"),
                format!("Its service is down until it runs again: start it (pct start {vmid} on {node}, or Start in the Proxmox UI). Terraform does not start it."),
            );
        }
        Ok(Some(view))
    }

    /// Cores and memory in place, the disk grown (never shrunk).
    async fn update(
        &self,
        clients: &Clients,
        instance_id: &str,
        prior: &State,
        planned: &State,
        deadline: Instant,
    ) -> Result<HostView, (Failure, Option<HostView>)> {
        let plain = |f: Failure| (f, None);
        let (node, vmid) =
            parse_container_id(instance_id).ok_or_else(|| plain(bad_id(instance_id)))?;
        let proxmox = client(clients, "cannot update launch_service")
            .await
            .map_err(plain)?;
        let cannot_read =
            |e: ProxmoxError| Failure::new(format!("cannot read container {instance_id}"), e);
        let (current, net0) = match proxmox.config(&node, vmid).await {
            Ok(config) => (
                Shape::of(&config),
                config
                    .get("net0")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned(),
            ),
            Err(e) => return Err(plain(cannot_read(e))),
        };
        let Some(wanted) = wanted_shape(planned) else {
            return Err(plain(Failure::new(
                "size is not known",
                "Give size a value known at plan time.",
            )));
        };
        let changed: Result<(), ProxmoxError> = async {
            if (wanted.cores, wanted.memory_mib) != (current.cores, current.memory_mib) {
                info!(%instance_id, cores = wanted.cores, memory_mib = wanted.memory_mib, "resizing the container");
                proxmox
                    .set_config(
                        &node,
                        vmid,
                        &[
                            ("cores", wanted.cores.to_string()),
                            ("memory", wanted.memory_mib.to_string()),
                        ],
                    )
                    .await?;
            }
            if wanted.disk_gib > current.disk_gib {
                info!(%instance_id, disk_gib = wanted.disk_gib, "growing the container's disk");
                if let Some(upid) = proxmox.grow_rootfs(&node, vmid, wanted.disk_gib).await? {
                    proxmox
                        .wait_task("growing the disk", &upid, deadline)
                        .await?;
                }
            }
            if let Some(wanted) = firewall::wanted(&args(planned)) {
                if wanted.enabled && !firewall::flagged(&net0) {
                    info!(%instance_id, "turning on the firewall flag of net0");
                    let net0 = firewall::with_firewall_flag(&net0);
                    proxmox.set_config(&node, vmid, &[("net0", net0)]).await?;
                }
                proxmox.set_ingress(&node, vmid, &wanted).await?;
            }
            Ok(())
        }
        .await;
        // Whatever happened, record what Proxmox says now.
        if let Err(e) = changed {
            return Err((
                Failure::new(format!("cannot update container {instance_id}"), e),
                observe(proxmox, &node, vmid, instance_id, prior).await.ok(),
            ));
        }
        observe(proxmox, &node, vmid, instance_id, planned)
            .await
            .map_err(|e| plain(cannot_read(e)))
    }

    /// Stops (if running) and destroys the container with its disks.
    async fn destroy(
        &self,
        clients: &Clients,
        instance_id: &str,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let fail = |e: String| Failure::new(format!("cannot destroy container {instance_id}"), e);
        let proxmox = clients.proxmox().await.map_err(fail)?;
        let (node, vmid) = parse_container_id(instance_id)
            .ok_or_else(|| fail(format!("{instance_id:?} is not <node>/<vmid>")))?;
        let gone: Result<bool, ProxmoxError> = async {
            let Some(status) = proxmox.status(&node, vmid).await? else {
                return Ok(true);
            };
            if status["status"] == "running" {
                let upid = proxmox.power(&node, vmid, "stop").await?;
                proxmox
                    .wait_task("stopping the container", &upid, deadline)
                    .await?;
            }
            let upid = proxmox.destroy(&node, vmid).await?;
            proxmox
                .wait_task("destroying the container", &upid, deadline)
                .await?;
            Ok(false)
        }
        .await;
        match gone.map_err(|e| fail(e.to_string()))? {
            true => info!(%instance_id, "container is already gone"),
            false => info!(%instance_id, "container destroyed"),
        }
        Ok(())
    }

    /// `<node>/<vmid>` is always a container's; `<environment>/<name>` is
    /// one when Proxmox is configured and has a container tagged for it.
    async fn import(&self, diags: &mut Diagnostics, clients: &Clients, id: &str) -> Imported {
        let wanted = match id.split_once('/') {
            Some((node, vmid)) if vmid.parse::<i64>().is_ok() => {
                ContainerRef::Id(node.to_owned(), vmid.parse().unwrap_or_default())
            }
            Some((environment, name)) if clients.proxmox_configured() => {
                let wanted = ContainerRef::Labels(environment.to_owned(), name.to_owned());
                let found = match clients.proxmox().await {
                    Ok(proxmox) => find_containers(proxmox, &wanted)
                        .await
                        .map_err(|e| format!("{e}. Looking on AWS instead.")),
                    Err(e) => Err(e),
                };
                match found {
                    Ok(found) if !found.is_empty() => wanted,
                    Ok(_) => return Imported::NotMine,
                    Err(e) => {
                        diags.root_warning("cannot look for the service's container on Proxmox", e);
                        return Imported::NotMine;
                    }
                }
            }
            _ => return Imported::NotMine,
        };
        match self.import_container(clients, wanted).await {
            Ok(state) => Imported::Found(Box::new(state)),
            Err(f) => {
                f.report(diags);
                Imported::Failed
            }
        }
    }
}

impl ProxmoxTarget {
    async fn import_container(
        &self,
        clients: &Clients,
        wanted: ContainerRef,
    ) -> Result<State, Failure> {
        let proxmox = client(clients, "cannot import launch_service").await?;
        let id = match &wanted {
            ContainerRef::Id(node, vmid) => format!("{node}/{vmid}"),
            ContainerRef::Labels(environment, name) => format!("{environment}/{name}"),
        };
        let found = find_containers(proxmox, &wanted)
            .await
            .map_err(|e| Failure::new("cannot import launch_service", e))?;
        let (node, vmid) = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(Failure::new(
                    format!("no container to import for {id}"),
                    "No Proxmox container has that node/vmid, or tags launch, <name>, <environment> and host name <name>-<environment>.",
                ));
            }
            many => {
                let ids: Vec<String> = many.iter().map(|(n, v)| format!("{n}/{v}")).collect();
                return Err(Failure::new(
                    format!("{} containers are tagged for {id}", many.len()),
                    format!(
                        "Containers {}: import one by <node>/<vmid>, or destroy the extra ones.",
                        ids.join(", ")
                    ),
                ));
            }
        };
        let config = proxmox
            .config(&node, vmid)
            .await
            .map_err(|e| Failure::new("cannot import launch_service", e))?;
        let fields = description_fields(&config);
        let (environment, name) = match wanted {
            ContainerRef::Labels(environment, name) => (environment, name),
            ContainerRef::Id(..) => match (fields.get("environment"), fields.get("service")) {
                (Some(e), Some(n)) => (e.clone(), n.clone()),
                _ => {
                    return Err(Failure::new(
                        format!("container {id} was not made by launch_service"),
                        "Its description has no line `launch: service=<name> environment=<environment>`: only containers this provider created can be imported.",
                    ));
                }
            },
        };
        let mut state = State {
            name: Value::Value(name),
            environment: Value::Value(environment),
            target: Value::Value(self.name().to_owned()),
            ..Default::default()
        };
        if state.labels().is_none() {
            return Err(Failure::new(
                format!("import ID {id:?} does not name a service"),
                "Use <environment>/<name> with DNS labels, e.g. prod/hello, or <node>/<vmid>.",
            ));
        }
        let shape = Shape::of(&config);
        let net0 = config.get("net0").and_then(|v| v.as_str()).unwrap_or("");
        let (_, net) = crate::proxmox::split_props(net0);
        let rootfs = config.get("rootfs").and_then(|v| v.as_str()).unwrap_or("");
        let storage = crate::proxmox::split_props(rootfs)
            .0
            .and_then(|volume| volume.split(':').next().map(str::to_owned));
        let unless_default = |value: Option<String>, default: &str| match value {
            Some(v) if v != default => Value::Value(v),
            _ => Value::Null,
        };
        let text = |v: Option<String>| v.map(Value::Value).unwrap_or(Value::Null);
        state.size = Value::Value(shape.size().unwrap_or(Size::DEFAULT).name().to_owned());
        state.proxmox = Value::Value(vec![ProxmoxArgs {
            node: Value::Value(node.clone()),
            template: text(fields.get("template").cloned()),
            storage: unless_default(storage, DEFAULT_STORAGE),
            bridge: unless_default(net.get("bridge").cloned(), DEFAULT_BRIDGE),
            vmid: Value::Null,
            ip: unless_default(net.get("ip").cloned(), DEFAULT_IP),
            gateway: text(net.get("gw").cloned()),
            firewall: Value::Null,
            ingress_tcp_ports: Value::Null,
            ..Default::default()
        }]);
        let mut seen = proxmox
            .ingress(&node, vmid)
            .await
            .map_err(|e| Failure::new("cannot import launch_service", e))?;
        seen.enabled &= firewall::flagged(net0);
        if let Value::Value(blocks) = &mut state.proxmox {
            firewall::observe(&mut blocks[0], &seen, true);
        }
        state.private_ip = match proxmox.interfaces(&node, vmid).await {
            Ok(interfaces) => text(first_ipv4(&interfaces)),
            Err(_) => Value::Null,
        };
        view_of(&format!("{node}/{vmid}"), &config, &state).observe(&mut state);
        Ok(state)
    }
}
