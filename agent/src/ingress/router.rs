//! Host → service → the current target. Lookups take a read lock and clone
//! an `Arc`; a deploy's switch writes the new table to disk first and then
//! swaps it in under the write lock, so a request sees the old upstream or
//! the new one, and a crash right after the switch restarts with the table
//! that was serving. The certificate side is told the new set of names after
//! every change (it orders certificates only for those).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use super::Certificates;
use super::counters::Counters;
use super::table::{Route, Table, normalize_host};
use super::target::{InFlight, Target};

/// What a host name leads to.
#[derive(Debug)]
pub enum Lookup {
    /// No service answers this name.
    Unknown,
    /// The service has no healthy release right now.
    NoRelease { service: String },
    /// The current target, with this request already counted on it (under
    /// the lock, so a switch that returned has seen every request it must
    /// drain).
    Target {
        service: String,
        target: Arc<Target>,
        guard: InFlight,
    },
}

pub struct Router {
    path: PathBuf,
    certificates: Arc<dyn Certificates>,
    state: RwLock<State>,
    /// Serializes writers, so two switches cannot interleave their saves.
    writer: Mutex<()>,
    /// What the proxy counted per route since the agent started.
    counters: Arc<Counters>,
}

#[derive(Default)]
struct State {
    table: Table,
    hosts: HashMap<String, String>,
    targets: HashMap<String, Arc<Target>>,
}

impl State {
    fn from_table(table: Table, previous: Option<&State>) -> State {
        let mut hosts = HashMap::new();
        let mut targets = HashMap::new();
        for (service, route) in &table.routes {
            for host in &route.hosts {
                hosts.insert(host.clone(), service.clone());
            }
            if let Some(addr) = route.upstream {
                // Keep the live target (and its in-flight count) when unchanged.
                let kept = previous
                    .and_then(|p| p.targets.get(service))
                    .filter(|t| t.addr == addr && t.release_id == route.release_id)
                    .cloned();
                targets.insert(
                    service.clone(),
                    kept.unwrap_or_else(|| Target::new(addr, route.release_id.clone())),
                );
            }
        }
        State {
            table,
            hosts,
            targets,
        }
    }
}

impl Router {
    /// The router with the table saved at `path` (empty when there is none).
    pub fn restore(path: PathBuf, certificates: Arc<dyn Certificates>) -> io::Result<Router> {
        let table = Table::load(&path)?;
        certificates.set_names(&table.names());
        Ok(Router {
            path,
            certificates,
            state: RwLock::new(State::from_table(table, None)),
            writer: Mutex::new(()),
            counters: Arc::default(),
        })
    }

    /// The per-route counters the proxy adds to and heartbeats report.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn lookup(&self, host: &str) -> Lookup {
        let host = normalize_host(host);
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let Some(service) = state.hosts.get(&host) else {
            return Lookup::Unknown;
        };
        match state.targets.get(service) {
            Some(target) => Lookup::Target {
                service: service.clone(),
                target: target.clone(),
                guard: target.request(),
            },
            None => Lookup::NoRelease {
                service: service.clone(),
            },
        }
    }

    /// The table as it is now.
    pub fn snapshot(&self) -> Table {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .table
            .clone()
    }

    /// The live target of `service`, if it has one.
    pub fn target(&self, service: &str) -> Option<Arc<Target>> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .targets
            .get(service)
            .cloned()
    }

    /// Points `service`'s names at `upstream` (or at nothing: 503), saving
    /// the table before the switch. Returns the target that served until
    /// now, for the caller to drain. A name another service answers is
    /// refused.
    pub fn switch(
        &self,
        service: &str,
        hosts: &[String],
        upstream: Option<(SocketAddr, &str)>,
    ) -> io::Result<Option<Arc<Target>>> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut table = self.snapshot();
        let mut hosts: Vec<String> = hosts.iter().map(|h| normalize_host(h)).collect();
        hosts.sort();
        hosts.dedup();
        for host in &hosts {
            if let Some((other, _)) = table
                .routes
                .iter()
                .find(|(name, route)| *name != service && route.hosts.contains(host))
            {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "the host name {host} already routes to service {other}; remove it from that service's [http] hosts first"
                    ),
                ));
            }
        }
        table.routes.insert(
            service.to_owned(),
            Route {
                hosts,
                upstream: upstream.map(|(addr, _)| addr),
                release_id: upstream.map(|(_, id)| id.to_owned()).unwrap_or_default(),
            },
        );
        self.replace(table, service)
    }

    /// Stops routing every route whose key `matches` (a retire: all of
    /// them; a preview teardown: the preview's), in one table write, and
    /// deletes the certificates of the names no remaining route holds.
    /// Returns the removed keys.
    pub fn remove_matching(&self, matches: impl Fn(&str) -> bool) -> io::Result<Vec<String>> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut table = self.snapshot();
        let keys: Vec<String> = table
            .routes
            .keys()
            .filter(|key| matches(key))
            .cloned()
            .collect();
        let removed: Vec<(String, Route)> = keys
            .into_iter()
            .filter_map(|key| table.routes.remove_entry(&key))
            .collect();
        if removed.is_empty() {
            return Ok(Vec::new());
        }
        self.replace(table, "")?;
        let names = self.snapshot().names();
        let gone: Vec<String> = removed
            .iter()
            .flat_map(|(_, route)| &route.hosts)
            .filter(|host| !names.contains(host))
            .cloned()
            .collect();
        self.certificates.forget(&gone);
        Ok(removed.into_iter().map(|(key, _)| key).collect())
    }

    fn replace(&self, table: Table, service: &str) -> io::Result<Option<Arc<Target>>> {
        table.save(&self.path)?;
        let names = table.names();
        let previous = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            let next = State::from_table(table, Some(&state));
            let old = std::mem::replace(&mut *state, next);
            let current = state.targets.get(service);
            old.targets
                .get(service)
                .filter(|old| current.is_none_or(|new| !Arc::ptr_eq(old, new)))
                .cloned()
        };
        self.certificates.set_names(&names);
        Ok(previous)
    }
}
