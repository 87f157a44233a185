#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests and the benchmarks need.
# README, .ci/run and bench/run all call this one script, so the list lives here only.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkgconf git
  libsqlite3-dev sqlite3        # the library we wrap, and the CLI the benchmark compares against
  libcli11-dev libfmt-dev       # command line parsing, formatting
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  python3                       # test helpers that play the database's owner
  python3-dev pybind11-dev      # the Python package (SQLITE_BACKUP_PYTHON=ON), for /usr/bin/python3
  python3-pytest                # its tests
  time                          # /usr/bin/time -v: peak RSS in the benchmark
  xfsprogs                      # reflink benchmark and tests on a loop-mounted XFS (skipped without)
  util-linux e2fsprogs dpkg-dev file
  groff-base                    # renders (and so checks) the man page, docs/sqlite_backup.1
  strace                        # a test counts the fsyncs of a backup (skipped without)
  restic rclone                 # tests/offsite: snapshots streamed off the machine (skipped without)
  systemd                       # systemd-analyze verify checks the shipped units (skipped without)
  clang-14                      # the second compiler of scripts/test.sh (warnings as errors)
  libclang-rt-14-dev            # its AddressSanitizer and UBSan runtimes (the sanitizer pass)
  clang-format-14               # scripts/check-format.sh (the version decides the format)
  clang-tidy-14                 # scripts/tidy.sh
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
