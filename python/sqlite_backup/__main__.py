"""``python3 -m sqlite_backup``: this project's command-line tool, the same program as the
``sqlite_backup`` executable (same arguments, output and exit codes; see ``--help``)."""

import sys
from typing import List, Optional

from . import _native


def main(argv: Optional[List[str]] = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    sys.stdout.flush()
    sys.stderr.flush()
    # The tool prints its own log lines (--debug), as the executable does.
    _native.set_log_sink(None)
    try:
        return _native.run_command_line(["sqlite_backup", *arguments])
    finally:
        from .log import _forward

        _native.set_log_sink(_forward)


if __name__ == "__main__":
    sys.exit(main())
