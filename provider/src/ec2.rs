//! EC2, through `aws-sdk-ec2`: the few calls a `launch_service` host needs,
//! each with the error a Terraform user can act on. Configuration follows the
//! standard AWS chain (env, profile, IMDS), so `AWS_ENDPOINT_URL_EC2`,
//! `AWS_PROFILE` and `AWS_MAX_ATTEMPTS` work as in every other AWS tool.
//! Throttling and 5xx answers are retried by the SDK's standard retry mode
//! (exponential backoff with jitter, 5 attempts unless `AWS_MAX_ATTEMPTS` says
//! otherwise); what still fails is reported with the call's name. Refreshes
//! read from one listing of every managed instance (`crate::listing`), and
//! what it lacks through reads folded into one DescribeInstances (`batch`).

mod batch;
mod images;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::Region;
use aws_sdk_ec2::config::SharedHttpClient;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    AttributeValue, Filter, HttpTokensState, Instance, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceType, MarketType, ResourceType, SpotInstanceType, SpotMarketOptions, Tag,
    TagSpecification,
};
use aws_smithy_http_client::tls;
use base64::Engine;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::listing::{Changing, Listed, ListingCache, Source};
use batch::PendingRead;
use images::{CANONICAL_OWNER, DEBIAN_OWNER};

/// The tag every instance this provider launches carries, and its value:
/// a refresh lists every instance with it in one call.
pub const TAG_MANAGED_BY: &str = "launch:managed-by";
pub const MANAGED_BY: &str = "terraform-provider-launch";

/// How many attempts the SDK makes for a throttled or failed (5xx) call when
/// `AWS_MAX_ATTEMPTS` is not set.
const DEFAULT_MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error(
        "no AWS region: set `region` in the provider's aws block, or AWS_REGION / AWS_DEFAULT_REGION, or a region in the AWS profile"
    )]
    NoRegion,
    #[error("EC2 {call} failed: {detail}{hint}")]
    Call {
        call: &'static str,
        detail: String,
        hint: &'static str,
    },
    /// An error of a batched call, already worded by [`Ec2Error::call`].
    #[error("{0}")]
    Batched(String),
    #[error(
        "no default AMI found (looked for Debian 12 from {DEBIAN_OWNER} and Ubuntu LTS from {CANONICAL_OWNER} in this region): set aws {{ ami = \"ami-…\" }}"
    )]
    NoDefaultAmi,
    #[error(
        "instance {instance_id} did not reach {wanted} within {waited:?} (last seen {last}): check it in the EC2 console, or raise the timeout"
    )]
    Timeout {
        instance_id: String,
        wanted: &'static str,
        last: String,
        waited: Duration,
    },
    #[error(
        "instance {instance_id} went to {state} while waiting for {wanted}: see its state reason in the EC2 console"
    )]
    UnexpectedState {
        instance_id: String,
        state: String,
        wanted: &'static str,
    },
}

impl Ec2Error {
    pub(crate) fn call<E>(call: &'static str, err: SdkError<E, HttpResponse>) -> Ec2Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let hint = match err.code() {
            Some(code) if code.contains("Throttl") || code == "RequestLimitExceeded" => {
                " (EC2 kept throttling after the SDK's retries: run again later, or raise AWS_MAX_ATTEMPTS)"
            }
            Some("AuthFailure" | "UnauthorizedOperation" | "InvalidClientTokenId") => {
                " (check the AWS credentials terraform runs with, and their IAM permissions)"
            }
            Some(code) if code.starts_with("InvalidAMIID") => {
                " (check aws.ami: the AMI must exist in this region)"
            }
            Some(code) if code.starts_with("InvalidSubnet") => " (check aws.subnet_id)",
            Some(code) if code.starts_with("InvalidGroup") => " (check aws.security_group_ids)",
            Some(code) if code.starts_with("InvalidKeyPair") => " (check aws.key_name)",
            Some("InvalidParameterValue") => " (check the aws block and size)",
            _ => match &err {
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                    " (EC2 could not be reached: check the network, AWS_REGION and AWS_ENDPOINT_URL_EC2)"
                }
                SdkError::ServiceError(e) if e.raw().status().is_server_error() => {
                    " (EC2 kept failing after the SDK's retries: run again later, or raise AWS_MAX_ATTEMPTS)"
                }
                _ => "",
            },
        };
        Ec2Error::Call {
            call,
            detail: DisplayErrorContext(&err).to_string(),
            hint,
        }
    }
}

