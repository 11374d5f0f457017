"""The `target = "docker"` phase of bench/provider.py: N `launch_service`
resources whose hosts are systemd containers on the local Docker engine,
bootstrapped through `docker exec` against the run's real `launch server`
(the static agent it serves is what each host downloads). Times `terraform
apply` (every host created and its agent registered: `wait_for_agent` is on),
the plans with and without refresh against N `terraform_data` in the same
run, and `terraform destroy`; then checks that nothing is left: no host
container, no network, no unrevoked agent. Every name carries a run id, so it
runs beside the tests; whatever fails, the containers of the run are removed.

Prints `docker_*` `key: value` lines like the rest of bench/provider.py.
"""

import json
import os
import secrets
import statistics
import subprocess
import time


def docker(*args, check=True):
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise SystemExit(f"bench: docker {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def host_image(root):
    """The systemd host image of the tests (built once, then cached by its hash)."""
    out = subprocess.run(["bash", os.path.join(root, "tests/host-image/build.sh")],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"bench: tests/host-image/build.sh failed:\n{out.stderr}")
    return out.stdout.strip()


def containers(prefix):
    """Names of the run's host containers (`launch-<prefix>-<i>-prod`), stopped ones too."""
    names = docker("ps", "-a", "--filter", f"name=launch-{prefix}-", "--format", "{{.Names}}")
    return [n for n in names.split() if n.startswith(f"launch-{prefix}-")]


def networks(prefix):
    """Networks named after the run's services (their compose projects)."""
    names = docker("network", "ls", "--filter", f"name={prefix}-", "--format", "{{.Name}}")
    return [n for n in names.split() if n.startswith(f"{prefix}-")]


def agents(launch, env, prefix):
    """The unrevoked agents whose service is one of the run's."""
    out = subprocess.run([launch, "agents", "--output", "json"], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"bench: launch agents failed: {out.stderr}")
    listed = json.loads(out.stdout)
    if isinstance(listed, dict):
        listed = listed.get("agents", [])
    return [a for a in listed
            if a.get("labels", {}).get("service-name", "").startswith(f"{prefix}-")
            and not a.get("revoked")]


def cleanup(prefix):
    """Removes whatever of the run is left; never fails."""
    try:
        for name in containers(prefix):
            docker("rm", "-f", "-v", name, check=False)
        for name in networks(prefix):
            docker("network", "rm", name, check=False)
    except Exception as e:  # the run's own failure is the one to show
        print(f"bench: cleanup of {prefix}: {e}", flush=True)


def mib(text):
    """`12.5MiB` / `1.2GiB` / `800KiB` (docker stats) in MiB."""
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1e3 / 2**20, "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise SystemExit(f"bench: cannot read the memory figure {text!r} of docker stats")


def memory(names):
    """Median memory use per host container (docker stats), and the median
    VmRSS of the agent in a sample of them."""
    stats = docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names)
    # A busy engine answers 0B for containers whose cgroup it did not read
    # in time: those are no figure, not an empty host.
    used = [m for m in (mib(line.split()[1]) for line in stats.splitlines() if line.strip()) if m > 0]
    agent = []
    for name in names[:10]:
        out = docker("exec", name, "sh", "-c",
                     "grep VmRSS /proc/$(pidof launch-agent | cut -d' ' -f1)/status", check=False)
        if out.split()[1:2]:
            agent.append(int(out.split()[1]) / 1024)
    return (statistics.median(used) if used else float("nan"),
            statistics.median(agent) if agent else float("nan"))


