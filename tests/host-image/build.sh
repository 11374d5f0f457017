#!/usr/bin/env bash
# Builds, once, the image the boot tests run as a "host": Debian bookworm from
# debootstrap (minbase) with systemd as PID 1, cloud-init reading only a
# NoCloud seed, docker-compose, and a docker CLI that talks to the test
# machine's engine through a mounted socket (no daemon runs inside). Prints
# the image tag. The tag is the hash of this recipe (and of the docker CLI it
# copies), so later runs skip debootstrap; concurrent callers wait on a lock.
set -euo pipefail

docker_cli="$(command -v docker)"
# A static docker CLI is copied in; otherwise Debian's docker.io provides one.
if ldd "$docker_cli" >/dev/null 2>&1; then static_cli=no; else static_cli=yes; fi
hash="$({
    cat "${BASH_SOURCE[0]}"
    if [ "$static_cli" = yes ]; then sha256sum <"$docker_cli"; fi
} | sha256sum | cut -c1-16)"
tag="launch-test-host:$hash"

exec 9>"${TMPDIR:-/tmp}/launch-test-host.lock"
flock 9
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/var/tmp}/launch-test-host.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
# python3-cffi-backend: debootstrap does not resolve the virtual package cryptography needs.
packages=systemd,systemd-sysv,dbus,cloud-init,python3-cffi-backend,curl,ca-certificates,docker-compose,iproute2,procps,openssh-server
[ "$static_cli" = yes ] || packages="$packages,docker.io"
mirror="${LAUNCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
echo "host-image: debootstrap bookworm ($packages) from $mirror" >&2
if ! debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 40 "$work/debootstrap.log" >&2
    echo "host-image: debootstrap failed (log above)" >&2
    exit 1
fi

if [ "$static_cli" = yes ]; then
    install -m 0755 "$docker_cli" "$rootfs/usr/bin/docker"
fi
# The test machine's engine is used through the mounted socket: never start
# one here. And units that have nothing to do in a container stay off.
for unit in docker.service docker.socket containerd.service \
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
    getty@tty1.service console-getty.service systemd-networkd-wait-online.service \
    systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
cat >"$rootfs/etc/cloud/cloud.cfg.d/99-launch-test-host.cfg" <<'CFG'
# Only the NoCloud seed the test mounts; the host network is the test machine's.
datasource_list: [ NoCloud, None ]
network:
  config: disabled
# minbase has no update-locale; a real image does.
locale: false
CFG
echo launch-test-host >"$rootfs/etc/hostname"
# sshd for the Proxmox SSH bootstrap tests: keys only, root allowed with a key
# (as on a Proxmox LXC made with ssh-public-keys). The port and listen
# address come from a drop-in the test mounts (tests/src/ssh_host.rs).
mkdir -p "$rootfs/etc/ssh/sshd_config.d"
cat >"$rootfs/etc/ssh/sshd_config.d/10-launch-test-host.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
SSHD
# Off at boot: with the host network it would take the machine's port 22. A
# test that wants it mounts a Port drop-in and starts ssh.service itself.
rm -f "$rootfs/etc/systemd/system/multi-user.target.wants/ssh.service" "$rootfs/etc/systemd/system/sshd.service"

tar -C "$rootfs" -c . | docker import --change 'CMD ["/sbin/init"]' - "$tag" >/dev/null
echo "$tag"
