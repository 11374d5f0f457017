//! The end-to-end scenarios of Launch, in one test binary (one link, one
//! place to look): each module drives the real `launch` and `launch-agent`
//! binaries and the real Docker engine through the harness in `launch_e2e`.
//! Every test uses its own server, agents, unique service names and free
//! ports, so nextest can run them all in parallel.
//!
//! # Layout
//! - `faults`: no Docker daemon, no compose, a taken port, a crash loop: clear failures and rollbacks.
//! - `bootstrap`: user-data schema, unit verify, the static agent, and real boots of a systemd + cloud-init host.
//! - `tidy`: repository rules checked as tests (every `.rs` file starts with `//!`).
//! - `control_plane`: the server process: HTTP endpoints, file modes, bad config, CLI exit 3.
//! - `tokens`: join tokens — registration, reuse refused.
//! - `deploy`: deploy --wait to healthy, failing releases roll back, `launch rollback`.
//! - `logs`: runtime log lines and secret redaction everywhere.
//! - `restarts`: agent and control plane kill -9 and restart.
//! - `isolation`: an agent of one service cannot reach another's bundles or secrets.
//! - `provider`: terraform + the provider against moto and a real control plane.
//! - `proxmox`: `target = "proxmox"` against fakepve, bootstrapped over SSH into a real systemd host.
//! - `dns`: `public = true` services and their Cloudflare records, against the Cloudflare fake.
//! - `bad_input`: refused directories, names and bundles exit 2 and change nothing.
//! - `security`: TLS (right CA, wrong CA, plain HTTP), a token on every RPC, `rotate-key`, secrets in no output.
//! - `kit`: the monorepo kit: module, infrastructure/, examples, workflows and the deploy action.
//! - `acme`: the agent's automatic TLS against real pebble: issue, serve by SNI, restart, renew, ACME down.

mod acme;
mod bad_input;
mod bootstrap;
mod control_plane;
mod deploy;
mod dns;
mod faults;
mod isolation;
mod kit;
mod logs;
mod provider;
mod proxmox;
mod restarts;
mod security;
mod tidy;
mod tokens;