def phase(tf, run, timed_plan, env, launch, root, work, count, runs, before=None):
    """The docker phase; `run` and `timed_plan` are bench/provider.py's.
    `before`: another provider build's directory, whose refresh plans of the
    same hosts are timed too, interleaved (before/after in one run)."""
    prefix = f"bd{secrets.token_hex(3)}"
    image = host_image(root)
    services = f"{work}/docker-services"
    data = f"{work}/docker-data"
    os.makedirs(services)
    os.makedirs(data)
    with open(f"{services}/main.tf", "w") as f:
        f.write('terraform {\n  required_providers {\n    launch = { source = "launch/launch" }\n  }\n}\n')
        f.write('provider "launch" {\n  docker {\n    host = "unix:///var/run/docker.sock"\n  }\n}\n')
        f.write(f'resource "launch_service" "s" {{\n  count  = {count}\n  name   = "{prefix}-${{count.index}}"\n'
                f'  target = "docker"\n  docker {{\n    image = "{image}"\n  }}\n}}\n')
    with open(f"{data}/main.tf", "w") as f:
        f.write(f'resource "terraform_data" "d" {{\n  count = {count}\n  input = "{prefix}-${{count.index}}"\n}}\n')
    apply = ("apply", "-auto-approve", "-no-color", "-input=false")
    try:
        load = os.getloadavg()[0]
        start = time.monotonic()
        run(tf, services, env, *apply, timeout=7200)
        apply_s = time.monotonic() - start
        hosts = containers(prefix)
        registered = agents(launch, env, prefix)
        if len(hosts) != count or len(registered) != count:
            raise SystemExit(f"bench: after apply {len(hosts)} host containers and {len(registered)} "
                             f"agents, expected {count} of each")
        container_mib, agent_mib = memory(hosts)
        run(tf, data, env, *apply)

        times = {"launch": [], "launch_no_refresh": [], "data": [], "data_no_refresh": []}
        if before:
            rc = f"{work}/terraform-before.rc"
            with open(rc, "w") as f:
                f.write('provider_installation {\n  dev_overrides {\n    "launch/launch" = "%s"\n  }\n'
                        '  direct {}\n}\n' % os.path.abspath(before))
            env_before = {**env, "TF_CLI_CONFIG_FILE": rc}
            times["before"] = []
        for _ in range(runs):
            if before:
                times["before"].append(timed_plan(tf, services, env_before))
            times["launch"].append(timed_plan(tf, services, env))
            times["launch_no_refresh"].append(timed_plan(tf, services, env, "-refresh=false"))
            times["data"].append(timed_plan(tf, data, env))
            times["data_no_refresh"].append(timed_plan(tf, data, env, "-refresh=false"))
        med = {k: statistics.median(v) for k, v in times.items()}

        start = time.monotonic()
        run(tf, services, env, "destroy", "-auto-approve", "-no-color", "-input=false", timeout=7200)
        destroy_s = time.monotonic() - start
        deadline = time.monotonic() + 60
        while (left := agents(launch, env, prefix)) and time.monotonic() < deadline:
            time.sleep(1)
        hosts, nets = containers(prefix), networks(prefix)
        if hosts or nets or left:
            raise SystemExit(f"bench: destroy left {len(hosts)} containers {hosts[:5]}, "
                             f"{len(nets)} networks {nets[:5]} and {len(left)} unrevoked agents")
    finally:
        cleanup(prefix)

    per_resource = lambda ours, theirs: (med[ours] - med[theirs]) * 1000 / count
    print(f"docker_count: {count}")
    print(f"docker_load_at_start: {load:.2f}")
    print(f"docker_apply_s: {apply_s:.1f}")
    print(f"docker_apply_per_host_s: {apply_s / count:.2f}")
    print(f"docker_plan_s: {med['launch']:.2f}")
    print(f"docker_plan_no_refresh_s: {med['launch_no_refresh']:.2f}")
    print(f"docker_plan_terraform_data_s: {med['data']:.2f}")
    print(f"docker_plan_terraform_data_no_refresh_s: {med['data_no_refresh']:.2f}")
    print(f"docker_per_resource_refresh_ms: {per_resource('launch', 'data'):.2f}")
    if before:
        print(f"docker_plan_before_s: {med['before']:.2f}")
        print(f"docker_per_resource_refresh_before_ms: {per_resource('before', 'data'):.2f}")
    print(f"docker_per_resource_no_refresh_ms: {per_resource('launch_no_refresh', 'data_no_refresh'):.2f}")
    print(f"docker_destroy_s: {destroy_s:.1f}")
    print(f"docker_container_mem_mib: {container_mib:.1f}")
    print(f"docker_agent_rss_mib: {agent_mib:.1f}")
    print("docker_left_after_destroy: 0 containers, 0 networks, 0 unrevoked agents")
