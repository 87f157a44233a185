"""Ctrl-C, exceptions raised in callbacks, and the GIL while the engine works."""

import os
import signal
import sqlite3
import subprocess
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


def test_ctrl_c_that_lands_in_a_log_handler_is_not_lost(folder: Path,
                                                        interrupt_handled: threading.Event) -> None:
    # The engine's records reach Python's logging on the calling thread; a signal handler
    # that runs there (here: the handler itself is interrupted) raises KeyboardInterrupt inside
    # logging, which was once reported as unraisable and dropped: the backup went on.
    from sqlite_backup import log
    import logging

    source = make_database(folder / "db.sqlite", 3000)
    (folder / "out").mkdir()

    class InterruptOnce(logging.Handler):
        sent = False

        def emit(self, record: logging.LogRecord) -> None:
            if not InterruptOnce.sent and record.filename.endswith(".cpp"):
                InterruptOnce.sent = True
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.001)  # the handler runs here

    handler = InterruptOnce()
    level = log.logger.level
    log.logger.addHandler(handler)
    log.logger.setLevel(logging.DEBUG)
    try:
        with pytest.raises(KeyboardInterrupt):
            sqlite_backup.sqlite_backup(source, folder / "out" / "x.sqlite",
                                        sqlite_backup_kwargs={"pages": 1})
    finally:
        log.logger.removeHandler(handler)
        log.logger.setLevel(level)
    assert InterruptOnce.sent and interrupt_handled.is_set()


