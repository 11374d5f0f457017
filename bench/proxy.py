#!/usr/bin/env python3
"""The front door side by side, on one host and one upstream, in one run:
requests/s and p50/p99 latency with `wrk` direct to a static upstream (Debian's
`caddy` answering `respond "hello"`), through the agent's front door and
through Debian's `caddy` `reverse_proxy` (both over plain HTTP and over HTTPS
with the same ECDSA P-256 certificate, TLS 1.3 and keep-alive); the p99 each
proxy adds at a fixed ~1,000 req/s; the agent's RSS growth with 100 routes
(each with its own certificate, each served once over HTTPS); the static
agent binary's size.

The agent is the real static binary, registered with a real `launch server`;
its route table and user-given certificates are written to its data dir
before it starts, as a deploy would have left them.

Prints one `key: value` line per figure; bench/proxy-section turns them into
the front-door section of BENCHMARKS.md.
Usage: bench/proxy.py BIN_DIR STATIC_AGENT
"""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

from common import Bench, free_port, wait_line, wait_port

BIN_DIR, STATIC_AGENT = sys.argv[1], sys.argv[2]
LAUNCH = os.path.join(BIN_DIR, "launch")
DURATION = os.environ.get("BENCH_PROXY_DURATION", "10s")
CONNECTIONS = 50
ROUTES = 100
run = Bench(BIN_DIR, "launch-proxy-bench-")
work, children, cli, spawn = run.work, run.children, run.cli, run.spawn

# wrk prints these lines at the end of a run.
REPORT = r"""
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("rps %f\np50 %f\np99 %f\nerrors %d\nrequests %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errors, summary.requests))
end
"""
# Each connection waits 10 ms before each request: 10 connections ≈ 1,000 req/s.
FIXED_RATE = "delay = function() return 10 end\n" + REPORT


def rss_mb(pid):
    kb = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
    return kb / 1024


def certificate(host, directory):
    """A self-signed ECDSA P-256 pair for `host`: (cert path, key path)."""
    cert, key = f"{directory}/{host}.crt", f"{directory}/{host}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "30", "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    return cert, key


def wrk(url, script, connections=CONNECTIONS):
    path = f"{work}/script-{abs(hash(script))}.lua"
    with open(path, "w") as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", DURATION, "-s", path, url],
        capture_output=True, text=True, timeout=600, check=True).stdout
    figures = dict(line.split(" ", 1) for line in out.splitlines() if re.match(r"^(rps|p50|p99|errors|requests) ", line))
    return {k: float(v) for k, v in figures.items()}


def agent_dir(name, routes, upstream, pair_for):
    """A data dir holding a route table (route -> hosts, all to `upstream`)
    and a user-given certificate for every host (`pair_for(host)`: cert, key)."""
    data = f"{work}/{name}"
    os.makedirs(f"{data}/ingress", mode=0o700)
    os.makedirs(f"{data}/tls/user", mode=0o700)
    table = {"routes": {}}
    for route, hosts in routes.items():
        table["routes"][route] = {"hosts": hosts, "upstream": f"127.0.0.1:{upstream}", "release_id": "r-bench"}
        for host in hosts:
            cert, key = pair_for(host)
            path = f"{data}/tls/user/{host}.pem"
            with open(path, "w") as f:
                f.write(open(key).read() + open(cert).read())
            os.chmod(path, 0o600)
    with open(f"{data}/ingress/routes.json", "w") as f:
        json.dump(table, f)
    return data


