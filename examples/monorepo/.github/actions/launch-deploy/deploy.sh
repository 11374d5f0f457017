#!/usr/bin/env bash
# The launch-deploy action: fetch the launch CLI from the control plane, check
# its sha256, run `launch deploy --wait` and report the outcome to GitHub.
#
# Inputs (the action sets them from its `with:`):
#   INPUT_CONTROL_URL  control plane, e.g. http://10.0.0.5:7400
#   INPUT_TOKEN        deploy-scoped API token
#   INPUT_SERVICE_DIR  directory to deploy
#   INPUT_ENVIRONMENT  environment (default prod)
#   INPUT_TIMEOUT      how long --wait waits (default 10m)
#   INPUT_PREVIEW      optional: deploy this preview (e.g. pr-123) instead
#   INPUT_REMOVE_PREVIEW  "true": tear INPUT_PREVIEW down instead of deploying
#   LAUNCH_CLI         optional: path of a launch binary to use instead of
#                      downloading one (self-hosted runners, tests)
# Writes url, release-id and state to $GITHUB_OUTPUT and a summary to
# $GITHUB_STEP_SUMMARY. Exits with launch's own code: 0 healthy, 1 failed or
# rolled back, 2 bad input, 3 control plane unreachable or token refused.
set -euo pipefail

error() { printf '::error title=launch deploy::%s\n' "$*" >&2; }

control_url="${INPUT_CONTROL_URL:-}"
token="${INPUT_TOKEN:-}"
service_dir="${INPUT_SERVICE_DIR:-}"
environment="${INPUT_ENVIRONMENT:-prod}"
timeout="${INPUT_TIMEOUT:-10m}"
preview="${INPUT_PREVIEW:-}"
remove_preview="${INPUT_REMOVE_PREVIEW:-false}"
[ -n "$environment" ] || environment=prod
[ -n "$timeout" ] || timeout=10m
control_url="${control_url%/}"

if [ -z "$control_url" ]; then
    error "control-url is empty: pass the control plane's address, e.g. control-url: \${{ secrets.LAUNCH_CONTROL_URL }}"
    exit 2
fi
if [ -z "$token" ]; then
    error "token is empty: store a deploy token (launch token create --scope deploy --service '*' --env prod) as a repository secret and pass token: \${{ secrets.LAUNCH_DEPLOY_TOKEN }} (secrets are not given to workflows from forks)"
    exit 2
fi
if [ ! -d "$service_dir" ]; then
    error "service-dir '$service_dir' is not a directory in $(pwd): check out the repository first (actions/checkout) and pass a path such as services/hello"
    exit 2
fi
# Without jq the outcome cannot be read and the job would pass with an empty
# url and state: refuse before deploying anything.
if ! command -v jq >/dev/null 2>&1; then
    error "jq is not installed on this runner: install it (apt-get install jq); a self-hosted runner needs git, curl, jq and unzip"
    exit 2
fi
# Belt and braces: a token from a secret is masked already, one from
# elsewhere is not.
printf '::add-mask::%s\n' "$token"

work="$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/launch-deploy.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- the CLI -------------------------------------------------------------------
if [ -n "${LAUNCH_CLI:-}" ]; then
    cli="$LAUNCH_CLI"
    [ -x "$cli" ] || { error "LAUNCH_CLI=$cli is not an executable file"; exit 2; }
