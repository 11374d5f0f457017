//! Terraform's provider network mirror protocol, served on the control
//! plane's port: `/v1/terraform/providers/<hostname>/launch/launch/index.json`
//! lists the one version this server has, `<version>.json` names its zip and
//! hashes, and the zip itself follows. So a CLI configuration with
//! `network_mirror { url = "https://<control>/v1/terraform/providers/" }`
//! installs the provider with no registry (Terraform requires https for a
//! network mirror: serve with `--tls-cert`). The package is the
//! `terraform-provider-launch` binary found in `--provider-dir` (default:
//! beside `launch`), zipped once on first request and kept.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::OnceCell;

use crate::provider_package::{BINARY, NAMESPACE, Package, TYPE};

pub const PREFIX: &str = "/v1/terraform/providers";

/// Where the provider comes from, and its package once built.
pub struct Mirror {
    binary: Option<PathBuf>,
    package: OnceCell<Option<Arc<Served>>>,
}

/// The package and its zip as a cheaply cloned body.
struct Served {
    package: Package,
    zip: axum::body::Bytes,
}

impl Mirror {
    pub fn new(provider_dir: Option<PathBuf>) -> Mirror {
        let binary = match provider_dir {
            Some(dir) => Some(dir.join(BINARY)),
            None => crate::provider_package::binary_beside_exe(),
        };
        Mirror {
            binary,
            package: OnceCell::new(),
        }
    }

    async fn package(&self) -> Option<Arc<Served>> {
        self.package
            .get_or_init(|| async {
                let path = self.binary.clone()?;
                let built =
                    tokio::task::spawn_blocking(move || (Package::from_path(&path), path)).await;
                match built {
                    Ok((Ok(package), path)) => {
                        tracing::info!(path = %path.display(), h1 = %package.h1, "provider package ready for the network mirror");
                        let zip = axum::body::Bytes::from(package.zip.clone());
                        Some(Arc::new(Served { package, zip }))
                    }
                    Ok((Err(err), path)) => {
                        tracing::warn!(path = %path.display(), cause = %err, "cannot read the provider binary for the network mirror");
                        None
                    }
                    Err(err) => {
                        tracing::error!(cause = %err, "packaging the provider failed");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}

pub fn router(mirror: Arc<Mirror>) -> Router {
    Router::new()
        .route(
            &format!("{PREFIX}/{{hostname}}/{{namespace}}/{{type}}/{{file}}"),
            get(serve),
        )
        .with_state(mirror)
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

async fn serve(
    State(mirror): State<Arc<Mirror>>,
    Path((hostname, namespace, kind, file)): Path<(String, String, String, String)>,
) -> Response {
    if namespace != NAMESPACE || kind != TYPE {
        return not_found(format!(
            "this mirror serves only {NAMESPACE}/{TYPE}, not {hostname}/{namespace}/{kind}: install other providers from their registry (add `direct {{ exclude = [\"{hostname}/{NAMESPACE}/{TYPE}\"] }}` beside the network_mirror block)"
        ));
    }
    let Some(served) = mirror.package().await else {
        return not_found(format!(
            "no {BINARY} on this server: build it with `cargo build -p terraform-provider-launch` beside `launch`, or start the server with --provider-dir DIR"
        ));
    };
    let package = &served.package;
    let json = |value: serde_json::Value| {
        (
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    if file == "index.json" {
        return json(package.index_document());
    }
    if file == format!("{}.json", package.version) {
        return json(package.version_document());
    }
    if file == package.file_name() {
        return (
            [(header::CONTENT_TYPE, "application/zip")],
            served.zip.clone(),
        )
            .into_response();
    }
    not_found(format!(
        "no {file} here: this mirror has {BINARY} {} for {} only",
        package.version, package.platform
    ))
}
