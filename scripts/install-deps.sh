#!/usr/bin/env bash
# Installs the Debian packages the tests drive (real NBD clients, qemu tools, fio, afl++ for tests/fuzz,
# systemd-socket-activate, man for the generated man page), if missing. With package names as arguments it
# installs those instead (scripts/publish.sh asks for the native compiler's).
set -euo pipefail
packages=(qemu-utils libnbd-bin python3-libnbd nbdkit fio nbd-client qemu-system-x86 busybox-static e2fsprogs afl++ systemd man-db)
[ $# -eq 0 ] || packages=("$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
