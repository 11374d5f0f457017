//! The CSRF token of a session: random, made at login, stored with the
//! session, put in every page (a `<meta>` the script copies into htmx's
//! `X-CSRF-Token` header, and a hidden field in every plain form). A POST
//! without it, or with another one, is refused with 403 before anything
//! runs. Compared in constant time.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::session::Session;

pub const HEADER: &str = "x-csrf-token";

/// A form whose only field the dashboard reads is the CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Equal, in time independent of where they differ; empty never matches.
pub fn same(expected: &str, given: &str) -> bool {
    if expected.is_empty() || expected.len() != given.len() {
        return false;
    }
    expected
        .bytes()
        .zip(given.bytes())
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

/// A POST without the session's CSRF token: 403.
#[derive(Debug)]
pub struct Refused;

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and try again\n",
        )
            .into_response()
    }
}

/// Passes when the form field or the header carries the session's token.
pub fn check(session: &Session, headers: &HeaderMap, field: &str) -> Result<(), Refused> {
    let header = headers
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if same(&session.csrf, field) || same(&session.csrf, header) {
        return Ok(());
    }
    Err(Refused)
}
