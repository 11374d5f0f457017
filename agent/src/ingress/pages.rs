//! The plain pages the front door answers itself: 404 for a name it does not
//! route, 502 when the upstream cannot be reached, 503 while a service has no
//! healthy release, and the 308 to HTTPS. Each says which service (or name)
//! it is about and nothing about the inside of the host.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode, header};

use super::proxy::ProxyBody;

fn page(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

pub fn unknown_host(host: &str) -> Response<ProxyBody> {
    page(
        StatusCode::NOT_FOUND,
        format!("404: no service on this host answers the name {host:?}\n"),
    )
}

pub fn no_release(service: &str) -> Response<ProxyBody> {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503: service {service} has no healthy release right now\n"),
    )
}

pub fn bad_gateway(service: &str) -> Response<ProxyBody> {
    page(
        StatusCode::BAD_GATEWAY,
        format!("502: service {service} did not answer\n"),
    )
}

pub fn gateway_timeout(service: &str) -> Response<ProxyBody> {
    page(
        StatusCode::GATEWAY_TIMEOUT,
        format!("504: service {service} did not answer in time\n"),
    )
}

pub fn bad_request(what: &str) -> Response<ProxyBody> {
    page(StatusCode::BAD_REQUEST, format!("400: {what}\n"))
}

pub fn challenge(key_authorization: String) -> Response<ProxyBody> {
    let mut response = page(StatusCode::OK, key_authorization);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

pub fn not_found() -> Response<ProxyBody> {
    page(StatusCode::NOT_FOUND, "404: not found\n".to_owned())
}

/// 308 keeps the method and body, unlike 301.
pub fn to_https(location: &str) -> Response<ProxyBody> {
    let mut response = page(
        StatusCode::PERMANENT_REDIRECT,
        format!("308: this service is served at {location}\n"),
    );
    if let Ok(value) = header::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
