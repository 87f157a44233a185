"""The reference's documented behaviour, as its users rely on it."""

import errno
import gc
import inspect
import json
import math
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

import sqlite_backup
import sqlite_backup.core
from sqlite_backup import SqliteBackupError
from sqlite_backup.core import atomic_copy, sqlite_connect_immutable

from conftest import make_database, names


def test_the_reference_modules_and_names_are_there() -> None:
    for name in ("sqlite_backup", "SqliteBackupError", "atomic_copy", "glob_database_files",
                 "copy_all_files", "sqlite_connect_immutable"):
        assert getattr(sqlite_backup, name) is getattr(sqlite_backup.core, name)
    assert issubclass(SqliteBackupError, RuntimeError)
    assert SqliteBackupError.__module__ == "sqlite_backup.core"
    from sqlite_backup.core import sqlite_backup as from_core  # the scripts' import

    assert from_core is sqlite_backup.sqlite_backup


def test_the_signature_and_defaults_are_the_references() -> None:
    signature = inspect.signature(sqlite_backup.sqlite_backup)
    expected = [
        ("source", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("destination", inspect.Parameter.POSITIONAL_OR_KEYWORD, None),
        ("wal_checkpoint", inspect.Parameter.KEYWORD_ONLY, True),
        ("copy_use_tempdir", inspect.Parameter.KEYWORD_ONLY, True),
        ("copy_retry", inspect.Parameter.KEYWORD_ONLY, 100),
        ("copy_retry_strict", inspect.Parameter.KEYWORD_ONLY, True),
        ("sqlite_connect_kwargs", inspect.Parameter.KEYWORD_ONLY, None),
        ("sqlite_backup_kwargs", inspect.Parameter.KEYWORD_ONLY, None),
        ("copy_function", inspect.Parameter.KEYWORD_ONLY, None),
    ]
    assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == expected


def test_memory_snapshot_is_a_genuine_writable_connection(wal_owner: Path) -> None:
    conn = sqlite_backup.sqlite_backup(wal_owner)
    assert isinstance(conn, sqlite3.Connection)
    assert type(conn) is sqlite3.Connection
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)  # the WAL's rows too
    conn.execute("INSERT INTO t (v) VALUES ('new')")
    conn.commit()
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT count(*) AS n FROM t").fetchone()
    assert row["n"] == 1001
    conn.text_factory = bytes
    assert conn.execute("SELECT v FROM t WHERE id = 1").fetchone()["v"] == b"row 0"
    conn.close()


def snapshot_memory_files() -> int:
    """How many memory files holding a snapshot this process maps (/proc/self/maps)."""
    with open("/proc/self/maps") as maps:
        return sum("/memfd:sqlite_backup snapshot" in line for line in maps)


def test_a_memory_snapshot_grows_and_its_memory_goes_when_the_connection_closes(
        wal_owner: Path) -> None:
    # The snapshot lives in a memory file mapped for the connection: there while it is open,
    # gone once it is closed or garbage-collected, and room to grow well past its size.
    before = snapshot_memory_files()
    conn = sqlite_backup.sqlite_backup(wal_owner)
    assert snapshot_memory_files() == before + 1
    size = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute("INSERT INTO t (v) SELECT randomblob(8192) FROM t")  # ~8 MiB more
    conn.commit()
    assert conn.execute("PRAGMA page_count").fetchone()[0] > size + 2000
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert snapshot_memory_files() == before
    conn = sqlite_backup.sqlite_backup(wal_owner)
    assert snapshot_memory_files() == before + 1
    del conn
    gc.collect()  # (a Connection's statement cache refers back to it in Python 3.11)
    assert snapshot_memory_files() == before


def test_a_function_named_like_the_snapshots_memory_owner_leaves_its_memory_alone(
        wal_owner: Path) -> None:
    # The snapshot's memory goes when SQLite destroys what registered it on the connection; a
    # Python function of the same name must not be that (it once was: the next query crashed
    # the interpreter).
    conn = sqlite_backup.sqlite_backup(wal_owner)
    for name in ("sqlite_backup_snapshot_memory", "sqlite_backup_snapshot_memory_x"):
        conn.create_function(name, 0, lambda: 1)
        conn.create_aggregate(name, 0, type("Count", (), {"step": lambda self: None,
                                                           "finalize": lambda self: 0}))
        conn.create_function(name, 0, None)
    assert conn.execute("SELECT count(*), sum(length(v)) FROM t").fetchone()[0] == 1000
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("CREATE VIRTUAL TABLE x USING sqlite_backup_snapshot_memory")
    conn.close()


def test_paths_may_be_str_or_pathlib(wal_owner: Path, folder: Path) -> None:
    conn = sqlite_backup.sqlite_backup(str(wal_owner))
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    assert sqlite_backup.sqlite_backup(str(wal_owner), str(folder / "a.sqlite")) is None
    assert sqlite_backup.sqlite_backup(wal_owner, folder / "b.sqlite") is None
    for name in ("a.sqlite", "b.sqlite"):
        with sqlite3.connect(folder / name) as copy:
            assert copy.execute("SELECT count(*) FROM t").fetchone() == (1000,)
        copy.close()


