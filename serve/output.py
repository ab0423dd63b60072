"""What the terminal of ``chronos serve`` shows: Chronos's banner and real errors.

Ray writes to the driver's stdout and stderr from Python (its loggers, messages
relayed from the raylet) and from C++ (its core worker's warnings, the stack it
prints when a signal arrives). None of it is for the person who started the
server, so both file descriptors (which C++ writes to as well) are pointed at
``<data_dir>/logs/serve.log``, and the terminal keeps copies of the originals:
Chronos prints its banner there, and its own warnings and errors and any
traceback are written to both.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from dataclasses import dataclass
from typing import TextIO

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class Terminal:
    out: TextIO  # the banner
    err: TextIO  # Chronos's warnings and errors, tracebacks
    log: Path  # where everything else went


def divert_ray_output(log_dir: Path) -> Terminal:
    """Send everything written to stdout and stderr to ``log_dir/serve.log``;
    keep the terminal for Chronos's banner, warnings, errors and tracebacks."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "serve.log"
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = Terminal(os.fdopen(os.dup(1), "w", buffering=1), os.fdopen(os.dup(2), "w", buffering=1), path)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for fd in (1, 2):
        os.dup2(log_fd, fd)
    os.close(log_fd)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True)
    to_terminal = logging.StreamHandler(terminal.err)
    to_terminal.setLevel(logging.WARNING)
    to_terminal.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.getLogger("chronos").addHandler(to_terminal)
    sys.excepthook = _both(terminal.err)
    return terminal


def _both(terminal: TextIO):
    def excepthook(kind, value, tb) -> None:
        text = "".join(traceback.format_exception(kind, value, tb))
        for stream in (sys.stderr, terminal):
            stream.write(text)
            stream.flush()

    return excepthook
