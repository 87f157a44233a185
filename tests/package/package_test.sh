#!/usr/bin/env bash
# The package tests, one step per invocation (ctest runs each as its own test):
#   install         cmake --install of this build tree into $WORK_DIR/prefix (fixture for the next two)
#   find_package    the consumer project built against that prefix through find_package
#   pkg_config      sqlite_backup.pc from that prefix: flags, then a consumer built with them
#   add_subdirectory  the consumer project pulling the source tree in with add_subdirectory
#   deb             cpack -G DEB: the .deb's files and fields, and a consumer built against its contents
#   man_page        docs/sqlite_backup.1 renders without warnings and documents every --help option
# Environment (set by tests/package/CMakeLists.txt): SOURCE_DIR BINARY_DIR WORK_DIR CMAKE_COMMAND
# CPACK_COMMAND CMAKE_GENERATOR CXX_COMPILER BUILD_CONFIG CLI_EXE.
# Exit 0 pass, 77 skipped (a tool is missing; ctest shows it as skipped), anything else fails.
set -euo pipefail

step=${1:?usage: package_test.sh STEP}
: "${SOURCE_DIR:?}" "${BINARY_DIR:?}" "${WORK_DIR:?}" "${CMAKE_COMMAND:?}"
prefix=$WORK_DIR/prefix
consumer_src=$SOURCE_DIR/tests/package/consumer

fail() { echo "FAIL ($step): $*" >&2; exit 1; }
skip() { echo "SKIP ($step): $*" >&2; exit 77; }
run() { echo "+ $*" >&2; "$@"; }

# Configures, builds and runs the consumer project in $1 with the extra cache arguments after it.
build_and_run_consumer() {
  local build=$1; shift
  rm -rf "$build"
  run "$CMAKE_COMMAND" -S "$consumer_src" -B "$build" -G "$CMAKE_GENERATOR" \
    -DCMAKE_CXX_COMPILER="$CXX_COMPILER" "$@"
  run "$CMAKE_COMMAND" --build "$build" -j 2
  run "$build/consumer" "$build/run"
}

