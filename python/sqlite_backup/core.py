"""The reference's ``sqlite_backup.core``: ``sqlite_backup`` and its helpers, on the C++ engine.

What differs from the reference is listed in the project's README (section "Python").
"""

import errno
import math
import numbers
import operator
import os
import shutil
import sqlite3
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union
from urllib.parse import quote

from . import _native
from .log import logger, sync_level

PathIsh = Union[str, Path]
CopyFunction = Callable[[str, str], bool]

COPY_RETRY_DEFAULT = 100

SqliteBackupError = _native.SqliteBackupError
# Subclasses that are also what the reference raised for the same failure (SQLite's or the
# OS's own error), so that handlers written for it still catch them.
SqliteBackupDatabaseError = _native.SqliteBackupDatabaseError
SqliteBackupOperationalError = _native.SqliteBackupOperationalError
SqliteBackupOSError = _native.SqliteBackupOSError
# SqliteBackupOSError narrowed by errno (SqliteBackupPermissionError, ...; also a
# PermissionError, ...), and the SqliteBackupOperational* ones for I/O errors SQLite reported
# (also a sqlite3.OperationalError): named here so that they pickle.
for _name in dir(_native):
    _error = getattr(_native, _name)
    if _name.startswith("SqliteBackup") and isinstance(_error, type):
        _error.__module__ = __name__
        globals()[_name] = _error


def _reduce_os_error(error: OSError) -> tuple:
    # OSError's own state (errno, strerror, filename) is not in __dict__, and our classes put
    # RuntimeError's constructor first: keep it explicitly through pickle and copy.
    state = dict(error.__dict__)
    for name in ("errno", "strerror", "filename"):
        if getattr(error, name) is not None:
            state[name] = getattr(error, name)
    return (type(error), error.args, state)


def _os_error_str(error: OSError) -> str:
    # The one-line message, naming the path and the reason, whatever errno, strerror and
    # filename hold (OSError's own str() would become "[Errno 13] Permission denied: 'x'").
    return str(error.args[0]) if error.args else ""


SqliteBackupOSError.__reduce__ = _reduce_os_error  # type: ignore[method-assign]
SqliteBackupOSError.__str__ = _os_error_str  # type: ignore[method-assign,assignment]
# A named pipe, socket or device as the source: also the reference's shutil.SpecialFileError.
SqliteBackupSpecialFileError = _native.SqliteBackupSpecialFileError
SqliteBackupSpecialFileError.__reduce__ = _reduce_os_error  # type: ignore[method-assign]
SqliteBackupSpecialFileError.__str__ = _os_error_str  # type: ignore[method-assign,assignment]
del _name, _error

_LIVE_WARNING = (
    "Copying a database in use by another application without copying to a temporary "
    "directory could result in corrupt data or incorrect results. Only use this if you know "
    "the underlying database is not being modified"
)

# What sqlite3.connect() and Connection.backup() accept (Python 3.11). The engine uses
# `timeout` (how long a busy source is waited for) and the backup ones; the others only shape
# a Python connection object, and the reference passed them to a connection it threw away.
_CONNECT_KWARGS = frozenset(
    {"timeout", "detect_types", "isolation_level", "check_same_thread", "factory",
     "cached_statements", "uri"}
)
_BACKUP_KWARGS = frozenset({"pages", "progress", "name", "sleep"})


def _encode(path: PathIsh) -> bytes:
    return os.fsencode(path)


# The most attempts the engine counts (a C int); more would never all be needed.
_MOST_RETRIES = 2**31 - 2


def _retry_count(value: Any, name: str) -> int:
    """A retry count as the reference's `while retry >= 0: ... retry -= 1` takes it: an int,
    a bool or a float (its floor; infinity retries for ever), capped where the engine's
    count ends."""
    if isinstance(value, float):
        if math.isnan(value):
            # The reference's loop would not run at all, and then use a copy never made.
            raise ValueError(f"'{name}' must be a number of retries, not nan")
        if math.isinf(value):
            return _MOST_RETRIES if value > 0 else -1
        value = math.floor(value)  # the loop's count: 2.5 runs for 2.5, 1.5 and 0.5
    if not isinstance(value, numbers.Integral):
        raise TypeError(f"'{name}' must be an int, not {type(value).__name__}")
    return min(operator.index(value), _MOST_RETRIES)


