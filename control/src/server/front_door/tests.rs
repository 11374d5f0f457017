//! The growth rule (what a report adds to the totals) and the Prometheus
//! text, without a server.

use super::*;

fn counters(route: &str, ok: u64, failed: u64) -> FrontDoorCounters {
    FrontDoorCounters {
        route: route.into(),
        responses_by_class: vec![0, ok, 0, 0, failed],
        upstream_errors: failed,
        latency_bounds_us: vec![1_000, 250_000],
        latency_buckets: vec![ok, 0, failed],
        latency_sum_us: 400 * ok + 20_000_000 * failed,
    }
}

fn grown(growth: &[Growth]) -> Vec<(String, String, u64)> {
    growth
        .iter()
        .map(|g| (g.route.clone(), g.series.clone(), g.by))
        .collect()
}

#[test]
fn a_first_report_counts_everything_and_a_repeated_one_nothing() {
    let now = marks(&[counters("web", 3, 1)]);
    let first = growth(None, "a", &now);
    assert_eq!(
        grown(&first),
        [
            ("web".into(), "latency_le_us:1000".into(), 3),
            ("web".into(), "latency_le_us:inf".into(), 1),
            ("web".into(), "latency_sum_us".into(), 20_001_200),
            ("web".into(), "responses_2xx".into(), 3),
            ("web".into(), "responses_5xx".into(), 1),
            ("web".into(), "upstream_errors".into(), 1),
        ]
    );
    let stored = ("a".to_owned(), now.clone());
    assert!(growth(Some(&stored), "a", &now).is_empty());
}

#[test]
fn within_an_epoch_only_what_grew_is_added() {
    let before = ("a".to_owned(), marks(&[counters("web", 3, 1)]));
    let now = marks(&[counters("web", 5, 1), counters("api", 1, 0)]);
    assert_eq!(
        grown(&growth(Some(&before), "a", &now)),
        [
            ("api".into(), "latency_le_us:1000".into(), 1),
            ("api".into(), "latency_sum_us".into(), 400),
            ("api".into(), "responses_2xx".into(), 1),
            ("web".into(), "latency_le_us:1000".into(), 2),
            ("web".into(), "latency_sum_us".into(), 800),
            ("web".into(), "responses_2xx".into(), 2),
        ]
    );
}

#[test]
fn a_new_epoch_counts_from_zero_and_a_lower_value_never_subtracts() {
    let before = ("a".to_owned(), marks(&[counters("web", 100, 0)]));
    // The agent restarted: its counters began again at zero.
    let restarted = marks(&[counters("web", 2, 0)]);
    let added = growth(Some(&before), "b", &restarted);
    assert!(
        added.contains(&Growth {
            route: "web".into(),
            series: "responses_2xx".into(),
            by: 2
        }),
        "{added:?}"
    );
    // The same epoch going down (never expected) adds nothing.
    assert!(growth(Some(&before), "a", &restarted).is_empty());
}

#[test]
fn totals_render_as_prometheus_counters_and_a_cumulative_histogram() {
    let now = marks(&[counters("web", 3, 1)]);
    let totals: Vec<_> = now["web"]
        .iter()
        .map(|(series, value)| {
            (
                "hello".to_owned(),
                "prod".to_owned(),
                "web".to_owned(),
                series.clone(),
                *value,
            )
        })
        .collect();
    let mut out = String::new();
    render(&totals, &mut out);
    let labels = r#"service="hello",environment="prod",route="web""#;
    for line in [
        "# TYPE launch_proxy_responses_total counter".to_owned(),
        format!(r#"launch_proxy_responses_total{{{labels},class="2xx"}} 3"#),
        format!(r#"launch_proxy_responses_total{{{labels},class="4xx"}} 0"#),
        format!(r#"launch_proxy_responses_total{{{labels},class="5xx"}} 1"#),
        format!("launch_proxy_upstream_errors_total{{{labels}}} 1"),
        "# TYPE launch_proxy_request_duration_seconds histogram".to_owned(),
        format!(r#"launch_proxy_request_duration_seconds_bucket{{{labels},le="0.001"}} 3"#),
        format!(r#"launch_proxy_request_duration_seconds_bucket{{{labels},le="0.25"}} 3"#),
        format!(r#"launch_proxy_request_duration_seconds_bucket{{{labels},le="+Inf"}} 4"#),
        format!("launch_proxy_request_duration_seconds_sum{{{labels}}} 20.0012"),
        format!("launch_proxy_request_duration_seconds_count{{{labels}}} 4"),
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}
