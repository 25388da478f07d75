#!/usr/bin/env bash
# The one test command: installs missing Debian packages the tests use, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
./nbdqcow --help >/dev/null         # builds the Release server the interop tests start
./nbdqcow bench --help >/dev/null   # and the bench tool its tests run
dotnet build NbdQcow.sln -c Release --nologo -v quiet
dotnet test NbdQcow.sln -c Release --no-build --nologo --logger "console;verbosity=normal" "$@"
# Coverage-guided fuzzing, every target briefly (a crash or a confirmed hang fails), then the 2-minute soak.
tests/fuzz/run.sh all --seconds 15
tests/soak/run.sh --minutes 2
