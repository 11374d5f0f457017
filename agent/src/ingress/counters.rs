//! What the front door counts, per route: responses by status class,
//! upstream errors (502/504: the container could not be reached or did not
//! answer in time) and a histogram of the time to the response head. A
//! request costs a few relaxed atomic additions on its route's counters
//! (looked up once, under a read lock). The counters only grow while the
//! agent runs and start from zero under a new random epoch at every start;
//! heartbeats carry them as they are, and the control plane adds what grew
//! since the last report of the same epoch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use launch_proto::FrontDoorCounters;

/// Upper bounds of the latency buckets, in microseconds; one more bucket
/// (+Inf) holds everything slower.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// The counters of one route.
#[derive(Debug, Default)]
pub struct RouteCounters {
    responses_by_class: [AtomicU64; 5],
    upstream_errors: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS],
    latency_sum_us: AtomicU64,
}

impl RouteCounters {
    /// Counts one response with `status`, its head sent after `latency`.
    pub fn response(&self, status: u16, latency: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < micros);
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts a request whose upstream failed (its 502/504 is counted by
    /// [`RouteCounters::response`] too).
    pub fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self, route: &str) -> FrontDoorCounters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FrontDoorCounters {
            route: route.to_owned(),
            responses_by_class: self.responses_by_class.iter().map(load).collect(),
            upstream_errors: load(&self.upstream_errors),
            latency_bounds_us: LATENCY_BOUNDS_US.to_vec(),
            latency_buckets: self.latency_buckets.iter().map(load).collect(),
            latency_sum_us: load(&self.latency_sum_us),
        }
    }
}

/// Every route's counters since the agent started.
#[derive(Debug)]
pub struct Counters {
    epoch: String,
    routes: RwLock<BTreeMap<String, Arc<RouteCounters>>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters::new()
    }
}

impl Counters {
    /// Empty counters under a new random epoch.
    pub fn new() -> Counters {
        Counters {
            epoch: format!("{:032x}", rand::random::<u128>()),
            routes: RwLock::default(),
        }
    }

    /// The epoch these counters count under (new at every agent start).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The counters of `route`, made on first use. A route keeps its
    /// counters after it leaves the table, so nothing counted is lost.
    pub fn route(&self, route: &str) -> Arc<RouteCounters> {
        if let Some(counters) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
        {
            return counters.clone();
        }
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_owned())
            .or_default()
            .clone()
    }

    /// Every route's counters as they are now, by route name.
    pub fn snapshot(&self) -> Vec<FrontDoorCounters> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(route, counters)| counters.snapshot(route))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn responses_are_counted_by_status_class_and_latency_bucket() {
        let counters = Counters::new();
        let web = counters.route("web");
        web.response(200, Duration::from_micros(400));
        web.response(204, Duration::from_micros(500));
        web.response(308, ms(2));
        web.response(404, ms(30));
        web.response(502, ms(20_000));
        web.upstream_error();
        counters.route("api").response(101, ms(1));

        let snapshot = counters.snapshot();
        let names: Vec<&str> = snapshot.iter().map(|c| c.route.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        let web = &snapshot[1];
        assert_eq!(web.responses_by_class, [0, 2, 1, 1, 1]);
        assert_eq!(web.upstream_errors, 1);
        assert_eq!(web.latency_bounds_us, LATENCY_BOUNDS_US);
        // 400 µs and 500 µs (bounds are inclusive) ≤ 0.5 ms, 2 ms ≤ 2.5 ms,
        // 30 ms ≤ 50 ms, 20 s in +Inf.
        let mut expected = [0; BUCKETS];
        expected[0] = 2;
        expected[2] = 1;
        expected[6] = 1;
        expected[BUCKETS - 1] = 1;
        assert_eq!(web.latency_buckets, expected);
        assert_eq!(web.latency_sum_us, 400 + 500 + 2_000 + 30_000 + 20_000_000);
        assert_eq!(snapshot[0].responses_by_class, [1, 0, 0, 0, 0]);
    }

    #[test]
    fn a_route_keeps_its_counters_and_a_new_start_gets_a_new_epoch() {
        let counters = Counters::new();
        counters.route("web").response(200, ms(1));
        counters.route("web").response(200, ms(1));
        assert_eq!(counters.snapshot()[0].responses_by_class[1], 2);
        let restarted = Counters::new();
        assert_ne!(counters.epoch(), restarted.epoch());
        assert_eq!(restarted.epoch().len(), 32);
        assert!(restarted.snapshot().is_empty());
    }

    #[test]
    fn concurrent_requests_lose_no_count() {
        let counters = Arc::new(Counters::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counters.route("web").response(200, ms(1));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let web = &counters.snapshot()[0];
        assert_eq!(web.responses_by_class[1], 4000);
        assert_eq!(web.latency_buckets.iter().sum::<u64>(), 4000);
    }
}
