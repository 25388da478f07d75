#!/usr/bin/env bash
# Builds nbdqcow as one self-contained native binary (NativeAOT, linux-x64; no .NET runtime needed to run it):
#   scripts/publish.sh [--output DIR] [--prefix DIR] [--no-deps] [--fast-start]
# --output: where the binary goes (default .cache/native; the binary is DIR/nbdqcow, its symbols DIR/nbdqcow.dbg).
# --prefix: also install PREFIX/bin/nbdqcow, the man page and the bash completion (as scripts/install-docs.sh).
# --no-deps: do not install the Debian packages the native compiler needs (clang, zlib1g-dev) when missing.
# --fast-start: link a position-dependent binary with its data ready to map: about a third less CPU to start and
#   2-3 MiB less RSS, but the binary's own code loses address randomisation (ASLR). Off by default.
# Trim and AOT warnings are errors here as in every build. The launcher (./nbdqcow) is not affected.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="$root/.cache/native"
prefix=""
install_deps=1
fast_start=0
while [ $# -gt 0 ]; do
  case "$1" in
    --output) output="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --no-deps) install_deps=0; shift ;;
    --fast-start) fast_start=1; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "publish.sh: unknown argument $1" >&2; echo "Try 'scripts/publish.sh --help'" >&2; exit 2 ;;
  esac
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# The native linker step runs clang and links zlib (the runtime's compression); a fresh Debian 12 has neither.
if [ "$install_deps" = 1 ]; then
  "$root/scripts/install-deps.sh" clang zlib1g-dev
fi

# The launcher's lock: its builds and this one share the library projects' obj folders.
mkdir -p "$root/.cache" "$output"
exec 9>"$root/.cache/.build-lock"
flock 9
staging="$(mktemp -d "$root/.cache/native-publish.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
# A PIE binary's static data needs either rehydration (the default) or relocation at every start; a
# position-dependent one maps it from the file as linked.
layout=()
[ "$fast_start" = 1 ] && layout=(-p:PositionIndependentExecutable=false -p:IlcDehydrate=false)
echo "publish.sh: compiling the native binary (takes a few minutes)..." >&2
dotnet publish "$root/server/NbdQcow.Server.csproj" -c Release -r linux-x64 -p:PublishAot=true "${layout[@]}" \
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
