//! Foreign compose files end to end: the corpus of multi-service apps in
//! `tests/corpus` deploys healthy on the real engine; broken files are
//! refused by `launch deploy` (exit 2, the key named, nothing uploaded) and
//! by the control plane for hand-made bundles; a key the host's compose
//! lacks is refused by `launch deploy` before the upload (the host's
//! compose from `GetService`); the host policy refuses each
//! rule until an admin allows it; the health gate fails a service that
//! crashes after it started and watches a live release until it dies.

use std::path::PathBuf;
use std::time::Duration;

use launch_e2e::docker::{ComposeProject, docker_lines};
use launch_e2e::{Agent, Server, binaries, cli, poll, service, unique};

const APPS: [&str; 12] = [
    "blog", "shop", "wiki", "chat", "docs", "notes", "vault", "queue", "metrics", "gallery",
    "forum", "status",
];

/// A copy of a corpus app (or an empty service dir) under a unique service
/// name, with busybox in `bin/` and `8080` rewritten to a free port.
struct App {
    name: String,
    port: u16,
    dir: PathBuf,
    _project: ComposeProject,
    _temp: tempfile::TempDir,
}

impl App {
    fn from_corpus(app: &str) -> App {
        let source = binaries::workspace_root().join("tests/corpus").join(app);
        let app = App::empty();
        service::copy_tree(&source, &app.dir);
        let toml = std::fs::read_to_string(app.dir.join("launch.toml")).unwrap();
        std::fs::write(
            app.dir.join("launch.toml"),
            toml.replace("8080", &app.port.to_string()),
        )
        .unwrap();
        app
    }

    fn empty() -> App {
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-compose-")
            .tempdir()
            .unwrap();
        let name = unique::service_name();
        let dir = temp.path().join(&name);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
            .expect("copy /bin/busybox (scripts/setup installs busybox-static)");
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY bin/busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN mkdir -p /www && echo hello > /www/index.html\n",
        )
        .unwrap();
        App {
            port: unique::free_port(),
            _project: ComposeProject::new(format!("{name}-prod")),
            name,
            dir,
            _temp: temp,
        }
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(
            self.dir.join(rel),
            text.replace("PORT", &self.port.to_string()),
        )
        .unwrap();
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    fn deploy(&self, server: &Server, extra: &[&str]) -> cli::CliOutput {
        let dir = self.dir_arg();
        let mut args = vec!["deploy", &dir, "--service", &self.name, "--env", "prod"];
        args.extend_from_slice(extra);
        server.cli(&args)
    }

    /// Packs the directory with the library (no CLI check) and deploys the tar.gz.
    fn deploy_bundle(&self, server: &Server, extra: &[&str]) -> cli::CliOutput {
        let bundle = self.dir.parent().unwrap().join("hand-made.tar.gz");
        let file = std::fs::File::create(&bundle).unwrap();
        launch_core::bundle::pack_dir(&self.dir, file).unwrap();
        let bundle = bundle.display().to_string();
        let mut args = vec![
            "deploy",
            ".",
            "--bundle",
            &bundle,
            "--service",
            &self.name,
            "--env",
            "prod",
        ];
        args.extend_from_slice(extra);
        server.cli(&args)
    }

    fn get(&self) -> Result<(u16, String), String> {
        launch_e2e::http::get(self.port, "/")
    }
}

