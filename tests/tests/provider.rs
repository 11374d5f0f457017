//! `terraform-provider-launch` driven by the real terraform binary (every
//! version available) against moto for EC2 and a real `launch server`:
//! create, no-op plans, in-place updates and replacements, drift, import,
//! plan-time validation, retried EC2 faults, the agent wait, destroy, and
//! secrets kept out of plan output and logs.

use std::time::Duration;

use launch_e2e::fault_proxy::{Fault, FaultProxy};
use launch_e2e::moto::{Moto, script_value};
use launch_e2e::poll::eventually;
use launch_e2e::process::Process;
use launch_e2e::terraform::{self, Terraform, Workspace};
use launch_e2e::{Agent, Server, Service, cli, unique};

/// A `launch_service` block for `name` with `extra` lines inside it.
fn service_block(name: &str, extra: &str) -> String {
    format!(
        "resource \"launch_service\" \"svc\" {{\n  name   = \"{name}\"\n  target = \"aws\"\n{extra}\n}}\n"
    )
}

struct Setup {
    server: Server,
    moto: Moto,
    name: String,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            server: Server::start(),
            moto: Moto::start(),
            name: unique::service_name(),
        }
    }

    fn workspace(&self, terraform: &Terraform) -> Workspace {
        Workspace::new(
            terraform,
            &self.server.url(),
            &self.server.admin_token,
            &self.moto.url(),
        )
    }
}

#[test]
fn apply_boots_a_tagged_instance_whose_agent_registers_and_takes_a_deploy() {
    let service = Service::quickstart();
    let server = Server::start();
    let moto = Moto::start();
    let ec2 = moto.peer();
    let tf = Workspace::new(
        &terraform::newest(),
        &server.url(),
        &server.admin_token,
        &moto.url(),
    );
    tf.write(&service_block(
        &service.name,
        &format!(
            "  environment = \"{}\"\n  timeouts {{ create = \"2m\" }}",
            service.environment
        ),
    ));

    // terraform apply waits for the agent; play the booted host meanwhile.
    let mut apply = Process::spawn(
        "terraform apply",
        tf.command(&["apply", "-auto-approve", "-no-color"]),
    );
    let instance = eventually(
        Duration::from_secs(60),
        "the instance to exist in moto",
        || {
            ec2.live_instances(&service.name, &service.environment)
                .pop()
                .ok_or_else(|| "no instance yet".to_owned())
        },
    );
    let user_data = ec2.user_data(&instance.id);
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    assert_eq!(
        script_value(&user_data, "LAUNCH_CONTROL_URL").as_deref(),
        Some(server.url().as_str()),
        "{user_data}"
    );
    let labels = script_value(&user_data, "LAUNCH_LABELS").expect("user-data carries the labels");
    let labels = launch_core::labels::Labels::parse(&labels).expect("the labels parse");
    assert_eq!(
        (labels.service.as_str(), labels.environment.as_str()),
        (service.name.as_str(), service.environment.as_str())
    );
    let join_token =
        script_value(&user_data, "LAUNCH_JOIN_TOKEN").expect("user-data carries a join token");
    let mut agent = Agent::spawn(&server, &service.name, &service.environment, &join_token);
    let agent_id = agent.wait_connected();

    let status = apply
        .wait_exit(Duration::from_secs(120))
        .expect("terraform apply finishes");
    assert_eq!(
        status.code(),
        Some(0),
        "apply failed:\n{}\n{}",
        apply.stdout.text(),
        apply.stderr.text()
    );

    let instance = ec2
        .instances(&service.name, &service.environment)
        .pop()
        .unwrap();
    assert_eq!(instance.instance_type, "t3.small");
    assert_eq!(instance.http_tokens, "required", "IMDSv2 must be required");
    assert_eq!(
        instance.tags.get("Name"),
        Some(&format!("{}-{}", service.name, service.environment))
    );
    assert_eq!(
        instance.tags.get("launch:managed-by").map(String::as_str),
        Some("terraform-provider-launch")
    );
    let values = tf
        .resource_values("launch_service.svc")
        .expect("the service is in state");
    assert_eq!(values["agent_id"], agent_id.as_str(), "{values}");
    assert_eq!(values["instance_id"], instance.id.as_str(), "{values}");
    assert_eq!(
        values["id"],
        format!("{}/{}", service.environment, service.name)
    );
    assert!(
        !tf.state_text().contains(&join_token),
        "the join token must not be stored in state"
    );

    let plan = tf.plan();
    assert_eq!(
        plan.code,
        0,
        "a second plan must say No changes:\n{}",
        plan.text()
    );
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);

    let dir = service.dir_arg();
    let deploy = server.cli(&service.deploy_args(&dir, &["--wait"]));
    assert_eq!(
        deploy.code,
        Some(0),
        "deploy to the provisioned service failed: {deploy}"
    );
    let (code, _) = service.get("/").expect("the service answers");
    assert_eq!(code, 200);

    tf.destroy().success();
    assert!(
        ec2.live_instances(&service.name, &service.environment)
            .is_empty(),
        "destroy left an instance"
    );
    // The agent was revoked with the service: it is cut off and cannot come back.
    let agents = cli::agents(&server);
    let revoked = agents
        .iter()
        .find(|a| a["agent_id"] == agent_id.as_str())
        .map(|a| a["revoked"].clone());
    assert_eq!(revoked, Some(serde_json::Value::Bool(true)), "{agents:?}");
    agent.process.kill_hard();
}

