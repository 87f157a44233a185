#!/usr/bin/env bash
# Checks, builds and tests sqlite_backup: the README's test command (.ci/run runs it).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -L package      extra arguments go to ctest (here: only the package tests)
#
# The steps, in order: install packages; format check (scripts/check-format.sh); gcc build
# with warnings as errors; clang-tidy (scripts/tidy.sh); every test (ctest); a second build
# with clang, warnings as errors, AddressSanitizer and UBSan, and the tests again there.
# Works from any folder, in a fresh clone, as root on Debian 12 (installs what is missing).
# Environment (each step switch is 1 by default; 0 skips the step):
#   BUILD_DIR     build folder (default: <clone>/build)
#   BUILD_TYPE    CMake build type (default: RelWithDebInfo)
#   JOBS          parallel compile jobs (default: nproc)
#   CTEST_JOBS    tests run at once (default: 2)
#   TEST_TIMEOUT  seconds for the whole ctest run before it is stopped (default: 1500)
#   FORMAT        1: check the formatting with clang-format-14 (scripts/check-format.sh)
#   WERROR        1: compiler warnings are errors in both builds (-DSQLITE_BACKUP_WERROR=ON)
#   TIDY          1: clang-tidy-14 over src/, cli/ and python/src/ (scripts/tidy.sh), with the
#                 gcc build's compile_commands.json
#   SANITIZE      1: build again with clang-14 (the second compiler: its warnings are errors
#                 too), AddressSanitizer and UBSan (Debug, no benchmarks, in
#                 <build folder>-clang-sanitize; the Python package's native module is compiled
#                 there but not tested) and run the tests there too
# A failed format check, clang-tidy run or clang + sanitizer build does not stop the later
# steps; the summary names every step that failed, and the exit status is nonzero if any did.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build}
build_type=${BUILD_TYPE:-RelWithDebInfo}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
ctest_jobs=${CTEST_JOBS:-2}
test_timeout=${TEST_TIMEOUT:-1500}
sanitize=${SANITIZE:-1}
format=${FORMAT:-1}
werror=${WERROR:-1}
tidy=${TIDY:-1}
werror_flag=-DSQLITE_BACKUP_WERROR=$( ((werror)) && echo ON || echo OFF)

step() { printf '\n==> %s\n' "$*"; }
# Seconds each step took, for the summary: `timed NAME command...`.
timings=()
timed() {
  local name=$1 started=$SECONDS rc=0
  shift
  "$@" || rc=$?
  timings+=("$name $((SECONDS - started))s")
  return "$rc"
}
# Ninja for a new build folder (a folder keeps the generator it was made with).
generator_for() {
  if [[ ! -f $1/CMakeCache.txt ]] && command -v ninja >/dev/null; then echo "-GNinja"; fi
}
failed_steps=()

step "dependencies (scripts/install-deps.sh)"
"$repo/scripts/install-deps.sh"

if ((format)); then
  step "format (scripts/check-format.sh)"
  timed format "$repo/scripts/check-format.sh" || failed_steps+=("format (fix: scripts/check-format.sh --fix)")
fi

step "configure $build_dir ($build_type)"
# compile_commands.json: what clang-tidy compiles each file with. The Python package too: its
# pytest suite runs under ctest (label "python").
# shellcheck disable=SC2046
cmake -S "$repo" -B "$build_dir" $(generator_for "$build_dir") -DCMAKE_BUILD_TYPE="$build_type" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "$werror_flag" -DSQLITE_BACKUP_PYTHON=ON

step "build (-j$jobs)"
timed build cmake --build "$build_dir" --config "$build_type" -j "$jobs"

if ((tidy)); then
  step "clang-tidy (scripts/tidy.sh, -j$jobs)"
  timed tidy env BUILD_DIR="$build_dir" JOBS="$jobs" "$repo/scripts/tidy.sh" ||
    failed_steps+=("clang-tidy")
fi

