//! What the load bench measures beside the latencies: when the servers
//! have settled, their threads' and the bench's own time on a CPU, and on
//! PostgreSQL the database's floor under a deploy (pgbench).

use std::time::{Duration, Instant};

use launch_e2e::Server;
use launch_e2e::bench::{cpu_time, machine_busy, thread_cpu_ns};

/// A server is settled when it spends under this share of a core…
pub const SETTLED_SHARE: f64 = 0.2;
/// …over this window: 10,000 agents' heartbeats alone take about 9 % of
/// a core, the sessions' setup a whole one.
pub const SETTLE_WINDOW: Duration = Duration::from_millis(250);

/// Waits until every server has finished setting up its sessions. The
/// bench's agent counts as connected once its Session call answers (the
/// Welcome), but the server goes on with each Hello after that (the
/// session's row, its queued missions): deploys started meanwhile would
/// share the cores with up to thousands of those, and measure them. Returns
/// how long that took.
pub async fn settle(servers: &[Server]) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        let before = servers_cpu(servers);
        tokio::time::sleep(SETTLE_WINDOW).await;
        let busiest = servers_cpu_since(servers, &before)
            .max()
            .unwrap_or_default();
        if busiest.as_secs_f64() < SETTLED_SHARE * SETTLE_WINDOW.as_secs_f64() {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "a server still used {busiest:?} of CPU every {SETTLE_WINDOW:?} two minutes after the agents connected"
        );
    }
}

/// The servers' threads' time on a CPU so far, in ns, summed by thread
/// name across the servers.
pub fn servers_threads_cpu(servers: &[Server]) -> std::collections::BTreeMap<String, u64> {
    let mut sum = std::collections::BTreeMap::new();
    for server in servers {
        for (name, ns) in thread_cpu_ns(server.process.pid()) {
            *sum.entry(name).or_insert(0) += ns;
        }
    }
    sum
}

/// This process's (the load generator's) threads' time on a CPU so far, in ns.
pub fn own_cpu_ns() -> u64 {
    thread_cpu_ns(std::process::id()).values().sum()
}

/// The servers' threads' time on a CPU so far, all together.
pub fn servers_on_cpu(servers: &[Server]) -> Duration {
    Duration::from_nanos(servers_threads_cpu(servers).values().sum())
}

/// Each server's CPU time so far (utime + stime).
pub fn servers_cpu(servers: &[Server]) -> Vec<Duration> {
    servers.iter().map(|s| cpu_time(s.process.pid())).collect()
}

/// Each server's CPU time since `before` ([`servers_cpu`]).
pub fn servers_cpu_since<'a>(
    servers: &'a [Server],
    before: &'a [Duration],
) -> impl Iterator<Item = Duration> + 'a {
    servers
        .iter()
        .zip(before)
        .map(|(s, before)| cpu_time(s.process.pid()).saturating_sub(*before))
}

/// Deploys a [`database_floor`] run's pgbench clients make, each.
const FLOOR_DEPLOYS_EACH: u32 = 200;
/// Its pgbench clients.
const FLOOR_CLIENTS: u32 = 10;

/// For scale on PostgreSQL, before any agent connects: what the database
/// alone spends on a deploy's read and writes, sent by `pgbench` (prepared,
/// no Launch in between) from `tests/benches/load/*.sql`, hand-written
/// copies of the store's statements — as a transaction of one statement
/// each (the store's way before stop 28), and as one statement (since). The
/// CPU is the machine's busy time, PostgreSQL's and pgbench's together:
/// pgbench's backends exit before they can be counted one by one.
pub fn database_floor(cluster: &launch_e2e::postgres::Cluster, url: &str, label: &str) {
    let database = url
        .rsplit('/')
        .next()
        .expect("a database URL ends with its name");
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/load");
    let deploys = FLOOR_CLIENTS * FLOOR_DEPLOYS_EACH;
    let each: Vec<String> = ["deploy_transaction.sql", "deploy_one_statement.sql"]
        .iter()
        .map(|script| {
            let before = machine_busy();
            let tps = cluster.pgbench(
                database,
                &scripts.join(script),
                FLOOR_CLIENTS,
                FLOOR_DEPLOYS_EACH,
            );
            let busy = machine_busy().saturating_sub(before);
            format!(
                "{script}: {tps:.0} deploys/s, {:.2} ms of CPU a deploy",
                busy.as_secs_f64() * 1e3 / deploys as f64
            )
        })
        .collect();
    println!(
        "{label}: for scale, PostgreSQL alone (pgbench, {deploys} deploys' read and writes over {FLOOR_CLIENTS} connections, its CPU and pgbench's): {}",
        each.join("; ")
    );
}