#[test]
fn size_changes_in_place_and_name_changes_replace_on_every_terraform() {
    for terraform in terraform::versions() {
        let setup = Setup::new();
        let ec2 = setup.moto.peer();
        let tf = setup.workspace(&terraform);
        let v = &terraform.version;
        tf.write(&service_block(&setup.name, "  wait_for_agent = false"));
        tf.apply().success();
        let first = ec2.live_instances(&setup.name, "prod");
        assert_eq!(first.len(), 1, "terraform {v}: {first:?}");
        let no_changes = tf.plan();
        assert_eq!(
            no_changes.code,
            0,
            "terraform {v}: plan after apply:\n{}",
            no_changes.text()
        );

        tf.write(&service_block(
            &setup.name,
            "  wait_for_agent = false\n  size = \"large\"",
        ));
        let plan = tf.plan();
        assert_eq!(plan.code, 2, "terraform {v}:\n{}", plan.text());
        assert!(
            plan.stdout.contains("1 to change, 0 to destroy"),
            "terraform {v}: size must update in place:\n{}",
            plan.stdout
        );
        tf.apply().success();
        let resized = ec2.live_instances(&setup.name, "prod");
        assert_eq!(resized.len(), 1, "terraform {v}: {resized:?}");
        assert_eq!(
            resized[0].id, first[0].id,
            "terraform {v}: a resize must keep the instance"
        );
        assert_eq!(resized[0].instance_type, "t3.large", "terraform {v}");
        assert_eq!(resized[0].state, "running", "terraform {v}");

        let renamed = unique::service_name();
        tf.write(&service_block(
            &renamed,
            "  wait_for_agent = false\n  size = \"large\"",
        ));
        let plan = tf.plan();
        assert!(
            plan.stdout.contains("must be replaced"),
            "terraform {v}: a new name must replace:\n{}",
            plan.stdout
        );
        tf.apply().success();
        assert!(
            ec2.live_instances(&setup.name, "prod").is_empty(),
            "terraform {v}: the old instance must be gone"
        );
        assert_eq!(
            ec2.live_instances(&renamed, "prod").len(),
            1,
            "terraform {v}"
        );
        tf.destroy().success();
        assert!(
            ec2.live_instances(&renamed, "prod").is_empty(),
            "terraform {v}: destroy left an instance"
        );
    }
}