def _real_number(value: Any) -> float:
    """``value`` as sqlite3.connect's timeout and Connection.backup's sleep take it (a number
    of seconds: anything with __float__ or __index__), with their TypeError otherwise."""
    if not (hasattr(type(value), "__float__") or hasattr(type(value), "__index__")):
        raise TypeError(f"must be real number, not {type(value).__name__}")
    return float(value)


# The longest wait the engine counts (milliseconds in a C int).
_MOST_SECONDS = (2**31 - 1) / 1000


def _seconds(value: Any) -> float:
    """A timeout or sleep as a number of seconds the engine can count: what is not positive
    (nan included) waits not at all, and the longest is about 24 days."""
    seconds = _real_number(value)
    return min(seconds, _MOST_SECONDS) if seconds > 0 else 0.0


def _check_connect_kwargs(connect: Dict[str, Any]) -> None:
    """Raises what sqlite3.connect raises for these arguments (a bad detect_types,
    isolation_level, factory, ...), by asking it: the reference passed them to
    sqlite3.connect, which refused them there."""
    checked = sqlite3.connect(":memory:", **connect)
    close = getattr(checked, "close", None)
    if callable(close):
        close()


def _call_options(
    *,
    wal_checkpoint: bool,
    copy_use_tempdir: bool,
    copy_retry: int,
    copy_retry_strict: bool,
    sqlite_connect_kwargs: Optional[Dict[str, Any]],
    sqlite_backup_kwargs: Optional[Dict[str, Any]],
    copy_function: Optional[CopyFunction],
) -> Any:
    copy_retry = _retry_count(copy_retry, "copy_retry")
    if copy_retry < 0:
        raise ValueError(f"'copy_retry' must not be negative (got {copy_retry})")
    if copy_function is not None and not callable(copy_function):
        raise TypeError("'copy_function' must be callable")
    connect = dict(sqlite_connect_kwargs or {})
    unknown = sorted(set(connect) - _CONNECT_KWARGS)
    if unknown:
        raise TypeError(f"'{unknown[0]}' is an invalid keyword argument for sqlite3.connect()")
    backup = dict(sqlite_backup_kwargs or {})
    unknown = sorted(set(backup) - _BACKUP_KWARGS)
    if unknown:
        raise TypeError(f"backup() got an unexpected keyword argument '{unknown[0]}'")

    options = _native.CallOptions()
    options.wal_checkpoint = bool(wal_checkpoint)
    options.copy_use_tempdir = bool(copy_use_tempdir)
    # The reference's loop runs `while retry >= 0`: copy_retry retries after a first attempt.
    options.attempts = copy_retry + 1
    options.copy_retry = copy_retry
    options.copy_retry_strict = bool(copy_retry_strict)
    _check_connect_kwargs(connect)
    options.timeout = _seconds(connect.get("timeout", 5.0))
    pages = operator.index(backup.get("pages", -1))  # as Connection.backup: no float, no str
    if not -(2**31) <= pages < 2**31:
        raise OverflowError("Python int too large to convert to C int")
    options.pages = -1 if pages <= 0 else pages  # as Connection.backup: 0 or less means all
    progress = backup.get("progress")
    if progress is not None and not callable(progress):
        raise TypeError("progress argument must be a callable")
    options.progress = progress
    name = backup.get("name", "main")
    if not isinstance(name, str):
        raise TypeError(f"backup() argument 'name' must be str, not {type(name).__name__}")
    options.name = name
    options.sleep = _seconds(backup.get("sleep", 0.250))
    options.copy_function = copy_function
    return options