def test_file_destination_returns_none_and_is_one_file(wal_owner: Path, folder: Path) -> None:
    (folder / "out").mkdir()
    destination = folder / "out" / "db.sqlite"
    assert sqlite_backup.sqlite_backup(wal_owner, destination, wal_checkpoint=True) is None
    assert names(folder / "out") == {"db.sqlite"}
    with sqlite_connect_immutable(destination) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    assert names(folder / "out") == {"db.sqlite"}
    # Nothing was written into the owner's folder.
    assert names(wal_owner.parent) == {"db.sqlite", "db.sqlite-wal", "db.sqlite-shm"}


def test_without_checkpoint_there_is_no_wal_either(wal_owner: Path, folder: Path) -> None:
    (folder / "out").mkdir()
    destination = folder / "out" / "db.sqlite"
    sqlite_backup.sqlite_backup(wal_owner, destination, wal_checkpoint=False)
    assert names(folder / "out") == {"db.sqlite"}
    with sqlite_connect_immutable(destination) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)


def test_missing_source_raises_file_not_found_with_the_filename(folder: Path) -> None:
    missing = str(folder / "db.sqlite")
    with pytest.raises(FileNotFoundError) as caught:
        sqlite_backup.sqlite_backup(missing)
    assert caught.value.filename == missing
    assert "No such file or directory" in caught.value.strerror


# Run by another user than root in test_an_unreadable_source_is_named_as_the_caller_named_it:
# prints what the caller's `except PermissionError as e` sees.
_UNREADABLE_CHILD = """
import json, sys
import sqlite_backup
try:
    getattr(sqlite_backup, sys.argv[1])(*sys.argv[2:])
except PermissionError as e:
    print(json.dumps({"filename": e.filename, "errno": e.errno, "message": str(e)}))
"""


def test_an_unreadable_source_is_named_as_the_caller_named_it(tmp_path: Path) -> None:
    """The reference copied the database and its -wal by the names it was given, and its
    shutil.copy's PermissionError carried that name in `filename` (code shows it to its user
    or compares it with its own path), where the engine names the resolved absolute path."""
    if os.geteuid() == 0:
        user = "nobody"
        # (A folder that user may enter and write: pytest's own are private to root.)
        shared = Path(tempfile.mkdtemp(prefix="unreadable-", dir="/var/tmp"))
        shared.chmod(0o777)
    else:
        user = None
        shared = tmp_path
    package = str(Path(sqlite_backup.__file__).resolve().parent.parent)
    try:
        make_database(shared / "db.sqlite", 10)

        def as_another_user(*arguments: str) -> dict:
            run = subprocess.run(
                [sys.executable, "-c", _UNREADABLE_CHILD, *arguments], cwd=shared, user=user,
                env={**os.environ, "PYTHONPATH": package, "TMPDIR": str(shared)},
                capture_output=True, text=True, timeout=120)
            if "No module named 'sqlite_backup'" in run.stderr:
                pytest.skip(f"user {user} cannot import the package from {package}")
            assert run.returncode == 0, run.stderr
            return json.loads(run.stdout)

        (shared / "db.sqlite").chmod(0)
        for given in ("db.sqlite", "./db.sqlite"):
            for destination in ((), ("copy.sqlite",)):
                seen = as_another_user("sqlite_backup", given, *destination)
                assert seen["errno"] == errno.EACCES
                assert seen["filename"] == str(Path(given))  # the reference's str(Path(source))
                assert str(shared / "db.sqlite") in seen["message"]
        # A -wal it may not read, beside a database it may: named as the reference globbed it.
        (shared / "db.sqlite").chmod(0o644)
        owner = sqlite3.connect(shared / "db.sqlite", isolation_level=None)
        try:
            owner.execute("PRAGMA journal_mode=WAL")
            owner.execute("PRAGMA wal_autocheckpoint=0")
            owner.execute("INSERT INTO t (v) VALUES ('in the WAL')")
            (shared / "db.sqlite-wal").chmod(0)
            seen = as_another_user("sqlite_backup", "db.sqlite")
            assert seen["filename"] == "db.sqlite-wal"
        finally:
            owner.close()
        # The helpers name each file as they were given it: a destination that happens to be
        # called like a side file of the source is not renamed as one (shutil.copy's dst).
        (shared / "db.sqlite-journal").write_bytes(b"")
        (shared / "db.sqlite-journal").chmod(0o444)
        seen = as_another_user("atomic_copy", "db.sqlite", str(shared / "db.sqlite-journal"))
        assert seen["filename"] == str(shared / "db.sqlite-journal")
    finally:
        if user:
            shutil.rmtree(shared)