#[test]
fn drift_is_shown_and_an_interrupted_spot_instance_is_planned_again() {
    let setup = Setup::new();
    let ec2 = setup.moto.peer();
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(
        &setup.name,
        "  wait_for_agent = false\n  tags = { team = \"web\" }\n  aws {\n    spot      = true\n    max_price = \"0.05\"\n  }",
    ));
    tf.apply().success();
    let instance = ec2.live_instances(&setup.name, "prod").pop().unwrap();
    assert_eq!(
        instance.lifecycle, "spot",
        "RunInstances must ask for spot: {instance:?}"
    );

    ec2.set_instance_type(&instance.id, "t3.medium");
    ec2.set_tag(&instance.id, "team", "ops");
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout.contains("\"t3.medium\" -> \"t3.small\""),
        "type drift must show:\n{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("\"ops\" -> \"web\""),
        "tag drift must show:\n{}",
        plan.stdout
    );
    tf.apply().success();
    let fixed = ec2.live_instances(&setup.name, "prod").pop().unwrap();
    assert_eq!(
        (
            fixed.instance_type.as_str(),
            fixed.tags.get("team").map(String::as_str)
        ),
        ("t3.small", Some("web"))
    );

    // A spot interruption terminates the instance: the plan re-creates it.
    ec2.terminate(&instance.id);
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout.contains("1 to add, 0 to change, 0 to destroy"),
        "a terminated instance must be re-created:\n{}",
        plan.stdout
    );
    tf.apply().success();
    let live = ec2.live_instances(&setup.name, "prod");
    assert_eq!(live.len(), 1, "{live:?}");
    assert_ne!(live[0].id, instance.id);
    assert_eq!(live[0].lifecycle, "spot", "{live:?}");

    // Leaving spot can only be done with a new instance.
    tf.write(&service_block(
        &setup.name,
        "  wait_for_agent = false\n  tags = { team = \"web\" }",
    ));
    let plan = tf.plan();
    assert!(
        plan.stdout.contains("must be replaced") && plan.stdout.contains("spot"),
        "dropping spot must replace the instance:\n{}",
        plan.stdout
    );
    tf.destroy().success();
}

#[test]
fn import_by_environment_and_name_round_trips_to_an_empty_plan() {
    let setup = Setup::new();
    let ec2 = setup.moto.peer();
    let first = setup.workspace(&terraform::newest());
    let config = service_block(
        &setup.name,
        "  size = \"medium\"\n  tags = { team = \"web\" }",
    );
    // The first apply does not wait for an agent; wait_for_agent only matters
    // at create, and an import assumes the default.
    first.write(&service_block(
        &setup.name,
        "  wait_for_agent = false\n  size = \"medium\"\n  tags = { team = \"web\" }",
    ));
    first.apply().success();
    let instance = ec2.live_instances(&setup.name, "prod").pop().unwrap();

    let second = setup.workspace(&terraform::newest());
    second.write(&config);
    let import = second.run(&[
        "import",
        "-no-color",
        "-input=false",
        "launch_service.svc",
        &format!("prod/{}", setup.name),
    ]);
    import.success();
    let values = second
        .resource_values("launch_service.svc")
        .expect("imported into state");
    assert_eq!(values["instance_id"], instance.id.as_str(), "{values}");
    let plan = second.plan();
    assert_eq!(
        plan.code,
        0,
        "plan after import must be empty:\n{}",
        plan.text()
    );

    let missing = second.run(&[
        "import",
        "-no-color",
        "launch_service.other",
        "prod/no-such-service",
    ]);
    assert_ne!(missing.code, 0);
    let bad_id = second.run(&["import", "-no-color", "launch_service.svc", "just-a-name"]);
    assert_ne!(bad_id.code, 0);
    assert!(
        bad_id.text().contains("<environment>/<name>"),
        "{}",
        bad_id.text()
    );
    second.destroy().success();
    assert!(ec2.live_instances(&setup.name, "prod").is_empty());
}

