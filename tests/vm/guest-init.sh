#!/bin/sh
# /init of the VM test guest (busybox sh). Attaches the export served on the host through the
# kernel NBD driver and the real nbd-client, exercises it, and prints exactly one line
#   RESULT: PASS            or        RESULT: FAIL step=NAME ...
# on the serial console, then powers off. Lines starting with "MANIFEST: " carry the sha256
# manifest of the files written, for the host to compare with what it extracts from the image.
#
# Kernel command line parameters (read from /proc/cmdline):
#   nbdtest.export=NAME   export to attach (nbd-client -N)
#   nbdtest.conns=N       connections per device (nbd-client -C; qemu -smp N)
#   nbdtest.size=BYTES    size the device must have
#   nbdtest.hostport=P    the server's port on the host loopback: the guest must NOT reach 10.0.2.2:P
#   nbdtest.mode=full|crash|migrate
#       full:  raw-device I/O, filesystem, reconnect, fstrim, verify, disconnect
#       crash: raw-device I/O, filesystem, unmount; then prints "CRASH-POINT" and waits for the
#              host to kill the server, which the guest sees as I/O errors on the device
#       migrate: no network; the disk is /dev/vda (qemu's block device, an nbdqcow image behind
#              it). Files before "MIGRATE-READY", files written without pause while the host
#              migrates the guest, until the host writes "GO" to ttyS1 on the destination; then
#              every file is checked, more are written, and the manifest is printed (see migrate_run).
#              Needs only nbdtest.size and nbdtest.mode.
export PATH=/bin
H=/host
B=$H/blockpattern
D=/dev/nbd0
SERVER=10.0.2.100
STEP=boot

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
dmesg -n 1 # keep kernel messages off the console the host parses; they are checked with dmesg

log() { echo "vmtest[$(cut -d' ' -f1 /proc/uptime)]: $*"; }

power_off() {
  sync
  poweroff -f
  sleep 5
  echo o >/proc/sysrq-trigger
  sleep 30
}

fail() {
  log "--- dmesg (last 40 lines) ---"
  dmesg | tail -n 40 | sed 's/^/dmesg: /'
  echo "RESULT: FAIL step=$STEP $*"
  power_off
}

step() { STEP="$1"; log "step $1"; }

# run CMD...: runs it; on failure shows its output and fails the current step.
run() {
  if ! out="$("$@" 2>&1)"; then
    echo "$out" | tail -n 20 | sed 's/^/  | /'
    fail "command failed: $*"
  fi
}

# Kernel parameter nbdtest.NAME
param() { tr ' ' '\n' </proc/cmdline | sed -n "s/^nbdtest\.$1=//p" | tail -n1; }

EXPORT="$(param export)"
CONNS="$(param conns)"
SIZE="$(param size)"
HOSTPORT="$(param hostport)"
MODE="$(param mode)"
if [ "$MODE" = migrate ]; then
  [ -n "$SIZE" ] || fail "missing nbdtest.size: $(cat /proc/cmdline)"
else
  [ -n "$EXPORT" ] && [ -n "$CONNS" ] && [ -n "$SIZE" ] && [ -n "$HOSTPORT" ] && [ -n "$MODE" ] ||
    fail "missing nbdtest.* kernel parameters: $(cat /proc/cmdline)"
fi
log "export=$EXPORT conns=$CONNS size=$SIZE mode=$MODE"

drop_caches() {
  sync
  blockdev --flushbufs $D || fail "flushbufs"
  echo 3 >/proc/sys/vm/drop_caches
}

attach() {
  # -t 30: a request unanswered for 30 s fails the device. Without a timeout the kernel waits
  # forever ("Possible stuck request"), also for a request in flight on a dead connection.
  run $H/nbd-client $SERVER 10809 $D -N "$EXPORT" -C "$CONNS" -t 30
  got=$(($(cat /sys/block/nbd0/size) * 512))
  [ "$got" = "$SIZE" ] || fail "device size $got, expected $SIZE"
}

