//! Every policy rule: refused by default with the key and the allowance
//! named, permitted once that allowance is granted.

use std::path::Path;

use super::*;
use crate::compose::{self, Variables};

const RELEASE: &str = "/var/lib/launch/services/hello/releases/r1";

fn refusals(service_yaml: &str, extra: &str, granted: &[&str]) -> Vec<Refusal> {
    let text = format!("services:\n  web:\n    image: x\n{service_yaml}{extra}");
    let project =
        compose::load("compose.yaml", &text, &Variables::new()).unwrap_or_else(|e| panic!("{e}"));
    let granted: Vec<Allowance> = granted.iter().map(|g| g.parse().unwrap()).collect();
    check(&project, Path::new(RELEASE), &granted)
}

/// (service keys, top-level extra, key path in the refusal, allowance that permits it)
const RULES: &[(&str, &str, &str, &str)] = &[
    (
        "    volumes: [\"/etc:/host-etc:ro\"]\n",
        "",
        "services.web.volumes[0]",
        "bind:/etc",
    ),
    (
        "    volumes: [\"../../../../../../../../etc:/e\"]\n",
        "",
        "services.web.volumes[0]",
        "bind:/etc",
    ),
    (
        "    volumes: [{type: bind, source: /srv/data/x, target: /d}]\n",
        "",
        "services.web.volumes[0]",
        "bind:/srv/data/x",
    ),
    (
        "    volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n",
        "",
        "services.web.volumes[0]",
        "docker-socket",
    ),
    (
        "    volumes: [\"evil:/e\"]\n",
        "volumes:\n  evil: {driver_opts: {type: none, o: bind, device: /etc}}\n",
        "volumes.evil.driver_opts.device",
        "bind:/etc",
    ),
    (
        "    secrets: [s]\n",
        "secrets:\n  s: {file: /root/.ssh/id_rsa}\n",
        "secrets.s.file",
        "bind:/root/.ssh/id_rsa",
    ),
    (
        "    privileged: true\n",
        "",
        "services.web.privileged",
        "privileged",
    ),
    (
        "    network_mode: host\n",
        "",
        "services.web.network_mode",
        "host-network",
    ),
    ("    pid: host\n", "", "services.web.pid", "host-pid"),
    ("    ipc: host\n", "", "services.web.ipc", "host-ipc"),
    ("    uts: host\n", "", "services.web.uts", "host-uts"),
    (
        "    userns_mode: host\n",
        "",
        "services.web.userns_mode",
        "host-userns",
    ),
    (
        "    cap_add: [NET_ADMIN]\n",
        "",
        "services.web.cap_add",
        "cap-add:NET_ADMIN",
    ),
    (
        "    cap_add: [CAP_SYS_ADMIN]\n",
        "",
        "services.web.cap_add",
        "cap-add",
    ),
    (
        "    devices: [\"/dev/fuse:/dev/fuse\"]\n",
        "",
        "services.web.devices",
        "devices",
    ),
    (
        "    security_opt: [\"seccomp:unconfined\"]\n",
        "",
        "services.web.security_opt",
        "security-opt",
    ),
    (
        "    security_opt: [\"apparmor=unconfined\"]\n",
        "",
        "services.web.security_opt",
        "security-opt",
    ),
    (
        "    sysctls: {net.core.somaxconn: 1024}\n",
        "",
        "services.web.sysctls",
        "sysctls",
    ),
];

#[test]
fn each_rule_refuses_by_default_and_its_allowance_permits() {
    for (service, extra, at, allowance) in RULES {
        let refused = refusals(service, extra, &[]);
        assert_eq!(refused.len(), 1, "{service}: {refused:?}");
        assert_eq!(refused[0].at, *at, "{service}");
        let needed = refused[0].allowance.as_ref().map(ToString::to_string);
        let needed = needed.as_deref().unwrap_or_default();
        assert!(
            needed == *allowance || (*allowance == "cap-add" && needed == "cap-add:SYS_ADMIN"),
            "{service}: needs {needed}"
        );
        let message = refused[0].to_string();
        assert!(
            message.contains("launch services allow SERVICE --env ENV"),
            "{message}"
        );
        assert!(
            refusals(service, extra, &[allowance]).is_empty(),
            "{service} with {allowance}"
        );
    }
}

#[test]
fn an_allowance_for_one_key_does_not_permit_another() {
    let refused = refusals(
        "    network_mode: host\n    privileged: true\n",
        "",
        &["host-network"],
    );
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].allowance, Some(Allowance::Privileged));
    assert_eq!(
        refusals("    cap_add: [SYS_ADMIN]\n", "", &["cap-add:NET_ADMIN"]).len(),
        1
    );
    assert_eq!(
        refusals(
            "    volumes: [\"/srv/database:/d\"]\n",
            "",
            &["bind:/srv/data"]
        )
        .len(),
        1
    );
    assert!(
        refusals(
            "    volumes: [\"/srv/data/x/y:/d\"]\n",
            "",
            &["bind:/srv/data"]
        )
        .is_empty()
    );
    assert_eq!(
        refusals(
            "    volumes: [\"/var/run/docker.sock:/s\"]\n",
            "",
            &["bind:/var/run"]
        )
        .len(),
        1
    );
}

#[test]
fn paths_inside_the_release_and_harmless_keys_pass() {
    let fine = "    volumes: [\"./data:/data\", \"cache:/cache\", {type: tmpfs, target: /t}]\n    env_file: [app.env]\n    build: {context: ./app, dockerfile: Dockerfile}\n    network_mode: bridge\n    security_opt: [\"no-new-privileges:true\"]\n    cap_drop: [ALL]\n";
    assert_eq!(refusals(fine, "volumes:\n  cache: {}\n", &[]), vec![]);
}

#[test]
fn files_from_outside_the_release_have_no_allowance() {
    for (service, at) in [
        (
            "    build: {context: ../../../..}\n",
            "services.web.build.context",
        ),
        (
            "    build: {context: ., dockerfile: ../../Dockerfile}\n",
            "services.web.build.dockerfile",
        ),
        (
            "    env_file: [/etc/environment]\n",
            "services.web.env_file",
        ),
    ] {
        let refused = refusals(service, "", &["bind:/"]);
        assert_eq!(refused.len(), 1, "{service}: {refused:?}");
        assert_eq!(refused[0].at, at);
        assert_eq!(refused[0].allowance, None);
        assert!(
            refused[0]
                .to_string()
                .contains("copy what it needs into the service directory")
        );
    }
}

#[test]
fn allowances_parse_and_print_the_same() {
    for text in [
        "privileged",
        "host-network",
        "cap-add",
        "cap-add:NET_ADMIN",
        "bind:/srv/data",
        "docker-socket",
    ] {
        assert_eq!(text.parse::<Allowance>().unwrap().to_string(), text);
    }
    assert_eq!(
        "bind:/srv/./x/../data"
            .parse::<Allowance>()
            .unwrap()
            .to_string(),
        "bind:/srv/data"
    );
    for bad in ["root", "bind:relative", "cap-add:", "cap-add:a b"] {
        let err = bad.parse::<Allowance>().unwrap_err();
        assert!(err.contains("host-network"), "{err}");
    }
}
