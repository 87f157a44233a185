"""``python3 -m sqlite_backup``: this project's command-line tool, the same program as the
``sqlite_backup`` executable (same arguments, output and exit codes; see ``--help``)."""

import os
import sys
from typing import List, Optional

from . import _native


def _usage_error(message: str) -> int:
    # As the tool reports a bad argument: one line on stderr, exit code 2.
    if sys.stderr is not None:
        sys.stderr.write(f"sqlite_backup: error: {message} (see --help)\n")
        sys.stderr.flush()
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    # As bytes: a file name that is not UTF-8 reaches sys.argv as surrogate escapes, and the
    # tool takes the name's bytes, as the executable does. What no command line can carry is
    # refused here, as a usage error: a NUL would cut the name short (another file backed
    # up), and a lone surrogate that no bytes stand for has no name at all.
    encoded = [b"sqlite_backup"]
    for number, argument in enumerate(arguments, start=1):
        try:
            name = os.fsencode(argument)
        except UnicodeEncodeError:
            return _usage_error(f"argument {number} ({argument!r}) is not a file name's bytes")
        if b"\0" in name:
            return _usage_error(f"argument {number} ({argument!r}) holds a NUL byte")
        encoded.append(name)
    # (None when the process was started with that descriptor closed: the tool reports it.)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    # The tool prints its own log lines (--debug), as the executable does, at the level the
    # executable takes from SQLITE_BACKUP_LOGS (where "0" means everything, not Python's
    # NOTSET, which the package's logger inherits as warning).
    _native.set_log_sink(None)
    _native.set_log_level_text(os.environ.get("SQLITE_BACKUP_LOGS", ""))
    try:
        return _native.run_command_line(encoded)
    finally:
        from .log import _forward, sync_level

        _native.set_log_sink(_forward)
        sync_level()


if __name__ == "__main__":
    sys.exit(main())
