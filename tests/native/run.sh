#!/usr/bin/env bash
# The native binary and its Debian package, tested as a user gets them:
#   tests/native/run.sh [--reuse]
# 1. scripts/publish.sh builds the NativeAOT binary (trim/AOT warnings fail it); --reuse tests .cache/native/nbdqcow
#    as it is.
# 2. The interop tests of what native compilation can break (TLS, the Prometheus endpoint, io_uring, LUKS, config
#    binding, CLI messages and exit codes, generated docs, logging, socket activation and --fork) run against that
#    binary (NBDQCOW_TEST_BINARY). Needs the interop tests built (scripts/test.sh builds them).
# 3. scripts/build-deb.sh packages it; as root (CI), dpkg -i installs it, /usr/bin/nbdqcow serves a temp image that
#    nbdinfo reads, create/info/check/recover run, the man page, completion and units are checked, and dpkg --purge
#    removes it again. Not root, or an nbdqcow package already installed: that part is skipped, with the reason.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
reuse=0
[ "${1-}" = --reuse ] && reuse=1
binary="$root/.cache/native/nbdqcow"
if [ "$reuse" = 0 ] || [ ! -x "$binary" ]; then
  start=$(date +%s)
  scripts/publish.sh
  echo "native: published in $(( $(date +%s) - start )) s"
fi

NBDQCOW_TEST_BINARY="$binary" dotnet test tests/NbdQcow.Tests.Interop/NbdQcow.Tests.Interop.csproj -c Release --no-build --nologo \
  --filter "FullyQualifiedName~Tls.TlsClientTests|FullyQualifiedName~Cli.|FullyQualifiedName~IoUringServeTests|FullyQualifiedName~Qcow2EncryptedImageTests|FullyQualifiedName~Qcow2ClientTests"

deb="$(scripts/build-deb.sh --binary "$binary" | tail -1)"
echo "native: built $deb"
if [ "$(id -u)" -ne 0 ]; then
  echo "native: SKIP installing the package: dpkg -i needs root (CI runs as root)"; exit 0
fi
if dpkg-query -W -f='${Status}' nbdqcow 2>/dev/null | grep -q 'install ok installed'; then
  echo "native: SKIP installing the package: an nbdqcow package is already installed here, and this test would remove it"; exit 0
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  dpkg --purge nbdqcow >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "native: FAIL: $*" >&2; exit 1; }

dpkg -i "$deb" >/dev/null
[ -x /usr/bin/nbdqcow ] || fail "/usr/bin/nbdqcow missing after dpkg -i"
man -w nbdqcow >/dev/null 2>&1 || fail "man nbdqcow finds no page"
man nbdqcow 2>/dev/null | grep -q 'serve' || fail "the man page does not describe serve"
[ -s /usr/share/bash-completion/completions/nbdqcow ] || fail "no bash completion installed"
bash -c 'source /usr/share/bash-completion/completions/nbdqcow && complete -p nbdqcow' >/dev/null \
  || fail "the completion script registers no completion for nbdqcow"
grep -q '^ExecStart=/usr/bin/nbdqcow serve' /usr/lib/systemd/system/nbdqcow@.service || fail "the service unit does not start /usr/bin/nbdqcow"
[ -f /usr/lib/systemd/system/nbdqcow@.socket ] || fail "no socket unit installed"

image="$work/disk.qcow2"
/usr/bin/nbdqcow create "$image" 64M >/dev/null
qemu-io -f qcow2 -c 'write -P 0x5a 1M 64k' "$image" >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
/usr/bin/nbdqcow serve "$image" --listen "127.0.0.1:$port" >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
for _ in $(seq 1 200); do
  grep -q 'listening on' "$work/stdout" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || fail "the installed server exited: $(cat "$work/stderr")"
  sleep 0.05
done
grep -q 'listening on' "$work/stdout" || fail "the installed server did not listen within 10 s"
size="$(nbdinfo --size "nbd://127.0.0.1:$port/")"
[ "$size" = 67108864 ] || fail "nbdinfo read size $size, expected 67108864"
nbdcopy "nbd://127.0.0.1:$port/" "$work/copy.raw"
cmp -n 65536 -i 1048576:0 "$work/copy.raw" <(head -c 65536 /dev/zero | tr '\0' '\132') || fail "the data read through nbdinfo's export differs"
kill -TERM "$server_pid"
wait "$server_pid" || fail "the installed server exited non-zero on SIGTERM"
server_pid=""
qemu-img check -q "$image" || fail "qemu-img check found the served image damaged"
/usr/bin/nbdqcow info "$image" --json | python3 -c 'import json,sys; assert json.load(sys.stdin)["format"] == "qcow2"' \
  || fail "nbdqcow info --json"
/usr/bin/nbdqcow check "$image" >/dev/null || fail "nbdqcow check"
/usr/bin/nbdqcow recover "$image" --output "$work/recovered.qcow2" >/dev/null || fail "nbdqcow recover"
qemu-img compare -q "$image" "$work/recovered.qcow2" || fail "the recovered image differs from the original"

dpkg --purge nbdqcow >/dev/null
[ ! -e /usr/bin/nbdqcow ] || fail "/usr/bin/nbdqcow left after dpkg --purge"
! dpkg-query -W nbdqcow >/dev/null 2>&1 || fail "dpkg still lists nbdqcow after dpkg --purge"
echo "native: package installed, served, read, checked and removed"
