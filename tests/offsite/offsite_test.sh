#!/usr/bin/env bash
# Off-the-machine tests (label "offsite"): snapshots streamed into restic and rclone, the real
# Debian tools, through the wrappers the project ships (scripts/sqlite-backup-restic and
# scripts/sqlite-backup-rclone), and the systemd units checked by systemd-analyze.
#
#   offsite_test.sh STEP     STEP: restic_stream restic_dedup restic_failures disk_full
#                                  rclone_roundtrip rclone_failures systemd_verify
#
# Exit 77 means the step cannot run here (a tool or root is missing); it says why.
# Environment (set by tests/offsite/CMakeLists.txt): SOURCE_DIR, CLI_EXE, OWNER_EXE, WORK_DIR.
set -euo pipefail

step=${1:?usage: offsite_test.sh STEP}
fail() { echo "FAIL ($step): $*" >&2; exit 1; }
skip() { echo "SKIP ($step): $*" >&2; exit 77; }
run() { echo "+ $*" >&2; "$@"; }

: "${SOURCE_DIR:?}" "${CLI_EXE:?}" "${OWNER_EXE:?}" "${WORK_DIR:?}"
export SQLITE_BACKUP=$CLI_EXE
restic_wrapper=$SOURCE_DIR/scripts/sqlite-backup-restic
rclone_wrapper=$SOURCE_DIR/scripts/sqlite-backup-rclone
command -v sqlite3 >/dev/null || skip "sqlite3 is not installed (Debian: sqlite3)"

work=$WORK_DIR/$step
rm -rf "$work" && mkdir -p "$work"
owner_pid=""
cleanup() {
  if [[ -n $owner_pid ]]; then kill "$owner_pid" 2>/dev/null || true; wait "$owner_pid" 2>/dev/null || true; fi
  if [[ -n ${mounted:-} ]]; then umount "$mounted" 2>/dev/null || true; fi
}
trap cleanup EXIT

# A database whose owner keeps it open with every row only in its live WAL (checkpoints off):
# the case a plain copy gets wrong. Waits until the owner says it is ready.
start_live_owner() {
  local db=$1 rows=$2
  "$OWNER_EXE" --db "$db" --mode wal-hold --rows "$rows" --ready "$db.ready" &
  owner_pid=$!
  for _ in $(seq 200); do [[ -f $db.ready ]] && return 0; sleep 0.05; done
  fail "the owner of $db did not get ready"
}

check_restored() {
  local db=$1 rows=$2
  [[ $(sqlite3 "$db" 'PRAGMA integrity_check') == ok ]] || fail "$db does not pass integrity_check"
  [[ $(sqlite3 "$db" 'SELECT count(*) FROM t') == "$rows" ]] ||
    fail "$db has $(sqlite3 "$db" 'SELECT count(*) FROM t') rows, expected $rows"
}

need_restic() {
  command -v restic >/dev/null || skip "restic is not installed (Debian: restic; scripts/install-deps.sh installs it)"
  export RESTIC_REPOSITORY=$work/repo RESTIC_PASSWORD=offsite-test RESTIC_CACHE_DIR=$work/cache
  run restic init --quiet
}
snapshot_count() { restic snapshots --json | grep -o '"short_id"' | wc -l; }

need_rclone() {
  command -v rclone >/dev/null || skip "rclone is not installed (Debian: rclone; scripts/install-deps.sh installs it)"
  export RCLONE_CONFIG=/dev/null  # on-the-fly :local: remotes need no configuration
}