detach() {
  run $H/nbd-client -d $D
  i=0
  while [ "$(cat /sys/block/nbd0/size)" != 0 ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "device still attached 10 s after nbd-client -d"
    sleep 0.1
  done
}

verify_files() {
  (cd /mnt && find . -type f ! -path './lost+found/*' | sort) >/tmp/files.now
  cut -c67- /tmp/manifest >/tmp/files.expected
  cmp -s /tmp/files.now /tmp/files.expected || {
    diff /tmp/files.expected /tmp/files.now | sed 's/^/  | /'
    fail "file list differs from the manifest"
  }
  log "verify files: sha256"
  cd /mnt
  run sha256sum -c -s /tmp/manifest
  cd /
  log "verify files: patterns"
  run $B verify /mnt/big/file1 0 3M 101
  run $B verify /mnt/big/file1 3M 1M 103
  run $B verify /mnt/big/file1 4M 12M 101
}

# ---- modules and network ---------------------------------------------------------------------
step modules
for m in $(cat /modules/load-order); do
  run insmod /modules/$m.ko
done

# ---- migration -------------------------------------------------------------------------------
# The host migrates this guest to another qemu while it writes; it says the switch-over is done by
# writing "GO" to ttyS1 of the destination. Every file is then read back there (after an unmount,
# so from the disk), more files are written, and the final manifest is printed.
migrate_run() {
  D=/dev/vda
  step migrate-disk
  [ -b $D ] || fail "no $D"
  got=$(($(cat /sys/block/vda/size) * 512))
  [ "$got" = "$SIZE" ] || fail "disk size $got, expected $SIZE"
  run $H/mke2fs -t ext4 -q -F $D
  run mount -t ext4 $D /mnt
  mkdir -p /mnt/before /mnt/during /mnt/after

  step before-migration
  run $B create /mnt/before/big 4M 201
  run $B tree /mnt/before 40 202
  run $B create /mnt/rewritten 2M 203              # overwritten after the switch-over
  sync
  (cd /mnt && find ./before -type f | sort | xargs sha256sum) >/tmp/before || fail "sha256sum"
  sed 's/^/MANIFEST-BEFORE: /' /tmp/before
  # A background reader blocks on ttyS1 until the GO line: a read with a timeout can give up in
  # the middle of a line when the vCPU is starved (busybox checks its deadline before each byte)
  # and drop the part it consumed.
  run stty -F /dev/ttyS1 icanon -echo
  (while read -r line; do
    case "$line" in *GO*) : >/tmp/go; break ;; esac
  done) </dev/ttyS1 &
  echo "MIGRATE-READY"

  step during-migration
  # Each file is fsynced (blockpattern create), so every one is a write and a flush on the disk
  # while the host mirrors and migrates. Bounded by time: the host has 300 s to say GO (its own
  # bounds are shorter, so it reports a missing GO first).
  start=$(cut -d. -f1 /proc/uptime)
  i=0
  while :; do
    i=$((i + 1))
    run $B create /mnt/during/f$i 8K $((1000 + i))
    [ -e /tmp/go ] && break
    [ $(($(cut -d. -f1 /proc/uptime) - start)) -le 300 ] || fail "no GO on ttyS1 within 300 s ($i files)"
  done
  log "GO after $i files written during the migration"

  step after-switch-over
  run umount /mnt
  run $H/e2fsck -fn $D
  echo 3 >/proc/sys/vm/drop_caches
  run mount -t ext4 $D /mnt
  cd /mnt
  run sha256sum -c -s /tmp/before
  cd /
  n=1
  while [ $n -le $i ]; do
    run $B verify /mnt/during/f$n 0 8K $((1000 + n))
    n=$((n + 1))
  done
  [ "$(ls /mnt/during | wc -l)" = "$i" ] || fail "expected $i files in /mnt/during"
  run $B create /mnt/after/big 2M 301
  run $B tree /mnt/after 20 302
  run $B write /mnt/rewritten 1M 64K 303 sync     # an overwrite of a file from before
  run rm /mnt/during/f1
  sync

  step manifest
  (cd /mnt && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum) >/tmp/manifest ||
    fail "sha256sum"
  sed 's/^/MANIFEST: /' /tmp/manifest
  run umount /mnt
  run $H/e2fsck -fn $D
  echo 3 >/proc/sys/vm/drop_caches
  run mount -t ext4 $D /mnt
  cd /mnt
  run sha256sum -c -s /tmp/manifest
  cd /
  run umount /mnt

  step dmesg
  if dmesg | grep -Ei 'I/O error|EXT4-fs (error|warning)|blk_update_request|critical' >/tmp/bad; then
    sed 's/^/  | /' /tmp/bad
    fail "kernel reported errors"
  fi
  echo "RESULT: PASS"
  power_off
}
[ "$MODE" = migrate ] && migrate_run

