#!/usr/bin/env bash
# Builds a Debian package of the native binary (scripts/publish.sh), its man page, bash completion and the
# systemd units of contrib/systemd:
#   scripts/build-deb.sh [--binary PATH] [--output DIR]
# --binary: the native nbdqcow to package (default .cache/native/nbdqcow; built by scripts/publish.sh when missing).
# --output: folder for nbdqcow_VERSION_amd64.deb (default .cache/deb). Prints the package's path last.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="$root/.cache/native/nbdqcow"
output="$root/.cache/deb"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; echo "Try 'scripts/build-deb.sh --help'" >&2; exit 2 ;;
  esac
done
if [ ! -x "$binary" ]; then
  [ "$binary" = "$root/.cache/native/nbdqcow" ] || { echo "build-deb.sh: $binary is not an executable" >&2; exit 1; }
  "$root/scripts/publish.sh" >&2
fi
# A JIT build (a managed .dll beside a host) cannot be packaged alone: only the native binary is self-contained.
if ! file -b "$binary" | grep -q '^ELF 64-bit.*x86-64'; then
  echo "build-deb.sh: $binary is not a linux-x64 ELF binary (build it with scripts/publish.sh)" >&2; exit 1
fi

# Version: the binary's informational version (1.0.0+COMMIT) as 1.0.0+gitN.COMMIT, N = commits so far, so
# later builds sort later.
informational="$("$binary" --version)"
upstream="${informational%%+*}"
commit="${informational#*+}"
if [ "$commit" != "$informational" ] && git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
  version="$upstream+git$(git -C "$root" rev-list --count "$commit").${commit:0:10}"
else
  version="$upstream"
fi

# Maintainer: DEBFULLNAME/DEBEMAIL as dch reads them, else the repository's git identity.
maintainer="${DEBFULLNAME:-$(git -C "$root" config user.name || echo "NbdQcow maintainers")} <${DEBEMAIL:-$(git -C "$root" config user.email || echo "nbdqcow@example.org")}>"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
package="$stage/nbdqcow"
install -D -m 0755 "$binary" "$package/usr/bin/nbdqcow"
strip --strip-unneeded "$package/usr/bin/nbdqcow" 2>/dev/null || true
mkdir -p "$package/usr/share/man/man1" "$package/usr/share/bash-completion/completions" "$package/usr/share/doc/nbdqcow" \
  "$package/usr/lib/systemd/system" "$package/DEBIAN"
"$binary" docs man | gzip -9n > "$package/usr/share/man/man1/nbdqcow.1.gz"
"$binary" docs bash-completion > "$package/usr/share/bash-completion/completions/nbdqcow"
# The units name the binary where install-docs/publish --prefix /usr/local puts it; the package puts it in /usr/bin.
for unit in "$root"/contrib/systemd/*; do
  sed 's#/usr/local/bin/nbdqcow#/usr/bin/nbdqcow#g' "$unit" > "$package/usr/lib/systemd/system/$(basename "$unit")"
done
chmod 0644 "$package"/usr/lib/systemd/system/* "$package/usr/share/bash-completion/completions/nbdqcow"
cat > "$package/usr/share/doc/nbdqcow/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nbdqcow

Files: *
Copyright: 2026 the NbdQcow authors
License: unspecified
 The repository does not state a license yet; this package grants none beyond what its authors grant.
EOF
printf 'nbdqcow (%s) unstable; urgency=low\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
  "$version" "${commit:-unknown}" "$maintainer" "$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")" \
  | gzip -9n > "$package/usr/share/doc/nbdqcow/changelog.gz"
# The .NET runtime links its own zlib-ng into every native binary (qcow2's deflate-compressed clusters use it).
mkdir -p "$package/usr/share/lintian/overrides"
printf '# zlib-ng is linked into the binary by the .NET native compiler; it cannot use the system zlib.\nnbdqcow: embedded-library zlib [usr/bin/nbdqcow]\n' \
  > "$package/usr/share/lintian/overrides/nbdqcow"

# Depends: the package of every library the binary links (ldd), at the newest glibc symbol version it uses,
# and libssl3, which the runtime loads with dlopen for TLS (ldd cannot see that one).
depends=()
glibc="$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
while read -r library; do
  owner="$(dpkg -S "$(readlink -f "$library")" 2>/dev/null | head -1 | cut -d: -f1)" || true
  [ -n "$owner" ] || owner="$(dpkg -S "$library" 2>/dev/null | head -1 | cut -d: -f1)" || true
  [ -n "$owner" ] || { echo "build-deb.sh: no Debian package owns $library" >&2; exit 1; }
  case "$owner" in
    libc6) depends+=("libc6 (>= $glibc)") ;;
    *) depends+=("$owner") ;;
  esac
done < <(ldd "$binary" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
depends+=("libssl3 | libssl3t64")
depends_line="$(printf '%s\n' "${depends[@]}" | sort -u | paste -sd, | sed 's/,/, /g')"

installed_size="$(du -sk --exclude=DEBIAN "$package" | cut -f1)"
cat > "$package/DEBIAN/control" <<EOF
Package: nbdqcow
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends_line
Recommends: systemd
Section: net
Priority: optional
Description: NBD server for qcow2 and raw images with verifiable durability
 nbdqcow serves qcow2 and raw disk images over the Network Block Device
 protocol (TCP or Unix sockets, TLS), with qemu's cache modes, ordered
 metadata flushing, an optional metadata journal, and tools to create,
 inspect, check and recover images. Native binary; no .NET runtime needed.
EOF
# The template units change nothing until enabled; systemd only needs to learn that they exist.
for script in postinst postrm; do
  printf '#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n  systemctl daemon-reload >/dev/null 2>&1 || true\nfi\n' \
    > "$package/DEBIAN/$script"
  chmod 0755 "$package/DEBIAN/$script"
done

mkdir -p "$output"
deb="$output/nbdqcow_${version}_amd64.deb"
dpkg-deb --build --root-owner-group -Zxz "$package" "$deb" >/dev/null
echo "$deb"
