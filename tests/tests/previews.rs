//! Pull-request previews on one agent with its front door and real ACME
//! (pebble): prod and two previews of the quickstart each answer on their
//! own name with their own content and certificate; a third preview is
//! refused at the cap; every preview container is memory-limited, prod's
//! is not. The webhook's `pull_request closed` tears down that PR's
//! preview while the other preview and prod serve every request; after it
//! no container, network, volume, image, directory, route or certificate of
//! it is left (each listing checked on the live preview first); a replayed
//! delivery does nothing. An agent killed in the middle of a teardown
//! finishes it once restarted, and an idle preview goes at its TTL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use launch_e2e::docker::{ComposeProject, docker_lines};
use launch_e2e::front_door::{self, Ports, RequestLoop};
use launch_e2e::pebble::{Pebble, PebbleOptions, client_config, tls_exchange};
use launch_e2e::poll::eventually;
use launch_e2e::{Server, Service, cli, http};

const REPO: &str = "octo-org/monorepo";
const WEBHOOK_SECRET: &str = "a webhook secret";
const ISSUE: Duration = Duration::from_secs(90);

/// `GET /` over HTTPS through the front door, trusting only `root`.
fn https_get(port: u16, root: &str, host: &str) -> Result<(u16, String), String> {
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let reply = tls_exchange(root, "127.0.0.1", port, host, request.as_bytes())?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").ok_or("no HTTP reply")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP reply: {head:?}"))?;
    Ok((code, body.to_owned()))
}

/// The DER of the leaf certificate the front door serves for `host`.
fn leaf(port: u16, root: &str, host: &str) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut connection = rustls::ClientConnection::new(client_config(root), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).unwrap();
    }
    connection.peer_certificates().unwrap()[0].to_vec()
}

fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn closed(server: &Server, delivery: &str, pr: u64) -> (u16, String) {
    let body = serde_json::json!({
        "action": "closed",
        "number": pr,
        "pull_request": {"number": pr, "merged": false},
        "repository": {"full_name": REPO},
    })
    .to_string()
    .into_bytes();
    let signature = sign(&body);
    http::post(
        server.addr.port(),
        "/v1/github/webhook",
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", delivery),
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &signature),
        ],
        body,
    )
    .unwrap()
}

/// Everything of one preview the docker CLI and the agent's data dir show.
#[derive(Debug, PartialEq, Eq)]
struct Leftovers {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
    dir: bool,
    route: bool,
    certificate: bool,
}

impl Leftovers {
    fn of(project: &str, data_dir: &Path, preview: &str, host: &str) -> Leftovers {
        let label = format!("label=com.docker.compose.project={project}");
        let name = format!("{preview}.{host}");
        let routes =
            std::fs::read_to_string(data_dir.join("ingress/routes.json")).unwrap_or_default();
        Leftovers {
            containers: docker_lines(&["ps", "-a", "-q", "--filter", &label]),
            networks: docker_lines(&["network", "ls", "-q", "--filter", &label]),
            volumes: docker_lines(&["volume", "ls", "-q", "--filter", &label]),
            images: docker_lines(&["images", "--format", "{{.Repository}}"])
                .into_iter()
                .filter(|repo| repo.starts_with(&format!("{project}_")))
                .collect(),
            dir: data_dir.join("previews").join(preview).exists(),
            route: routes.contains(&format!("\"{name}\"")),
            certificate: data_dir.join(format!("tls/acme/{name}.pem")).exists(),
        }
    }

    fn all_present(&self) -> bool {
        !self.containers.is_empty()
            && !self.networks.is_empty()
            && !self.volumes.is_empty()
            && !self.images.is_empty()
            && self.dir
            && self.route
            && self.certificate
    }

    fn none() -> Leftovers {
        Leftovers {
            containers: vec![],
            networks: vec![],
            volumes: vec![],
            images: vec![],
            dir: false,
            route: false,
            certificate: false,
        }
    }
}