def test_same_source_and_destination_raises_value_error(wal_owner: Path, folder: Path) -> None:
    with pytest.raises(ValueError) as caught:
        sqlite_backup.sqlite_backup(wal_owner, wal_owner)
    assert "'source' and 'destination'" in str(caught.value)
    assert "can't be the same" in str(caught.value)
    # Also through a symlink, which the reference did not see.
    link = folder / "link.sqlite"
    link.symlink_to(wal_owner)
    with pytest.raises(ValueError) as caught:
        sqlite_backup.sqlite_backup(wal_owner, link)
    assert "can't be the same" in str(caught.value)


def test_strict_retries_raise_the_references_message(wal_owner: Path) -> None:
    calls = []

    def atomic_copy_failed(src: str, dest: str) -> bool:
        assert isinstance(src, str) and isinstance(dest, str)
        calls.append(Path(src).name)
        atomic_copy(src, dest)
        return False

    with pytest.raises(SqliteBackupError) as caught:
        sqlite_backup.sqlite_backup(wal_owner, copy_retry_strict=True,
                                    copy_function=atomic_copy_failed)
    # The reference's whole sentence, from its start (callers match on either), then the source.
    assert str(caught.value).startswith(
        "While in strict mode, this failed to copy all files without any of them changing 100 "
        "times. Increase 'copy_retry' or disable 'copy_retry_strict'")
    assert str(wal_owner) in str(caught.value)
    assert caught.value.kind == "unstable_source"
    # The reference's loop: a first attempt and copy_retry retries, every file each time.
    assert calls == ["db.sqlite", "db.sqlite-wal"] * 101


@pytest.mark.parametrize("copy_retry", [0, 3])
def test_retries_are_counted_as_the_reference_counts_them(wal_owner: Path,
                                                          copy_retry: int) -> None:
    attempts = []

    def copy(src: str, dest: str) -> bool:
        if Path(src).name == "db.sqlite":
            attempts.append(1)
        atomic_copy(src, dest)
        return False

    with pytest.raises(SqliteBackupError) as caught:
        sqlite_backup.sqlite_backup(wal_owner, copy_retry=copy_retry, copy_function=copy)
    assert f"changing {copy_retry} times" in str(caught.value)
    assert len(attempts) == copy_retry + 1


def test_non_strict_retries_use_the_last_copy(wal_owner: Path) -> None:
    conn = sqlite_backup.sqlite_backup(
        wal_owner, copy_retry=2, copy_retry_strict=False,
        copy_function=lambda src, dst: atomic_copy(src, dst) and False)
    assert conn is not None
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)


def test_a_copy_function_that_copies_is_used(wal_owner: Path) -> None:
    copied = []

    def copy(src: str, dest: str) -> bool:
        copied.append(Path(src).name)
        return atomic_copy(src, dest)

    conn = sqlite_backup.sqlite_backup(wal_owner, copy_function=copy)
    assert copied == ["db.sqlite", "db.sqlite-wal"]
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)


def test_backup_kwargs_mean_what_they_mean_to_connection_backup(folder: Path) -> None:
    source = make_database(folder / "db.sqlite", 3000)
    pages = sqlite3.connect(source).execute("PRAGMA page_count").fetchone()[0]
    for destination in (None, folder / "copy.sqlite"):
        reports = []
        result = sqlite_backup.sqlite_backup(
            source, destination,
            sqlite_backup_kwargs={"pages": 2, "progress": lambda *a: reports.append(a),
                                  "name": "main", "sleep": 0.01})
        assert len(reports) == (pages + 1) // 2
        assert reports[-1] == (sqlite3.SQLITE_DONE, 0, pages)
        assert all(status == sqlite3.SQLITE_OK for status, _, _ in reports[:-1])
        conn = result or sqlite3.connect(destination)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3000,)
        conn.close()
    # One call with all pages when pages is -1 or 0, as Connection.backup does.
    reports = []
    sqlite_backup.sqlite_backup(source, sqlite_backup_kwargs={"pages": 0,
                                                              "progress": lambda *a: reports.append(a)})
    assert reports == [(sqlite3.SQLITE_DONE, 0, pages)]


@pytest.mark.parametrize("how", [
    {"sqlite_backup_kwargs": {"pages": 1}},
    {"sqlite_backup_kwargs": {"progress": lambda *a: None}},
    {"copy_use_tempdir": False},
])
def test_a_source_of_64_kib_pages_goes_into_memory_through_the_backup_api(
        folder: Path, how: dict) -> None:
    # The reference backs up into a fresh ":memory:" database, which takes any page size.
    # SQLite's backup API refuses (SQLITE_READONLY) to change the page size of an in-memory
    # database that already has a page, so the new connection must be left empty until then.
    source = folder / "db.sqlite"
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute("PRAGMA page_size = 65536")
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES ('large pages')")
    conn.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (copy_use_tempdir=False warns)
        copy = sqlite_backup.sqlite_backup(source, **how)
    assert copy is not None
    assert copy.execute("PRAGMA page_size").fetchone() == (65536,)
    assert copy.execute("SELECT v FROM t").fetchall() == [("large pages",)]
    # The proof of the connection's handle leaves its settings as they were.
    assert copy.execute("PRAGMA busy_timeout").fetchone() == \
        sqlite3.connect(":memory:").execute("PRAGMA busy_timeout").fetchone()


