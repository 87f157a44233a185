#!/usr/bin/env bash
# Off-the-machine tests (label "offsite"): snapshots streamed into restic and rclone, the real
# Debian tools, bare and through the wrappers the project ships (scripts/sqlite-backup-restic and
# scripts/sqlite-backup-rclone), and the systemd units checked by systemd-analyze and run.
#
#   offsite_test.sh STEP     (the steps are the cases of the `case` below; tests/offsite/
#                             CMakeLists.txt registers each as the ctest test offsite.STEP)
#
# Exit 0: passed. Exit 1: failed (the line "FAIL (STEP): ..." says what). Exit 77: the step
# cannot run here (a tool, root or a mount is missing): skipped, and "SKIP (STEP): ..." says why.
# Environment (set by tests/offsite/CMakeLists.txt): SOURCE_DIR, WORK_DIR, CLI_EXE, OWNER_EXE,
# CHURN_EXE.
#
# The `bash -c '...' ARG...` pipelines expand $0, $1 in the inner shell, on purpose:
# shellcheck disable=SC2016
set -euo pipefail

step=${1:?usage: offsite_test.sh STEP}
fail() { echo "FAIL ($step): $*" >&2; exit 1; }
skip() { echo "SKIP ($step): $*" >&2; exit 77; }
run() { echo "+ $*" >&2; "$@"; }

: "${SOURCE_DIR:?}" "${CLI_EXE:?}" "${OWNER_EXE:?}" "${CHURN_EXE:?}" "${WORK_DIR:?}"
export SQLITE_BACKUP=$CLI_EXE
restic_wrapper=$SOURCE_DIR/scripts/sqlite-backup-restic
rclone_wrapper=$SOURCE_DIR/scripts/sqlite-backup-rclone
command -v sqlite3 >/dev/null || skip "sqlite3 is not installed (Debian: sqlite3)"

work=$WORK_DIR/$step
rm -rf "$work" && mkdir -p "$work"
background_pids=()
mounts=()
cleanup() {
  local pid mount
  for pid in "${background_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for mount in "${mounts[@]}"; do umount "$mount" 2>/dev/null || true; done
}
trap cleanup EXIT

# Runs "$@" and stores its exit status in $status, whatever it is (set -e stays on).
status=0
capture() { status=0; "$@" || status=$?; }

# ---- Databases and their owners -----------------------------------------------------------
# A database whose owner keeps it open with every row only in its live WAL (checkpoints off):
# the case a plain copy gets wrong. Nobody writes to it after the owner says it is ready.
start_idle_owner() {
  local db=$1 rows=$2
  "$OWNER_EXE" --db "$db" --mode wal-hold --rows "$rows" --ready "$db.ready" &
  background_pids+=($!)
  wait_for "the owner of $db to get ready" test -f "$db.ready"
}

# A database that a writer keeps committing to, flat out, the whole time (tests/support's
# sqlite_churn: every transaction keeps invariants that `sqlite_churn check` verifies).
start_writer() {
  local db=$1
  run "$CHURN_EXE" prime --db "$db" --mb 2 --journal wal >/dev/null
  "$CHURN_EXE" write --db "$db" --status "$db.status" --max-sleep-us 0 &
  background_pids+=($!)
  wait_for "the writer of $db to get ready" churn_ready "$db.status"
}
churn_field() { od -An -t d8 -j "$2" -N 8 "$1" 2>/dev/null | tr -d ' '; }  # status file, offset
churn_ready() { [[ $(churn_field "$1" 48) == 1 ]]; }
committed() { churn_field "$1.status" 0; }

# Waits (at most 10 s) for a condition to hold: a process getting ready, not an interleaving.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 200); do "$@" && return 0; sleep 0.05; done
  fail "timed out waiting for $what"
}

# A database of about MiB mebibytes of random blobs in table r, nobody has open: larger than a
# pipe's buffer (64 KiB), so a producer whose reader stops reading is sure to write into a
# closed pipe.
make_database() {
  local db=$1 mib=$2
  sqlite3 "$db" "CREATE TABLE r(v); INSERT INTO r WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n LIMIT $((mib * 256))) SELECT randomblob(4000) FROM n;"
}

check_restored() {
  local db=$1 rows=$2
  [[ $(sqlite3 "$db" 'PRAGMA integrity_check') == ok ]] || fail "$db does not pass integrity_check"
  [[ $(sqlite3 "$db" 'SELECT count(*) FROM t') == "$rows" ]] ||
    fail "$db has $(sqlite3 "$db" 'SELECT count(*) FROM t') rows, expected $rows"
}