else
    download="$control_url/v1/cli/download/linux-amd64"
    cli="$work/launch"
    echo "Downloading the launch CLI from $download"
    if ! curl -fsSL --retry 3 --connect-timeout 10 -H "Authorization: Bearer $token" \
        -o "$work/launch.download" "$download"; then
        error "could not download the launch CLI from $download: check that control-url is right and that the control plane is reachable from this runner"
        exit 3
    fi
    if ! curl -fsSL --retry 3 --connect-timeout 10 -H "Authorization: Bearer $token" \
        -o "$work/launch.sha256" "$download.sha256"; then
        error "could not download $download.sha256: the CLI cannot be checked, so it is not run"
        exit 3
    fi
    # The checksum file is "<hex>  launch"; only the hex matters.
    expected="$(cut -d' ' -f1 <"$work/launch.sha256" | tr -d '\r\n')"
    actual="$(sha256sum "$work/launch.download" | cut -d' ' -f1)"
    if ! [[ "$expected" =~ ^[0-9a-f]{64}$ ]]; then
        error "$download.sha256 does not hold a sha256 (got '$expected'): is control-url a Launch control plane?"
        exit 3
    fi
    if [ "$expected" != "$actual" ]; then
        error "sha256 mismatch for the launch CLI: $download.sha256 says $expected, the download is $actual; not running it"
        exit 3
    fi
    chmod 0755 "$work/launch.download"
    mv "$work/launch.download" "$cli"
fi

# --- a preview's teardown ------------------------------------------------------
if [ "$remove_preview" = "true" ]; then
    if [ -z "$preview" ]; then
        error "remove-preview needs preview: pass the preview's name, e.g. preview: pr-\${{ github.event.pull_request.number }}"
        exit 2
    fi
    echo "Removing preview $preview of $service_dir in $environment"
    LAUNCH_ADDR="$control_url" LAUNCH_TOKEN="$token" \
        "$cli" previews rm "$preview" --dir "$service_dir" --env "$environment"
    exit $?
fi

# --- the deploy ----------------------------------------------------------------
# The release records where it came from: `launch deploy` reads the repository
# from GITHUB_REPOSITORY; on a pull_request run GITHUB_REF is
# refs/pull/<N>/merge, which names the pull request the control plane comments on.
source_args=()
if [[ "${GITHUB_REF:-}" =~ ^refs/pull/([0-9]+)/ ]]; then
    source_args=(--pr "${BASH_REMATCH[1]}")
fi
if [ -n "$preview" ]; then
    source_args+=(--preview "$preview")
fi
# With --output json, launch prints each log line on stderr as it arrives
# (so it streams into the job log) and one JSON object on stdout at the end.
echo "Deploying $service_dir to $environment (waiting up to $timeout)"
set +e
LAUNCH_ADDR="$control_url" LAUNCH_TOKEN="$token" \
    "$cli" deploy "$service_dir" --env "$environment" --wait --timeout "$timeout" --output json \
    "${source_args[@]}" >"$work/result.json"
code=$?
set -e

field() { jq -r --arg k "$1" '.[$k] // "" | tostring' "$work/result.json" 2>/dev/null || true; }
state="$(field state)"
url="$(field url)"
release_id="$(field release_id)"
running_release_id="$(field running_release_id)"
message="$(field message)"
# action.yml promises an empty url when the deploy failed: a rolled-back
# deploy still reports the URL of the release that kept running.
if [ "$code" -ne 0 ]; then
    url=""
fi

if [ -n "${GITHUB_OUTPUT:-}" ]; then
    {
        echo "url=$url"
        echo "release-id=$release_id"
        echo "state=$state"
    } >>"$GITHUB_OUTPUT"
fi

if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    {
        echo "### launch deploy \`$service_dir\` → $environment"
        echo
        if [ "$code" -eq 0 ]; then
            echo "**healthy**: ${url:-"(no URL reported)"}"
        else
            echo "**${state:-failed}** (exit $code): ${message:-see the job log}"
        fi
        echo
        echo "| release | running release |"
        echo "|---|---|"
        echo "| \`${release_id:--}\` | \`${running_release_id:--}\` |"
    } >>"$GITHUB_STEP_SUMMARY"
fi

if [ "$code" -eq 0 ]; then
    echo "healthy: ${url:-$release_id}"
else
    error "deploy of $service_dir to $environment ended ${state:-with an error} (launch exit code $code)${message:+: $message}"
fi
exit "$code"