/// The provider block's `aws { region, profile }`.
#[derive(Clone, Debug, Default)]
pub struct Ec2Settings {
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// What the provider needs to know about one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceView {
    pub id: String,
    pub state: String,
    pub instance_type: String,
    pub image_id: String,
    pub subnet_id: Option<String>,
    pub key_name: Option<String>,
    pub security_group_ids: Vec<String>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// `spot` for a spot instance; on-demand instances have none.
    pub lifecycle: Option<String>,
}

impl InstanceView {
    fn from_sdk(instance: &Instance) -> InstanceView {
        InstanceView {
            id: instance.instance_id().unwrap_or_default().to_owned(),
            state: instance
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
            instance_type: instance
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            image_id: instance.image_id().unwrap_or_default().to_owned(),
            subnet_id: instance.subnet_id().map(str::to_owned),
            key_name: instance.key_name().map(str::to_owned),
            security_group_ids: instance
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect(),
            private_ip: instance.private_ip_address().map(str::to_owned),
            public_ip: instance.public_ip_address().map(str::to_owned),
            tags: instance
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
            lifecycle: instance.instance_lifecycle().map(|l| l.as_str().to_owned()),
        }
    }

    pub fn is_spot(&self) -> bool {
        self.lifecycle.as_deref() == Some("spot")
    }

    /// Terminated and terminating instances are gone as far as Terraform cares.
    pub fn is_gone(&self) -> bool {
        self.state == "terminated" || self.state == "shutting-down"
    }
}

/// Everything RunInstances is given for a new host.
pub struct Launch<'a> {
    pub image_id: &'a str,
    pub instance_type: &'a str,
    pub user_data: &'a str,
    pub client_token: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub subnet_id: Option<&'a str>,
    pub security_group_ids: Vec<String>,
    pub key_name: Option<&'a str>,
    /// A one-time spot request, with its maximum hourly price (default:
    /// the on-demand price), instead of an on-demand instance.
    pub spot: Option<Spot<'a>>,
}

/// How a spot instance is asked for.
#[derive(Clone, Copy, Debug)]
pub struct Spot<'a> {
    pub max_price: Option<&'a str>,
}

impl Spot<'_> {
    /// RunInstances' market options: one-time (an interrupted instance is
    /// terminated, and the next plan re-creates it, rather than a
    /// persistent request that EC2 refills behind Terraform's back).
    pub fn market_options(self) -> InstanceMarketOptionsRequest {
        InstanceMarketOptionsRequest::builder()
            .market_type(MarketType::Spot)
            .spot_options(
                SpotMarketOptions::builder()
                    .spot_instance_type(SpotInstanceType::OneTime)
                    .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                    .set_max_price(self.max_price.map(str::to_owned))
                    .build(),
            )
            .build()
    }
}

#[derive(Clone)]
pub struct Ec2 {
    client: Client,
    reads: mpsc::UnboundedSender<PendingRead>,
    cache: Arc<ListingCache<InstanceView>>,
}

/// DescribeInstances returns at most this many instances a page.
const LIST_PAGE: i32 = 1000;

impl Listed for InstanceView {
    fn id(&self) -> &str {
        &self.id
    }
}

#[async_trait]
impl Source<InstanceView> for Ec2 {
    type Error = Ec2Error;

    async fn list_managed(&self) -> Result<Vec<InstanceView>, Ec2Error> {
        let managed = Filter::builder()
            .name(format!("tag:{TAG_MANAGED_BY}"))
            .values(MANAGED_BY)
            .build();
        let mut views = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let reply = self
                .client
                .describe_instances()
                .filters(managed.clone())
                .max_results(LIST_PAGE)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| Ec2Error::call("DescribeInstances", e))?;
            views.extend(
                reply
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .map(InstanceView::from_sdk),
            );
            match reply.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(views),
            }
        }
    }

    async fn describe(&self, instance_id: &str) -> Result<Option<InstanceView>, Ec2Error> {
        self.describe_batched(instance_id).await
    }
}

