#!/usr/bin/env bash
# 1 MiB sequential writes, QD4, writeback: before (pipe segment -> payload copy) vs after (payload received in place),
# threads engine, with nbdkit's file plugin on a raw copy (the ceiling) and qemu-nbd in every pair.
# Usage: ab-landing.sh BEFORE_BIN AFTER_BIN RAW_IMAGE [PAIRS]
set -u
before=$1 after=$2 raw=$3 pairs=${4:-3}
ab="$(dirname "$0")/../../ab-cpu-per-op"
for p in $(seq 1 "$pairs"); do
  echo "== pair $p $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ $((p % 2)) = 1 ]; then order="before after"; else order="after before"; fi
  for who in $order nbdkit; do
    printf '%-7s ' "$who"
    case $who in
      before) AB_NBDQCOW_ARGS="--aio threads" "$ab" nbdqcow "$before" writeback write 1M 4 3000 /var/tmp/ab-data.qcow2;;
      after) AB_NBDQCOW_ARGS="--aio threads" "$ab" nbdqcow "$after" writeback write 1M 4 3000 /var/tmp/ab-data.qcow2;;
      nbdkit) "$ab" nbdkit - writeback write 1M 4 3000 "$raw";;
    esac
  done
done
