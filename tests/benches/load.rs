//! Load benchmark of the control plane, run by `bench/run` (`cargo bench -p
//! launch-e2e --bench load`): a real `launch server` (from `LAUNCH_BIN_DIR`)
//! with 1,000 simulated agents, each registered with its own join token for its
//! own service and holding an open Session stream (spread over 20 HTTP/2
//! connections), then 100 deploys issued at once to 100 of those services.
//! It reports how long each deploy took to reach its agent's session, whether
//! any failed, and the server's resident memory before and after. With
//! `LAUNCH_BENCH_DATABASE=postgres` the server's store is a database in a
//! throwaway PostgreSQL cluster (`launch_e2e::postgres`) instead of SQLite,
//! and the lines start `load on postgres:`.

use std::time::{Duration, Instant};

use launch_e2e::bench::{deploy_requests, percentile, rss_mb, tiny_bundle};
use launch_e2e::{Server, grpc, unique};
use launch_proto::{AgentMessage, ServiceRef, control_message};
use tokio::sync::{mpsc, oneshot};

const AGENTS: usize = 1000;
const CONNECTIONS: usize = 20;
const DEPLOYS: usize = 100;

fn main() {
    let postgres = match std::env::var("LAUNCH_BENCH_DATABASE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("LAUNCH_BENCH_DATABASE={other}: say sqlite or postgres"),
    };
    let cluster = postgres.then(launch_e2e::postgres::Cluster::start);
    let server = match &cluster {
        Some(cluster) => Server::start_with(&["--database-url", &cluster.new_database()]),
        None => Server::start(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let label = if postgres { "load on postgres" } else { "load" };
    runtime.block_on(run(&server, label));
}

/// One simulated agent: its service, and where its first mission lands.
struct Simulated {
    target: ServiceRef,
    first_mission: oneshot::Receiver<Result<(String, Instant), String>>,
    _up: mpsc::Sender<AgentMessage>,
}

async fn run(server: &Server, label: &str) {
    let idle_rss = rss_mb(server.process.pid());
    let mut controls = Vec::new();
    let mut agent_clients = Vec::new();
    for _ in 0..CONNECTIONS {
        controls.push(grpc::control_client(server).await);
        agent_clients.push(grpc::agent_client(server).await);
    }
    let started = Instant::now();
    let mut simulated = Vec::with_capacity(AGENTS);
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..AGENTS {
        let mut control = controls[i % CONNECTIONS].clone();
        let mut agents = agent_clients[i % CONNECTIONS].clone();
        let token = server.admin_token.clone();
        connecting.spawn(async move {
            let target = ServiceRef {
                service: unique::service_name(),
                environment: "load".to_owned(),
            };
            let grpc::SimulatedAgent { up, mut down } = grpc::simulate_agent(
                &mut control,
                &mut agents,
                &token,
                &target,
                &format!("load-{i}"),
            )
            .await;
            let (first_tx, first_mission) = oneshot::channel();
            tokio::spawn(async move {
                let mut first_tx = Some(first_tx);
                let end = loop {
                    match down.message().await {
                        Ok(Some(message)) => {
                            if let Some(control_message::Msg::Mission(mission)) = message.msg
                                && let Some(tx) = first_tx.take()
                            {
                                let _ = tx.send(Ok((mission.mission_id, Instant::now())));
                            }
                        }
                        Ok(None) => break "the server ended the session".to_owned(),
                        Err(status) => break format!("session failed: {status}"),
                    }
                };
                if let Some(tx) = first_tx.take() {
                    let _ = tx.send(Err(end));
                }
            });
            Simulated {
                target,
                first_mission,
                _up: up,
            }
        });
    }
    while let Some(agent) = connecting.join_next().await {
        simulated.push(agent.expect("an agent connected"));
    }
    let connect_time = started.elapsed();
    let connected_rss = rss_mb(server.process.pid());

    let (bundle, sha) = tiny_bundle();

    // The other 900 stay connected throughout, as idle agents would.
    let idle = simulated.split_off(DEPLOYS);
    let mut deploys = tokio::task::JoinSet::new();
    for (i, agent) in simulated.into_iter().enumerate() {
        let mut control = controls[i % CONNECTIONS].clone();
        let token = server.admin_token.clone();
        let (bundle, sha) = (bundle.clone(), sha.clone());
        deploys.spawn(async move {
            // Bind the whole agent: its session must stay open until the
            // mission arrives (a field-by-field capture would drop `up`).
            let Simulated {
                target,
                first_mission,
                _up: _session,
            } = agent;
            let requests = deploy_requests(&target, "load", &bundle, &sha);
            let start = Instant::now();
            let response = control
                .deploy(grpc::request(tokio_stream::iter(requests), &token))
                .await;
            let Ok(response) = response else {
                return Err(format!("{response:?}"));
            };
            let (mission_id, at) = tokio::time::timeout(Duration::from_secs(60), first_mission)
                .await
                .map_err(|_| "no mission within 60 s".to_owned())?
                .map_err(|_| "session task ended".to_owned())??;
            if mission_id != response.into_inner().mission_id {
                return Err("another mission arrived".into());
            }
            Ok(at.saturating_duration_since(start))
        });
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    while let Some(result) = deploys.join_next().await {
        match result.expect("deploy task") {
            Ok(latency) => latencies.push(latency),
            Err(e) => failures.push(e),
        }
    }
    latencies.sort();
    let after_rss = rss_mb(server.process.pid());
    drop(idle);
    println!(
        "{label}: {AGENTS} agents registered and connected in {:.1} s; server RSS idle {idle_rss:.1} MB, with {AGENTS} sessions {connected_rss:.1} MB, after {DEPLOYS} deploys {after_rss:.1} MB",
        connect_time.as_secs_f64()
    );
    println!(
        "{label}: {DEPLOYS} concurrent deploys, {} failed; Deploy call → mission on the agent session: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        failures.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies
            .last()
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0),
    );
    assert!(failures.is_empty(), "deploys failed: {failures:?}");
}
