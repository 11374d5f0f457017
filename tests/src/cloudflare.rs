//! A fake of Cloudflare's DNS records API (v4), the one hand-written fake the
//! e2e tests use, written from Cloudflare's public API documentation: it
//! serves `/client/v4/zones/:zone_id/dns_records` (list with `name`/`type`
//! filters and `page`/`per_page` paging reported in `result_info`, create,
//! get, PATCH, PUT, delete) in Cloudflare's envelope `{success, errors:
//! [{code, message}], messages, result, result_info}`, with the real error
//! codes (10000 authentication, 7003 unknown zone, 81044 no such record,
//! 81058 identical record, 9005/1004 bad content) and a bearer token check.
//!
//! Tests look at and change records out of band (as someone in the
//! dashboard would) and inject throttling (429 with `Retry-After`) or 5xx
//! answers. The wire is `fake_http`'s.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_http::{self, FakeServer, Request, Response};

/// One DNS record as the fake stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub record_type: String,
    pub content: String,
    pub proxied: bool,
    pub ttl: u64,
    pub comment: Option<String>,
    pub tags: Vec<String>,
}

impl Record {
    /// An A record as an operator would make it in the dashboard.
    pub fn a(name: &str, content: &str) -> Record {
        Record {
            id: String::new(),
            name: name.to_owned(),
            record_type: "A".to_owned(),
            content: content.to_owned(),
            proxied: false,
            ttl: 1,
            comment: None,
            tags: Vec::new(),
        }
    }

    fn to_json(&self, zone_id: &str, zone_name: &str) -> Value {
        json!({
            "id": self.id,
            "zone_id": zone_id,
            "zone_name": zone_name,
            "name": self.name,
            "type": self.record_type,
            "content": self.content,
            "proxiable": true,
            "proxied": self.proxied,
            "ttl": self.ttl,
            "comment": self.comment,
            "tags": self.tags,
            "meta": {},
            "settings": {},
            "created_on": "2026-01-01T00:00:00.000000Z",
            "modified_on": "2026-01-01T00:00:00.000000Z",
        })
    }
}

#[derive(Default)]
struct Shared {
    records: Mutex<BTreeMap<String, Record>>,
    next_id: AtomicU32,
    throttle_next: AtomicU32,
    retry_after_secs: AtomicU32,
    fail_next_5xx: AtomicU32,
    refuse_creates: AtomicBool,
    throttled: AtomicU32,
    failed_5xx: AtomicU32,
    unauthorized: AtomicU32,
    requests: Mutex<Vec<(Instant, String)>>,
    throttled_at: Mutex<Vec<Instant>>,
}

pub struct CloudflareFake {
    pub port: u16,
    pub token: String,
    pub zone_id: String,
    pub domain: String,
    shared: Arc<Shared>,
    _server: FakeServer,
}

impl CloudflareFake {
    /// A fake serving one zone `zone_id` for `domain`, accepting `token`.
    pub fn start(token: &str, zone_id: &str, domain: &str) -> CloudflareFake {
        let shared = Arc::new(Shared::default());
        let zone = Zone {
            token: token.to_owned(),
            zone_id: zone_id.to_owned(),
            domain: domain.to_owned(),
        };
        let sh = shared.clone();
        let server = FakeServer::start(move |request| {
            sh.requests.lock().unwrap().push((
                Instant::now(),
                format!("{} {}", request.method, request.target),
            ));
            let reply = answer(&request, &zone, &sh);
            let response = Response::json(reply.status, &reply.body);
            match reply.retry_after {
                Some(secs) => response.with_header("Retry-After", secs.to_string()),
                None => response,
            }
        });
        CloudflareFake {
            port: server.port,
            token: token.to_owned(),
            zone_id: zone_id.to_owned(),
            domain: domain.to_owned(),
            shared,
            _server: server,
        }
    }