#[test]
fn invalid_size_name_and_target_fail_at_plan_naming_the_attribute_on_every_terraform() {
    for terraform in terraform::versions() {
        // Nothing is reachable: validation must fail before anything is called.
        let tf = Workspace::new(
            &terraform,
            "http://127.0.0.1:9",
            "unused",
            "http://127.0.0.1:9",
        );
        let v = &terraform.version;
        for (extra, name, wanted) in [
            (
                "  size = \"huge\"",
                "ok",
                "size must be one of small, medium, large",
            ),
            ("", "Not_A_Label", "name is not a valid service name"),
            (
                "  timeouts { create = \"soon\" }",
                "ok",
                "timeouts.create is not a duration",
            ),
        ] {
            tf.write(&service_block(name, extra));
            let plan = tf.plan();
            assert_eq!(
                plan.code,
                1,
                "terraform {v}: {extra:?} must fail:\n{}",
                plan.text()
            );
            assert!(
                plan.text().contains(wanted),
                "terraform {v}: expected {wanted:?} in:\n{}",
                plan.text()
            );
            assert!(
                plan.text().contains("launch_service.svc"),
                "terraform {v}: the error must point at the resource:\n{}",
                plan.text()
            );
        }
        tf.write("resource \"launch_service\" \"svc\" {\n  name = \"ok\"\n  target = \"gcp\"\n}\n");
        let plan = tf.plan();
        assert!(
            plan.text()
                .contains("target must be one of aws, docker, proxmox"),
            "terraform {v}:\n{}",
            plan.text()
        );
    }
}

#[test]
fn ec2_faults_are_retried_and_then_reported_clearly() {
    let setup = Setup::new();
    let ec2 = setup.moto.peer();
    let proxy = FaultProxy::start(setup.moto.port);
    let tf = Workspace::new(
        &terraform::newest(),
        &setup.server.url(),
        &setup.server.admin_token,
        &proxy.url(),
    );
    tf.write(&service_block(&setup.name, "  wait_for_agent = false"));

    proxy.fail_next(2, Fault::Unavailable);
    tf.apply().success();
    assert_eq!(proxy.failed(), 2);
    assert_eq!(ec2.live_instances(&setup.name, "prod").len(), 1);

    proxy.fail_next(2, Fault::Throttling);
    let plan = tf.plan();
    assert_eq!(
        plan.code,
        0,
        "throttled reads must be retried:\n{}",
        plan.text()
    );
    assert_eq!(proxy.failed(), 4);

    proxy.fail_all(true, Fault::Unavailable);
    let plan = tf.plan();
    assert_eq!(plan.code, 1, "{}", plan.text());
    let text = plan.text();
    assert!(
        text.contains("DescribeInstances"),
        "the error must name the call:\n{text}"
    );
    assert!(
        text.contains("run again later"),
        "the error must say what to do:\n{text}"
    );
    assert!(
        proxy.failed() >= 4 + 5,
        "the SDK must have retried: {} failed requests",
        proxy.failed()
    );

    proxy.fail_all(false, Fault::Unavailable);
    tf.destroy().success();
    assert!(ec2.live_instances(&setup.name, "prod").is_empty());
}

#[test]
fn an_agent_that_never_registers_fails_create_but_keeps_the_instance_for_destroy() {
    let setup = Setup::new();
    let ec2 = setup.moto.peer();
    let tf = setup.workspace(&terraform::newest());
    tf.write(&service_block(
        &setup.name,
        "  timeouts { create = \"3s\" }",
    ));
    let apply = tf.apply();
    assert_eq!(apply.code, 1, "{}", apply.text());
    assert!(
        apply.text().contains("did not register in time"),
        "{}",
        apply.text()
    );
    let instance = ec2
        .live_instances(&setup.name, "prod")
        .pop()
        .expect("the instance exists");
    let values = tf
        .resource_values("launch_service.svc")
        .expect("the instance is kept in state");
    assert_eq!(values["instance_id"], instance.id.as_str());
    let plan = tf.plan();
    assert!(
        plan.stdout.contains("tainted"),
        "the kept instance must be tainted:\n{}",
        plan.stdout
    );

    let join_token = script_value(&ec2.user_data(&instance.id), "LAUNCH_JOIN_TOKEN").unwrap();
    tf.destroy().success();
    assert!(
        ec2.live_instances(&setup.name, "prod").is_empty(),
        "destroy left an instance"
    );
    // Destroy revoked the join token: a host booting late cannot register.
    let late = Agent::spawn(&setup.server, &setup.name, "prod", &join_token);
    let refused = late
        .process
        .stderr
        .wait_for(Duration::from_secs(30), |l| l.contains("join token"))
        .unwrap_or_else(|e| panic!("the agent must be refused: {e}"));
    assert!(
        !refused.contains(&join_token),
        "the token leaked into a log line"
    );
}

