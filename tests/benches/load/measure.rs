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
/// Deploys a grouped floor script writes together.
const FLOOR_GROUP: u32 = 10;

/// The shapes the floor sends a deploy's writes in: the script, and how many
/// deploys one run of it (one pgbench "transaction") makes.
enum FloorShape {
    /// A hand-written script in `tests/benches/load/`.
    File(&'static str),
    /// [`FLOOR_GROUP`] deploys' reads one by one, then their writes as one
    /// statement (`one`) or as one transaction of a statement each: what a
    /// store that gathered concurrent deploys into one write could do at
    /// best, built from `deploy_one_statement.sql`.
    Grouped { one: bool },
}

impl FloorShape {
    fn name(&self) -> String {
        match self {
            FloorShape::File(name) => (*name).to_owned(),
            FloorShape::Grouped { one: true } => {
                format!("{FLOOR_GROUP} deploys' writes as one statement")
            }
            FloorShape::Grouped { one: false } => {
                format!("{FLOOR_GROUP} deploys' writes as one transaction")
            }
        }
    }

    fn deploys_a_run(&self) -> u32 {
        match self {
            FloorShape::File(_) => 1,
            FloorShape::Grouped { .. } => FLOOR_GROUP,
        }
    }

    /// The script's path, written to `scratch` when it is built here.
    fn script(&self, dir: &std::path::Path, scratch: &std::path::Path) -> std::path::PathBuf {
        let one = match self {
            FloorShape::File(name) => return dir.join(name),
            FloorShape::Grouped { one } => *one,
        };
        let single = std::fs::read_to_string(dir.join("deploy_one_statement.sql"))
            .expect("read deploy_one_statement.sql");
        let line = |start: &str| {
            single
                .lines()
                .find(|line| line.starts_with(start))
                .unwrap_or_else(|| panic!("deploy_one_statement.sql has no line starting {start}"))
        };
        let (read, write) = (line("SELECT "), line("WITH "));
        // Each deploy of the group its own variables, and a service of its
        // own: one statement may not change a row twice.
        let own = |sql: &str, k: u32| {
            sql.replace(":s", &format!(":s{k}"))
                .replace(":n", &format!(":n{k}"))
        };
        let mut out = String::new();
        for k in 0..FLOOR_GROUP {
            out += &format!("\\set n{k} random(1, 1000000000000)\n");
            out += &format!("\\set s{k} random(0, 99) * {FLOOR_GROUP} + {}\n", k + 1);
        }
        for k in 0..FLOOR_GROUP {
            out += &own(read, k);
            out.push('\n');
        }
        if one {
            let parts = write
                .strip_prefix("WITH ")
                .and_then(|rest| rest.strip_suffix(" SELECT * FROM part0;"))
                .expect("deploy_one_statement.sql's write is WITH … SELECT * FROM part0;");
            let parts: Vec<String> = (0..FLOOR_GROUP)
                .map(|k| own(&parts.replace("part", &format!("d{k}_part")), k))
                .collect();
            out += &format!("WITH {} SELECT * FROM d0_part0;\n", parts.join(", "));
        } else {
            out += "BEGIN;\n";
            for k in 0..FLOOR_GROUP {
                out += &own(write, k);
                out.push('\n');
            }
            out += "COMMIT;\n";
        }
        let path = scratch.join(format!(
            "floor_grouped_{}.sql",
            if one { "one" } else { "transaction" }
        ));
        std::fs::write(&path, out).expect("write a grouped floor script");
        path
    }
}

/// For scale on PostgreSQL, before any agent connects: what the database
/// alone spends on a deploy's read and writes, sent by `pgbench` (prepared,
/// no Launch in between) from `tests/benches/load/*.sql`, hand-written
/// copies of the store's statements — as a transaction of one statement
/// each (the store's way before stop 28), and as one statement (since) —
/// and, built from the latter, [`FLOOR_GROUP`] deploys' writes at a time
/// (would gathering concurrent deploys lower it?). The CPU is the
/// machine's busy time, PostgreSQL's and pgbench's together: pgbench's
/// backends exit before they can be counted one by one.
pub fn database_floor(cluster: &launch_e2e::postgres::Cluster, database: &str, label: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/load");
    let scratch = tempfile::tempdir().expect("a temp dir for the grouped floor scripts");
    let deploys = FLOOR_CLIENTS * FLOOR_DEPLOYS_EACH;
    let shapes = [
        FloorShape::File("deploy_transaction.sql"),
        FloorShape::File("deploy_one_statement.sql"),
        FloorShape::Grouped { one: true },
        FloorShape::Grouped { one: false },
    ];
    let each: Vec<String> = shapes
        .iter()
        .map(|shape| {
            let script = shape.script(&dir, scratch.path());
            let before = machine_busy();
            let runs = cluster.pgbench(
                database,
                &script,
                FLOOR_CLIENTS,
                FLOOR_DEPLOYS_EACH / shape.deploys_a_run(),
            );
            let busy = machine_busy().saturating_sub(before);
            format!(
                "{}: {:.0} deploys/s, {:.3} ms of CPU a deploy",
                shape.name(),
                runs * f64::from(shape.deploys_a_run()),
                busy.as_secs_f64() * 1e3 / f64::from(deploys)
            )
        })
        .collect();
    println!(
        "{label}: for scale, PostgreSQL alone (pgbench, {deploys} deploys' read and writes over {FLOOR_CLIENTS} connections, its CPU and pgbench's): {}",
        each.join("; ")
    );
}
