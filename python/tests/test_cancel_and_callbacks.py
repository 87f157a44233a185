"""Ctrl-C, exceptions raised in callbacks, and the GIL while the engine works."""

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest

import sqlite_backup
from sqlite_backup.core import atomic_copy

from conftest import make_database, names


class Boom(Exception):
    pass


@pytest.fixture
def interrupt_handled() -> Iterator[threading.Event]:
    """SIGINT handled as Python does by default (KeyboardInterrupt), noting that it ran."""
    handled = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        handled.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    yield handled
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("to_file", [False, True])
def test_ctrl_c_cancels_cleanly_and_leaves_nothing(folder: Path, to_file: bool,
                                                   interrupt_handled: threading.Event) -> None:
    source = make_database(folder / "db.sqlite", 2000)
    (folder / "out").mkdir()
    destination: Optional[Path] = folder / "out" / "copy.sqlite" if to_file else None

    def copy_then_interrupt(src: str, dst: str) -> bool:
        # Ctrl-C arrives while the engine copies; the copy goes on until Python's handler has
        # run in the calling thread (which it can only do if that thread released the GIL).
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt_handled.wait(30), "the signal handler never ran during the backup"
        return atomic_copy(src, dst)

    with pytest.raises(KeyboardInterrupt):
        sqlite_backup.sqlite_backup(source, destination, copy_function=copy_then_interrupt)
    assert names(folder / "out") == set()
    assert names(folder) == {"db.sqlite", "out", "tmpdir"}  # the fixture checks tmpdir


def interrupt_once_written(destination: Path) -> threading.Thread:
    """Sends this process SIGINT as soon as `destination` holds a byte: a copy under way."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if destination.exists() and destination.stat().st_size > 0:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


@pytest.mark.parametrize("helper", ["atomic_copy", "copy_all_files"])
def test_ctrl_c_stops_a_helper_copy_at_once_and_leaves_nothing(
        folder: Path, helper: str, interrupt_handled: threading.Event) -> None:
    # A 2 GiB file (sparse: nothing to write here, but the copy writes every byte) takes
    # seconds to copy; the interrupt comes once the first chunk is written, so the copy is
    # under way. It stopped only at the end, leaving the whole copy behind.
    source = folder / "big.bin"
    with open(source, "wb") as out:
        out.truncate(2 << 30)
    (folder / "out").mkdir()
    destination = folder / "out" / "big.bin"
    watcher = interrupt_once_written(destination)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        if helper == "atomic_copy":
            atomic_copy(str(source), str(destination))
        else:
            sqlite_backup.core.copy_all_files([source], folder / "out")
    watcher.join()
    assert interrupt_handled.is_set()
    assert names(folder / "out") == set(), "the interrupted copy was left behind"
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("to_file", [False, True])
def test_an_exception_in_copy_function_comes_out_of_the_call(folder: Path,
                                                             to_file: bool) -> None:
    source = make_database(folder / "db.sqlite", 100)
    (folder / "out").mkdir()
    raised = Boom("from the copy function")

    def failing_copy(src: str, dst: str) -> bool:
        raise raised

    with pytest.raises(Boom) as caught:
        sqlite_backup.sqlite_backup(source, folder / "out" / "x" if to_file else None,
                                    copy_function=failing_copy)
    assert caught.value is raised
    assert names(folder / "out") == set()


@pytest.mark.parametrize("to_file", [False, True])
def test_an_exception_in_progress_comes_out_of_the_call(folder: Path, to_file: bool) -> None:
    source = make_database(folder / "db.sqlite", 3000)
    (folder / "out").mkdir()
    calls = []

    def progress(status: int, remaining: int, total: int) -> None:
        calls.append(remaining)
        if len(calls) == 2:
            raise Boom("from progress")

    with pytest.raises(Boom):
        sqlite_backup.sqlite_backup(source, folder / "out" / "x" if to_file else None,
                                    sqlite_backup_kwargs={"pages": 1, "progress": progress})
    assert len(calls) == 2, "the backup went on after the callback raised"
    assert names(folder / "out") == set()


def test_callbacks_run_while_the_calling_thread_has_released_the_gil(folder: Path) -> None:
    source = make_database(folder / "db.sqlite", 100)
    started = threading.Event()
    other_thread_ran = threading.Event()
    callback_threads = set()

    def other() -> None:
        if started.wait(30):
            other_thread_ran.set()  # Python code on a third thread, during the backup

    def copy(src: str, dst: str) -> bool:
        callback_threads.add(threading.get_ident())
        started.set()
        assert other_thread_ran.wait(30)
        return atomic_copy(src, dst)

    thread = threading.Thread(target=other)
    thread.start()
    conn = sqlite_backup.sqlite_backup(source, copy_function=copy)
    thread.join()
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
    assert threading.get_ident() not in callback_threads


def test_other_threads_run_python_while_the_engine_works(folder: Path) -> None:
    source = make_database(folder / "db.sqlite", 1_000_000)  # about 19 MB: tens of milliseconds
    interval = sys.getswitchinterval()

    def ticks_inside_one_backup() -> Optional[int]:
        ticks: List[float] = []
        stop = False

        def spin() -> None:
            while not stop:
                ticks.append(time.monotonic())

        thread = threading.Thread(target=spin)
        thread.start()
        try:
            started = time.monotonic()
            conn = sqlite_backup.sqlite_backup(source)
            ended = time.monotonic()
        finally:
            stop = True
            thread.join()
        assert conn is not None
        conn.close()
        if ended - started < 6 * interval:
            return None  # too short to tell
        # Had the call kept the GIL, the spinning thread could have run only at its edges:
        # before the call reached the engine, and once Python's switch interval (5 ms) made
        # the calling thread give the GIL up after it. So count only ticks well inside it.
        return len([t for t in ticks if started + 2 * interval < t < ended - 2 * interval])

    # The spinning thread also needs a core: on a machine busy with other tests it may get
    # none for a whole backup, so one backup in which it ran is the proof; three chances.
    counts = []
    for _ in range(3):
        counts.append(ticks_inside_one_backup())
        if counts[-1]:
            return
    if all(count is None for count in counts):
        pytest.skip("every backup was too short to tell")
    pytest.fail("no other Python thread ran while the engine worked: the GIL was held")