# A snapshot taken while the writer committed: integrity_check, the writer's invariants (sums,
# checksums, a gap-free log), and no older than the state committed before it began.
check_written() {
  local db=$1 at_least=$2 verdict k
  [[ $(sqlite3 "$db" 'PRAGMA integrity_check') == ok ]] || fail "$db does not pass integrity_check"
  verdict=$("$CHURN_EXE" check --db "$db") || fail "$db breaks the writer's invariants: $verdict"
  k=$(sed -n 's/^K=//p' <<<"$verdict")
  ((k >= at_least)) || fail "$db holds transaction $k, older than $at_least, committed before the backup began"
  echo "$db: transaction $k, invariants hold" >&2
}

# A stand-in for sqlite_backup that dies half-way through its stream, as a signal or a write
# error would end it: it writes the first 100,000 bytes of a real snapshot of $1, then exits 5.
make_dying_producer() {
  local path=$1 db=$2
  cat >"$path" <<EOF
#!/usr/bin/env bash
"$CLI_EXE" "$db" "$work/whole.sqlite" 2>/dev/null
head -c 100000 "$work/whole.sqlite"
rm -f "$work/whole.sqlite"
exit 5
EOF
  chmod +x "$path"
}

# ---- restic ----------------------------------------------------------------------------------
# A fresh local repository per step. `restic init` calibrates its key derivation for seconds,
# so the first step to need one makes a template (under a lock: ctest runs steps in parallel)
# and every step starts from a copy of it.
need_restic() {
  command -v restic >/dev/null || skip "restic is not installed (Debian: restic; scripts/install-deps.sh installs it)"
  export RESTIC_PASSWORD=offsite-test RESTIC_CACHE_DIR=$work/cache
  local template=$WORK_DIR/restic-template
  (
    flock 9
    if [[ ! -f $template/config ]]; then
      rm -rf "$template"
      RESTIC_REPOSITORY=$template restic init --quiet
    fi
  ) 9>"$WORK_DIR/restic-template.lock"
  cp -a "$template" "$work/repo"
  export RESTIC_REPOSITORY=$work/repo
}
snapshot_count() {
  local listing
  listing=$(restic snapshots --json) || fail "restic snapshots failed"
  grep -o '"short_id"' <<<"$listing" | wc -l || true
}
expect_snapshots() {
  local count
  count=$(snapshot_count)
  ((count == $1)) || fail "$2: the repository holds $count snapshot(s), expected $1"
}
# The documented bare pipeline, with pipefail: PRODUCER SOURCE - | restic backup --stdin.
bare_restic() {
  bash -c 'set -o pipefail; "$0" "$1" - | restic backup --quiet --stdin --stdin-filename "$2"' "$@"
}

# ---- rclone ----------------------------------------------------------------------------------
need_rclone() {
  command -v rclone >/dev/null || skip "rclone is not installed (Debian: rclone; scripts/install-deps.sh installs it)"
  export RCLONE_CONFIG=/dev/null  # on-the-fly :local: remotes need no configuration
}

# ---- Small filesystems -------------------------------------------------------------------------
mount_small_tmpfs() {
  local folder=$1 size=$2
  [[ $(id -u) == 0 ]] || skip "needs root to mount a small tmpfs (a full disk)"
  mkdir -p "$folder"
  mount -t tmpfs -o "size=$size" tmpfs "$folder" 2>/dev/null || skip "cannot mount a tmpfs here (no permission in this container?)"
  mounts+=("$folder")
}

# ---- systemd ---------------------------------------------------------------------------------
# The units as `cmake --install` writes them, with ExecStart at the binary just built.
write_units() {
  sed "s|@SQLITE_BACKUP_UNIT_EXEC@|$CLI_EXE|" "$SOURCE_DIR/systemd/sqlite-backup@.service.in" \
    >"$work/sqlite-backup@example.service"
  cp "$SOURCE_DIR/systemd/sqlite-backup@.timer" "$work/sqlite-backup@example.timer"
}

# The drop-ins that send the service's snapshot to restic or rclone, as installed, with
# ExecStart at the wrappers in this source tree.
write_dropin() {
  sed "s|@SQLITE_BACKUP_UNIT_BINDIR@|$SOURCE_DIR/scripts|" "$SOURCE_DIR/systemd/override-$1.conf.in" \
    >"$work/override-$1.conf"
}

