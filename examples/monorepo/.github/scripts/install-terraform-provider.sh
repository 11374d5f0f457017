#!/usr/bin/env bash
# Installs terraform-provider-launch for terraform from a URL, because the
# provider is not in the public registry yet: downloads the linux-amd64
# binary, checks its sha256, lays it out as a filesystem mirror for
# launch/launch and writes a CLI config that uses the mirror for it (and the
# registry for everything else). `terraform init` then works as usual,
# backend included, and records the provider in .terraform.lock.hcl.
#
#   LAUNCH_PROVIDER_URL      where the binary is (https://, or file:// for a local build)
#   LAUNCH_PROVIDER_SHA256   its sha256; empty: read from LAUNCH_PROVIDER_URL.sha256
#   LAUNCH_PROVIDER_VERSION  the version to record (default 0.1.0)
#   MIRROR_DIR               where to put the mirror (default $RUNNER_TEMP/launch-provider)
# Writes TF_CLI_CONFIG_FILE to $GITHUB_ENV when set, and prints its path.
set -euo pipefail

url="${LAUNCH_PROVIDER_URL:-}"
version="${LAUNCH_PROVIDER_VERSION:-0.1.0}"
expected="${LAUNCH_PROVIDER_SHA256:-}"
mirror="${MIRROR_DIR:-${RUNNER_TEMP:-/tmp}/launch-provider}"

if [ -z "$url" ]; then
    echo "::error::LAUNCH_PROVIDER_URL is empty: set the repository variable LAUNCH_PROVIDER_URL to where a linux-amd64 terraform-provider-launch binary can be downloaded" >&2
    exit 2
fi
if [ -z "$expected" ]; then
    expected="$(curl -fsSL --retry 3 "$url.sha256" | cut -d' ' -f1 | tr -d '\r\n')"
fi
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
