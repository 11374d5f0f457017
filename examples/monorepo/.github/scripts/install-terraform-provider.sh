#!/usr/bin/env bash
# Makes terraform-provider-launch installable for terraform on a runner, since
# the provider is in no public registry. Two ways:
#
# - From the control plane (the default when LAUNCH_PROVIDER_URL is empty and
#   LAUNCH_ADDR is https://): writes a CLI config whose network_mirror is the
#   control plane's /v1/terraform/providers/ (Terraform's provider network
#   mirror protocol; it needs HTTPS).
# - From a URL: downloads the linux-amd64 binary, checks its sha256 and lays
#   it out as a filesystem mirror for launch/launch.
#
# Either way the registry serves every other provider, `terraform init`
# works as usual, backend included, and checks the provider against the
# hashes in the committed .terraform.lock.hcl.
#
#   LAUNCH_ADDR              the control plane (https:// for the network mirror)
#   LAUNCH_PROVIDER_URL      where the binary is (https://, or file:// for a local build)
#   LAUNCH_PROVIDER_SHA256   its sha256; empty: read from LAUNCH_PROVIDER_URL.sha256
#   LAUNCH_PROVIDER_VERSION  the version to record (default 0.1.0)
#   MIRROR_DIR               where to put the mirror and config (default $RUNNER_TEMP/launch-provider)
# Writes TF_CLI_CONFIG_FILE to $GITHUB_ENV when set, and prints its path.
set -euo pipefail

url="${LAUNCH_PROVIDER_URL:-}"
version="${LAUNCH_PROVIDER_VERSION:-0.1.0}"
expected="${LAUNCH_PROVIDER_SHA256:-}"
mirror="${MIRROR_DIR:-${RUNNER_TEMP:-/tmp}/launch-provider}"

control="${LAUNCH_ADDR:-}"
control="${control%/}"
if [ -z "$url" ] && [[ "$control" == https://* ]]; then
    mkdir -p "$mirror"
    config="$mirror/terraform.rc"
    cat >"$config" <<RC
provider_installation {
  network_mirror {
    url     = "$control/v1/terraform/providers/"
    include = ["registry.terraform.io/launch/launch"]
  }
  direct {
    exclude = ["registry.terraform.io/launch/launch"]
  }
}
RC
    if [ -n "${GITHUB_ENV:-}" ]; then
        echo "TF_CLI_CONFIG_FILE=$config" >>"$GITHUB_ENV"
    fi
    echo "$config"
    exit 0
fi
if [ -z "$url" ]; then
    echo "::error::no way to install the provider: give the control plane an https:// address (secret LAUNCH_CONTROL_URL; it serves the provider as a network mirror), or set the repository variable LAUNCH_PROVIDER_URL to where a linux-amd64 terraform-provider-launch binary can be downloaded" >&2
    exit 2
fi
if [ -z "$expected" ]; then
    if ! sums="$(curl -fsSL --retry 3 "$url.sha256")"; then
        echo "::error::could not download $url.sha256: publish the binary's sha256 beside it (sha256sum output) or set the repository variable LAUNCH_PROVIDER_SHA256" >&2
        exit 2
    fi
    expected="$(printf '%s' "$sums" | cut -d' ' -f1 | tr -d '\r\n')"
fi
# sha256sum prints lower case; other tools print upper case.
expected="$(printf '%s' "$expected" | tr 'A-F' 'a-f')"
if ! [[ "$expected" =~ ^[0-9a-f]{64}$ ]]; then
    echo "::error::no sha256 for $url (got '$expected'): set LAUNCH_PROVIDER_SHA256 or publish $url.sha256" >&2
    exit 2
fi

dir="$mirror/registry.terraform.io/launch/launch/$version/linux_amd64"
mkdir -p "$dir"
binary="$dir/terraform-provider-launch_v$version"
curl -fsSL --retry 3 -o "$binary.download" "$url"
actual="$(sha256sum "$binary.download" | cut -d' ' -f1)"
if [ "$actual" != "$expected" ]; then
    rm -f "$binary.download"
    echo "::error::sha256 mismatch for $url: expected $expected, got $actual" >&2
    exit 1
fi
chmod 0755 "$binary.download"
mv "$binary.download" "$binary"

config="$mirror/terraform.rc"
cat >"$config" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/launch/launch"]
  }
  direct {
    exclude = ["registry.terraform.io/launch/launch"]
  }
}
RC
if [ -n "${GITHUB_ENV:-}" ]; then
    echo "TF_CLI_CONFIG_FILE=$config" >>"$GITHUB_ENV"
fi
echo "$config"
