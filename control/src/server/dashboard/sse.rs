//! The dashboard's two event streams, both server-sent events over the
//! session's control calls. `/events` relays `WatchEvents`: one `fleet`
//! event per state change (service and environment as JSON) that the
//! script answers by re-fetching the fragments watching that service, and
//! `resync` when events were missed. `/missions/{id}/stream` relays
//! `WatchMission` with each line's seq as the event id, so a browser that
//! reconnects (a dropped connection, a control plane restart) sends
//! `Last-Event-ID` and continues after it: no line twice, none missing, a
//! gap shown as a gap. Lines are sent as escaped HTML (`ansi`). Both streams
//! end when the session's token is revoked (`authz` ends the call).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State as Extract};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use launch_proto::*;

use super::session::ApiSession;
use super::{Dash, ansi};

/// How long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(1);

fn sse(stream: impl Stream<Item = Event> + Send + 'static) -> Response {
    Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /events`: the fleet's state changes.
pub async fn events(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
) -> Response {
    let stream = match session
        .outcome(
            &dash,
            dash.control()
                .watch_events(session.request(WatchEventsRequest {}))
                .await,
            false,
        )
        .await
    {
        Ok(stream) => stream,
        Err(failure) => return failure.into_response(),
    };
    let events = async_stream::stream! {
        yield Event::default().retry(RETRY).comment("fleet");
        let mut stream = stream;
        while let Some(Ok(event)) = stream.next().await {
            yield fleet_event(&event);
        }
    };
    sse(events)
}

/// One fleet event as SSE: `fleet` with the target as JSON, or `resync`.
fn fleet_event(event: &FleetEvent) -> Event {
    if event.kind() == FleetEventKind::Unspecified {
        return Event::default().event("resync").data("");
    }
    let target = event.target.clone().unwrap_or_default();
    let data = serde_json::json!({
        "kind": event.kind().as_str_name(),
        "service": target.service,
        "environment": target.environment,
        "mission_id": event.mission_id,
        "state": event.state().label(),
        "preview": event.preview,
    });
    Event::default().event("fleet").data(data.to_string())
}

/// The seq to resume after: `Last-Event-ID` when the browser reconnects.
fn resume_after(headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// One mission event as SSE.
pub fn log_event(event: MissionEvent) -> Option<Event> {
    match event.event? {
        mission_event::Event::Line(line) => Some(
            Event::default()
                .id(line.seq.to_string())
                .event("line")
                .data(ansi::to_html(&line.text)),
        ),
        mission_event::Event::Gap(gap) => Some(
            Event::default()
                .id(gap.to_seq.to_string())
                .event("gap")
                .data(format!(
                    "… lines {}–{} are missing (the agent dropped them) …",
                    gap.from_seq, gap.to_seq
                )),
        ),
        mission_event::Event::Update(update) => Some(
            Event::default()
                .event("state")
                .data(update.state().label().replace('_', " ")),
        ),
    }
}

/// `GET /missions/{mission_id}/stream`: the mission's log, resumable.
pub async fn mission_log(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path(mission_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let since_seq = resume_after(&headers);
    let stream = match session
        .outcome(
            &dash,
            dash.control()
                .watch_mission(session.request(WatchMissionRequest {
                    mission_id,
                    since_seq,
                }))
                .await,
            false,
        )
        .await
    {
        Ok(stream) => stream,
        Err(failure) => return failure.into_response(),
    };
    let events = async_stream::stream! {
        yield Event::default().retry(RETRY).comment("log");
        let mut stream = stream;
        // An error (shutdown, a revoked token) just closes the connection:
        // the browser reconnects with Last-Event-ID, and the session decides.
        while let Some(Ok(event)) = stream.next().await {
            let done = matches!(&event.event, Some(mission_event::Event::Update(update))
                if update.state().is_final());
            if let Some(event) = log_event(event) {
                yield event;
            }
            if done {
                // The mission is over: the browser stops listening.
                yield Event::default().event("end").data("");
                break;
            }
        }
    };
    sse(events)
}
