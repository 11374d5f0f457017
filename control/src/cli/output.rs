//! Rendering shared by the commands: log lines as `[source] text`, JSON shapes
//! of the wire types (stable field names, states as lower-case labels), and
//! simple aligned tables for text output.

use launch_proto::{
    AgentInfo, LogLine, LogStream, MissionState, ReleaseInfo, ReleaseState, ServiceInfo, ServiceTag,
};
use serde_json::{Value, json};

/// `[source] text`, the text form of a log line.
pub fn line_text(line: &LogLine) -> String {
    let source = if line.source.is_empty() {
        "log"
    } else {
        &line.source
    };
    format!("[{source}] {}", line.text)
}

pub fn line_json(mission_id: &str, line: &LogLine) -> Value {
    let stream = match LogStream::try_from(line.stream).unwrap_or_default() {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::System => "system",
        LogStream::Unspecified => "unknown",
    };
    json!({
        "mission_id": mission_id,
        "seq": line.seq,
        "unix_ms": line.unix_ms,
        "stream": stream,
        "source": line.source,
        "text": line.text,
    })
}

pub fn mission_state(state: i32) -> &'static str {
    MissionState::try_from(state).unwrap_or_default().label()
}

pub fn release_json(release: &ReleaseInfo) -> Value {
    json!({
        "release_id": release.release_id,
        "service": release.target.as_ref().map(|t| t.service.as_str()).unwrap_or_default(),
        "environment": release.target.as_ref().map(|t| t.environment.as_str()).unwrap_or_default(),
        "state": ReleaseState::try_from(release.state).unwrap_or_default().label(),
        "current": release.current,
        "git_ref": release.git_ref,
        "repo": release.repo,
        "pr": release.pr,
        "bundle_sha256": release.bundle_sha256,
        "bundle_size": release.bundle_size,
        "mission_id": release.mission_id,
        "created_unix_ms": release.created_unix_ms,
        "retired": release.retired,
    })
}

pub fn service_json(service: &ServiceInfo) -> Value {
    json!({
        "service": service.target.as_ref().map(|t| t.service.as_str()).unwrap_or_default(),
        "environment": service.target.as_ref().map(|t| t.environment.as_str()).unwrap_or_default(),
        "current_release_id": service.current_release_id,
        "last_mission_id": service.last_mission_id,
        "last_mission_state": mission_state(service.last_mission_state),
        "url": service.url,
        "agents_connected": service.agents_connected,
        "note": service.note,
        "created_unix_ms": service.created_unix_ms,
        "health": if service.health.is_empty() { "ok" } else { service.health.as_str() },
        "routes": super::routes::json(&service.routes),
        "tags": tags_json(&service.tags),
    })
}

/// A service's tags as `key=value,key=value` (`-`: none).
pub fn tags_text(tags: &[ServiceTag]) -> String {
    let text = tags
        .iter()
        .map(|tag| format!("{}={}", tag.key, tag.value))
        .collect::<Vec<_>>()
        .join(",");
    or_dash(&text)
}

/// A service's tags as a JSON object, key → value.
pub fn tags_json(tags: &[ServiceTag]) -> Value {
    Value::Object(
        tags.iter()
            .map(|tag| (tag.key.clone(), Value::String(tag.value.clone())))
            .collect(),
    )
}

pub fn agent_json(agent: &AgentInfo) -> Value {
    json!({
        "agent_id": agent.agent_id,
        "labels": agent.labels,
        "hostname": agent.hostname,
        "version": agent.version,
        "connected": agent.connected,
        "revoked": agent.revoked,
        "last_seen_unix_ms": agent.last_seen_unix_ms,
        "registered_unix_ms": agent.registered_unix_ms,
    })
}

/// Prints rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let render = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    println!("{}", render(header.to_vec()));
    for row in rows {
        println!("{}", render(row.iter().map(String::as_str).collect()));
    }
}

pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_render_as_source_and_text_and_as_stable_json() {
        let line = LogLine {
            seq: 7,
            unix_ms: 1,
            stream: LogStream::Stderr as i32,
            source: "web".into(),
            text: "GET /".into(),
        };
        assert_eq!(line_text(&line), "[web] GET /");
        let value = line_json("m-1", &line);
        assert_eq!(value["seq"], 7);
        assert_eq!(value["stream"], "stderr");
        assert_eq!(value["mission_id"], "m-1");
    }

    #[test]
    fn release_json_uses_state_labels() {
        let release = ReleaseInfo {
            release_id: "r-1".into(),
            state: ReleaseState::RolledBack as i32,
            current: false,
            ..Default::default()
        };
        let value = release_json(&release);
        assert_eq!(value["state"], "rolled_back");
        assert_eq!(value["current"], false);
    }
}
