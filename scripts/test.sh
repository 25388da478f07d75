#!/usr/bin/env bash
# The one test command: installs missing Debian packages the tests use, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
./nbdqcow --help >/dev/null         # builds the Release server the interop tests start
./nbdqcow bench --help >/dev/null   # and the bench tool its tests run
dotnet build NbdQcow.sln -c Release --nologo -v quiet
# No merge left its conflict markers in any tracked file (docs included, which no compiler reads).
if git rev-parse --git-dir >/dev/null 2>&1 && git grep -nE '^(<<<<<<<|>>>>>>>) ' -- . ':!scripts/test.sh'; then
  echo "test.sh: unresolved merge conflict markers (listed above)" >&2; exit 1
fi
# The code stays formatted as .editorconfig says (whitespace, import order, braces): `dotnet format NbdQcow.sln` fixes it.
dotnet format NbdQcow.sln --verify-no-changes -v quiet \
  || { echo "test.sh: the code is not formatted as .editorconfig says; run: dotnet format NbdQcow.sln" >&2; exit 1; }
dotnet test NbdQcow.sln -c Release --no-build --nologo --logger "console;verbosity=normal" "$@"
# Coverage-guided fuzzing, every target briefly (a crash or a confirmed hang fails), then the 2-minute soak.
tests/fuzz/run.sh all --seconds 15
tests/soak/run.sh --minutes 2
# Last, as its restore for linux-x64 touches the shared obj folders: the native binary (NativeAOT publish, zero
# trim/AOT warnings), the interop tests native compilation can break run against it, and its Debian package
# installed, served from and removed again.
tests/native/run.sh
