"""Fixtures for the Python package's tests: real databases, real owner processes."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Set

import pytest

HERE = Path(__file__).resolve().parent
OWNER = HERE / "owner.py"


def make_database(path: Path, rows: int, journal_mode: str = "delete") -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(rows)])
    conn.execute("COMMIT")
    conn.close()
    return path


def names(folder: Path) -> Set[str]:
    return {entry.name for entry in folder.iterdir()}


class Owner:
    """An owner process (owner.py) and the database it owns."""

    def __init__(self, folder: Path, *arguments: str) -> None:
        self.ready = folder / f"ready-{time.monotonic_ns()}"
        self.process = subprocess.Popen(
            [sys.executable, str(OWNER), arguments[0], *arguments[1:2], str(self.ready),
             *arguments[2:]],
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while not self.ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"owner exited: {self.process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("owner never became ready")
            time.sleep(0.01)  # polling for the owner's announcement, not for an interleaving
        self.ready.unlink()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        if self.process.stderr:
            self.process.stderr.close()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private folder, also the temporary directory: what is left in it is checkable."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    yield tmp_path
    assert names(scratch) == set(), "temporary files were left behind"


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a folder where a larger backup runs out of space. Needs root (mount)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a 1 MiB tmpfs (disk-full test)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture
def wal_owner(folder: Path) -> Iterator[Path]:
    """A database with 1000 rows, 500 of them still only in the -wal of a live owner."""
    (folder / "live").mkdir()
    db = folder / "live" / "db.sqlite"
    owner = Owner(folder, "hold-wal", str(db))
    assert (folder / "live" / "db.sqlite-wal").stat().st_size > 0
    yield db
    owner.stop()


def own_posix_locks(path: Path) -> List[str]:
    """This process's POSIX record locks on `path`, from /proc/locks (ordinal dropped)."""
    inode = f":{path.stat().st_ino}"
    pid = str(os.getpid())
    locks = []
    # One read() of the whole table: the kernel builds it page by page, and a table read in
    # several calls while other processes lock and unlock can repeat or skip lines.
    fd = os.open("/proc/locks", os.O_RDONLY)
    try:
        table = os.read(fd, 1 << 22).decode()
    finally:
        os.close(fd)
    for line in table.splitlines():
        fields = line.split()
        if fields[1] == "->":
            fields = fields[1:]
        if fields[1] == "POSIX" and fields[4] == pid and fields[5].endswith(inode):
            locks.append(" ".join(fields[1:]))
    return sorted(set(locks))
