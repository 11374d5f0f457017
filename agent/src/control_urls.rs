//! The control plane's replicas as the agent knows them: the URLs given
//! (`--control-url` repeated or comma-separated, a string or a list as
//! `control_url` in `agent.toml`), which one is in use, and when to move to
//! the next. The session loop moves on after a failed connect or a dropped
//! session and waits its jittered backoff only once every URL was tried since
//! the last session that worked; every other connection (bundle and binary
//! fetches, the local address toward the control plane) uses the URL of the
//! current session. Each URL's host may itself resolve to several addresses,
//! tried in turn by `identity::channel`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// `control_url` in a TOML file: one URL (as install writes for one) or a
/// list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Setting {
    One(String),
    Many(Vec<String>),
}

impl Default for Setting {
    fn default() -> Self {
        Setting::Many(Vec::new())
    }
}

impl Setting {
    /// One URL as a string, several as a list.
    pub fn from_urls(mut urls: Vec<String>) -> Self {
        if urls.len() == 1 {
            Setting::One(urls.remove(0))
        } else {
            Setting::Many(urls)
        }
    }

    pub fn urls(&self) -> Vec<String> {
        match self {
            Setting::One(url) => vec![url.clone()],
            Setting::Many(urls) => urls.clone(),
        }
    }
}

/// The URLs (never empty) and the index of the one in use, shared by every
/// clone.
#[derive(Clone, Debug)]
pub struct ControlUrls {
    urls: Arc<[String]>,
    current: Arc<AtomicUsize>,
}

impl ControlUrls {
    /// # Panics
    /// When `urls` is empty: the config refuses that before.
    pub fn new(urls: Vec<String>) -> Self {
        assert!(!urls.is_empty(), "at least one control url");
        ControlUrls {
            urls: urls.into(),
            current: Arc::default(),
        }
    }

    /// The URL in use (the first until a connection to it fails).
    pub fn current(&self) -> String {
        self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()].clone()
    }

    pub fn all(&self) -> &[String] {
        &self.urls
    }

    fn advance(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }
}

/// The session loop's count of URLs tried since a session last worked.
#[derive(Debug, Default)]
pub struct Failover {
    tried: usize,
}

impl Failover {
    /// A session opened: the next failure starts a new round.
    pub fn worked(&mut self) {
        self.tried = 0;
    }

    /// A connect failed or a session ended: moves to the next URL and says
    /// whether to wait the backoff first (every URL tried this round).
    pub fn next(&mut self, urls: &ControlUrls) -> bool {
        urls.advance();
        self.tried += 1;
        if self.tried >= urls.all().len() {
            self.tried = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> ControlUrls {
        ControlUrls::new((1..=n).map(|i| format!("http://10.0.0.{i}:7400")).collect())
    }

    #[test]
    fn each_url_is_tried_before_backing_off_and_the_rotation_wraps() {
        let urls = urls(3);
        let mut failover = Failover::default();
        let mut seen = vec![urls.current()];
        let mut waits = Vec::new();
        for _ in 0..6 {
            waits.push(failover.next(&urls));
            seen.push(urls.current());
        }
        assert_eq!(waits, [false, false, true, false, false, true]);
        assert_eq!(
            seen.iter().map(|u| &u[7..15]).collect::<Vec<_>>(),
            [
                "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"
            ]
        );
    }

    #[test]
    fn a_session_that_worked_starts_a_new_round_from_the_next_url() {
        let urls = urls(2);
        let mut failover = Failover::default();
        assert!(!failover.next(&urls), "the second url is tried at once");
        failover.worked();
        // The session on the second url dropped: the first is tried at once,
        // and only then the backoff.
        assert!(!failover.next(&urls));
        assert_eq!(urls.current(), "http://10.0.0.1:7400");
        assert!(failover.next(&urls));
    }

    #[test]
    fn one_url_backs_off_after_every_failure_as_before() {
        let urls = urls(1);
        let mut failover = Failover::default();
        assert!(failover.next(&urls));
        assert!(failover.next(&urls));
        assert_eq!(urls.current(), "http://10.0.0.1:7400");
    }

    #[test]
    fn clones_share_the_url_in_use() {
        let urls = urls(2);
        let executor_view = urls.clone();
        Failover::default().next(&urls);
        assert_eq!(executor_view.current(), "http://10.0.0.2:7400");
    }

    #[test]
    fn the_file_setting_is_a_string_for_one_url_and_a_list_for_several() {
        #[derive(Serialize, Deserialize)]
        struct File {
            control_url: Setting,
        }
        let one = File {
            control_url: Setting::from_urls(vec!["http://a:1".into()]),
        };
        assert_eq!(
            toml::to_string(&one).unwrap(),
            "control_url = \"http://a:1\"\n"
        );
        let many: File =
            toml::from_str("control_url = [\"http://a:1\", \"http://b:1\"]\n").unwrap();
        assert_eq!(many.control_url.urls(), ["http://a:1", "http://b:1"]);
        assert_eq!(
            toml::to_string(&many).unwrap(),
            "control_url = [\"http://a:1\", \"http://b:1\"]\n"
        );
    }
}