/// Waits until nothing of `preview` is left.
fn torn_down(what: &str, project: &str, data: &Path, preview: &str, host: &str) {
    eventually(Duration::from_secs(60), what, || {
        match Leftovers::of(project, data, preview, host) {
            left if left == Leftovers::none() => Ok(()),
            left => Err(format!("{left:?}")),
        }
    });
}

fn previews_json(server: &Server, service: &Service) -> Vec<serde_json::Value> {
    let out = server.cli(&["previews", "--service", &service.name, "--output", "json"]);
    out.success();
    out.json().as_array().unwrap().clone()
}

fn memory_limit(project: &str) -> String {
    let label = format!("label=com.docker.compose.project={project}");
    let ids = docker_lines(&["ps", "-q", "--filter", &label]);
    assert_eq!(ids.len(), 1, "one container of {project}: {ids:?}");
    docker_lines(&["inspect", "--format", "{{.HostConfig.Memory}}", &ids[0]]).join("")
}

#[test]
fn previews_serve_beside_prod_on_their_own_names_and_leave_nothing_behind() {
    let service = Service::quickstart();
    let host = front_door::host_name(&service);
    front_door::make_routed(&service, &host);
    // A named volume, so the volume listing has something to find.
    service.write(
        "compose.yaml",
        &(std::fs::read_to_string(service.dir().join("compose.yaml"))
            .unwrap()
            .replace(
                "    init: true\n",
                "    init: true\n    volumes: [\"data:/data\"]\n",
            )
            + "volumes:\n  data: {}\n"),
    );
    let ports = Ports::free();
    let pebble = Pebble::start(PebbleOptions {
        http_port: ports.http,
        validity: None,
    });
    let files = tempfile::tempdir().unwrap();
    let secret_file: PathBuf = files.path().join("webhook-secret");
    std::fs::write(&secret_file, WEBHOOK_SECRET).unwrap();
    let server_args = [
        "--preview-cap",
        "2",
        "--preview-memory-mib",
        "64",
        "--github-webhook-secret-file",
        secret_file.to_str().unwrap(),
    ];
    let mut server = Server::start_with(&server_args);
    let mut agent = front_door::acme_agent(&server, &service, &ports, &pebble);
    let project = |preview: &str| format!("{}-{}-{preview}", service.name, service.environment);
    let _guards: Vec<ComposeProject> = ["pr-1", "pr-2", "pr-3"]
        .iter()
        .map(|p| ComposeProject::new(project(p)))
        .collect();
    let dir = service.dir_arg();
    let deploy = |index: &str, extra: &[&str]| {
        service.set_index(index);
        let mut args = vec!["--wait", "--timeout", "3m"];
        args.extend_from_slice(extra);
        server.cli(&service.deploy_args(&dir, &args))
    };

    // A preview needs its environment running first.
    let early = deploy("too early", &["--preview", "pr-1"]);
    early.expect_code(2);
    assert!(early.to_string().contains("deploy it first"), "{early}");

    deploy("prod", &[]).success();
    deploy(
        "preview one",
        &[
            "--preview",
            "pr-1",
            "--repo",
            REPO,
            "--pr",
            "1",
            "--ref",
            "abc1",
        ],
    )
    .success();
    deploy("preview two", &["--preview", "pr-2", "--ref", "abc2"]).success();

    // The cap: a third is refused, naming the cap and the oldest.
    let refused = deploy("preview three", &["--preview", "pr-3"]);
    refused.expect_code(2);
    let text = refused.to_string();
    assert!(
        text.contains("the cap (2)") && text.contains("pr-1"),
        "{text}"
    );

    // Each name answers with its own content and its own certificate.
    let root = pebble.issuing_root_pem();
    let names = [
        (host.clone(), "prod"),
        (format!("pr-1.{host}"), "preview one"),
        (format!("pr-2.{host}"), "preview two"),
    ];
    for (name, body) in &names {
        eventually(ISSUE, &format!("{name} over HTTPS"), || {
            match https_get(ports.https, &root, name)? {
                (200, got) if got.trim() == *body => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    let leaves: Vec<Vec<u8>> = names
        .iter()
        .map(|(name, _)| leaf(ports.https, &root, name))
        .collect();
    assert!(leaves[0] != leaves[1] && leaves[1] != leaves[2] && leaves[0] != leaves[2]);

    // Limits on every preview container, none on prod's.
    assert_eq!(
        memory_limit(&project("pr-1")),
        (64 * 1024 * 1024).to_string()
    );
    assert_eq!(memory_limit(&service.project.name), "0");

    let listed = previews_json(&server, &service);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(cli::field(&listed[0], "preview"), "pr-1");
    assert_eq!(cli::field(&listed[0], "state"), "healthy");
    assert_eq!(cli::field(&listed[0], "git_ref"), "abc1");
    assert!(cli::field(&listed[0], "url").contains(&format!("pr-1.{host}")));
    // prod's own history does not see the previews.
    let releases = cli::releases(&server, &service.name, &service.environment);
    assert_eq!(releases.len(), 1, "{releases:?}");

    // The webhook closes PR 1 while prod and pr-2 serve.
    let data = agent.data_dir().to_owned();
    let before = Leftovers::of(&project("pr-1"), &data, "pr-1", &host);
    assert!(
        before.all_present(),
        "the listing finds a live preview: {before:?}"
    );
    let loops: Vec<RequestLoop> = [host.clone(), format!("pr-2.{host}")]
        .into_iter()
        .map(|name| {
            let root = root.clone();
            let port = ports.https;
            RequestLoop::start_with(Arc::new(move || https_get(port, &root, &name)))
        })
        .collect();
    let (code, text) = closed(&server, "d-1", 1);
    assert_eq!(code, 200, "{text}");
    torn_down("pr-1 torn down", &project("pr-1"), &data, "pr-1", &host);
    for report in loops.into_iter().map(RequestLoop::stop) {
        assert!(report.requests > 10, "{report:?}");
        assert!(report.failures.is_empty(), "{report:?}");
    }
    assert!(
        Leftovers::of(&project("pr-2"), &data, "pr-2", &host).all_present(),
        "the other preview is untouched"
    );
    assert_eq!(memory_limit(&service.project.name), "0");
    let (code, text) = closed(&server, "d-1", 1);
    assert_eq!(
        (code, text.contains("handled before")),
        (200, true),
        "{text}"
    );
    assert_eq!(previews_json(&server, &service).len(), 1);

    // Kill the agent in the middle of pr-2's teardown: the restarted agent finishes it.
    let removed = server.cli(&["previews", "rm", "pr-2", "--service", &service.name]);
    removed.success();
    eventually(
        Duration::from_secs(60),
        "pr-2's container to stop",
        || match docker_lines(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", project("pr-2")),
        ])
        .as_slice()
        {
            [] => Ok(()),
            running => Err(format!("{running:?}")),
        },
    );
    agent.kill_hard();
    assert!(
        Leftovers::of(&project("pr-2"), &data, "pr-2", &host).dir,
        "killed before the teardown ended"
    );
    agent.restart();
    torn_down(
        "pr-2 torn down after the restart",
        &project("pr-2"),
        &data,
        "pr-2",
        &host,
    );
    let (code, body) = eventually(ISSUE, "prod over HTTPS", || {
        https_get(ports.https, &root, &host)
    });
    assert_eq!((code, body.trim()), (200, "prod"));

    // An idle preview goes at the TTL.
    deploy("preview three", &["--preview", "pr-3"]).success();
    assert!(Leftovers::of(&project("pr-3"), &data, "pr-3", &host).dir);
    let mut short_ttl = server_args.to_vec();
    short_ttl.extend(["--preview-ttl", "2s"]);
    server.restart_with(&short_ttl);
    torn_down(
        "pr-3 torn down at its TTL",
        &project("pr-3"),
        &data,
        "pr-3",
        &host,
    );
    assert!(previews_json(&server, &service).is_empty());
    let (code, body) = https_get(ports.https, &root, &host).unwrap();
    assert_eq!((code, body.trim()), (200, "prod"), "prod never touched");
}