def test_unknown_kwargs_are_refused_as_sqlite3_refuses_them(folder: Path) -> None:
    source = make_database(folder / "db.sqlite", 10)
    with pytest.raises(TypeError):
        sqlite_backup.sqlite_backup(source, sqlite_connect_kwargs={"nonsense": 1})
    with pytest.raises(TypeError):
        sqlite_backup.sqlite_backup(source, sqlite_backup_kwargs={"nonsense": 1})
    with pytest.raises(TypeError):
        sqlite_backup.sqlite_backup(source, sqlite_backup_kwargs={"progress": 3})
    # What sqlite3.connect takes is accepted.
    conn = sqlite_backup.sqlite_backup(
        source, sqlite_connect_kwargs={"timeout": 2.5, "uri": False, "check_same_thread": False})
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (10,)


def test_copy_use_tempdir_false_reads_the_live_database(wal_owner: Path, folder: Path) -> None:
    # With the reference's UserWarning, which code may filter or turn into an error.
    with pytest.warns(UserWarning, match="without copying to a temporary directory"):
        conn = sqlite_backup.sqlite_backup(wal_owner, copy_use_tempdir=False)
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    with pytest.warns(UserWarning):
        sqlite_backup.sqlite_backup(wal_owner, folder / "copy.sqlite", copy_use_tempdir=False)
    with sqlite_connect_immutable(folder / "copy.sqlite") as copy:
        assert copy.execute("SELECT count(*) FROM t").fetchone() == (1000,)


def test_a_bad_source_raises_sqlite_backup_error(folder: Path) -> None:
    bad = folder / "not-a-database"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SqliteBackupError) as caught:
        sqlite_backup.sqlite_backup(bad)
    assert caught.value.kind == "invalid_source"
    assert str(bad) in str(caught.value)
    assert names(folder) == {"not-a-database", "tmpdir"}


def test_errors_are_also_the_types_the_reference_raised(folder: Path) -> None:
    """Where the reference let SQLite's or the OS's error through, ours is also one of those,
    so that `except sqlite3.Error` (or OSError) written for it still catches it."""
    bad = folder / "not-a-database"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        sqlite_backup.sqlite_backup(bad)
    assert isinstance(caught.value, SqliteBackupError)
    source = make_database(folder / "db.sqlite", 10)
    with pytest.raises(sqlite3.OperationalError) as caught:
        sqlite_backup.sqlite_backup(source, folder / "missing" / "copy.sqlite")
    assert isinstance(caught.value, SqliteBackupError)
    assert caught.value.kind == "destination"
    with pytest.raises(sqlite3.OperationalError):
        sqlite_backup.sqlite_backup(source, sqlite_backup_kwargs={"name": "bogus"})


def test_sqlite_errors_carry_the_code_and_name_pythons_own_would(folder: Path) -> None:
    """sqlite3.Error's sqlite_errorcode and sqlite_errorname, as Python's sqlite3 sets them
    for the same failure (what the reference let through)."""
    bad = folder / "not-a-database"
    bad.write_bytes(b"this is not a database" * 100)
    source = make_database(folder / "db.sqlite", 10)
    cases = [
        (lambda: sqlite_backup.sqlite_backup(bad),
         lambda: sqlite3.connect(bad).execute("SELECT * FROM sqlite_schema")),
        # A destination that is no database: the reference's backup into it failed so.
        (lambda: sqlite_backup.sqlite_backup(source, bad),
         lambda: sqlite3.connect(source).backup(sqlite3.connect(bad))),
        (lambda: sqlite_backup.sqlite_backup(source, sqlite_backup_kwargs={"name": "bogus"}),
         lambda: sqlite3.connect(source).backup(sqlite3.connect(":memory:"), name="bogus")),
    ]
    for ours, pythons in cases:
        with pytest.raises(sqlite3.Error) as theirs:
            pythons()
        with pytest.raises(type(theirs.value)) as caught:
            ours()
        assert isinstance(caught.value, SqliteBackupError)
        assert (isinstance(caught.value, sqlite3.OperationalError)
                == isinstance(theirs.value, sqlite3.OperationalError))
        assert caught.value.sqlite_errorcode == theirs.value.sqlite_errorcode
        assert caught.value.sqlite_errorname == theirs.value.sqlite_errorname
    assert bad.read_bytes() == b"this is not a database" * 100


def test_sqlite_error_names_are_pythons() -> None:
    """Extended codes are named by their own constant, never by an authorizer constant of
    the same value (SQLITE_CREATE_INDEX is 1, as SQLITE_ERROR)."""
    from sqlite_backup import _native
    for name in ("SQLITE_ERROR", "SQLITE_BUSY", "SQLITE_NOTADB", "SQLITE_IOERR_SHORT_READ",
                 "SQLITE_BUSY_SNAPSHOT", "SQLITE_CANTOPEN_ISDIR", "SQLITE_READONLY_DBMOVED"):
        assert _native.sqlite_error_name(getattr(sqlite3, name)) == name
    assert _native.sqlite_error_name(0x7f7f) == "unknown"


