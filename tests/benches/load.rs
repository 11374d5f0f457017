//! Load benchmark of the control plane, run by `bench/run` (`cargo bench -p
//! launch-e2e --bench load`): a real `launch server` (from `LAUNCH_BIN_DIR`)
//! with 1,000 simulated agents, each registered with its own join token for its
//! own service and holding an open Session stream (spread over 20 HTTP/2
//! connections) on which it heartbeats at the interval the server's Welcome
//! asks for, then 100 deploys issued at once to 100 of those services.
//! It reports how long each deploy took to reach its agent's session, whether
//! any failed, and the server's resident memory before and after. With
//! `LAUNCH_BENCH_DATABASE=postgres` the server's store is a database in a
//! throwaway PostgreSQL cluster (`launch_e2e::postgres`) instead of SQLite,
//! and the lines start `load on postgres:`; each burst's line then says what
//! PostgreSQL spent too, and a floor comes first: the database alone running
//! a deploy's statements from pgbench (`database_floor`).
//!
//! Knobs for the 10,000-agent runs (the defaults are the figures above):
//! `LAUNCH_BENCH_AGENTS` (1000); `LAUNCH_BENCH_CONNECTIONS`, the HTTP/2
//! connections the sessions share (one per 50 agents: the server allows 200
//! concurrent streams on a connection, hyper's default, and registrations
//! need some too); `LAUNCH_BENCH_IDLE_SECS` (0), a window after everyone
//! connected in which the server's CPU time (utime + stime from
//! `/proc/PID/stat`) is taken while the sessions only heartbeat;
//! `LAUNCH_BENCH_REPLICAS=2` (PostgreSQL only), two `launch server` replicas
//! on one database with the agents split between them and every deploy
//! issued through the replica that does not hold its agent, so it reaches the
//! agent by the cross-replica wake-up; `LAUNCH_BENCH_BUNDLES=distinct`, a
//! bundle of its own for each of the 100 deploys (by default they upload one
//! bundle, which the store keeps once). With the latencies the bench prints
//! the burst's wall time and the CPU time the server and the bench itself
//! spent on it, which says how much of the latency is waiting for a core.
//! The burst starts once the server has finished setting up the sessions
//! (its CPU back to heartbeats alone), not while it still is.
//! `LAUNCH_BENCH_PG_SOCKET=1` has the server reach PostgreSQL over its
//! unix socket instead of TCP on 127.0.0.1.
//! `LAUNCH_BENCH_BURSTS=N` runs N bursts, each to 100 agents of its own,
//! one after another (settled between), and prints the median p99;
//! `LAUNCH_BENCH_PERF_FIFO=PATH` tells `perf record --control fifo:PATH -D
//! -1` to sample during the bursts only.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use launch_e2e::bench::{
    context_switches, cpu_time, deploy_requests, percentile, raise_open_files_limit, rss_mb,
    tiny_bundle, tiny_bundle_of, tree_cpu_ns,
};
use launch_e2e::{Server, grpc, unique};
use launch_proto::control_message;
use launch_proto::{AgentMessage, ControlMessage, Heartbeat, ServiceRef, agent_message};
use tokio::sync::{Semaphore, mpsc, oneshot};

#[path = "load/knobs.rs"]
mod knobs;
#[path = "load/measure.rs"]
mod measure;
use knobs::Knobs;
use measure::{
    SETTLE_WINDOW, SETTLED_SHARE, database_floor, own_cpu_ns, servers_cpu, servers_cpu_since,
    servers_on_cpu, servers_threads_cpu, settle,
};

const DEPLOYS: usize = 100;
/// Sessions per HTTP/2 connection when `LAUNCH_BENCH_CONNECTIONS` is unset.
const AGENTS_PER_CONNECTION: usize = 50;
/// Registrations in flight at once at most: every agent at once up to
/// 1,000; beyond that the store's pool (10 s acquire timeout) would time
/// out calls queued behind thousands of others.
const CONNECTING_AT_ONCE: usize = 1000;

