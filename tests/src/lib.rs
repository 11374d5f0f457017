//! The end-to-end harness: it starts the real `launch` and `launch-agent`
//! binaries against the real Docker engine, in temp directories, on free
//! ports, with unique service names, and cleans everything up on drop, so the
//! scenario tests in `tests/tests.rs` can run in parallel under nextest.
//!
//! # Layout
//! - [`binaries`]: where the built binaries are (`LAUNCH_BIN_DIR` or `target/debug`).
//! - [`process`]: a child process whose output lines are captured and waited on, killed on drop.
//! - [`poll`]: waiting for a condition until a deadline, reporting the last state seen.
//! - [`server`]: a `launch server` on a free port with its own data dir.
//! - [`bench`]: what the wire benchmarks share: a tiny bundle, log batches, percentiles, a process's RSS and CPU time.
//! - [`dashboard`]: a dashboard login and a mission's log stream read as a browser reads it, for benches.
//! - [`agent`]: a `launch-agent` registered with a fresh join token.
//! - [`cli`]: running `launch` commands against a server.
//! - [`service`]: a copy of `examples/quickstart` with a unique name and a free port.
//! - [`docker`]: removing a compose project's containers, networks and images.
//! - [`grpc`]: tonic clients and authenticated requests, for acting as an agent.
//! - [`http`]: a tiny HTTP/1.0 GET for checking that a service answers.
//! - [`bundle`]: hand-made (hostile) bundles for the bad-input scenarios.
//! - [`unique`]: unique names and free ports.
//! - [`tcp_proxy`]: a TCP proxy that can partition an agent from the control plane.
//! - [`host`]: a systemd + cloud-init container booted from user-data, as a real host would.
//! - [`moto`]: a `moto_server` per test (EC2) and a client for out-of-band changes.
//! - [`moto_s3`]: moto's S3 for the bundle store, a bucket per test (also used by the control crate's tests).
//! - [`front_door`]: an agent's front door on free ports, routed services, a request loop, a container watch.
//! - [`fault_proxy`]: an HTTP proxy that answers with 503s or throttling on demand.
//! - [`fake_http`]: the small HTTP/1.1 server the hand-written API fakes answer through.
//! - [`cloudflare`]: a fake Cloudflare DNS records API, with out-of-band edits and injected 429/503s.
//! - [`github`]: a fake GitHub REST API (comments, statuses, deployments), with injected 5xx and rate limits.
//! - [`terraform`]: every terraform version available, and workspaces using the built provider.
//! - [`fakepve`]: a `fakepve` (Proxmox VE) per test with the test's API token, and out-of-band changes.
//! - [`ssh_host`]: a systemd host with sshd on a loopback port, standing in for a Proxmox container.
//! - [`pebble`]: an ACME server (pebble + challtestsrv) per test, validating HTTP-01 for real.
//! - [`cert_door`]: the agent's certificate manager behind an HTTP-01 and a TLS listener.
//! - [`postgres`]: a throwaway PostgreSQL cluster, a database per test (also used by the control crate's tests).
//! - [`browser`]: headless chromium through chromedriver: CSS-addressed actions, waits with deadlines, screenshots.

pub mod agent;
pub mod bench;
pub mod binaries;
pub mod browser;
pub mod bundle;
pub mod cert_door;
pub mod cli;
pub mod cloudflare;
pub mod dashboard;
pub mod docker;
pub mod fake_http;
pub mod fakepve;
pub mod fault_proxy;
pub mod front_door;
pub mod github;
pub mod grpc;
pub mod host;
pub mod http;
pub mod moto;
pub mod moto_s3;
pub mod pebble;
pub mod poll;
pub mod postgres;
pub mod process;
pub mod server;
pub mod service;
pub mod ssh_host;
pub mod tcp_proxy;
pub mod terraform;
pub mod unique;

pub use agent::Agent;
pub use cli::CliOutput;
pub use server::Server;
pub use service::Service;