def test_an_io_error_is_also_an_os_error_and_keeps_its_message(folder: Path) -> None:
    """OSError formats itself from errno and strerror when they are set: ours keeps the
    engine's one line (a folder nothing can be created in: /proc/self)."""
    source = make_database(folder / "db.sqlite", 10)
    with pytest.raises(OSError) as caught:
        sqlite_backup.sqlite_backup(source, "/proc/self/copy.sqlite")
    assert isinstance(caught.value, SqliteBackupError)
    assert caught.value.kind == "io"
    assert "/proc/self" in str(caught.value) and "None" not in str(caught.value)
    # errno and the class as the OS's own error would have them (open() there fails with
    # ENOENT: FileNotFoundError), so that `e.errno == errno.ENOSPC` checks and `except
    # FileNotFoundError` / `except PermissionError` written for the reference still work.
    with pytest.raises(OSError) as theirs:
        open("/proc/self/copy.sqlite", "wb")
    assert caught.value.errno == theirs.value.errno
    assert type(theirs.value) is FileNotFoundError
    assert isinstance(caught.value, FileNotFoundError)
    assert isinstance(caught.value, sqlite_backup.core.SqliteBackupOSError)


def test_a_full_disk_is_an_os_error_with_enospc(folder: Path, small_filesystem: Path) -> None:
    """The check a cron job written for the reference makes (`e.errno == errno.ENOSPC`), and
    nothing left on the full filesystem."""
    source = folder / "big.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE t(v BLOB)")
        db.executemany("INSERT INTO t VALUES (randomblob(1000))", [()] * 4096)
    db.close()
    with pytest.raises(OSError) as caught:
        sqlite_backup.sqlite_backup(source, small_filesystem / "copy.sqlite")
    assert caught.value.errno == errno.ENOSPC
    assert str(small_filesystem / "copy.sqlite") in str(caught.value)
    assert names(small_filesystem) == set()
    # As the reference's (SQLite wrote its destination): sqlite3.OperationalError, SQLITE_FULL.
    assert isinstance(caught.value, sqlite3.OperationalError)
    assert caught.value.sqlite_errorname == "SQLITE_FULL"
    assert caught.value.sqlite_errorcode == sqlite3.SQLITE_FULL
    # Where SQLite writes the destination (the live mode, as the reference's backup did),
    # the error is also the sqlite3.OperationalError Python's sqlite3 raised there.
    with pytest.warns(UserWarning), pytest.raises(sqlite3.OperationalError) as caught:
        sqlite_backup.sqlite_backup(source, small_filesystem / "copy.sqlite",
                                    copy_use_tempdir=False)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert caught.value.sqlite_errorcode == sqlite3.SQLITE_FULL
    # The full disk is the destination's: named there too, not the source being read.
    assert str(small_filesystem / "copy.sqlite") in str(caught.value)
    assert caught.value.path == str(small_filesystem / "copy.sqlite")
    assert names(small_filesystem) == set()


def test_errors_pickle_with_their_class_and_attributes(folder: Path) -> None:
    """A backup failing in a worker process (multiprocessing, concurrent.futures) reaches
    the caller as the same error."""
    source = make_database(folder / "db.sqlite", 10)
    with pytest.raises(OSError) as caught:
        sqlite_backup.sqlite_backup(source, "/proc/self/copy.sqlite")
    copied = pickle.loads(pickle.dumps(caught.value))
    assert type(copied) is type(caught.value)
    assert isinstance(copied, FileNotFoundError)
    assert (copied.errno, copied.kind, copied.path, str(copied)) == (
        caught.value.errno, caught.value.kind, caught.value.path, str(caught.value))


@pytest.mark.parametrize("destination", [3, b"out.sqlite"])
def test_a_destination_of_the_wrong_type_raises_type_error(folder: Path,
                                                           destination: object) -> None:
    source = make_database(folder / "db.sqlite", 10)
    with pytest.raises(TypeError, match="Unexpected 'destination' type"):
        sqlite_backup.sqlite_backup(source, destination)  # type: ignore[arg-type]


