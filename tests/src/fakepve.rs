//! Proxmox VE as `fakepve` (PyPI) emulates it: one per test, over HTTPS with
//! its own self-signed certificate on a free loopback port, run from the
//! venv `scripts/setup` makes under `target/py`. fakepve has no command-line
//! switch for API tokens, so a short Python launcher (below) builds the
//! `FakePve`, registers the test's token, puts one Debian container template
//! on storage `local` (so a create naming another template fails in its task,
//! as on PVE), can add an offline node, and serves it.
//!
//! PVE writes `ssh-public-keys` into the new container's
//! `/root/.ssh/authorized_keys`; fakepve has no container filesystem and
//! keeps the key nowhere, so the launcher does that part: it writes each
//! create's keys to `<keys-dir>/<vmid>.pub`, and the test copies them into
//! the real sshd that stands in for the container (`ssh_host`).
//!
//! fakepve reports a container's address from the `ip=` of its `net0`
//! (a static address; nothing leases DHCP), so tests use static addresses.
//! [`FakePve::api`] makes out-of-band changes through the real API, as an
//! operator with `pvesh` would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::moto::venv_tool;
use crate::poll::eventually;
use crate::process::Process;
use crate::unique::{free_port, hex};

/// The template the fake holds; any other `local:vztmpl/…` fails to create.
pub const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
/// The node containers go on.
pub const NODE: &str = "pve1";
/// A node in the cluster that is offline (requests for it get PVE's 595).
pub const OFFLINE_NODE: &str = "pve9";

const LAUNCHER: &str = r#"
import asyncio, os, sys, tempfile
from fakepve import FakePve
from fakepve.certs import make_cert

port, token_id, secret, keys_dir, template, offline = sys.argv[1:7]

class Pve(FakePve):
    async def _lxc_create(self, user, v):
        # PVE writes ssh-public-keys into the container's authorized_keys;
        # a create that is refused (e.g. the VMID is taken) writes nothing.
        upid = await super()._lxc_create(user, v)
        keys = v.get('ssh-public-keys')
        if keys:
            path = os.path.join(keys_dir, '{0}.pub'.format(int(v['vmid'])))
            with open(path + '.tmp', 'w') as out:
                out.write(keys if keys.endswith('\n') else keys + '\n')
            os.rename(path + '.tmp', path)
        return upid

