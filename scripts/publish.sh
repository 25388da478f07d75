#!/usr/bin/env bash
# Builds nbdqcow as one self-contained native binary (NativeAOT, linux-x64; no .NET runtime needed to run it):
#   scripts/publish.sh [--output DIR] [--prefix DIR] [--no-deps]
# --output: where the binary goes (default .cache/native; the binary is DIR/nbdqcow, its symbols DIR/nbdqcow.dbg).
# --prefix: also install PREFIX/bin/nbdqcow, the man page and the bash completion (as scripts/install-docs.sh).
# --no-deps: do not install the Debian packages the native compiler needs (clang, zlib1g-dev) when missing.
# Trim and AOT warnings are errors here as in every build. The launcher (./nbdqcow) is not affected.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="$root/.cache/native"
prefix=""
install_deps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --output) output="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --no-deps) install_deps=0; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "publish.sh: unknown argument $1" >&2; echo "Try 'scripts/publish.sh --help'" >&2; exit 2 ;;
  esac
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# The native linker step runs clang and links zlib (the runtime's compression); a fresh Debian 12 has neither.
if [ "$install_deps" = 1 ]; then
  missing=()
  for p in clang zlib1g-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "publish.sh: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# The launcher's lock: its builds and this one share the library projects' obj folders.
mkdir -p "$root/.cache" "$output"
exec 9>"$root/.cache/.build-lock"
flock 9
staging="$(mktemp -d "$root/.cache/native-publish.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
echo "publish.sh: compiling the native binary (takes a few minutes)..." >&2
dotnet publish "$root/server/NbdQcow.Server.csproj" -c Release -r linux-x64 -p:PublishAot=true \
  -o "$staging" --nologo -v quiet -clp:NoSummary >&2 \
  || { echo "publish.sh: native build failed" >&2; exit 1; }
flock -u 9
install -m 0755 "$staging/nbdqcow" "$output/nbdqcow"
install -m 0644 "$staging/nbdqcow.dbg" "$output/nbdqcow.dbg"
echo "publish.sh: built $output/nbdqcow"

if [ -n "$prefix" ]; then
  install -D -m 0755 "$output/nbdqcow" "$prefix/bin/nbdqcow"
  "$root/scripts/install-docs.sh" --prefix "$prefix" --nbdqcow "$output/nbdqcow"
  echo "publish.sh: installed $prefix/bin/nbdqcow"
fi