fn bundles(server: &Server) -> usize {
    std::fs::read_dir(server.data_dir().join("bundles"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn the_corpus_of_multi_service_apps_deploys_healthy_on_the_real_engine() {
    let server = Server::start();
    let expected_bodies = [
        ("shop", "schema-v2"),
        ("chat", "welcome in general"),
        ("docs", "docs-built-with-args"),
        ("gallery", "gallery"),
    ];
    // Three at a time: CI has two cores and every deploy builds images.
    for chunk in APPS.chunks(3) {
        std::thread::scope(|scope| {
            for app in chunk {
                let server = &server;
                scope.spawn(move || {
                    let corpus = App::from_corpus(app);
                    let _agent = Agent::start(server, &corpus.name, "prod");
                    let out = corpus.deploy(server, &["--wait", "--output", "json"]);
                    assert_eq!(out.code, Some(0), "{app} did not deploy healthy\n{out}");
                    assert_eq!(cli::field(&out.json(), "state"), "healthy", "{app}\n{out}");
                    let (code, body) = corpus
                        .get()
                        .unwrap_or_else(|e| panic!("{app} does not answer: {e}"));
                    assert_eq!(code, 200, "{app}: {body}");
                    if let Some((_, text)) = expected_bodies.iter().find(|(a, _)| a == app) {
                        assert!(body.contains(text), "{app}: expected {text:?} in {body:?}");
                    }
                    if *app == "notes" {
                        let label =
                            format!("label=com.docker.compose.project={}-prod", corpus.name);
                        let names = docker_lines(&[
                            "ps",
                            "-a",
                            "--filter",
                            &label,
                            "--format",
                            "{{.Names}}",
                        ]);
                        assert!(names.iter().any(|n| n.contains("web")), "{names:?}");
                        assert!(
                            !names.iter().any(|n| n.contains("debug")),
                            "a profiled service started: {names:?}"
                        );
                    }
                });
            }
        });
    }
}

/// Compose files `launch deploy` must refuse, and what the refusal must name.
const BROKEN: [(&str, &str); 10] = [
    (
        "services:\n  web:\n    build: .\n   oops: [\n",
        "compose.yaml:4",
    ),
    (
        "services:\n  web: {build: .}\nservice: {}\n",
        "unknown top-level key `service`",
    ),
    (
        "services:\n  web:\n    ports: [\"PORT:8080\"]\n",
        "services.web: has neither `image` nor `build`",
    ),
    (
        "services:\n  web: {build: ., ports: [\"70000:8080\"]}\n",
        "services.web.ports[0]",
    ),
    (
        "services:\n  web: {build: ., imgae: x}\n",
        "services.web.imgae",
    ),
    (
        "services:\n  web: {build: ., depends_on: [db]}\n",
        "depends on `db`",
    ),
    (
        "services:\n  web: {build: ., volumes: [\"data:/data\"]}\n",
        "named volume `data`",
    ),
    (
        "services:\n  web: {build: ., networks: [back]}\n",
        "network `back`",
    ),
    (
        "services:\n  web: {build: ., restart: sometimes}\n",
        "services.web.restart",
    ),
    (
        "services:\n  web: {build: ., environment: [\"DB=${DB_URL:?set DB_URL}\"]}\n",
        "required variable DB_URL",
    ),
];

#[test]
fn broken_compose_files_exit_2_at_deploy_naming_the_key_without_an_upload() {
    let server = Server::start();
    let app = App::empty();
    app.write("compose.yaml", "services:\n  web: {build: .}\n");
    // Positive control: the same directory with a good file does upload.
    let out = app.deploy(&server, &[]);
    out.expect_code(0);
    assert_eq!(bundles(&server), 1, "{out}");
    for (text, key) in BROKEN {
        app.write("compose.yaml", text);
        let out = app.deploy(&server, &[]);
        out.expect_code(2);
        assert!(
            out.stderr.contains(key),
            "the refusal must name {key:?}\n{out}"
        );
        assert!(!out.stderr.contains("uploading"), "{out}");
    }
    assert_eq!(bundles(&server), 1, "a refused compose file was uploaded");
    assert_eq!(cli::releases(&server, &app.name, "prod").len(), 1);
}

#[test]
fn the_control_plane_checks_hand_made_bundles_and_the_hosts_compose() {
    let server = Server::start();
    let app = App::empty();
    for (text, key) in &BROKEN[1..4] {
        app.write("compose.yaml", text);
        let out = app.deploy_bundle(&server, &[]);
        out.expect_code(2);
        assert!(
            out.stderr.contains(key),
            "the refusal must name {key:?}\n{out}"
        );
    }
    assert_eq!(bundles(&server), 0, "a refused bundle was kept");
    // The host's compose is known once its agent said Hello: a deploy
    // through it makes sure of that (and is the positive control).
    let _agent = Agent::start(&server, &app.name, "prod");
    app.write("launch.toml", "[health]\nsettle = \"1s\"\n");
    app.write(
        "compose.yaml",
        "services:\n  web: {build: ., command: [\"sleep\", \"100000\"]}\n",
    );
    app.deploy_bundle(&server, &["--wait"]).success();
    app.write(
        "compose.yaml",
        "name: shop\nservices:\n  web: {build: ., command: [\"sleep\", \"100000\"]}\n",
    );
    let out = app.deploy_bundle(&server, &[]);
    let plugin = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if plugin {
        out.expect_code(0);
    } else {
        out.expect_code(2);
        assert!(
            out.stderr.contains("name: the host runs docker-compose")
                && out.stderr.contains("install the compose v2 plugin"),
            "{out}"
        );
    }
}

/// An agent on the wire whose Hello reports `compose`, connected once
/// `launch agents` says so.
fn agent_running(
    server: &Server,
    service: &str,
    compose: &str,
) -> launch_e2e::grpc::SimulatedAgent {
    let runtime = launch_e2e::grpc::runtime();
    let agent = runtime.block_on(async {
        let mut control = launch_e2e::grpc::control_client(server).await;
        let mut agents = launch_e2e::grpc::agent_client(server).await;
        let target = launch_proto::ServiceRef {
            service: service.to_owned(),
            environment: "prod".to_owned(),
        };
        launch_e2e::grpc::simulate_agent_with_compose(
            &mut control,
            &mut agents,
            &server.admin_token,
            &target,
            &format!("{service}-host"),
            compose,
        )
        .await
    });
    poll::eventually(
        Duration::from_secs(20),
        "the simulated agent connects",
        || {
            cli::agents(server)
                .into_iter()
                .find(|a| {
                    a["labels"]["service-name"] == service
                        && a["connected"] == serde_json::json!(true)
                })
                .map(|_| ())
                .ok_or_else(|| format!("{:?}", cli::agents(server)))
        },
    );
    agent
}

#[test]
fn deploy_refuses_a_key_the_hosts_compose_lacks_before_uploading() {
    let server = Server::start();
    let old = App::empty();
    let _v1 = agent_running(&server, &old.name, "docker-compose 1.29.2");
    old.write("compose.yaml", "name: shop\nservices:\n  web: {build: .}\n");
    let out = old.deploy(&server, &[]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("name: the host runs docker-compose 1.29.2")
            && out.stderr.contains("install the compose v2 plugin")
            && out.stderr.contains("drop the key"),
        "{out}"
    );
    assert!(
        !out.stderr.contains("uploading"),
        "nothing may be uploaded\n{out}"
    );
    assert_eq!(bundles(&server), 0);
    // The control plane still checks what skips the CLI.
    let out = old.deploy_bundle(&server, &[]);
    out.expect_code(2);
    assert!(out.stderr.contains("docker-compose 1.29.2"), "{out}");
    assert_eq!(bundles(&server), 0);
    // Positive controls: the same host without the key, and the key on a
    // host whose compose knows it.
    old.write("compose.yaml", "services:\n  web: {build: .}\n");
    old.deploy(&server, &[]).success();
    let new = App::empty();
    let _v2 = agent_running(&server, &new.name, "docker compose 2.30.3");
    new.write("compose.yaml", "name: shop\nservices:\n  web: {build: .}\n");
    new.deploy(&server, &[]).success();
    assert_eq!(bundles(&server), 2);
}

const POLICY_COMPOSE: &str = r#"services:
  web:
    build: .
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["PORT:8080"]
    volumes:
      - /etc:/host-etc:ro
      - /var/run/docker.sock:/var/run/docker.sock
    pid: host
    ipc: host
    cap_add: [NET_ADMIN]
    devices: ["/dev/null:/dev/xnull"]
    security_opt: ["seccomp:unconfined"]
    sysctls: {net.core.somaxconn: 1024}
  sidecar:
    build: .
    command: ["sleep", "100000"]
    network_mode: host
"#;

/// (key path in the refusal, the allowance it names)
const POLICY_RULES: [(&str, &str); 9] = [
    ("services.web.volumes[0]", "bind:/etc"),
    ("services.web.volumes[1]", "docker-socket"),
    ("services.web.pid", "host-pid"),
    ("services.web.ipc", "host-ipc"),
    ("services.web.cap_add", "cap-add:NET_ADMIN"),
    ("services.web.devices", "devices"),
    ("services.web.security_opt", "security-opt"),
    ("services.web.sysctls", "sysctls"),
    ("services.sidecar.network_mode", "host-network"),
];

#[test]
fn the_host_policy_refuses_each_rule_in_a_hand_made_bundle_until_an_admin_allows_it() {
    let server = Server::start();
    let app = App::empty();
    let _agent = Agent::start(&server, &app.name, "prod");
    app.write(
        "launch.toml",
        "port = PORT\n[health]\npath = \"/\"\nsettle = \"1s\"\n",
    );
    app.write("compose.yaml", POLICY_COMPOSE);

    let out = app.deploy_bundle(&server, &["--wait", "--output", "json"]);
    out.expect_code(1);
    let refused = out.json();
    let message = cli::field(&refused, "message");
    for (key, allowance) in POLICY_RULES {
        assert!(message.contains(key), "the refusal must name {key}\n{out}");
        assert!(
            message.contains(&format!("--env ENV {allowance}`")),
            "the refusal of {key} must name the allowance {allowance}\n{out}"
        );
    }
    // A failed first deploy leaves nothing running, and says so.
    assert_eq!(cli::field(&refused, "state"), "failed", "{out}");
    assert_eq!(cli::field(&refused, "running_release_id"), "", "{out}");
    assert!(app.get().is_err(), "a refused release must not be started");

    let mut allow = vec!["services", "allow", &app.name, "--env", "prod"];
    allow.extend(POLICY_RULES.iter().map(|(_, a)| *a));
    server.cli(&allow).success();
    let listed = server.cli(&["services", "allowances", &app.name, "--output", "json"]);
    let listed = cli::list(&listed.json(), "allowances").unwrap();
    assert_eq!(listed.len(), POLICY_RULES.len(), "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|a| cli::field(a, "granted_by") == "admin"),
        "{listed:?}"
    );

    let out = app.deploy_bundle(&server, &["--wait", "--output", "json"]);
    assert_eq!(
        out.code,
        Some(0),
        "with every allowance the release must deploy\n{out}"
    );
    assert_eq!(app.get().map(|(code, _)| code), Ok(200));

    // Taking one allowance back refuses that one key again.
    server
        .cli(&[
            "services", "disallow", &app.name, "--env", "prod", "host-pid",
        ])
        .success();
    let out = app.deploy_bundle(&server, &["--wait", "--output", "json"]);
    out.expect_code(1);
    let message = cli::field(&out.json(), "message").to_owned();
    assert!(
        message.contains("services.web.pid") && message.contains("host-pid"),
        "{out}"
    );
    assert!(
        !message.contains("services.web.ipc"),
        "only the revoked key is refused\n{out}"
    );
    assert_eq!(
        app.get().map(|(code, _)| code),
        Ok(200),
        "the previous release serves on"
    );

    // Keys nothing can allow, and an allowance that is not one.
    app.write(
        "compose.yaml",
        "services:\n  web:\n    build: {context: ../../../..}\n  priv:\n    build: .\n    privileged: true\n",
    );
    let out = app.deploy_bundle(&server, &["--wait", "--output", "json"]);
    out.expect_code(1);
    let message = cli::field(&out.json(), "message").to_owned();
    assert!(
        message.contains("services.web.build.context") && message.contains("copy what it needs"),
        "{out}"
    );
    assert!(
        message.contains("services.priv.privileged") && message.contains("ENV privileged`"),
        "{out}"
    );
    let out = server.cli(&["services", "allow", &app.name, "root"]);
    out.expect_code(2);
    assert!(out.stderr.contains("is not an allowance"), "{out}");
}

/// A web that serves, then runs `script` (busybox sh) as its main process.
fn scripted(app: &App, script: &str, settle: &str) {
    app.write(
        "launch.toml",
        &format!("port = PORT\n[health]\npath = \"/\"\ntimeout = \"60s\"\nsettle = \"{settle}\"\n"),
    );
    let command = serde_json::to_string(&["sh", "-c", script]).unwrap();
    app.write(
        "compose.yaml",
        &format!("services:\n  web:\n    build: .\n    init: true\n    ports: [\"PORT:8080\"]\n    command: {command}\n"),
    );
}

#[test]
fn a_service_that_crashes_two_seconds_after_start_is_rolled_back_never_healthy() {
    let server = Server::start();
    let app = App::empty();
    let _agent = Agent::start(&server, &app.name, "prod");
    scripted(&app, "exec httpd -f -p 8080 -h /www", "5s");
    app.deploy(&server, &["--wait"]).success();

    // Serves at once (the probe passes), exits 1 two seconds later.
    scripted(
        &app,
        "httpd -p 8080 -h /www; sleep 2; echo crashing; exit 1",
        "5s",
    );
    let out = app.deploy(&server, &["--wait", "--output", "json"]);
    out.expect_code(1);
    let value = out.json();
    assert_eq!(cli::field(&value, "state"), "rolled_back", "{out}");
    assert!(
        cli::field(&value, "message").contains("exited with code 1"),
        "{out}"
    );
    let releases = cli::releases(&server, &app.name, "prod");
    assert_eq!(
        cli::field(&releases[0], "state"),
        "rolled_back",
        "{releases:?}"
    );
    assert_eq!(releases[1]["current"], true, "{releases:?}");
    poll::eventually(
        Duration::from_secs(30),
        "the previous release to serve",
        || app.get().map(|_| ()),
    );
}

fn health_of(server: &Server, name: &str) -> String {
    let status = server.cli(&["status", "--output", "json"]);
    cli::list(&status.json(), "services")
        .unwrap_or_default()
        .iter()
        .find(|s| cli::field(s, "service") == name)
        .map(|s| cli::field(s, "health").to_owned())
        .unwrap_or_default()
}

#[test]
fn a_healthy_release_whose_service_dies_later_shows_degraded_in_status() {
    let server = Server::start();
    let app = App::empty();
    let _agent = Agent::start(&server, &app.name, "prod");
    scripted(
        &app,
        "httpd -p 8080 -h /www; while [ ! -e /www/die ]; do sleep 0.2; done; echo dying on purpose; exit 3",
        "1s",
    );
    app.deploy(&server, &["--wait"]).success();
    // Positive control: live and not degraded; the agent has looked at it.
    poll::eventually(
        Duration::from_secs(30),
        "status to say ok",
        || match health_of(&server, &app.name) {
            h if h == "ok" => Ok(()),
            other => Err(other),
        },
    );
    let label = format!("label=com.docker.compose.project={}-prod", app.name);
    let ids = docker_lines(&["ps", "-q", "--filter", &label]);
    assert_eq!(ids.len(), 1, "{ids:?}");
    docker_lines(&["exec", &ids[0], "touch", "/www/die"]);
    let health =
        poll::eventually(
            Duration::from_secs(60),
            "status to say degraded",
            || match health_of(&server, &app.name) {
                h if h.starts_with("degraded") => Ok(h),
                other => Err(other),
            },
        );
    assert!(health.contains("exited with code 3"), "{health}");
    assert!(
        health.contains("dying on purpose"),
        "the last lines are shown: {health}"
    );
    let text = server.cli(&["status"]);
    assert!(
        text.stdout.contains(&format!("{}/prod degraded", app.name)),
        "{text}"
    );
}
