//! Preview benchmark, run by `bench/run` (`cargo bench --profile dev
//! --workspace --bench previews`): a server, an agent with its front door
//! and real ACME (pebble), the quickstart deployed to prod (the warm host:
//! its image built, its base layers cached). Then, five times, a changed
//! `www/index.html` deployed as a new preview with `launch deploy --preview
//! pr-<i> --wait`, timed until the preview's HTTPS URL answers with the new
//! page (certificate ordered and served), and `launch previews rm pr-<i>`
//! timed until nothing of it is left (containers, network, image, dir, route).

use std::time::{Duration, Instant};

use launch_e2e::docker::{ComposeProject, docker_lines};
use launch_e2e::front_door::{self, Ports};
use launch_e2e::pebble::{Pebble, PebbleOptions, tls_exchange};
use launch_e2e::{Server, Service};

const RUNS: usize = 5;

fn answers(port: u16, root: &str, host: &str, body: &str) -> bool {
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
    tls_exchange(root, "127.0.0.1", port, host, request.as_bytes())
        .map(|reply| String::from_utf8_lossy(&reply).contains(body))
        .unwrap_or(false)
}

fn gone(project: &str, data: &std::path::Path, preview: &str) -> bool {
    let label = format!("label=com.docker.compose.project={project}");
    docker_lines(&["ps", "-a", "-q", "--filter", &label]).is_empty()
        && docker_lines(&["network", "ls", "-q", "--filter", &label]).is_empty()
        && docker_lines(&["images", "--format", "{{.Repository}}"])
            .iter()
            .all(|repo| !repo.starts_with(&format!("{project}_")))
        && !data.join("previews").join(preview).exists()
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(120), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() {
    let service = Service::quickstart();
    let host = front_door::host_name(&service);
    front_door::make_routed(&service, &host);
    let ports = Ports::free();
    let pebble = Pebble::start(PebbleOptions {
        http_port: ports.http,
        validity: None,
    });
    let server = Server::start_with(&["--preview-cap", "20"]);
    let agent = front_door::acme_agent(&server, &service, &ports, &pebble);
    let dir = service.dir_arg();
    service.set_index("prod");
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();
    let root = pebble.issuing_root_pem();
    until("prod over HTTPS", || {
        answers(ports.https, &root, &host, "prod")
    });

    let mut up = Vec::new();
    let mut down = Vec::new();
    for i in 1..=RUNS {
        let preview = format!("pr-{i}");
        let project = format!("{}-{}-{preview}", service.name, service.environment);
        let _guard = ComposeProject::new(&project);
        let page = format!("preview {i}");
        service.set_index(&page);
        let name = format!("{preview}.{host}");
        let start = Instant::now();
        server
            .cli(&service.deploy_args(&dir, &["--preview", &preview, "--wait"]))
            .success();
        until(&format!("{name} over HTTPS"), || {
            answers(ports.https, &root, &name, &page)
        });
        up.push(start.elapsed());
        let start = Instant::now();
        server
            .cli(&["previews", "rm", &preview, "--service", &service.name])
            .success();
        until(&format!("{preview} torn down"), || {
            gone(&project, agent.data_dir(), &preview)
        });
        down.push(start.elapsed());
    }
    let summary = |times: &mut Vec<Duration>| {
        times.sort();
        format!(
            "median {:.2} s, min {:.2} s, max {:.2} s",
            times[times.len() / 2].as_secs_f64(),
            times[0].as_secs_f64(),
            times[times.len() - 1].as_secs_f64()
        )
    };
    println!(
        "preview deploy: deploy --preview --wait → HTTPS answers {} over {RUNS} previews",
        summary(&mut up)
    );
    println!(
        "preview teardown: previews rm → nothing left {} over {RUNS} previews",
        summary(&mut down)
    );
    drop(agent);
}
