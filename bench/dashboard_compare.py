#!/usr/bin/env python3
"""The same dashboard requests against two `launch` builds on
bench/dashboard.py's fixture (1,000 services, 10,000 tags): suggestions for
a set of prefixes, search rows for a set of queries (two pages each) and
pages of the services list. Every answer must be byte-identical (the CSRF
token aside): a change meant to make these cheaper must not change them.
Usage: bench/dashboard_compare.py BEFORE_BIN_DIR AFTER_BIN_DIR
"""

import difflib
import os
import re
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashboard as d  # noqa: E402  (reads sys.argv[1], unused here)

SUGGEST = ["", "te", "team:c", "team:", "k", "key1:v1", "key1=V1", "s", "service:svc-00",
           "e", "env:", "env:p", "x", "a_", "%", "T"]
SEARCH = ["team:co env:prod", "team:CO", "svc-01", "key3:v", "key", "prod", "staging team:da",
          "service:svc-0 env:st", "nothing", "a_b", "%", "team: key9:v1"]


def answers(bin_dir):
    d.LAUNCH = os.path.join(bin_dir, "launch")
    d.work = tempfile.mkdtemp(prefix="launch-dash-compare-")
    d.data_dir = os.path.join(d.work, "server")
    port = d.free_port()
    d.stop(d.start(port))
    d.seed()
    token = open(os.path.join(d.data_dir, "admin.token")).read().strip()
    proc = d.start(port)
    paths = ["/fragments/suggest?q=" + urllib.parse.quote(q) for q in SUGGEST]
    paths += [f"/fragments/services?q={urllib.parse.quote(q)}&page={page}"
              for q in SEARCH for page in (1, 2)]
    paths += ["/", "/?page=3", "/?page=11"]
    out = {}
    try:
        conn, cookie = d.login(port, token)
        for path in paths:
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            body = re.sub(r'name="csrf" value="[^"]+"', "", response.read().decode())
            body = re.sub(r'content="[A-Za-z0-9_-]{20,}"', "", body)
            out[path] = (response.status, body)
    finally:
        d.stop(proc)
    return out


def main():
    before, after = answers(sys.argv[1]), answers(sys.argv[2])
    differ = [path for path in before if before[path] != after[path]]
    print(f"{len(before) - len(differ)}/{len(before)} answers identical")
    for path in differ:
        print(f"differs: {path} (status {before[path][0]} → {after[path][0]})")
        print("".join(list(difflib.unified_diff(
            before[path][1].splitlines(True), after[path][1].splitlines(True)))[:20]))
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