/// Heartbeats the simulated agents sent.
static HEARTBEATS: AtomicU64 = AtomicU64::new(0);
/// The interval the server's Welcome asked for, in ms.
static HEARTBEAT_INTERVAL_MS: AtomicU64 = AtomicU64::new(0);
/// Sessions the server ended while the bench still held them.
static ENDED: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let knobs = Knobs::from_env();
    let (postgres, replicas) = (knobs.postgres, knobs.replicas);
    let open_files = raise_open_files_limit();
    assert!(
        open_files as usize > 4 * knobs.connections + 64,
        "the open-files limit is {open_files}: raise it (ulimit -n) above {}",
        4 * knobs.connections + 64
    );
    let cluster = postgres.then(launch_e2e::postgres::Cluster::start);
    // The database's name, and the URL the servers reach it by.
    let database = cluster.as_ref().map(|cluster| {
        let url = cluster.new_database();
        let name = url
            .rsplit_once('/')
            .expect("a database URL ends with its name")
            .1
            .to_owned();
        let url = if knobs.pg_socket {
            cluster.socket_url(&name)
        } else {
            url
        };
        (name, url)
    });
    let mut servers = vec![match &database {
        Some((_, url)) => Server::start_with(&["--database-url", url]),
        None => Server::start(),
    }];
    if replicas == 2 {
        let second = Server::start_replica(&servers[0]).expect("a second replica starts");
        servers.push(second);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let label = match (postgres, replicas) {
        (false, _) => "load".to_owned(),
        (true, 1) => "load on postgres".to_owned(),
        (true, n) => format!("load on postgres, {n} replicas"),
    };
    let postmaster = cluster.as_ref().and_then(|c| c.postmaster_pid());
    if let (Some(cluster), Some((name, _))) = (&cluster, &database) {
        database_floor(cluster, name, &label);
    }
    runtime.block_on(run(&servers, postmaster, &knobs, &label));
}

/// One simulated agent: its service, the replica holding its session, and
/// where its first mission lands.
struct Simulated {
    target: ServiceRef,
    replica: usize,
    first_mission: oneshot::Receiver<Result<(String, Instant), String>>,
    _up: mpsc::Sender<AgentMessage>,
}

/// Per replica: its `ControlService` and `AgentService` clients, one
/// HTTP/2 connection each.
struct Clients {
    controls:
        Vec<launch_proto::control_service_client::ControlServiceClient<tonic::transport::Channel>>,
    agents: Vec<launch_proto::agent_service_client::AgentServiceClient<tonic::transport::Channel>>,
}

/// "12.3 MB", or "12.3 + 11.9 MB" for two replicas.
fn megabytes(values: &[f64]) -> String {
    let each: Vec<String> = values.iter().map(|mb| format!("{mb:.1}")).collect();
    format!("{} MB", each.join(" + "))
}

fn rss_all(servers: &[Server]) -> Vec<f64> {
    servers.iter().map(|s| rss_mb(s.process.pid())).collect()
}

