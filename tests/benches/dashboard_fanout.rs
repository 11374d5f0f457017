//! Issue 15's dashboard benchmark (`cargo bench -p launch-e2e --bench
//! dashboard_fanout`, a release `launch` from `LAUNCH_BIN_DIR`): "100
//! browsers following one mission that logs 20,000 lines/s: every client
//! gets every line, and the agent's throughput drops < 10 %". A fake agent
//! on the wire pushes 200,000 lines of one mission, 100 per batch, paced at
//! 20,000 lines/s, and its rate is measured until the control plane has
//! acknowledged the last line. Run A has nobody watching; run B has 100
//! dashboard sessions (each logged in through the form) following the
//! mission's log stream from its first line, each on its own connection,
//! and checks that every one got every line once and in order (the
//! `sse-follower` process, std only and optimised even in a dev build:
//! browsers run on machines of their own, so their parsing should not be
//! what the 2 cores spend most on; its CPU is printed apart). The figures
//! show whether watchers slow the agent down (the control plane stores and
//! acknowledges before it fans out, so they should not), how late the last
//! browser is, and what the server spends. The followers still run on the
//! same cores as the server. `LAUNCH_BENCH_FOLLOWERS=N` follows with N
//! instead of 100.

use std::time::{Duration, Instant};

use launch_e2e::bench::{cpu_time, deploy_requests, log_batch, rss_mb, tiny_bundle};
use launch_e2e::dashboard::Session;
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
    let mut cookies = String::new();
    for _ in 0..follower_count {
        let session = Session::login(server.addr, &server.admin_token)
            .await
            .expect("log in to the dashboard");
        cookies.push_str(session.cookie());
        cookies.push('\n');
    }
    let followers = Followers::start(server, &watched, &cookies).await;
    let client_cpu_before = cpu_time(followers.pid);
    let b = push(&mut agent, &watched, pid).await;
    let rss_b = rss_mb(pid);
    let (complete, last_at, problems, client_cpu) = followers.finish(follower_count).await;
    let client_cpu = client_cpu.saturating_sub(client_cpu_before);
    let last_at = last_at.max(b.acked_at);

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
        "dashboard fanout B, {follower_count} SSE followers: {LINES} lines acknowledged in {:.2} s = {:.0} lines/s; server CPU {:.2} s ({:.0} %), RSS {rss_b:.1} MB; followers' CPU (sse-follower) {:.2} s",
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

/// The followers: an `sse-follower` process (std only, optimised), as the
/// browsers would be processes of their own, elsewhere.
struct Followers {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    pid: u32,
}

impl Followers {
    /// Starts one follower per cookie line and waits until every stream is open.
    async fn start(server: &Server, mission_id: &str, cookies: &str) -> Followers {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        // Built by `cargo build --bins` with the dev profile (at opt-level 3).
        let in_bin_dir = launch_e2e::binaries::bin_dir().join("sse-follower");
        let program = match in_bin_dir.is_file() {
            true => in_bin_dir,
            false => launch_e2e::binaries::workspace_root().join("target/debug/sse-follower"),
        };
        let mut child = tokio::process::Command::new(program)
            .args([
                &server.addr.to_string(),
                mission_id,
                &LINES.to_string(),
                "60",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start sse-follower (cargo build --bins)");
        let pid = child.id().expect("sse-follower is running");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(cookies.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        // Kept open: the follower exits when it ends, after its CPU is read.
        child.stdin = Some(stdin);
        let mut lines =
            tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        match lines.next_line().await {
            Ok(Some(line)) if line == "ready" => {}
            other => panic!("sse-follower did not open its streams: {other:?}"),
        }
        Followers { child, lines, pid }
    }

    /// Reads each follower's outcome as it comes: how many got every line
    /// once and in order, when the last of them did, and what went wrong.
    async fn finish(mut self, count: usize) -> (usize, Instant, Vec<String>, Duration) {
        let (mut complete, mut last_at, mut problems) = (0, Instant::now(), Vec::new());
        let expected = format!("{LINES} 0");
        while let Ok(Some(line)) = self.lines.next_line().await {
            match line.split_once(' ') {
                Some(("done", rest))
                    if rest.split_once(' ').map(|(_, r)| r) == Some(&*expected) =>
                {
                    complete += 1;
                    last_at = Instant::now();
                }
                _ if line == "finished" => break,
                _ => problems.push(line),
            }
        }
        let cpu = cpu_time(self.pid);
        drop(self.child.stdin.take());
        let status = self.child.wait().await.expect("sse-follower exits");
        if complete < count && problems.is_empty() {
            problems.push(format!(
                "{complete} of {count} followers finished; sse-follower {status}"
            ));
        }
        (complete, last_at, problems, cpu)
    }
}