case $step in
  restic_stream)
    need_restic
    start_live_owner "$work/app.sqlite" 3000
    # The pipeline the README documents, as it is, with pipefail: it works on a live database.
    run bash -c 'set -o pipefail; "$0" "$1" - | restic backup --quiet --stdin --stdin-filename app.sqlite' \
      "$CLI_EXE" "$work/app.sqlite"
    run restic dump latest app.sqlite >"$work/restored.sqlite"
    check_restored "$work/restored.sqlite" 3000
    # And through the wrapper, under another name.
    run "$restic_wrapper" --name wrapped.sqlite "$work/app.sqlite" --quiet
    run restic dump latest wrapped.sqlite >"$work/wrapped.sqlite"
    check_restored "$work/wrapped.sqlite" 3000
    cmp "$work/restored.sqlite" "$work/wrapped.sqlite" || fail "two snapshots of an unchanged database differ"
    ;;

  restic_dedup)
    need_restic
    start_live_owner "$work/app.sqlite" 20000
    run "$restic_wrapper" "$work/app.sqlite"
    stored() { restic stats --mode raw-data --json | sed 's/.*"total_size":\([0-9]*\).*/\1/'; }
    before=$(stored)
    run "$restic_wrapper" "$work/app.sqlite"
    after=$(stored)
    size=$(stat -c %s "$work/app.sqlite")
    wal=$(stat -c %s "$work/app.sqlite-wal")
    database=$((size + wal))
    echo "repository: $before -> $after bytes after backing up the unchanged ~$database-byte database again"
    snapshots=$(snapshot_count)
    ((snapshots == 2)) || fail "expected 2 snapshots, found $snapshots"
    ((100 * (after - before) < database)) ||
      fail "the repository grew by $((after - before)) bytes, not less than 1% of $database"
    ;;

  restic_failures)
    need_restic
    # 1. The source is missing: sqlite_backup fails before writing a byte (it writes to `-`
    #    only a finished snapshot). The bare pipeline exits nonzero (pipefail); the wrapper
    #    exits with sqlite_backup's own code, and no snapshot is stored.
    set +e
    bash -c 'set -o pipefail; "$0" "$1" - | restic backup --quiet --stdin --stdin-filename gone.sqlite' \
      "$CLI_EXE" "$work/missing.sqlite"
    bare=$?
    set -e
    ((bare != 0)) || fail "the bare pipeline exited 0 although sqlite_backup failed"
    restic forget --quiet latest 2>/dev/null || true  # (restic 0.14 stores no empty stream)
    set +e
    "$restic_wrapper" "$work/missing.sqlite" 2>"$work/err"
    status=$?
    set -e
    cat "$work/err" >&2
    ((status == 2)) || fail "the wrapper exited $status for a missing source, not sqlite_backup's 2"
    grep -q "missing.sqlite" "$work/err" || fail "the error does not name the source"
    (($(snapshot_count) == 0)) || fail "a failed snapshot left a restic snapshot behind"

    # 2. The producer dies half-way through the stream (a stand-in that writes half of a real
    #    snapshot, then exits 5, as a write error or a signal would end it): restic stores what
    #    it got and calls it a snapshot. The bare pipeline exits nonzero but leaves that
    #    snapshot; the wrapper forgets it.
    sqlite3 "$work/db.sqlite" "CREATE TABLE t(v); INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n LIMIT 500) SELECT randomblob(1000) FROM n;"
    cat >"$work/dying-sqlite-backup" <<EOF
#!/usr/bin/env bash
"$CLI_EXE" "$work/db.sqlite" "$work/whole.sqlite" >/dev/null
head -c 100000 "$work/whole.sqlite"
rm -f "$work/whole.sqlite"
exit 5
EOF
    chmod +x "$work/dying-sqlite-backup"
    set +e
    bash -c 'set -o pipefail; "$0" x - | restic backup --quiet --stdin --stdin-filename half.sqlite' \
      "$work/dying-sqlite-backup"
    bare=$?
    set -e
    ((bare != 0)) || fail "the bare pipeline exited 0 although its producer failed"
    (($(snapshot_count) == 1)) || fail "expected restic to have stored the half stream (the case the wrapper is for)"
    run restic forget --quiet latest
    set +e
    SQLITE_BACKUP=$work/dying-sqlite-backup "$restic_wrapper" --name half.sqlite "$work/db.sqlite" 2>"$work/err"
    status=$?
    set -e
    cat "$work/err" >&2
    ((status == 5)) || fail "the wrapper exited $status when its producer failed with 5"
    (($(snapshot_count) == 0)) || fail "the snapshot of a half stream was not forgotten"

    # 3. restic fails (here: a wrong password): the wrapper exits 20 and stores nothing.
    start_live_owner "$work/app.sqlite" 500
    set +e
    RESTIC_PASSWORD=wrong "$restic_wrapper" "$work/app.sqlite" 2>"$work/err"
    status=$?
    set -e
    cat "$work/err" >&2
    ((status == 20)) || fail "the wrapper exited $status when restic failed, not 20"
    (($(snapshot_count) == 0)) || fail "a failed upload left a restic snapshot behind"

    # 4. restic fails after reading the whole stream, having stored a snapshot (a stand-in
    #    that runs the real restic, then exits 1): that snapshot is forgotten.
    cat >"$work/failing-restic" <<'EOF'
