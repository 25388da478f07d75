#!/usr/bin/env bash
# Builds and runs the soak against the real server (./nbdqcow, built by the launcher).
#   tests/soak/run.sh [--minutes N] [--connections C] [--queue-depth Q] [--ops-per-second R] [--restart-every S]
#                     [--image-mib M] [--cache MODE] [--seed N] [--work-dir DIR]
# Exits 0 when the soak passed, 1 when it found a problem (printed), 2 on bad usage.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
cd "$root"
./nbdqcow --help >/dev/null   # builds the Release server once
dotnet build "$here/NbdQcow.Soak/NbdQcow.Soak.csproj" -c Release --nologo -v quiet >&2
exec dotnet "$here/NbdQcow.Soak/bin/Release/net10.0/NbdQcow.Soak.dll" --launcher "$root/nbdqcow" "$@"