# Runs what systemd runs for one start of the service made of the unit file $1 and the drop-ins
# after it (read in that order, where an empty assignment drops the commands before it): every
# ExecStartPre=, then ExecStart=, then ExecStartPost=, stopping at the first failure not marked
# "-". The environment file's variables expand as systemd expands them: ${NAME} is one argument
# (also inside a word), $NAME splits on whitespace; %i is the instance "example", %H the host.
# Returns the failed command's status, or 0.
run_service() {
  local key line ignore command_status commands
  for key in ExecStartPre ExecStart ExecStartPost; do
    commands=()
    while IFS= read -r line; do
      if [[ -z $line ]]; then commands=(); else commands+=("$line"); fi
    done < <(sed -n "s/^$key=//p" "$@")
    for line in "${commands[@]}"; do
      # Only what this emulation understands: no quotes, no other specifiers or $ forms.
      [[ $line =~ ^[-A-Za-z0-9_./@%\$\{\}=\ ]+$ ]] || fail "cannot emulate $key=$line"
      line=${line//%i/example}
      line=${line//%H/$(hostname)}
      [[ $line != *%* ]] || fail "cannot emulate the specifiers of $key=$line"
      ignore=0
      if [[ $line == -* ]]; then ignore=1; line=${line#-}; fi
      line=$(sed -E 's/\$\{([A-Z_]+)\}/"${\1}"/g' <<<"$line")
      echo "+ [$key] $line" >&2
      command_status=0
      eval "$line" || command_status=$?
      if ((command_status != 0 && !ignore)); then return "$command_status"; fi
    done
  done
  return 0
}

case $step in
  wrappers_usage)
    # --help exits 0 and documents the exit codes; bad usage exits 64 with one line on stderr
    # naming the problem; a program that is not there is named. No restic or rclone needed.
    for wrapper in "$restic_wrapper" "$rclone_wrapper"; do
      name=$(basename "$wrapper")
      "$wrapper" --help >"$work/help" || fail "$name --help exited $?"
      grep -q '^exit status:' "$work/help" || fail "$name --help documents no exit status"
      for arguments in "--bogus x" "" "--sqlite-backup-option"; do
        # shellcheck disable=SC2086  # the arguments are words
        capture "$wrapper" $arguments 2>"$work/err"
        ((status == 64)) || fail "$name $arguments exited $status, not 64"
        [[ $(wc -l <"$work/err") == 1 ]] || fail "$name $arguments printed more than one line: $(cat "$work/err")"
        grep -q "^$name: error: " "$work/err" || fail "$name $arguments: $(cat "$work/err")"
      done
      capture env SQLITE_BACKUP=/nonexistent/sqlite_backup "$wrapper" db.sqlite remote:db.sqlite 2>"$work/err"
      ((status == 64)) || fail "$name with a missing sqlite_backup exited $status, not 64"
      grep -q "/nonexistent/sqlite_backup" "$work/err" || fail "$name does not name the missing program: $(cat "$work/err")"
    done
    ;;

  restic_stream)
    need_restic
    start_writer "$work/app.sqlite"
    # The pipeline the README documents, as it is, with pipefail, on a database a writer keeps
    # committing to the whole time.
    before=$(committed "$work/app.sqlite")
    run bare_restic "$CLI_EXE" "$work/app.sqlite" app.sqlite
    after=$(committed "$work/app.sqlite")
    ((after > before)) || fail "the writer committed nothing during the backup ($before, $after)"
    run restic dump latest app.sqlite >"$work/restored.sqlite"
    check_written "$work/restored.sqlite" "$before"
    # And through the wrapper, under another name.
    before=$(committed "$work/app.sqlite")
    run "$restic_wrapper" --name wrapped.sqlite "$work/app.sqlite" --quiet
    run restic dump latest wrapped.sqlite >"$work/wrapped.sqlite"
    check_written "$work/wrapped.sqlite" "$before"
    expect_snapshots 2 "two backups"
    ;;

  restic_dedup)
    need_restic
    # 4 MiB of random blobs (restic compresses: these it cannot shrink), then 20,000 rows that
    # the owner keeps in its live WAL.
    make_database "$work/app.sqlite" 4
    start_idle_owner "$work/app.sqlite" 20000
    stored() { restic stats --mode raw-data --json | sed 's/.*"total_size":\([0-9]*\).*/\1/'; }
    run "$restic_wrapper" "$work/app.sqlite"
    first=$(stored)
    run "$restic_wrapper" "$work/app.sqlite"
    second=$(stored)
    expect_snapshots 2 "two backups of one database"
    run restic dump latest app.sqlite >"$work/restored.sqlite"
    check_restored "$work/restored.sqlite" 20000
    database=$(stat -c %s "$work/restored.sqlite")
    echo "repository: $first -> $second bytes after backing up the unchanged $database-byte database again" >&2
    ((first >= 4 * 1024 * 1024)) || fail "the first backup stored only $first bytes of $database"
    ((100 * (second - first) < database)) ||
      fail "the repository grew by $((second - first)) bytes, not less than 1% of $database"
    ;;

  restic_missing_source)
    need_restic
    # sqlite_backup fails before writing a byte (it writes to `-` only a finished snapshot):
    # the bare pipeline exits nonzero (pipefail; restic 0.14 also refuses an empty stream), the
    # wrapper with sqlite_backup's own status, naming the source. No snapshot either way.
    capture bare_restic "$CLI_EXE" "$work/missing.sqlite" gone.sqlite
    ((status != 0)) || fail "the bare pipeline exited 0 although sqlite_backup failed"
    expect_snapshots 0 "the bare pipeline of a missing source"
    capture "$restic_wrapper" "$work/missing.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 2)) || fail "the wrapper exited $status for a missing source, not sqlite_backup's 2"
    grep -q "missing.sqlite" "$work/err" || fail "the error does not name the source"
    expect_snapshots 0 "the wrapper, a missing source"
    ;;

  restic_corrupt_source)
    need_restic
    # Not a database (SQLite's magic, then garbage): sqlite_backup exits 3 and writes nothing.
    { printf 'SQLite format 3\0'; head -c 200000 /dev/urandom; } >"$work/corrupt.sqlite"
    capture bare_restic "$CLI_EXE" "$work/corrupt.sqlite" corrupt.sqlite
    ((status != 0)) || fail "the bare pipeline exited 0 although sqlite_backup failed"
    capture "$restic_wrapper" "$work/corrupt.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 3)) || fail "the wrapper exited $status for a corrupt source, not sqlite_backup's 3"
    grep -q "corrupt.sqlite" "$work/err" || fail "the error does not name the source"
    expect_snapshots 0 "a corrupt source"
    ;;

  restic_producer_dies)
    need_restic
    # The producer dies half-way through the stream: restic stores what it got and calls it a
    # snapshot. The bare pipeline exits nonzero but leaves that snapshot (the case the wrapper
    # is for); the wrapper forgets it, and the repository stays sound.
    make_database "$work/db.sqlite" 1
    make_dying_producer "$work/dying-sqlite-backup" "$work/db.sqlite"
    capture bare_restic "$work/dying-sqlite-backup" x half.sqlite
    ((status != 0)) || fail "the bare pipeline exited 0 although its producer failed"
    expect_snapshots 1 "restic given a half stream (what the wrapper must undo)"
    run restic forget --quiet latest
    capture env SQLITE_BACKUP="$work/dying-sqlite-backup" "$restic_wrapper" --name half.sqlite "$work/db.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 5)) || fail "the wrapper exited $status when its producer failed with 5"
    expect_snapshots 0 "the wrapper, a producer dying half-way"
    run restic check --quiet
    ;;

  restic_consumer_fails)
    need_restic
    make_database "$work/db.sqlite" 1
    # 1. restic stops before reading (here: a wrong password), so sqlite_backup writes into a
    #    closed pipe and fails too (exit 5, "Broken pipe"): the wrapper says restic failed (20).
    capture env RESTIC_PASSWORD=wrong bash -c 'set -o pipefail; "$0" "$1" - | restic backup --quiet --stdin --stdin-filename db.sqlite' \
      "$CLI_EXE" "$work/db.sqlite"
    ((status != 0)) || fail "the bare pipeline exited 0 although restic failed"
    capture env RESTIC_PASSWORD=wrong "$restic_wrapper" "$work/db.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    grep -q "Broken pipe" "$work/err" || fail "sqlite_backup did not write into a closed pipe (the case under test)"
    ((status == 20)) || fail "the wrapper exited $status when restic failed first, not 20"
    expect_snapshots 0 "a restic with a wrong password"

    # 2. A restic that reads the whole stream, then fails without storing (a stand-in earlier
    #    on PATH; any other restic command goes to the real one).
    real_restic=$(command -v restic)
    mkdir -p "$work/bin"
    cat >"$work/bin/restic" <<EOF
