"""Where the package's log records go when it runs as a program (the CLI, ``workflows/reprocess.py``).

Library code only logs (``logging.getLogger(__name__)``); a program calls
:func:`setup_logging` once to show those records.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["LOG_FORMAT", "setup_logging"]

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
_OURS = "_magtrack_dask_handler"  # marks the handlers setup_logging added


def setup_logging(level: int = logging.WARNING, *, log_file: str | None = None) -> logging.Logger:
    """Send the records of the ``magtrack_dask`` loggers to stderr, and appended to ``log_file``.

    Only the package's logger gets handlers: one on the root logger would also
    print distributed's INFO chatter. A second call replaces the handlers of
    the first (a ``main()`` run twice in one process writes to the current
    ``sys.stderr``, once).

    Parameters
    ----------
    level : int, optional
        ``logging.WARNING`` (default), ``logging.INFO`` for progress details...
    log_file : str, optional
        Also append the records to this file (its folder is created).

    Returns
    -------
    logging.Logger
        The ``magtrack_dask`` logger.
    """
    logger = logging.getLogger("magtrack_dask")
    for handler in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(handler)
        handler.close()  # a FileHandler's file; a StreamHandler leaves sys.stderr open
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        setattr(handler, _OURS, True)
        logger.addHandler(handler)
    logger.setLevel(level)
    return logger