    /// The `api_url` to give the provider.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/client/v4", self.port)
    }

    /// Every record, in id order.
    pub fn records(&self) -> Vec<Record> {
        self.shared
            .records
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    /// The records named `name` (any type).
    pub fn named(&self, name: &str) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.name.eq_ignore_ascii_case(name))
            .collect()
    }

    /// Adds a record out of band; returns its id.
    pub fn insert(&self, mut record: Record) -> String {
        record.id = new_id(&self.shared);
        let id = record.id.clone();
        self.shared
            .records
            .lock()
            .unwrap()
            .insert(id.clone(), record);
        id
    }

    /// Re-points a record out of band.
    pub fn set_content(&self, id: &str, content: &str) {
        let mut records = self.shared.records.lock().unwrap();
        let record = records.get_mut(id).expect("no such record in the fake");
        record.content = content.to_owned();
    }

    /// Deletes a record out of band.
    pub fn remove(&self, id: &str) {
        assert!(
            self.shared.records.lock().unwrap().remove(id).is_some(),
            "no record {id} in the fake"
        );
    }

    /// Answers the next `n` requests with 429 and `Retry-After: seconds`.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u32) {
        self.shared
            .retry_after_secs
            .store(retry_after_secs, Ordering::SeqCst);
        self.shared.throttle_next.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` requests with 503.
    pub fn fail_next(&self, n: u32) {
        self.shared.fail_next_5xx.store(n, Ordering::SeqCst);
    }

    /// Refuses every create (POST) with Cloudflare's validation error, so a
    /// test can make DNS fail after the instance is launched.
    pub fn refuse_creates(&self, on: bool) {
        self.shared.refuse_creates.store(on, Ordering::SeqCst);
    }

    /// How many requests were answered with 429.
    pub fn throttled(&self) -> u32 {
        self.shared.throttled.load(Ordering::SeqCst)
    }

    /// How many requests were answered with an injected 503.
    pub fn failed(&self) -> u32 {
        self.shared.failed_5xx.load(Ordering::SeqCst)
    }

    /// How many requests came without the right bearer token.
    pub fn unauthorized(&self) -> u32 {
        self.shared.unauthorized.load(Ordering::SeqCst)
    }

    /// `METHOD path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// For each 429 answered, how long until the next request arrived
    /// (`None` if none did): what a client honouring `Retry-After` waited.
    pub fn waits_after_throttling(&self) -> Vec<Option<Duration>> {
        let requests = self.shared.requests.lock().unwrap();
        self.shared
            .throttled_at
            .lock()
            .unwrap()
            .iter()
            .map(|at| {
                requests
                    .iter()
                    .map(|(t, _)| *t)
                    .find(|t| t > at)
                    .map(|t| t - *at)
            })
            .collect()
    }
}

struct Zone {
    token: String,
    zone_id: String,
    domain: String,
}

fn new_id(shared: &Shared) -> String {
    // Cloudflare's ids are 32 hex digits.
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst) + 1;
    format!("{:032x}", 0x5eed_0000_0000_u64 + u64::from(n))
}

struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<u32>,
}

fn ok(result: Value) -> Reply {
    Reply {
        status: 200,
        body: json!({"success": true, "errors": [], "messages": [], "result": result}),
        retry_after: None,
    }
}

fn error(status: u16, errors: &[(u64, &str)]) -> Reply {
    let errors: Vec<Value> = errors
        .iter()
        .map(|(code, message)| json!({"code": code, "message": message}))
        .collect();
    Reply {
        status,
        body: json!({"success": false, "errors": errors, "messages": [], "result": null}),
        retry_after: None,
    }
}