#!/usr/bin/env bash
restic "$@"
[[ $1 == backup ]] && exit 1
exit 0
EOF
    chmod +x "$work/failing-restic"
    set +e
    RESTIC=$work/failing-restic "$restic_wrapper" "$work/app.sqlite" 2>"$work/err"
    status=$?
    set -e
    cat "$work/err" >&2
    ((status == 20)) || fail "the wrapper exited $status when restic reported failure, not 20"
    (($(snapshot_count) == 0)) || fail "the snapshot of a failed run was not forgotten"
    ;;

  disk_full)
    need_restic
    [[ $(id -u) == 0 ]] || skip "needs root to mount a small tmpfs for the repository"
    # A repository on a filesystem too small for the snapshot.
    mkdir -p "$work/small"
    mount -t tmpfs -o size=2m tmpfs "$work/small" 2>/dev/null || skip "cannot mount a tmpfs here"
    mounted=$work/small
    export RESTIC_REPOSITORY=$work/small/repo
    run restic init --quiet
    sqlite3 "$work/big.sqlite" "CREATE TABLE t(v); INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n LIMIT 2000) SELECT randomblob(4000) FROM n;"
    set +e
    "$restic_wrapper" "$work/big.sqlite" 2>"$work/err"
    status=$?
    set -e
    tail -3 "$work/err" >&2
    ((status == 20 || status == 21)) || fail "the wrapper exited $status on a full repository disk"
    count=$(restic snapshots --json 2>/dev/null | grep -o '"short_id"' | wc -l || true)
    ((count == 0)) || fail "a full disk left $count restic snapshot(s)"
    ;;

  rclone_roundtrip)
    need_rclone
    start_live_owner "$work/app.sqlite" 3000
    run "$rclone_wrapper" "$work/app.sqlite" ":local:$work/remote/app.sqlite"
    [[ ! -e $work/remote/app.sqlite.partial ]] || fail "the .partial object is still there"
    run rclone cat ":local:$work/remote/app.sqlite" >"$work/back.sqlite"
    check_restored "$work/back.sqlite" 3000
    run "$CLI_EXE" "$work/app.sqlite" "$work/direct.sqlite"
    cmp "$work/back.sqlite" "$work/direct.sqlite" || fail "the uploaded snapshot differs from a direct one"
    ;;

  rclone_failures)
    need_rclone
    mkdir -p "$work/remote"
    echo "an earlier snapshot" >"$work/remote/app.sqlite"
    # The source is missing: exit 2, the earlier object untouched, no .partial.
    set +e
    "$rclone_wrapper" "$work/missing.sqlite" ":local:$work/remote/app.sqlite" 2>"$work/err"
    status=$?
    set -e
    cat "$work/err" >&2
    ((status == 2)) || fail "the wrapper exited $status for a missing source, not 2"
    [[ $(cat "$work/remote/app.sqlite") == "an earlier snapshot" ]] || fail "the earlier object was replaced"
    [[ ! -e $work/remote/app.sqlite.partial ]] || fail "a .partial object was left"
    # rclone fails after storing part of the stream (a stand-in that stores it, then exits 1).
    start_live_owner "$work/app.sqlite" 500
    cat >"$work/failing-rclone" <<'EOF'
#!/usr/bin/env bash
rclone "$@"
[[ $1 == rcat ]] && exit 1
exit 0
EOF
    chmod +x "$work/failing-rclone"
    set +e
    RCLONE=$work/failing-rclone "$rclone_wrapper" "$work/app.sqlite" ":local:$work/remote/app.sqlite" 2>"$work/err"
    status=$?
    set -e
    cat "$work/err" >&2
    ((status == 20)) || fail "the wrapper exited $status when rclone failed, not 20"
    [[ $(cat "$work/remote/app.sqlite") == "an earlier snapshot" ]] || fail "the earlier object was replaced"
    [[ ! -e $work/remote/app.sqlite.partial ]] || fail "the .partial object was left"
    ;;

  systemd_verify)
    command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed (Debian: systemd)"
    # The units as installed, with ExecStart at the binary just built (verify checks that it
    # is executable); --man=no: the man page is not installed here.
    sed "s|@SQLITE_BACKUP_UNIT_EXEC@|$CLI_EXE|" "$SOURCE_DIR/systemd/sqlite-backup@.service.in" \
      >"$work/sqlite-backup@example.service"
    cp "$SOURCE_DIR/systemd/sqlite-backup@.timer" "$work/sqlite-backup@example.timer"
    grep -q "^ExecStart=$CLI_EXE " "$work/sqlite-backup@example.service" || fail "ExecStart was not filled in"
    run systemd-analyze verify --man=no "$work/sqlite-backup@example.service" "$work/sqlite-backup@example.timer"
    # The command line the service runs, with the example environment file's values, works.
    mkdir -p "$work/data"
    sqlite3 "$work/data/app.sqlite" "CREATE TABLE t(v); INSERT INTO t VALUES (1), (2);"
    SOURCE=$work/data/app.sqlite DESTINATION=$work/data/copy.sqlite OPTIONS=--verify=quick
    # shellcheck disable=SC2086  # $OPTIONS splits into words, as systemd splits it
    run "$CLI_EXE" $OPTIONS -- "$SOURCE" "$DESTINATION"
    [[ $(sqlite3 "$DESTINATION" 'SELECT count(*) FROM t') == 2 ]] || fail "the service's command did not back up"
    ;;

  *)
    fail "unknown step $step"
    ;;
esac
echo "PASS ($step)"
