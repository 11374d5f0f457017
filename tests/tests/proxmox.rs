//! `launch_service { target = "proxmox" }` driven by the real terraform
//! binary against `fakepve` (a Proxmox VE API emulator) and a real `launch
//! server`. The container fakepve "creates" has no filesystem, so a real
//! systemd host with sshd (`ssh_host`) stands in for it: the test copies the
//! public key the provider gave PVE (`ssh-public-keys`) into that host, and
//! the provider's test hook `LAUNCH_PROXMOX_SSH_OVERRIDE` sends SSH for the
//! container's address to it. The bootstrap then runs over SSH for real and
//! the agent it installs registers with the control plane.

use std::time::Duration;

use launch_e2e::fakepve::{FakePve, NODE, OFFLINE_NODE, TEMPLATE};
use launch_e2e::host::static_agent;
use launch_e2e::poll::eventually;
use launch_e2e::process::Process;
use launch_e2e::ssh_host::SshHost;
use launch_e2e::terraform::{self, Terraform, Workspace};
use launch_e2e::{Server, binaries, cli, unique};

/// The agent the server hands to hosts: the static build when there is one.
fn served_agent() -> String {
    let agent = static_agent();
    let agent = if agent.is_file() {
        agent
    } else {
        binaries::launch_agent()
    };
    agent.display().to_string()
}

/// A static address in TEST-NET-2 for the container (nothing routes it:
/// SSH to it goes through the override).
fn container_ip() -> String {
    let octet = 10 + (unique::hex(1).as_bytes()[0] as u32 % 200);
    format!("198.51.100.{octet}")
}

fn service_block(name: &str, proxmox: &str, extra: &str) -> String {
    format!(
        "resource \"launch_service\" \"svc\" {{\n  name   = \"{name}\"\n  target = \"proxmox\"\n  proxmox {{\n{proxmox}\n  }}\n{extra}\n}}\n"
    )
}

fn proxmox_args(ip: &str) -> String {
    format!(
        "    node     = \"{NODE}\"\n    template = \"{TEMPLATE}\"\n    ip       = \"{ip}/24\"\n    gateway  = \"198.51.100.1\""
    )
}

struct Setup {
    server: Server,
    pve: FakePve,
    name: String,
    ip: String,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            server: Server::start_with(&["--agent-binary", &served_agent()]),
            pve: FakePve::start(),
            name: unique::service_name(),
            ip: container_ip(),
        }
    }

    /// A workspace whose provider talks to this fakepve, with SSH for the
    /// container's address sent to `ssh_port`.
    fn workspace(&self, terraform: &Terraform, ssh_port: u16) -> Workspace {
        let mut tf = Workspace::new(
            terraform,
            &self.server.url(),
            &self.server.admin_token,
            "http://127.0.0.1:9",
        );
        tf.set_env("PROXMOX_VE_ENDPOINT", &self.pve.url());
        tf.set_env("PROXMOX_VE_API_TOKEN", &self.pve.api_token);
        tf.set_env("PROXMOX_VE_INSECURE", "true");
        tf.set_env(
            "LAUNCH_PROXMOX_SSH_OVERRIDE",
            &format!("{}=127.0.0.1:{ssh_port}", self.ip),
        );
        tf
    }

    /// The VMID of the one container a create asked keys for, once it has.
    fn wait_for_injected_key(&self) -> (i64, String) {
        eventually(
            Duration::from_secs(120),
            "the provider to create a container with an SSH key",
            || {
                let entries = std::fs::read_dir(self.pve.keys_dir()).map_err(|e| e.to_string())?;
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if let Some(vmid) = name.strip_suffix(".pub").and_then(|v| v.parse().ok())
                        && let Some(keys) = self.pve.injected_keys(vmid)
                    {
                        return Ok((vmid, keys));
                    }
                }
                Err("no keys yet".to_owned())
            },
        )
    }

    fn our_containers(&self) -> Vec<serde_json::Value> {
        let hostname = format!("{}-prod", self.name);
        self.pve
            .containers()
            .into_iter()
            .filter(|c| c["name"] == hostname.as_str())
            .collect()
    }
}

