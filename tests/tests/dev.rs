//! `launch dev`: the embedded control plane, a local agent, one deploy and
//! the service's log followed after "ready", as a developer runs it.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use launch_e2e::binaries;
use launch_e2e::process::Process;
use launch_e2e::service::Service;
use launch_e2e::unique;

#[test]
fn launch_dev_follows_the_log_from_the_last_line_it_printed() {
    let service = Service::from_quickstart(&unique::service_name(), "dev");
    // A numbered line every 200 ms, before and after "ready": each must be
    // printed once.
    service.set_compose_script(
        "i=0; while true; do i=$$((i+1)); echo tick-$$i; /bin/busybox sleep 0.2; done & \
         exec /bin/busybox httpd -f -p 8080 -h /www",
    );
    service.write(
        "launch.toml",
        &format!(
            "name = {:?}\nport = {}\n[health]\nsettle = \"1s\"\n",
            service.name, service.port
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(binaries::launch());
    command
        .arg("dev")
        .arg(service.dir())
        .arg("--data-dir")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0", "--env", "dev"]);
    let mut dev = Process::spawn("dev", command);
    let ready = dev
        .stdout
        .wait_for(Duration::from_secs(240), |l| l.starts_with("ready: "))
        .unwrap_or_else(|e| panic!("launch dev never said ready: {e}"));
    let lines = dev.stdout.lines();
    let at = lines.iter().position(|l| *l == ready).unwrap();
    let before: BTreeSet<String> = lines[..at]
        .iter()
        .filter(|l| l.contains("tick-"))
        .cloned()
        .collect();
    assert!(
        !before.is_empty(),
        "the service printed nothing before ready (the positive control):\n{}",
        lines.join("\n")
    );
    // Lines are streamed in order, so once a tick printed after ready
    // arrives, a replay of the mission's log would already be there.
    dev.stdout
        .wait_for_from(at + 1, Duration::from_secs(30), |l| {
            l.contains("tick-") && !before.contains(l)
        })
        .unwrap_or_else(|e| panic!("no new line after ready: {e}"));
    let after = dev.stdout.lines();
    let repeated: Vec<&String> = after[at + 1..]
        .iter()
        .filter(|l| !l.is_empty() && lines[..at].contains(l))
        .collect();
    assert!(
        repeated.is_empty(),
        "launch dev printed {} lines again after ready, e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );
    dev.interrupt(Duration::from_secs(30));
}
