//! The dashboard over real HTTP against a running server: every route
//! refuses a request without a session (walking `dashboard::routes`, with a
//! logged-in positive control), CSRF, a read token's Activate refused by
//! `authz`, escaping of log lines, a revoked token's session, no secret
//! value anywhere, and the log stream resuming by `Last-Event-ID`, also
//! across a control-plane restart.

use super::*;
use crate::server::dashboard::{self, Access};

mod browser;
mod follow;
use browser::{Browser, between, cookie_pair, fetch};

/// A server with hello/prod deployed once and an agent session holding
/// its mission (acknowledged).
async fn deployed(db: &TestDb) -> (TestServer, AgentSession, DeployResponse) {
    let server = TestServer::start(db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let deploy = server.deploy("hello", "prod", good_bundle("one")).await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let mission = session.next_mission().await;
    session.ack(&mission.mission_id).await;
    (server, session, deploy)
}

async fn api_token(server: &TestServer, scope: TokenScope) -> (String, String) {
    let created = server
        .control()
        .await
        .create_api_token(server.admin(CreateApiTokenRequest {
            scope: scope as i32,
            service: "*".into(),
            environment: "*".into(),
            ttl_secs: 0,
            name: format!("dash-{}", scope.as_str_name()),
        }))
        .await
        .unwrap()
        .into_inner();
    (created.info.unwrap().token_id, created.token)
}

on_both_engines! {
#[tokio::test]
async fn every_dashboard_route_refuses_a_request_without_a_session(db) {
    let (server, _agent, _) = deployed(&db).await;
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let mut checked = 0;
    for (route, _) in dashboard::routes() {
        let method = if route.access == Access::Action {
            "POST"
        } else {
            "GET"
        };
        let anonymous = fetch(server.addr, method, route.example, None, &[], &[]).await;
        let forged = fetch(
            server.addr,
            method,
            route.example,
            Some("launch_session=lds_forged"),
            &[],
            &[],
        )
        .await;
        for page in [&anonymous, &forged] {
            match route.access {
                Access::Public => assert!(page.status < 400, "{}: {}", route.pattern, page.status),
                Access::Page => {
                    assert_eq!(page.status, 303, "{}", route.pattern);
                    assert_eq!(page.header("location"), "/login", "{}", route.pattern);
                }
                Access::Fragment | Access::Stream | Access::Action => {
                    assert_eq!(page.status, 401, "{}", route.pattern)
                }
            }
        }
        // Positive control: with a session the same request is let through.
        if matches!(
            route.access,
            Access::Page | Access::Fragment | Access::Stream
        ) {
            let served = if route.access == Access::Stream {
                fetch(
                    server.addr,
                    "GET",
                    route.example,
                    Some(&browser.cookie),
                    &[],
                    &[],
                )
                .await
            } else {
                browser.get(route.example).await
            };
            assert!(
                ![303, 401].contains(&served.status),
                "{} with a session: {} {}",
                route.pattern,
                served.status,
                served.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} routes checked with a session");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_refuses_a_wrong_token(db) {
    let server = TestServer::start(&db).await;
    let refused = Browser::login(server.addr, "lt_api_wrong")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("refused this token"),
        "{}",
        refused.body
    );
    // Without the login form's CSRF token, nothing happens.
    let forged = fetch(
        server.addr,
        "POST",
        "/login",
        None,
        &[("token", &server.admin_token)],
        &[],
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(forged.header("set-cookie").is_empty());

    let form = fetch(server.addr, "GET", "/login", None, &[], &[]).await;
    let login_cookie = cookie_pair(&form.header("set-cookie"), "launch_login");
    let csrf = between(&form.body, "name=\"csrf\" value=\"", "\"");
    let done = fetch(
        server.addr,
        "POST",
        "/login",
        Some(&login_cookie),
        &[("token", &server.admin_token), ("csrf", &csrf)],
        &[],
    )
    .await;
    assert_eq!(done.status, 303);
    let set_cookie = done.header("set-cookie");
    let session_line = set_cookie
        .lines()
        .find(|l| l.starts_with("launch_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_line.contains(attribute), "{session_line}");
    }
    assert!(
        !session_line.contains("Secure"),
        "plain HTTP: {session_line}"
    );
    // The store holds the id's hash and the sealed token, never either in clear.
    let id = cookie_pair(&set_cookie, "launch_session")["launch_session=".len()..].to_owned();
    let data_dir = server.stop().await;
    let leaks = files_contain(&data_dir.path().join("server"), id.as_bytes());
    assert!(leaks.is_empty(), "session id stored in {leaks:?}");
    let leaks = files_contain(&data_dir.path().join("server"), b"lt_admin_");
    assert!(
        leaks.iter().all(|file| file.ends_with("admin.token")),
        "admin token stored in {leaks:?}"
    );
}
}

on_both_engines! {
#[tokio::test]
async fn posts_without_or_with_a_wrong_csrf_token_are_refused_and_change_nothing(db) {
    let (server, _agent, _) = deployed(&db).await;
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let path = "/services/hello/prod/secrets";
    let missing = browser
        .post(path, &[("key", "PLANTED"), ("value", "v")])
        .await;
    assert_eq!(missing.status, 403, "{}", missing.body);
    let wrong = browser
        .post(
            path,
            &[
                ("key", "PLANTED"),
                ("value", "v"),
                ("csrf", "0".repeat(64).as_str()),
            ],
        )
        .await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let names = |server: &TestServer| {
        let server_addr = server.addr;
        let token = server.admin_token.clone();
        async move {
            let channel = Channel::from_shared(format!("http://{server_addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            ControlServiceClient::new(channel)
                .list_secrets(with_token(
                    ListSecretsRequest {
                        target: Some(target("hello", "prod")),
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .secrets
                .into_iter()
                .map(|s| s.key)
                .collect::<Vec<_>>()
        }
    };
    assert!(names(&server).await.is_empty());
    // Positive control: with the token, the same POST sets the secret.
    let done = browser
        .post(
            path,
            &[("key", "PLANTED"), ("value", "v"), ("csrf", &browser.csrf)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(names(&server).await, ["PLANTED"]);
    // The htmx header carries it as well.
    let by_header = fetch(
        server.addr,
        "POST",
        "/services/hello/prod/secrets/PLANTED/remove",
        Some(&browser.cookie),
        &[],
        &[("x-csrf-token", &browser.csrf), ("hx-request", "true")],
    )
    .await;
    assert_eq!(by_header.status, 200, "{}", by_header.body);
    assert!(names(&server).await.is_empty());
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_read_token_session_sees_no_buttons_and_its_activate_is_refused(db) {
    let (server, _agent, first) = deployed(&db).await;
    let second = server.deploy("hello", "prod", good_bundle("two")).await;
    let (_, read_token) = api_token(&server, TokenScope::Read).await;
    let reader = Browser::login(server.addr, &read_token).await.unwrap();
    let admin = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let page = reader.get("/services/hello/prod").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&first.release_id), "{}", page.body);
    for button in ["Activate", "Redeploy", ">Remove<", ">Set<"] {
        assert!(!page.body.contains(button), "a read token sees {button}");
    }
    // Positive control: an admin sees the button.
    let admin_page = admin.get("/services/hello/prod").await;
    assert!(admin_page.body.contains("Activate"), "{}", admin_page.body);

    let before = server.mission(&second.mission_id).await;
    let refused = reader
        .post(
            "/services/hello/prod/activate",
            &[("release_id", &first.release_id), ("csrf", &reader.csrf)],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("needs a deploy token"),
        "{}",
        refused.body
    );
    let info = server
        .control()
        .await
        .get_service(server.admin(GetServiceRequest {
            target: Some(target("hello", "prod")),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.last_mission_id, second.mission_id,
        "nothing was queued"
    );
    assert_eq!(server.mission(&second.mission_id).await, before);

    // The admin's Activate queues a rollback mission.
    let done = admin
        .post(
            "/services/hello/prod/activate",
            &[("release_id", &first.release_id), ("csrf", &admin.csrf)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let info = server
        .control()
        .await
        .get_service(server.admin(GetServiceRequest {
            target: Some(target("hello", "prod")),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(info.last_mission_id, second.mission_id);
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_revoked_tokens_session_is_refused(db) {
    let (server, _agent, _) = deployed(&db).await;
    let (token_id, token) = api_token(&server, TokenScope::Deploy).await;
    let browser = Browser::login(server.addr, &token).await.unwrap();
    assert_eq!(browser.get("/").await.status, 200);
    server
        .control()
        .await
        .revoke_api_token(server.admin(RevokeApiTokenRequest { token_id }))
        .await
        .unwrap();
    let page = browser.get("/").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login");
    // The session died with the token: even a fragment now finds none.
    assert_eq!(browser.get("/fragments/services?q=").await.status, 401);
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn log_lines_render_escaped_with_colours(db) {
    let (server, agent, deploy) = deployed(&db).await;
    agent
        .send(agent_message::Msg::Logs(LogBatch {
            mission_id: deploy.mission_id.clone(),
            lines: vec![
                LogLine {
                    seq: 1,
                    unix_ms: 1,
                    stream: LogStream::Stdout as i32,
                    source: "compose".into(),
                    text: "<script>alert(1)</script>".into(),
                },
                LogLine {
                    seq: 2,
                    unix_ms: 1,
                    stream: LogStream::Stdout as i32,
                    source: "compose".into(),
                    text: "\u{1b}[32mgreen\u{1b}[0m".into(),
                },
            ],
        }))
        .await;
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let mut stream = browser
        .stream(&format!("/missions/{}/stream", deploy.mission_id), None)
        .await;
    let events = stream.until(2).await;
    assert_eq!(events[0].data, "&lt;script&gt;alert(1)&lt;/script&gt;");
    assert_eq!(events[1].data, "<span class=\"ansi-2\">green</span>");
    let page = browser
        .get(&format!("/missions/{}", deploy.mission_id))
        .await;
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn no_secret_value_appears_in_any_page_or_fragment(db) {
    let (server, _agent, _) = deployed(&db).await;
    let planted = "planted-secret-value-7f3a9c";
    server
        .control()
        .await
        .set_secret(server.admin(SetSecretRequest {
            target: Some(target("hello", "prod")),
            key: "API_KEY".into(),
            value: planted.into(),
        }))
        .await
        .unwrap();
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let mut seen = String::new();
    for (route, _) in dashboard::routes() {
        if matches!(route.access, Access::Page | Access::Fragment) {
            let page = browser.get(route.example).await;
            seen.push_str(&page.body);
            assert!(
                !page.body.contains(planted),
                "{} shows the secret value",
                route.pattern
            );
        }
    }
    // Positive control: the secret's name is shown, and pages were read.
    assert!(seen.contains("API_KEY"), "{seen}");
    assert!(seen.contains("hello"), "{seen}");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn the_log_stream_resumes_after_last_event_id_also_across_a_restart(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let deploy = server.deploy("hello", "prod", good_bundle("one")).await;
    let mut agent = AgentSession::open(&server, &agent_token).await.unwrap();
    let mission = agent.next_mission().await;
    agent.ack(&mission.mission_id).await;
    agent.logs(&mission.mission_id, 1..=5).await;
    assert_eq!(agent.next_log_ack(&mission.mission_id).await, 5);

    let path = format!("/missions/{}/stream", deploy.mission_id);
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let mut stream = browser.stream(&path, None).await;
    let ids: Vec<String> = stream.until(5).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    // A dropped connection resumes after the last id it saw.
    drop(stream);
    let mut stream = browser.stream(&path, Some(3)).await;
    agent.logs(&mission.mission_id, 6..=6).await;
    let ids: Vec<String> = stream.until(6).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["4", "5", "6"]);

    // The control plane restarts; the agent reconnects and carries on,
    // dropping lines 8 and 9 (a gap); the browser's session survives.
    drop(stream);
    drop(agent);
    let server = server.restart().await;
    let browser = Browser {
        addr: server.addr,
        ..browser
    };
    let mut agent = AgentSession::open(&server, &agent_token).await.unwrap();
    agent.logs(&mission.mission_id, 7..=7).await;
    agent.logs(&mission.mission_id, 10..=10).await;
    // The session opens with the stored cursor (6), then acknowledges 7 and 10.
    let mut acked = 0;
    while acked < 10 {
        acked = agent.next_log_ack(&mission.mission_id).await;
    }
    let mut stream = browser.stream(&path, Some(6)).await;
    let events = stream.until(10).await;
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.id.clone(), e.event.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("7".to_owned(), "line".to_owned()),
            ("9".to_owned(), "gap".to_owned()),
            ("10".to_owned(), "line".to_owned()),
        ]
    );
    assert!(events[1].data.contains("8–9"), "{:?}", events[1]);
    // The final update ends the stream with `end`, so the browser stops.
    agent
        .update(
            &mission.mission_id,
            MissionState::Healthy,
            &deploy.release_id,
        )
        .await;
    assert_eq!(stream.next().await.event, "state");
    assert_eq!(stream.next().await.event, "end");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn the_event_stream_reports_agents_and_mission_states_for_the_status_pills(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let mut events = browser.stream("/events", None).await;
    let mut agent = AgentSession::open(&server, &agent_token).await.unwrap();
    let connected = events.next().await;
    assert_eq!(connected.event, "fleet");
    assert!(
        connected.data.contains("AGENT_CONNECTED") && connected.data.contains("\"hello\""),
        "{connected:?}"
    );
    let deploy = server.deploy("hello", "prod", good_bundle("one")).await;
    let mission = agent.next_mission().await;
    agent.ack(&mission.mission_id).await;
    agent
        .update(
            &mission.mission_id,
            MissionState::Healthy,
            &deploy.release_id,
        )
        .await;
    let mut states = Vec::new();
    while !states
        .iter()
        .any(|s: &String| s.contains("\"state\":\"healthy\""))
    {
        let event = events.next().await;
        assert_eq!(event.event, "fleet", "{event:?}");
        assert!(event.data.contains(&deploy.mission_id), "{event:?}");
        states.push(event.data);
    }
    // Each event carries the state stored when it is sent (fleet::complete),
    // so a slow reader may see a later state twice, never an earlier one
    // after a later one.
    let order = ["queued", "dispatched", "running", "healthy"];
    let ranks: Vec<usize> = states
        .iter()
        .map(|s| {
            order
                .iter()
                .position(|state| s.contains(&format!("\"state\":\"{state}\"")))
                .unwrap_or_else(|| panic!("an unexpected state: {s}"))
        })
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{states:?}");
    // The row the pill lives in re-renders with the new state.
    let row = browser.get("/fragments/service-row/hello/prod").await;
    assert!(row.body.contains("pill healthy"), "{}", row.body);
    drop(agent);
    // Mission events may still be on their way; the disconnect follows.
    while !events.next().await.data.contains("AGENT_DISCONNECTED") {}
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_search_echoed_into_the_page_is_escaped(db) {
    let (server, _agent, _) = deployed(&db).await;
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    // `<img src=x onerror=alert(1)>`, url-encoded.
    let page = browser
        .get("/?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("<img"), "{}", page.body);
    // askama escapes `<` and `>` as numeric references.
    assert!(
        page.body
            .contains("value=\"&#60;img src=x onerror=alert(1)&#62;\""),
        "{}",
        page.body
    );
    server.stop().await;
}
}

/// The values and counts of a suggestions fragment, as `value count`.
fn suggested(body: &str) -> Vec<String> {
    body.split("data-value=\"")
        .skip(1)
        .map(|item| {
            let value = &item[..item.find('"').unwrap()];
            let count = between(item, "<span class=\"muted\">", "</span>");
            format!("{value} {count}")
        })
        .collect()
}

on_both_engines! {
#[tokio::test]
async fn suggestions_complete_keys_then_values_from_the_tag_vocabulary(db) {
    let (server, _agent, _) = deployed(&db).await;
    for (service, environment, team) in [("hello", "prod", "core"), ("api", "prod", "Web"), ("api", "staging", "web")] {
        server
            .control()
            .await
            .ensure_service(server.admin(EnsureServiceRequest {
                target: Some(target(service, environment)),
                tags: [("team".to_owned(), team.to_owned())].into(),
                replace_tags: true,
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    let (_, read_token) = api_token(&server, TokenScope::Read).await;
    let browser = Browser::login(server.addr, &read_token).await.unwrap();
    let suggest = |q: &'static str| {
        let browser = &browser;
        async move {
            let page = browser.get(&format!("/fragments/suggest?q={q}")).await;
            assert_eq!(page.status, 200, "{q}: {}", page.body);
            suggested(&page.body)
        }
    };
    assert_eq!(suggest("").await, ["env: 3", "service: 3", "team: 3"]);
    assert_eq!(suggest("t").await, ["team: 3"]);
    assert_eq!(suggest("team%3Aw").await, ["team:Web 1", "team:web 1"], "values in any case");
    assert_eq!(suggest("team%3AW").await, ["team:Web 1", "team:web 1"]);
    assert_eq!(suggest("env%3Ap").await, ["env:prod 2"]);
    assert_eq!(suggest("team%3Acore+service%3A").await, ["service:api 2", "service:hello 1"]);
    assert!(suggest("team%3Acore+").await.len() == 3, "a space starts a new term");
    assert!(suggest("zone").await.is_empty());
    server.stop().await;
}
}
