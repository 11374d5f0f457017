//! The `proxmox { firewall, ingress_tcp_ports }` settings and the container
//! firewall they ask for, without I/O: the module gives a Proxmox host the
//! same inbound rule as the AWS security group (80 and 443 when public,
//! plus `ingress_ports`, nothing else). `firewall` left unset means the
//! provider leaves the container's firewall alone; set, what Proxmox says
//! is read back into the block, so a rule deleted out of band shows as a
//! change and apply puts it back.

use std::collections::BTreeSet;

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use super::config::ProxmoxArgs;
use crate::proxmox::firewall::Ingress;
use crate::proxmox::split_props;

/// The firewall `args` ask for; `None` when `firewall` is unset (or not
/// known yet) and the provider does not manage it.
pub fn wanted(args: &ProxmoxArgs) -> Option<Ingress> {
    let Value::Value(enabled) = args.firewall else {
        return None;
    };
    Some(Ingress {
        enabled,
        tcp_ports: ports(args),
    })
}

fn ports(args: &ProxmoxArgs) -> BTreeSet<u16> {
    args.ingress_tcp_ports
        .as_ref_option()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.as_ref_option().and_then(|p| u16::try_from(*p).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// `net0` with `firewall=1`, so PVE filters the container's traffic.
pub fn with_firewall_flag(net0: &str) -> String {
    let mut parts: Vec<String> = net0
        .split(',')
        .filter(|p| !p.is_empty() && !p.starts_with("firewall="))
        .map(str::to_owned)
        .collect();
    parts.push("firewall=1".to_owned());
    parts.join(",")
}

/// Whether `net0` lets PVE filter the container.
pub fn flagged(net0: &str) -> bool {
    split_props(net0).1.get("firewall").map(String::as_str) == Some("1")
}

/// Writes what Proxmox says into the block. A managed firewall reads back
/// as it is; an unmanaged one is left out, unless `adopt` (import) takes
/// an enabled one in.
pub fn observe(args: &mut ProxmoxArgs, seen: &Ingress, adopt: bool) {
    let managed = !args.firewall.is_null() || (adopt && seen.enabled);
    if !managed {
        return;
    }
    args.firewall = Value::Value(seen.enabled);
    if !seen.tcp_ports.is_empty() || !args.ingress_tcp_ports.is_null() {
        args.ingress_tcp_ports = Value::Value(
            seen.tcp_ports
                .iter()
                .map(|p| Value::Value(i64::from(*p)))
                .collect(),
        );
    }
}

/// Plan-time checks: ports are ports, and only mean something with the
/// firewall on.
pub fn validate(args: &ProxmoxArgs, diags: &mut Diagnostics) {
    let path = |field: &'static str| AttributePath::new("proxmox").index(0).attribute(field);
    let Value::Value(ports) = &args.ingress_tcp_ports else {
        return;
    };
    for port in ports.iter().filter_map(Value::as_ref_option) {
        if !(1..=65535).contains(port) {
            diags.error(
                "proxmox.ingress_tcp_ports holds a number that is not a TCP port",
                format!("{port} is not between 1 and 65535."),
                path("ingress_tcp_ports"),
            );
        }
    }
    if !ports.is_empty() && matches!(args.firewall, Value::Null | Value::Value(false)) {
        diags.error(
            "proxmox.ingress_tcp_ports needs firewall = true",
            "The ports are opened in the container's Proxmox firewall, which is off: set firewall = true in the proxmox block, or remove ingress_tcp_ports.",
            path("ingress_tcp_ports"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(firewall: Value<bool>, ports: Option<&[i64]>) -> ProxmoxArgs {
        ProxmoxArgs {
            firewall,
            ingress_tcp_ports: match ports {
                Some(ports) => Value::Value(ports.iter().map(|p| Value::Value(*p)).collect()),
                None => Value::Null,
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_unset_firewall_is_left_alone_and_a_set_one_asks_for_its_ports() {
        assert_eq!(wanted(&args(Value::Null, None)), None);
        assert_eq!(
            wanted(&args(Value::Value(true), Some(&[443, 80]))),
            Some(Ingress {
                enabled: true,
                tcp_ports: [80, 443].into()
            })
        );
    }

    #[test]
    fn a_deleted_rule_reads_back_as_drift_and_an_unmanaged_firewall_does_not() {
        let seen = Ingress {
            enabled: true,
            tcp_ports: [80].into(),
        };
        let mut managed = args(Value::Value(true), Some(&[80, 443]));
        observe(&mut managed, &seen, false);
        assert_eq!(managed, args(Value::Value(true), Some(&[80])));

        let mut unmanaged = args(Value::Null, None);
        observe(&mut unmanaged, &seen, false);
        assert_eq!(unmanaged, args(Value::Null, None));
        observe(&mut unmanaged, &seen, true);
        assert_eq!(
            unmanaged,
            args(Value::Value(true), Some(&[80])),
            "import adopts it"
        );

        let mut off = args(Value::Value(false), None);
        observe(&mut off, &Ingress::default(), false);
        assert_eq!(off, args(Value::Value(false), None), "no empty set appears");
    }

    #[test]
    fn net0_gains_the_firewall_flag_once() {
        let net0 = "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,firewall=0";
        let flagged_net0 = with_firewall_flag(net0);
        assert_eq!(
            flagged_net0,
            "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,firewall=1"
        );
        assert!(flagged(&flagged_net0) && !flagged(net0));
        assert_eq!(with_firewall_flag(&flagged_net0), flagged_net0);
    }

    #[test]
    fn ports_need_the_firewall_and_must_be_ports() {
        let errors = |a: ProxmoxArgs| {
            let mut diags = Diagnostics::default();
            validate(&a, &mut diags);
            diags.errors.len()
        };
        assert_eq!(errors(args(Value::Value(true), Some(&[80, 443]))), 0);
        assert_eq!(errors(args(Value::Null, Some(&[80]))), 1);
        assert_eq!(errors(args(Value::Value(true), Some(&[0, 70000]))), 2);
        assert_eq!(errors(args(Value::Value(false), Some(&[]))), 0);
    }
}
