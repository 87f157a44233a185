#!/usr/bin/env bash
# Checks that every C++ file of the project is formatted as .clang-format says, with
# clang-format 14 (Debian 12's clang-format-14; another version formats differently).
#
#   scripts/check-format.sh          report the files that differ (exit 1 if any), change nothing
#   scripts/check-format.sh --fix    reformat them in place
#
# The files are the C++ sources and headers git tracks (src/, include/, cli/, tests/, bench/),
# so a build folder or an untracked scratch file is never looked at.
# Environment: CLANG_FORMAT  the clang-format to run (default: clang-format-14)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
clang_format=${CLANG_FORMAT:-clang-format-14}
fix=0
case ${1:-} in
  --fix) fix=1 ;;
  '') ;;
  *) echo "usage: $0 [--fix]" >&2; exit 2 ;;
esac

if ! command -v "$clang_format" >/dev/null; then
  echo "check-format: $clang_format not found (scripts/install-deps.sh installs it)" >&2
  exit 2
fi

cd "$repo"
mapfile -t files < <(git ls-files -- '*.cpp' '*.hpp' '*.h' '*.cc')
if ((${#files[@]} == 0)); then
  echo "check-format: no C++ files found under $repo" >&2
  exit 2
fi

if ((fix)); then
  "$clang_format" -i --style=file "${files[@]}"
  echo "check-format: formatted ${#files[@]} files"
  exit 0
fi

# --dry-run --Werror prints each difference as an error and fails when there is one.
if ! "$clang_format" --dry-run --Werror --style=file "${files[@]}"; then
  echo "check-format: the files above are not formatted; run: scripts/check-format.sh --fix" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted as .clang-format says"