/// Runs `terraform apply` while playing PVE's part of `ssh-public-keys`:
/// the injected key goes into the SSH host. Returns the VMID, the exit code
/// and the output.
fn apply_playing_pve(setup: &Setup, tf: &Workspace, host: &SshHost) -> (i64, Option<i32>, String) {
    let mut apply = Process::spawn(
        "terraform apply",
        tf.command(&["apply", "-auto-approve", "-no-color"]),
    );
    let (vmid, keys) = setup.wait_for_injected_key();
    assert!(keys.starts_with("ssh-ed25519 "), "{keys}");
    host.authorize(&keys);
    let status = apply
        .wait_exit(Duration::from_secs(300))
        .expect("terraform apply finishes");
    let text = format!("{}\n{}", apply.stdout.text(), apply.stderr.text());
    (vmid, status.code(), text)
}

/// [`apply_playing_pve`] that must succeed; returns the VMID.
fn apply_with_key(setup: &Setup, tf: &Workspace, host: &SshHost) -> i64 {
    let (vmid, code, text) = apply_playing_pve(setup, tf, host);
    assert_eq!(
        code,
        Some(0),
        "apply failed:\n{text}\n{}",
        host.diagnostics()
    );
    vmid
}

#[test]
fn apply_creates_a_nesting_lxc_bootstraps_it_over_ssh_and_resizes_it_in_place() {
    let setup = Setup::new();
    let host = SshHost::boot_for_ssh(unique::free_port());
    let tf = setup.workspace(&terraform::newest(), host.port);
    // The firewall as the module asks for it on a public service.
    let args = format!(
        "{}\n    firewall = true\n    ingress_tcp_ports = [443, 80]",
        proxmox_args(&setup.ip)
    );
    tf.write(&service_block(
        &setup.name,
        &args,
        "  timeouts { create = \"5m\" }",
    ));
    let vmid = apply_with_key(&setup, &tf, &host);

    // The container: features for Docker, unprivileged, size small, tags, network.
    let config = setup.pve.config(vmid);
    assert_eq!(config["features"], "keyctl=1,nesting=1", "{config}");
    assert_eq!(config["unprivileged"], 1, "{config}");
    assert_eq!(config["cores"], 1, "{config}");
    assert_eq!(config["memory"], 1024, "{config}");
    let rootfs = config["rootfs"].as_str().unwrap_or_default();
    assert!(
        rootfs.starts_with("local-lvm:") && rootfs.contains("size=8G"),
        "{config}"
    );
    let mut tags: Vec<&str> = config["tags"]
        .as_str()
        .unwrap_or_default()
        .split(';')
        .collect();
    tags.sort();
    let mut wanted = vec!["launch", setup.name.as_str(), "prod"];
    wanted.sort();
    assert_eq!(tags, wanted, "{config}");
    let net0 = config["net0"].as_str().unwrap_or_default();
    assert!(
        net0.contains("bridge=vmbr0") && net0.contains(&format!("ip={}/24", setup.ip)),
        "{config}"
    );
    // The firewall: on for eth0, inbound DROP but 80 and 443.
    assert!(net0.contains("firewall=1"), "{config}");
    let options = setup.pve.firewall_options(vmid);
    assert_eq!(
        (
            &options["enable"],
            &options["policy_in"],
            &options["policy_out"]
        ),
        (&1.into(), &"DROP".into(), &"ACCEPT".into()),
        "{options}"
    );
    assert_eq!(setup.pve.accepted_tcp_ports(vmid), vec!["443", "80"]);

    // The bootstrap ran over SSH: the agent runs under the host's systemd
    // and registered; state knows it and holds no key or token.
    let agents: Vec<_> = cli::agents(&setup.server)
        .into_iter()
        .filter(|a| a["labels"]["service-name"] == setup.name.as_str())
        .collect();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(
        host.exec_text(&["systemctl", "is-active", "launch-agent"])
            .trim(),
        "active",
        "{}",
        host.diagnostics()
    );
    let values = tf
        .resource_values("launch_service.svc")
        .expect("the service is in state");
    assert_eq!(values["agent_id"], agents[0]["agent_id"], "{values}");
    assert_eq!(values["instance_id"], format!("{NODE}/{vmid}"), "{values}");
    assert_eq!(values["private_ip"], setup.ip.as_str(), "{values}");
    assert_eq!(values["image_id"], TEMPLATE, "{values}");
    assert_eq!(values["instance_type"], serde_json::Value::Null, "{values}");
    let block = &values["proxmox"][0];
    assert_eq!(
        (&block["cores"], &block["memory_mib"], &block["disk_gib"]),
        (&1.into(), &1024.into(), &8.into()),
        "{values}"
    );
    let state = tf.state_text();
    assert!(!state.contains("PRIVATE KEY"), "a private key is in state");

    let plan = tf.plan();
    assert_eq!(
        plan.code,
        0,
        "a second plan must be empty:\n{}",
        plan.text()
    );

    // size → cores and memory in place, the disk grown.
    tf.write(&service_block(
        &setup.name,
        &args,
        "  size = \"medium\"\n  timeouts { create = \"5m\" }",
    ));
    let plan = tf.plan();
    assert!(
        plan.stdout.contains("1 to change, 0 to destroy"),
        "size must update in place:\n{}",
        plan.stdout
    );
    tf.apply().success();
    let config = setup.pve.config(vmid);
    assert_eq!(
        (config["cores"].clone(), config["memory"].clone()),
        (2.into(), 2048.into())
    );
    assert!(
        config["rootfs"]
            .as_str()
            .unwrap_or_default()
            .contains("size=16G"),
        "{config}"
    );
    let plan = tf.plan();
    assert_eq!(plan.code, 0, "plan after resize:\n{}", plan.text());

    // Cores changed in Proxmox show as drift, and apply puts them back.
    setup
        .pve
        .api(
            "PUT",
            &format!("/nodes/{NODE}/lxc/{vmid}/config"),
            &[("cores", "3")],
        )
        .expect("change cores out of band");
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout
            .lines()
            .any(|l| l.contains("~ cores") && l.trim_end().ends_with("= 3 -> 2")),
        "cores drift must show:\n{}",
        plan.stdout
    );
    tf.apply().success();
    assert_eq!(setup.pve.config(vmid)["cores"], 2);

    // A managed rule deleted out of band shows as drift and is put back;
    // the operator's own rule stays.
    let rules = format!("/nodes/{NODE}/lxc/{vmid}/firewall/rules");
    setup
        .pve
        .api(
            "POST",
            &rules,
            &[
                ("type", "in"),
                ("action", "ACCEPT"),
                ("proto", "tcp"),
                ("dport", "22"),
                ("enable", "1"),
            ],
        )
        .expect("add the operator's own rule");
    let managed_443 = setup
        .pve
        .api("GET", &rules, &[])
        .expect("list rules")
        .as_array()
        .and_then(|rules| {
            rules
                .iter()
                .find(|r| r["dport"] == "443")
                .map(|r| r["pos"].clone())
        })
        .expect("the managed rule for 443");
    setup
        .pve
        .api("DELETE", &format!("{rules}/{managed_443}"), &[])
        .expect("delete the rule for 443 out of band");
    assert_eq!(
        setup.pve.accepted_tcp_ports(vmid),
        vec!["22", "80"],
        "positive control"
    );
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "the deleted rule must show:\n{}", plan.text());
    assert!(
        plan.stdout.contains("ingress_tcp_ports") && plan.stdout.contains("+ 443"),
        "the plan must put 443 back:\n{}",
        plan.stdout
    );
    tf.apply().success();
    assert_eq!(setup.pve.accepted_tcp_ports(vmid), vec!["22", "443", "80"]);
    let plan = tf.plan();
    assert_eq!(
        plan.code,
        0,
        "plan after the firewall is back:\n{}",
        plan.text()
    );

    // A container stopped behind Terraform's back is shown.
    setup.pve.stop(vmid);
    let plan = tf.plan();
    assert!(
        plan.text()
            .contains(&format!("container {NODE}/{vmid} is stopped")),
        "{}",
        plan.text()
    );

    tf.destroy().success();
    assert!(
        setup.our_containers().is_empty(),
        "destroy left a container"
    );
    let revoked = cli::agents(&setup.server)
        .into_iter()
        .find(|a| a["agent_id"] == agents[0]["agent_id"])
        .map(|a| a["revoked"].clone());
    assert_eq!(revoked, Some(serde_json::Value::Bool(true)));
}