# Imports the Python package from `site` (and nothing from the build tree) and takes a memory
# snapshot with it.
check_python_package() {
  local site=$1 scratch
  scratch=$(mktemp -d)
  (cd "$scratch" && PYTHONPATH=$site "$PYTHON_EXE" -c '
import sqlite3, sys, sqlite_backup
assert sqlite_backup.__file__.startswith(sys.argv[1]), sqlite_backup.__file__
db = sqlite3.connect("db.sqlite"); db.execute("CREATE TABLE t (x)"); db.execute("INSERT INTO t VALUES (1)")
db.commit(); db.close()
snapshot = sqlite_backup.sqlite_backup("db.sqlite")
assert isinstance(snapshot, sqlite3.Connection) and snapshot.execute("SELECT x FROM t").fetchone() == (1,)
print("imported", sqlite_backup.__file__)
' "$site") || { rm -rf "$scratch"; fail "the installed Python package does not work from $site"; }
  rm -rf "$scratch"
}

# Fails when a binary of ours under $1 (an install, or an unpacked .deb) carries debug
# sections: a stripped install ships none (CPACK_STRIP_FILES, cmake --install --strip; the
# static library and the Python engine by our own install rules). $2 names what is checked.
expect_stripped() {
  local root=$1 what=$2 binary sections checked=0
  if ! command -v readelf >/dev/null; then
    echo "$what: readelf is not installed (Debian: binutils): not checked for debug sections" >&2
    return 0
  fi
  while IFS= read -r -d '' binary; do
    # (Read whole: grep -q would quit early, and under pipefail readelf's SIGPIPE would fail
    # the pipeline whatever it found.)
    sections=$(readelf -S --wide "$binary" 2>&1) || fail "readelf cannot read $binary: $sections"
    [[ $sections != *.debug_info* ]] ||
      fail "$what: ${binary#"$root"} carries debug information (it is not stripped)"
    checked=$((checked + 1))
  done < <(find "$root" -type f \( -name sqlite_backup -o -name 'libsqlite_backup.*' \
                                   -o -name '_native*.so' \) -print0)
  ((checked > 0)) || fail "$what: no binary of ours found under $root"
  echo "$what: $checked binaries without debug sections"
}

case $step in
  install)
    rm -rf "$prefix"
    run "$CMAKE_COMMAND" --install "$BINARY_DIR" --prefix "$prefix" ${BUILD_CONFIG:+--config "$BUILD_CONFIG"}
    # What a user of the package needs, wherever GNUInstallDirs put the library folder.
    for wanted in include/sqlite_backup/sqlite_backup.hpp include/sqlite_backup/log.hpp \
                  bin/sqlite_backup share/man/man1/sqlite_backup.1 \
                  bin/sqlite-backup-restic bin/sqlite-backup-rclone \
                  lib/systemd/system/sqlite-backup@.service lib/systemd/system/sqlite-backup@.timer \
                  share/doc/sqlite_backup/examples/sqlite-backup.conf \
                  share/doc/sqlite_backup/examples/override-restic.conf \
                  share/doc/sqlite_backup/examples/override-rclone.conf; do
      [[ -f $prefix/$wanted ]] || fail "cmake --install left no $wanted in $prefix"
    done
    # The service runs the binary installed beside it, in this prefix.
    grep -qx "ExecStart=$prefix/bin/sqlite_backup \$OPTIONS -- \${SOURCE} \${DESTINATION}.new" \
      "$prefix/lib/systemd/system/sqlite-backup@.service" ||
      fail "the installed service's ExecStart is not $prefix/bin/sqlite_backup"
    for tool in restic rclone; do
      grep -q "^ExecStart=$prefix/bin/sqlite-backup-$tool " "$prefix/share/doc/sqlite_backup/examples/override-$tool.conf" ||
        fail "the installed $tool drop-in does not run $prefix/bin/sqlite-backup-$tool"
    done
    # And systemd accepts the units as installed (an instance of each: they are templates),
    # without a warning.
    if command -v systemd-analyze >/dev/null; then
      units=$WORK_DIR/installed-units
      rm -rf "$units" && mkdir -p "$units"
      cp "$prefix/lib/systemd/system/sqlite-backup@.service" "$units/sqlite-backup@example.service"
      cp "$prefix/lib/systemd/system/sqlite-backup@.timer" "$units/sqlite-backup@example.timer"
      verified=$(systemd-analyze verify --man=no "$units/sqlite-backup@example.service" \
                   "$units/sqlite-backup@example.timer" 2>&1) ||
        fail "systemd-analyze verify rejects the installed units: $verified"
      [[ -z $verified ]] || fail "systemd-analyze verify warns about the installed units: $verified"
    else
      echo "install: systemd-analyze is not installed (Debian: systemd): the installed units are not verified" >&2
    fi
    for pattern in 'lib*/libsqlite_backup.*' 'lib*/cmake/sqlite_backup/sqlite_backupConfig.cmake' \
                   'lib*/cmake/sqlite_backup/sqlite_backupConfigVersion.cmake' \
                   'lib*/cmake/sqlite_backup/sqlite_backupTargets.cmake' 'lib*/pkgconfig/sqlite_backup.pc'; do
      compgen -G "$prefix/$pattern" >/dev/null || fail "cmake --install left nothing matching $pattern in $prefix"
    done
    # The warnings target is ours alone: it must not leak into consumers through the export.
    if grep -rq sqlite_backup_warnings "$prefix"/lib*/cmake/sqlite_backup/; then
      fail "the exported targets mention sqlite_backup_warnings"
    fi
    "$prefix/bin/sqlite_backup" --version
    if [[ -n ${PYTHON_EXE:-} ]]; then
      # The Python package lands where the interpreter looks below this prefix (its platlib).
      site=$prefix/${PYTHON_PLATLIB_BELOW_PREFIX:?}
      compgen -G "$site/sqlite_backup/_native*.so" >/dev/null ||
        fail "cmake --install left no Python engine in $site/sqlite_backup"
      check_python_package "$site"
    fi
    echo "installed into $prefix"
    # A stripped install of the same build.
    stripped=$WORK_DIR/stripped
    rm -rf "$stripped"
    run "$CMAKE_COMMAND" --install "$BINARY_DIR" --prefix "$stripped" --strip \
      ${BUILD_CONFIG:+--config "$BUILD_CONFIG"}
    expect_stripped "$stripped" "cmake --install --strip"
    rm -rf "$stripped"
    ;;

  find_package)
    build_and_run_consumer "$WORK_DIR/find_package" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_BUILD_TYPE="${BUILD_CONFIG:-Release}"
    ;;

  pkg_config)
    command -v pkg-config >/dev/null || skip "pkg-config is not installed (Debian: pkgconf)"
    pc_dir=$(dirname "$(compgen -G "$prefix/lib*/pkgconfig/sqlite_backup.pc" | head -n1)")
    export PKG_CONFIG_PATH=$pc_dir
    run pkg-config --validate sqlite_backup
    cflags=$(pkg-config --cflags sqlite_backup)
    libs=$(pkg-config --libs sqlite_backup)
    echo "pkg-config --cflags --libs sqlite_backup: $cflags $libs"
    [[ $(pkg-config --modversion sqlite_backup) == "${PROJECT_VERSION:?}" ]] ||
      fail "--modversion is $(pkg-config --modversion sqlite_backup), not $PROJECT_VERSION"
    # ${pcfiledir} makes the file relocatable: its paths must point into this prefix.
    include_dir=$(pkg-config --variable=includedir sqlite_backup)
    [[ -f $include_dir/sqlite_backup/sqlite_backup.hpp ]] || fail "includedir $include_dir has no header"
    [[ $libs == *-lsqlite_backup* ]] || fail "--libs lacks -lsqlite_backup"
    { pkg-config --print-requires sqlite_backup; pkg-config --print-requires-private sqlite_backup; } |
      grep -qx sqlite3 || fail "sqlite_backup.pc does not require sqlite3"
    if ! compgen -G "$prefix/lib*/libsqlite_backup.so" >/dev/null; then
      # Only an archive is installed: its SQLite calls stay unresolved until the consumer's
      # link, so plain --libs (no --static) must already name SQLite.
      [[ $libs == *-lsqlite3* ]] || fail "static library, but --libs lacks -lsqlite3: $libs"
    fi
    # The consumer itself also calls SQLite (it creates the database), hence sqlite3 beside it.
    build=$WORK_DIR/pkg_config
    rm -rf "$build" && mkdir -p "$build"
    # shellcheck disable=SC2046  # word splitting of pkg-config's output is the point
    rpath=()
    if compgen -G "$prefix/lib*/libsqlite_backup.so" >/dev/null; then
      # A shared library outside the loader's paths: as any user of that prefix would.
      rpath=("-Wl,-rpath,$(pkg-config --variable=libdir sqlite_backup)")
    fi
    run "$CXX_COMPILER" -std=c++20 -o "$build/consumer" "$consumer_src/main.cpp" \
      $(pkg-config --cflags --libs sqlite_backup sqlite3) "${rpath[@]}"
    run "$build/consumer" "$build/run"
    ;;

  add_subdirectory)
    # Debug: this test is about the CMake wiring, and -O0 halves the compile time.
    build_and_run_consumer "$WORK_DIR/add_subdirectory" -DSQLITE_BACKUP_SOURCE_DIR="$SOURCE_DIR" \
      -DCMAKE_BUILD_TYPE=Debug
    ;;

  deb)
    command -v dpkg-deb >/dev/null || skip "dpkg-deb is not installed (Debian: dpkg)"
    out=$WORK_DIR/deb
    rm -rf "$out" && mkdir -p "$out"
    run "${CPACK_COMMAND:?}" -G DEB --config "$BINARY_DIR/CPackConfig.cmake" -B "$out" \
      ${BUILD_CONFIG:+-C "$BUILD_CONFIG"}
    debs=("$out"/*.deb)
    ((${#debs[@]} == 1)) && [[ -f ${debs[0]} ]] || fail "expected one .deb in $out, found: ${debs[*]}"
    deb=${debs[0]}
    echo "built $deb"
    run dpkg-deb --info "$deb"
    contents=$(dpkg-deb --contents "$deb")
    echo "$contents"
    for pattern in ' ./usr/bin/sqlite_backup$' ' ./usr/include/sqlite_backup/sqlite_backup.hpp$' \
                   ' ./usr/include/sqlite_backup/log.hpp$' ' ./usr/lib/.*libsqlite_backup\.(a|so)' \
                   ' ./usr/lib/.*cmake/sqlite_backup/sqlite_backupConfig\.cmake$' \
                   ' ./usr/lib/.*cmake/sqlite_backup/sqlite_backupTargets\.cmake$' \
                   ' ./usr/lib/.*pkgconfig/sqlite_backup\.pc$' ' ./usr/share/man/man1/sqlite_backup\.1' \
                   ' ./usr/bin/sqlite-backup-restic$' ' ./usr/bin/sqlite-backup-rclone$' \
                   ' ./usr/lib/systemd/system/sqlite-backup@\.service$' \
                   ' ./usr/lib/systemd/system/sqlite-backup@\.timer$'; do
      grep -Eq "$pattern" <<<"$contents" || fail "the .deb has no file matching '$pattern'"
    done
    field() { dpkg-deb --field "$deb" "$1"; }
    [[ $(field Package) == sqlite-backup ]] || fail "Package is '$(field Package)'"
    [[ $(field Version) == "$PROJECT_VERSION"-* ]] || fail "Version is '$(field Version)'"
    depends_on_sqlite='(^|[ ,])libsqlite3-0([ ,(]|$)'
    [[ $(field Depends) =~ $depends_on_sqlite ]] || fail "Depends lacks libsqlite3-0: '$(field Depends)'"
    [[ -n $(field Maintainer) ]] || fail "no Maintainer"
    [[ -n $(field Section) ]] || fail "no Section"
    [[ $(field Description) == *snapshot* ]] || fail "Description is '$(field Description)'"
    # The packaged files work where they land: a consumer builds against the unpacked tree
    # (its CMake config and .pc find their prefix from their own location).
    root=$out/root
    run dpkg-deb --extract "$deb" "$root"
    "$root/usr/bin/sqlite_backup" --version
    grep -q '^ExecStart=/usr/bin/sqlite_backup ' "$root/usr/lib/systemd/system/sqlite-backup@.service" ||
      fail "the packaged service does not run /usr/bin/sqlite_backup"
    if command -v pkg-config >/dev/null; then
      packaged_include=$(PKG_CONFIG_PATH=$(dirname "$(compgen -G "$root/usr/lib*/pkgconfig/sqlite_backup.pc" | head -n1)") \
        pkg-config --variable=includedir sqlite_backup)
      [[ -f $packaged_include/sqlite_backup/sqlite_backup.hpp ]] ||
        fail "the packaged sqlite_backup.pc points at $packaged_include, which has no header"
    fi
    expect_stripped "$root" "the .deb"
    build_and_run_consumer "$out/consumer" -DCMAKE_PREFIX_PATH="$root/usr" \
      -DCMAKE_BUILD_TYPE="${BUILD_CONFIG:-Release}"
    if [[ -n ${PYTHON_EXE:-} ]]; then
      # Where Debian's own Python packages go, on /usr/bin/python3's path once installed.
      grep -Eq ' ./usr/lib/python3/dist-packages/sqlite_backup/_native.*\.so$' <<<"$contents" ||
        fail "the .deb has no Python package in /usr/lib/python3/dist-packages"
      "$PYTHON_EXE" -c 'import sys; sys.exit("/usr/lib/python3/dist-packages" not in sys.path)' ||
        fail "/usr/lib/python3/dist-packages is not on $PYTHON_EXE's path"
      check_python_package "$root/usr/lib/python3/dist-packages"
    fi
    ;;

  man_page)
    page=$SOURCE_DIR/docs/sqlite_backup.1
    command -v groff >/dev/null || skip "groff is not installed (Debian: groff-base); cannot render $page"
    # -ww: every warning; -z: no output, so anything on stderr is a warning.
    warnings=$(groff -man -ww -z -Tutf8 "$page" 2>&1)
    [[ -z $warnings ]] || fail "groff warns about $page: $warnings"
    # Plain text (no escape sequences, no overstriking) to compare against --help.
    text=$(GROFF_NO_SGR=1 groff -man -Tascii -P-bou "$page" 2>/dev/null)
    for section in NAME SYNOPSIS DESCRIPTION OPTIONS ENVIRONMENT 'EXIT STATUS' EXAMPLES; do
      grep -q "^$section\$" <<<"$text" || fail "$page has no $section section"
    done
    [[ -x ${CLI_EXE:-} ]] || skip "no sqlite_backup executable to compare the options with"
    options=$("$CLI_EXE" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
    [[ -n $options ]] || fail "sqlite_backup --help listed no options"
    # The OPTIONS section's item tags: the lines indented like a .TP tag (not the text below).
    tags=$(sed -n '/^OPTIONS$/,/^[A-Z]/p' <<<"$text" | grep -E '^ {7}-' || true)
    for option in $options; do
      grep -qE -- "(^|[ ,])$option([ ,=[]|\$)" <<<"$tags" ||
        fail "$page has no OPTIONS item for $option (listed by --help)"
    done
    for needle in SQLITE_BACKUP_LOGS places.sqlite History zstd '0 3 \* \* \*' 130 143; do
      grep -q -- "$needle" <<<"$text" || fail "$page does not mention $needle"
    done
    echo "$page renders cleanly and documents: $(echo $options)"
    ;;

  *) echo "unknown step $step" >&2; exit 2 ;;
esac
