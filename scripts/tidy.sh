#!/usr/bin/env bash
# Runs clang-tidy (Debian 12's clang-tidy-14) over the library (src/), the CLI (cli/) and the
# Python package's native module (python/src/, when the build folder has it) with
# the checks in .clang-tidy, where every finding is an error (WarningsAsErrors: '*').
#
#   scripts/tidy.sh                 uses <clone>/build's compile_commands.json
#   scripts/tidy.sh src/io/file.cpp only the files given
#
# Needs a configured build folder with compile_commands.json
# (cmake -DCMAKE_EXPORT_COMPILE_COMMANDS=ON; scripts/test.sh configures its build so).
# Environment:
#   BUILD_DIR    the build folder whose compile_commands.json is used (default: <clone>/build)
#   JOBS         files checked at once (default: nproc)
#   CLANG_TIDY   the clang-tidy to run (default: clang-tidy-14)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
clang_tidy=${CLANG_TIDY:-clang-tidy-14}

if ! command -v "$clang_tidy" >/dev/null; then
  echo "tidy: $clang_tidy not found (scripts/install-deps.sh installs it)" >&2
  exit 2
fi
if [[ ! -f $build_dir/compile_commands.json ]]; then
  echo "tidy: no $build_dir/compile_commands.json; configure with" \
    "cmake -S $repo -B $build_dir -DCMAKE_EXPORT_COMPILE_COMMANDS=ON" >&2
  exit 2
fi

cd "$repo"
if (($# > 0)); then
  files=("$@")
else
  mapfile -t files < <(git ls-files -- 'src/*.cpp' 'cli/*.cpp')
  # The native module is in compile_commands.json only when the package is configured
  # (-DSQLITE_BACKUP_PYTHON=ON, as scripts/test.sh does).
  if grep -q 'python/src/native.cpp' "$build_dir/compile_commands.json"; then
    mapfile -t -O "${#files[@]}" files < <(git ls-files -- 'python/src/*.cpp')
  fi
fi

# One clang-tidy per file, $jobs at a time, each file's findings printed in one piece; any
# finding fails that file (xargs then exits 123). The "N warnings generated" lines count the
# findings in system headers, which HeaderFilterRegex already hides: dropped. gcc's own
# optimization flags in compile_commands.json (pybind11 adds -fno-fat-lto-objects where no build
# type is set) are no findings of ours: clang is told not to object to them.
status=0
# shellcheck disable=SC2016  # the single-quoted script is expanded by sh, not here
printf '%s\0' "${files[@]}" |
  xargs -0 -n 1 -P "$jobs" sh -c '
    out=$("$0" -p "$1" --quiet --extra-arg=-Wno-ignored-optimization-argument "$2" 2>&1); rc=$?
    out=$(printf "%s\n" "$out" | grep -v "^[0-9]* warnings\? generated\.$")
    [ -z "$out" ] || printf "%s\n" "$out"
    exit $rc' "$clang_tidy" "$build_dir" || status=$?
if ((status != 0)); then
  echo "tidy: clang-tidy found problems (above); fix them, or turn a check off in .clang-tidy" \
    "with the reason beside it" >&2
  exit 1
fi
echo "tidy: ${#files[@]} files clean"