def test_a_memory_named_destination_writes_no_file(folder: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference backed up into sqlite3.connect(":memory:") and closed it."""
    source = make_database(folder / "db.sqlite", 10)
    monkeypatch.chdir(folder)
    assert sqlite_backup.sqlite_backup(source, ":memory:") is None
    assert sqlite_backup.sqlite_backup(source, Path(":memory:")) is None
    # sqlite3.connect("") is a private temporary database: the same, as far as files go.
    assert sqlite_backup.sqlite_backup(source, "") is None
    assert names(folder) == {"db.sqlite", "tmpdir"}


def test_an_empty_source_gives_an_empty_connection_on_both_memory_paths(folder: Path) -> None:
    # (sqlite3_serialize gives null for a database of no pages: once a MemoryError.)
    (folder / "empty.db").write_bytes(b"")
    for capture in (True, False):
        sqlite_backup._native.set_handle_capture(capture)
        try:
            conn = sqlite_backup.sqlite_backup(folder / "empty.db")
        finally:
            sqlite_backup._native.set_handle_capture(True)
        assert conn is not None
        assert conn.execute("SELECT count(*) FROM sqlite_schema").fetchone() == (0,)
        conn.execute("CREATE TABLE t(x)")  # and usable


@pytest.mark.parametrize("copy_retry", [2.0, 2.5, True, 2**31, math.inf])
def test_copy_retry_takes_any_whole_number_as_the_reference_does(folder: Path,
                                                                 copy_retry: object) -> None:
    source = make_database(folder / "db.sqlite", 10)
    conn = sqlite_backup.sqlite_backup(source, copy_retry=copy_retry)  # type: ignore[arg-type]
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (10,)
    with pytest.raises(TypeError):
        sqlite_backup.sqlite_backup(source, copy_retry="2")  # type: ignore[arg-type]


def test_infinite_retries_retry_until_a_copy_is_unchanged(folder: Path) -> None:
    # The reference's `while retry >= 0` loop never ends with math.inf: it copies until a copy
    # holds. Here the copy function reports a change 150 times, more than the default allows.
    source = make_database(folder / "db.sqlite", 10)
    calls = []

    def copy(src: str, dst: str) -> bool:
        calls.append(src)
        shutil.copy(src, dst)
        return len(calls) > 150

    conn = sqlite_backup.sqlite_backup(source, copy_retry=math.inf, copy_function=copy)
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (10,)
    assert len(calls) == 151
    with pytest.raises(ValueError, match="nan"):
        sqlite_backup.sqlite_backup(source, copy_retry=math.nan)


@pytest.mark.parametrize(
    "connect, backup, error, text",
    [
        ({}, {"pages": 2.5}, TypeError, "'float' object cannot be interpreted as an integer"),
        ({}, {"pages": "3"}, TypeError, "'str' object cannot be interpreted as an integer"),
        ({}, {"pages": 2**40}, OverflowError, "too large"),
        ({}, {"sleep": "1"}, TypeError, "must be real number, not str"),
        ({}, {"sleep": None}, TypeError, "must be real number, not NoneType"),
        ({"timeout": "1"}, {}, TypeError, "must be real number, not str"),
        ({"detect_types": "x"}, {}, TypeError, "cannot be interpreted as an integer"),
        ({"isolation_level": "bogus"}, {}, ValueError, "isolation_level"),
        ({"factory": 123}, {}, TypeError, "not callable"),
        ({"check_same_thread": "x"}, {}, TypeError, "cannot be interpreted as an integer"),
    ],
)
def test_bad_kwarg_values_are_refused_as_sqlite3_refuses_them(
        folder: Path, connect: dict, backup: dict, error: type, text: str) -> None:
    # sqlite3.connect and Connection.backup refused these in the reference; nothing is copied.
    source = make_database(folder / "db.sqlite", 10)
    with pytest.raises(error, match=re.escape(text)):
        sqlite_backup.sqlite_backup(source, folder / "out.sqlite", sqlite_connect_kwargs=connect,
                                    sqlite_backup_kwargs=backup)
    assert names(folder) == {"db.sqlite", "tmpdir"}


def test_odd_but_valid_kwarg_values_are_taken(folder: Path) -> None:
    # What sqlite3 takes is taken: booleans as numbers, no wait at all, an endless one.
    source = make_database(folder / "db.sqlite", 10)
    conn = sqlite_backup.sqlite_backup(
        source, sqlite_connect_kwargs={"timeout": math.inf, "detect_types": True},
        sqlite_backup_kwargs={"pages": True, "sleep": -1})
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (10,)
    conn = sqlite_backup.sqlite_backup(source, sqlite_connect_kwargs={"timeout": math.nan},
                                       sqlite_backup_kwargs={"sleep": math.inf})
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (10,)


def test_both_memory_paths_give_the_same_snapshot(wal_owner: Path) -> None:
    from sqlite_backup import _native

    direct = sqlite_backup.sqlite_backup(wal_owner)
    _native.set_handle_capture(False)
    try:
        through_deserialize = sqlite_backup.sqlite_backup(wal_owner)
    finally:
        _native.set_handle_capture(True)
    assert direct is not None and through_deserialize is not None
    query = "SELECT group_concat(id || ':' || v) FROM t"
    assert direct.execute(query).fetchone() == through_deserialize.execute(query).fetchone()
    through_deserialize.execute("INSERT INTO t (v) VALUES ('writable')")


class _RowConnection(sqlite3.Connection):
    """A connection whose rows are sqlite3.Row, as a wrapped sqlite3.connect may give."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.row_factory = sqlite3.Row


class _NoCursorConnection(sqlite3.Connection):
    """A connection whose execute() gives no cursor back (an instrumenting wrapper's)."""

    def execute(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        super().execute(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("factory, proven", [(_RowConnection, True),
                                             (_NoCursorConnection, False)])
def test_the_handle_proof_takes_any_connection_sqlite3_connect_gives(
        folder: Path, monkeypatch: pytest.MonkeyPatch, factory: type, proven: bool) -> None:
    # The new connection's handle is proven through its cache size, read back through Python:
    # a Row is read as a tuple is; where nothing can be read, the snapshot still arrives,
    # through Connection.deserialize (heap memory, no memory file).
    source = make_database(folder / "db.sqlite", 10)
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, factory=factory, **k))
    before = snapshot_memory_files()
    conn = sqlite_backup.sqlite_backup(source)
    assert isinstance(conn, factory)
    assert snapshot_memory_files() == before + (1 if proven else 0)
    assert sqlite3.Connection.execute(conn, "SELECT count(*) FROM t").fetchone()[0] == 10
    assert sqlite3.Connection.execute(conn, "PRAGMA busy_timeout").fetchone()[0] == \
        connect(":memory:").execute("PRAGMA busy_timeout").fetchone()[0]
    # (The function that watched for the captured connection's close is gone.)
    functions = sqlite3.Connection.execute(conn, "PRAGMA function_list").fetchall()
    assert not any("sqlite_backup" in str(row[0]) for row in functions)
    conn.close()


def _probe_closed_first(connect, *args, **kwargs):  # type: ignore[no-untyped-def]
    probe = connect(":memory:")
    probe.close()  # (its handle, the first opened, is freed memory from here on)
    return connect(*args, **kwargs)


def _second_of_a_shared_cache(connect, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = f"file:shared{time.monotonic_ns()}?mode=memory&cache=shared"
    _KEPT.append(connect(name, uri=True))  # opened first, kept open, never returned
    return connect(name, uri=True)


_KEPT: list = []


@pytest.mark.parametrize("wrapper", [_probe_closed_first, _second_of_a_shared_cache])
def test_a_connect_that_opens_more_than_one_connection_gets_the_snapshot_all_the_same(
        folder: Path, monkeypatch: pytest.MonkeyPatch, wrapper) -> None:  # type: ignore[no-untyped-def]
    # The handle of the connection connect() returns is taken only where it opened exactly one
    # and kept it open: otherwise the snapshot goes through Connection.deserialize. (Before:
    # the first handle opened was taken, freed memory once closed, and a shared cache's
    # first connection passed the proof, so the snapshot went there and the caller got an
    # empty database.)
    source = make_database(folder / "db.sqlite", 10)
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: wrapper(connect, *a, **k))
    before = snapshot_memory_files()
    conn = sqlite_backup.sqlite_backup(source)
    assert conn is not None
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (10,)
    assert snapshot_memory_files() == before  # (through Connection.deserialize)
    for other in _KEPT:
        assert other.execute("SELECT count(*) FROM sqlite_schema").fetchone() == (0,)
        other.close()
    _KEPT.clear()
    conn.close()


def test_a_connection_that_shares_its_cache_with_the_one_opened_is_not_taken_for_it(
        folder: Path) -> None:
    # connect() opens one connection (captured) but returns another of the same shared cache,
    # opened before: the proof must tell them apart (a busy timeout is each connection's own;
    # a cache size would be the shared cache's), or the snapshot lands in the other one.
    from sqlite_backup import _native
    source = make_database(folder / "db.sqlite", 10)
    name = f"file:pre{time.monotonic_ns()}?mode=memory&cache=shared"
    returned = sqlite3.connect(name, uri=True)
    opened = []

    def connect() -> sqlite3.Connection:
        opened.append(sqlite3.connect(name, uri=True))
        return returned

    options = sqlite_backup.core._call_options(
        wal_checkpoint=True, copy_use_tempdir=True, copy_retry=100, copy_retry_strict=True,
        sqlite_connect_kwargs=None, sqlite_backup_kwargs=None, copy_function=None)
    conn = _native.backup_to_memory(os.fsencode(source), connect, options)
    assert conn is returned
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (10,)
    opened[0].close()
    conn.close()


def test_a_folder_as_source_raises_is_a_directory_error(folder: Path) -> None:
    """What the reference's copy of the files (shutil.copy) raised."""
    (folder / "sub").mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        sqlite_backup.sqlite_backup(folder / "sub")
    assert caught.value.filename == str(folder / "sub")


def test_os_errors_carry_errno_strerror_and_filename_and_keep_their_message(
        folder: Path) -> None:
    """What `except OSError as e` code reads, and str() still the one line naming the path."""
    source = make_database(folder / "db.sqlite", 10)
    with pytest.raises(FileNotFoundError) as caught:
        sqlite_backup.sqlite_backup(source, "/proc/self/copy.sqlite")
    error = caught.value
    assert (error.errno, error.strerror) == (errno.ENOENT, os.strerror(errno.ENOENT))
    assert error.filename == error.path
    assert not str(error).startswith("[Errno")
    assert error.path in str(error)
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.errno, copied.strerror, copied.filename, str(copied)) == (
        error.errno, error.strerror, error.filename, str(error))


