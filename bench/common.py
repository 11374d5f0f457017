"""What every bench/ script needs around the real binaries: free loopback
ports, waiting for a port or a printed line with a deadline, running the
`launch` CLI, and children that are stopped (and a work dir removed) however
the script ends. One copy, so a fix to a wait or to the cleanup reaches every
benchmark.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time


class Bench:
    """A benchmark run: its `launch` binary, work dir and child processes.
    Use as a context manager; leaving it stops the children (terminate, then
    kill after 10 s) and removes the work dir."""

    def __init__(self, bin_dir, prefix):
        self.launch = os.path.join(bin_dir, "launch")
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.children = []

    def __enter__(self):
        return self

    def __exit__(self, *_):
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(self.work, ignore_errors=True)
        return False

    def spawn(self, args, **kwargs):
        """Starts a child that is stopped when the run ends; stderr is
        dropped unless the caller routes it."""
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(args, **kwargs)
        self.children.append(proc)
        return proc

    def cli(self, env, *args):
        """Runs `launch ARGS`; a failure ends the benchmark with its stderr."""
        out = subprocess.run([self.launch, *args], env=env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"bench: launch {' '.join(args)} failed: {out.stderr}")
        return out.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: nothing listens on {port} after {timeout}s")


def wait_line(proc, prefix, timeout):
    """The rest of the first stdout line of `proc` starting with `prefix`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix):].strip()
        if not line and proc.poll() is not None:
            break
    raise SystemExit(f"bench: no {prefix!r} line within {timeout}s")
