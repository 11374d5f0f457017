//! Wire benchmarks of the control plane, run by `bench/run` (`cargo bench -p
//! launch-e2e --bench wire`): a real `launch server` (release build, from
//! `LAUNCH_BIN_DIR`) and a fake agent speaking the agent protocol over
//! loopback, so the figures measure the control plane, not Docker.
//!
//! - dispatch latency: `Deploy` call (tiny bundle: upload, store, one
//!   transaction) until the mission arrives on the agent's session, 1,000 times;
//! - log throughput: 200,000 lines sent as 100-line batches on the session,
//!   until all of them came out of a following `StreamLogs`, none lost.

use std::time::{Duration, Instant};

use launch_e2e::bench::{deploy_requests, log_batch, percentile, tiny_bundle};
use launch_e2e::{Server, grpc, unique};
use launch_proto::{
    AgentMessage, MissionAck, ServiceRef, StreamLogsRequest, agent_message, control_message,
};
use tokio::sync::mpsc;

const MISSIONS: usize = 1000;
const LOG_LINES: u64 = 200_000;
const BATCH: u64 = 100;

fn main() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&server));
}

async fn run(server: &Server) {
    let service = unique::service_name();
    let environment = "bench".to_owned();
    let target = ServiceRef {
        service: service.clone(),
        environment: environment.clone(),
    };
    let mut control = grpc::control_client(server).await;
    let mut agents = grpc::agent_client(server).await;
    // The fake agent's session: Hello first, then whatever we send.
    let grpc::SimulatedAgent { up, mut down } = grpc::simulate_agent(
        &mut control,
        &mut agents,
        &server.admin_token,
        &target,
        "bench",
    )
    .await;
    // Missions go to a channel; log acks and the welcome are drained.
    let (missions_tx, mut missions) = mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(message)) = down.message().await {
            if let Some(control_message::Msg::Mission(mission)) = message.msg {
                let _ = missions_tx.send(mission.mission_id);
            }
        }
    });

    let (bundle, sha) = tiny_bundle();

    let mut latencies = Vec::with_capacity(MISSIONS);
    let mut last_mission = String::new();
    for _ in 0..MISSIONS {
        let requests = deploy_requests(&target, "bench", &bundle, &sha);
        let start = Instant::now();
        let response = control
            .deploy(grpc::request(
                tokio_stream::iter(requests),
                &server.admin_token,
            ))
            .await
            .expect("Deploy")
            .into_inner();
        loop {
            let id = tokio::time::timeout(Duration::from_secs(10), missions.recv())
                .await
                .expect("mission dispatched within 10 s")
                .expect("session open");
            if id == response.mission_id {
                break;
            }
        }
        latencies.push(start.elapsed());
        up.send(AgentMessage {
            msg: Some(agent_message::Msg::Ack(MissionAck {
                mission_id: response.mission_id.clone(),
            })),
        })
        .await
        .unwrap();
        last_mission = response.mission_id;
    }
    latencies.sort();
    println!(
        "dispatch latency over {MISSIONS} missions (Deploy call → mission on the agent session): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );

    // Log throughput through the control plane to a follower.
    let mut follower = control
        .stream_logs(grpc::request(
            StreamLogsRequest {
                target: Some(target.clone()),
                mission_id: last_mission.clone(),
                since_seq: 0,
                follow: true,
            },
            &server.admin_token,
        ))
        .await
        .expect("StreamLogs")
        .into_inner();
    let start = Instant::now();
    let sender = {
        let up = up.clone();
        let mission_id = last_mission.clone();
        tokio::spawn(async move {
            for first in (1..=LOG_LINES).step_by(BATCH as usize) {
                up.send(log_batch(&mission_id, first..=first + BATCH - 1))
                    .await
                    .unwrap();
            }
        })
    };
    let mut next = 1u64;
    let mut out_of_order = 0u64;
    while next <= LOG_LINES {
        let event = tokio::time::timeout(Duration::from_secs(30), follower.message())
            .await
            .expect("log lines keep arriving")
            .expect("StreamLogs open")
            .expect("StreamLogs not ended");
        if let Some(line) = event.line {
            if line.seq == next {
                next += 1;
            } else if line.seq > next {
                out_of_order += 1;
                next = line.seq + 1;
            }
        }
    }
    let elapsed = start.elapsed();
    sender.await.unwrap();
    println!(
        "log throughput: {LOG_LINES} lines agent session → control plane → StreamLogs follower in {:.2} s = {:.0} lines/s, {} gaps",
        elapsed.as_secs_f64(),
        LOG_LINES as f64 / elapsed.as_secs_f64(),
        out_of_order
    );
    drop(up);
    reader.abort();
}