def test_the_engines_records_come_before_the_callback_they_precede(folder: Path) -> None:
    # The engine logs, then asks for the progress callback; both reach Python on the calling
    # thread, and in that order (the callback once ran first, every step shifted by one).
    from sqlite_backup import log
    import logging

    source = make_database(folder / "db.sqlite", 200)
    events: List[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.filename.endswith(".cpp"):
                events.append("record")

    handler = Collect()
    level = log.logger.level
    log.logger.addHandler(handler)
    log.logger.setLevel(logging.DEBUG)
    try:
        sqlite_backup.sqlite_backup(
            source, folder / "copy.sqlite",
            sqlite_backup_kwargs={"progress": lambda *args: events.append("callback")})
    finally:
        log.logger.removeHandler(handler)
        log.logger.setLevel(level)
    assert "callback" in events
    assert events.index("record") < events.index("callback"), events


def test_records_logged_after_a_subinterpreter_existed_do_not_crash(folder: Path) -> None:
    # Once a sub-interpreter has existed, CPython 3.11's PyGILState_Check() says yes on every
    # thread: a sink that asked it called Python from the engine's threads without the GIL.
    make_database(folder / "src.db", 2000)
    done = run_script(folder, """
import logging, _xxsubinterpreters
from sqlite_backup import sqlite_backup, log
_xxsubinterpreters.destroy(_xxsubinterpreters.create())
log.setup(logging.DEBUG)
for _ in range(20):
    sqlite_backup("src.db", "out.db"); sqlite_backup("src.db").close()
    import os; os.remove("out.db")
print("done")
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout == "done\n"


def test_a_thread_that_cannot_be_started_is_an_error_not_a_crash(folder: Path) -> None:
    # The engine runs on a thread of its own; with no memory left for its stack the call must
    # raise (naming the source), with the GIL held as Python expects: it once crashed.
    make_database(folder / "small.db", 10)
    done = run_script(folder, """
import resource, sqlite_backup
def vm():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
limit = vm() + (4 << 20)  # room for small allocations, none for a thread's 8 MiB stack
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    sqlite_backup.sqlite_backup("small.db", "out.db")
    print("no error")
except sqlite_backup.SqliteBackupError as error:
    print(type(error).__name__, error.kind, error)
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("SqliteBackupError io cannot start a thread to copy small.db:")
    assert not (folder / "out.db").exists()


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


def test_callbacks_run_on_the_calling_thread_while_others_run_python(folder: Path) -> None:
    # As the reference's: its copy loop and Connection.backup call back on the caller's
    # thread. Meanwhile the engine holds no GIL: a third thread runs Python during the call.
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

    def progress(status: int, remaining: int, total: int) -> None:
        callback_threads.add(threading.get_ident())

    thread = threading.Thread(target=other)
    thread.start()
    conn = sqlite_backup.sqlite_backup(source, copy_function=copy,
                                       sqlite_backup_kwargs={"progress": progress})
    thread.join()
    assert conn is not None and conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
    assert callback_threads == {threading.get_ident()}


def test_a_callback_may_use_objects_bound_to_the_calling_thread(folder: Path) -> None:
    # A sqlite3 connection may only be used on the thread that made it: the reference's
    # progress callbacks could write to the application's own database.
    source = make_database(folder / "db.sqlite", 300)
    app = sqlite3.connect(":memory:")
    app.execute("CREATE TABLE progress(remaining, total)")

    def progress(status: int, remaining: int, total: int) -> None:
        app.execute("INSERT INTO progress VALUES (?, ?)", (remaining, total))

    sqlite_backup.sqlite_backup(source, folder / "copy.sqlite",
                                sqlite_backup_kwargs={"progress": progress, "pages": 1})
    assert app.execute("SELECT count(*) FROM progress").fetchone()[0] > 1


def test_files_a_copy_function_opens_stay_open_in_the_caller(folder: Path) -> None:
    # The engine reads the source with a descriptor table of its own (so that closing its
    # descriptors never drops the caller's locks); a copy function once ran there, and a file
    # it opened was closed when the engine's thread ended: the caller's later writes went to
    # whatever file took its number.
    source = make_database(folder / "db.sqlite", 10)
    opened = []

    def copy(src: str, dst: str) -> bool:
        if not opened:
            opened.append(open(folder / "audit.log", "w", buffering=1))
        opened[0].write(f"copy {src}\n")
        return atomic_copy(src, dst)

    sqlite_backup.sqlite_backup(source, folder / "copy.sqlite", copy_function=copy)
    others = [open(folder / f"other{i}.txt", "w") for i in range(3)]
    opened[0].write("after the call\n")
    opened[0].close()
    for other in others:
        other.close()
    assert (folder / "audit.log").read_text().endswith("after the call\n")
    assert all((folder / f"other{i}.txt").read_text() == "" for i in range(3))


def run_script(folder: Path, script: str, tmpdir: Optional[Path] = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TMPDIR=str(tmpdir)) if tmpdir else None
    return subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True,
                          text=True, timeout=300, env=env)


def test_callbacks_shared_with_other_threads_keep_their_reference_counts(folder: Path) -> None:
    # The engine's threads once copied the callbacks' Python references without the GIL: a
    # thread touching the same function meanwhile crashed the interpreter within a few calls,
    # or left its reference count wrong. In a child process, so that a crash is a failure.
    make_database(folder / "src.db", 10)
    done = run_script(folder, """
import sys, threading
from sqlite_backup import sqlite_backup
def progress(status, remaining, total): pass
stop = False
def churn():
    while not stop:
        a = progress; b = progress; del a, b
thread = threading.Thread(target=churn); thread.start()
before = sys.getrefcount(progress)
for _ in range(300):
    sqlite_backup("src.db", "out.db", sqlite_backup_kwargs={"progress": progress})
stop = True; thread.join()
print(before, sys.getrefcount(progress))
""")
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    before, after = done.stdout.split()
    assert before == after


def test_a_daemon_thread_backing_up_at_exit_does_not_crash_the_interpreter(folder: Path) -> None:
    # The interpreter ends daemon threads at shutdown; one inside a backup with a callback
    # aborted the process ("thread state must be current", exit 134) or crashed it.
    make_database(folder / "big.db", 20000)
    child_tmp = folder / "child-tmp"
    child_tmp.mkdir()
    done = run_script(folder, """
import threading, time
from sqlite_backup import sqlite_backup
def progress(*args): time.sleep(0.001)
def loop():
    while True:
        sqlite_backup("big.db", sqlite_backup_kwargs={"progress": progress, "pages": 1}).close()
threading.Thread(target=loop, daemon=True).start()
time.sleep(0.5)
print("main exits", flush=True)
""", tmpdir=child_tmp)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout == "main exits\n"
    # The process may end in the middle of the thread's backup, as with any daemon thread:
    # what it staged is then removed by the next backup that stages beside it.
    os.environ["TMPDIR"] = str(child_tmp)
    try:
        sqlite_backup.sqlite_backup(folder / "big.db").close()
    finally:
        os.environ["TMPDIR"] = str(folder / "tmpdir")
    assert names(child_tmp) == set()


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
