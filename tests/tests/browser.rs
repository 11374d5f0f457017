//! The browser harness (`launch_e2e::browser`) checked on a page of its own:
//! a search box whose list filters as you type, picked from with the arrow
//! keys and Enter, the way the dashboard's tag search is used. A positive
//! control for the dashboard's browser tests: when this passes, a failure
//! there is the dashboard's, not the harness's.

use launch_e2e::browser::{Browser, DEADLINE, Key};
use launch_e2e::fake_http::{FakeServer, Response};

/// An input and a list filtered by prefix as the input changes; ArrowDown
/// moves the highlight, Enter copies the highlighted item to `#chosen`.
const PAGE: &str = r#"<!doctype html>
<html><head><title>harness self-test</title>
<style>
  body { font: 16px sans-serif; margin: 2em; }
  li.active { background: #cde; }
  li[hidden] { display: none; }
</style></head>
<body>
  <input id="search" autocomplete="off" placeholder="tag">
  <ul id="list">
    <li>team:payments</li><li>team:platform</li><li>tier:1</li><li>zone:eu</li>
  </ul>
  <p>chosen: <span id="chosen"></span></p>
  <script>
    const search = document.getElementById('search');
    const items = [...document.querySelectorAll('#list li')];
    let active = -1;
    const visible = () => items.filter(li => !li.hidden);
    const paint = () => items.forEach(li => li.classList.toggle('active', visible()[active] === li));
    search.addEventListener('input', () => {
      items.forEach(li => li.hidden = !li.textContent.startsWith(search.value));
      active = -1;
      paint();
    });
    search.addEventListener('keydown', event => {
      if (event.key === 'ArrowDown') { active = Math.min(active + 1, visible().length - 1); paint(); event.preventDefault(); }
      if (event.key === 'Enter' && active >= 0) { document.getElementById('chosen').textContent = visible()[active].textContent; }
    });
  </script>
</body></html>
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_browser_types_picks_with_arrow_keys_and_takes_a_screenshot() {
    let page = FakeServer::start(|_| Response::html(200, PAGE));
    let browser = Browser::start().await;
    browser
        .goto(&format!("http://127.0.0.1:{}/", page.port))
        .await;
    assert_eq!(browser.find_all("#list li").await.len(), 4);

    browser.type_text("#search", "team:p").await;
    assert_eq!(browser.value("#search").await, "team:p");
    // The filter ran: only the two team:p… items are still shown.
    let shown = browser
        .wait_for(DEADLINE, "the list to filter to team:p…", || async {
            let text = browser.text("#list").await;
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines == ["team:payments", "team:platform"] {
                Ok(lines)
            } else {
                Err(format!("{lines:?}"))
            }
        })
        .await;
    assert_eq!(shown.len(), 2);

    browser.press("#search", Key::Down).await;
    browser.press("#search", Key::Down).await;
    browser.press("#search", Key::Enter).await;
    let chosen = browser
        .wait_for_text("#chosen", "team:platform", DEADLINE)
        .await;
    assert_eq!(chosen, "team:platform");

    browser.click("#search").await;
    let png = browser.screenshot("browser-self-test").await;
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG of a page ({} bytes)",
        png.display(),
        bytes.len()
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_that_never_holds_fails_with_the_last_state_seen() {
    let page = FakeServer::start(|_| Response::html(200, PAGE));
    let browser = Browser::start().await;
    browser
        .goto(&format!("http://127.0.0.1:{}/", page.port))
        .await;
    let waited = tokio::spawn(async move {
        browser
            .wait_for_text("#chosen", "never", std::time::Duration::from_millis(500))
            .await;
    })
    .await
    .unwrap_err();
    let message = waited
        .into_panic()
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("timed out after") && message.contains("last state: text \"\""),
        "{message}"
    );
}
