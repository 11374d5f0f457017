//! Proxmox VE for `launch_service { target = "proxmox" }`: a small typed
//! client for the few `/api2/json` calls the provider makes (next free VMID,
//! LXC create/start/stop/destroy, config read and update, rootfs resize,
//! interfaces, cluster resources, task status and log) and [`Proxmox::wait_task`],
//! which follows a task's UPID to its end within a deadline.
//!
//! It is our own rather than the `proxmox-api` crate's types: that crate
//! ships no transport and treats a 200 whose `data` is null (what PVE answers
//! to a config PUT) as an error, and the handful of fields read here are
//! easier to keep right than a generated API. Like `cloudflare`, it rides on
//! the hyper 1 / rustls 0.23 (ring) stack the binary already links; with
//! `insecure = true` it accepts the self-signed certificate a fresh PVE node
//! has. Connection failures, 429 and 502/503/504 are retried with bounded
//! backoff; PVE's 500s are answers ("does not exist", "already running") and
//! are not. A task that ends other than `OK` becomes a [`ProxmoxError::Task`]
//! carrying its exit status and the tail of its log. The API token goes out
//! only in the `Authorization` header (marked sensitive) and is scrubbed from
//! every error text.

pub mod firewall;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;

use crate::http::{self, HttpClient};
use hyper::Method;
use serde::Deserialize;
use serde_json::Value as Json;
use tokio::time::Instant;

/// Attempts per call, the first included.
pub const MAX_ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a failed task's log put in the diagnostic.
pub const LOG_TAIL: usize = 20;

/// Where and how to reach Proxmox, resolved from the provider block and the
/// environment.
#[derive(Clone)]
pub struct Settings {
    /// `https://pve.example.com:8006`, without `/api2/json`.
    pub endpoint: String,
    /// `user@realm!tokenid=secret`.
    pub api_token: String,
    pub insecure: bool,
    pub ssh_user: String,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("api_token", &"(sensitive)")
            .field("insecure", &self.insecure)
            .field("ssh_user", &self.ssh_user)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxmoxError {
    #[error("Proxmox refused {op} (HTTP {status}): {message}. {hint}")]
    Api {
        op: String,
        status: u16,
        message: String,
        hint: String,
    },
    #[error(
        "cannot reach Proxmox at {url} for {op}: {detail}. Check proxmox.endpoint (PROXMOX_VE_ENDPOINT), that the node is up and port 8006 reachable, and with a self-signed certificate set proxmox {{ insecure = true }}"
    )]
    Transport {
        op: String,
        url: String,
        detail: String,
    },
    #[error("Proxmox answered {op} with something unexpected ({detail})")]
    Decode { op: String, detail: String },
    #[error("{last} (gave up after {attempts} attempts)")]
    Exhausted {
        attempts: u32,
        last: Box<ProxmoxError>,
    },
    #[error(
        "Proxmox task {upid} ({op}) failed with exit status {exit_status:?}; last lines of its log:\n{log_tail}"
    )]
    Task {
        op: String,
        upid: String,
        exit_status: String,
        log_tail: String,
    },
    #[error(
        "Proxmox task {upid} ({op}) was still running after {waited_secs}s; raise timeouts or look at the task in the Proxmox UI"
    )]
    TaskTimeout {
        op: String,
        upid: String,
        waited_secs: u64,
    },
    #[error("VMID {vmid} is already taken on the cluster: {message}")]
    VmidTaken { vmid: String, message: String },
    #[error("cannot set up HTTPS for Proxmox: {0}")]
    Tls(String),
    #[error(
        "proxmox.endpoint {0:?} is not an https:// URL: write the node's address, e.g. \"https://pve.example.com:8006\""
    )]
    BadUrl(String),
    #[error(
        "proxmox.api_token is not of the form user@realm!tokenid=secret (PROXMOX_VE_API_TOKEN): create one under Datacenter / Permissions / API Tokens"
    )]
    BadToken,
}

impl ProxmoxError {
    /// True when PVE says the guest does not exist (its 500 for a missing
    /// config file).
    pub fn is_missing_guest(&self) -> bool {
        match self {
            ProxmoxError::Api {
                status, message, ..
            } => {
                *status == 500
                    && (message.contains("does not exist") || message.contains("not exist"))
            }
            ProxmoxError::Exhausted { last, .. } => last.is_missing_guest(),
            _ => false,
        }
    }
}

