//! `target = "docker"` with real terraform against the real Docker engine and
//! a real control plane: the host is a systemd container on the engine,
//! bootstrapped through `docker exec`; its agent registers, takes a deploy of
//! the quickstart whose containers run beside it, is resized in place,
//! planned again when removed out of band, imported by name, and destroyed
//! with everything it ran. A bad `docker.host` or an engine that does not
//! answer fails the plan saying what to fix.

use std::process::Command;
use std::time::Duration;

use launch_e2e::host::static_agent;
use launch_e2e::poll::eventually;
use launch_e2e::terraform::{self, Workspace};
use launch_e2e::{Server, Service, binaries, cli};

/// The agent the control plane serves to hosts: the static build when there
/// is one, else the debug build (the host image is Debian, so both run).
fn served_agent() -> String {
    let agent = static_agent();
    let agent = if agent.is_file() {
        agent
    } else {
        binaries::launch_agent()
    };
    agent.display().to_string()
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `docker inspect` of a container, `None` when it does not exist.
fn inspect(container: &str) -> Option<serde_json::Value> {
    let (ok, text) = docker(&["container", "inspect", "--format", "{{json .}}", container]);
    ok.then(|| serde_json::from_str(text.trim()).expect("inspect is JSON"))
}

/// IDs of what a label filter finds: `ps -a` or `network ls`.
fn labelled(kind: &str, label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-aq", "--filter", &filter],
        _ => vec!["network", "ls", "-q", "--filter", &filter],
    };
    let (ok, text) = docker(&args);
    assert!(ok, "docker {args:?}: {text}");
    text.split_whitespace().map(str::to_owned).collect()
}

/// Removes the host container and the service's project if a test fails
/// half-way.
struct Cleanup {
    container: String,
    project: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.container]);
        let label = format!("com.docker.compose.project={}", self.project);
        for id in labelled("container", &label) {
            let _ = docker(&["rm", "-f", "-v", &id]);
        }
        for id in labelled("network", &label) {
            let _ = docker(&["network", "rm", &id]);
        }
    }
}

fn service_block(name: &str, image: &str, size: &str) -> String {
    format!(
        "resource \"launch_service\" \"svc\" {{\n  name   = \"{name}\"\n  target = \"docker\"\n  size   = \"{size}\"\n  docker {{\n    image = \"{image}\"\n  }}\n}}\n"
    )
}

fn service_agents(server: &Server, service: &str) -> Vec<serde_json::Value> {
    cli::agents(server)
        .into_iter()
        .filter(|a| a["labels"]["service-name"] == service)
        .collect()
}