async fn run(servers: &[Server], postmaster: Option<u32>, knobs: &Knobs, label: &str) {
    let agents = knobs.agents;
    let idle_rss = rss_all(servers);
    let per_replica = knobs.connections.div_ceil(servers.len());
    let mut clients = Vec::new();
    for server in servers {
        let mut replica = Clients {
            controls: Vec::new(),
            agents: Vec::new(),
        };
        for _ in 0..per_replica {
            replica.controls.push(grpc::control_client(server).await);
            replica.agents.push(grpc::agent_client(server).await);
        }
        clients.push(replica);
    }
    let token = servers[0].admin_token.clone();
    let started = Instant::now();
    let mut simulated = Vec::with_capacity(agents);
    let mut connecting = tokio::task::JoinSet::new();
    let at_once = std::sync::Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    for i in 0..agents {
        let replica = i % servers.len();
        let slot = (i / servers.len()) % per_replica;
        let mut control = clients[replica].controls[slot].clone();
        let mut agent_client = clients[replica].agents[slot].clone();
        let token = token.clone();
        let at_once = at_once.clone();
        connecting.spawn(async move {
            let _permit = at_once.acquire_owned().await.expect("semaphore open");
            let target = ServiceRef {
                service: unique::service_name(),
                environment: "load".to_owned(),
            };
            let grpc::SimulatedAgent { up, down } = grpc::simulate_agent(
                &mut control,
                &mut agent_client,
                &token,
                &target,
                &format!("load-{i}"),
            )
            .await;
            let (first_tx, first_mission) = oneshot::channel();
            tokio::spawn(hold_session(down, up.downgrade(), first_tx));
            Simulated {
                target,
                replica,
                first_mission,
                _up: up,
            }
        });
    }
    while let Some(agent) = connecting.join_next().await {
        simulated.push(agent.expect("an agent connected"));
    }
    let connect_time = started.elapsed();
    let settled_after = settle(servers).await;
    let connected_rss = rss_all(servers);

    if !knobs.idle.is_zero() {
        idle_window(servers, postmaster, knobs, label).await;
    }

    let shared = tiny_bundle();
    let mut p99s = Vec::new();
    let mut held = Vec::new();
    for round in 1..=knobs.bursts {
        if round > 1 {
            settle(servers).await;
        }
        // The others stay connected (and heartbeating) throughout, as idle agents would.
        let rest = simulated.split_off(DEPLOYS.min(simulated.len()));
        let deployed = std::mem::replace(&mut simulated, rest);
        let bundles = (0..deployed.len())
            .map(|i| match knobs.distinct_bundles {
                true => tiny_bundle_of(&format!("burst {round} deploy {i}")),
                false => shared.clone(),
            })
            .collect();
        let (p99, sessions) = burst(
            servers,
            postmaster,
            &clients,
            per_replica,
            &token,
            deployed,
            bundles,
            knobs,
            label,
        )
        .await;
        p99s.push(p99);
        held.extend(sessions);
    }
    if knobs.bursts > 1 {
        let each: Vec<String> = p99s
            .iter()
            .map(|p99| format!("{:.1}", p99.as_secs_f64() * 1e3))
            .collect();
        p99s.sort();
        println!(
            "{label}: {} bursts of {DEPLOYS} concurrent deploys, p99 per burst {} ms; median {:.1} ms",
            knobs.bursts,
            each.join(", "),
            p99s[p99s.len() / 2].as_secs_f64() * 1e3,
        );
    }
    let after_rss = rss_all(servers);
    println!(
        "{label}: {agents} agents registered and connected in {:.1} s; server RSS idle {}, with {agents} sessions {}, after {} deploys {}",
        connect_time.as_secs_f64(),
        megabytes(&idle_rss),
        megabytes(&connected_rss),
        DEPLOYS * knobs.bursts,
        megabytes(&after_rss),
    );
    println!(
        "{label}: the servers finished setting up the sessions {:.1} s after the last one opened (CPU under {SETTLED_SHARE} of a core for {} ms)",
        settled_after.as_secs_f64(),
        SETTLE_WINDOW.as_millis(),
    );
    // With every session still open, as during the burst.
    floor(servers, &clients, &token, label).await;
    let ended = ENDED.load(Ordering::Relaxed);
    drop((simulated, held));
    assert_eq!(
        ended, 0,
        "the server ended {ended} sessions the bench still held (see the server's log)"
    );
}

