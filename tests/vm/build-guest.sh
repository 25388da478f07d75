#!/usr/bin/env bash
# Builds the guest of the VM test: a Debian cloud kernel and an initramfs holding busybox, the
# host's nbd-client / mke2fs / e2fsck / fstrim / blkdiscard (with the libraries ldd names), the
# static blockpattern helper and the test's /init.
#
#   tests/vm/build-guest.sh [OUTDIR]      (default: <repo>/.cache/vm)
#
# Prints the directory holding vmlinuz and initramfs.cpio.gz. Idempotent: the kernel package is
# fetched once (apt-get download, no install), and the initramfs is rebuilt only when one of its
# inputs (this script, guest-init.sh, blockpattern.c, the host binaries) changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/.cache/vm}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"

# Host tools copied into the guest; called there by full path (/host/NAME) since busybox
# applets of the same names would otherwise shadow them.
host_tools=(nbd-client mke2fs e2fsck fstrim blkdiscard)
# The modules the tests load; their dependencies are read from each module's .modinfo. virtio_blk
# is the disk of the migration tests (the guest's disk is a qemu block device there).
wanted_modules=(virtio_pci virtio_net nbd virtio_blk)

log() { echo "build-guest: $*" >&2; }

# One builder at a time (several test classes may ask at once).
exec 9>"$out/.lock"
flock -w 600 9 || { log "timed out waiting for $out/.lock"; exit 1; }

busybox=/bin/busybox
[ -x "$busybox" ] || { log "$busybox missing: install busybox-static"; exit 1; }
tool_paths=()
for t in "${host_tools[@]}"; do
  p="$(command -v "$t")" || { log "$t missing on the host (nbd-client, e2fsprogs, util-linux)"; exit 1; }
  tool_paths+=("$p")
done

# --- kernel -------------------------------------------------------------------------------
kernel_dir="$out/kernel"
# .done names the modules unpacked: a changed list unpacks the kernel package again.
if [ "$(cat "$kernel_dir/.done" 2>/dev/null)" != "${wanted_modules[*]}" ]; then
  tmp="$(mktemp -d "$out/kernel.tmp.XXXXXX")"
  # The meta package names the current image package; download that one without installing it.
  pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)"
  if [ -z "$pkg" ]; then
    log "apt lists lack linux-image-cloud-amd64; running apt-get update"
    apt-get update -qq >&2
    pkg="$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)"
  fi
  [ -n "$pkg" ] || { log "cannot resolve linux-image-cloud-amd64"; exit 1; }
  log "downloading $pkg"
  # (root downloads as itself: the _apt sandbox user cannot write to this folder)
  (cd "$tmp" && apt-get download -o APT::Sandbox::User=root "$pkg" >&2)
  dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/root"
  mkdir -p "$tmp/kernel/modules"
  cp "$tmp"/root/boot/vmlinuz-* "$tmp/kernel/vmlinuz"
  moddir="$(echo "$tmp"/root/lib/modules/*)"
  # Resolve the dependency closure of the wanted modules, dependencies first.
  order=()
  declare -A seen=()
  visit() {
    local m="$1" f deps d
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    f="$(find "$moddir" -name "$m.ko" -print -quit)"
    [ -n "$f" ] || { log "module $m not found in $pkg"; exit 1; }
    deps="$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -n1)"
    for d in ${deps//,/ }; do visit "$d"; done
    cp "$f" "$tmp/kernel/modules/$m.ko"
    order+=("$m")
  }
  for m in "${wanted_modules[@]}"; do visit "$m"; done
  printf '%s\n' "${order[@]}" >"$tmp/kernel/modules/load-order"
  echo "$pkg" >"$tmp/kernel/package"
  rm -rf "$kernel_dir"
  mv "$tmp/kernel" "$kernel_dir"
  rm -rf "$tmp"
  echo "${wanted_modules[*]}" >"$kernel_dir/.done"
  log "kernel ready: $(cat "$kernel_dir/package"), modules: $(tr '\n' ' ' <"$kernel_dir/modules/load-order")"
fi

# --- initramfs ----------------------------------------------------------------------------
# The key covers every input; the host binaries by path, size and mtime (an upgrade changes them).
key="$( {
  cat "$here/build-guest.sh" "$here/guest-init.sh" "$here/blockpattern.c" "$kernel_dir/package" "$kernel_dir/.done"
  for p in "$busybox" "${tool_paths[@]}"; do stat -L -c '%n %s %Y' "$p"; done
} | sha256sum | cut -c1-16)"
if [ -f "$out/initramfs.cpio.gz" ] && [ "$(cat "$out/initramfs.key" 2>/dev/null)" = "$key" ]; then
  echo "$out"
  exit 0
fi

log "building initramfs"
stage="$(mktemp -d "$out/initramfs.tmp.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,host,proc,sys,dev,mnt,tmp,etc,modules,lib64,lib/x86_64-linux-gnu}
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
done
copy_with_libs() {
  local src="$1" dst="$2" lib
  cp -L "$src" "$stage/$dst"
  # ldd lines: "libx.so => /path (addr)" or "/lib64/ld-linux-x86-64.so.2 (addr)"
  for lib in $(ldd "$src" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }'); do
    if [ ! -e "$stage$lib" ]; then
      mkdir -p "$stage$(dirname "$lib")"
      cp -L "$lib" "$stage$lib"
    fi
  done
}
for p in "${tool_paths[@]}"; do copy_with_libs "$p" "host/$(basename "$p")"; done
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$stage/etc/mke2fs.conf"
gcc -O2 -static -Wall -Wextra -Werror -o "$stage/host/blockpattern" "$here/blockpattern.c"
cp "$kernel_dir"/modules/* "$stage/modules/"
install -m 0755 "$here/guest-init.sh" "$stage/init"
echo "root:x:0:0:root:/:/bin/sh" >"$stage/etc/passwd"
(cd "$stage" && find . -mindepth 1 | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -1 >"$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
echo "$key" >"$out/initramfs.key"
log "initramfs ready ($(du -h "$out/initramfs.cpio.gz" | cut -f1))"
echo "$out"
