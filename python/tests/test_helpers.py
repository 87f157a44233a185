"""The reference's core helpers: atomic_copy, glob_database_files, copy_all_files,
sqlite_connect_immutable."""

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from sqlite_backup.core import (
    atomic_copy,
    copy_all_files,
    glob_database_files,
    sqlite_connect_immutable,
)

from conftest import make_database, names


def test_atomic_copy_copies_and_reports_an_unchanged_source(folder: Path) -> None:
    source = make_database(folder / "db.sqlite", 100)
    assert atomic_copy(str(source), str(folder / "copy")) is True
    assert (folder / "copy").read_bytes() == source.read_bytes()


def test_atomic_copy_gives_the_copy_the_sources_permission_bits(folder: Path) -> None:
    """As the reference's shutil.copy does."""
    source = make_database(folder / "db.sqlite", 10)
    source.chmod(0o640)
    atomic_copy(str(source), str(folder / "copy"))
    assert (folder / "copy").stat().st_mode & 0o777 == 0o640


def test_atomic_copy_of_a_missing_file_raises_file_not_found(folder: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        atomic_copy(str(folder / "missing"), str(folder / "copy"))
    assert caught.value.filename == str(folder / "missing")


def test_glob_lists_the_database_and_its_side_files_but_never_shm(wal_owner: Path) -> None:
    files = glob_database_files(wal_owner)
    assert all(isinstance(f, Path) for f in files)
    assert [f.name for f in files] == ["db.sqlite", "db.sqlite-wal"]
    assert (wal_owner.parent / "db.sqlite-shm").exists()


def test_copy_all_files_copies_a_consistent_set(wal_owner: Path, folder: Path) -> None:
    (folder / "copy").mkdir()
    assert copy_all_files(glob_database_files(wal_owner), folder / "copy") is True
    assert names(folder / "copy") == {"db.sqlite", "db.sqlite-wal"}
    conn = sqlite3.connect(folder / "copy" / "db.sqlite")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    conn.close()


def test_copy_all_files_counts_retries_and_calls_the_copy_function(wal_owner: Path,
                                                                   folder: Path) -> None:
    (folder / "copy").mkdir()
    calls = []

    def never_settles(src: str, dst: str) -> bool:
        calls.append(Path(src).name)
        atomic_copy(src, dst)
        return False

    assert copy_all_files(glob_database_files(wal_owner), folder / "copy", never_settles, 2) is False
    assert calls == ["db.sqlite", "db.sqlite-wal"] * 3


def test_copy_all_files_of_nothing_or_with_no_attempt_is_the_references(folder: Path) -> None:
    """The reference's loop: no files is a success at once; retry=-1 runs no attempt."""
    (folder / "copy").mkdir()
    assert copy_all_files([], folder / "copy") is True
    source = make_database(folder / "db.sqlite", 1)
    assert copy_all_files([source], folder / "copy", retry=-1) is False
    assert copy_all_files([], folder / "copy", retry=-1) is False, "no attempt, even of nothing"
    assert names(folder / "copy") == set()


def test_copy_all_files_of_a_missing_file_calls_the_copy_function(folder: Path) -> None:
    """As the reference: the copy function is called, and shutil.copy's FileNotFoundError
    comes out (not a database set's "deleted while it was being copied")."""
    (folder / "copy").mkdir()
    calls = []

    def copy(src: str, dst: str) -> bool:
        calls.append(src)
        shutil.copy(src, dst)
        return True

    with pytest.raises(FileNotFoundError) as raised:
        copy_all_files([folder / "never.db"], folder / "copy", copy, 3)
    assert calls == [str(folder / "never.db")]
    assert "deleted" not in str(raised.value)


def test_copy_all_files_wants_a_folder(folder: Path) -> None:
    source = make_database(folder / "db.sqlite", 1)
    with pytest.raises(ValueError):
        copy_all_files([source], folder / "missing")


@pytest.mark.parametrize("name", ["with space.sqlite", "q?uestion#hash%25.sqlite", "ünï©ødé.db"])
def test_immutable_connection_on_awkward_names(folder: Path, name: str) -> None:
    source = make_database(folder / name, 7)
    with sqlite_connect_immutable(source) as conn:
        assert isinstance(conn, sqlite3.Connection)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (7,)
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")  # closed on exit
    assert names(folder) == {name, "tmpdir"}


def test_an_immutable_connection_to_a_folder_fails_as_the_references_did(folder: Path) -> None:
    """The reference's read-write open refused a folder at once: "unable to open database
    file", SQLITE_CANTOPEN (a read-only open would fail later, with "disk I/O error")."""
    with pytest.raises(sqlite3.OperationalError) as caught:
        with sqlite_connect_immutable(folder):
            pass
    assert str(caught.value) == "unable to open database file"
    assert caught.value.sqlite_errorname == "SQLITE_CANTOPEN"


def test_an_immutable_connection_creates_no_database(folder: Path) -> None:
    """Where the reference's read-write open created an empty database, ours opens read-only:
    SQLite's own error, and nothing made."""
    with pytest.raises(sqlite3.OperationalError) as caught:
        with sqlite_connect_immutable(folder / "missing.sqlite"):
            pass
    assert caught.value.sqlite_errorname == "SQLITE_CANTOPEN"
    assert names(folder) == {"tmpdir"}


def test_a_name_holding_a_nul_is_refused_not_cut_short(folder: Path) -> None:
    """As the reference's sqlite3.connect and os functions refuse it ("embedded null byte"):
    cut short at the NUL, the name would be another database's, here one that exists."""
    make_database(folder / "db", 2)
    with pytest.raises(ValueError, match="null byte"):
        with sqlite_connect_immutable(str(folder / "db") + "\0.sqlite"):
            pass
    with pytest.raises(ValueError):
        glob_database_files(Path(str(folder / "db") + "\0.sqlite"))


def test_a_name_that_is_not_utf8_works(folder: Path) -> None:
    import sqlite_backup

    raw = os.fsencode(str(folder)) + b"/caf\xe9.sqlite"
    source = Path(os.fsdecode(raw))
    make_database(source, 5)
    conn = sqlite_backup.sqlite_backup(source)
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (5,)
    sqlite_backup.sqlite_backup(source, Path(os.fsdecode(raw + b".copy")))
    assert os.path.exists(raw + b".copy")


@pytest.mark.parametrize("through", ["name", "symlink", "hard link"])
def test_atomic_copy_onto_itself_raises_same_file_error_and_keeps_it(folder: Path,
                                                                      through: str) -> None:
    """The reference's shutil.copy refused; opening the copy for writing would empty it."""
    source = make_database(folder / "db.sqlite", 10)
    before = source.read_bytes()
    target = source
    if through == "symlink":
        target = folder / "link"
        target.symlink_to(source)
    elif through == "hard link":
        target = folder / "hard"
        os.link(source, target)
    with pytest.raises(shutil.SameFileError):
        atomic_copy(str(source), str(target))
    assert source.read_bytes() == before


def test_atomic_copy_of_a_folder_raises_is_a_directory_error(folder: Path) -> None:
    (folder / "sub").mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        atomic_copy(str(folder / "sub"), str(folder / "copy"))
    assert caught.value.filename == str(folder / "sub")
    assert "copy" not in names(folder)


def test_copy_all_files_into_the_databases_own_folder_keeps_the_database(
        wal_owner: Path) -> None:
    """Each file would be copied onto itself: refused before anything is written."""
    files = glob_database_files(wal_owner)
    before = {file: file.read_bytes() for file in files}
    with pytest.raises(shutil.SameFileError):
        copy_all_files(files, wal_owner.parent, atomic_copy, 0)
    assert {file: file.read_bytes() for file in files} == before


def test_copy_all_files_copies_every_file_it_is_given(wal_owner: Path, folder: Path) -> None:
    """A list that is not a database's set is copied as the reference copies it: each file,
    and nothing else (not the -wal of a database listed alone)."""
    (folder / "a.txt").write_text("A")
    (folder / "b.txt").write_text("B")
    out = folder / "out"
    out.mkdir()
    assert copy_all_files([folder / "a.txt", folder / "b.txt"], out, atomic_copy, 0) is True
    assert names(out) == {"a.txt", "b.txt"}
    calls = []

    def copy(src: str, dst: str) -> bool:
        calls.append((os.path.basename(src), os.path.basename(dst)))
        shutil.copy(src, dst)
        return True

    alone = folder / "alone"
    alone.mkdir()
    assert (wal_owner.parent / (wal_owner.name + "-wal")).exists()
    assert copy_all_files([wal_owner], alone, copy, 3) is True
    assert names(alone) == {wal_owner.name}
    assert calls == [(wal_owner.name, wal_owner.name)]
