//! Front-door reports in heartbeats, over the wire: `status` shows the
//! routes and certificate states an agent last reported, and `/metrics`
//! shows its proxy counters added up without counting anything twice —
//! not a repeated heartbeat, not a reconnect, not a control-plane restart —
//! while an agent restart (a new epoch) counts from zero.

use super::*;

fn report(epoch: &str, ok: u64) -> FrontDoorReport {
    FrontDoorReport {
        counters_epoch: epoch.into(),
        routes: vec![FrontDoorRoute {
            route: "web".into(),
            hosts: vec!["hello.test".into()],
            release_id: "rel-1".into(),
            certificates: vec![FrontDoorCertificate {
                host: "hello.test".into(),
                state: CertificateState::Failed as i32,
                error: "cannot reach the ACME server".into(),
                attempts: 1,
                ..Default::default()
            }],
        }],
        counters: vec![FrontDoorCounters {
            route: "web".into(),
            responses_by_class: vec![0, ok, 0, 0, 0],
            upstream_errors: 0,
            latency_bounds_us: vec![1_000],
            latency_buckets: vec![ok, 0],
            latency_sum_us: 100 * ok,
        }],
    }
}

impl AgentSession {
    async fn heartbeat(&self, report: FrontDoorReport) {
        self.send(agent_message::Msg::Heartbeat(Heartbeat {
            unix_ms: 0,
            front_door: Some(report),
        }))
        .await;
    }
}

const OK: &str =
    r#"launch_proxy_responses_total{service="hello",environment="prod",route="web",class="2xx"}"#;
const COUNT: &str = r#"launch_proxy_request_duration_seconds_count{service="hello",environment="prod",route="web"}"#;

/// Waits until `/metrics` says `want` 2xx responses (and as many latencies).
async fn responses(server: &TestServer, want: u64) {
    eventually(&format!("{want} responses on /metrics"), || async {
        let metrics = http_get(server.addr, "/metrics").await;
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        let (ok, count) = (value(OK), value(COUNT));
        if ok.as_deref() == Some(&want.to_string()) && count == ok {
            Ok(())
        } else {
            Err(format!("2xx {ok:?}, count {count:?}"))
        }
    })
    .await
}

on_both_engines! {
#[tokio::test]
async fn heartbeats_show_routes_in_status_and_add_counters_to_metrics_once(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let session = AgentSession::open(&server, &agent_token).await.unwrap();
    session.heartbeat(report("a", 3)).await;
    responses(&server, 3).await;

    let status = server
        .control()
        .await
        .status(server.admin(StatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    let routes = &status.services[0].routes;
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].hosts, ["hello.test"]);
    assert_eq!(routes[0].release_id, "rel-1");
    assert_eq!(
        routes[0].certificates[0].error,
        "cannot reach the ACME server"
    );

    // Heartbeats repeat the counters as they stand: only growth is added.
    session.heartbeat(report("a", 3)).await;
    session.heartbeat(report("a", 3)).await;
    session.heartbeat(report("a", 5)).await;
    responses(&server, 5).await;

    // A reconnect of the same agent run (same epoch) continues from there.
    drop(session);
    let session = AgentSession::open(&server, &agent_token).await.unwrap();
    session.heartbeat(report("a", 7)).await;
    responses(&server, 7).await;
    drop(session);

    // So does a control-plane restart (the marks are stored with the totals).
    let server = server.restart().await;
    let session = AgentSession::open(&server, &agent_token).await.unwrap();
    session.heartbeat(report("a", 8)).await;
    responses(&server, 8).await;

    // The agent restarted: a new epoch counts from zero.
    session.heartbeat(report("b", 2)).await;
    responses(&server, 10).await;
}
}
