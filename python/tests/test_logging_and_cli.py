"""sqlite_backup.log and `python3 -m sqlite_backup`."""

import ctypes
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest

import sqlite_backup
from sqlite_backup import log

from conftest import make_database, names


def test_the_logger_is_named_sqlite_backup_and_setup_sets_its_level() -> None:
    assert isinstance(log.logger, logging.Logger)
    assert log.logger.name == "sqlite_backup"
    before = log.logger.level
    try:
        assert log.setup(logging.DEBUG) is log.logger
        assert log.logger.level == logging.DEBUG
        log.setup(logging.ERROR)
        assert log.logger.level == logging.ERROR
        assert sum(isinstance(h, log._StderrHandler) for h in log.logger.handlers) == 1
    finally:
        log.setup(before)


def test_the_level_comes_from_the_environment() -> None:
    code = "import sqlite_backup.log as l; print(l.logger.level)"
    for value, expected in (("10", "10"), ("40", "40"), ("", "30"), ("nonsense", "30")):
        env = dict(os.environ, SQLITE_BACKUP_LOGS=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        assert out.stdout.strip() == expected


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_engines_records_reach_the_logger(folder: Path) -> None:
    source = make_database(folder / "db.sqlite", 10)
    collect = Collect()
    log.logger.addHandler(collect)
    before = log.logger.level
    try:
        log.logger.setLevel(logging.DEBUG)  # set through logging itself, not setup()
        sqlite_backup.sqlite_backup(source)
        engine = [r for r in collect.records if r.filename.endswith(".cpp")]
        assert engine, "no record of the C++ engine reached the logger"
        assert any("into memory" in r.getMessage() for r in engine)
        collect.records.clear()
        log.logger.setLevel(logging.WARNING)
        sqlite_backup.sqlite_backup(source)
        assert not [r for r in collect.records if r.levelno < logging.WARNING]
    finally:
        log.logger.removeHandler(collect)
        log.logger.setLevel(before)


def test_a_calls_records_reach_the_logger_on_its_own_thread(folder: Path) -> None:
    """Each call hands its own records to logging, on the calling thread: another thread that
    flushes records meanwhile (here glob_database_files, on the main thread) never takes them,
    so record.threadName is the caller's."""
    source = make_database(folder / "db.sqlite", 10)
    destination = folder / "copy.sqlite"
    collect = Collect()
    log.logger.addHandler(collect)
    level = log.logger.level
    interval = sys.getswitchinterval()
    copied = threading.Event()

    def copy_function(src: str, dst: str) -> bool:
        shutil.copyfile(src, dst)
        copied.set()
        return True

    def back_up() -> None:
        sqlite_backup.sqlite_backup(source, destination, copy_function=copy_function)

    # libc's access() through PyDLL keeps the GIL, where os.path.exists would let it go.
    access = ctypes.PyDLL(None).access
    access.argtypes = [ctypes.c_char_p, ctypes.c_int]
    caller = threading.Thread(target=back_up, name="the-caller")
    try:
        log.logger.setLevel(logging.DEBUG)
        sys.setswitchinterval(1000)  # this thread keeps the GIL until it gives it up
        caller.start()
        assert copied.wait(60)
        # From here this thread holds the GIL until the backup has renamed its result into
        # place: the caller cannot hand over the records its engine logs after the copy (the
        # attempt's verdict, the recovery), which wait meanwhile. glob_database_files then
        # hands over whatever waits in the queue it reads.
        deadline = time.monotonic() + 60
        while access(bytes(destination), os.F_OK) != 0 and time.monotonic() < deadline:
            pass
        sqlite_backup.core.glob_database_files(source)
        sys.setswitchinterval(interval)
        caller.join(60)
    finally:
        sys.setswitchinterval(interval)
        log.logger.removeHandler(collect)
        log.logger.setLevel(level)
    assert destination.exists()
    mine = [r for r in collect.records if str(source) in r.getMessage()]
    assert any("one consistent state" in r.getMessage() for r in mine)
    assert {r.threadName for r in mine} == {"the-caller"}, [
        (r.threadName, r.getMessage()) for r in mine]


def test_records_of_a_call_whose_python_sink_goes_away_are_printed_not_lost(folder: Path) -> None:
    """The Python sink removed during a call (as `python3 -m sqlite_backup` does in-process,
    and the package's atexit hook): the call's later records are printed on stderr as the
    library prints them, as they were before the sink existed."""
    source = make_database(folder / "db.sqlite", 10)
    code = f"""
import logging, shutil, sqlite_backup
from sqlite_backup import _native, log
log.logger.setLevel(logging.DEBUG)
def copy_function(src, dst):
    shutil.copyfile(src, dst)
    _native.set_log_sink(None)  # from here on no record can reach Python
    return True
sqlite_backup.sqlite_backup({str(source)!r}, {str(folder / "copy.sqlite")!r},
                            copy_function=copy_function)
"""
    env = dict(os.environ, SQLITE_BACKUP_LOGS="10")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    printed = [line for line in run.stderr.splitlines() if line.startswith("[DEBUG ")]
    assert any("one consistent state" in line for line in printed), run.stderr


def run_module(*arguments: str, cwd: Path, logs: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, SQLITE_BACKUP_LOGS=logs)
    return subprocess.run([sys.executable, "-m", "sqlite_backup", *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def test_python_m_takes_file_names_that_are_not_utf8(folder: Path) -> None:
    """They reach sys.argv as surrogate escapes; the tool gets their bytes, as the executable
    does (the list of str once failed to convert: a traceback, exit 1)."""
    make_database(folder / "s.db", 3)
    command = [sys.executable, "-m", "sqlite_backup"]
    done = subprocess.run(command + [b"s.db", b"n\xff.db"], cwd=folder, capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert os.path.exists(os.fsencode(str(folder)) + b"/n\xff.db")
    missing = subprocess.run(command + [b"m\xff.db", b"x.db"], cwd=folder, capture_output=True,
                             timeout=120)
    assert missing.returncode == 2, missing.stderr
    assert b"does not exist" in missing.stderr


def test_python_m_with_a_closed_standard_stream_reports_it_as_the_executable(
        folder: Path) -> None:
    """sys.stdout or sys.stderr is None then; the tool itself reports a closed stdout (exit 5)
    and backs up without a stderr (exit 0), as the executable does."""
    make_database(folder / "s.db", 3)
    command = [sys.executable, "-m", "sqlite_backup"]
    no_stdout = subprocess.run(command + ["s.db", "-"], cwd=folder, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, timeout=120,
                               preexec_fn=lambda: os.close(1))
    assert no_stdout.returncode == 5, no_stdout.stderr
    assert "standard output" in no_stdout.stderr and "closed" in no_stdout.stderr
    no_stderr = subprocess.run(command + ["s.db", "o.db"], cwd=folder, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, timeout=120,
                               preexec_fn=lambda: os.close(2))
    assert no_stderr.returncode == 0
    assert (folder / "o.db").exists()
    # In-process, twice: the /dev/null the first run put on descriptor 1 is no stdout either
    # (the second run once streamed the snapshot into it and said "Backed up").
    twice = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "from sqlite_backup.__main__ import main\n"
         "os.close(1)\n"
         "print(main(['s.db', '-']), main(['s.db', '-']), file=sys.stderr)\n"],
        cwd=folder, capture_output=True, text=True, timeout=120)
    assert twice.stderr.strip().splitlines()[-1] == "5 5", twice.stderr


def test_python_m_backs_up_as_the_cli_does(wal_owner: Path, folder: Path) -> None:
    (folder / "out").mkdir()
    done = run_module("--debug", str(wal_owner), str(folder / "out"), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert f"Backed up {wal_owner} to {folder / 'out' / 'db.sqlite'}" in done.stderr
    assert names(folder / "out") == {"db.sqlite"}
    # Refused: an existing file is never overwritten (exit 1, one line).
    again = run_module(str(wal_owner), str(folder / "out" / "db.sqlite"), cwd=folder)
    assert again.returncode == 1
    assert len(again.stderr.strip().splitlines()) == 1
    # Usage errors exit 2, as click did in the reference.
    assert run_module(str(folder / "missing"), str(folder), cwd=folder).returncode == 2
    assert run_module("--no-such-flag", cwd=folder).returncode == 2


def test_python_m_prints_what_the_executable_prints(folder: Path) -> None:
    cli = os.environ.get("SQLITE_BACKUP_CLI_EXE")
    if not cli:
        pytest.skip("the sqlite_backup executable was not built (SQLITE_BACKUP_BUILD_CLI=OFF)")
    module_help = run_module("--help", cwd=folder)
    executable_help = subprocess.run([cli, "--help"], capture_output=True, text=True)
    assert module_help.returncode == executable_help.returncode == 0
    assert module_help.stdout == executable_help.stdout
    source = make_database(folder / "db.sqlite", 10)
    for arguments in (["--copy-retry", "0", str(source), str(folder / "x")],
                      [str(source), str(folder / "nowhere" / "x")]):
        module = run_module(*arguments, cwd=folder)
        executable = subprocess.run([cli, *arguments], capture_output=True, text=True)
        assert (module.returncode, module.stderr) == (executable.returncode, executable.stderr)


@pytest.mark.parametrize("logs", ["0", "10", "19"])
def test_python_m_takes_the_log_level_from_the_environment_as_the_executable(
        folder: Path, logs: str) -> None:
    # The executable reads SQLITE_BACKUP_LOGS on its own scale, where 0 logs everything;
    # Python's logger would take 0 as NOTSET and inherit warning.
    source = make_database(folder / "db.sqlite", 10)
    done = run_module(str(source), str(folder / "out.sqlite"), cwd=folder, logs=logs)
    assert done.returncode == 0, done.stderr
    assert "[DEBUG " in done.stderr
    quiet = run_module(str(source), str(folder / "quiet.sqlite"), cwd=folder, logs="30")
    assert quiet.returncode == 0 and "[DEBUG " not in quiet.stderr


def test_python_m_streams_to_stdout(folder: Path) -> None:
    source = make_database(folder / "db.sqlite", 25)
    with open(folder / "streamed.sqlite", "wb") as out:
        done = subprocess.run([sys.executable, "-m", "sqlite_backup", str(source), "-"],
                              stdout=out, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0, done.stderr
    import sqlite3

    conn = sqlite3.connect(folder / "streamed.sqlite")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (25,)
    conn.close()


def test_main_refuses_what_no_command_line_can_carry(folder: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """main(argv) in-process: an argument with a NUL would have been cut short at it (here
    naming another database, which would have been backed up), and a lone surrogate has no
    bytes; each is a usage error (exit 2, one line), and nothing is written."""
    from sqlite_backup.__main__ import main

    make_database(folder / "db", 3)
    assert main([str(folder / "db") + "\0.sqlite", str(folder / "copy.sqlite")]) == 2
    assert "holds a NUL byte" in capsys.readouterr().err
    assert main(["\ud800", str(folder / "copy.sqlite")]) == 2
    line = capsys.readouterr().err
    assert line.startswith("sqlite_backup: error: argument 1") and line.count("\n") == 1
    assert names(folder) == {"db", "tmpdir"}