/// One burst: a deploy to each of `agents` at once, each through the
/// replica that does not hold its agent when there are two. Prints the
/// latencies, the wall time and the CPU the server and the bench spent;
/// returns the p99 and the sessions, which stay open until the bench ends
/// (closing them would add their close to the next burst's work). Panics
/// if a deploy failed.
#[allow(clippy::too_many_arguments)]
async fn burst(
    servers: &[Server],
    postmaster: Option<u32>,
    clients: &[Clients],
    per_replica: usize,
    token: &str,
    agents: Vec<Simulated>,
    bundles: Vec<(Vec<u8>, String)>,
    knobs: &Knobs,
    label: &str,
) -> (Duration, Vec<mpsc::Sender<AgentMessage>>) {
    let threads_before = servers_threads_cpu(servers);
    let database_before = postmaster.map(tree_cpu_ns);
    let bench_cpu_before = own_cpu_ns();
    let switches_before: Vec<u64> = servers
        .iter()
        .map(|s| context_switches(s.process.pid()))
        .collect();
    profiler(knobs, "enable");
    let burst = Instant::now();
    let mut deploys = tokio::task::JoinSet::new();
    for ((i, agent), (bundle, sha)) in agents.into_iter().enumerate().zip(bundles) {
        let through = (agent.replica + 1) % servers.len();
        let mut control = clients[through].controls[i % per_replica].clone();
        let token = token.to_owned();
        deploys.spawn(async move {
            let Simulated {
                target,
                first_mission,
                _up: session,
                ..
            } = agent;
            let latency =
                deploy_one(&mut control, &token, &target, first_mission, &bundle, &sha).await;
            (latency, session)
        });
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut sessions = Vec::new();
    while let Some(result) = deploys.join_next().await {
        let (latency, session) = result.expect("deploy task");
        sessions.push(session);
        match latency {
            Ok(latency) => latencies.push(latency),
            Err(e) => failures.push(e),
        }
    }
    let wall = burst.elapsed();
    profiler(knobs, "disable");
    latencies.sort();
    let mut threads = servers_threads_cpu(servers);
    for (name, ns) in &mut threads {
        *ns = ns.saturating_sub(threads_before.get(name).copied().unwrap_or(0));
    }
    let server_cpu = Duration::from_nanos(threads.values().sum());
    let by_thread: Vec<String> = threads
        .iter()
        .map(|(name, ns)| format!("{name} {:.1}", *ns as f64 / 1e6))
        .collect();
    let bench_cpu = Duration::from_nanos(own_cpu_ns().saturating_sub(bench_cpu_before));
    let count = sessions.len();
    let database = postmaster
        .zip(database_before)
        .map(|(pid, before)| Duration::from_nanos(tree_cpu_ns(pid).saturating_sub(before)));
    let switches: u64 = servers
        .iter()
        .zip(&switches_before)
        .map(|(s, before)| context_switches(s.process.pid()).saturating_sub(*before))
        .sum();
    let p99 = percentile(&latencies, 0.99);
    println!(
        "{label}: {count} concurrent deploys, {} failed; Deploy call → mission on the agent session: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        failures.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        latencies
            .last()
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let all = server_cpu + bench_cpu + database.unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{label}: the {count} deploys ({}) took {:.1} ms of wall time; CPU meanwhile: server {:.1} ms ({:.2} ms a deploy, {} context switches a deploy; by thread, ms: {}){}, bench {:.1} ms (the agents' heartbeats included); together {:.0} % of the {cores} cores' wall time",
        if knobs.distinct_bundles {
            "distinct bundles"
        } else {
            "one shared bundle"
        },
        ms(wall),
        ms(server_cpu),
        ms(server_cpu) / count as f64,
        switches / count as u64,
        by_thread.join(", "),
        database.map_or(String::new(), |spent| format!(
            ", PostgreSQL {:.1} ms ({:.2} ms a deploy)",
            ms(spent),
            ms(spent) / count as f64
        )),
        ms(bench_cpu),
        all.as_secs_f64() / (wall.as_secs_f64() * cores as f64) * 100.0,
    );
    assert!(failures.is_empty(), "deploys failed: {failures:?}");
    (p99, sessions)
}

/// Tells `perf record --control fifo:PATH` (`LAUNCH_BENCH_PERF_FIFO`) to
/// `enable` or `disable` sampling, so a profile holds the bursts alone.
fn profiler(knobs: &Knobs, command: &str) {
    if let Some(fifo) = &knobs.perf_fifo {
        std::fs::write(fifo, format!("{command}\n"))
            .unwrap_or_else(|e| panic!("cannot write to the perf control fifo {fifo}: {e}"));
    }
}

/// For scale: as many `WhoAmI` calls at once, over the same connections, as
/// the burst had deploys. `WhoAmI` is the cheapest call the server has — the
/// authorization layer, no store, no upload — so what it costs is the floor
/// under any deploy's: the HTTP/2 streams, the gRPC framing, the token
/// check and the tasks' wake-ups on these cores.
async fn floor(servers: &[Server], clients: &[Clients], token: &str, label: &str) {
    let cpu_before = servers_on_cpu(servers);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..DEPLOYS {
        let replica = &clients[i % clients.len()];
        let mut control = replica.controls[i % replica.controls.len()].clone();
        let token = token.to_owned();
        calls.spawn(async move {
            let start = Instant::now();
            control
                .who_am_i(grpc::request(
                    launch_proto::WhoAmIRequest::default(),
                    &token,
                ))
                .await
                .expect("WhoAmI");
            start.elapsed()
        });
    }
    let mut latencies = calls.join_all().await;
    latencies.sort();
    let server_cpu = servers_on_cpu(servers).saturating_sub(cpu_before);
    println!(
        "{label}: for scale, {DEPLOYS} WhoAmI calls at once (authorized, no store, no upload): p50 {:.1} ms, p99 {:.1} ms; server CPU {:.1} ms ({:.2} ms a call)",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        server_cpu.as_secs_f64() * 1e3,
        server_cpu.as_secs_f64() * 1e3 / DEPLOYS as f64,
    );
}

/// One deploy of the burst: the time from the Deploy call to its mission
/// on the agent's session.
async fn deploy_one(
    control: &mut launch_proto::control_service_client::ControlServiceClient<
        tonic::transport::Channel,
    >,
    token: &str,
    target: &ServiceRef,
    first_mission: oneshot::Receiver<Result<(String, Instant), String>>,
    bundle: &[u8],
    sha: &str,
) -> Result<Duration, String> {
    let requests = deploy_requests(target, "load", bundle, sha);
    let start = Instant::now();
    let response = control
        .deploy(grpc::request(tokio_stream::iter(requests), token))
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
}

/// Waits `knobs.idle` with every session open and heartbeating, and prints
/// the CPU time the server (and PostgreSQL) used meanwhile.
async fn idle_window(servers: &[Server], postmaster: Option<u32>, knobs: &Knobs, label: &str) {
    let database_cpu = || postmaster.map(|pid| Duration::from_nanos(tree_cpu_ns(pid)));
    let (cpu_before, db_before) = (servers_cpu(servers), database_cpu());
    let (beats_before, bench_before) = (
        HEARTBEATS.load(Ordering::Relaxed),
        cpu_time(std::process::id()),
    );
    let started = Instant::now();
    tokio::time::sleep(knobs.idle).await;
    let window = started.elapsed().as_secs_f64();
    let beats = HEARTBEATS.load(Ordering::Relaxed) - beats_before;
    let spent: Vec<f64> = servers_cpu_since(servers, &cpu_before)
        .map(|spent| spent.as_secs_f64())
        .collect();
    let total: f64 = spent.iter().sum();
    let percents: Vec<String> = spent
        .iter()
        .map(|s| format!("{:.1}", s / window * 100.0))
        .collect();
    let database = match (db_before, database_cpu()) {
        (Some(before), Some(after)) => format!(
            "; PostgreSQL (postmaster and backends) {:.1} % of a core",
            after.saturating_sub(before).as_secs_f64() / window * 100.0
        ),
        _ => String::new(),
    };
    let bench = cpu_time(std::process::id()).saturating_sub(bench_before);
    println!(
        "{label}: idle, {} sessions over {} HTTP/2 connections heartbeating every {} ms, {window:.0} s window: {beats} heartbeats ({:.0}/s); server CPU {} % of a core ({:.1} µs a heartbeat){database}; load generator {:.1} %; {} sessions ended by the server",
        knobs.agents,
        knobs.connections,
        HEARTBEAT_INTERVAL_MS.load(Ordering::Relaxed),
        beats as f64 / window,
        percents.join(" + "),
        total * 1e6 / (beats.max(1) as f64),
        bench.as_secs_f64() / window * 100.0,
        ENDED.load(Ordering::Relaxed),
    );
}

/// Reads the session's messages: the Welcome's heartbeat interval starts
/// heartbeats on `up` (while the bench holds the agent), the first Mission
/// goes to `first_tx`.
async fn hold_session(
    mut down: tonic::Streaming<ControlMessage>,
    up: mpsc::WeakSender<AgentMessage>,
    first_tx: oneshot::Sender<Result<(String, Instant), String>>,
) {
    let mut first_tx = Some(first_tx);
    let mut beat: Option<tokio::time::Interval> = None;
    let end = loop {
        let message = tokio::select! {
            message = down.message() => message,
            _ = async { beat.as_mut().expect("enabled only when set").tick().await }, if beat.is_some() => {
                let Some(up) = up.upgrade() else {
                    beat = None;
                    continue;
                };
                let heartbeat = AgentMessage {
                    msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                        unix_ms: 0,
                        front_door: None,
                    })),
                };
                if up.send(heartbeat).await.is_ok() {
                    HEARTBEATS.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
        };
        match message {
            Ok(Some(message)) => match message.msg {
                Some(control_message::Msg::Welcome(welcome)) => {
                    let every_ms = welcome.heartbeat_interval_ms.max(100) as u64;
                    HEARTBEAT_INTERVAL_MS.store(every_ms, Ordering::Relaxed);
                    let every = Duration::from_millis(every_ms);
                    beat = Some(tokio::time::interval_at(
                        tokio::time::Instant::now() + every,
                        every,
                    ));
                }
                Some(control_message::Msg::Mission(mission)) => {
                    if let Some(tx) = first_tx.take() {
                        let _ = tx.send(Ok((mission.mission_id, Instant::now())));
                    }
                }
                _ => {}
            },
            Ok(None) => break "the server ended the session".to_owned(),
            Err(status) => break format!("session failed: {status}"),
        }
    };
    if up.upgrade().is_some() {
        ENDED.fetch_add(1, Ordering::Relaxed);
        eprintln!("a session ended while the bench held it: {end}");
    }
    if let Some(tx) = first_tx.take() {
        let _ = tx.send(Err(end));
    }
}
