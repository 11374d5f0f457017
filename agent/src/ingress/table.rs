//! The route table as it lives on disk: for each service, the host names it
//! answers and the address of its current release's container. It is JSON in
//! `<data dir>/ingress/routes.json`, written 0600 with temp + rename so a
//! crash leaves the old table or the new one, and read once at agent start so
//! routing resumes before the control plane is reachable.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;

use launch_core::private_file;
use serde::{Deserialize, Serialize};

/// Every service's route, by service name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub routes: BTreeMap<String, Route>,
}

/// Where one service's traffic goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Lower-case host names, without port.
    pub hosts: Vec<String>,
    /// The current release's container; `None` while no release is healthy.
    pub upstream: Option<SocketAddr>,
    /// The release that `upstream` belongs to (for status and logs).
    #[serde(default)]
    pub release_id: String,
}

impl Table {
    /// Reads the table at `path`; a missing file is an empty table.
    pub fn load(path: &Path) -> io::Result<Table> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the route table {} is not valid ({e}); remove it and redeploy to rebuild it",
                        path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Table::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the table atomically (0600, in a 0700 directory).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            private_file::create_private_dir(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        private_file::write_private(path, &bytes)
    }

    /// Every host name in the table, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .routes
            .values()
            .flat_map(|route| route.hosts.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The host a request names, lower-cased and without its port.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('.');
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    };
    without_port.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_table_loads_back_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingress").join("routes.json");
        assert_eq!(Table::load(&path).unwrap(), Table::default());
        let mut table = Table::default();
        table.routes.insert(
            "web".into(),
            Route {
                hosts: vec!["hello.test".into(), "a.test".into()],
                upstream: Some("172.17.0.2:8080".parse().unwrap()),
                release_id: "r1".into(),
            },
        );
        table.save(&path).unwrap();
        assert_eq!(Table::load(&path).unwrap(), table);
        assert_eq!(table.names(), vec!["a.test", "hello.test"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_corrupt_table_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.json");
        std::fs::write(&path, b"{not json").unwrap();
        let error = Table::load(&path).unwrap_err().to_string();
        assert!(error.contains("routes.json"), "{error}");
    }

    #[test]
    fn hosts_are_compared_without_port_and_case() {
        for (input, expect) in [
            ("Hello.Test", "hello.test"),
            ("hello.test:8443", "hello.test"),
            ("hello.test.", "hello.test"),
            ("[::1]:80", "::1"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(normalize_host(input), expect, "{input}");
        }
    }
}