def test_a_destination_folder_that_cannot_be_written_is_also_an_operational_error(
        folder: Path, small_filesystem: Path) -> None:
    """The reference's sqlite3.connect(destination) raised sqlite3.OperationalError there."""
    source = make_database(folder / "db.sqlite", 10)
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)],
                               capture_output=True, text=True)
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {remounted.stderr.strip()}")
    with pytest.raises(sqlite3.OperationalError) as caught:
        sqlite_backup.sqlite_backup(source, small_filesystem / "copy.sqlite")
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.EROFS
    assert names(small_filesystem) == set()


def test_a_name_that_is_not_utf8_in_an_error(folder: Path) -> None:
    """The error is the one the failure deserves (not a UnicodeDecodeError), with the exact
    name in .path."""
    junk = Path(os.fsdecode(os.fsencode(str(folder)) + b"/junk\xff.db"))
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        sqlite_backup.sqlite_backup(junk)
    assert caught.value.path == str(junk)
    assert "junk" in str(caught.value)


def test_a_busy_source_is_waited_for_in_the_live_mode(folder: Path) -> None:
    """As Python's Connection.backup: a source another process holds locked is retried,
    'sleep' apart and reported to 'progress' as SQLITE_BUSY, past sqlite_connect_kwargs'
    timeout, until the lock goes. The holder lets go once the source has been reported busy
    for 0.3 s, six times the timeout given."""
    source = make_database(folder / "db.sqlite", 100)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); c.execute(\"INSERT INTO t (v) VALUES ('held')\")\n"
         "print('locked', flush=True); sys.stdin.readline(); c.execute('COMMIT')\n",
         str(source)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        statuses = []
        busy_since = []

        def progress(status: int, remaining: int, total: int) -> None:
            statuses.append(status)
            if status != sqlite3.SQLITE_BUSY or len(busy_since) > 1:
                return
            if not busy_since:
                busy_since.append(time.monotonic())
            elif time.monotonic() - busy_since[0] > 0.3:
                busy_since.append(time.monotonic())  # (released once)
                holder.stdin.write("go\n")
                holder.stdin.flush()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sqlite_backup.sqlite_backup(
                source, folder / "copy.sqlite", copy_use_tempdir=False,
                sqlite_connect_kwargs={"timeout": 0.05},
                sqlite_backup_kwargs={"progress": progress, "sleep": 0.01})
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert len(busy_since) == 2, "the holder was never released"
    assert statuses[0] == sqlite3.SQLITE_BUSY and statuses[-1] == sqlite3.SQLITE_DONE
    with sqlite_connect_immutable(folder / "copy.sqlite") as copy:
        assert copy.execute("SELECT count(*) FROM t").fetchone() == (101,)


def test_a_relative_tmpdir_survives_a_change_of_working_folder(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The staging folder is made absolute: a caller (here its copy function, on the calling
    thread, during the backup) that changes its working folder does not lose the staged
    files, nor leave them behind (before: "cannot open the temporary file stage/...")."""
    source = make_database(folder / "db.sqlite", 20)
    (folder / "stage").mkdir()
    (folder / "elsewhere").mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TMPDIR", "stage")

    calls = []

    def copy_function(src: str, dst: str) -> bool:
        calls.append(dst)
        os.chdir(folder / "elsewhere")
        shutil.copy(src, dst)
        return True

    connection = sqlite_backup.sqlite_backup(source, copy_function=copy_function)
    assert calls, "the copy function was not called: the test tests nothing"
    assert connection.execute("SELECT count(*) FROM t").fetchone() == (20,)
    connection.close()
    assert names(folder / "stage") == set()
    assert names(folder / "elsewhere") == set()


def test_a_named_pipe_as_the_source_is_also_the_references_special_file_error(
        folder: Path) -> None:
    """The reference's shutil.copy raised shutil.SpecialFileError (an OSError) for a named
    pipe; ours is that too, besides the sqlite3.DatabaseError it was, and reads nothing."""
    pipe = folder / "pipe.sqlite"
    os.mkfifo(pipe)
    with pytest.raises(shutil.SpecialFileError) as caught:
        sqlite_backup.sqlite_backup(pipe, folder / "copy.sqlite")
    error = caught.value
    assert isinstance(error, OSError) and isinstance(error, sqlite3.DatabaseError)
    assert isinstance(error, SqliteBackupError) and error.kind == "invalid_source"
    assert str(pipe) in str(error)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert names(folder) == {"pipe.sqlite", "tmpdir"}
    # A file that is no database stays only a sqlite3.DatabaseError, as SQLite said in the
    # reference.
    (folder / "junk.sqlite").write_bytes(b"x" * 4096)
    with pytest.raises(sqlite3.DatabaseError) as junk:
        sqlite_backup.sqlite_backup(folder / "junk.sqlite", folder / "copy.sqlite")
    assert not isinstance(junk.value, OSError)
