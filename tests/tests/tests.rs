//! The end-to-end scenarios of Launch, in one test binary (one link, one
//! place to look): each module drives the real `launch` and `launch-agent`
//! binaries and the real Docker engine through the harness in `launch_e2e`.
//! Every test uses its own server, agents, unique service names and free
//! ports, so nextest can run them all in parallel.
//!
//! # Layout
//! - `front_door`: the agent's proxy: routing by host, cutovers under load, drains, restarts.
//! - `faults`: no Docker daemon, no compose, a taken port, a crash loop: clear failures and rollbacks.
//! - `bootstrap`: user-data schema, unit verify, the static agent, and real boots of a systemd + cloud-init host.
//! - `tidy`: repository rules checked as tests (every `.rs` file starts with `//!`).
//! - `control_plane`: the server process: HTTP endpoints, file modes, bad config, CLI exit 3.
//! - `bundle_store`: bundles in moto's S3: two replicas on one database and bucket, a missing object, a bucket that does not answer.
//! - `tokens`: join tokens — registration, reuse refused.
//! - `api_tokens`: scoped API tokens through the CLI: create, list, refusals naming the scope, revoke.
//! - `compose`: the corpus of compose apps, broken files refused, the host policy, the settle gate, degraded.
//! - `docs`: every command block of the docs runs, is a checked synopsis, or says why not.
//! - `env_values`: a secret holding every dotenv special character reaches the container unchanged (compose v1).
//! - `deploy`: deploy --wait to healthy, failing releases roll back, `launch rollback`.
//! - `missions`: `launch restart`, `cancel` (a slow deploy; the previous release serves again), `retire`.
//! - `dev`: `launch dev` deploys and follows the log from the last line it printed.
//! - `logs`: runtime log lines and secret redaction everywhere.
//! - `restarts`: agent and control plane kill -9 and restart.
//! - `replicas`: two servers on one PostgreSQL; kill -9 of the one holding the agent mid-deploy.
//! - `isolation`: an agent of one service cannot reach another's bundles or secrets.
//! - `provider`: terraform + the provider against moto and a real control plane.
//! - `provider_refresh`: the EC2 calls a refresh makes: one listing for many services, and it hides no change.
//! - `provider_identity`: the provider agrees with the control plane by ids, not clocks (a runner 10 s ahead, create_before_destroy).
//! - `provider_mirror`: `terraform init` with no registry: the control plane's network mirror (TLS) and `launch provider install`.
//! - `proxmox`: `target = "proxmox"` against fakepve, bootstrapped over SSH into a real systemd host.
//! - `docker_target`: `target = "docker"` on the real engine: a systemd host container, deploy, resize, import, destroy.
//! - `dns`: `public = true` services and their Cloudflare records, against the Cloudflare fake.
//! - `bad_input`: refused directories, names and bundles exit 2 and change nothing.
//! - `security`: TLS (right CA, wrong CA, plain HTTP), a token on every RPC, `rotate-key`, secrets in no output.
//! - `github`: PR comments, commit statuses and deployments against the GitHub fake; the webhook.
//! - `kit`: the monorepo kit: module, infrastructure/, examples, workflows and the deploy action.
//! - `upgrade`: agent self-upgrade (re-exec) under a request loop, and the watchdog's rollback of a broken binary.
//! - `previews`: pull-request previews beside prod on one agent: own names and certificates, cap, limits, teardown (webhook, CLI, kill mid-way, TTL) leaving nothing.
//! - `browser`: the browser harness on a page of its own: type, arrow keys, Enter, screenshot.
//! - `tags`: `launch services tag|untag|--tag` and launch.toml `[tags]` through the CLI; bad tags exit 2.
//! - `acme`: the agent's automatic TLS against real pebble: issue, serve by SNI, restart, renew, ACME down.

mod acme;
mod api_tokens;
mod bad_input;
mod bootstrap;
mod browser;
mod bundle_store;
mod certs;
mod compose;
mod control_plane;
mod dashboard;
mod deploy;
mod dev;
mod dns;
mod docker_target;
mod docs;
mod env_values;
mod faults;
mod front_door;
mod github;
mod isolation;
mod kit;
mod logs;
mod missions;
mod previews;
mod provider;
mod provider_identity;
mod provider_mirror;
mod provider_refresh;
mod proxmox;
mod replicas;
mod restarts;
mod security;
mod tags;
mod tidy;
mod tokens;
mod upgrade;
