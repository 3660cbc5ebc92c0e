"""Config errors: one line per problem, naming the key and the bad value (never a value that may hold a secret)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ConfigError(Exception):
    """A configuration problem, worded for the user: it names the key and the bad value."""


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if i + 1 < len(loc) and loc[i + 1] == "[key]":
            continue  # a bad table name: the message quotes it, and it may not be printable here
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "SecretRef", "function-after[_one(), SecretRef]") or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _may_hold_secret(loc: str, value: Any) -> bool:
    """RPC URLs carry API keys: never echo them, nor anything that looks like a URL."""
    return "rpc_urls" in loc or "://" in repr(value)


#: pydantic's wording, and ours: "chains.x.timeout: must be at most 600 (got 1e+308)"
_REWORDED = (
    ("Input should be less than or equal to ", "must be at most "),
    ("Input should be greater than or equal to ", "must be at least "),
    ("Input should be ", "must be "),
)


def _reworded(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    for old, new in _REWORDED:
        if msg.startswith(old):
            return new + msg.removeprefix(old)
    return msg


def format_validation_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    """One line per problem: key (under `prefix`), message, value."""
    lines = []
    for err in exc.errors():
        loc = _fmt_loc(prefix + tuple(err["loc"]))
        msg = _reworded(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key (a typo?)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error",) and not _may_hold_secret(loc, err["input"]):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(dict.fromkeys(lines))
