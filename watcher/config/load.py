"""Reading a config file: bounded, decoded, parsed as TOML and validated; every error one line naming the key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from watcher.config.errors import ConfigError, format_validation_error
from watcher.config.models import Config
from watcher.config.options import option_problems
from watcher.config.values import MAX_CONFIG_BYTES

#: a database path that wins over storage.path (empty: not set): where systemd's StateDirectory or a container's
#: volume keeps state, without editing the config file
DB_ENV = "MARGIN_WATCHER_DB"


def parse_config(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document."""
    problems = []
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems.append(format_validation_error(exc))
    problems += option_problems(data)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; errors carry the file name."""
    p = Path(path)
    try:
        # bounded, so a wrong path (/dev/zero, a log) is an error rather than all of memory; pipes stay allowed
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        cfg = parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    db = os.environ.get(DB_ENV, "")
    if db:
        cfg = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"path": db})})
    return cfg
