"""``python3 -m sqlite_backup``: this project's command-line tool, the same program as the
``sqlite_backup`` executable (same arguments, output and exit codes; see ``--help``)."""

import os
import sys
from typing import List, Optional

from . import _native


def main(argv: Optional[List[str]] = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
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
        # As bytes: a file name that is not UTF-8 reaches sys.argv as surrogate escapes, and
        # the tool takes the name's bytes, as the executable does.
        return _native.run_command_line([b"sqlite_backup", *map(os.fsencode, arguments)])
    finally:
        from .log import _forward, sync_level

        _native.set_log_sink(_forward)
        sync_level()


if __name__ == "__main__":
    sys.exit(main())
