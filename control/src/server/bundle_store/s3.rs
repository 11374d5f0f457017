//! The S3 backend of the bundle store: `aws-sdk-s3` over rustls on ring (no
//! aws-lc-rs, no second TLS stack), configured by the standard AWS chain —
//! credentials and region from the environment, the profile or IMDS, and
//! the endpoint from `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`, or the
//! profile's `endpoint_url`). With such an endpoint (moto, MinIO, Ceph,
//! R2…) requests use path-style addressing (`ENDPOINT/BUCKET/KEY`), which
//! every S3-compatible store serves; without one, AWS's virtual-hosted
//! style. The bucket must answer HeadBucket at start.

use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::SharedHttpClient;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use aws_types::service_config::ServiceConfigKey;
use base64::Engine;
use tracing::info;

use super::{BundleReader, BundleStoreError, Stored, Upload, file_name};

/// How long the start-up HeadBucket may take, retries included.
const HEAD_BUCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// `s3://BUCKET/PREFIX`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// Parses what follows `s3://`.
    pub(super) fn parse(rest: &str) -> Result<S3Location, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_bucket {
            return Err(format!(
                "--bundle-store s3://{rest}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit): write s3://BUCKET or s3://BUCKET/PREFIX"
            ));
        }
        let prefix = prefix.trim_matches('/');
        let empty_segment = !prefix.is_empty() && prefix.split('/').any(str::is_empty);
        if empty_segment || prefix.contains(['?', '#']) {
            return Err(format!(
                "--bundle-store s3://{rest}: the key prefix {prefix:?} has an empty segment, '?' or '#': write s3://BUCKET/PREFIX with a PREFIX like a/b/c"
            ));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, sha256: &str) -> String {
        if self.prefix.is_empty() {
            file_name(sha256)
        } else {
            format!("{}/{}", self.prefix, file_name(sha256))
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

pub(super) struct S3Bundles {
    client: Client,
    location: S3Location,
    /// The endpoint for messages: the configured URL, or AWS's in a region.
    endpoint: String,
}

impl S3Bundles {
    /// A client for `location` from `aws` (or the standard chain), checked
    /// with HeadBucket.
    pub(super) async fn connect(
        location: &S3Location,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Result<S3Bundles, BundleStoreError> {
        let loaded;
        let aws = match aws {
            Some(aws) => aws,
            None => {
                loaded = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(https())
                    .load()
                    .await;
                &loaded
            }
        };
        let Some(region) = aws.region() else {
            return Err(BundleStoreError::S3(format!(
                "--bundle-store {location}: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the AWS profile)"
            )));
        };
        let custom_endpoint = custom_endpoint(aws);
        let mut config = aws_sdk_s3::config::Builder::from(aws);
        if custom_endpoint.is_some() {
            config = config.force_path_style(true);
        }
        let endpoint = match &custom_endpoint {
            Some(url) => super::super::store::redacted_url(url),
            None => format!("AWS S3 in {region}"),
        };
        let bundles = S3Bundles {
            client: Client::from_conf(config.build()),
            location: location.clone(),
            endpoint,
        };
        bundles.head_bucket().await?;
        info!(bundle_store = %location, endpoint = %bundles.endpoint, path_style = custom_endpoint.is_some(), "bundle store answers");
        Ok(bundles)
    }

    async fn head_bucket(&self) -> Result<(), BundleStoreError> {
        let bucket = &self.location.bucket;
        let refused = |detail: String, hint: &str| {
            BundleStoreError::S3(format!(
                "the bundle store {} cannot be used: HeadBucket on bucket {bucket:?} at {} failed: {detail}: {hint}",
                self.location, self.endpoint
            ))
        };
        let call = self.client.head_bucket().bucket(bucket).send();
        match tokio::time::timeout(HEAD_BUCKET_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Err(_) => Err(refused(
                format!("no answer within {HEAD_BUCKET_TIMEOUT:?}"),
                "check the endpoint (AWS_ENDPOINT_URL_S3) and the network",
            )),
            Ok(Err(err)) => {
                let hint = match status(&err) {
                    Some(404) => "create the bucket, or name an existing one in --bundle-store",
                    Some(301 | 400) => {
                        "the bucket is in another region: set AWS_REGION to the bucket's region"
                    }
                    Some(401 | 403) => {
                        "check the AWS credentials this server runs with and their s3:ListBucket permission"
                    }
                    _ => {
                        "check the endpoint (AWS_ENDPOINT_URL_S3), the region (AWS_REGION) and the network"
                    }
                };
                Err(refused(DisplayErrorContext(&err).to_string(), hint))
            }
        }
    }

    pub(super) fn describe(&self) -> String {
        format!("{} (at {})", self.location, self.endpoint)
    }

    pub(super) async fn exists(&self, sha256: &str) -> Result<bool, BundleStoreError> {
        let key = self.location.key(sha256);
        match self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if status(&err) == Some(404) => Ok(false),
            Err(err) => Err(self.failed("HeadObject", &key, &err)),
        }
    }

    /// Uploads `upload` (a file streamed from disk); the caller has
    /// checked that its object is not there yet. The request carries `sha256` as its
    /// `x-amz-checksum-sha256`, which AWS S3 checks the received bytes
    /// against (moto does not: no test here can show a refusal).
    pub(super) async fn put(
        &self,
        upload: &Upload,
        sha256: &str,
    ) -> Result<Stored, BundleStoreError> {
        let key = self.location.key(sha256);
        let body = match upload {
            Upload::Memory(bytes) => ByteStream::from(bytes.clone()),
            Upload::File(temp) => ByteStream::from_path(temp.path()).await.map_err(|err| {
                BundleStoreError::S3(format!("read {}: {err}", temp.path().display()))
            })?,
        };
        let checksum = hex::decode(sha256)
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
            .map_err(|err| BundleStoreError::S3(format!("sha256 {sha256:?} is not hex: {err}")))?;
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .body(body)
            .checksum_sha256(checksum)
            .content_type("application/gzip")
            .send()
            .await
            .map_err(|err| self.failed("PutObject", &key, &err))?;
        Ok(Stored::New)
    }

    /// The object's body as it arrives, chunk by chunk.
    pub(super) async fn open(&self, sha256: &str) -> Result<BundleReader, BundleStoreError> {
        let key = self.location.key(sha256);
        match self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(object) => Ok(Box::pin(object.body.into_async_read())),
            Err(err) if status(&err) == Some(404) => Err(BundleStoreError::Missing {
                sha256: sha256.to_owned(),
                store: self.describe(),
            }),
            Err(err) => Err(self.failed("GetObject", &key, &err)),
        }
    }

    fn failed<E>(&self, call: &str, key: &str, err: &SdkError<E, HttpResponse>) -> BundleStoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        BundleStoreError::S3(format!(
            "S3 {call} of {key:?} in bucket {:?} at {} failed: {}",
            self.location.bucket,
            self.endpoint,
            DisplayErrorContext(err)
        ))
    }
}

/// The HTTP status of a call's answer, when there was one.
fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response()
        .map(|response| response.status().as_u16())
}

/// The endpoint URL the S3 client will use instead of AWS's, resolved as
/// the SDK resolves it: `AWS_ENDPOINT_URL_S3` or the profile's `s3`
/// `endpoint_url`, else the general `AWS_ENDPOINT_URL` / `endpoint_url`.
fn custom_endpoint(aws: &aws_config::SdkConfig) -> Option<String> {
    let key = ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("every field is set");
    aws.service_config()
        .and_then(|service| service.load_config(key))
        .or_else(|| aws.endpoint_url().map(str::to_owned))
}

/// The SDK's HTTP client: rustls on ring (the crypto the control plane's
/// TLS already links) trusting the system's roots.
pub(super) fn https() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}
