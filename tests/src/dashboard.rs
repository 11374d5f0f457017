//! A browser's login to the web dashboard without a browser, for
//! benchmarks: through the form (its `launch_login` cookie and CSRF token),
//! keeping the `launch_session` cookie (the fan-out benchmark hands it to
//! `sse-follower`, which follows a mission's log stream with it).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// One request on a fresh HTTP/1.1 connection.
async fn send(
    addr: SocketAddr,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("{e}"))
}

async fn body_text(response: hyper::Response<Incoming>) -> Result<String, String> {
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("read body: {e}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `name=value` of the `Set-Cookie` header naming `name`.
fn cookie(response: &hyper::Response<Incoming>, name: &str) -> Result<String, String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} cookie in the answer"))
}

/// A logged-in dashboard session.
pub struct Session {
    cookie: String,
}

impl Session {
    /// Logs in with `token` as a person would through the login form.
    pub async fn login(addr: SocketAddr, token: &str) -> Result<Session, String> {
        let get = hyper::Request::get("/login")
            .header("host", "dash.bench")
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let form = send(addr, get).await?;
        let login_cookie = cookie(&form, "launch_login")?;
        let page = body_text(form).await?;
        let csrf = page
            .split_once("name=\"csrf\" value=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(csrf, _)| csrf.to_owned())
            .ok_or("no CSRF token in the login form")?;
        // Tokens and CSRF values are URL-safe: no form encoding needed.
        let post = hyper::Request::post("/login")
            .header("host", "dash.bench")
            .header("cookie", login_cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!("token={token}&csrf={csrf}"))))
            .expect("a valid request");
        let done = send(addr, post).await?;
        if done.status() != 303 {
            return Err(format!("login answered {}", done.status()));
        }
        let cookie = cookie(&done, "launch_session")?;
        Ok(Session { cookie })
    }

    /// The `launch_session=…` cookie, as a browser sends it back.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }
}
