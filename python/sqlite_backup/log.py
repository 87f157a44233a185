"""Logging of sqlite_backup: the ``sqlite_backup`` logger, which the C++ engine's records reach.

The level comes from ``setup(level)``, else from the environment variable ``SQLITE_BACKUP_LOGS``
(Python's numeric scale: 10 debug, 20 info, 30 warning (the default), 40 error). As the
reference's logger (logzero) does, it writes to stderr and does not propagate to the root
logger; add handlers or change ``logger.propagate`` as with any ``logging.Logger``.
"""

import atexit
import logging
import os
from typing import Optional

from . import _native

DEFAULT_LEVEL = logging.WARNING

logger: logging.Logger = logging.getLogger("sqlite_backup")


def _level_from_environment() -> int:
    text = os.environ.get("SQLITE_BACKUP_LOGS", "")
    try:
        return int(text)
    except ValueError:
        return DEFAULT_LEVEL


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler setup() adds once (setup may run many times)."""


def setup(level: Optional[int] = None) -> logging.Logger:
    """Sets the logger's level (``level``, else ``SQLITE_BACKUP_LOGS``, else warning) and gives
    it a stderr handler if it has none of ours yet. Can be called any number of times."""
    chosen = level or _level_from_environment()
    logger.setLevel(chosen)
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)1.1s %(asctime)s %(name)s %(filename)s:%(lineno)d] %(message)s"
            )
        )
        logger.addHandler(handler)
        logger.propagate = False
    sync_level()
    return logger


def sync_level() -> None:
    """Lets the engine drop, before formatting them, the records the logger would drop."""
    _native.set_log_level(logger.getEffectiveLevel())


def _forward(level: int, message: str, filename: str, line: int) -> None:
    # Called by the engine (with the GIL) for each record at or above the synced level.
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, filename, line, message, (), None))


_native.set_log_sink(_forward)
# The engine must not call into an interpreter that is shutting down.
atexit.register(_native.set_log_sink, None)

logger = setup()
