//! EC2 as moto emulates it: a `moto_server` per test on a free port (from the
//! venv `scripts/setup` makes under `target/py`, else from PATH), with AMI and
//! instance-type validation on so bad values fail as they would on AWS. The
//! [`Ec2Peer`] client looks at and changes what the provider made, out of band,
//! the way an operator with the AWS console would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{AttributeValue, Filter, Tag};
use aws_smithy_http_client::tls;
use base64::Engine;

use crate::binaries::workspace_root;
use crate::poll::eventually;
use crate::process::Process;
use crate::unique::free_port;

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub process: Process,
    pub port: u16,
}

/// `target/py/bin/<name>` if `scripts/setup` made it, else `<name>` from PATH.
pub fn venv_tool(name: &str) -> PathBuf {
    let local = workspace_root().join("target/py/bin").join(name);
    if local.is_file() {
        local
    } else {
        PathBuf::from(name)
    }
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut command = Command::new(venv_tool("moto_server"));
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true");
        let process = Process::spawn("moto", command);
        eventually(Duration::from_secs(60), "moto_server to answer", || {
            crate::http::get(port, "/moto-api/")
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        Moto { process, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn peer(&self) -> Ec2Peer {
        Ec2Peer::new(&self.url())
    }
}

/// One instance as the tests see it.
#[derive(Clone, Debug)]
pub struct InstanceInfo {
    pub id: String,
    pub state: String,
    pub instance_type: String,
    pub image_id: String,
    pub tags: BTreeMap<String, String>,
    pub http_tokens: String,
    pub security_group_ids: Vec<String>,
    /// `spot` for a spot instance, empty for on-demand.
    pub lifecycle: String,
}

pub struct Ec2Peer {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Ec2Peer {
    pub fn new(endpoint: &str) -> Ec2Peer {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "e2e"))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build();
        Ec2Peer {
            runtime: crate::grpc::runtime(),
            client: Client::from_conf(config),
        }
    }

    /// Every instance (any state) tagged for this service and environment.
    pub fn instances(&self, service: &str, environment: &str) -> Vec<InstanceInfo> {
        let filter = |k: &str, v: &str| Filter::builder().name(k).values(v).build();
        let reply = self
            .runtime
            .block_on(
                self.client
                    .describe_instances()
                    .filters(filter("tag:launch:service", service))
                    .filters(filter("tag:launch:environment", environment))
                    .send(),
            )
            .expect("DescribeInstances on moto");
        reply
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| InstanceInfo {
                id: i.instance_id().unwrap_or_default().to_owned(),
                state: i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
                instance_type: i
                    .instance_type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
                image_id: i.image_id().unwrap_or_default().to_owned(),
                tags: i
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_owned(),
                            t.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
                security_group_ids: i
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_owned))
                    .collect(),
                http_tokens: i
                    .metadata_options()
                    .and_then(|m| m.http_tokens())
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
                lifecycle: i
                    .instance_lifecycle()
                    .map(|l| l.as_str().to_owned())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Instances tagged for the service that are not terminated.
    pub fn live_instances(&self, service: &str, environment: &str) -> Vec<InstanceInfo> {
        self.instances(service, environment)
            .into_iter()
            .filter(|i| i.state != "terminated")
            .collect()
    }

    /// The security group named `name`: its id and the TCP ports it opens.
    pub fn security_group(&self, name: &str) -> Option<(String, Vec<i32>)> {
        let filter = Filter::builder().name("group-name").values(name).build();
        let reply = self
            .runtime
            .block_on(
                self.client
                    .describe_security_groups()
                    .filters(filter)
                    .send(),
            )
            .expect("DescribeSecurityGroups on moto");
        reply.security_groups().first().map(|g| {
            let mut ports: Vec<i32> = g
                .ip_permissions()
                .iter()
                .filter(|p| p.ip_protocol() == Some("tcp"))
                .filter_map(|p| p.from_port())
                .collect();
            ports.sort();
            (g.group_id().unwrap_or_default().to_owned(), ports)
        })
    }

    /// Opens a TCP port to the world behind Terraform's back.
    pub fn open_port(&self, group_id: &str, port: i32) {
        let permission = aws_sdk_ec2::types::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port)
            .ip_ranges(
                aws_sdk_ec2::types::IpRange::builder()
                    .cidr_ip("0.0.0.0/0")
                    .build(),
            )
            .build();
        self.runtime
            .block_on(
                self.client
                    .authorize_security_group_ingress()
                    .group_id(group_id)
                    .ip_permissions(permission)
                    .send(),
            )
            .expect("AuthorizeSecurityGroupIngress on moto");
    }

    /// The instance's user-data, decoded.
    pub fn user_data(&self, instance_id: &str) -> String {
        let reply = self
            .runtime
            .block_on(
                self.client
                    .describe_instance_attribute()
                    .instance_id(instance_id)
                    .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                    .send(),
            )
            .expect("DescribeInstanceAttribute userData on moto");
        let encoded = reply
            .user_data()
            .and_then(|u| u.value())
            .unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("user-data is base64");
        String::from_utf8(bytes).expect("user-data is UTF-8")
    }

    pub fn terminate(&self, instance_id: &str) {
        self.runtime
            .block_on(
                self.client
                    .terminate_instances()
                    .instance_ids(instance_id)
                    .send(),
            )
            .expect("TerminateInstances on moto");
    }

    /// Changes the type behind Terraform's back (stop, modify, start).
    pub fn set_instance_type(&self, instance_id: &str, instance_type: &str) {
        self.runtime.block_on(async {
            self.client
                .stop_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .expect("StopInstances");
            self.client
                .modify_instance_attribute()
                .instance_id(instance_id)
                .instance_type(AttributeValue::builder().value(instance_type).build())
                .send()
                .await
                .expect("ModifyInstanceAttribute");
            self.client
                .start_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .expect("StartInstances");
        });
    }

    /// Removes a tag behind Terraform's back.
    pub fn delete_tag(&self, instance_id: &str, key: &str) {
        self.runtime
            .block_on(
                self.client
                    .delete_tags()
                    .resources(instance_id)
                    .tags(Tag::builder().key(key).build())
                    .send(),
            )
            .expect("DeleteTags on moto");
    }

    pub fn set_tag(&self, instance_id: &str, key: &str, value: &str) {
        self.runtime
            .block_on(
                self.client
                    .create_tags()
                    .resources(instance_id)
                    .tags(Tag::builder().key(key).value(value).build())
                    .send(),
            )
            .expect("CreateTags on moto");
    }
}

/// The value of `NAME='…'` in a rendered bootstrap script.
pub fn script_value(user_data: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}='");
    user_data.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(&prefix)?;
        Some(rest.strip_suffix('\'')?.replace(r"'\''", "'"))
    })
}