def sqlite_backup(
    source: PathIsh,
    destination: Optional[PathIsh] = None,
    *,
    wal_checkpoint: bool = True,
    copy_use_tempdir: bool = True,
    copy_retry: int = COPY_RETRY_DEFAULT,
    copy_retry_strict: bool = True,
    sqlite_connect_kwargs: Optional[Dict[str, Any]] = None,
    sqlite_backup_kwargs: Optional[Dict[str, Any]] = None,
    copy_function: Optional[CopyFunction] = None,
) -> Optional[sqlite3.Connection]:
    """'Snapshots' the source database (with its -wal/-journal) as one committed state.

    Without a 'destination' it returns a new in-memory ``sqlite3.Connection`` (of this
    interpreter's own ``sqlite3`` module) holding the snapshot; with one, it writes the
    snapshot there atomically (a temporary name beside it, fsync, rename) and returns None.

    The source is copied without locks and without writing to its folder; copies are taken
    until one is proven to be a single committed state, up to 'copy_retry' retries; with
    'copy_retry_strict' (the default) it then raises SqliteBackupError, otherwise it logs a
    warning and uses the last copy. 'copy_use_tempdir=False' reads the live database with
    SQLite's backup API instead (takes locks; may fail while the owner writes).
    'wal_checkpoint' leaves no -wal/-shm beside the destination (the result is always a
    single file in journal_mode=DELETE). 'sqlite_connect_kwargs' ('timeout', ...) and
    'sqlite_backup_kwargs' ('pages', 'progress', 'name', 'sleep') mean what they mean to
    ``sqlite3.connect`` and ``Connection.backup``; 'copy_function(src, dst) -> bool' copies
    one file and says whether it stayed unchanged meanwhile.

    The GIL is released while it works; Ctrl-C (KeyboardInterrupt) cancels cleanly. Raises
    FileNotFoundError (missing source), ValueError (source and destination are the same
    file), SqliteBackupError (everything else; ``.kind`` and ``.path`` say what and where),
    or what a callback raised.
    """
    source_path = Path(source)
    if not source_path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(source_path))
    if copy_use_tempdir and source_path.is_dir():
        # What the reference's copy of the files (shutil.copy) raised for a folder.
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(source_path))
    if destination is not None:
        if not isinstance(destination, (str, Path)):
            raise TypeError(
                "Unexpected 'destination' type, expected path like object, "
                f"got {type(destination)}"
            )
        if source_path == Path(destination):
            raise ValueError(f"'source' and 'destination' '{source_path}' can't be the same")
    options = _call_options(
        wal_checkpoint=wal_checkpoint,
        copy_use_tempdir=copy_use_tempdir,
        copy_retry=copy_retry,
        copy_retry_strict=copy_retry_strict,
        sqlite_connect_kwargs=sqlite_connect_kwargs,
        sqlite_backup_kwargs=sqlite_backup_kwargs,
        copy_function=copy_function,
    )
    if not copy_use_tempdir:
        warnings.warn(_LIVE_WARNING, stacklevel=2)
    sync_level()
    if destination is not None and (os.fspath(destination) == ":memory:" or destination == ""):
        # The reference opened sqlite3.connect(destination) and backed up into it: ":memory:"
        # and "" (a private temporary database) are snapshots taken and dropped, no file.
        _native.backup_to_memory(_encode(source_path), lambda: sqlite3.connect(":memory:"),
                                 options).close()
        return None
    if destination is None:
        logger.debug("snapshotting '%s' into memory", source_path)
        connection: sqlite3.Connection = _native.backup_to_memory(
            _encode(source_path), lambda: sqlite3.connect(":memory:"), options
        )
        return connection
    logger.debug("snapshotting '%s' to '%s'", source_path, destination)
    _native.backup_to_file(_encode(source_path), _encode(destination), options)
    return None


def _check_copy(src: PathIsh, dest: PathIsh) -> None:
    # What the reference's shutil.copy raised before writing anything: a folder is not
    # copied, and a file is never copied onto itself (opening the copy would empty it).
    if os.path.isdir(src):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(src))
    if os.path.exists(dest) and os.path.samefile(src, dest):
        raise shutil.SameFileError(f"{os.fspath(src)!r} and {os.fspath(dest)!r} are the same file")


