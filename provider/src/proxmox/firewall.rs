//! A container's own PVE firewall, as `launch_service` manages it: the
//! container-level options (`enable`, `policy_in = DROP`, `policy_out =
//! ACCEPT`) and one `ACCEPT` rule per inbound TCP port, each marked with
//! [`MANAGED`] in its comment. Rules without the mark are the operator's
//! and are never touched. PVE filters a container's traffic only when its
//! network device also carries `firewall=1`; that flag is part of the
//! container's config and is handled by the target with `net0`.

use std::collections::BTreeSet;

use hyper::Method;
use serde_json::Value as Json;

use super::{Proxmox, ProxmoxError, encode};

/// The comment that marks a rule as the provider's.
pub const MANAGED: &str = "launch_service ingress";

/// What the container's firewall lets in, as far as the provider manages it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ingress {
    /// The container-level `enable` option (and, once the target has read
    /// the config, the `firewall=1` of `net0`).
    pub enabled: bool,
    /// Ports of the enabled, managed `in ACCEPT tcp` rules.
    pub tcp_ports: BTreeSet<u16>,
}

/// One rule as `GET …/firewall/rules` lists it.
#[derive(Debug, PartialEq)]
struct Rule {
    pos: i64,
    managed: bool,
    /// The port when this is a well-formed managed rule that is enabled.
    port: Option<u16>,
}

fn rule_of(row: &Json) -> Option<Rule> {
    let text = |key: &str| row.get(key).and_then(Json::as_str).unwrap_or("");
    let managed = text("comment") == MANAGED;
    let enabled = row.get("enable").and_then(Json::as_i64) == Some(1);
    let accepting = text("type") == "in" && text("action") == "ACCEPT" && text("proto") == "tcp";
    Some(Rule {
        pos: row.get("pos")?.as_i64()?,
        managed,
        port: (managed && enabled && accepting)
            .then(|| text("dport").parse().ok())
            .flatten(),
    })
}

fn rules_of(data: &Json) -> Vec<Rule> {
    data.as_array()
        .map(|rows| rows.iter().filter_map(rule_of).collect())
        .unwrap_or_default()
}

/// The managed rules to delete (positions, highest first, so earlier ones
/// keep theirs) and the ports to add, for `wanted`.
fn plan(rules: &[Rule], wanted: &Ingress) -> (Vec<i64>, BTreeSet<u16>) {
    let mut kept = BTreeSet::new();
    let mut delete = Vec::new();
    for rule in rules.iter().filter(|r| r.managed) {
        match rule.port {
            Some(port)
                if wanted.enabled && wanted.tcp_ports.contains(&port) && kept.insert(port) => {}
            _ => delete.push(rule.pos),
        }
    }
    delete.sort_unstable_by(|a, b| b.cmp(a));
    let add = if wanted.enabled {
        wanted.tcp_ports.difference(&kept).copied().collect()
    } else {
        BTreeSet::new()
    };
    (delete, add)
}

impl Proxmox {
    fn firewall_path(node: &str, vmid: i64, rest: &str) -> String {
        format!("/nodes/{}/lxc/{vmid}/firewall/{rest}", encode(node))
    }

    /// What the container's firewall options and managed rules say now.
    pub async fn ingress(&self, node: &str, vmid: i64) -> Result<Ingress, ProxmoxError> {
        let op = format!("reading the firewall of container {vmid} on {node}");
        let options = self
            .call(
                &op,
                Method::GET,
                &Self::firewall_path(node, vmid, "options"),
                &[],
            )
            .await?;
        let rules = self
            .call(
                &op,
                Method::GET,
                &Self::firewall_path(node, vmid, "rules"),
                &[],
            )
            .await?;
        Ok(Ingress {
            enabled: options.get("enable").and_then(Json::as_i64) == Some(1),
            tcp_ports: rules_of(&rules)
                .into_iter()
                .filter_map(|r| r.port)
                .collect(),
        })
    }

    /// Makes the managed rules and the options say `wanted`: stale or
    /// duplicate managed rules go, missing ports are added, and the
    /// firewall is enabled with inbound DROP (or disabled).
    pub async fn set_ingress(
        &self,
        node: &str,
        vmid: i64,
        wanted: &Ingress,
    ) -> Result<(), ProxmoxError> {
        let op = format!("changing the firewall of container {vmid} on {node}");
        let rules_path = Self::firewall_path(node, vmid, "rules");
        let rules = self.call(&op, Method::GET, &rules_path, &[]).await?;
        let (delete, add) = plan(&rules_of(&rules), wanted);
        for pos in delete {
            self.call(&op, Method::DELETE, &format!("{rules_path}/{pos}"), &[])
                .await?;
        }
        for port in add {
            let rule = [
                ("type", "in".to_owned()),
                ("action", "ACCEPT".to_owned()),
                ("proto", "tcp".to_owned()),
                ("dport", port.to_string()),
                ("enable", "1".to_owned()),
                ("comment", MANAGED.to_owned()),
            ];
            self.call(&op, Method::POST, &rules_path, &rule).await?;
        }
        let options: Vec<(&str, String)> = if wanted.enabled {
            vec![
                ("enable", "1".to_owned()),
                ("policy_in", "DROP".to_owned()),
                ("policy_out", "ACCEPT".to_owned()),
            ]
        } else {
            vec![("enable", "0".to_owned())]
        };
        self.call(
            &op,
            Method::PUT,
            &Self::firewall_path(node, vmid, "options"),
            &options,
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(ports: &[u16]) -> Ingress {
        Ingress {
            enabled: true,
            tcp_ports: ports.iter().copied().collect(),
        }
    }

    fn managed(pos: i64, port: &str, enable: i64) -> Json {
        json!({"pos": pos, "type": "in", "action": "ACCEPT", "proto": "tcp", "dport": port, "enable": enable, "comment": MANAGED})
    }

    #[test]
    fn only_enabled_marked_accept_rules_count_as_managed_ports() {
        let rules = json!([
            managed(0, "443", 1),
            managed(1, "80", 0),
            {"pos": 2, "type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "enable": 1},
            {"pos": 3, "type": "in", "action": "DROP", "proto": "tcp", "dport": "8080", "enable": 1, "comment": MANAGED},
        ]);
        let ports: BTreeSet<u16> = rules_of(&rules)
            .into_iter()
            .filter_map(|r| r.port)
            .collect();
        assert_eq!(ports, [443].into());
    }

    #[test]
    fn reconcile_deletes_stale_and_duplicate_managed_rules_highest_first_and_adds_the_missing() {
        let rules = rules_of(&json!([
            managed(0, "80", 1),
            managed(1, "8080", 1),
            {"pos": 2, "type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "enable": 1},
            managed(3, "80", 1),
            managed(4, "443", 0),
        ]));
        let (delete, add) = plan(&rules, &ingress(&[80, 443]));
        assert_eq!(delete, vec![4, 3, 1], "the operator's rule at 2 stays");
        assert_eq!(add, [443].into());
    }

    #[test]
    fn a_disabled_firewall_keeps_no_managed_rule_and_an_up_to_date_one_changes_nothing() {
        let rules = rules_of(&json!([managed(0, "80", 1), managed(1, "443", 1)]));
        let (delete, add) = plan(&rules, &Ingress::default());
        assert_eq!((delete, add), (vec![1, 0], BTreeSet::new()));
        let (delete, add) = plan(&rules, &ingress(&[80, 443]));
        assert!(delete.is_empty() && add.is_empty());
    }
}