#[test]
fn import_by_name_or_vmid_round_trips_and_a_destroyed_container_is_planned_again() {
    let setup = Setup::new();
    let host = SshHost::boot_for_ssh(unique::free_port());
    let first = setup.workspace(&terraform::newest(), host.port);
    let body = service_block(&setup.name, &proxmox_args(&setup.ip), "");
    first.write(&service_block(
        &setup.name,
        &proxmox_args(&setup.ip),
        "  wait_for_agent = false",
    ));
    let vmid = apply_with_key(&setup, &first, &host);

    for id in [format!("prod/{}", setup.name), format!("{NODE}/{vmid}")] {
        let second = setup.workspace(&terraform::newest(), host.port);
        second.write(&body);
        second
            .run(&[
                "import",
                "-no-color",
                "-input=false",
                "launch_service.svc",
                &id,
            ])
            .success();
        let values = second
            .resource_values("launch_service.svc")
            .expect("imported into state");
        assert_eq!(
            values["instance_id"],
            format!("{NODE}/{vmid}"),
            "{id}: {values}"
        );
        assert_eq!(values["target"], "proxmox", "{id}: {values}");
        let plan = second.plan();
        assert_eq!(plan.code, 0, "plan after import of {id}:\n{}", plan.text());
    }

    setup.pve.destroy(vmid);
    let plan = first.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout.contains("1 to add, 0 to change, 0 to destroy"),
        "a destroyed container must be re-created:\n{}",
        plan.stdout
    );
    first.destroy().success();
    assert!(setup.our_containers().is_empty());
}

