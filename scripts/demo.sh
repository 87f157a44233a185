#!/usr/bin/env bash
# Backs up a live database while another process keeps committing to it: the README's
# "run a real backup" command.
#
# Builds the sqlite_backup command (Release), starts a writer (python3) that commits to a
# WAL-mode database in a tight loop (its checkpoints and WAL resets happen while we copy),
# takes a few snapshots with sqlite_backup while it writes, and checks each one: it opens,
# PRAGMA integrity_check says ok, and the writer's invariant holds (every batch it committed
# is complete: a torn copy would show half a transaction). Then it stops the writer and
# removes everything it made.
#
# Works from any folder, in a fresh clone, as root on Debian 12 (installs what is missing).
# Environment: DEMO_BUILD_DIR (default: <clone>/build-demo), JOBS, SNAPSHOTS (default: 5).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${DEMO_BUILD_DIR:-$repo/build-demo}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
snapshots=${SNAPSHOTS:-5}

step() { printf '\n==> %s\n' "$*"; }

step "dependencies (scripts/install-deps.sh)"
"$repo/scripts/install-deps.sh"

step "build the sqlite_backup command (Release) in $build_dir"
generator=()
if [[ ! -f $build_dir/CMakeCache.txt ]] && command -v ninja >/dev/null; then
  generator=(-G Ninja)
fi
# Only the command: the demo needs neither the tests nor the benchmarks.
cmake -S "$repo" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DSQLITE_BACKUP_BUILD_TESTS=OFF -DSQLITE_BACKUP_BUILD_BENCH=OFF -DSQLITE_BACKUP_PYTHON=ON >/dev/null
cmake --build "$build_dir" --config Release --target sqlite_backup_cli sqlite_backup_python -j "$jobs"
cli=$build_dir/cli/sqlite_backup
[[ -x $cli ]] || cli=$build_dir/cli/Release/sqlite_backup   # multi-config generators
[[ -x $cli ]] || { echo "demo: no sqlite_backup executable under $build_dir/cli" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sqlite_backup_demo.XXXXXX")
writer_pid=
cleanup() {
  if [[ -n $writer_pid ]] && kill -0 "$writer_pid" 2>/dev/null; then
    kill -TERM "$writer_pid" 2>/dev/null || true
    wait "$writer_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir "$work/live" "$work/snapshots"
database=$work/live/app.db

# The writer: WAL mode with SQLite's default autocheckpoint (so checkpoints change the
# database file and restart the WAL under our copies, every ~80 commits), a commit every
# couple of milliseconds, one transaction per batch: 50 events plus the batch's own row.
# (A writer that restarts its WAL faster than the database can be copied defeats every
# attempt: see "Known limitations" in the README.)
# Invariant of every committed state: count(events) = 50 * count(batches).
cat >"$work/writer.py" <<'PY'
import os, sqlite3, sys, time

database, ready, committed = sys.argv[1:4]
db = sqlite3.connect(database, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=1000")
db.execute("CREATE TABLE batches(batch INTEGER PRIMARY KEY, events INTEGER NOT NULL)")
db.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, payload BLOB NOT NULL)")

def publish(path, text):  # atomically, so the demo never reads half a number
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)

batch = 0
def commit_batch(events, payload_bytes):
    global batch
    batch += 1
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO events(batch, payload) VALUES (?, randomblob(?))",
                   [(batch, payload_bytes)] * events)
    db.execute("INSERT INTO batches VALUES (?, ?)", (batch, events))
    db.execute("COMMIT")
    publish(committed, str(batch))

for _ in range(400):           # about 20 MB to start with, so that a copy takes a while
    commit_batch(50, 1000)
publish(ready, "ready")
while True:                     # until the demo stops us
    commit_batch(50, 1000)
    time.sleep(0.002)
PY
# The invariant check of one snapshot; prints one line and fails if anything is off.
cat >"$work/check.py" <<'PY'
import sqlite3, sys

