//! Secrets over the wire: sealed at rest (in no file of the data dir), sent
//! only to their service's agent, and redacted from the log lines it sends
//! back.

use super::*;

on_both_engines! {
#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_reach_only_their_agent_redacted_from_logs(db) {
    let server = TestServer::start(&db).await;
    let plaintext = "pl41ntext-p4ssw0rd-value";
    let header_secret = "h34der-secret-value";
    let mut control = server.control().await;
    control
        .set_secret(server.admin(SetSecretRequest {
            target: Some(target("hello", "prod")),
            key: "DB_PASSWORD".into(),
            value: plaintext.into(),
        }))
        .await
        .unwrap();
    let bad_key = control
        .set_secret(server.admin(SetSecretRequest {
            target: Some(target("hello", "prod")),
            key: "1-bad".into(),
            value: "x".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad_key.code(), Code::InvalidArgument);

    let (_, agent_token) = server.register("hello", "prod").await;
    let deploy = server
        .deploy_with(
            "hello",
            "prod",
            good_bundle("s"),
            [("API_KEY".to_owned(), header_secret.to_owned())].into(),
        )
        .await
        .unwrap();
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let mission = session.next_mission().await;
    assert_eq!(
        mission.secrets.get("DB_PASSWORD").map(String::as_str),
        Some(plaintext)
    );
    assert_eq!(
        mission.secrets.get("API_KEY").map(String::as_str),
        Some(header_secret)
    );

    // A line leaking the secret is stored redacted.
    session
        .send(agent_message::Msg::Logs(LogBatch {
            mission_id: mission.mission_id.clone(),
            lines: vec![LogLine {
                seq: 1,
                unix_ms: 1,
                stream: LogStream::Stdout as i32,
                source: "web".into(),
                text: format!("connecting with {plaintext}"),
            }],
        }))
        .await;
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 1);
    let line = server.stored_logs(&deploy.mission_id).await.unwrap().remove(0).line.unwrap();
    assert_eq!(line.text, "connecting with [REDACTED]");

    let keys: Vec<String> = control
        .list_secrets(server.admin(ListSecretsRequest {
            target: Some(target("hello", "prod")),
        }))
        .await
        .unwrap()
        .into_inner()
        .secrets
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["API_KEY", "DB_PASSWORD"]);

    drop(session);
    let data_dir = server.stop().await;
    for needle in [plaintext, header_secret] {
        let found = files_contain(data_dir.path(), needle.as_bytes());
        assert!(found.is_empty(), "{needle} in clear in {found:?}");
    }
}
}
