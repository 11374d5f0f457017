//! Cloudflare DNS for `launch_service { public = true }`: a small typed client
//! for the handful of `zones/:zone_id/dns_records` calls the provider makes
//! (list by name and type, get, create, PATCH, delete), and [`Cloudflare::ensure`],
//! which makes one A record say what the resource wants without taking over a
//! record someone else made unless told to.
//!
//! It exists instead of a general SDK so the plugin stays small: it rides on
//! the hyper 1 / rustls 0.23 (ring) stack the binary already links. It reads
//! Cloudflare's envelope (`success`, `errors[{code, message}]`, `result`,
//! `result_info`), retries 429 (honouring `Retry-After`), 5xx and connection
//! failures with bounded exponential backoff, and turns everything else into
//! a [`CloudflareError`] that says what to do. The API token goes out only in
//! the `Authorization` header (marked sensitive); it is never logged and is
//! scrubbed from every error text.

use std::fmt;
use std::time::Duration;

use hyper::body::Bytes;

use crate::http::{self, HttpClient};
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// The comment on every record this provider creates.
pub const MANAGED_COMMENT: &str = "managed by launch";
/// Attempts per call, the first included.
pub const MAX_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A `Retry-After` longer than this is cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const PER_PAGE: u32 = 100;
/// Cloudflare's "a record with that name already exists" family.
const CODES_RECORD_EXISTS: &[u64] = &[81053, 81057, 81058];

/// Where and how to reach Cloudflare, resolved from the provider block and
/// the environment.
#[derive(Clone)]
pub struct Settings {
    pub api_url: String,
    pub api_token: String,
    pub zone_id: String,
    pub domain: String,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("api_url", &self.api_url)
            .field("api_token", &"(sensitive)")
            .field("zone_id", &self.zone_id)
            .field("domain", &self.domain)
            .finish()
    }
}

/// One error or message from Cloudflare's envelope. Codes go well past
/// 65535 (e.g. 81057), hence `u64`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct ApiMessage {
    #[serde(default)]
    pub code: u64,
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize, Clone, Debug, Default)]
struct ResultInfo {
    #[serde(default)]
    total_pages: Option<u32>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    per_page: Option<u32>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

/// A DNS record as Cloudflare returns it (the fields this provider reads).
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct DnsRecord {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub content: String,
    #[serde(default)]
    pub proxied: bool,
    #[serde(default)]
    pub ttl: u32,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What a record should be. Comment and tags are set on create only, so an
/// update (PATCH) keeps whatever an operator put there.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RecordSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub content: String,
    pub proxied: bool,
    pub ttl: u32,
}

impl DnsRecord {
    pub fn matches(&self, spec: &RecordSpec) -> bool {
        self.name.eq_ignore_ascii_case(&spec.name)
            && self.record_type == spec.record_type
            && self.content == spec.content
            && self.proxied == spec.proxied
            && self.ttl == spec.ttl
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloudflareError {
    #[error("Cloudflare refused {op} (HTTP {status}): {}. {hint}", describe(.errors))]
    Api {
        op: String,
        status: u16,
        errors: Vec<ApiMessage>,
        hint: String,
    },
    #[error(
        "cannot reach Cloudflare at {url} for {op}: {detail}. Check api_url (CLOUDFLARE_API_URL) and the network, then run again"
    )]
    Transport {
        op: String,
        url: String,
        detail: String,
    },
    #[error(
        "Cloudflare answered {op} with something other than its API v4 envelope ({detail}). Check that api_url points at https://api.cloudflare.com/client/v4 or a compatible API"
    )]
    Decode { op: String, detail: String },
    #[error("{last} (gave up after {attempts} attempts)")]
    Exhausted {
        attempts: u32,
        last: Box<CloudflareError>,
    },
    #[error(
        "a DNS record named {name} already exists ({found}) and this launch_service did not create it. Set dns {{ allow_overwrite = true }} to take it over (its comment and tags are kept), delete it in Cloudflare, or pick another name or environment"
    )]
    Taken { name: String, found: String },
    #[error(
        "cannot set up HTTPS for Cloudflare: {0}. Install the system CA certificates (Debian: the ca-certificates package)"
    )]
    Tls(String),
    #[error(
        "api_url {0:?} is not an http:// or https:// URL: use https://api.cloudflare.com/client/v4 (the default) or leave it unset"
    )]
    BadUrl(String),
}