step "test (ctest -j$ctest_jobs, at most ${test_timeout}s in all)"
log=$build_dir/ctest.log
set +e
tests_started=$SECONDS
# timeout signals ctest's whole process group, so no test process outlives the limit.
timeout --kill-after=30 "$test_timeout" \
  ctest --test-dir "$build_dir" --build-config "$build_type" --output-on-failure \
    --no-tests=error --timeout 600 -j "$ctest_jobs" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
timings+=("tests $((SECONDS - tests_started))s")

sanitizer_status=0
if ((sanitize)); then
  sanitize_dir=$build_dir-clang-sanitize
  step "sanitizers: configure and build $sanitize_dir (clang-14, Debug, AddressSanitizer + UBSan, $werror_flag)"
  # One build for the second compiler and the sanitizers: clang's warnings (the Python
  # package's native module included: compiled, not run) and the tests under ASan + UBSan.
  # shellcheck disable=SC2046
  if ! CC=clang-14 CXX=clang++-14 cmake -S "$repo" -B "$sanitize_dir" \
    $(generator_for "$sanitize_dir") -DCMAKE_BUILD_TYPE=Debug "$werror_flag" \
    -DSQLITE_BACKUP_SANITIZE=ON -DSQLITE_BACKUP_BUILD_BENCH=OFF -DSQLITE_BACKUP_INSTALL=OFF \
    -DSQLITE_BACKUP_PYTHON=ON || ! timed sanitize-build cmake --build "$sanitize_dir" -j "$jobs"; then
    failed_steps+=("clang + sanitizer build (clang's warnings are errors too)")
    sanitize=0
  fi
fi
if ((sanitize)); then
  # The package tests install and rebuild consumers: the first pass covers them. The offsite
  # tests drive restic, rclone and systemd around the CLI, whose own tests run here. The
  # strace tests trace the CLI, and LeakSanitizer cannot run under ptrace. The Python tests
  # would need the ASan runtime preloaded into the interpreter: the first pass runs them.
  step "sanitizers: test (ctest -j$ctest_jobs; package, offsite, python and strace tests excluded)"
  sanitize_log=$sanitize_dir/ctest.log
  set +e
  sanitize_started=$SECONDS
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    timeout --kill-after=30 "$test_timeout" \
    ctest --test-dir "$sanitize_dir" --output-on-failure --no-tests=ignore --timeout 600 \
      -j "$ctest_jobs" -LE 'package|offsite|python' -E '^(CliDurability|WalSourceTrace)\.' "$@" 2>&1 |
    tee "$sanitize_log"
  sanitizer_status=${PIPESTATUS[0]}
  set -e
  timings+=("sanitize-tests $((SECONDS - sanitize_started))s")
fi

step "summary"
echo "time per step: ${timings[*]}"
if ((sanitize)); then
  echo "sanitizer pass: $(sed -n '/tests passed, /p' "$sanitize_log")"
fi
if ((status == 124 || status == 137)); then
  echo "ctest did not finish within ${test_timeout}s and was stopped (raise TEST_TIMEOUT?); log: $log"
else
  # ctest's own summary lines, repeated here because failure output can push them far up.
  sed -n -e '/tests passed, /p' -e '/^Total Test time/p' \
    -e '/The following tests FAILED/,/^Errors while running CTest/p' "$log"
fi
for failed in "${failed_steps[@]}"; do
  echo "scripts/test.sh: FAILED: $failed"
done
if ((status == 0 && sanitizer_status == 0 && ${#failed_steps[@]} == 0)); then
  echo "scripts/test.sh: all checks and tests passed"
elif ((status != 0)); then
  echo "scripts/test.sh: FAILED (ctest exit status $status); full log: $log"
elif ((sanitizer_status != 0)); then
  echo "scripts/test.sh: FAILED under the sanitizers (ctest exit status $sanitizer_status);" \
    "full log: $sanitize_log"
fi
((status != 0)) && exit "$status"
((sanitizer_status != 0)) && exit "$sanitizer_status"
((${#failed_steps[@]} == 0)) || exit 1
exit 0
