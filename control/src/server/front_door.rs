//! What agents' heartbeats say about their front doors. The routes (hosts,
//! routed release, certificate states) are kept as last reported, for
//! `launch status`. The proxy counters arrive as they stand on the agent,
//! cumulative since the agent started under a random epoch; the control plane
//! adds to its totals only what grew since the last report of the same epoch
//! (a new epoch counts from zero), and stores the marks with the totals in
//! one transaction, so neither a repeated heartbeat, nor an agent restart,
//! nor a control-plane restart counts anything twice. `/metrics` renders the
//! totals with `service`, `environment` and `route` labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use launch_proto::{FrontDoorCounters, FrontDoorReport, FrontDoorRoute};
use prost::Message;
use tonic::Status;

use super::state::{State, internal};
use super::store::AgentRow;

/// What an agent's counters stood at: route → series → value.
pub type Marks = BTreeMap<String, BTreeMap<String, u64>>;

/// How much one series of one route grew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Growth {
    pub route: String,
    pub series: String,
    pub by: u64,
}

/// What one session last stored, so an unchanged heartbeat costs nothing.
#[derive(Default)]
pub struct Seen {
    routes: Option<Vec<FrontDoorRoute>>,
    marks: Option<(String, Marks)>,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const UPSTREAM_ERRORS: &str = "upstream_errors";
const LATENCY_SUM_US: &str = "latency_sum_us";
const LATENCY_BUCKET: &str = "latency_le_us:";
const INFINITY: &str = "inf";

/// One route's counters as named series.
fn series(counters: &FrontDoorCounters) -> BTreeMap<String, u64> {
    let mut series = BTreeMap::new();
    for (class, value) in CLASSES.iter().zip(&counters.responses_by_class) {
        series.insert(format!("responses_{class}"), *value);
    }
    series.insert(UPSTREAM_ERRORS.to_owned(), counters.upstream_errors);
    series.insert(LATENCY_SUM_US.to_owned(), counters.latency_sum_us);
    for (i, value) in counters.latency_buckets.iter().enumerate() {
        let bound = counters
            .latency_bounds_us
            .get(i)
            .map_or_else(|| INFINITY.to_owned(), u64::to_string);
        series.insert(format!("{LATENCY_BUCKET}{bound}"), *value);
    }
    series
}

/// Every route's counters of a report as marks.
pub fn marks(counters: &[FrontDoorCounters]) -> Marks {
    counters
        .iter()
        .map(|c| (c.route.clone(), series(c)))
        .collect()
}

/// What grew from `before` (the marks stored under their epoch) to `now`
/// (under `epoch`). A new epoch is a new agent start: its counters began at
/// zero. A series lower than its mark (never within one epoch) adds nothing.
pub fn growth(before: Option<&(String, Marks)>, epoch: &str, now: &Marks) -> Vec<Growth> {
    let before = before.filter(|(stored, _)| stored == epoch).map(|(_, m)| m);
    let mut growth = Vec::new();
    for (route, series) in now {
        for (name, value) in series {
            let mark = before
                .and_then(|m| m.get(route))
                .and_then(|s| s.get(name))
                .copied()
                .unwrap_or(0);
            let by = value.saturating_sub(mark);
            if by > 0 {
                growth.push(Growth {
                    route: route.clone(),
                    series: name.clone(),
                    by,
                });
            }
        }
    }
    growth
}

/// Keeps the routes of `report` and adds its counters' growth to the totals.
pub async fn record(
    state: &State,
    agent: &AgentRow,
    seen: &mut Seen,
    report: FrontDoorReport,
) -> Result<(), Status> {
    let store = &state.store;
    if seen.routes.as_ref() != Some(&report.routes) {
        let routes = FrontDoorReport {
            routes: report.routes.clone(),
            ..Default::default()
        };
        store
            .set_front_door_routes(
                &agent.id,
                &agent.service,
                &agent.environment,
                &routes.encode_to_vec(),
            )
            .await
            .map_err(internal)?;
        seen.routes = Some(report.routes);
    }
    if seen.marks.is_none() {
        seen.marks = Some(
            store
                .proxy_counter_marks(&agent.id)
                .await
                .map_err(internal)?
                .unwrap_or_default(),
        );
    }
    let now = marks(&report.counters);
    let epoch = report.counters_epoch;
    if seen.marks.as_ref() == Some(&(epoch.clone(), now.clone())) {
        return Ok(());
    }
    let growth = growth(seen.marks.as_ref(), &epoch, &now);
    store
        .add_proxy_counters(
            &agent.id,
            &agent.service,
            &agent.environment,
            &epoch,
            &now,
            &growth,
        )
        .await
        .map_err(internal)?;
    seen.marks = Some((epoch, now));
    Ok(())
}

/// The routes of a stored front-door report (empty: none, or unreadable).
pub fn decode_routes(report: &[u8]) -> Vec<FrontDoorRoute> {
    FrontDoorReport::decode(report)
        .map(|report| report.routes)
        .unwrap_or_default()
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The totals as Prometheus text: responses by class, upstream errors and
/// the latency histogram, per service, environment and route.
pub fn render(totals: &[(String, String, String, String, u64)], out: &mut String) {
    let mut by_route: BTreeMap<(&str, &str, &str), BTreeMap<&str, u64>> = BTreeMap::new();
    for (service, environment, route, series, value) in totals {
        by_route
            .entry((service.as_str(), environment.as_str(), route.as_str()))
            .or_default()
            .insert(series.as_str(), *value);
    }
    let labels = |(service, environment, route): &(&str, &str, &str)| {
        format!(
            "service=\"{}\",environment=\"{}\",route=\"{}\"",
            label(service),
            label(environment),
            label(route)
        )
    };
    let _ = writeln!(
        out,
        "# HELP launch_proxy_responses_total Responses the front doors sent, by status class."
    );
    let _ = writeln!(out, "# TYPE launch_proxy_responses_total counter");
    for (key, series) in &by_route {
        for class in CLASSES {
            let value = series
                .get(format!("responses_{class}").as_str())
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "launch_proxy_responses_total{{{},class=\"{class}\"}} {value}",
                labels(key)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP launch_proxy_upstream_errors_total Requests whose container could not be reached or did not answer in time."
    );
    let _ = writeln!(out, "# TYPE launch_proxy_upstream_errors_total counter");
    for (key, series) in &by_route {
        let value = series.get(UPSTREAM_ERRORS).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "launch_proxy_upstream_errors_total{{{}}} {value}",
            labels(key)
        );
    }
    let _ = writeln!(
        out,
        "# HELP launch_proxy_request_duration_seconds Time from a request to its response head, at the front door."
    );
    let _ = writeln!(
        out,
        "# TYPE launch_proxy_request_duration_seconds histogram"
    );
    for (key, series) in &by_route {
        let mut buckets: Vec<(Option<u64>, u64)> = series
            .iter()
            .filter_map(|(name, value)| {
                let bound = name.strip_prefix(LATENCY_BUCKET)?;
                match bound {
                    INFINITY => Some((None, *value)),
                    bound => Some((Some(bound.parse().ok()?), *value)),
                }
            })
            .collect();
        // Finite bounds ascending, +Inf last.
        buckets.sort_by_key(|(bound, _)| bound.unwrap_or(u64::MAX));
        let mut cumulative = 0;
        for (bound, value) in &buckets {
            cumulative += value;
            let le = bound.map_or_else(|| "+Inf".to_owned(), |us| (us as f64 / 1e6).to_string());
            let _ = writeln!(
                out,
                "launch_proxy_request_duration_seconds_bucket{{{},le=\"{le}\"}} {cumulative}",
                labels(key)
            );
        }
        let sum = series.get(LATENCY_SUM_US).copied().unwrap_or(0) as f64 / 1e6;
        let _ = writeln!(
            out,
            "launch_proxy_request_duration_seconds_sum{{{}}} {sum}",
            labels(key)
        );
        let _ = writeln!(
            out,
            "launch_proxy_request_duration_seconds_count{{{}}} {cumulative}",
            labels(key)
        );
    }
}

#[cfg(test)]
mod tests;
