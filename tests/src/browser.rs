//! A headless browser for tests of the dashboard: Debian's `chromedriver`
//! on a free loopback port driving Debian's `chromium` (`--headless
//! --no-sandbox --disable-gpu`, a fresh profile in a temp dir), spoken to
//! over WebDriver (`webdriver`: plain HTTP on loopback, no TLS). Every action
//! names its element by CSS selector and first waits for it to exist, so a
//! test never sleeps; [`Browser::wait_for`] polls any condition until a
//! deadline and reports the last state seen. [`Browser::screenshot`] writes
//! `target/screenshots/<name>.png`. Dropping the browser kills chromedriver
//! and the chromium it started (their process group).
//!
//! ```ignore
//! let browser = Browser::start().await;
//! browser.goto(&format!("http://127.0.0.1:{port}/")).await;
//! browser.type_text("#search", "team:pl").await;
//! browser.press("#search", Key::Down).await;
//! browser.press("#search", Key::Enter).await;
//! browser.wait_for_text("#chosen", "team:platform", DEADLINE).await;
//! browser.screenshot("search").await;
//! ```
//! `scripts/setup` installs both packages; `LAUNCH_CHROMIUM` and
//! `LAUNCH_CHROMEDRIVER` point elsewhere.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::process::Process;

mod webdriver;
pub use webdriver::Key;
use webdriver::{ElementId, Session};

/// How long an action waits for its element, and the default of the waits.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A chromium driven through chromedriver; both killed on drop.
pub struct Browser {
    session: Session,
    driver: Process,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session.
    pub async fn start() -> Browser {
        let chromium = tool("LAUNCH_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("LAUNCH_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = crate::unique::free_port();
        let mut command = Command::new(&chromedriver);
        command.arg(format!("--port={port}"));
        // Its own process group, so drop can kill the chromium it starts too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = Process::spawn("chromedriver", command);
        let url = format!("http://127.0.0.1:{port}");
        let ready = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                ready.elapsed() < DEADLINE,
                "chromedriver did not listen on {port} within {DEADLINE:?}; stderr:\n{}",
                driver.stderr.text()
            );
            tokio::time::sleep(crate::poll::INTERVAL).await;
        }
        let profile = tempfile::tempdir().expect("a temp dir for the browser profile");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1200,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let session = Session::new(&url, capabilities).await.unwrap_or_else(|e| {
            panic!(
                "cannot open a chromium session through chromedriver: {e}; stderr:\n{}",
                driver.stderr.text()
            )
        });
        Browser {
            session,
            driver,
            _profile: profile,
        }
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.session
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The first element matching `css`, waiting up to [`DEADLINE`] for one.
    pub async fn find(&self, css: &str) -> Element {
        let id = self
            .wait_for(DEADLINE, &format!("an element {css:?}"), || {
                self.session.find(css)
            })
            .await;
        self.element(css, id)
    }

    /// Every element matching `css` now (possibly none), in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let ids = self
            .session
            .find_all(css)
            .await
            .unwrap_or_else(|e| panic!("cannot search for {css:?}: {e}"));
        ids.into_iter().map(|id| self.element(css, id)).collect()
    }

    fn element(&self, css: &str, id: ElementId) -> Element {
        Element {
            session: self.session.clone(),
            css: css.to_owned(),
            id,
        }
    }

    /// Types `text` into the element, as keystrokes (input events fire).
    pub async fn type_text(&self, css: &str, text: &str) {
        self.find(css).await.type_text(text).await;
    }

    /// Presses one key (e.g. `Key::Down`, `Key::Enter`) in the element.
    pub async fn press(&self, css: &str, key: Key) {
        self.find(css).await.type_text(&key.text()).await;
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await;
    }

    /// The element's rendered text.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await
    }

    /// An input's current value.
    pub async fn value(&self, css: &str) -> String {
        self.find(css).await.value().await
    }

    /// Calls `check` until it returns `Ok`, at most for `timeout`; on timeout
    /// panics with `what`, the time waited and the last `Err` (the state seen).
    pub async fn wait_for<T, F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        loop {
            match check().await {
                Ok(value) => return value,
                Err(last) if start.elapsed() >= timeout => panic!(
                    "timed out after {:.1}s waiting for {what}; last state: {last}",
                    start.elapsed().as_secs_f64()
                ),
                Err(_) => tokio::time::sleep(crate::poll::INTERVAL).await,
            }
        }
    }

    /// Waits until the element's text contains `expected`; returns the text.
    pub async fn wait_for_text(&self, css: &str, expected: &str, timeout: Duration) -> String {
        self.wait_for(
            timeout,
            &format!("{css:?} to contain {expected:?}"),
            || async {
                let element = self.session.find(css).await?;
                let text = self.session.text(&element).await?;
                if text.contains(expected) {
                    Ok(text)
                } else {
                    Err(format!("text {text:?}"))
                }
            },
        )
        .await
    }

    /// Writes a PNG of the window to `target/screenshots/<name>.png` and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .session
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("cannot take screenshot {name}: {e}"));
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Ends the session, then stops chromedriver (drop does the latter alone).
    pub async fn close(self) {
        let _ = self.session.delete().await;
    }
}

/// An element found by [`Browser::find`] or [`Browser::find_all`].
pub struct Element {
    session: Session,
    css: String,
    id: ElementId,
}

impl Element {
    pub async fn text(&self) -> String {
        self.session
            .text(&self.id)
            .await
            .unwrap_or_else(|e| panic!("cannot read the text of {:?}: {e}", self.css))
    }

    /// An input's current value (`""` for other elements).
    pub async fn value(&self) -> String {
        let value = self
            .session
            .property(&self.id, "value")
            .await
            .unwrap_or_else(|e| panic!("cannot read the value of {:?}: {e}", self.css));
        value.as_str().unwrap_or_default().to_owned()
    }

    pub async fn click(&self) {
        self.session
            .click(&self.id)
            .await
            .unwrap_or_else(|e| panic!("cannot click {:?}: {e}", self.css));
    }

    /// Types `text` (keys as [`Key::text`]) into the element.
    pub async fn type_text(&self, text: &str) {
        self.session
            .send_keys(&self.id, text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {:?}: {e}", self.css));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = self.driver.pid() as i32;
        if group > 0 {
            // SAFETY: kill(2) of the process group this harness made for
            // chromedriver (and the chromium it started).
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
        self.driver.kill_hard();
    }
}

/// `target/screenshots` (under `CARGO_TARGET_DIR` when set).
pub fn screenshots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::binaries::workspace_root().join("target"))
        .join("screenshots")
}

fn tool(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "{} not found: run scripts/setup (it installs Debian's chromium and chromium-driver) or set {variable}",
        path.display()
    );
    path
}