#[test]
fn secrets_stay_out_of_plan_output_and_trace_logs() {
    let setup = Setup::new();
    let secret = format!("s3cr3t-{}", unique::hex(12));
    let mut tf = setup.workspace(&terraform::newest());
    tf.set_env("TF_LOG", "trace");
    tf.write(&service_block(
        &setup.name,
        &format!("  wait_for_agent = false\n  secrets = {{ API_KEY = \"{secret}\" }}"),
    ));
    let plan = tf.plan();
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(plan.stdout.contains("(sensitive value)"), "{}", plan.stdout);
    let apply = tf.apply();
    apply.success();
    let secrets = setup
        .server
        .cli(&["secrets", "list", &setup.name, "--env", "prod"]);
    assert!(
        secrets.stdout.contains("API_KEY"),
        "the secret must reach the control plane: {secrets}"
    );

    let rotated = format!("r0tated-{}", unique::hex(12));
    tf.write(&service_block(
        &setup.name,
        &format!("  wait_for_agent = false\n  secrets = {{ API_KEY = \"{rotated}\" }}"),
    ));
    let update = tf.apply();
    update.success();
    let destroy = tf.destroy();
    destroy.success();
    for (what, run) in [
        ("plan", &plan),
        ("apply", &apply),
        ("update", &update),
        ("destroy", &destroy),
    ] {
        for value in [&secret, &rotated] {
            assert!(
                !run.text().contains(value.as_str()),
                "{what} output (TF_LOG=trace) holds a secret value"
            );
        }
    }
}

#[test]
fn a_service_security_group_opens_only_the_ports_asked_and_puts_back_drift() {
    let setup = Setup::new();
    let ec2 = setup.moto.peer();
    let tf = setup.workspace(&terraform::newest());
    let group = format!("launch-{}-prod", setup.name);
    let config = |ports: &str| {
        format!(
            "resource \"launch_aws_security_group\" \"sg\" {{\n  name = \"{group}\"\n  ingress_tcp_ports = {ports}\n}}\n"
        )
    };
    tf.write(&config("[443, 80]"));
    tf.apply().success();
    let (id, ports) = ec2.security_group(&group).expect("the group exists");
    assert_eq!(ports, vec![80, 443]);
    let plan = tf.plan();
    assert_eq!(plan.code, 0, "{}", plan.text());

    ec2.open_port(&id, 22);
    let plan = tf.plan();
    assert_eq!(
        plan.code,
        2,
        "a port opened out of band must show:\n{}",
        plan.text()
    );
    tf.apply().success();
    assert_eq!(
        ec2.security_group(&group).unwrap().1,
        vec![80, 443],
        "apply must close it again"
    );

    tf.write(&config("[8443]"));
    tf.apply().success();
    let (same_id, ports) = ec2.security_group(&group).unwrap();
    assert_eq!(
        (same_id.as_str(), ports),
        (id.as_str(), vec![8443]),
        "ports change in place"
    );

    tf.write(&config("[70000]"));
    let plan = tf.plan();
    assert!(
        plan.text().contains("ingress_tcp_ports must be TCP ports"),
        "{}",
        plan.text()
    );
    tf.write(&config("[8443]"));
    tf.destroy().success();
    assert!(
        ec2.security_group(&group).is_none(),
        "destroy left the group"
    );
}