step network
run ip link set lo up
run ip link set eth0 up
run ip addr add 10.0.2.15/24 dev eth0

step isolation
# restrict=on: the host's loopback (where the server listens) must not be reachable through the
# slirp gateway; only the guestfwd address is.
if timeout 10 nc -w 5 10.0.2.2 "$HOSTPORT" </dev/null >/dev/null 2>&1; then
  fail "guest reached 10.0.2.2:$HOSTPORT"
fi

# ---- raw device ----------------------------------------------------------------------------
step attach
attach

step raw-write
run $B write $D 0 4M 11 direct
run $B write $D 5246976 4K 15 direct            # 5 MiB + 4 KiB: part of one cluster
run $B write $D 8M 4M 12 sync                   # buffered, then fsync (a FLUSH)
run $B write $D -1M 1M 13 direct                # the last MiB
run $B write $D -256K 256K 14 sync              # buffered over the end of it

step raw-discard-zero
run $H/blkdiscard -o 1M -l 1M $D
run $H/blkdiscard -z -o 2M -l 1M $D

step raw-verify
drop_caches
for how in direct ""; do
  run $B verify $D 0 1M 11 $how
  run $B zero $D 2M 1M $how
  run $B verify $D 3M 1M 11 $how
  run $B zero $D 4M 1M $how
  run $B zero $D 5M 4K $how
  run $B verify $D 5246976 4K 15 $how
  run $B zero $D 5251072 60K $how
  run $B verify $D 8M 4M 12 $how
  run $B verify $D -1M 768K 13 $how
  run $B verify $D -256K 256K 14 $how
  drop_caches
done

# ---- filesystem ----------------------------------------------------------------------------
step mkfs
run $H/mke2fs -t ext4 -q -F $D

step write-files
run mount -t ext4 $D /mnt
mkdir -p /mnt/big /mnt/small
run $B create /mnt/big/file1 16M 101
run $B create /mnt/big/doomed 4M 102
run $B tree /mnt/small 150 1000                   # /mnt/small/d<i%5>/f<i>, i = 1..150
sync
step overwrite-delete
run $B write /mnt/big/file1 3M 1M 103 sync       # overwrite in place
run $B create /mnt/small/d1/f1 5000 2001          # replace a small file
run rm /mnt/big/doomed
i=10
while [ $i -le 150 ]; do
  rm /mnt/small/d$((i % 5))/f$i || fail "rm f$i"
  i=$((i + 10))
done
sync
step manifest
(cd /mnt && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum) >/tmp/manifest ||
  fail "sha256sum"
[ "$(wc -l </tmp/manifest)" = 136 ] || fail "expected 136 files, manifest has $(wc -l </tmp/manifest)"
sed 's/^/MANIFEST: /' /tmp/manifest
verify_files

step unmount
run umount /mnt
step fsck
run $H/e2fsck -fn $D

if [ "$MODE" = crash ]; then
  # The unmount flushed. The host now kills the server while this device stays connected;
  # reads then fail, which is how the guest knows it happened.
  step wait-for-server-kill
  echo "CRASH-POINT"
  i=0
  while :; do
    $B zero $D 0 4K direct >/dev/null 2>&1
    [ $? = 2 ] && break
    i=$((i + 1))
    [ $i -le 240 ] || fail "device still readable 120 s after CRASH-POINT"
    sleep 0.5
  done
  echo "RESULT: PASS"
  power_off
fi

step reconnect
detach
log detached
attach
log attached
drop_caches
run mount -t ext4 $D /mnt
verify_files

step fstrim
run $H/fstrim -v /mnt
run umount /mnt
drop_caches
run mount -t ext4 $D /mnt
verify_files
run umount /mnt
run $H/e2fsck -fn $D

step dmesg
if dmesg | grep -Ei 'I/O error|EXT4-fs (error|warning)|nbd.*(timed out|failed|error|stuck)|blk_update_request|critical' >/tmp/bad; then
  sed 's/^/  | /' /tmp/bad
  fail "kernel reported errors"
fi

step detach
detach
echo "RESULT: PASS"
power_off
