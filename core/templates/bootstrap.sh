#!/bin/sh
# Launch host bootstrap, rendered by terraform-provider-launch for {{service}}/{{environment}}.
# Installs Docker when missing, downloads launch-agent from the control plane,
# checks its sha256, and hands over to `launch-agent install`, which registers the
# host and keeps the agent running. EC2 runs this from cloud-init; a Proxmox
# container runs the same script over SSH.
set -eu

LAUNCH_CONTROL_URL={{control_url}}
LAUNCH_JOIN_TOKEN={{join_token}}
LAUNCH_LABELS={{labels}}

log() { echo "launch-bootstrap: $*" >&2; }

# Debian and Ubuntu package names; whatever is already there is kept.
export DEBIAN_FRONTEND=noninteractive
need=""
command -v docker >/dev/null 2>&1 || need="$need docker.io"
command -v curl >/dev/null 2>&1 || need="$need curl ca-certificates"
if [ -n "$need" ]; then
  log "installing$need"
  apt-get update -q
  # shellcheck disable=SC2086 # a list of package names
  apt-get install -y -q $need
fi
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  log "installing docker compose"
  apt-get install -y -q docker-compose-v2 || apt-get install -y -q docker-compose-plugin || apt-get install -y -q docker-compose
fi

case "$(uname -m)" in
  x86_64|amd64) arch=linux-amd64 ;;
  *) log "unsupported architecture $(uname -m): launch-agent is built for linux-amd64"; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "downloading launch-agent from $LAUNCH_CONTROL_URL"
curl -fsSL --retry 30 --retry-delay 2 --retry-connrefused \
  -o "$work/launch-agent" "$LAUNCH_CONTROL_URL/v1/agent/download/$arch"
curl -fsSL --retry 30 --retry-delay 2 --retry-connrefused \
  -o "$work/launch-agent.sha256" "$LAUNCH_CONTROL_URL/v1/agent/download/$arch.sha256"
(cd "$work" && sha256sum -c --quiet launch-agent.sha256)
install -m 0755 "$work/launch-agent" /usr/local/bin/launch-agent

/usr/local/bin/launch-agent install \
  --control-url "$LAUNCH_CONTROL_URL" \
  --join-token "$LAUNCH_JOIN_TOKEN" \
  --labels "$LAUNCH_LABELS"
log "launch-agent installed"
rm -f "$0"