#[test]
fn a_failing_bootstrap_shows_its_output_and_keeps_the_container_tainted_for_destroy() {
    let setup = Setup::new();
    let host = SshHost::boot_for_ssh(unique::free_port());
    // A host where launch-agent cannot be installed: its path is a directory.
    let broken = host.exec(&["mkdir", "-p", "/usr/local/bin/launch-agent"]);
    assert!(broken.status.success());
    let tf = setup.workspace(&terraform::newest(), host.port);
    tf.write(&service_block(
        &setup.name,
        &proxmox_args(&setup.ip),
        "  timeouts { create = \"3m\" }",
    ));
    let (vmid, code, text) = apply_playing_pve(&setup, &tf, &host);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "the bootstrap did not complete on container {NODE}/{vmid}"
        )),
        "{text}"
    );
    assert!(
        text.contains("launch-bootstrap: downloading launch-agent from"),
        "the script's output must be in the error:\n{text}"
    );
    assert!(text.contains("exit status"), "{text}");
    let values = tf
        .resource_values("launch_service.svc")
        .expect("the container is kept in state");
    assert_eq!(values["instance_id"], format!("{NODE}/{vmid}"));
    let plan = tf.plan();
    assert!(plan.stdout.contains("tainted"), "{}", plan.stdout);

    tf.destroy().success();
    assert!(
        setup.our_containers().is_empty(),
        "destroy left the container"
    );
    let services = setup.server.cli(&["services", "--output", "json"]);
    assert!(!services.stdout.contains(&setup.name), "{services}");
}