fn hint(status: u16) -> String {
    match status {
        401 => "Check proxmox.api_token (PROXMOX_VE_API_TOKEN): user@realm!tokenid=secret of a token that exists".to_owned(),
        403 => "The API token lacks a privilege: give it VM.Allocate, VM.Config.*, VM.PowerMgmt, VM.Audit and Datastore.AllocateSpace (or uncheck Privilege Separation)".to_owned(),
        595 | 596 => "The node is unreachable from the API endpoint (offline, or not in the cluster): check proxmox.node and the cluster's health".to_owned(),
        400 => "Check the proxmox block (node, template, storage, bridge, ip) against what the cluster has".to_owned(),
        _ => "Look at the task list in the Proxmox UI for details".to_owned(),
    }
}

/// The delay before retry number `attempt` (1-based): 0.5 s, 1 s, 2 s, 4 s.
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

/// Percent-encodes a form or path value (everything but RFC 3986 unreserved).
pub fn encode(value: &str) -> String {
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

fn form(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The node a UPID ran on: `UPID:<node>:…`.
pub fn upid_node(upid: &str) -> Option<&str> {
    let mut parts = upid.split(':');
    (parts.next()? == "UPID").then_some(())?;
    parts.next().filter(|n| !n.is_empty())
}

/// One container as `/cluster/resources` lists it.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub vmid: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub tags: Option<String>,
}

/// Splits PVE's tag list (`;`, `,` or space separated).
pub fn split_tags(tags: &str) -> Vec<String> {
    tags.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Splits a property string such as `name=eth0,bridge=vmbr0,ip=dhcp`: the
/// bare first value (if any) and the `key=value` pairs.
pub fn split_props(text: &str) -> (Option<String>, BTreeMap<String, String>) {
    let mut first = None;
    let mut props = BTreeMap::new();
    for (n, part) in text.split(',').enumerate() {
        match part.split_once('=') {
            Some((k, v)) => {
                props.insert(k.to_owned(), v.to_owned());
            }
            None if n == 0 && !part.is_empty() => first = Some(part.to_owned()),
            None => {}
        }
    }
    (first, props)
}

/// A size such as `8G`, `512M` or `1T` in GiB, rounded up.
pub fn size_gib(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let value: f64 = number.parse().ok()?;
    let bytes = match unit {
        'K' => value * 1024.0,
        'M' => value * 1024.0 * 1024.0,
        'G' => value * 1024.0_f64.powi(3),
        'T' => value * 1024.0_f64.powi(4),
        'B' => value,
        _ => return None,
    };
    Some((bytes / 1024.0_f64.powi(3)).ceil() as u64)
}

/// The first IPv4 address of a container that is not loopback, from
/// `/lxc/{vmid}/interfaces`.
pub fn first_ipv4(interfaces: &Json) -> Option<String> {
    for iface in interfaces.as_array()? {
        if iface["name"] == "lo" {
            continue;
        }
        if let Some(addresses) = iface["ip-addresses"].as_array() {
            for a in addresses {
                if a["ip-address-type"] == "inet"
                    && let Some(ip) = a["ip-address"].as_str()
                    && !ip.starts_with("127.")
                {
                    return Some(ip.to_owned());
                }
            }
        }
        if let Some(cidr) = iface["inet"].as_str() {
            let ip = cidr.split('/').next().unwrap_or_default();
            if !ip.is_empty() && !ip.starts_with("127.") {
                return Some(ip.to_owned());
            }
        }
    }
    None
}

/// A Proxmox VE API client for one cluster (any node's endpoint).
pub struct Proxmox {
    http: HttpClient,
    base: String,
    token: String,
    pub ssh_user: String,
}

impl fmt::Debug for Proxmox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxmox")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Proxmox {
    pub fn new(settings: &Settings) -> Result<Proxmox, ProxmoxError> {
        let endpoint = settings.endpoint.trim().trim_end_matches('/');
        let endpoint = endpoint.strip_suffix("/api2/json").unwrap_or(endpoint);
        if !endpoint.starts_with("https://") {
            return Err(ProxmoxError::BadUrl(settings.endpoint.clone()));
        }
        let token = settings.api_token.trim();
        match token.split_once('=') {
            Some((id, secret)) if id.contains('@') && id.contains('!') && !secret.is_empty() => {}
            _ => return Err(ProxmoxError::BadToken),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxmoxError::Tls(e.to_string()))?;
        let tls = if settings.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs();
            for cert in found {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ProxmoxError::Tls(
                    "no system CA certificates found: install ca-certificates, or set proxmox { insecure = true } for a self-signed node".to_owned(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let http = http::client(https);
        Ok(Proxmox {
            http,
            base: format!("{endpoint}/api2/json"),
            token: token.to_owned(),
            ssh_user: settings.ssh_user.clone(),
        })
    }

    fn scrub(&self, text: &str) -> String {
        match self.token.split_once('=') {
            Some((_, secret)) if !secret.is_empty() => text.replace(secret, "(sensitive)"),
            _ => text.to_owned(),
        }
    }

    /// One API call: PVE's `data`, which may be null.
    async fn call(
        &self,
        op: &str,
        method: Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Json, ProxmoxError> {
        let (url, body) = if method == Method::GET || method == Method::DELETE {
            let query = form(params);
            let sep = if query.is_empty() { "" } else { "?" };
            (format!("{}{path}{sep}{query}", self.base), Bytes::new())
        } else {
            (format!("{}{path}", self.base), Bytes::from(form(params)))
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.send(&method, &url, body.clone()).await {
                Ok((status, bytes)) => {
                    let retryable = matches!(status, 429 | 502 | 503 | 504);
                    match decode(op, status, &bytes) {
                        Ok(data) => return Ok(data),
                        Err(e) if !retryable => return Err(e),
                        Err(e) => e,
                    }
                }
                Err(detail) => ProxmoxError::Transport {
                    op: op.to_owned(),
                    url: url.clone(),
                    detail: self.scrub(&detail),
                },
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(ProxmoxError::Exhausted {
                    attempts: attempt,
                    last: Box::new(error),
                });
            }
            let delay = backoff(attempt);
            tracing::debug!(%method, path, attempt, delay_ms = delay.as_millis() as u64, error = %error, "retrying a Proxmox call");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send(&self, method: &Method, url: &str, body: Bytes) -> Result<(u16, Bytes), String> {
        tracing::debug!(%method, url, "Proxmox request");
        let auth = format!("PVEAPIToken={}", self.token);
        let content = "application/x-www-form-urlencoded";
        let reply = http::send(
            &self.http,
            method,
            url,
            auth,
            content,
            body,
            REQUEST_TIMEOUT,
        )
        .await?;
        Ok((reply.status, reply.body))
    }

    /// `GET /cluster/nextid`: the lowest free VMID.
    pub async fn next_id(&self) -> Result<i64, ProxmoxError> {
        let op = "finding a free VMID";
        let data = self.call(op, Method::GET, "/cluster/nextid", &[]).await?;
        data.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| data.as_i64())
            .ok_or_else(|| ProxmoxError::Decode {
                op: op.to_owned(),
                detail: format!("nextid is {data}"),
            })
    }

    fn upid(op: &str, data: Json) -> Result<String, ProxmoxError> {
        match data.as_str() {
            Some(upid) if upid.starts_with("UPID:") => Ok(upid.to_owned()),
            _ => Err(ProxmoxError::Decode {
                op: op.to_owned(),
                detail: format!("expected a task UPID, got {data}"),
            }),
        }
    }

    /// `POST /nodes/{node}/lxc`: starts the create task.
    pub async fn create_lxc(
        &self,
        node: &str,
        params: &[(&str, String)],
    ) -> Result<String, ProxmoxError> {
        let op = format!("creating a container on node {node}");
        let data = self
            .call(
                &op,
                Method::POST,
                &format!("/nodes/{}/lxc", encode(node)),
                params,
            )
            .await
            .map_err(|e| match e {
                // PVE says so only in words: "CT 105 already exists on node …".
                ProxmoxError::Api { message, .. } if message.contains("already exists") => {
                    let vmid = params
                        .iter()
                        .find(|(k, _)| *k == "vmid")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    ProxmoxError::VmidTaken { vmid, message }
                }
                other => other,
            })?;
        Self::upid(&op, data)
    }

    /// `POST /nodes/{node}/lxc/{vmid}/status/{start|stop}`.
    pub async fn power(&self, node: &str, vmid: i64, action: &str) -> Result<String, ProxmoxError> {
        let op = format!("{action} of container {vmid} on {node}");
        let data = self
            .call(
                &op,
                Method::POST,
                &format!("/nodes/{}/lxc/{vmid}/status/{action}", encode(node)),
                &[],
            )
            .await?;
        Self::upid(&op, data)
    }

    /// `GET /nodes/{node}/lxc/{vmid}/status/current`; `None` when the
    /// container does not exist.
    pub async fn status(&self, node: &str, vmid: i64) -> Result<Option<Json>, ProxmoxError> {
        let op = format!("reading container {vmid} on {node}");
        match self
            .call(
                &op,
                Method::GET,
                &format!("/nodes/{}/lxc/{vmid}/status/current", encode(node)),
                &[],
            )
            .await
        {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.is_missing_guest() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config`.
    pub async fn config(
        &self,
        node: &str,
        vmid: i64,
    ) -> Result<serde_json::Map<String, Json>, ProxmoxError> {
        let op = format!("reading the config of container {vmid} on {node}");
        let data = self
            .call(
                &op,
                Method::GET,
                &format!("/nodes/{}/lxc/{vmid}/config", encode(node)),
                &[],
            )
            .await?;
        match data {
            Json::Object(map) => Ok(map),
            other => Err(ProxmoxError::Decode {
                op,
                detail: format!("expected an object, got {other}"),
            }),
        }
    }

    /// `PUT /nodes/{node}/lxc/{vmid}/config`. PVE answers `data: null`.
    pub async fn set_config(
        &self,
        node: &str,
        vmid: i64,
        params: &[(&str, String)],
    ) -> Result<(), ProxmoxError> {
        let op = format!("changing the config of container {vmid} on {node}");
        self.call(
            &op,
            Method::PUT,
            &format!("/nodes/{}/lxc/{vmid}/config", encode(node)),
            params,
        )
        .await
        .map(|_| ())
    }

    /// `PUT /nodes/{node}/lxc/{vmid}/resize`: grows `rootfs` to `gib`.
    /// Returns the task's UPID when PVE runs it as one (PVE ≥ 6), else `None`.
    pub async fn grow_rootfs(
        &self,
        node: &str,
        vmid: i64,
        gib: u64,
    ) -> Result<Option<String>, ProxmoxError> {
        let op = format!("growing the disk of container {vmid} on {node} to {gib}G");
        let data = self
            .call(
                &op,
                Method::PUT,
                &format!("/nodes/{}/lxc/{vmid}/resize", encode(node)),
                &[("disk", "rootfs".to_owned()), ("size", format!("{gib}G"))],
            )
            .await?;
        Ok(data
            .as_str()
            .filter(|s| s.starts_with("UPID:"))
            .map(str::to_owned))
    }

    /// `GET /nodes/{node}/lxc/{vmid}/interfaces` (null while stopped).
    pub async fn interfaces(&self, node: &str, vmid: i64) -> Result<Json, ProxmoxError> {
        let op = format!("reading the interfaces of container {vmid} on {node}");
        self.call(
            &op,
            Method::GET,
            &format!("/nodes/{}/lxc/{vmid}/interfaces", encode(node)),
            &[],
        )
        .await
    }

    /// `DELETE /nodes/{node}/lxc/{vmid}?purge=1&destroy-unreferenced-disks=1`.
    pub async fn destroy(&self, node: &str, vmid: i64) -> Result<String, ProxmoxError> {
        let op = format!("destroying container {vmid} on {node}");
        let data = self
            .call(
                &op,
                Method::DELETE,
                &format!("/nodes/{}/lxc/{vmid}", encode(node)),
                &[
                    ("purge", "1".to_owned()),
                    ("destroy-unreferenced-disks", "1".to_owned()),
                ],
            )
            .await?;
        Self::upid(&op, data)
    }

    /// `GET /cluster/resources?type=vm`, containers only.
    pub async fn containers(&self) -> Result<Vec<Resource>, ProxmoxError> {
        let op = "listing the cluster's guests";
        let data = self
            .call(
                op,
                Method::GET,
                "/cluster/resources",
                &[("type", "vm".to_owned())],
            )
            .await?;
        let all: Vec<Resource> =
            serde_json::from_value(data).map_err(|e| ProxmoxError::Decode {
                op: op.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(all.into_iter().filter(|r| r.kind == "lxc").collect())
    }

    /// Follows a task until it stops, at most until `deadline`. A task whose
    /// exit status is not `OK` (or PVE's `WARNINGS: n`) is an error with the
    /// tail of its log.
    pub async fn wait_task(
        &self,
        op: &str,
        upid: &str,
        deadline: Instant,
    ) -> Result<(), ProxmoxError> {
        let node = upid_node(upid).ok_or_else(|| ProxmoxError::Decode {
            op: op.to_owned(),
            detail: format!("{upid} is not a UPID"),
        })?;
        let path = format!("/nodes/{}/tasks/{}", encode(node), encode(upid));
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let status = self
                .call(op, Method::GET, &format!("{path}/status"), &[])
                .await?;
            if status["status"] == "stopped" {
                let exit = status["exitstatus"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned();
                if exit == "OK" || exit.starts_with("WARNINGS") {
                    return Ok(());
                }
                let log = self
                    .call(
                        op,
                        Method::GET,
                        &format!("{path}/log"),
                        &[("start", "0".to_owned()), ("limit", "5000".to_owned())],
                    )
                    .await
                    .unwrap_or(Json::Null);
                let lines: Vec<String> = log
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|line| line["t"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let tail = lines[lines.len().saturating_sub(LOG_TAIL)..]
                    .iter()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(ProxmoxError::Task {
                    op: op.to_owned(),
                    upid: upid.to_owned(),
                    exit_status: exit,
                    log_tail: if tail.is_empty() {
                        "  (no log)".to_owned()
                    } else {
                        tail
                    },
                });
            }
            if Instant::now() + delay > deadline {
                return Err(ProxmoxError::TaskTimeout {
                    op: op.to_owned(),
                    upid: upid.to_owned(),
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// PVE's envelope: `{"data": …}` on success; `message` and per-field
/// `errors` otherwise.
fn decode(op: &str, status: u16, bytes: &[u8]) -> Result<Json, ProxmoxError> {
    let body: Json = serde_json::from_slice(bytes).unwrap_or(Json::Null);
    if (200..300).contains(&status) {
        return match body {
            Json::Object(mut map) => Ok(map.remove("data").unwrap_or(Json::Null)),
            // PVE always wraps; an empty 200 is taken as "no data".
            Json::Null if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Json::Null),
            _ => Err(ProxmoxError::Decode {
                op: op.to_owned(),
                detail: format!(
                    "HTTP {status} without PVE's {{\"data\": …}} envelope: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            }),
        };
    }
    let mut message = body["message"]
        .as_str()
        .map(|m| m.trim().to_owned())
        .unwrap_or_default();
    if let Some(errors) = body["errors"].as_object() {
        let fields: Vec<String> = errors
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default().trim()))
            .collect();
        if !fields.is_empty() {
            message = format!("{message} ({})", fields.join("; "));
        }
    }
    if message.is_empty() {
        message = String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            .trim()
            .to_owned();
    }
    Err(ProxmoxError::Api {
        op: op.to_owned(),
        status,
        message: message.trim_end_matches('.').to_owned(),
        hint: hint(status),
    })
}

/// The system's CA certificates (Debian's `ca-certificates` bundle).
fn rustls_native_certs() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(pem) = std::fs::read(path) {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            if !certs.is_empty() {
                return certs;
            }
        }
    }
    Vec::new()
}

/// `insecure = true`: any certificate is accepted (signatures are still
/// checked), as a fresh PVE node's self-signed one must be.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_data_200_is_success_and_errors_carry_pve_messages() {
        assert_eq!(decode("x", 200, br#"{"data":null}"#).unwrap(), Json::Null);
        assert_eq!(decode("x", 200, b"").unwrap(), Json::Null);
        let err = decode(
            "x",
            400,
            br#"{"data":null,"message":"Parameter verification failed.\n","errors":{"cores":"value must be at least 1"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cores: value must be at least 1"), "{err}");
        let missing = decode(
            "x",
            500,
            br#"{"data":null,"message":"Configuration file 'nodes/pve1/lxc/100.conf' does not exist\n"}"#,
        )
        .unwrap_err();
        assert!(missing.is_missing_guest());
        let offline = decode("x", 595, br#"{"data":null,"message":"No route to host\n"}"#)
            .unwrap_err()
            .to_string();
        assert!(offline.contains("unreachable"), "{offline}");
    }

    #[test]
    fn upids_sizes_props_and_interfaces_parse() {
        assert_eq!(
            upid_node("UPID:pve1:00001234:00005678:65000000:vzcreate:100:root@pam:"),
            Some("pve1")
        );
        assert_eq!(upid_node("nope"), None);
        assert_eq!(size_gib("8G"), Some(8));
        assert_eq!(size_gib("512M"), Some(1));
        assert_eq!(size_gib("1T"), Some(1024));
        let (first, props) = split_props("local-lvm:vm-100-disk-0,size=8G");
        assert_eq!(first.as_deref(), Some("local-lvm:vm-100-disk-0"));
        assert_eq!(props["size"], "8G");
        assert_eq!(split_tags("launch;hello;prod"), ["launch", "hello", "prod"]);
        let ifaces = serde_json::json!([
            {"name": "lo", "inet": "127.0.0.1/8"},
            {"name": "eth0", "ip-addresses": [
                {"ip-address-type": "inet6", "ip-address": "fe80::1"},
                {"ip-address-type": "inet", "ip-address": "10.0.0.7", "prefix": "24"}]}
        ]);
        assert_eq!(first_ipv4(&ifaces).as_deref(), Some("10.0.0.7"));
        assert_eq!(first_ipv4(&Json::Null), None);
        assert_eq!(
            form(&[("net0", "name=eth0,ip=dhcp".to_owned())]),
            "net0=name%3Deth0%2Cip%3Ddhcp"
        );
    }
}
