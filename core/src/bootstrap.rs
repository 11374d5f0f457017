//! What a new host runs at first boot. There is one template,
//! `templates/bootstrap.sh`: it installs Docker and Compose when missing
//! (Debian/Ubuntu package names), downloads `launch-agent` from the control
//! plane, checks its sha256 and runs `launch-agent install` with a join token
//! bound to the service's labels. EC2 runs it from `#cloud-config` user-data;
//! a host without cloud-init runs the same script over SSH. Every value is
//! shell-quoted (and validated before it gets here); the join token is written
//! only to tmpfs, and the script deletes itself when done. A failure fails
//! cloud-init's `runcmd`, so `cloud-init status --long` shows it.

use crate::labels::Labels;

const SCRIPT: &str = include_str!("../templates/bootstrap.sh");

/// Where cloud-init writes the script: tmpfs, so the join token never reaches
/// the instance's disk. The script deletes itself when it is done.
const SCRIPT_PATH: &str = "/run/launch-bootstrap.sh";

/// What a host needs to join the control plane as one service's agent.
pub struct Bootstrap<'a> {
    pub control_url: &'a str,
    pub join_token: &'a str,
    pub labels: &'a Labels,
}

impl Bootstrap<'_> {
    /// The shell script, ready to run as root.
    pub fn script(&self) -> String {
        SCRIPT
            .replace("{{service}}", self.labels.service.as_str())
            .replace("{{environment}}", self.labels.environment.as_str())
            .replace(
                "{{control_url}}",
                &shell_quote(self.control_url.trim_end_matches('/')),
            )
            .replace("{{join_token}}", &shell_quote(self.join_token))
            .replace("{{labels}}", &shell_quote(&self.labels.to_string()))
    }

    /// `#cloud-config` user-data that writes the script to tmpfs and runs it.
    pub fn cloud_config(&self) -> String {
        let mut out = String::from("#cloud-config\n");
        out.push_str(
            "# Rendered by terraform-provider-launch: installs Docker and launch-agent.\n",
        );
        out.push_str("write_files:\n");
        out.push_str(&format!("  - path: {SCRIPT_PATH}\n"));
        out.push_str("    owner: root:root\n");
        out.push_str("    permissions: \"0700\"\n");
        out.push_str("    content: |\n");
        for line in self.script().lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str("      ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("runcmd:\n");
        out.push_str(&format!("  - [sh, {SCRIPT_PATH}]\n"));
        out.push_str("final_message: \"launch bootstrap: cloud-init finished after $UPTIME s (see /var/log/cloud-init-output.log)\"\n");
        out
    }
}

/// `'…'` with every `'` written as `'\''`: safe for any byte string in sh.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{EnvironmentName, ServiceName};

    fn labels() -> Labels {
        Labels::new(
            ServiceName::parse("hello").unwrap(),
            EnvironmentName::parse("prod").unwrap(),
        )
    }

    #[test]
    fn script_carries_the_control_url_token_and_labels_quoted() {
        let labels = labels();
        let script = Bootstrap {
            control_url: "http://10.0.0.1:7400/",
            join_token: "jt_abc'def",
            labels: &labels,
        }
        .script();
        assert!(
            script.contains("LAUNCH_CONTROL_URL='http://10.0.0.1:7400'\n"),
            "{script}"
        );
        assert!(
            script.contains(r"LAUNCH_JOIN_TOKEN='jt_abc'\''def'"),
            "{script}"
        );
        assert!(
            script.contains("LAUNCH_LABELS='environment=prod,service-name=hello'"),
            "{script}"
        );
        assert!(
            !script.contains("{{"),
            "unrendered placeholder left: {script}"
        );
    }

    #[test]
    fn cloud_config_embeds_the_script_as_a_literal_block_and_runs_it() {
        let labels = labels();
        let b = Bootstrap {
            control_url: "http://c:7400",
            join_token: "t",
            labels: &labels,
        };
        let cc = b.cloud_config();
        assert!(cc.starts_with("#cloud-config\n"));
        for line in b.script().lines().filter(|l| !l.is_empty()) {
            assert!(cc.contains(&format!("      {line}\n")), "missing {line:?}");
        }
        assert!(
            cc.contains("runcmd:\n  - [sh, /run/launch-bootstrap.sh]\n"),
            "{cc}"
        );
    }
}