#[test]
fn a_failing_proxmox_task_is_reported_with_its_log_and_leaves_nothing_behind() {
    let setup = Setup::new();
    let tf = setup.workspace(&terraform::newest(), 9);
    let missing = "local:vztmpl/no-such-template_amd64.tar.zst";
    tf.write(&service_block(
        &setup.name,
        &format!(
            "    node     = \"{NODE}\"\n    template = \"{missing}\"\n    ip       = \"{}/24\"",
            setup.ip
        ),
        "",
    ));
    let apply = tf.apply();
    assert_eq!(apply.code, 1, "{}", apply.text());
    let text = apply.text();
    assert!(
        text.contains("the Proxmox task creating container"),
        "{text}"
    );
    assert!(
        text.contains("exit status"),
        "the exit status must be shown:\n{text}"
    );
    assert!(
        text.contains(&format!("volume '{missing}' does not exist")),
        "the task log must be shown:\n{text}"
    );
    assert!(
        setup.our_containers().is_empty(),
        "a failed create left a container"
    );
    assert!(
        tf.resource_values("launch_service.svc").is_none(),
        "nothing may be in state"
    );
    // The control-plane side was undone: the service is not registered.
    let services = setup.server.cli(&["services", "--output", "json"]);
    assert!(!services.stdout.contains(&setup.name), "{services}");
}

#[test]
fn an_offline_node_and_an_unreachable_endpoint_fail_with_what_to_check() {
    let setup = Setup::new();
    let tf = setup.workspace(&terraform::newest(), 9);
    tf.write(&service_block(
        &setup.name,
        &format!("    node     = \"{OFFLINE_NODE}\"\n    template = \"{TEMPLATE}\""),
        "",
    ));
    let apply = tf.apply();
    assert_eq!(apply.code, 1, "{}", apply.text());
    assert!(
        apply.text().contains("HTTP 595") && apply.text().contains("unreachable"),
        "{}",
        apply.text()
    );

    let mut unreachable = setup.workspace(&terraform::newest(), 9);
    let closed = unique::free_port();
    unreachable.set_env(
        "PROXMOX_VE_ENDPOINT",
        &format!("https://127.0.0.1:{closed}"),
    );
    unreachable.write(&service_block(&setup.name, &proxmox_args(&setup.ip), ""));
    let apply = unreachable.apply();
    assert_eq!(apply.code, 1, "{}", apply.text());
    let text = apply.text();
    assert!(text.contains("cannot reach Proxmox"), "{text}");
    assert!(text.contains("PROXMOX_VE_ENDPOINT"), "{text}");
    assert!(setup.pve.containers().is_empty());
}

#[test]
fn proxmox_settings_are_checked_at_plan_naming_the_attribute_on_every_terraform() {
    for terraform in terraform::versions() {
        let v = &terraform.version;
        // Nothing is reachable: validation must fail before anything is called.
        let tf = Workspace::new(
            &terraform,
            "http://127.0.0.1:9",
            "unused",
            "http://127.0.0.1:9",
        );
        for (block, wanted) in [
            (
                "resource \"launch_service\" \"svc\" {\n  name = \"ok\"\n  target = \"proxmox\"\n}\n".to_owned(),
                "needs a proxmox block",
            ),
            (
                service_block("ok", &format!("    node = \"{NODE}\""), ""),
                "proxmox.template is required",
            ),
            (
                service_block(
                    "ok",
                    &format!("    node = \"{NODE}\"\n    template = \"{TEMPLATE}\"\n    ip = \"10.0.0.5\""),
                    "",
                ),
                "proxmox.ip must be",
            ),
        ] {
            tf.write(&block);
            let plan = tf.plan();
            assert_eq!(plan.code, 1, "terraform {v}:\n{}", plan.text());
            assert!(
                plan.text().contains(wanted) && plan.text().contains("launch_service.svc"),
                "terraform {v}: expected {wanted:?} in:\n{}",
                plan.text()
            );
        }
    }
}

