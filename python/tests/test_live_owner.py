"""Snapshots of databases that real processes keep writing, and of databases the calling
process itself has open."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import sqlite_backup

from conftest import Owner, names, own_posix_locks


def check_snapshot(conn: sqlite3.Connection, committed_before: int) -> None:
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT sum(balance) FROM accounts").fetchone() == (100_000,)
    commits = conn.execute("SELECT commits FROM progress").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM log").fetchone() == (commits,)
    assert commits >= committed_before, "the snapshot is older than the backup's start"


def committed_so_far(db: Path) -> int:
    reader = sqlite3.connect(db, timeout=30)
    try:
        return int(reader.execute("SELECT commits FROM progress").fetchone()[0])
    finally:
        reader.close()


# Writers at full speed (over 1000 commits a second here): in rollback mode more than one
# commit lands in nearly every lock-free copy, and the reader's lock (the default, after one
# lock-free attempt) is what lets every backup finish.
@pytest.mark.parametrize("mode,rate", [("wal", "0"), ("delete", "0")])
def test_snapshots_under_a_writer_process_are_consistent(folder: Path, mode: str,
                                                         rate: str) -> None:
    (folder / "live").mkdir()
    (folder / "out").mkdir()
    db = folder / "live" / "db.sqlite"
    owner = Owner(folder, "churn", str(db), mode, rate)
    try:
        for i in range(8):
            before = committed_so_far(db)
            conn = sqlite_backup.sqlite_backup(db)
            assert conn is not None
            check_snapshot(conn, before)
            conn.close()
            before = committed_so_far(db)
            sqlite_backup.sqlite_backup(db, folder / "out" / f"{i}.sqlite")
            copy = sqlite3.connect(folder / "out" / f"{i}.sqlite")
            check_snapshot(copy, before)
            copy.close()
        assert committed_so_far(db) > 20, "the writer did not keep writing"
    finally:
        owner.stop()
    assert names(folder / "out") == {f"{i}.sqlite" for i in range(8)}
    # Nothing of ours in the owner's folder.
    assert names(folder / "live") <= {"db.sqlite", "db.sqlite-wal", "db.sqlite-shm",
                                      "db.sqlite-journal"}


def another_process_can_take_an_exclusive_lock(db: Path) -> bool:
    code = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "try:\n"
        "    c.execute('BEGIN EXCLUSIVE'); c.execute('ROLLBACK'); print('locked-by-us')\n"
        "except sqlite3.OperationalError as e:\n"
        "    print('refused:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True,
                         check=True).stdout
    return out.startswith("locked-by-us")


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_the_callers_own_locks_survive_a_backup(folder: Path, journal_mode: str) -> None:
    db = folder / "db.sqlite"
    own = sqlite3.connect(db, isolation_level=None)
    own.execute(f"PRAGMA journal_mode={journal_mode}")
    own.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    own.executemany("INSERT INTO t (v) VALUES (?)", [(str(i),) for i in range(100)])
    # A read transaction: SQLite holds a shared lock on the database until it ends.
    own.execute("BEGIN")
    own.execute("SELECT count(*) FROM t").fetchone()
    locked_file = db if journal_mode == "delete" else Path(str(db) + "-shm")
    held = own_posix_locks(locked_file)
    assert held, "SQLite holds no POSIX lock: nothing to check"
    if journal_mode == "delete":
        assert not another_process_can_take_an_exclusive_lock(db)

    conn = sqlite_backup.sqlite_backup(db)
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
    sqlite_backup.sqlite_backup(db, folder / "copy.sqlite")
    sqlite_backup.core.atomic_copy(str(db), str(folder / "atomic"))

    assert own_posix_locks(locked_file) == held
    if journal_mode == "delete":
        # The lock still does its job: a writer elsewhere is kept out.
        assert not another_process_can_take_an_exclusive_lock(db)
    own.execute("COMMIT")
    own.close()
    if journal_mode == "delete":
        assert another_process_can_take_an_exclusive_lock(db)


def test_a_web_app_backs_up_its_own_database_inside_a_write_transaction(folder: Path) -> None:
    db = folder / "app.sqlite"
    app = sqlite3.connect(db, isolation_level=None)
    app.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    app.executemany("INSERT INTO t (v) VALUES (?)", [(str(i),) for i in range(50)])
    app.execute("BEGIN IMMEDIATE")
    app.execute("INSERT INTO t (v) VALUES ('uncommitted')")
    held = own_posix_locks(db)
    assert held
    (folder / "backups").mkdir()
    sqlite_backup.sqlite_backup(db, folder / "backups" / "1.sqlite")
    assert own_posix_locks(db) == held
    app.execute("COMMIT")  # the app's transaction is not disturbed
    assert app.execute("SELECT count(*) FROM t").fetchone() == (51,)
    app.close()
    copy = sqlite3.connect(folder / "backups" / "1.sqlite")
    assert copy.execute("SELECT count(*) FROM t").fetchone() == (50,), "only committed rows"
    copy.close()
