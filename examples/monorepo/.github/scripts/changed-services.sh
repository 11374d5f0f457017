#!/usr/bin/env bash
# Prints, as a JSON array, the services to deploy: the directories under
# services/ that the commits between BEFORE and AFTER touched and that still
# exist (a deleted service has nothing to deploy). Without a usable BEFORE (a
# new branch, a force push, a manual run) every service is listed.
#
#   BEFORE  the commit before the push (github.event.before); may be empty
#           or all zeros
#   AFTER   the commit pushed (github.sha); default HEAD
# With GITHUB_OUTPUT set, also writes `services=<json>` there.
set -euo pipefail

before="${BEFORE:-}"
after="${AFTER:-HEAD}"

all_services() {
    for dir in services/*/; do
        [ -d "$dir" ] && basename "$dir"
    done
}

if [ -z "$before" ] || [[ "$before" =~ ^0+$ ]] || ! git cat-file -e "$before^{commit}" 2>/dev/null; then
    echo "No previous commit to compare with: deploying every service" >&2
    names="$(all_services)"
else
    names="$(git diff --name-only "$before" "$after" -- services/ | cut -d/ -f2 | sort -u)"
fi

services=()
while IFS= read -r name; do
    # Only directories that still exist and hold something to deploy.
    if [ -n "$name" ] && [ -d "services/$name" ]; then
        services+=("$name")
    fi
done <<<"$names"

json="$(printf '%s\n' "${services[@]+"${services[@]}"}" | jq -R . | jq -cs 'map(select(length > 0))')"
echo "Services to deploy: $json" >&2
echo "$json"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    echo "services=$json" >>"$GITHUB_OUTPUT"
fi
