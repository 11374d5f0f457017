//! The provider and the control plane agree by ids, never by clocks: a create
//! waits for the agent that registered with its own join token, its undo
//! retires only a service it created, and destroying a host revokes only
//! that host's agent. The Terraform runner's clock is set 10 s ahead of the
//! control plane's with libfaketime (the provider links glibc, so
//! `LD_PRELOAD` reaches it through terraform), and a replacement made with
//! `create_before_destroy` keeps the service and its new agent.

use std::time::Duration;

use launch_e2e::fault_proxy::{Fault, FaultProxy};
use launch_e2e::moto::{Moto, script_value};
use launch_e2e::poll::eventually;
use launch_e2e::process::Process;
use launch_e2e::terraform::{self, Workspace};
use launch_e2e::{Agent, Server, cli, unique};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn service_block(name: &str, extra: &str) -> String {
    format!(
        "resource \"launch_service\" \"svc\" {{\n  name   = \"{name}\"\n  target = \"aws\"\n{extra}\n}}\n"
    )
}

/// Runs the provider (and terraform) with a wall clock `seconds` ahead.
fn clock_ahead(tf: &mut Workspace, seconds: u32) {
    assert!(
        std::path::Path::new(LIBFAKETIME).is_file(),
        "{LIBFAKETIME} is missing: run scripts/setup (it installs libfaketime)"
    );
    tf.set_env("LD_PRELOAD", LIBFAKETIME);
    tf.set_env("FAKETIME", &format!("+{seconds}s"));
    // Only the wall clock: timeouts and deadlines keep real time.
    tf.set_env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
}

/// The services `launch services` lists, as `name/environment`.
fn services(server: &Server) -> Vec<String> {
    let out = server.cli(&["services", "--output", "json"]);
    out.success();
    cli::list(&out.json(), "services")
        .unwrap_or_default()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                cli::field(s, "service"),
                cli::field(s, "environment")
            )
        })
        .collect()
}

/// Whether `agent_id` is revoked, per `launch agents`.
fn revoked(server: &Server, agent_id: &str) -> Option<bool> {
    cli::agents(server)
        .iter()
        .find(|a| a["agent_id"] == agent_id)
        .and_then(|a| a["revoked"].as_bool())
}

/// Plays the booted host of the newest live instance other than `except`:
/// reads its join token from user-data and starts an agent with it.
fn boot_host(server: &Server, moto: &Moto, name: &str, except: Option<&str>) -> (String, Agent) {
    let ec2 = moto.peer();
    let instance = eventually(
        Duration::from_secs(60),
        "a new instance to exist in moto",
        || {
            ec2.live_instances(name, "prod")
                .into_iter()
                .find(|i| Some(i.id.as_str()) != except)
                .ok_or_else(|| "no new instance yet".to_owned())
        },
    );
    let join_token = script_value(&ec2.user_data(&instance.id), "LAUNCH_JOIN_TOKEN")
        .expect("user-data carries a join token");
    let mut agent = Agent::spawn(server, name, "prod", &join_token);
    agent.wait_connected();
    (instance.id, agent)
}

fn finish(mut apply: Process, what: &str) {
    let status = apply
        .wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{what} did not finish: {e}"));
    assert_eq!(
        status.code(),
        Some(0),
        "{what} failed:\n{}\n{}",
        apply.stdout.text(),
        apply.stderr.text()
    );
}

