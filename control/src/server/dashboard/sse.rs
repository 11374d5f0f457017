//! The dashboard's two event streams, both server-sent events over the
//! session's control calls. `/events` relays `WatchEvents`: one `fleet`
//! event per state change (service and environment as JSON) that the
//! script answers by re-fetching the fragments watching that service, and
//! `resync` when events were missed. `/missions/{id}/stream` is the
//! mission's log from its shared rendering (`follow`) with each line's seq
//! as the event id, so a browser that reconnects (a dropped connection, a
//! control plane restart) sends `Last-Event-ID` and continues after it: no
//! line twice, none missing, a gap shown as a gap. Lines are sent as
//! escaped HTML (`ansi`). Both streams end when the session's token is
//! revoked (`authz`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use launch_proto::*;

use super::session::ApiSession;
use super::{Dash, follow};

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

/// `GET /missions/{mission_id}/stream`: the mission's log, resumable,
/// from the mission's shared rendering (`follow`). The session's token is
/// checked here by a `GetMission` call (the rule `WatchMission` has), and
/// the stream ends when the token is revoked or expires.
pub async fn mission_log(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path(mission_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let since_seq = resume_after(&headers);
    let authorized = session
        .outcome(
            &dash,
            dash.control()
                .get_mission(session.request(GetMissionRequest {
                    mission_id: mission_id.clone(),
                }))
                .await,
            false,
        )
        .await;
    if let Err(failure) = authorized {
        return failure.into_response();
    }
    let end = match session.stream_end(&dash).await {
        Ok(end) => end,
        Err(failure) => return failure.into_response(),
    };
    let stream = follow::follow(
        dash.state.clone(),
        dash.follows.clone(),
        mission_id,
        since_seq,
        end,
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
