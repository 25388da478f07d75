#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ and SharpFuzz.
#   tests/fuzz/run.sh TARGET --seconds N    fuzz one target for N seconds (default 20)
#   tests/fuzz/run.sh all --seconds N       every target, one after the other, N seconds each
#   tests/fuzz/run.sh --list                the targets
# Publishes the fuzz project into .cache/fuzz/publish (never the main build output), instruments the project's
# assemblies there with sharpfuzz, and runs afl-fuzz from the seeds in tests/fuzz/seeds/TARGET. Findings go to
# .cache/fuzz/findings/TARGET (kept between runs; a new run starts afresh). Exits 1 when a target crashed, or
# hung with an input that hangs again when replayed; prints each such input's path, a hexdump and the exception.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/.cache/fuzz"
publish="$out/publish"
seconds=20
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --list) target="--list"; shift ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) target="$1"; shift ;;
  esac
done
[ -n "$target" ] || { echo "usage: tests/fuzz/run.sh TARGET|all [--seconds N]" >&2; exit 2; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

command -v afl-fuzz >/dev/null || { echo "run.sh: afl-fuzz not found (Debian package afl++; scripts/install-deps.sh installs it)" >&2; exit 2; }

# Publish and instrument once per source change.
stamp="$publish/.instrumented"
if [ ! -f "$stamp" ] || [ -n "$(find "$root/protocol" "$root/cache" "$root/image" "$root/server" "$here/NbdQcow.Fuzz" \
      \( -name bin -o -name obj \) -prune -o -type f -newer "$stamp" -print -quit)" ]; then
  echo "run.sh: publishing and instrumenting into $publish" >&2
  rm -rf "$publish"
  dotnet publish "$here/NbdQcow.Fuzz/NbdQcow.Fuzz.csproj" -c Release -o "$publish" --nologo -v quiet \
    >&2
  (cd "$root" && dotnet tool restore >/dev/null)
  for dll in NbdQcow.Protocol.dll NbdQcow.HostIo.dll NbdQcow.Cache.dll NbdQcow.Image.dll nbdqcow.dll ZstdSharp.dll; do
    (cd "$root" && dotnet sharpfuzz "$publish/$dll") >&2
  done
  touch "$stamp"
fi
driver=("$(command -v dotnet)" "$publish/NbdQcow.Fuzz.dll")

if [ "$target" = "--list" ]; then "${driver[@]}" --list; exit 0; fi
if [ "$target" = "all" ]; then
  targets=$("${driver[@]}" --list | awk '{print $1}')
else
  targets="$target"
fi

export AFL_SKIP_BIN_CHECK=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 \
  AFL_NO_AFFINITY=1 AFL_FAST_CAL=1 AFL_CMPLOG_ONLY_NEW=1
failed=0
summary=()
for t in $targets; do
  seeds="$here/seeds/$t"
  [ -d "$seeds" ] || { echo "run.sh: no seeds for target '$t' ($seeds)" >&2; exit 2; }
  findings="$out/findings/$t"
  rm -rf "$findings"
  mkdir -p "$findings"
  echo "run.sh: fuzzing $t for ${seconds}s" >&2
  # -t: per-input timeout (ms), generous for a shared machine; -V: stop after the time; the outer timeout bounds
  # calibration and shutdown too.
  # The first afl-fuzz run after a fresh publish sometimes sees no coverage from its first input ("No
  # instrumentation detected") and stops at once; a second start works.
  for attempt in 1 2; do
    rm -rf "$findings/default"
    timeout --kill-after=10 $((seconds + 60)) afl-fuzz -i "$seeds" -o "$findings" -t 10000 -m none -V "$seconds" \
      -- "${driver[@]}" "$t" > "$findings/afl.log" 2>&1 || true
    grep -aq "No instrumentation detected" "$findings/afl.log" || break
    echo "run.sh: afl-fuzz saw no instrumentation on $t (attempt $attempt)" >&2
  done
  # The journal and recover targets keep files in /dev/shm/nbdqcow-fuzz-PID; afl-fuzz ends them with SIGKILL.
  for d in /dev/shm/nbdqcow-fuzz-*; do
    if [ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null; then rm -rf "$d"; fi
  done
  stats="$findings/default/fuzzer_stats"
  if [ ! -f "$stats" ]; then
    echo "run.sh: afl-fuzz did not start for $t; its log:" >&2
    tail -30 "$findings/afl.log" >&2
    failed=1
    continue
  fi
  stat() { awk -F' *: *' -v k="$1" '$1==k {print $2}' "$stats"; }
  execs=$(stat execs_done); rate=$(stat execs_per_sec); paths=$(stat corpus_count); crashes=$(stat saved_crashes); hangs=$(stat saved_hangs)
  elapsed=$(( $(stat last_update) - $(stat start_time) ))
  summary+=("$(printf '%-14s %6ss %9s execs %8s exec/s %6s paths %3s crashes %3s hangs' "$t" "$elapsed" "$execs" "$rate" "$paths" "$crashes" "$hangs")")
  # SharpFuzz runs inputs in the fork server's own process: an input that hangs past -t (or kills the process)
  # takes the fork server down and afl-fuzz stops early. The input it was on is the culprit.
  if grep -aq "PROGRAM ABORT\|SYSTEM ERROR" "$findings/afl.log"; then
    f="$findings/default/.cur_input"
    echo "run.sh: afl-fuzz stopped early on $t; its last input is $f:" >&2
    # Diagnostics only: "|| true" because head closing the pipe early must not end the script (pipefail).
    grep -a -A2 "PROGRAM ABORT\|SYSTEM ERROR" "$findings/afl.log" | head -4 >&2 || true
    od -A x -t x1z -v "$f" | head -32 >&2 || true
    # The input counts only if its replay fails or hangs too; a replay that finishes means the fork server was
    # lost to a slow moment of the machine (as with hangs below), not to the input.
    rc=0
    timeout 60 "${driver[@]}" "$t" "$f" > "$findings/replay.log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
      echo "run.sh: $t: that input finished when replayed: not counted" >&2
    else
      failed=1
      echo "run.sh: $t: the replay failed too (exit $rc; 124: still running after 60 s):" >&2
      head -20 "$findings/replay.log" >&2 || true
    fi
  fi
  for f in "$findings"/default/crashes/id:*; do
    [ -e "$f" ] || continue
    failed=1
    echo "CRASH in $t: $f" >&2
    od -A x -t x1z -v "$f" | head -32 >&2 || true
    "${driver[@]}" "$t" "$f" 2>&1 | head -20 >&2 || true
  done
  for f in "$findings"/default/hangs/id:*; do
    [ -e "$f" ] || continue
    if timeout 60 "${driver[@]}" "$t" "$f" >/dev/null 2>&1; then
      echo "run.sh: $t: hang input $f finished when replayed (a slow moment of the machine, not a hang)" >&2
    else
      failed=1
      echo "HANG in $t: $f (replay did not finish within 60 s or failed)" >&2
      od -A x -t x1z -v "$f" | head -32 >&2 || true
    fi
  done
done
echo "target           time     executions       rate      paths   crashes   hangs"
printf '%s\n' "${summary[@]}"
exit $failed
