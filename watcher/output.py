"""How output looks, set once from the command line: log level and format, and whether to use colour."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Output:
    """The options every subcommand takes; `explicit` is whether the user asked for a log level or format."""

    level: int = logging.INFO
    fmt: str | None = None  #: None: text on a terminal, JSON otherwise
    no_color: bool = False
    explicit: bool = False

    def log_format(self) -> str:
        """text or json: as asked, else text when stderr is a terminal (JSON lines stay for daemons and tests)."""
        if self.fmt is not None:
            return self.fmt
        return "text" if _isatty(sys.stderr) else "json"

    def color(self, stream: object) -> bool:
        """Whether to colour what goes to `stream`: never with --no-color or NO_COLOR, else on a terminal."""
        if self.no_color or os.environ.get("NO_COLOR"):
            return False
        return bool(os.environ.get("FORCE_COLOR")) or _isatty(stream)


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


_current = Output()


def configure(output: Output) -> None:
    """Remember the command line's choices for the modules that print and log (called once by the CLI)."""
    global _current
    _current = output


def current() -> Output:
    """The command line's choices (defaults when none were given, as in tests that build objects directly)."""
    return _current
