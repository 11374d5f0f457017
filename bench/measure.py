#!/usr/bin/env python3
"""Process-level figures for BENCHMARKS.md, measured against the real binaries
and the real Docker engine: agent start -> registered, agent binary size and
linkage, agent idle RSS, and a warm redeploy through Launch against bare
`docker-compose up` + the same health wait on the same files.

Prints one `key: value` line per figure; bench/run turns them into BENCHMARKS.md.
Usage: bench/measure.py BIN_DIR STATIC_AGENT
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

from common import Bench, free_port, wait_line

BIN_DIR, STATIC_AGENT = sys.argv[1], sys.argv[2]
LAUNCH = os.path.join(BIN_DIR, "launch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTS = 20
REDEPLOYS = 5
run = Bench(BIN_DIR, "launch-bench-")
work, children, cli = run.work, run.children, run.cli


def http_ok(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return 200 <= r.status < 400
    except Exception:
        return False


def main():
    server = subprocess.Popen(
        [LAUNCH, "server", "--listen", "127.0.0.1:0", "--data-dir", f"{work}/server"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    children.append(server)
    url = wait_line(server, "launch server listening on ", 30)
    token = open(f"{work}/server/admin.token").read().strip()
    env = dict(os.environ, LAUNCH_ADDR=url, LAUNCH_TOKEN=token, NO_COLOR="1")

    # Agent process start -> registered and connected (a fresh join token and data dir each time).
    starts = []
    agent = None
    for i in range(STARTS):
        join = cli(env, "token", "create", "--service", f"bench{i}", "--env", "prod").strip()
        if agent:
            agent.terminate()
            agent.wait()
        begin = time.monotonic()
        agent = subprocess.Popen(
            [STATIC_AGENT, "run", "--control-url", url, "--labels", f"service-name=bench{i},environment=prod",
             "--data-dir", f"{work}/agent{i}", "--advertise-host", "127.0.0.1"],
            env=dict(os.environ, LAUNCH_AGENT_JOIN_TOKEN=join), stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        children.append(agent)
        wait_line(agent, "launch-agent connected as ", 30)
        starts.append((time.monotonic() - begin) * 1000)
    starts.sort()
    print(f"agent_start_registered_p50_ms: {statistics.median(starts):.1f}")
    print(f"agent_start_registered_max_ms: {starts[-1]:.1f}")

    time.sleep(5)
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{agent.pid}/status").read()).group(1))
    print(f"agent_idle_rss_mb: {rss_kb / 1024:.1f}")
    print(f"agent_binary_mb: {os.path.getsize(STATIC_AGENT) / 1e6:.1f}")
    ldd = subprocess.run(["ldd", STATIC_AGENT], capture_output=True, text=True)
    print(f"agent_ldd: {(ldd.stdout + ldd.stderr).strip().splitlines()[0].strip()}")
    agent.terminate()
    agent.wait()

    # Warm redeploy: a content change to the quickstart, through Launch vs bare compose.
    launch_dir, bare_dir = f"{work}/hello", f"{work}/bare"
    for d in (launch_dir, bare_dir):
        shutil.copytree(os.path.join(ROOT, "examples/quickstart"), d)
    launch_port, bare_port = free_port(), free_port()
    for d, port in ((launch_dir, launch_port), (bare_dir, bare_port)):
        for name in ("compose.yaml", "launch.toml"):
            p = os.path.join(d, name)
            text = open(p).read().replace("8080:8080", f"{port}:8080").replace("port = 8080", f"port = {port}")
            open(p, "w").write(text)
        open(os.path.join(d, ".env"), "w").close()
    service = f"benchhello{os.getpid()}"
    join = cli(env, "token", "create", "--service", service, "--env", "prod").strip()
    agent = subprocess.Popen(
        [STATIC_AGENT, "run", "--control-url", url, "--labels", f"service-name={service},environment=prod",
         "--data-dir", f"{work}/hello-agent", "--advertise-host", "127.0.0.1"],
        env=dict(os.environ, LAUNCH_AGENT_JOIN_TOKEN=join), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    children.append(agent)
    wait_line(agent, "launch-agent connected as ", 30)
    bare_project = f"{service}-bare"
    compose = ["docker-compose", "--ansi", "never", "-f", "compose.yaml", "-p", bare_project]
    launch_times, bare_times = [], []
    try:
        for i in range(REDEPLOYS + 1):
            for d in (launch_dir, bare_dir):
                open(os.path.join(d, "www/index.html"), "w").write(f"release {i}\n")
            begin = time.monotonic()
            cli(env, "deploy", launch_dir, "--service", service, "--env", "prod", "--wait")
            launch_s = time.monotonic() - begin
            begin = time.monotonic()
            subprocess.run([*compose, "up", "-d", "--build", "--remove-orphans"], cwd=bare_dir, check=True,
                           capture_output=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            while True:
                ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={bare_project}"],
                                     capture_output=True, text=True).stdout.split()
                health = subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", *ids],
                                        capture_output=True, text=True).stdout.split() if ids else []
                if health and all(h == "healthy" for h in health) and http_ok(bare_port):
                    break
                time.sleep(0.05)
            bare_s = time.monotonic() - begin
            if i > 0:  # the first round builds cold; the rest are warm redeploys
                launch_times.append(launch_s)
                bare_times.append(bare_s)
    finally:
        subprocess.run([*compose, "down", "--rmi", "local"], cwd=bare_dir, capture_output=True)
        agent.terminate()
        agent.wait()
        subprocess.run(["docker-compose", "-f", "compose.yaml", "-p", f"{service}-prod", "down", "--rmi", "local"],
                       cwd=launch_dir, capture_output=True)
    launch_med, bare_med = statistics.median(launch_times), statistics.median(bare_times)
    print(f"redeploy_launch_median_s: {launch_med:.2f}")
    print(f"redeploy_bare_compose_median_s: {bare_med:.2f}")
    print(f"redeploy_ratio: {launch_med / bare_med:.2f}")


with run:
    main()