fn answer(request: &Request, zone: &Zone, shared: &Shared) -> Reply {
    let (method, headers, body) = (
        request.method.as_str(),
        &request.headers,
        request.body.as_slice(),
    );
    let take = |counter: &AtomicU32| {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    if take(&shared.throttle_next) {
        shared.throttled.fetch_add(1, Ordering::SeqCst);
        shared.throttled_at.lock().unwrap().push(Instant::now());
        let mut reply = error(
            429,
            &[(
                971,
                "Please wait and consider throttling your request speed",
            )],
        );
        reply.retry_after = Some(shared.retry_after_secs.load(Ordering::SeqCst));
        return reply;
    }
    if take(&shared.fail_next_5xx) {
        shared.failed_5xx.fetch_add(1, Ordering::SeqCst);
        return error(503, &[(10013, "Service temporarily unavailable")]);
    }
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == zone.token);
    if !authorized {
        shared.unauthorized.fetch_add(1, Ordering::SeqCst);
        return error(403, &[(10000, "Authentication error")]);
    }

    let (path, query) = (request.path(), request.query());
    let Some(rest) = path.strip_prefix("/client/v4/zones/") else {
        return error(404, &[(7000, "No route for that URI")]);
    };
    let mut segments = rest.split('/');
    let zone_id = segments.next().unwrap_or_default();
    if segments.next() != Some("dns_records") {
        return error(404, &[(7000, "No route for that URI")]);
    }
    if zone_id != zone.zone_id {
        return error(
            404,
            &[(
                7003,
                "Could not route to /zones/dns_records, perhaps your object identifier is invalid?",
            )],
        );
    }
    let record_id = segments.next().map(fake_http::decode);
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return error(400, &[(9207, "Request body is invalid.")]),
        }
    };
    let mut records = shared.records.lock().unwrap();
    let show = |r: &Record| r.to_json(&zone.zone_id, &zone.domain);
    match (method, record_id) {
        ("GET", None) => {
            let name = query.get("name").or_else(|| query.get("name.exact"));
            let record_type = query.get("type");
            let matching: Vec<&Record> = records
                .values()
                .filter(|r| name.is_none_or(|n| r.name.eq_ignore_ascii_case(n)))
                .filter(|r| record_type.is_none_or(|t| &r.record_type == t))
                .collect();
            let per_page: usize = query
                .get("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100)
                .clamp(5, 5000);
            let page: usize = query
                .get("page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
                .max(1);
            let total = matching.len();
            let total_pages = total.div_ceil(per_page).max(1);
            let items: Vec<Value> = matching
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|r| show(r))
                .collect();
            let mut reply = ok(Value::Array(items.clone()));
            reply.body["result_info"] = json!({
                "page": page,
                "per_page": per_page,
                "count": items.len(),
                "total_count": total,
                "total_pages": total_pages,
            });
            reply
        }
        ("POST", None) if shared.refuse_creates.load(Ordering::SeqCst) => error(
            400,
            &[
                (1004, "DNS Validation Error"),
                (9999, "Creates are refused by the test"),
            ],
        ),
        ("POST", None) => {
            let mut record = Record::a("", "");
            if let Err(reply) = apply_fields(&mut record, &body, true) {
                return reply;
            }
            if let Err(reply) = check(&record, zone) {
                return reply;
            }
            if records.values().any(|r| {
                r.name.eq_ignore_ascii_case(&record.name)
                    && r.record_type == record.record_type
                    && r.content == record.content
            }) {
                return error(400, &[(81058, "An identical record already exists.")]);
            }
            record.id = new_id(shared);
            let json = show(&record);
            records.insert(record.id.clone(), record);
            ok(json)
        }
        (method, Some(id)) => {
            let Some(existing) = records.get(&id).cloned() else {
                return error(404, &[(81044, "Record does not exist.")]);
            };
            match method {
                "GET" => ok(show(&existing)),
                "DELETE" => {
                    records.remove(&id);
                    ok(json!({"id": id}))
                }
                "PATCH" | "PUT" => {
                    // PUT overwrites the whole record; PATCH only what it sends.
                    let mut record = if method == "PUT" {
                        Record {
                            id: id.clone(),
                            ..Record::a("", "")
                        }
                    } else {
                        existing
                    };
                    if let Err(reply) = apply_fields(&mut record, &body, method == "PUT") {
                        return reply;
                    }
                    if let Err(reply) = check(&record, zone) {
                        return reply;
                    }
                    let json = show(&record);
                    records.insert(id, record);
                    ok(json)
                }
                _ => error(405, &[(10405, "Method not allowed")]),
            }
        }
        _ => error(405, &[(10405, "Method not allowed")]),
    }
}

/// Copies the fields a request body sets; `full` requires name, type, content.
fn apply_fields(record: &mut Record, body: &Value, full: bool) -> Result<(), Reply> {
    let Some(object) = body.as_object() else {
        return Err(error(400, &[(9207, "Request body is invalid.")]));
    };
    for (field, required) in [("name", 9007), ("type", 9008), ("content", 9009)] {
        match object.get(field).and_then(Value::as_str) {
            Some(value) => match field {
                "name" => record.name = value.to_owned(),
                "type" => record.record_type = value.to_owned(),
                _ => record.content = value.to_owned(),
            },
            None if full => {
                return Err(error(
                    400,
                    &[(required, &format!("DNS record {field} is required"))],
                ));
            }
            None => {}
        }
    }
    if let Some(proxied) = object.get("proxied").and_then(Value::as_bool) {
        record.proxied = proxied;
    }
    if let Some(ttl) = object.get("ttl").and_then(Value::as_u64) {
        record.ttl = ttl;
    }
    if let Some(comment) = object.get("comment") {
        record.comment = comment.as_str().map(str::to_owned);
    }
    if let Some(tags) = object.get("tags").and_then(Value::as_array) {
        record.tags = tags
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
    }
    Ok(())
}

/// Cloudflare's validation of what this fake supports.
fn check(record: &Record, zone: &Zone) -> Result<(), Reply> {
    let name = record.name.to_ascii_lowercase();
    if !(name == zone.domain || name.ends_with(&format!(".{}", zone.domain))) {
        return Err(error(
            400,
            &[
                (1004, "DNS Validation Error"),
                (9011, "Record name is not within the zone"),
            ],
        ));
    }
    if record.record_type == "A" && record.content.parse::<Ipv4Addr>().is_err() {
        return Err(error(
            400,
            &[
                (1004, "DNS Validation Error"),
                (9005, "Content for A record must be a valid IPv4 address."),
            ],
        ));
    }
    if record.ttl != 1 && !(30..=86400).contains(&record.ttl) {
        return Err(error(
            400,
            &[
                (1004, "DNS Validation Error"),
                (
                    9020,
                    "Invalid TTL. Must be between 30 and 86400 seconds, or 1 for Automatic.",
                ),
            ],
        ));
    }
    Ok(())
}