impl CloudflareError {
    /// Cloudflare's error codes, if the error came from the API.
    pub fn codes(&self) -> Vec<u64> {
        match self {
            CloudflareError::Api { errors, .. } => errors.iter().map(|e| e.code).collect(),
            CloudflareError::Exhausted { last, .. } => last.codes(),
            _ => Vec::new(),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            CloudflareError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn describe(errors: &[ApiMessage]) -> String {
    if errors.is_empty() {
        return "no error details".to_owned();
    }
    errors
        .iter()
        .map(|e| format!("[{}] {}", e.code, e.message.trim_end_matches('.')))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What to do about a refusal, from the status and Cloudflare's codes.
fn hint(status: u16, errors: &[ApiMessage], zone_id: &str) -> String {
    let codes: Vec<u64> = errors.iter().map(|e| e.code).collect();
    let has = |c: &[u64]| codes.iter().any(|code| c.contains(code));
    if status == 401 || status == 403 || has(&[9103, 9106, 9109, 10000]) {
        format!(
            "Check api_token (CLOUDFLARE_API_TOKEN): it must be a valid API token with the Zone / DNS / Edit permission on zone {zone_id}"
        )
    } else if has(&[7000, 7003, 1001]) || status == 404 {
        format!(
            "Check zone_id (CLOUDFLARE_ZONE_ID): {zone_id} must be the ID shown on the zone's overview page in the Cloudflare dashboard"
        )
    } else if has(CODES_RECORD_EXISTS) {
        "Another record already uses this name: remove it in Cloudflare, or set dns { allow_overwrite = true } to take it over".to_owned()
    } else if status == 429 || status >= 500 {
        "Cloudflare is rate limiting or failing: run terraform again later".to_owned()
    } else {
        "Check the dns block (proxied, ttl) and domain against Cloudflare's rules for DNS records"
            .to_owned()
    }
}

/// The delay before retry number `attempt` (1-based): 0.5 s, 1 s, 2 s, … ≤ 8 s.
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

/// `Retry-After` as seconds (Cloudflare sends seconds), capped.
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    let seconds: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The record name for a service: `<name>.<domain>` in `prod`,
/// `<name>-<environment>.<domain>` elsewhere.
pub fn record_name(service: &str, environment: &str, domain: &str) -> String {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if environment == "prod" {
        format!("{service}.{domain}")
    } else {
        format!("{service}-{environment}.{domain}")
    }
}

/// A Cloudflare API client for one zone.
pub struct Cloudflare {
    http: HttpClient,
    base: String,
    token: String,
    zone_id: String,
    domain: String,
}

impl fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloudflare")
            .field("base", &self.base)
            .field("zone_id", &self.zone_id)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Cloudflare {
    pub fn new(settings: &Settings) -> Result<Cloudflare, CloudflareError> {
        let base = settings.api_url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(CloudflareError::BadUrl(settings.api_url.clone()));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| CloudflareError::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = http::client(https);
        Ok(Cloudflare {
            http,
            base,
            token: settings.api_token.clone(),
            zone_id: settings.zone_id.clone(),
            domain: settings
                .domain
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        })
    }

    /// Every record of `record_type` named exactly `name`, all pages.
    pub async fn list(
        &self,
        name: &str,
        record_type: &str,
    ) -> Result<Vec<DnsRecord>, CloudflareError> {
        let mut records = Vec::new();
        let mut page = 1u32;
        loop {
            let path = format!(
                "/zones/{}/dns_records?name={}&type={}&page={page}&per_page={PER_PAGE}",
                self.zone_id,
                encode(name),
                encode(record_type)
            );
            let op = format!("listing {record_type} records named {name}");
            let (batch, info): (Vec<DnsRecord>, _) =
                self.call(&op, Method::GET, &path, None).await?;
            let got = batch.len() as u32;
            records.extend(batch);
            let info = info.unwrap_or_default();
            let more = match info.total_pages {
                Some(total) => page < total,
                // Without total_pages, a full page may be followed by more.
                None => got >= info.per_page.unwrap_or(PER_PAGE) && info.count != Some(0),
            };
            if !more || got == 0 || page >= 1000 {
                break;
            }
            page += 1;
        }
        Ok(records)
    }

    /// The record with this id, or `None` if Cloudflare has no such record.
    pub async fn get(&self, id: &str) -> Result<Option<DnsRecord>, CloudflareError> {
        let path = format!("/zones/{}/dns_records/{}", self.zone_id, encode(id));
        match self
            .call(
                &format!("reading DNS record {id}"),
                Method::GET,
                &path,
                None,
            )
            .await
        {
            Ok((record, _)) => Ok(Some(record)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the record with the `managed by launch` comment.
    pub async fn create(&self, spec: &RecordSpec) -> Result<DnsRecord, CloudflareError> {
        let mut body = serde_json::to_value(spec).expect("a record spec is JSON");
        body["comment"] = MANAGED_COMMENT.into();
        let path = format!("/zones/{}/dns_records", self.zone_id);
        let op = format!("creating the {} record {}", spec.record_type, spec.name);
        self.call(&op, Method::POST, &path, Some(body))
            .await
            .map(|(record, _)| record)
    }

    /// Points an existing record at `spec` with PATCH, which leaves the
    /// fields it does not send (comment, tags) as they are.
    pub async fn update(&self, id: &str, spec: &RecordSpec) -> Result<DnsRecord, CloudflareError> {
        let body = serde_json::to_value(spec).expect("a record spec is JSON");
        let path = format!("/zones/{}/dns_records/{}", self.zone_id, encode(id));
        let op = format!("updating DNS record {id} ({})", spec.name);
        self.call(&op, Method::PATCH, &path, Some(body))
            .await
            .map(|(record, _)| record)
    }

    /// Deletes the record; `false` if it was already gone.
    pub async fn delete(&self, id: &str) -> Result<bool, CloudflareError> {
        let path = format!("/zones/{}/dns_records/{}", self.zone_id, encode(id));
        match self
            .call::<serde_json::Value>(
                &format!("deleting DNS record {id}"),
                Method::DELETE,
                &path,
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes one record match `spec`: the one with `known_id` if it still
    /// exists (renamed or re-pointed as needed), else a new one. A record
    /// of the same name and type made by someone else is an error unless
    /// `allow_overwrite`, in which case it is adopted and any further
    /// same-name records of that type are deleted, so the name resolves
    /// only to this service.
    pub async fn ensure(
        &self,
        spec: &RecordSpec,
        known_id: Option<&str>,
        allow_overwrite: bool,
    ) -> Result<DnsRecord, CloudflareError> {
        if let Some(id) = known_id
            && let Some(record) = self.get(id).await?
        {
            if record.matches(spec) {
                return Ok(record);
            }
            tracing::info!(record_id = %id, name = %spec.name, "DNS record drifted: updating it");
            return self.update(id, spec).await;
        }
        let existing = self.list(&spec.name, &spec.record_type).await?;
        if let Some((first, rest)) = existing.split_first() {
            if !allow_overwrite {
                return Err(taken(&spec.name, &existing));
            }
            tracing::info!(record_id = %first.id, name = %spec.name, "adopting an existing DNS record (allow_overwrite)");
            for extra in rest {
                self.delete(&extra.id).await?;
            }
            return if first.matches(spec) {
                Ok(first.clone())
            } else {
                self.update(&first.id, spec).await
            };
        }
        match self.create(spec).await {
            Ok(record) => Ok(record),
            // A create retried after a lost answer may meet its own first
            // attempt: an identical record with our comment is ours.
            Err(e) if e.codes().iter().any(|c| CODES_RECORD_EXISTS.contains(c)) => {
                let again = self.list(&spec.name, &spec.record_type).await?;
                match again
                    .into_iter()
                    .find(|r| r.matches(spec) && r.comment.as_deref() == Some(MANAGED_COMMENT))
                {
                    Some(record) => Ok(record),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Fails with [`CloudflareError::Taken`] if a record of this name and
    /// type exists: checked before an instance is launched, so a name
    /// conflict costs no instance.
    pub async fn check_free(&self, name: &str, record_type: &str) -> Result<(), CloudflareError> {
        let existing = self.list(name, record_type).await?;
        if existing.is_empty() {
            Ok(())
        } else {
            Err(taken(name, &existing))
        }
    }

    fn scrub(&self, text: &str) -> String {
        if self.token.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.token, "(api_token)")
        }
    }

    /// One API call with retries; returns `result` and `result_info`.
    async fn call<T: DeserializeOwned>(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(T, Option<ResultInfo>), CloudflareError> {
        let url = format!("{}{}", self.base, path);
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (error, delay) = match self.send(&method, &url, body.clone()).await {
                Ok((status, retry_after_header, bytes)) => {
                    let retryable = status == 429 || status >= 500;
                    match self.decode::<T>(op, status, &bytes) {
                        Ok(ok) if !retryable => return Ok(ok),
                        Ok(_) => unreachable!("decode refuses non-2xx statuses"),
                        Err(e) if !retryable => return Err(e),
                        Err(e) => {
                            let delay = if status == 429 {
                                retry_after(retry_after_header.as_deref())
                                    .unwrap_or_else(|| backoff(attempt))
                            } else {
                                backoff(attempt)
                            };
                            (e, delay)
                        }
                    }
                }
                Err(detail) => (
                    CloudflareError::Transport {
                        op: op.to_owned(),
                        url: url.clone(),
                        detail: self.scrub(&detail),
                    },
                    backoff(attempt),
                ),
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(CloudflareError::Exhausted {
                    attempts: attempt,
                    last: Box::new(error),
                });
            }
            tracing::debug!(%method, path, attempt, delay_ms = delay.as_millis() as u64, error = %error, "retrying a Cloudflare call");
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends one request: status, `Retry-After` and the body, or why not.
    async fn send(
        &self,
        method: &Method,
        url: &str,
        body: Bytes,
    ) -> Result<(u16, Option<String>, Bytes), String> {
        tracing::debug!(%method, url, "Cloudflare request");
        let auth = format!("Bearer {}", self.token);
        let reply = http::send(
            &self.http,
            method,
            url,
            auth,
            "application/json",
            body,
            REQUEST_TIMEOUT,
        )
        .await?;
        Ok((reply.status, reply.retry_after, reply.body))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        op: &str,
        status: u16,
        bytes: &[u8],
    ) -> Result<(T, Option<ResultInfo>), CloudflareError> {
        let envelope: Result<Envelope<serde_json::Value>, _> = serde_json::from_slice(bytes);
        let ok_status = (200..300).contains(&status);
        let envelope = match envelope {
            Ok(envelope) => envelope,
            Err(e) if ok_status => {
                return Err(CloudflareError::Decode {
                    op: op.to_owned(),
                    detail: format!("HTTP {status}, {e}"),
                });
            }
            // An error page that is not the envelope (e.g. from a proxy).
            Err(_) => Envelope {
                success: false,
                errors: Vec::new(),
                result: None,
                result_info: None,
            },
        };
        if !ok_status || !envelope.success {
            let errors: Vec<ApiMessage> = envelope
                .errors
                .into_iter()
                .map(|e| ApiMessage {
                    code: e.code,
                    message: self.scrub(&e.message),
                })
                .collect();
            return Err(CloudflareError::Api {
                op: op.to_owned(),
                status,
                hint: hint(status, &errors, &self.zone_id),
                errors,
            });
        }
        let result = envelope.result.unwrap_or(serde_json::Value::Null);
        let typed = serde_json::from_value(result).map_err(|e| CloudflareError::Decode {
            op: op.to_owned(),
            detail: e.to_string(),
        })?;
        Ok((typed, envelope.result_info))
    }
}

fn taken(name: &str, existing: &[DnsRecord]) -> CloudflareError {
    let found = existing
        .iter()
        .map(|r| format!("{} → {}, id {}", r.record_type, r.content, r.id))
        .collect::<Vec<_>>()
        .join("; ");
    CloudflareError::Taken {
        name: name.to_owned(),
        found,
    }
}

/// A 404, or Cloudflare's "record does not exist" (81044), on a record call.
fn is_missing(error: &CloudflareError) -> bool {
    error.status() == Some(404) || error.codes().contains(&81044)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Cloudflare {
        Cloudflare::new(&Settings {
            api_url: "http://127.0.0.1:9/client/v4/".into(),
            api_token: "tok-123".into(),
            zone_id: "zone".into(),
            domain: "Example.com.".into(),
        })
        .unwrap()
    }

    #[test]
    fn error_codes_above_u16_parse_and_are_reported_with_a_hint() {
        let body = br#"{"success":false,"errors":[{"code":81058,"message":"An identical record already exists."}],"messages":[],"result":null}"#;
        let err = client()
            .decode::<DnsRecord>("creating", 400, body)
            .unwrap_err();
        assert_eq!(err.codes(), vec![81058]);
        let text = err.to_string();
        assert!(
            text.contains("[81058] An identical record already exists"),
            "{text}"
        );
        assert!(text.contains("allow_overwrite"), "{text}");
    }

    #[test]
    fn auth_failures_say_which_permission_and_never_echo_the_token() {
        let body = br#"{"success":false,"errors":[{"code":10000,"message":"Authentication error for tok-123"}]}"#;
        let text = client()
            .decode::<DnsRecord>("listing", 403, body)
            .unwrap_err()
            .to_string();
        assert!(text.contains("Zone / DNS / Edit"), "{text}");
        assert!(!text.contains("tok-123"), "{text}");
    }

    #[test]
    fn a_successful_envelope_yields_the_result_and_paging() {
        let body = br#"{"success":true,"errors":[],"messages":[],"result":[{"id":"r1","name":"a.example.com","type":"A","content":"10.0.0.1","proxied":false,"ttl":1,"comment":null,"tags":[]}],"result_info":{"page":1,"per_page":100,"count":1,"total_count":1,"total_pages":1}}"#;
        let (records, info) = client()
            .decode::<Vec<DnsRecord>>("listing", 200, body)
            .unwrap();
        assert_eq!(records[0].content, "10.0.0.1");
        assert_eq!(info.unwrap().total_pages, Some(1));
        let garbage = client().decode::<Vec<DnsRecord>>("listing", 200, b"<html>");
        assert!(matches!(garbage, Err(CloudflareError::Decode { .. })));
    }

    #[test]
    fn backoff_doubles_and_is_bounded_and_retry_after_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(30), MAX_BACKOFF);
        assert_eq!(retry_after(Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(Some("86400")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(Some("soon")), None);
    }

    #[test]
    fn record_names_leave_prod_out_and_normalise_the_domain() {
        assert_eq!(
            record_name("web", "prod", "Example.com."),
            "web.example.com"
        );
        assert_eq!(
            record_name("web", "staging", "example.com"),
            "web-staging.example.com"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