path, label, committed_before = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
journal = db.execute("PRAGMA journal_mode").fetchone()[0]
batches, last = db.execute("SELECT count(*), max(batch) FROM batches").fetchone()
events = db.execute("SELECT count(*) FROM events").fetchone()[0]
complete = events == 50 * batches and last == batches
fresh = batches >= committed_before
print(f"  {label}: {batches} batches, {events} events, complete={complete}, "
      f"integrity_check={integrity}, journal_mode={journal}, "
      f"at least the {committed_before} batches committed before it began: {fresh}")
sys.exit(0 if integrity == "ok" and complete and fresh and journal == "delete" else 1)
PY

step "start the writer on $database"
python3 "$work/writer.py" "$database" "$work/ready" "$work/committed" &
writer_pid=$!
# Wait for the state, not for a guess at how long it takes.
until [[ -f $work/ready ]]; do
  kill -0 "$writer_pid" 2>/dev/null || { echo "demo: the writer died before it was ready" >&2; exit 1; }
  sleep 0.1
done
ls -l "$work/live"
source_files_before=$(cd "$work/live" && ls -A)

step "back it up $snapshots times while the writer commits"
failures=0
for ((i = 1; i <= snapshots; i++)); do
  committed_before=$(cat "$work/committed")
  snapshot=$work/snapshots/app-$i.db
  extra=()
  ((i == snapshots)) && extra=(--verify)   # the last one also runs integrity_check before committing
  echo "+ sqlite_backup --json ${extra[*]} $database $snapshot"
  "$cli" --json "${extra[@]}" "$database" "$snapshot"
  python3 "$work/check.py" "$snapshot" "snapshot $i" "$committed_before" || failures=$((failures + 1))
done

step "stream one to stdout (sqlite_backup SOURCE - | gzip)"
committed_before=$(cat "$work/committed")
echo "+ sqlite_backup $database - | gzip -1 > streamed.db.gz"
"$cli" "$database" - | gzip -1 >"$work/snapshots/streamed.db.gz"
gzip -dc "$work/snapshots/streamed.db.gz" >"$work/snapshots/streamed.db"
python3 "$work/check.py" "$work/snapshots/streamed.db" "streamed" "$committed_before" ||
  failures=$((failures + 1))

step "the Python package: a memory snapshot, as the reference's users take one"
committed_before=$(cat "$work/committed")
echo "+ PYTHONPATH=$build_dir/python /usr/bin/python3 -c 'conn = sqlite_backup(\"$database\")'"
PYTHONPATH=$build_dir/python /usr/bin/python3 - "$database" "$committed_before" <<'PY' ||
import sqlite3, sys, time
from sqlite_backup import sqlite_backup

database, committed_before = sys.argv[1], int(sys.argv[2])
started = time.perf_counter()
conn = sqlite_backup(database)  # a genuine sqlite3.Connection holding the snapshot, in memory
elapsed = time.perf_counter() - started
assert isinstance(conn, sqlite3.Connection)
integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
batches, last = conn.execute("SELECT count(*), max(batch) FROM batches").fetchone()
events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
complete = events == 50 * batches and last == batches
print(f"  in memory ({elapsed * 1000:.0f} ms): {batches} batches, {events} events, "
      f"complete={complete}, integrity_check={integrity}, "
      f"at least the {committed_before} batches committed before it began: "
      f"{batches >= committed_before}")
sys.exit(0 if integrity == "ok" and complete and batches >= committed_before else 1)
PY
  failures=$((failures + 1))

step "stop the writer"
kill -TERM "$writer_pid"
wait "$writer_pid" 2>/dev/null || true
writer_pid=
echo "the writer committed $(cat "$work/committed") batches in all"
# sqlite_backup never writes into the source's folder: the writer's own files only.
source_files_after=$(cd "$work/live" && ls -A)
if [[ $source_files_after != "$source_files_before" ]]; then
  echo "demo: the source folder changed: before: $source_files_before; after: $source_files_after" >&2
  failures=$((failures + 1))
fi
ls -l "$work/snapshots"

if ((failures > 0)); then
  echo "demo: $failures snapshot(s) FAILED their checks" >&2
  exit 1
fi
echo
echo "demo: $snapshots snapshots of a database under constant writes, plus one streamed and one"
echo "      into memory from Python: all consistent."