def start_agent(env, url, name, data):
    join = cli(env, "token", "create", "--service", name, "--env", "prod").strip()
    http, https = free_port(), free_port()
    agent = subprocess.Popen(
        [STATIC_AGENT, "run", "--control-url", url, "--labels", f"service-name={name},environment=prod",
         "--data-dir", data, "--advertise-host", "127.0.0.1", "--ingress", "on",
         "--http-listen", f"127.0.0.1:{http}", "--https-listen", f"127.0.0.1:{https}",
         # A private ACME server that is never asked (every name has a user
         # certificate), so `*.localhost` names are served over TLS.
         "--acme-directory", "https://127.0.0.1:9/directory",
         "--acme-ca-root", "/etc/ssl/certs/ca-certificates.crt"],
        env=dict(os.environ, LAUNCH_AGENT_JOIN_TOKEN=join, RUST_LOG="warn"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    children.append(agent)
    wait_line(agent, "launch-agent connected as ", 30)
    wait_port(http)
    wait_port(https)
    return agent, http, https


def https_get(port, host):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    status = data.split(b" ", 2)[1]
    if status != b"200":
        raise SystemExit(f"bench: https://{host}:{port}/ answered {data[:200]!r}")


def main():
    os.chmod(work, 0o755)
    # The upstream: caddy answering a 5-byte body on every path.
    upstream = free_port()
    with open(f"{work}/upstream.caddy", "w") as f:
        f.write("{\n admin off\n auto_https off\n}\n"
                f":{upstream} {{\n bind 127.0.0.1\n respond \"hello\" 200\n}}\n")
    spawn(["caddy", "run", "--config", f"{work}/upstream.caddy", "--adapter", "caddyfile"],
          stdout=subprocess.DEVNULL)
    wait_port(upstream)

    # Caddy as the proxy to compare with, on the same certificate as the agent.
    cert, key = certificate("localhost", work)
    caddy_http, caddy_https = free_port(), free_port()
    with open(f"{work}/proxy.caddy", "w") as f:
        f.write("{\n admin off\n auto_https disable_redirects\n skip_install_trust\n}\n"
                f"https://localhost:{caddy_https} {{\n tls {cert} {key}\n reverse_proxy 127.0.0.1:{upstream}\n}}\n"
                f"http://localhost:{caddy_http} {{\n reverse_proxy 127.0.0.1:{upstream}\n}}\n")
    spawn(["caddy", "run", "--config", f"{work}/proxy.caddy", "--adapter", "caddyfile"],
          stdout=subprocess.DEVNULL)
    wait_port(caddy_http)
    wait_port(caddy_https)

    server = subprocess.Popen(
        [LAUNCH, "server", "--listen", "127.0.0.1:0", "--data-dir", f"{work}/server"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    children.append(server)
    url = wait_line(server, "launch server listening on ", 30)
    token = open(f"{work}/server/admin.token").read().strip()
    env = dict(os.environ, LAUNCH_ADDR=url, LAUNCH_TOKEN=token, NO_COLOR="1")

    # The agent's front door: one route, `localhost`, with caddy's certificate.
    data = agent_dir("one", {"bench": ["localhost"]}, upstream, lambda _: (cert, key))
    agent, agent_http, agent_https = start_agent(env, url, "proxybench", data)
    https_get(agent_https, "localhost")

    targets = [
        ("direct", f"http://localhost:{upstream}/"),
        ("launch_http", f"http://localhost:{agent_http}/"),
        ("caddy_http", f"http://localhost:{caddy_http}/"),
        ("launch_https", f"https://localhost:{agent_https}/"),
        ("caddy_https", f"https://localhost:{caddy_https}/"),
    ]
    # Two rounds, interleaved, so a noisy moment hits every target alike; the
    # better round of each counts.
    best = {}
    for _ in range(2):
        for name, target in targets:
            result = wrk(target, REPORT)
            if result["errors"] > 0:
                raise SystemExit(f"bench: {name}: {result['errors']:.0f} failed requests")
            if name not in best or result["rps"] > best[name]["rps"]:
                best[name] = result
    for name, _ in targets:
        r = best[name]
        print(f"{name}_rps: {r['rps']:.0f}")
        print(f"{name}_p50_ms: {r['p50']:.2f}")
        print(f"{name}_p99_ms: {r['p99']:.2f}")
    for proxy in ("launch", "caddy"):
        for tls in ("http", "https"):
            print(f"{proxy}_{tls}_vs_direct: {best[f'{proxy}_{tls}']['rps'] / best['direct']['rps']:.2f}")
    for tls in ("http", "https"):
        print(f"launch_vs_caddy_{tls}: {best[f'launch_{tls}']['rps'] / best[f'caddy_{tls}']['rps']:.2f}")

    fixed = {name: wrk(target, FIXED_RATE, connections=10) for name, target in targets}
    for name, _ in targets:
        print(f"fixed_{name}_rps: {fixed[name]['rps']:.0f}")
        print(f"fixed_{name}_p99_ms: {fixed[name]['p99']:.2f}")
    for name, _ in targets[1:]:
        print(f"fixed_{name}_p99_added_ms: {fixed[name]['p99'] - fixed['direct']['p99']:.2f}")
    agent.terminate()
    agent.wait()

    # RSS growth: an agent with no route against one with 100 routes, each
    # with its own certificate and served once over HTTPS.
    empty, _, _ = start_agent(env, url, "rss0", agent_dir("rss0", {}, upstream, None))
    routes = {f"r{i}": [f"r{i}.localhost"] for i in range(ROUTES)}
    many_data = agent_dir("rss100", routes, upstream, lambda host: certificate(host, work))
    many, _, many_https = start_agent(env, url, "rss100", many_data)
    for i in range(ROUTES):
        https_get(many_https, f"r{i}.localhost")
    time.sleep(6)  # a heartbeat with the 100 routes' report has gone out
    base, loaded = rss_mb(empty.pid), rss_mb(many.pid)
    print(f"agent_rss_no_routes_mb: {base:.1f}")
    print(f"agent_rss_100_routes_mb: {loaded:.1f}")
    print(f"agent_rss_growth_100_routes_mb: {loaded - base:.1f}")
    print(f"agent_binary_mb: {os.path.getsize(STATIC_AGENT) / 1e6:.1f}")
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    print("wrk: wrk " + re.search(r"(\d+\.\d+\.\d+)", version).group(1))
    print(f"caddy: {subprocess.run(['caddy', 'version'], capture_output=True, text=True).stdout.split()[0]}")


with run:
    main()
