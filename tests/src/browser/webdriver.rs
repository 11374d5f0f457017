//! The W3C WebDriver commands the browser harness sends to chromedriver:
//! JSON over plain HTTP/1.1 on loopback, through the hyper client the
//! workspace already builds (a WebDriver crate would add ~20 crates and new
//! `time` features that rebuild aws-sdk-ec2). Each command answers
//! `{"value": …}`; an error answers `{"value": {"error", "message"}}`,
//! returned here as `Err("<error>: <message>")`.

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The key of an element reference in WebDriver's JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A key WebDriver types as one code point of Unicode's private use area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Backspace,
    Tab,
    Enter,
    Escape,
    Left,
    Up,
    Right,
    Down,
}

impl Key {
    fn code(self) -> char {
        match self {
            Key::Backspace => '\u{E003}',
            Key::Tab => '\u{E004}',
            Key::Enter => '\u{E007}',
            Key::Escape => '\u{E00C}',
            Key::Left => '\u{E012}',
            Key::Up => '\u{E013}',
            Key::Right => '\u{E014}',
            Key::Down => '\u{E015}',
        }
    }

    /// The key as text for [`Session::send_keys`].
    pub fn text(self) -> String {
        self.code().to_string()
    }
}

/// One browser session of a chromedriver.
#[derive(Clone)]
pub struct Session {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://127.0.0.1:<port>/session/<id>`.
    base: String,
}

/// An element of the page, as WebDriver names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementId(pub String);

impl Session {
    /// Opens a session on the chromedriver at `driver` (`http://host:port`).
    pub async fn new(driver: &str, capabilities: Value) -> Result<Session, String> {
        let http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let value = call(&http, "POST", &format!("{driver}/session"), Some(body)).await?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {value}"))?;
        Ok(Session {
            http,
            base: format!("{driver}/session/{id}"),
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        call(
            &self.http,
            "POST",
            &format!("{}{path}", self.base),
            Some(body),
        )
        .await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        call(&self.http, "GET", &format!("{}{path}", self.base), None).await
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    pub async fn find(&self, css: &str) -> Result<ElementId, String> {
        let value = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await?;
        element_id(&value)
    }

    pub async fn find_all(&self, css: &str) -> Result<Vec<ElementId>, String> {
        let value = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await?;
        value
            .as_array()
            .ok_or_else(|| format!("not a list of elements: {value}"))?
            .iter()
            .map(element_id)
            .collect()
    }

    /// Types `text` into the element (keys of [`Key`] as their code points).
    pub async fn send_keys(&self, element: &ElementId, text: &str) -> Result<(), String> {
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await
        .map(drop)
    }

    pub async fn click(&self, element: &ElementId) -> Result<(), String> {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await
            .map(drop)
    }

    /// The element's rendered text (what a person sees; hidden parts excluded).
    pub async fn text(&self, element: &ElementId) -> Result<String, String> {
        let value = self.get(&format!("/element/{}/text", element.0)).await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// A DOM property of the element, e.g. an input's `value`.
    pub async fn property(&self, element: &ElementId, name: &str) -> Result<Value, String> {
        self.get(&format!("/element/{}/property/{name}", element.0))
            .await
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        let value = self.get("/screenshot").await?;
        let encoded = value.as_str().ok_or("the screenshot is not a string")?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("the screenshot is not base64: {e}"))
    }

    /// Ends the session (chromium exits).
    pub async fn delete(&self) -> Result<(), String> {
        call(&self.http, "DELETE", &self.base, None).await.map(drop)
    }
}

fn element_id(value: &Value) -> Result<ElementId, String> {
    value[ELEMENT_KEY]
        .as_str()
        .map(|id| ElementId(id.to_owned()))
        .ok_or_else(|| format!("not an element: {value}"))
}

async fn call(
    http: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let response = http
        .request(request)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{method} {url}: {status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    let value = answer["value"].clone();
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "{}: {}",
            value["error"].as_str().unwrap_or("error"),
            value["message"].as_str().unwrap_or_default()
        ))
    }
}
