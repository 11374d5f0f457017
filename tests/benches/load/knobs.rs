//! The load bench's knobs: what `LAUNCH_BENCH_*` in the environment asks
//! of a run (engine, agents, bursts, replicas, profiling), read and checked
//! once before anything starts. `load.rs`'s module comment says what each does.

use std::time::Duration;

use super::{AGENTS_PER_CONNECTION, DEPLOYS};

pub struct Knobs {
    /// The server's store is PostgreSQL, not SQLite.
    pub postgres: bool,
    /// `launch server` replicas (2 only on PostgreSQL).
    pub replicas: usize,
    pub agents: usize,
    pub connections: usize,
    pub idle: Duration,
    /// A bundle of its own for each deploy.
    pub distinct_bundles: bool,
    /// Bursts of [`DEPLOYS`], each to agents of its own.
    pub bursts: usize,
    /// `perf record`'s control fifo, when profiling the bursts.
    pub perf_fifo: Option<String>,
    /// The server reaches PostgreSQL over its unix socket, not TCP.
    pub pg_socket: bool,
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: say a whole number")),
        Err(_) => default,
    }
}

impl Knobs {
    /// Reads the knobs; panics saying what to write for one that makes no sense.
    pub fn from_env() -> Knobs {
        let postgres = match std::env::var("LAUNCH_BENCH_DATABASE").as_deref() {
            Ok("postgres") => true,
            Ok("sqlite") | Err(_) => false,
            Ok(other) => panic!("LAUNCH_BENCH_DATABASE={other}: say sqlite or postgres"),
        };
        let agents = env_number("LAUNCH_BENCH_AGENTS", 1000);
        let knobs = Knobs {
            postgres,
            replicas: env_number("LAUNCH_BENCH_REPLICAS", 1),
            agents,
            connections: env_number(
                "LAUNCH_BENCH_CONNECTIONS",
                agents.div_ceil(AGENTS_PER_CONNECTION),
            )
            .max(1),
            idle: Duration::from_secs(env_number("LAUNCH_BENCH_IDLE_SECS", 0) as u64),
            distinct_bundles: match std::env::var("LAUNCH_BENCH_BUNDLES").as_deref() {
                Ok("distinct") => true,
                Ok("same") | Err(_) => false,
                Ok(other) => panic!("LAUNCH_BENCH_BUNDLES={other}: say same or distinct"),
            },
            bursts: env_number("LAUNCH_BENCH_BURSTS", 1).max(1),
            perf_fifo: std::env::var("LAUNCH_BENCH_PERF_FIFO").ok(),
            pg_socket: std::env::var_os("LAUNCH_BENCH_PG_SOCKET").is_some(),
        };
        assert!(
            knobs.agents >= DEPLOYS * knobs.bursts,
            "LAUNCH_BENCH_BURSTS={} needs {} agents, one per deploy: raise LAUNCH_BENCH_AGENTS",
            knobs.bursts,
            DEPLOYS * knobs.bursts
        );
        assert!(
            knobs.replicas == 1 || (knobs.replicas == 2 && postgres),
            "LAUNCH_BENCH_REPLICAS={}: say 1, or 2 with LAUNCH_BENCH_DATABASE=postgres",
            knobs.replicas
        );
        knobs
    }
}