#[test]
fn a_runner_clock_ten_seconds_ahead_neither_stalls_create_nor_skips_its_undo() {
    let server = Server::start();
    let moto = Moto::start();
    let name = unique::service_name();
    let mut tf = Workspace::new(
        &terraform::newest(),
        &server.url(),
        &server.admin_token,
        &moto.url(),
    );
    clock_ahead(&mut tf, 10);
    // Long enough for a host to register, far shorter than a stalled wait.
    tf.write(&service_block(&name, "  timeouts { create = \"45s\" }"));
    let apply = Process::spawn(
        "terraform apply",
        tf.command(&["apply", "-auto-approve", "-no-color"]),
    );
    let (_, mut agent) = boot_host(&server, &moto, &name, None);
    finish(apply, "apply with the runner's clock 10 s ahead");
    let values = tf.resource_values("launch_service.svc").expect("in state");
    assert_eq!(
        values["agent_id"].as_str(),
        agent.agent_id.as_deref(),
        "{values}"
    );
    tf.destroy().success();
    agent.process.kill_hard();

    // A create that fails before any instance exists undoes its own
    // registration of a new service, whatever the clocks say...
    let proxy = FaultProxy::start(moto.port);
    let failing = |tf: &mut Workspace| {
        tf.set_env("AWS_ENDPOINT_URL_EC2", &proxy.url());
        tf.set_env("AWS_MAX_ATTEMPTS", "1");
    };
    proxy.fail_all(true, Fault::Unavailable);
    let fresh = unique::service_name();
    let mut tf = Workspace::new(
        &terraform::newest(),
        &server.url(),
        &server.admin_token,
        &moto.url(),
    );
    clock_ahead(&mut tf, 10);
    failing(&mut tf);
    tf.write(&service_block(&fresh, "  wait_for_agent = false"));
    let apply = tf.apply();
    assert_eq!(apply.code, 1, "the EC2 calls fail:\n{}", apply.text());
    assert!(
        apply.text().contains("cannot create launch_service"),
        "the failure must come from create, after the service was registered:\n{}",
        apply.text()
    );
    // ...and leaves alone one that was there before it (the positive
    // control: `launch services` does list services).
    let existing = unique::service_name();
    server
        .cli(&["token", "create", "--service", &existing, "--env", "prod"])
        .success();
    let mut tf = Workspace::new(
        &terraform::newest(),
        &server.url(),
        &server.admin_token,
        &moto.url(),
    );
    clock_ahead(&mut tf, 10);
    failing(&mut tf);
    tf.write(&service_block(&existing, "  wait_for_agent = false"));
    let apply = tf.apply();
    assert_eq!(apply.code, 1, "the EC2 calls fail:\n{}", apply.text());
    let listed = services(&server);
    assert!(
        listed.contains(&format!("{existing}/prod")),
        "a service that existed before the failed create must stay: {listed:?}"
    );
    assert!(
        !listed.contains(&format!("{fresh}/prod")),
        "the failed create left the service it registered behind: {listed:?}"
    );
}

#[test]
fn replacing_a_host_before_destroying_it_keeps_the_service_and_the_new_agent() {
    let server = Server::start();
    let moto = Moto::start();
    let name = unique::service_name();
    let tf = Workspace::new(
        &terraform::newest(),
        &server.url(),
        &server.admin_token,
        &moto.url(),
    );
    tf.write(&service_block(
        &name,
        "  timeouts { create = \"2m\" }\n  lifecycle { create_before_destroy = true }",
    ));
    let apply = Process::spawn(
        "terraform apply",
        tf.command(&["apply", "-auto-approve", "-no-color"]),
    );
    let (old_instance, mut old_agent) = boot_host(&server, &moto, &name, None);
    finish(apply, "the first apply");
    let old_agent_id = old_agent.agent_id.clone().unwrap();

    let replace = Process::spawn(
        "terraform apply -replace",
        tf.command(&[
            "apply",
            "-auto-approve",
            "-no-color",
            "-replace=launch_service.svc",
        ]),
    );
    let (_, mut new_agent) = boot_host(&server, &moto, &name, Some(&old_instance));
    finish(replace, "the replacing apply");
    let new_agent_id = new_agent.agent_id.clone().unwrap();
    assert_ne!(new_agent_id, old_agent_id);

    assert_eq!(
        revoked(&server, &old_agent_id),
        Some(true),
        "the destroyed host's agent is revoked"
    );
    assert_eq!(
        revoked(&server, &new_agent_id),
        Some(false),
        "destroying the old host revoked the new host's agent"
    );
    let listed = services(&server);
    assert!(
        listed.contains(&format!("{name}/prod")),
        "the service was retired with the old host: {listed:?}"
    );
    let values = tf.resource_values("launch_service.svc").expect("in state");
    assert_eq!(values["agent_id"], new_agent_id.as_str(), "{values}");

    // A plain destroy still retires the service.
    tf.destroy().success();
    assert_eq!(revoked(&server, &new_agent_id), Some(true));
    assert!(!services(&server).contains(&format!("{name}/prod")));
    old_agent.process.kill_hard();
    new_agent.process.kill_hard();
}