def atomic_copy(src: str, dest: str) -> bool:
    """Copies src to dest; returns True when src did not change while it was copied (same
    file, size and modification time), False otherwise. Raises OSError subclasses
    (shutil.SameFileError when dest is src, IsADirectoryError for a folder)."""
    _check_copy(src, dest)
    unchanged = bool(_native.atomic_copy(_encode(src), _encode(dest)))
    # The reference's shutil.copy gives the copy the source's permission bits.
    shutil.copymode(src, dest)
    return unchanged


def glob_database_files(source_database: Path) -> List[Path]:
    """The database and its -wal and -journal files that exist (never -shm, which SQLite
    rebuilds from the WAL)."""
    return [Path(os.fsdecode(file)) for file in _native.glob_database_files(_encode(source_database))]


def copy_all_files(
    source_files: List[Path],
    temporary_dest: Path,
    copy_function: Optional[CopyFunction] = None,
    retry: int = COPY_RETRY_DEFAULT,
) -> bool:
    """Copies each of 'source_files' into the folder 'temporary_dest' (under its own name),
    retrying the whole list up to 'retry' times until no file changed while it was copied,
    as the reference does. Returns whether that happened; the last copy is left in the folder
    either way. When the list is a database's files exactly as glob_database_files lists them
    (the database first), each attempt is also proven to be one committed state of the
    database, as sqlite_backup's copies are, which 'copy_function' alone cannot tell.
    Raises shutil.SameFileError, before anything is written, when a file would be copied
    onto itself."""
    if not Path(temporary_dest).is_dir():
        raise ValueError(f"Expected a directory, received {temporary_dest}")
    retry = _retry_count(retry, "retry")
    files = [Path(file) for file in source_files]
    for file in files:
        _check_copy(file, Path(temporary_dest) / file.name)
    # As the reference's loop: no attempt at all is a failure; nothing to copy, a success.
    if retry < 0:
        return False
    if not files:
        return True
    if _is_database_set(files):
        sync_level()
        return bool(
            _native.copy_all_files(
                [_encode(file) for file in files],
                _encode(temporary_dest),
                copy_function,
                retry + 1,
            )
        )
    # Any other list: the reference's loop (every file copied in each attempt).
    copy = copy_function if copy_function is not None else atomic_copy
    for _ in range(retry + 1):
        if all([copy(str(file), str(Path(temporary_dest) / file.name)) for file in files]):
            return True
    return False


def _is_database_set(files: List[Path]) -> bool:
    # The database first, then exactly its -wal and -journal that exist, no file twice. (A
    # database that does not exist is no set: the copy function reports it, as shutil.copy did.)
    if not files[0].exists():
        return False
    listed = [os.path.abspath(file) for file in files]
    expected = [os.path.abspath(file) for file in glob_database_files(files[0])]
    return listed[0] == expected[0] and sorted(listed) == sorted(expected)


@contextmanager
def sqlite_connect_immutable(db: PathIsh) -> Iterator[sqlite3.Connection]:
    """Opens 'db' read-only with immutable=1 (no locks, no change detection): only for files
    nobody writes, such as a finished snapshot. Yields a sqlite3.Connection, closed after."""
    path = os.path.abspath(db)
    if "\0" in path:
        # As the reference's sqlite3.connect refused it: quoted into the URI as %00, the NUL
        # would end the name there, and another database would be opened.
        raise ValueError("embedded null byte")
    # Read-only: the reference's read-write open created an empty database where none was.
    # A folder is the exception: opened read-only it would fail only at the first query, with
    # "disk I/O error"; SQLite's read-write open refuses it at once, as the reference's did
    # ("unable to open database file", SQLITE_CANTOPEN). mode=rw, not the reference's rwc:
    # should the folder go before the open, nothing is created in its place either.
    mode = "rw" if os.path.isdir(path) else "ro"
    conn = sqlite3.connect("file:" + quote(os.fsencode(path)) + f"?mode={mode}&immutable=1",
                           uri=True)
    try:
        yield conn
    finally:
        conn.close()
