#!/usr/bin/env python3
"""Dashboard figures for BENCHMARKS.md: the services page with 1,000 services
and 10,000 tags (10 per service), and the search's suggestions, against a
real `launch server`.

The fixture is written straight into the server's SQLite database between a
first start (which runs the migrations) and a second one: the benchmark
measures rendering and the in-process control calls, not 11,000 RPCs of
set-up. Each figure is RUNS (default 300) requests on a kept-alive connection
after WARMUP (default 20), p50 and p99 of the wall time to the last byte,
and the server's CPU time (user + system, from /proc) per measured request:
on a loaded machine the tails measure the scheduler more than the server,
the CPU time much less so.
Usage: bench/dashboard.py BIN_DIR
"""

import http.client
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse

BIN_DIR = sys.argv[1]
LAUNCH = os.path.join(BIN_DIR, "launch")
SERVICES = 1000
TAGS_PER_SERVICE = 10
RUNS = int(os.environ.get("RUNS", "300"))
WARMUP = int(os.environ.get("WARMUP", "20"))
work = tempfile.mkdtemp(prefix="launch-dash-bench-")
data_dir = os.path.join(work, "server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port):
    proc = subprocess.Popen(
        [LAUNCH, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("launch server listening"):
            return proc
    proc.kill()
    sys.exit("the server did not start within 30 s")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=20)


def seed():
    db = sqlite3.connect(os.path.join(data_dir, "launch.db"))
    now = int(time.time() * 1000)
    teams = ["core", "web", "data", "infra", "ml"]
    db.executemany(
        "INSERT INTO services (service, environment, created) VALUES (?, ?, ?)",
        [(f"svc-{i:04d}", ["prod", "staging"][i % 2], now) for i in range(SERVICES)],
    )
    tags = []
    for i in range(SERVICES):
        environment = ["prod", "staging"][i % 2]
        for k in range(TAGS_PER_SERVICE):
            value = teams[(i + k) % len(teams)] if k == 0 else f"v{(i * 7 + k) % 50}"
            tags.append((f"svc-{i:04d}", environment, "team" if k == 0 else f"key{k}", value, "cli", now))
    has_tags = db.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'service_tags'"
    ).fetchone()[0]
    if has_tags:
        db.executemany(
            "INSERT INTO service_tags (service, environment, key, value, source, updated) VALUES (?, ?, ?, ?, ?, ?)",
            tags,
        )
    db.commit()
    db.close()
    return len(tags) if has_tags else 0


def login(port, token):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/login")
    response = conn.getresponse()
    body = response.read().decode()
    login_cookie = response.getheader("Set-Cookie").split(";")[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
    form = urllib.parse.urlencode({"token": token, "csrf": csrf})
    conn.request(
        "POST",
        "/login",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie},
    )
    response = conn.getresponse()
    response.read()
    cookies = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
    session = next(c.split(";")[0] for c in cookies if c.startswith("launch_session="))
    return conn, session


def cpu_seconds(pid):
    """The process's user + system CPU time so far; None off Linux."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(conn, cookie, path, pid):
    times = []
    size = 0
    cpu_before = None
    for i in range(WARMUP + RUNS):
        if i == WARMUP:
            cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": cookie})
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            sys.exit(f"GET {path}: {response.status} {body[:200]!r}")
        if i >= WARMUP:
            times.append(elapsed * 1000)
            size = len(body)
    cpu_after = cpu_seconds(pid)
    times.sort()
    p = lambda q: times[round((len(times) - 1) * q)]
    cpu = ""
    if cpu_before is not None and cpu_after is not None:
        cpu = f", server CPU {(cpu_after - cpu_before) * 1000 / RUNS:.2f} ms/request"
    return f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, {size} bytes{cpu}"


def main():
    port = free_port()
    stop(start(port))
    tags = seed()
    token = open(os.path.join(data_dir, "admin.token")).read().strip()
    proc = start(port)
    try:
        conn, cookie = login(port, token)
        pid = proc.pid
        rows = measure(conn, cookie, "/", pid)
        print(f"services page ({SERVICES} services, {tags} tags): {rows}")
        print(f"search rows (q=team:co env:prod): {measure(conn, cookie, '/fragments/services?q=team%3Aco+env%3Aprod', pid)}")
        print(f"suggestions (q=te): {measure(conn, cookie, '/fragments/suggest?q=te', pid)}")
        print(f"suggestions (q=team:c): {measure(conn, cookie, '/fragments/suggest?q=team%3Ac', pid)}")
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
