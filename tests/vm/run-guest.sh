#!/usr/bin/env bash
# Boots the VM test guest (software emulation, no KVM needed) against an NBD server listening on
# 127.0.0.1:PORT. The guest sees it only as 10.0.2.100:10809, through a guestfwd whose command
# opens a new TCP connection per guest connection; user networking is restricted otherwise.
#
#   tests/vm/run-guest.sh GUESTDIR PORT EXPORT CONNS SIZE MODE SERIALLOG CONNLOG
#
# GUESTDIR is what build-guest.sh printed. MODE is full or crash (see guest-init.sh). The guest
# console goes to SERIALLOG; CONNLOG gets one line per connection the guest opened. Execs qemu,
# so the caller's process id is qemu's. no_timer_check: on a loaded host the emulated guest is too
# slow for the kernel's IO-APIC timer check, which then panics ("IO-APIC + timer doesn't work!").
set -euo pipefail
[ $# -eq 8 ] || { echo "usage: $0 GUESTDIR PORT EXPORT CONNS SIZE MODE SERIALLOG CONNLOG" >&2; exit 2; }
guest="$1" port="$2" export_name="$3" conns="$4" size="$5" mode="$6" serial="$7" connlog="$8"
for v in "$guest" "$export_name" "$serial" "$connlog"; do
  # qemu's option syntax treats "," specially and the guestfwd command is split on spaces
  case "$v" in *[,\ \"\']*) echo "run-guest.sh: no commas, spaces or quotes allowed: $v" >&2; exit 2 ;; esac
done
# One connector process per guest connection; its stdin/stdout (and stderr) are the guest's socket.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "$here" in *[,\ \"\']*) echo "run-guest.sh: no commas, spaces or quotes allowed: $here" >&2; exit 2 ;; esac
connector="/bin/sh -c 'echo connection >>$connlog; exec /usr/bin/python3 $here/connector.py $port 2>/dev/null'"
exec qemu-system-x86_64 \
  -machine pc,accel=tcg -cpu max -m 512 -smp "$conns" \
  -nodefaults -nographic -no-reboot -monitor none \
  -kernel "$guest/kernel/vmlinuz" -initrd "$guest/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet panic=-1 no_timer_check nbdtest.export=$export_name nbdtest.conns=$conns nbdtest.size=$size nbdtest.hostport=$port nbdtest.mode=$mode" \
  -serial "file:$serial" \
  -netdev "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:10809-cmd:$connector" \
  -device virtio-net-pci,netdev=net0,romfile=