impl Ec2 {
    pub async fn connect(settings: &Ec2Settings) -> Result<Ec2, Ec2Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            loader = loader
                .retry_config(RetryConfig::standard().with_max_attempts(DEFAULT_MAX_ATTEMPTS));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Ec2Error::NoRegion);
        }
        let client = Client::new(&config);
        let (reads, pending) = mpsc::unbounded_channel();
        tokio::spawn(batch::batch_reads(client.clone(), pending));
        Ok(Ec2 {
            client,
            reads,
            cache: Arc::default(),
        })
    }

    /// Held while an instance changes: when it drops, however the change
    /// ended, the next refresh read lists the instances again.
    fn changing(&self) -> Changing<'_, InstanceView> {
        self.cache.changing()
    }

    /// The SDK client, for calls that belong to other modules (security groups).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// RunInstances for one instance with IMDSv2 required. The client token
    /// makes the SDK's own retries of this call idempotent.
    pub async fn run_instance(&self, launch: Launch<'_>) -> Result<InstanceView, Ec2Error> {
        let _changing = self.changing();
        let tags: Vec<Tag> = launch
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let reply = self
            .client
            .run_instances()
            .image_id(launch.image_id)
            .instance_type(InstanceType::from(launch.instance_type))
            .min_count(1)
            .max_count(1)
            .client_token(launch.client_token)
            .user_data(base64::engine::general_purpose::STANDARD.encode(launch.user_data))
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            )
            .set_subnet_id(launch.subnet_id.map(str::to_owned))
            .set_security_group_ids(
                (!launch.security_group_ids.is_empty()).then_some(launch.security_group_ids),
            )
            .set_key_name(launch.key_name.map(str::to_owned))
            .set_instance_market_options(launch.spot.map(Spot::market_options))
            .send()
            .await
            .map_err(|e| Ec2Error::call("RunInstances", e))?;
        reply
            .instances()
            .first()
            .map(InstanceView::from_sdk)
            .ok_or_else(|| Ec2Error::Call {
                call: "RunInstances",
                detail: "the reply holds no instance".into(),
                hint: "",
            })
    }

    /// The instance, or `None` when EC2 no longer knows it.
    pub async fn describe(&self, instance_id: &str) -> Result<Option<InstanceView>, Ec2Error> {
        match self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(reply) => Ok(reply
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(instance_id))
                .map(InstanceView::from_sdk)),
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => Ok(None),
            Err(e) => Err(Ec2Error::call("DescribeInstances", e)),
        }
    }

    /// The instance for a refresh: from this process's listing of every
    /// managed instance, else read directly (see `crate::listing`).
    pub async fn read(&self, instance_id: &str) -> Result<Option<InstanceView>, Ec2Error> {
        self.cache.read(self, instance_id).await
    }

    /// Like [`Ec2::describe`], but batched with other reads arriving now.
    async fn describe_batched(&self, instance_id: &str) -> Result<Option<InstanceView>, Ec2Error> {
        let (tx, rx) = oneshot::channel();
        let lost = || Ec2Error::Call {
            call: "DescribeInstances",
            detail: "the read batcher stopped".into(),
            hint: "",
        };
        self.reads
            .send((instance_id.to_owned(), tx))
            .map_err(|_| lost())?;
        rx.await.map_err(|_| lost())?.map_err(Ec2Error::Batched)
    }

    /// The live instance tagged for this service and environment, for import.
    pub async fn find_by_tags(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<Vec<InstanceView>, Ec2Error> {
        let filter = |k: &str, v: &[&str]| {
            Filter::builder()
                .name(k)
                .set_values(Some(v.iter().map(|s| s.to_string()).collect()))
                .build()
        };
        let reply = self
            .client
            .describe_instances()
            .filters(filter("tag:launch:service", &[service]))
            .filters(filter("tag:launch:environment", &[environment]))
            .filters(filter(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped"],
            ))
            .send()
            .await
            .map_err(|e| Ec2Error::call("DescribeInstances", e))?;
        Ok(reply
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(InstanceView::from_sdk)
            .collect())
    }

    /// Polls until the instance is in `wanted`, failing early on a state it
    /// cannot come back from.
    pub async fn wait_for(
        &self,
        instance_id: &str,
        wanted: &'static str,
        deadline: Instant,
    ) -> Result<InstanceView, Ec2Error> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(250);
        let mut last;
        loop {
            match self.describe(instance_id).await? {
                Some(view) if view.state == wanted => return Ok(view),
                Some(view) if wanted != "terminated" && view.is_gone() => {
                    return Err(Ec2Error::UnexpectedState {
                        instance_id: instance_id.into(),
                        state: view.state,
                        wanted,
                    });
                }
                Some(view) => last = view.state,
                None if wanted == "terminated" => {
                    return Ok(InstanceView {
                        id: instance_id.into(),
                        state: "terminated".into(),
                        ..empty_view()
                    });
                }
                None => last = "not found".into(),
            }
            if Instant::now() >= deadline {
                return Err(Ec2Error::Timeout {
                    instance_id: instance_id.into(),
                    wanted,
                    last,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Stop, change the type, start: EC2 only resizes stopped instances.
    pub async fn resize(
        &self,
        instance_id: &str,
        instance_type: &str,
        deadline: Instant,
    ) -> Result<InstanceView, Ec2Error> {
        let _changing = self.changing();
        self.client
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| Ec2Error::call("StopInstances", e))?;
        self.wait_for(instance_id, "stopped", deadline).await?;
        self.client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .instance_type(AttributeValue::builder().value(instance_type).build())
            .send()
            .await
            .map_err(|e| Ec2Error::call("ModifyInstanceAttribute", e))?;
        self.client
            .start_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| Ec2Error::call("StartInstances", e))?;
        self.wait_for(instance_id, "running", deadline).await
    }

    /// Replaces the instance's security groups (VPC instances only).
    pub async fn set_security_groups(
        &self,
        instance_id: &str,
        groups: Vec<String>,
    ) -> Result<(), Ec2Error> {
        let _changing = self.changing();
        self.client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .set_groups(Some(groups))
            .send()
            .await
            .map_err(|e| Ec2Error::call("ModifyInstanceAttribute", e))?;
        Ok(())
    }

    /// Makes the instance's tags exactly `wanted`.
    pub async fn sync_tags(
        &self,
        instance_id: &str,
        current: &BTreeMap<String, String>,
        wanted: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        let _changing = self.changing();
        let changed: Vec<Tag> = wanted
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(v))
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        if !changed.is_empty() {
            self.client
                .create_tags()
                .resources(instance_id)
                .set_tags(Some(changed))
                .send()
                .await
                .map_err(|e| Ec2Error::call("CreateTags", e))?;
        }
        let removed: Vec<Tag> = current
            .keys()
            .filter(|k| !wanted.contains_key(*k) && !k.starts_with("aws:"))
            .map(|k| Tag::builder().key(k).build())
            .collect();
        if !removed.is_empty() {
            self.client
                .delete_tags()
                .resources(instance_id)
                .set_tags(Some(removed))
                .send()
                .await
                .map_err(|e| Ec2Error::call("DeleteTags", e))?;
        }
        Ok(())
    }

    /// Terminates and waits until EC2 says so; an instance already gone is fine.
    pub async fn terminate(&self, instance_id: &str, deadline: Instant) -> Result<(), Ec2Error> {
        let _changing = self.changing();
        match self
            .client
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => return Ok(()),
            Err(e) => return Err(Ec2Error::call("TerminateInstances", e)),
        }
        self.wait_for(instance_id, "terminated", deadline)
            .await
            .map(|_| ())
    }
}

/// The SDK's HTTP client: rustls on ring (the crypto the plugin protocol's
/// TLS already links) trusting the system's roots, loaded on first use.
fn https() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn empty_view() -> InstanceView {
    InstanceView {
        id: String::new(),
        state: String::new(),
        instance_type: String::new(),
        image_id: String::new(),
        subnet_id: None,
        key_name: None,
        security_group_ids: Vec::new(),
        private_ip: None,
        public_ip: None,
        tags: BTreeMap::new(),
        lifecycle: None,
    }
}
