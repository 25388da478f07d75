#!/usr/bin/env bash
# Runs the VM test by hand against ANY NBD server command: the same guest and the same host-side
# checks as the xunit test (tests/NbdQcow.Tests.Interop/Vm), for trying other servers (qemu-nbd,
# nbdkit) or a deliberately broken one.
#
#   tests/vm/try-server.sh MODE CONNS IMAGE FORMAT -- SERVER COMMAND ...
#
# MODE full|crash, CONNS 1|2, IMAGE the image file the server serves (FORMAT raw|qcow2), made by
# the caller (256 MiB); the command runs in the background, "{PORT}" in it becomes a free port on
# 127.0.0.1 and it must serve the export "vmdisk" (or any name). In crash mode the server gets
# SIGKILL once the guest has unmounted; in full mode SIGTERM after the guest powered off.
# Ends with "VERDICT: PASS" (exit 0) or "VERDICT: FAIL <why>" (exit 1). Work files stay in a
# temporary folder that it names.
#
# Example (a server that ignores FLUSH; the crash variant must fail):
#   truncate -s 256M /tmp/d.raw
#   tests/vm/try-server.sh crash 1 /tmp/d.raw raw -- \
#     nbdkit -f -i 127.0.0.1 -p {PORT} --filter=cache file /tmp/d.raw cache=unsafe
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -ge 6 ] && [ "$5" = -- ] || { sed -n '6,12p' "$0" >&2; exit 2; }
mode="$1" conns="$2" image="$3" format="$4"
shift 5
size=268435456

verdict() { echo "VERDICT: $*"; [ "$1" = PASS ]; exit $?; }

guest="$("$here/build-guest.sh")" || verdict FAIL "guest build failed"
work="$(mktemp -d /tmp/nbdqcow-vm-try.XXXXXX)"
echo "work folder: $work"
port="$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cmd=()
for a in "$@"; do cmd+=("${a//\{PORT\}/$port}"); done
"${cmd[@]}" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 150); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 $server 2>/dev/null || verdict FAIL "server exited at start: $(tail -n 5 "$work/server.log")"
  sleep 0.2
done

timeout 300 "$here/run-guest.sh" "$guest" "$port" vmdisk "$conns" "$size" "$mode" "$work/serial.log" "$work/connections.log" \
  >"$work/qemu.log" 2>&1 &
qemu=$!
if [ "$mode" = crash ]; then
  for _ in $(seq 1200); do
    grep -qE 'CRASH-POINT|RESULT:' "$work/serial.log" 2>/dev/null && break
    sleep 0.25
  done
  grep -q CRASH-POINT "$work/serial.log" && kill -KILL $server && echo "server killed (SIGKILL) at the crash point"
fi
wait $qemu
kill -TERM $server 2>/dev/null
for _ in $(seq 100); do kill -0 $server 2>/dev/null || break; sleep 0.2; done
kill -KILL $server 2>/dev/null
wait $server 2>/dev/null

tr -d '\r' <"$work/serial.log" >"$work/serial.txt"
grep -E 'vmtest\[|  \| ' "$work/serial.txt"
result="$(grep -o 'RESULT: .*' "$work/serial.txt")"
[ "$(printf '%s\n' "$result" | grep -c RESULT)" = 1 ] || verdict FAIL "guest printed no single RESULT line: $result"
[ "$result" = "RESULT: PASS" ] || verdict FAIL "guest: $result"
echo "guest: $result; connections opened: $(wc -l <"$work/connections.log")"

if [ "$format" = qcow2 ]; then
  qemu-img check -f qcow2 "$image" || verdict FAIL "qemu-img check"
fi
qemu-img convert -f "$format" -O raw "$image" "$work/converted.raw" || verdict FAIL "qemu-img convert"
e2fsck -fn "$work/converted.raw" >"$work/e2fsck.log" 2>&1 || verdict FAIL "e2fsck -fn: $(sed -n 2p "$work/e2fsck.log")"
mkdir "$work/extracted"
debugfs -R "rdump / $work/extracted" "$work/converted.raw" >/dev/null 2>"$work/debugfs.log"
sed -n 's/^MANIFEST: //p' "$work/serial.txt" >"$work/manifest"
(cd "$work/extracted" && find . -type f ! -path './lost+found/*' | sort) >"$work/files.found"
cut -c67- "$work/manifest" | sort >"$work/files.expected"
cmp -s "$work/files.found" "$work/files.expected" || verdict FAIL "files in the image differ from the manifest"
(cd "$work/extracted" && sha256sum -c --quiet "$work/manifest") || verdict FAIL "file contents differ from the manifest"
verdict PASS "$(wc -l <"$work/manifest") files match"
