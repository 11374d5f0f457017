//! Issue 15's dashboard benchmark (`cargo bench -p launch-e2e --bench
//! dashboard_fanout`, a release `launch` from `LAUNCH_BIN_DIR`): "100
//! browsers following one mission that logs 20,000 lines/s: every client
//! gets every line, and the agent's throughput drops < 10 %". A fake agent
//! on the wire pushes 200,000 lines of one mission, 100 per batch, paced at
//! 20,000 lines/s, and its rate is measured until the control plane has
//! acknowledged the last line. Run A has nobody watching; run B has 100
//! dashboard sessions (each logged in through the form) following the
//! mission's log stream from its first line, each on its own connection,
//! and checks that every one got every line once and in order. The figures
//! show whether watchers slow the agent down (the control plane stores and
//! acknowledges before it fans out, so they should not), how late the last
//! browser is, and what the server spends. The followers run in this
//! process, on the same cores as the server: their parsing is part of the
//! load the machine carries. `LAUNCH_BENCH_FOLLOWERS=N` follows with N
//! instead of 100.

use std::time::{Duration, Instant};

use launch_e2e::bench::{cpu_time, deploy_requests, log_batch, rss_mb, tiny_bundle};
use launch_e2e::dashboard::{Followed, Session};
use launch_e2e::{Server, grpc, unique};
use launch_proto::{AgentMessage, MissionAck, ServiceRef, agent_message, control_message};
use tokio::sync::{mpsc, watch};

const LINES: u64 = 200_000;
const BATCH: u64 = 100;
const RATE: f64 = 20_000.0;
/// How many dashboards follow in run B, unless `LAUNCH_BENCH_FOLLOWERS` says.
const FOLLOWERS: usize = 100;

fn main() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&server));
}

/// The fake agent: its session, its missions and how far its log is acknowledged.
struct Agent {
    up: mpsc::Sender<AgentMessage>,
    missions: mpsc::UnboundedReceiver<String>,
    acked: watch::Receiver<(String, u64)>,
}

/// What one push of `LINES` lines took, and what the server spent meanwhile.
struct Push {
    /// First batch sent → last line acknowledged.
    elapsed: Duration,
    acked_at: Instant,
    server_cpu: Duration,
}

async fn run(server: &Server) {
    let follower_count = match std::env::var("LAUNCH_BENCH_FOLLOWERS") {
        Ok(n) => n
            .parse()
            .expect("LAUNCH_BENCH_FOLLOWERS is a number of followers"),
        Err(_) => FOLLOWERS,
    };
    let pid = server.process.pid();
    let target = ServiceRef {
        service: unique::service_name(),
        environment: "bench".to_owned(),
    };
    let mut control = grpc::control_client(server).await;
    let mut agent = connect_agent(server, &mut control, &target).await;
    let (bundle, sha) = tiny_bundle();
    let mut mission = async |agent: &mut Agent| {
        let deployed = control
            .deploy(grpc::request(
                tokio_stream::iter(deploy_requests(&target, "bench", &bundle, &sha)),
                &server.admin_token,
            ))
            .await
            .expect("Deploy")
            .into_inner();
        while agent.missions.recv().await.expect("session open") != deployed.mission_id {}
        agent
            .up
            .send(AgentMessage {
                msg: Some(agent_message::Msg::Ack(MissionAck {
                    mission_id: deployed.mission_id.clone(),
                })),
            })
            .await
            .unwrap();
        deployed.mission_id
    };

    // A: nobody watches.
    let alone = mission(&mut agent).await;
    let a = push(&mut agent, &alone, pid).await;
    let rss_a = rss_mb(pid);

    // B: (by default) 100 logged-in dashboards follow the mission from its first line.
    let watched = mission(&mut agent).await;
    let mut followers = tokio::task::JoinSet::new();
    for _ in 0..follower_count {
        let session = Session::login(server.addr, &server.admin_token)
            .await
            .expect("log in to the dashboard");
        let stream = session
            .follow_mission(&watched)
            .await
            .expect("open the mission's log stream");
        followers.spawn(stream.read_through(LINES, Duration::from_secs(60)));
    }
    let client_cpu_before = cpu_time(std::process::id());
    let b = push(&mut agent, &watched, pid).await;
    let rss_b = rss_mb(pid);
    let mut complete = 0;
    let mut last_at = b.acked_at;
    let mut problems = Vec::new();
    while let Some(followed) = followers.join_next().await {
        match followed.expect("follower task") {
            Ok(Followed {
                lines,
                out_of_order: 0,
                last_at: Some(at),
            }) if lines == LINES => {
                complete += 1;
                last_at = last_at.max(at);
            }
            Ok(followed) => problems.push(format!("{followed:?}")),
            Err(e) => problems.push(e),
        }
    }
    let client_cpu = cpu_time(std::process::id()).saturating_sub(client_cpu_before);

    let rate = |p: &Push| LINES as f64 / p.elapsed.as_secs_f64();
    let drop = (1.0 - rate(&b) / rate(&a)) * 100.0;
    println!(
        "dashboard fanout A, no followers: {LINES} lines at a target of {RATE:.0} lines/s acknowledged in {:.2} s = {:.0} lines/s; server CPU {:.2} s ({:.0} %), RSS {rss_a:.1} MB",
        a.elapsed.as_secs_f64(),
        rate(&a),
        a.server_cpu.as_secs_f64(),
        a.server_cpu.as_secs_f64() / a.elapsed.as_secs_f64() * 100.0,
    );
    println!(
        "dashboard fanout B, {follower_count} SSE followers: {LINES} lines acknowledged in {:.2} s = {:.0} lines/s; server CPU {:.2} s ({:.0} %), RSS {rss_b:.1} MB; followers' CPU (this process) {:.2} s",
        b.elapsed.as_secs_f64(),
        rate(&b),
        b.server_cpu.as_secs_f64(),
        b.server_cpu.as_secs_f64() / b.elapsed.as_secs_f64() * 100.0,
        client_cpu.as_secs_f64(),
    );
    println!("dashboard fanout: agent throughput drop with {follower_count} followers {drop:.1} %");
    println!(
        "dashboard fanout B: {complete}/{follower_count} followers got all {LINES} lines once each and in order; the last had the last line {:.0} ms after it was acknowledged",
        last_at.duration_since(b.acked_at).as_secs_f64() * 1e3,
    );
    for problem in &problems {
        println!("dashboard fanout B: a follower failed: {problem}");
    }
    assert!(problems.is_empty(), "{} followers failed", problems.len());
}

