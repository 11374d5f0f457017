//! The mission log as many browsers follow it (`dashboard::follow`: one
//! rendering per mission, shared): a follower joining in the middle gets
//! every line once and in order, like the first one; a follower's stream
//! ends when its token is revoked and is refused to a token for another
//! service. And the services page a page at a time, the search applied by
//! `ListServices`.

use super::super::*;
use super::browser::{self, Browser};
use super::{api_token, deployed};

fn ids(events: &[browser::Sse]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.event == "line")
        .map(|e| e.id.parse().unwrap())
        .collect()
}

on_both_engines! {
#[tokio::test]
async fn followers_joining_mid_stream_each_get_every_line_once_in_order(db) {
    let (server, agent, deploy) = deployed(&db).await;
    let path = format!("/missions/{}/stream", deploy.mission_id);
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let mut first = browser.stream(&path, None).await;
    agent.logs(&deploy.mission_id, 1..=50).await;
    assert_eq!(ids(&first.until(50).await), (1..=50).collect::<Vec<_>>());
    // The second joins while the first keeps the mission's rendering going,
    // and lines keep coming while it reads the first fifty from the store.
    let mut second = browser.stream(&path, None).await;
    for batch in 0..5 {
        let from = 51 + batch * 10;
        agent.logs(&deploy.mission_id, from..=from + 9).await;
    }
    assert_eq!(ids(&second.until(100).await), (1..=100).collect::<Vec<_>>());
    assert_eq!(ids(&first.until(100).await), (51..=100).collect::<Vec<_>>());
    // A third resumes in the middle; then everyone sees the final state and the end.
    let mut third = browser.stream(&path, Some(70)).await;
    agent.logs(&deploy.mission_id, 101..=101).await;
    assert_eq!(ids(&third.until(101).await), (71..=101).collect::<Vec<_>>());
    agent
        .update(&deploy.mission_id, MissionState::Healthy, &deploy.release_id)
        .await;
    for stream in [&mut first, &mut second] {
        assert_eq!(ids(&stream.until(101).await), [101]);
    }
    for stream in [&mut first, &mut second, &mut third] {
        assert_eq!(stream.next().await.event, "state");
        assert_eq!(stream.next().await.event, "end");
    }
    // A follower of the finished mission gets it all from the store.
    let mut late = browser.stream(&path, None).await;
    assert_eq!(ids(&late.until(101).await), (1..=101).collect::<Vec<_>>());
    assert_eq!(late.next().await.data, "healthy");
    assert_eq!(late.next().await.event, "end");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_followers_stream_ends_when_its_token_is_revoked(db) {
    let (server, agent, deploy) = deployed(&db).await;
    let path = format!("/missions/{}/stream", deploy.mission_id);
    let (token_id, token) = api_token(&server, TokenScope::Read).await;
    let browser = Browser::login(server.addr, &token).await.unwrap();
    let mut stream = browser.stream(&path, None).await;
    agent.logs(&deploy.mission_id, 1..=3).await;
    // Positive control: the stream is open and delivering.
    assert_eq!(ids(&stream.until(3).await), [1, 2, 3]);
    server
        .control()
        .await
        .revoke_api_token(server.admin(RevokeApiTokenRequest { token_id }))
        .await
        .unwrap();
    stream.ended().await;
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_token_for_another_service_cannot_follow_the_log(db) {
    let (server, _agent, deploy) = deployed(&db).await;
    let created = server
        .control()
        .await
        .create_api_token(server.admin(CreateApiTokenRequest {
            scope: TokenScope::Read as i32,
            service: "other".into(),
            environment: "*".into(),
            ttl_secs: 0,
            name: "other-reader".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let browser = Browser::login(server.addr, &created.token).await.unwrap();
    let path = format!("/missions/{}/stream", deploy.mission_id);
    assert_eq!(browser.get(&path).await.status, 403);
    // Positive control: the admin may.
    let admin = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    admin.stream(&path, None).await;
    server.stop().await;
}
}

/// The services a rows fragment or page shows, in order.
fn listed_services(body: &str) -> Vec<String> {
    body.split("data-watch=\"")
        .skip(1)
        .map(|row| row[..row.find('/').unwrap()].to_owned())
        .collect()
}

on_both_engines! {
#[tokio::test]
async fn the_services_page_shows_a_page_at_a_time_and_searches_them_all(db) {
    let server = TestServer::start(&db).await;
    for i in 0..120 {
        let team = if i % 2 == 0 { "core" } else { "web" };
        server
            .control()
            .await
            .ensure_service(server.admin(EnsureServiceRequest {
                target: Some(target(&format!("svc-{i:03}"), "prod")),
                tags: [("team".to_owned(), team.to_owned())].into(),
                replace_tags: true,
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    let browser = Browser::login(server.addr, &server.admin_token)
        .await
        .unwrap();
    let first = browser.get("/").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let shown = listed_services(&first.body);
    let want: Vec<String> = (0..100).map(|i| format!("svc-{i:03}")).collect();
    assert_eq!(shown, want);
    assert!(first.body.contains("<span class=\"muted\">120</span>"), "{}", first.body);
    assert!(first.body.contains("1–100 of 120"), "{}", first.body);
    assert!(first.body.contains("href=\"/?page=2\" rel=\"next\""), "{}", first.body);
    let second = browser.get("/?page=2").await;
    let want: Vec<String> = (100..120).map(|i| format!("svc-{i:03}")).collect();
    assert_eq!(listed_services(&second.body), want);
    assert!(second.body.contains("href=\"/?page=1\" rel=\"prev\""), "{}", second.body);
    assert!(!second.body.contains("rel=\"next\""), "{}", second.body);
    // The search covers every service, not just the page shown: terms ANDed,
    // prefixes of names and tag values.
    let rows = browser.get("/fragments/services?q=team%3Aco+svc-11").await;
    assert_eq!(rows.status, 200, "{}", rows.body);
    assert_eq!(
        listed_services(&rows.body),
        ["svc-110", "svc-112", "svc-114", "svc-116", "svc-118"]
    );
    assert!(!rows.body.contains("class=\"pager\""), "one page needs no pager: {}", rows.body);
    let rows = browser.get("/fragments/services?q=team%3Aweb&page=2").await;
    assert_eq!(listed_services(&rows.body), Vec::<String>::new(), "60 match: one page");
    let rows = browser.get("/fragments/services?q=team%3A").await;
    assert_eq!(listed_services(&rows.body).len(), 100);
    assert!(rows.body.contains("href=\"/?q=team%3A&#38;page=2\""), "{}", rows.body);
    server.stop().await;
}
}
