//! The small HTTPS client the Cloudflare and Proxmox APIs share: hyper over
//! rustls (ring), one request at a time with a timeout, the bearer-like
//! credential in a header marked sensitive (so it never shows in debug
//! output), and every cause of a transport error spelled out. Each API keeps
//! its own URLs, retries and error wording; this is only the exchange.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled client over `https`.
pub fn client(https: HttpsConnector<HttpConnector>) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

/// What came back: the status, `Retry-After` if any, and the whole body.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

/// One request: `authorization` goes in a sensitive header.
pub async fn send(
    http: &HttpClient,
    method: &Method,
    url: &str,
    authorization: String,
    content_type: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Reply, String> {
    let mut auth = header::HeaderValue::try_from(authorization)
        .map_err(|_| "api_token holds characters that cannot go in an HTTP header".to_owned())?;
    auth.set_sensitive(true);
    let request = Request::builder()
        .method(method.clone())
        .uri(url)
        .header(header::AUTHORIZATION, auth)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::USER_AGENT,
            concat!("terraform-provider-launch/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| format!("bad request URL: {e}"))?;
    let exchange = async {
        let response = http.request(request).await.map_err(|e| causes(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok::<_, String>(Reply {
            status,
            retry_after,
            body,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// An error and all its sources, `: `-separated.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
