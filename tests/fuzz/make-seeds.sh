#!/usr/bin/env bash
# Regenerates the seed corpora in tests/fuzz/seeds/TARGET/ from real tools: qemu-img images (small clusters, so a
# few KiB each), client/server byte captures of nbdinfo and qemu-io sessions against ./nbdqcow, a real metadata
# journal left by a killed server, and deflate/zstd streams. Needs qemu-img, qemu-io, nbdinfo, zstd, python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seeds="$here/seeds"
work="$(mktemp -d)"
server_pid=""; proxy_pid=""
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rm -rf "$seeds"
mkdir -p "$seeds"/{protocol,session,qcow2-header,qcow2-image,qcow2-check,decompress,journal,recover}
q() { qemu-img "$@" >/dev/null; }

# --- qcow2 images: one feature each, 512-byte or 4 KiB clusters, 1 MiB disks.
img="$seeds/qcow2-image"
q create -f qcow2 -o cluster_size=512 "$img/empty-512.qcow2" 1M
q create -f qcow2 -o cluster_size=512 "$img/data-512.qcow2" 1M
qemu-io -f qcow2 -c 'write -P 0x11 0 2k' -c 'write -P 0x22 512k 1k' -c 'write -z 64k 1k' "$img/data-512.qcow2" >/dev/null
q create -f qcow2 -o cluster_size=512,compat=0.10 "$img/v2-512.qcow2" 256K
qemu-io -f qcow2 -c 'write -P 0x33 0 1k' "$img/v2-512.qcow2" >/dev/null
q create -f qcow2 -o cluster_size=16384,extended_l2=on "$img/subclusters-16k.qcow2" 1M
qemu-io -f qcow2 -c 'write -P 0x44 2k 1k' -c 'write -z 8k 1k' "$img/subclusters-16k.qcow2" >/dev/null
head -c 1024 /dev/urandom > "$work/raw"; head -c 2048 /dev/zero | tr '\0' 'A' >> "$work/raw"
q convert -c -f raw -O qcow2 -o cluster_size=512 "$work/raw" "$img/zlib-512.qcow2"
q convert -c -f raw -O qcow2 -o cluster_size=512,compression_type=zstd "$work/raw" "$img/zstd-512.qcow2"
q create -f qcow2 -o cluster_size=512 "$img/snapshot-512.qcow2" 128K
qemu-io -f qcow2 -c 'write -P 0x55 0 1k' "$img/snapshot-512.qcow2" >/dev/null
q snapshot -c first "$img/snapshot-512.qcow2"
qemu-io -f qcow2 -c 'write -P 0x66 0 512' "$img/snapshot-512.qcow2" >/dev/null
q create -f qcow2 -o cluster_size=512 "$img/bitmap-512.qcow2" 256K
q bitmap --add "$img/bitmap-512.qcow2" dirty0
q create -f qcow2 -o cluster_size=512 -u -b missing-base.raw -F raw "$img/backing-512.qcow2" 128K
q create -f qcow2 -o cluster_size=512,refcount_bits=64 "$img/refcount64-512.qcow2" 128K
# Extended L2 needs 16 KiB clusters (an 80 KiB file): for the image target only.
for f in "$img"/*-512.qcow2; do
  cp "$f" "$seeds/qcow2-check/"
  cp "$f" "$seeds/recover/"
  head -c 1024 "$f" > "$seeds/qcow2-header/$(basename "$f" .qcow2).hdr"
done

# --- deflate and zstd streams: first byte picks method (bit 0) and cluster bits (9 + bits 1..3).
python3 - "$seeds/decompress" <<'PY'
import os, sys, zlib
out = sys.argv[1]
for name, data, bits in [("text-4k", b"nbdqcow " * 512, 3), ("zeros-512", bytes(512), 0), ("mixed-64k", os.urandom(2048) + bytes(63488), 7)]:
    c = zlib.compressobj(6, zlib.DEFLATED, -12)
    stream = c.compress(data) + c.flush()
    open(os.path.join(out, f"deflate-{name}"), "wb").write(bytes([bits << 1]) + stream)
PY
printf 'nbdqcow %.0s' $(seq 512) | zstd -q -c > "$work/z4k"
{ printf '\x07'; cat "$work/z4k"; } > "$seeds/decompress/zstd-text-4k"
head -c 512 /dev/zero | zstd -q -c > "$work/z512"
{ printf '\x01'; cat "$work/z512"; } > "$seeds/decompress/zstd-zeros-512"

# --- a real journal: writes through a --journal server on a 512-byte-cluster image, then SIGKILL.
q create -f qcow2 -o cluster_size=512 "$work/j.qcow2" 1M
"$root/nbdqcow" serve "$work/j.qcow2" --journal --max-dirty-age off --socket "$work/j.sock" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -S "$work/j.sock" ] && break; sleep 0.1; done
qemu-io -f raw -c 'write -P 0x77 0 1k' -c flush -c 'write -P 0x78 300k 2k' -c flush "nbd+unix:///?socket=$work/j.sock" >/dev/null
kill -KILL "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
cp "$work/j.qcow2.journal" "$seeds/journal/two-flushes.journal"
head -c 4096 "$work/j.qcow2.journal" > "$seeds/journal/header-only.journal"

# --- client captures: nbdinfo (options, meta contexts, block status) and qemu-io (reads, writes, zeroes,
# trims, flushes) through a recording proxy to the real server.
q create -f qcow2 -o cluster_size=4096 "$work/c.qcow2" 1M
"$root/nbdqcow" serve "$work/c.qcow2" --export disk --max-dirty-age off --socket "$work/s.sock" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -S "$work/s.sock" ] && break; sleep 0.1; done
capture() { # NAME COMMAND...: one capture per client invocation
  local name=$1; shift
  python3 "$here/capture-proxy.py" "$work/p.sock" "$work/s.sock" "$work/$name.c2s" "$work/$name.s2c" &
  proxy_pid=$!
  for _ in $(seq 50); do [ -S "$work/p.sock" ] && break; sleep 0.1; done
  "$@" >/dev/null 2>&1 || true
  sleep 0.3
  kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""
  rm -f "$work/p.sock"
  cp "$work/$name.c2s" "$seeds/session/$name"
  # protocol seeds: control byte (segment length, header style) + the stream as each side saw it.
  { printf '\x03'; cat "$work/$name.c2s"; } > "$seeds/protocol/$name-client"
  { printf '\x07'; cat "$work/$name.s2c"; } > "$seeds/protocol/$name-server"
}
uri="nbd+unix:///disk?socket=$work/p.sock"
capture nbdinfo-map nbdinfo --map "$uri"
capture nbdinfo-list nbdinfo --list "nbd+unix://?socket=$work/p.sock"
capture qemu-io-rw qemu-io -f raw -c 'write -P 0x12 0 4k' -c 'read 0 8k' -c 'write -z 8k 4k' -c 'discard 16k 4k' -c flush "$uri"
capture qemu-img-map qemu-img map -f raw --output=json "$uri"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
du -sh "$seeds"; find "$seeds" -type f | wc -l
