//! The dashboard's static files, embedded in the binary: htmx 2.0.10
//! (vendored from the `django-htmx` 1.29.0 wheel on PyPI, htmx's own 0BSD
//! licence; its sha256 is checked by a test), our script and our
//! stylesheet. No CDN, no npm. Served with long caching under the same
//! names; a new binary brings new files.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");
/// The sha256 of [`HTMX`] as downloaded; the test `embedded_htmx_is_the_vendored_release` holds it.
pub const HTMX_SHA256: &str = "71ea67185bfa8c98c39d31717c6fce5d852370fcdfd129db4543774d3145c0de";
pub const SCRIPT: &[u8] = include_bytes!("assets/dash.js");
pub const STYLE: &[u8] = include_bytes!("assets/dash.css");

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "dash.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "dash.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    #[test]
    fn embedded_htmx_is_the_vendored_release() {
        assert_eq!(hex::encode(Sha256::digest(super::HTMX)), super::HTMX_SHA256);
        let text = std::str::from_utf8(super::HTMX).unwrap();
        assert!(text.contains("version:\"2.0.10\""));
    }
}