/// Registers a fake agent for `target` and opens its session; a task reads
/// what comes down, passing on missions and the log acknowledgements.
async fn connect_agent(
    server: &Server,
    control: &mut launch_proto::control_service_client::ControlServiceClient<
        tonic::transport::Channel,
    >,
    target: &ServiceRef,
) -> Agent {
    let mut agents = grpc::agent_client(server).await;
    let grpc::SimulatedAgent { up, mut down } =
        grpc::simulate_agent(control, &mut agents, &server.admin_token, target, "bench").await;
    let (missions_tx, missions) = mpsc::unbounded_channel();
    let (acked_tx, acked) = watch::channel((String::new(), 0));
    tokio::spawn(async move {
        while let Ok(Some(message)) = down.message().await {
            match message.msg {
                Some(control_message::Msg::Mission(mission)) => {
                    let _ = missions_tx.send(mission.mission_id);
                }
                Some(control_message::Msg::LogAck(ack)) => {
                    let _ = acked_tx.send((ack.mission_id, ack.through_seq));
                }
                _ => {}
            }
        }
    });
    Agent {
        up,
        missions,
        acked,
    }
}

/// Sends lines 1..=`LINES` of `mission_id` in batches of `BATCH`, each batch
/// at its time on a `RATE` schedule (at once when behind), and waits until
/// the control plane has acknowledged the last.
async fn push(agent: &mut Agent, mission_id: &str, pid: u32) -> Push {
    let cpu_before = cpu_time(pid);
    let period = Duration::from_secs_f64(BATCH as f64 / RATE);
    let start = Instant::now();
    let start_at = tokio::time::Instant::from_std(start);
    for (i, first) in (1..=LINES).step_by(BATCH as usize).enumerate() {
        tokio::time::sleep_until(start_at + period * i as u32).await;
        agent
            .up
            .send(log_batch(mission_id, first..=first + BATCH - 1))
            .await
            .expect("the session is open");
    }
    agent
        .acked
        .wait_for(|(mission, seq)| mission == mission_id && *seq >= LINES)
        .await
        .expect("the session is open");
    let acked_at = Instant::now();
    Push {
        elapsed: acked_at - start,
        acked_at,
        server_cpu: cpu_time(pid).saturating_sub(cpu_before),
    }
}
