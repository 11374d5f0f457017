//! What the wire benchmarks (`tests/benches/`) share: a tiny bundle and the
//! `Deploy` requests that upload it, a fake agent's log batches, percentiles,
//! a process's resident memory and CPU time from `/proc` (also of a process
//! and its children, e.g. PostgreSQL's backends), and the open-files limit.

use std::collections::HashMap;
use std::time::Duration;

use launch_proto::{
    AgentMessage, DeployHeader, DeployRequest, LogBatch, LogLine, LogStream, ServiceRef,
    agent_message, deploy_request,
};

/// A bundle with one `scratch` service, and its sha256.
pub fn tiny_bundle() -> (Vec<u8>, String) {
    tiny_bundle_of("")
}

/// [`tiny_bundle`] whose compose file carries `mark` as a comment: bundles
/// of different marks differ in their sha256.
pub fn tiny_bundle_of(mark: &str) -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().expect("a temp dir for the bundle");
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!("# {mark}\nservices:\n  web:\n    image: scratch\n"),
    )
    .expect("write compose.yaml");
    let mut out = Vec::new();
    launch_core::bundle::pack_dir(dir.path(), &mut out).expect("pack the bundle");
    let sha = launch_core::bundle::sha256_hex(&out);
    (out, sha)
}

/// The two messages of a `Deploy` call: the header, then the whole bundle.
pub fn deploy_requests(
    target: &ServiceRef,
    git_ref: &str,
    bundle: &[u8],
    sha: &str,
) -> Vec<DeployRequest> {
    vec![
        DeployRequest {
            msg: Some(deploy_request::Msg::Header(DeployHeader {
                target: Some(target.clone()),
                git_ref: git_ref.to_owned(),
                secrets: HashMap::new(),
                bundle_sha256: sha.to_owned(),
                ..Default::default()
            })),
        },
        DeployRequest {
            msg: Some(deploy_request::Msg::Chunk(bundle.to_vec())),
        },
    ]
}

/// The text of every benchmark log line: an access-log line of a usual length.
pub const LOG_TEXT: &str = "GET /index.html 200 1234 bytes in 0.2 ms from 10.0.0.1";

/// A fake agent's batch of log lines `seqs` for `mission_id`.
pub fn log_batch(mission_id: &str, seqs: std::ops::RangeInclusive<u64>) -> AgentMessage {
    let lines = seqs
        .map(|seq| LogLine {
            seq,
            unix_ms: 0,
            stream: LogStream::Stdout as i32,
            source: "web".to_owned(),
            text: LOG_TEXT.to_owned(),
        })
        .collect();
    AgentMessage {
        msg: Some(agent_message::Msg::Logs(LogBatch {
            mission_id: mission_id.to_owned(),
            lines,
        })),
    }
}

/// The value at quantile `p` (0.0–1.0) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Resident memory of process `pid` in MB (0 when unreadable).
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The `/proc` directory of each live thread of process `pid` (none when
/// unreadable).
fn threads(pid: u32) -> impl Iterator<Item = std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|task| task.path())
}

/// Context switches (voluntary and not) of every live thread of process
/// `pid` so far: each hand-off between threads (a tokio worker and a SQLite
/// connection's thread, say) costs two. Threads that ended are not counted.
pub fn context_switches(pid: u32) -> u64 {
    threads(pid)
        .filter_map(|task| std::fs::read_to_string(task.join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Time on a CPU, in nanoseconds, of every live thread of process `pid`
/// so far, summed by thread name (`tokio-rt-worker`, `sqlx-sqlite-wor`…):
/// the scheduler's own count (`/proc/PID/task/TID/schedstat`), exact where
/// [`cpu_time`] counts 10 ms ticks. Threads that ended are not counted.
pub fn thread_cpu_ns(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    for task in threads(pid) {
        let read = |file: &str| std::fs::read_to_string(task.join(file)).ok();
        let (Some(name), Some(schedstat)) = (read("comm"), read("schedstat")) else {
            continue;
        };
        let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
        else {
            continue;
        };
        *by_name.entry(name.trim().to_owned()).or_insert(0) += ns;
    }
    by_name
}

/// CPU time (user + system) process `pid` has used so far (0 when unreadable).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, field 2, may hold spaces: count fields after its `)`.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, so 11 and 12 after the state (3).
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

/// Time on a CPU, in nanoseconds, of process `pid` and its live children
/// (a postmaster and its backends), every thread counted as in
/// [`thread_cpu_ns`]. Children that exited are not counted.
pub fn tree_cpu_ns(pid: u32) -> u64 {
    let mut total: u64 = thread_cpu_ns(pid).values().sum();
    for child in children(pid) {
        total += thread_cpu_ns(child).values().sum::<u64>();
    }
    total
}

/// The live children of process `pid`.
fn children(pid: u32) -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(move |child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // Field 4, the parent, is the second after the command name's `)`.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
}

/// Time every core of the machine has spent busy so far (`/proc/stat`:
/// user, nice, system, irq and softirq; not idle, I/O wait or steal), in
/// ticks of 10 ms: what a run of processes that exit before they can be
/// counted one by one (pgbench's backends) cost, when nothing else runs.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .map(|fields| {
            let fields: Vec<u64> = fields
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum()
        })
        .unwrap_or(0);
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

/// Raises this process's soft limit of open files to its hard limit (the
/// processes it starts inherit it) and returns the new soft limit.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            }
        }
    }
    limit.rlim_cur
}