#[test]
fn a_docker_host_registers_takes_a_deploy_resizes_comes_back_imports_and_destroys_clean() {
    let image = launch_e2e::host::image();
    let service = Service::quickstart();
    let name = service.name.clone();
    let container = format!("launch-{name}-prod");
    let project = format!("{name}-prod");
    let project_label = format!("com.docker.compose.project={project}");
    let _cleanup = Cleanup {
        container: container.clone(),
        project: project.clone(),
    };
    let server = Server::start_with(&["--agent-binary", &served_agent()]);
    let tf = Workspace::new(
        &terraform::newest(),
        &server.url(),
        &server.admin_token,
        "http://127.0.0.1:9",
    );

    // apply → the host runs, its agent registered.
    tf.write(&service_block(&name, &image, "small"));
    let apply = tf.apply();
    let logs = || docker(&["logs", "--tail", "50", &container]).1;
    assert_eq!(apply.code, 0, "{}\n{}", apply.text(), logs());
    let host = inspect(&container).expect("the host container exists");
    assert_eq!(host["State"]["Running"], true, "{host}");
    assert_eq!(host["HostConfig"]["NanoCpus"], 1_000_000_000i64);
    assert_eq!(host["HostConfig"]["Memory"], 1024i64 * 1024 * 1024);
    // Bootstrapped through docker exec: the image's cloud-init never ran
    // (the image has it: the EC2 and Proxmox boot tests run it).
    let (_, unit) = docker(&[
        "exec",
        &container,
        "systemctl",
        "is-active",
        "cloud-init.service",
    ]);
    assert_eq!(unit.trim(), "inactive", "cloud-init ran in the docker host");
    let (has, _) = docker(&["exec", &container, "test", "-x", "/usr/bin/cloud-init"]);
    assert!(has, "positive control: the host image has cloud-init");
    let values = tf.resource_values("launch_service.svc").expect("in state");
    assert_eq!(values["instance_id"], host["Id"]);
    assert_eq!(values["instance_type"], "1 cpus, 1024 MiB");
    let agents = service_agents(&server, &name);
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(values["agent_id"], agents[0]["agent_id"]);
    assert_eq!(tf.plan().code, 0, "a fresh apply plans no change");

    // launch deploy --wait → the service answers, from a sibling container.
    let dir = service.dir_arg();
    let deploy = server.cli(&service.deploy_args(&dir, &["--wait"]));
    assert_eq!(deploy.code, Some(0), "{deploy}\n{}", logs());
    let (code, _) = service.get("/").expect("the service answers");
    assert_eq!(code, 200);
    assert!(
        !labelled("container", &project_label).is_empty(),
        "the service runs beside the host, on the same engine"
    );

    // size → new limits in place, same container.
    tf.write(&service_block(&name, &image, "medium"));
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(plan.stdout.contains("updated in-place"), "{}", plan.stdout);
    tf.apply().success();
    let resized = inspect(&container).expect("still there");
    assert_eq!(resized["Id"], host["Id"], "resized in place, not replaced");
    assert_eq!(resized["HostConfig"]["NanoCpus"], 2_000_000_000i64);
    assert_eq!(resized["HostConfig"]["Memory"], 2048i64 * 1024 * 1024);
    assert_eq!(tf.plan().code, 0);

    // Removed out of band → planned again, and apply brings it back.
    let (ok, text) = docker(&["rm", "-f", &container]);
    assert!(ok, "{text}");
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(plan.stdout.contains("will be created"), "{}", plan.stdout);
    let apply = tf.apply();
    assert_eq!(apply.code, 0, "{}\n{}", apply.text(), logs());
    let recreated = inspect(&container).expect("re-created");
    assert_ne!(recreated["Id"], host["Id"]);

    // Import by <environment>/<name> round-trips to an empty plan.
    tf.run(&["state", "rm", "launch_service.svc"]).success();
    let import = tf.run(&[
        "import",
        "-no-color",
        "launch_service.svc",
        &format!("prod/{name}"),
    ]);
    assert_eq!(import.code, 0, "{}", import.text());
    let imported = tf.resource_values("launch_service.svc").expect("imported");
    assert_eq!(imported["instance_id"], recreated["Id"]);
    assert_eq!(imported["size"], "medium");
    let plan = tf.plan();
    assert_eq!(plan.code, 0, "import must round-trip:\n{}", plan.text());

    // destroy → no host, no service container or network, the agent revoked.
    assert!(
        !labelled("container", &project_label).is_empty(),
        "the service's containers run until destroy"
    );
    tf.destroy().success();
    assert!(inspect(&container).is_none(), "destroy left the host");
    assert!(
        labelled("container", &project_label).is_empty(),
        "destroy left the service's containers"
    );
    assert!(
        labelled("network", &project_label).is_empty(),
        "destroy left the service's network"
    );
    eventually(Duration::from_secs(30), "the agents to be revoked", || {
        let left: Vec<_> = service_agents(&server, &name)
            .into_iter()
            .filter(|a| a["revoked"] != true)
            .collect();
        match left.as_slice() {
            [] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn a_bad_docker_host_or_an_engine_that_does_not_answer_fails_the_plan_saying_what_to_fix() {
    let tf = Workspace::new(
        &terraform::newest(),
        "http://127.0.0.1:9",
        "unused",
        "http://127.0.0.1:9",
    );
    let resource = service_block("nohost", "launch-host:none", "small");
    for (host, wanted) in [
        (
            "/var/run/docker.sock",
            "docker.host must be a Docker engine address",
        ),
        (
            "unix:///nonexistent/docker.sock",
            "cannot reach the Docker engine at unix:///nonexistent/docker.sock",
        ),
    ] {
        tf.write(&format!(
            "provider \"launch\" {{\n  docker {{\n    host = \"{host}\"\n  }}\n}}\n\n{resource}"
        ));
        let plan = tf.plan();
        assert_eq!(plan.code, 1, "{host}: {}", plan.text());
        assert!(
            plan.text().contains(wanted),
            "{host}: expected {wanted:?} in\n{}",
            plan.text()
        );
    }
    // The positive control: the machine's engine answers, and the same plan
    // goes through.
    tf.write(&format!(
        "provider \"launch\" {{\n  docker {{\n    host = \"unix:///var/run/docker.sock\"\n  }}\n}}\n\n{resource}"
    ));
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
}
