#!/usr/bin/env bash
# Builds sqlite_backup and runs every test with ctest: the README's test command (.ci/run runs it).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -L package      extra arguments go to ctest (here: only the package tests)
#
# Works from any folder, in a fresh clone, as root on Debian 12 (installs what is missing).
# Environment:
#   BUILD_DIR     build folder (default: <clone>/build)
#   BUILD_TYPE    CMake build type (default: RelWithDebInfo)
#   JOBS          parallel compile jobs (default: nproc)
#   CTEST_JOBS    tests run at once (default: 2)
#   TEST_TIMEOUT  seconds for the whole ctest run before it is stopped (default: 1500)
#   SANITIZE      1 (default): afterwards, build again with AddressSanitizer and UBSan (Debug,
#                 in <build folder>-sanitize) and run the tests there too; 0: skip that
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build}
build_type=${BUILD_TYPE:-RelWithDebInfo}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
ctest_jobs=${CTEST_JOBS:-2}
test_timeout=${TEST_TIMEOUT:-1500}
sanitize=${SANITIZE:-1}

step() { printf '\n==> %s\n' "$*"; }

step "dependencies (scripts/install-deps.sh)"
"$repo/scripts/install-deps.sh"

step "configure $build_dir ($build_type)"
generator=()
# A build folder keeps the generator it was made with; choose one only for a new folder.
if [[ ! -f $build_dir/CMakeCache.txt ]] && command -v ninja >/dev/null; then
  generator=(-G Ninja)
fi
# The Python package too: its pytest suite runs under ctest (label "python").
cmake -S "$repo" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE="$build_type" \
  -DSQLITE_BACKUP_PYTHON=ON

step "build (-j$jobs)"
cmake --build "$build_dir" --config "$build_type" -j "$jobs"

step "test (ctest -j$ctest_jobs, at most ${test_timeout}s in all)"
log=$build_dir/ctest.log
set +e
# timeout signals ctest's whole process group, so no test process outlives the limit.
timeout --kill-after=30 "$test_timeout" \
  ctest --test-dir "$build_dir" --build-config "$build_type" --output-on-failure \
    --no-tests=error --timeout 600 -j "$ctest_jobs" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

sanitizer_status=0
if ((sanitize)); then
  sanitize_dir=$build_dir-sanitize
  step "sanitizers: configure and build $sanitize_dir (Debug, AddressSanitizer + UBSan)"
  generator=()
  if [[ ! -f $sanitize_dir/CMakeCache.txt ]] && command -v ninja >/dev/null; then
    generator=(-G Ninja)
  fi
  cmake -S "$repo" -B "$sanitize_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug \
    -DSQLITE_BACKUP_SANITIZE=ON -DSQLITE_BACKUP_BUILD_BENCH=OFF -DSQLITE_BACKUP_INSTALL=OFF \
    -DSQLITE_BACKUP_PYTHON=OFF
  cmake --build "$sanitize_dir" -j "$jobs"
  # The package tests install and rebuild consumers: the first pass covers them. The strace
  # tests trace the CLI, and LeakSanitizer cannot run under ptrace. The Python package is not
  # built here: an ASan extension would need libasan preloaded into the interpreter.
  step "sanitizers: test (ctest -j$ctest_jobs; package tests and the strace tests excluded)"
  sanitize_log=$sanitize_dir/ctest.log
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    timeout --kill-after=30 "$test_timeout" \
    ctest --test-dir "$sanitize_dir" --output-on-failure --no-tests=ignore --timeout 600 \
      -j "$ctest_jobs" -LE package -E '^(CliDurability|WalSourceTrace)\.' "$@" 2>&1 | tee "$sanitize_log"
  sanitizer_status=${PIPESTATUS[0]}
  set -e
fi

step "summary"
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
if ((status == 0 && sanitizer_status == 0)); then
  echo "scripts/test.sh: all tests passed"
elif ((status != 0)); then
  echo "scripts/test.sh: FAILED (ctest exit status $status); full log: $log"
else
  echo "scripts/test.sh: FAILED under the sanitizers (ctest exit status $sanitizer_status);" \
    "full log: $sanitize_log"
fi
((status != 0)) && exit "$status"
exit "$sanitizer_status"