#[test]
fn parallel_creates_get_their_own_vmids_and_a_dhcp_address_is_awaited() {
    let setup = Setup::new();
    let (static_host, dhcp_host) = (
        SshHost::boot_for_ssh(unique::free_port()),
        SshHost::boot_for_ssh(unique::free_port()),
    );
    let leased = container_ip();
    let leased = if leased == setup.ip {
        "198.51.100.250".to_owned()
    } else {
        leased
    };
    let mut tf = setup.workspace(&terraform::newest(), static_host.port);
    tf.set_env(
        "LAUNCH_PROXMOX_SSH_OVERRIDE",
        &format!(
            "{}=127.0.0.1:{},{leased}=127.0.0.1:{}",
            setup.ip, static_host.port, dhcp_host.port
        ),
    );
    let other = unique::service_name();
    tf.write(&format!(
        "{}\nresource \"launch_service\" \"dhcp\" {{\n  name   = \"{other}\"\n  target = \"proxmox\"\n  wait_for_agent = false\n  timeouts {{ create = \"90s\" }}\n  proxmox {{\n    node     = \"{NODE}\"\n    template = \"{TEMPLATE}\"\n  }}\n}}\n",
        service_block(
            &setup.name,
            &proxmox_args(&setup.ip),
            "  wait_for_agent = false\n  timeouts { create = \"90s\" }"
        )
    ));
    let mut apply = Process::spawn(
        "terraform apply",
        tf.command(&["apply", "-auto-approve", "-no-color"]),
    );
    // Play PVE (the keys) and the bridge's DHCP server (the lease).
    let mut done: Vec<i64> = Vec::new();
    eventually(
        Duration::from_secs(120),
        "both containers to get their keys and addresses",
        || {
            for entry in std::fs::read_dir(setup.pve.keys_dir()).map_err(|e| e.to_string())? {
                let name = entry.map_err(|e| e.to_string())?.file_name();
                let Some(vmid) = name
                    .to_string_lossy()
                    .strip_suffix(".pub")
                    .and_then(|v| v.parse::<i64>().ok())
                else {
                    continue;
                };
                if done.contains(&vmid) {
                    continue;
                }
                let status = setup.pve.api(
                    "GET",
                    &format!("/nodes/{NODE}/lxc/{vmid}/status/current"),
                    &[],
                )?;
                if status["status"] != "running" {
                    continue;
                }
                let keys = setup.pve.injected_keys(vmid).ok_or("no keys")?;
                let net0 = setup.pve.config(vmid)["net0"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if net0.contains("ip=dhcp") {
                    let lease = net0.replace("ip=dhcp", &format!("ip={leased}/24"));
                    setup.pve.api(
                        "PUT",
                        &format!("/nodes/{NODE}/lxc/{vmid}/config"),
                        &[("net0", lease.as_str())],
                    )?;
                    dhcp_host.authorize(&keys);
                } else {
                    static_host.authorize(&keys);
                }
                done.push(vmid);
            }
            if done.len() == 2 {
                Ok(())
            } else {
                Err(format!("handled {done:?}"))
            }
        },
    );
    let status = apply
        .wait_exit(Duration::from_secs(300))
        .expect("terraform apply finishes");
    assert_eq!(
        status.code(),
        Some(0),
        "apply failed:\n{}\n{}",
        apply.stdout.text(),
        apply.stderr.text()
    );
    done.sort();
    assert_ne!(done[0], done[1]);
    let dhcp = tf
        .resource_values("launch_service.dhcp")
        .expect("the DHCP service is in state");
    assert_eq!(dhcp["private_ip"], leased.as_str(), "{dhcp}");
    for host in [&static_host, &dhcp_host] {
        assert_eq!(
            host.exec_text(&["systemctl", "is-active", "launch-agent"])
                .trim(),
            "active",
            "{}",
            host.diagnostics()
        );
    }
    tf.destroy().success();
    assert!(setup.pve.containers().is_empty(), "destroy left containers");
}
