#!/usr/bin/env bash
# Installs the man page and the bash completion, both generated from the command definitions of this build:
#   scripts/install-docs.sh [--prefix DIR] [--nbdqcow PATH]
# Defaults: prefix /usr/local, the repository's launcher. Writes PREFIX/share/man/man1/nbdqcow.1.gz and
# PREFIX/share/bash-completion/completions/nbdqcow.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/usr/local
nbdqcow="$root/nbdqcow"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --nbdqcow) nbdqcow="$2"; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-docs.sh: unknown argument $1" >&2; echo "Try 'scripts/install-docs.sh --help'" >&2; exit 2 ;;
  esac
done
man_dir="$prefix/share/man/man1"
completion_dir="$prefix/share/bash-completion/completions"
mkdir -p "$man_dir" "$completion_dir"
"$nbdqcow" docs man | gzip -9n > "$man_dir/nbdqcow.1.gz"
"$nbdqcow" docs bash-completion > "$completion_dir/nbdqcow"
echo "install-docs.sh: installed $man_dir/nbdqcow.1.gz and $completion_dir/nbdqcow"