async def main():
    pve = Pve(host='127.0.0.1', port=int(port))
    # Tasks run in the background and take a moment, so UPIDs are awaited.
    pve.time_scale = 0.05
    pve.ct_secs['create'] = 2
    pve.apitokens[token_id] = secret
    pve.store_file('local', template.split('/', 1)[1], 1024, content='vztmpl')
    pve.add_node(offline, online=False)
    tmp = tempfile.mkdtemp(prefix='fakepve-')
    cert, key, _ = make_cert(tmp, hosts=('127.0.0.1',))
    await pve.start(cert, key)
    print('fakepve listening on {0}'.format(pve.url), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// `python -c API_CALL METHOD URL AUTH [KEY VALUE]…`: prints the status,
/// a newline and the body.
const API_CALL: &str = r#"
import ssl, sys, urllib.error, urllib.parse, urllib.request
method, url, auth = sys.argv[1:4]
pairs = sys.argv[4:]
data = urllib.parse.urlencode(list(zip(pairs[0::2], pairs[1::2]))).encode() if pairs else None
request = urllib.request.Request(url, data=data, method=method, headers={'Authorization': auth})
try:
    with urllib.request.urlopen(request, context=ssl._create_unverified_context(), timeout=30) as answer:
        status, body = answer.status, answer.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.write('{0}\n{1}'.format(status, body.decode()))
"#;

pub struct FakePve {
    pub process: Process,
    pub port: u16,
    /// `user@realm!tokenid=secret`, as `PROXMOX_VE_API_TOKEN` takes it.
    pub api_token: String,
    keys: TempDir,
}

impl FakePve {
    pub fn start() -> FakePve {
        let port = free_port();
        let keys = tempfile::Builder::new()
            .prefix("launch-e2e-pve-keys-")
            .tempdir()
            .expect("temp dir");
        let token_id = "root@pam!launch".to_owned();
        let secret = format!("{}-{}", hex(4), hex(8));
        let mut command = Command::new(venv_tool("python"));
        command.args([
            "-c",
            LAUNCHER,
            &port.to_string(),
            &token_id,
            &secret,
            &keys.path().display().to_string(),
            TEMPLATE,
            OFFLINE_NODE,
        ]);
        let process = Process::spawn("fakepve", command);
        process
            .stdout
            .wait_for(Duration::from_secs(60), |l| l.contains("fakepve listening"))
            .unwrap_or_else(|e| {
                panic!(
                    "fakepve did not start (is it installed? run scripts/setup): {e}\n{}",
                    process.stderr.text()
                )
            });
        FakePve {
            process,
            port,
            api_token: format!("{token_id}={secret}"),
            keys,
        }
    }

    /// `https://127.0.0.1:<port>`, what `PROXMOX_VE_ENDPOINT` takes.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// One API call with the test's token, through the venv's Python (the
    /// certificate is self-signed): PVE's `data`, or `Err` with the status
    /// and body.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let mut command = Command::new(venv_tool("python"));
        command.args([
            "-c",
            API_CALL,
            method,
            &format!("{}/api2/json{path}", self.url()),
            &format!("PVEAPIToken={}", self.api_token),
        ]);
        for (k, v) in form {
            command.args([*k, *v]);
        }
        let out = command.output().expect("run python");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (code, body) = text.split_once('\n').unwrap_or(("000", &text));
        if code != "200" {
            return Err(format!(
                "{method} {path}: HTTP {code}: {body}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let json: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("{method} {path}: {e}: {body}"))?;
        Ok(json["data"].clone())
    }

    /// Every container, as `/cluster/resources` lists them.
    pub fn containers(&self) -> Vec<serde_json::Value> {
        self.api("GET", "/cluster/resources?type=vm", &[])
            .expect("list guests")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["type"] == "lxc")
            .collect()
    }

    /// The container's config.
    /// The container's firewall options.
    pub fn firewall_options(&self, vmid: i64) -> serde_json::Value {
        self.api(
            "GET",
            &format!("/nodes/{NODE}/lxc/{vmid}/firewall/options"),
            &[],
        )
        .expect("read the container's firewall options")
    }

    /// The `dport`s of the container's enabled inbound TCP ACCEPT rules,
    /// sorted, whoever made them.
    pub fn accepted_tcp_ports(&self, vmid: i64) -> Vec<String> {
        let rules = self
            .api(
                "GET",
                &format!("/nodes/{NODE}/lxc/{vmid}/firewall/rules"),
                &[],
            )
            .expect("list the container's firewall rules");
        let mut ports: Vec<String> = rules
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["type"] == "in"
                    && r["action"] == "ACCEPT"
                    && r["proto"] == "tcp"
                    && r["enable"] == 1
            })
            .filter_map(|r| r["dport"].as_str().map(str::to_owned))
            .collect();
        ports.sort();
        ports
    }

    pub fn config(&self, vmid: i64) -> serde_json::Value {
        self.api("GET", &format!("/nodes/{NODE}/lxc/{vmid}/config"), &[])
            .expect("read the container's config")
    }

    /// Waits for a task to stop and returns its exit status.
    pub fn wait_task(&self, upid: &serde_json::Value) -> String {
        let upid = upid.as_str().expect("a UPID").to_owned();
        let path = format!("/nodes/{NODE}/tasks/{}/status", encode(&upid));
        eventually(Duration::from_secs(60), "the task to stop", || {
            let status = self.api("GET", &path, &[])?;
            if status["status"] == "stopped" {
                Ok(status["exitstatus"].as_str().unwrap_or_default().to_owned())
            } else {
                Err(status.to_string())
            }
        })
    }

    /// Stops a container behind Terraform's back.
    pub fn stop(&self, vmid: i64) {
        let upid = self
            .api(
                "POST",
                &format!("/nodes/{NODE}/lxc/{vmid}/status/stop"),
                &[],
            )
            .expect("stop the container");
        assert_eq!(self.wait_task(&upid), "OK");
    }

    /// Destroys a container behind Terraform's back (stopping it first).
    pub fn destroy(&self, vmid: i64) {
        let upid = self
            .api(
                "DELETE",
                &format!("/nodes/{NODE}/lxc/{vmid}?force=1&purge=1"),
                &[],
            )
            .expect("destroy the container");
        assert_eq!(self.wait_task(&upid), "OK");
    }

    /// The public keys the provider asked PVE to put into the container.
    pub fn injected_keys(&self, vmid: i64) -> Option<String> {
        std::fs::read_to_string(self.keys_path(vmid)).ok()
    }

    pub fn keys_path(&self, vmid: i64) -> PathBuf {
        self.keys.path().join(format!("{vmid}.pub"))
    }

    pub fn keys_dir(&self) -> &Path {
        self.keys.path()
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