#!/usr/bin/env bash
if [[ \$1 == backup ]]; then cat >/dev/null; echo "restic (stand-in): failing after reading" >&2; exit 1; fi
exec "$real_restic" "\$@"
EOF
    chmod +x "$work/bin/restic"
    capture env PATH="$work/bin:$PATH" bash -c 'set -o pipefail; "$0" "$1" - | restic backup --quiet --stdin --stdin-filename db.sqlite' \
      "$CLI_EXE" "$work/db.sqlite"
    ((status != 0)) || fail "the bare pipeline exited 0 although restic failed after reading"
    capture env PATH="$work/bin:$PATH" "$restic_wrapper" "$work/db.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 20)) || fail "the wrapper exited $status when restic failed after reading, not 20"
    expect_snapshots 0 "a restic failing after reading"

    # 3. A restic that stores the snapshot and then reports failure (the real restic, then
    #    exit 1): the wrapper forgets that snapshot.
    cat >"$work/failing-restic" <<EOF
#!/usr/bin/env bash
"$real_restic" "\$@" || exit
[[ \$1 == backup ]] && exit 1
exit 0
EOF
    chmod +x "$work/failing-restic"
    capture env RESTIC="$work/failing-restic" "$restic_wrapper" "$work/db.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 20)) || fail "the wrapper exited $status when restic reported failure, not 20"
    expect_snapshots 0 "a restic failing after storing"
    ;;

  disk_full)
    need_restic
    make_database "$work/big.sqlite" 8
    # 1. The repository's disk fills up (a 2 MiB tmpfs for an 8 MiB snapshot): restic fails,
    #    the wrapper exits 20 and no snapshot is left.
    mount_small_tmpfs "$work/small-repo" 2m
    RESTIC_REPOSITORY=$work/small-repo/repo run restic init --quiet
    capture env RESTIC_REPOSITORY="$work/small-repo/repo" "$restic_wrapper" "$work/big.sqlite" 2>"$work/err"
    tail -3 "$work/err" >&2
    ((status == 20 || status == 21)) || fail "the wrapper exited $status on a full repository disk, not 20"
    count=$(RESTIC_REPOSITORY=$work/small-repo/repo restic snapshots --json 2>/dev/null | grep -o '"short_id"' | wc -l || true)
    ((count == 0)) || fail "a full repository disk left $count restic snapshot(s)"
    # 2. sqlite_backup's own disk fills up (TMPDIR, where `-` is staged, on a 2 MiB tmpfs): it
    #    exits 5 having written nothing, and the wrapper with it; no snapshot.
    mount_small_tmpfs "$work/small-tmp" 2m
    capture env TMPDIR="$work/small-tmp" "$restic_wrapper" "$work/big.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 5)) || fail "the wrapper exited $status when sqlite_backup's disk was full, not 5"
    expect_snapshots 0 "a full disk under sqlite_backup"
    [[ -z $(ls -A "$work/small-tmp") ]] || fail "something was left in the full TMPDIR: $(ls -A "$work/small-tmp")"
    ;;

  rclone_roundtrip)
    need_rclone
    start_writer "$work/app.sqlite"
    # The bare pipeline, to an on-the-fly local remote, and back with rclone cat.
    before=$(committed "$work/app.sqlite")
    run bash -c 'set -o pipefail; "$0" "$1" - | rclone rcat "$2"' \
      "$CLI_EXE" "$work/app.sqlite" ":local:$work/remote/bare.sqlite"
    run rclone cat ":local:$work/remote/bare.sqlite" >"$work/bare.sqlite"
    check_written "$work/bare.sqlite" "$before"
    # Through the wrapper: no .partial is left, and what comes back is what was sent.
    before=$(committed "$work/app.sqlite")
    run "$rclone_wrapper" "$work/app.sqlite" ":local:$work/remote/app.sqlite"
    [[ ! -e $work/remote/app.sqlite.partial ]] || fail "the .partial object is still there"
    run rclone cat ":local:$work/remote/app.sqlite" >"$work/back.sqlite"
    check_written "$work/back.sqlite" "$before"
    cmp "$work/back.sqlite" "$work/remote/app.sqlite" || fail "rclone cat gave other bytes than were stored"
    ;;

  rclone_failures)
    need_rclone
    mkdir -p "$work/remote"
    earlier() { [[ $(cat "$work/remote/app.sqlite") == "an earlier snapshot" ]] || fail "$1: the earlier object was replaced"; }
    no_partial() { [[ ! -e $work/remote/app.sqlite.partial ]] || fail "$1: a .partial object was left"; }
    echo "an earlier snapshot" >"$work/remote/app.sqlite"
    # 1. The source is missing: sqlite_backup's exit 2, the earlier object untouched.
    capture "$rclone_wrapper" "$work/missing.sqlite" ":local:$work/remote/app.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 2)) || fail "the wrapper exited $status for a missing source, not 2"
    earlier "a missing source"; no_partial "a missing source"
    # 2. The producer dies half-way: the bare pipeline exits nonzero but stores the half; the
    #    wrapper deletes it and keeps the earlier object.
    make_database "$work/db.sqlite" 1
    make_dying_producer "$work/dying-sqlite-backup" "$work/db.sqlite"
    capture bash -c 'set -o pipefail; "$0" x - | rclone rcat "$1"' "$work/dying-sqlite-backup" ":local:$work/remote/half.sqlite"
    ((status != 0)) || fail "the bare pipeline exited 0 although its producer failed"
    [[ $(stat -c %s "$work/remote/half.sqlite") == 100000 ]] || fail "expected rclone to store the half stream (what the wrapper must undo)"
    capture env SQLITE_BACKUP="$work/dying-sqlite-backup" "$rclone_wrapper" "$work/db.sqlite" ":local:$work/remote/app.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 5)) || fail "the wrapper exited $status when its producer failed with 5"
    earlier "a producer dying half-way"; no_partial "a producer dying half-way"
    # 3. rclone stops before reading (a stand-in that exits 1 at once): sqlite_backup writes
    #    into a closed pipe; the wrapper says rclone failed (20).
    printf '#!/usr/bin/env bash\n[[ $* == *rcat* ]] && { echo "rclone (stand-in): failing" >&2; exit 1; }\nexec rclone "$@"\n' \
      >"$work/early-rclone"
    chmod +x "$work/early-rclone"
    capture env RCLONE="$work/early-rclone" "$rclone_wrapper" "$work/db.sqlite" ":local:$work/remote/app.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    grep -q "Broken pipe" "$work/err" || fail "sqlite_backup did not write into a closed pipe (the case under test)"
    ((status == 20)) || fail "the wrapper exited $status when rclone failed first, not 20"
    earlier "rclone failing first"; no_partial "rclone failing first"
    # 4. rclone stores all of it, then fails (the real rclone, then exit 1).
    printf '#!/usr/bin/env bash\nrclone "$@" || exit\n[[ $* == *rcat* ]] && exit 1\nexit 0\n' >"$work/failing-rclone"
    chmod +x "$work/failing-rclone"
    capture env RCLONE="$work/failing-rclone" "$rclone_wrapper" "$work/db.sqlite" ":local:$work/remote/app.sqlite" 2>"$work/err"
    cat "$work/err" >&2
    ((status == 20)) || fail "the wrapper exited $status when rclone failed after storing, not 20"
    earlier "rclone failing after storing"; no_partial "rclone failing after storing"
    # 5. And when all goes well, the earlier object is replaced.
    run "$rclone_wrapper" "$work/db.sqlite" ":local:$work/remote/app.sqlite"
    [[ $(sqlite3 "$work/remote/app.sqlite" 'SELECT count(*) FROM r') == 256 ]] || fail "the good run stored no whole snapshot"
    no_partial "a good run"
    ;;

  systemd_verify)
    command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed (Debian: systemd)"
    write_units
    grep -q "^ExecStart=$CLI_EXE " "$work/sqlite-backup@example.service" || fail "ExecStart was not filled in"
    # --man=no: the man page is not installed here. Any warning (an unknown key, a command that
    # is not executable) fails the step, not only an error. The service with each drop-in too
    # (a drop-in's [Service] merges into the unit's, as one file holding both).
    write_dropin restic
    write_dropin rclone
    mkdir -p "$work/restic" "$work/rclone"
    for tool in restic rclone; do
      cat "$work/sqlite-backup@example.service" "$work/override-$tool.conf" \
        >"$work/$tool/sqlite-backup@example.service"
    done
    for unit in "$work/sqlite-backup@example.service $work/sqlite-backup@example.timer" \
                "$work/restic/sqlite-backup@example.service" "$work/rclone/sqlite-backup@example.service"; do
      # shellcheck disable=SC2086  # two units in the first word
      capture systemd-analyze verify --man=no $unit >"$work/verify.out" 2>&1
      cat "$work/verify.out" >&2
      ((status == 0)) || fail "systemd-analyze verify $unit failed ($status)"
      [[ ! -s $work/verify.out ]] || fail "systemd-analyze verify $unit warned: $(head -1 "$work/verify.out")"
    done
    grep -qx 'Type=oneshot' "$work/sqlite-backup@example.service" || fail "the service is not Type=oneshot"
    grep -qx 'Persistent=true' "$work/sqlite-backup@example.timer" || fail "the timer is not Persistent=true"
    grep -qx 'EnvironmentFile=/etc/sqlite-backup/%i.conf' "$work/sqlite-backup@example.service" ||
      fail "the service does not read /etc/sqlite-backup/%i.conf"
    ;;

  systemd_dropins)
    # The service with each shipped drop-in, run as systemd would run it: the snapshot lands in
    # restic, or at the rclone remote, and nowhere else.
    need_restic
    need_rclone
    write_units
    write_dropin restic
    write_dropin rclone
    sqlite3 "$work/app.sqlite" "CREATE TABLE t(v); INSERT INTO t VALUES (1), (2);"
    export SOURCE=$work/app.sqlite DESTINATION=":local:$work/remote/app.sqlite" OPTIONS=--json
    run_service "$work/sqlite-backup@example.service" "$work/override-restic.conf" ||
      fail "the service with the restic drop-in failed ($?)"
    expect_snapshots 1 "the service with the restic drop-in"
    run restic dump latest --path /example.sqlite example.sqlite >"$work/restored.sqlite"
    check_restored "$work/restored.sqlite" 2
    run_service "$work/sqlite-backup@example.service" "$work/override-rclone.conf" ||
      fail "the service with the rclone drop-in failed ($?)"
    check_restored "$work/remote/app.sqlite" 2
    [[ $(ls -A "$work/remote") == app.sqlite ]] || fail "the remote holds $(ls -A "$work/remote")"
    [[ ! -e $work/remote/app.sqlite.new && ! -e $work/app.sqlite.new ]] || fail "a .new file was written"
    ;;

  systemd_runs)
    # The service's commands, run as systemd runs them, three times: the snapshot is replaced
    # at each run (sqlite_backup itself never overwrites), a failed run keeps the last one.
    write_units
    unit=$work/sqlite-backup@example.service
    mkdir -p "$work/app data" "$work/back ups"
    sqlite3 "$work/app data/app.sqlite" "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (1), (2);" >/dev/null
    # The shipped example's keys, with this test's paths (spaces included).
    keys=$(sed -n 's/^\([A-Z_]*\)=.*/\1/p' "$SOURCE_DIR/systemd/example.conf" | sort | tr '\n' ' ')
    [[ $keys == "DESTINATION OPTIONS SOURCE " ]] || fail "example.conf sets $keys"
    export SOURCE="$work/app data/app.sqlite" DESTINATION="$work/back ups/app.sqlite" OPTIONS="--verify=quick --json"
    run_service "$unit" || fail "the first run failed ($?)"
    check_restored "$DESTINATION" 2
    sqlite3 "$SOURCE" "INSERT INTO t VALUES (3);"
    echo "a leftover of a stopped run" >"$DESTINATION.new"
    run_service "$unit" || fail "the second run failed ($?): the service cannot replace its last snapshot"
    check_restored "$DESTINATION" 3
    [[ ! -e $DESTINATION.new ]] || fail "DESTINATION.new is left after a good run"
    SOURCE=$work/missing.sqlite
    capture run_service "$unit"
    ((status == 2)) || fail "a run with a missing source ended $status, not sqlite_backup's 2"
    check_restored "$DESTINATION" 3
    [[ ! -e $DESTINATION.new ]] || fail "a failed run left DESTINATION.new"
    leftovers=$(ls -A "$work/back ups")
    [[ $leftovers == app.sqlite ]] || fail "the destination folder holds more than the snapshot: $leftovers"
    ;;

  *)
    fail "unknown step $step"
    ;;
esac
echo "PASS ($step)"
