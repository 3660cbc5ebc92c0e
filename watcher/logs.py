"""Logs on stderr: one JSON object per line (daemons, pipes) or a short coloured text line (a terminal)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from watcher.output import current

_SKIP = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra` fields."""
    return {k: v for k, v in vars(record).items() if k not in _SKIP}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    _skip = _SKIP

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON."""
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, default=str)


_LEVEL_COLOR = {"debug": "2", "info": "32", "warning": "33", "error": "31", "critical": "1;31"}


class TextFormatter(logging.Formatter):
    """`12:00:01 info  watcher: started chains=['local']`: for a person at a terminal."""

    def __init__(self, color: bool) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text."""
        level = record.levelname.lower()
        shown = f"{level:<7}"
        if self.color:
            shown = f"\x1b[{_LEVEL_COLOR.get(level, '0')}m{shown}\x1b[0m"
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {shown} {record.name}: "
        line += record.getMessage() + (f" {extra}" if extra else "")
        if record.exc_info:
            line += " exc=" + self.formatException(record.exc_info).splitlines()[-1]
        return line


def setup_logging(level: int | None = None) -> None:
    """Logs on stderr at the command line's level and format; apscheduler's per-run lines only at debug."""
    out = current()
    level = out.level if level is None else level
    handler = logging.StreamHandler()
    if out.log_format() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(out.color(sys.stderr)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # "Running job ... executed successfully" every hour says nothing a user acts on
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
