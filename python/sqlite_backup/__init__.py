"""Transaction-consistent snapshots of live SQLite databases, on the C++ engine.

A drop-in for the reference ``sqlite_backup`` package: the same modules, signature, defaults,
return values and exceptions::

    from sqlite_backup import sqlite_backup
    conn = sqlite_backup("places.sqlite")              # a sqlite3.Connection, in memory
    sqlite_backup("places.sqlite", "backup.sqlite")    # a file, written atomically
"""

from ._native import __version__
from .core import (
    COPY_RETRY_DEFAULT,
    SqliteBackupError,
    atomic_copy,
    copy_all_files,
    glob_database_files,
    sqlite_backup,
    sqlite_connect_immutable,
)

__all__ = [
    "COPY_RETRY_DEFAULT",
    "SqliteBackupError",
    "atomic_copy",
    "copy_all_files",
    "glob_database_files",
    "sqlite_backup",
    "sqlite_connect_immutable",
]
