#!/usr/bin/env bash
# Code or machine: 2dd7134 (base) vs this branch (threads), writeback, qemu-nbd in every batch; PAIRS interleaved
# pairs, the order of base and current alternating. Usage: ab-code-vs-machine.sh BASE_BIN CURRENT_BIN [PAIRS]
set -u
base=$1 cur=$2 pairs=${3:-3}
ab="$(dirname "$0")/../../ab-cpu-per-op"
data=/var/tmp/ab-data.qcow2 empty=/var/tmp/ab-empty.qcow2
one() { # NAME SERVER BIN ARGS...
  local name=$1 server=$2 bin=$3; shift 3
  printf '%-8s ' "$name"
  if [ "$name" = current ]; then AB_NBDQCOW_ARGS="--aio threads" "$ab" "$server" "$bin" "$@"; else "$ab" "$server" "$bin" "$@"; fi
}
for p in $(seq 1 "$pairs"); do
  echo "== pair $p $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  for w in "randread 4k 16 60000 $data 1" "randread 4k 8 20000 $data 4" "write 1M 4 2000 $data 1" \
           "randwrite 4k 16 30000 $empty 1" "randrw 4k 16 20000 $data 1"; do
    set -- $w
    extra=""; [ "$1" = randrw ] && extra="--rwmixread=70 --fsync=32"
    if [ $((p % 2)) = 1 ]; then order="base current"; else order="current base"; fi
    for who in $order qemu; do
      case $who in base) bin=$base server=nbdqcow;; current) bin=$cur server=nbdqcow;; qemu) bin=- server=qemu;; esac
      AB_FIO_ARGS="$extra" one "$who" "$server" "$bin" writeback "$1" "$2" "$3" "$4" "$5" "$6"
    done
  done
done
