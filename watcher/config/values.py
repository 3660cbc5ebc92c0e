"""The config's value types: addresses, health numbers, names, secrets by reference, and the strict base model."""

from __future__ import annotations

import os
import re
import stat
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

from eth_utils import is_checksum_address, is_hex_address, to_checksum_address
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator

from watcher.config.errors import ConfigError
from watcher.model import WAD


def evm_address(value: Any) -> str:
    """An EVM address, checksummed; a mixed-case one must pass its EIP-55 checksum (ValueError says what is wrong)."""
    if isinstance(value, str) and "://" in value:
        raise ValueError("a URL is not an address")  # and it may hold an API key: do not echo it
    if not isinstance(value, str) or not is_hex_address(value):
        raise ValueError(f"{value!r} is not a 20-byte hex address")
    if value != value.lower() and value[2:] != value[2:].upper() and not is_checksum_address(value):
        raise ValueError(f"{value!r} fails its EIP-55 checksum (expected {to_checksum_address(value)})")
    return to_checksum_address(value)


def _health(value: Any) -> int:
    """A health factor written as 1.25 or "1.25", held as an exact WAD integer."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not d.is_finite() or d <= 0:
        raise ValueError(f"{value!r} must be a positive number")
    return int(d * WAD)


Address = Annotated[str, BeforeValidator(evm_address)]


def _market_id(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        raise ValueError(f"{value!r} is not a market id (0x and 64 hex digits)")
    return value.lower()


Health = Annotated[int, BeforeValidator(_health)]
MarketId = Annotated[str, BeforeValidator(_market_id)]  #: a Morpho Blue market id: 32 bytes as 0x-hex, lower-cased

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _shown(value: str, limit: int = 40) -> str:
    """A user's string, quoted on one line and cut short: fit for an error message."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _name(value: str) -> str:
    # chain, venue and deployment names go into alert ids and API URLs (`/positions/{key}`): keep them URL-safe
    if not _NAME.fullmatch(value) or not value.strip("."):
        raise ValueError(
            f"{_shown(value)} is not a valid name: use 1 to 64 letters, digits, '_', '.' or '-' "
            "(names go into alert ids and URLs)"
        )
    return value


Name = Annotated[str, AfterValidator(_name)]


class Strict(BaseModel):
    """A config table: unknown keys are errors (typos), values are frozen, inf and nan refused."""

    # inf and nan are never meaningful here (an `interval = inf` once reached the scheduler as an internal error)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: Upper bounds for durations, so a typo like 1e308 is a config error rather than a request that never times out.
MAX_TIMEOUT = 600.0
MAX_INTERVAL = 86_400.0
#: Default cap on one JSON-RPC answer: a 50M-gas eth_call returns at most ~5 MB (memory gas), ~10 MB as hex.
DEFAULT_MAX_RESPONSE_BYTES = 16_000_000


class SecretRef(Strict):
    """A secret given by indirection: an environment variable or a file; never written in the config."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def resolve(self, where: str) -> str:
        """The secret's value; the error names where it was asked for, never the value."""
        if self.env is not None:
            try:
                val = os.environ.get(self.env)
            except ValueError:  # a NUL in the name
                val = None
            if not val:
                raise ConfigError(f"{where}: environment variable {self.env} is not set")
            return val.strip()
        return read_secret_file(str(self.file), where)


#: A secret is a token or a password: anything larger is the wrong file.
MAX_SECRET_BYTES = 64 * 1024
#: A config file is a few kilobytes; this bounds what a wrong path (a device, a log) can make us read.
MAX_CONFIG_BYTES = 1024 * 1024


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def read_secret_file(name: str, where: str) -> str:
    """A secret file's text, stripped; every problem is one ConfigError naming `where` and the path, never the content.

    Only a regular file of at most 64 KiB is read: a FIFO, a device or a directory could block or never end.
    """
    if not name or "\x00" in name:
        raise ConfigError(f"{where}: give the path of the secret file")
    path = Path(os.path.expanduser(name))
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: secret file {path} is {_file_kind(st.st_mode)}, not a regular file")
    if st.st_size > MAX_SECRET_BYTES:
        raise ConfigError(f"{where}: secret file {path} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        # O_NONBLOCK: a FIFO swapped in after the stat above must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: secret file {path} is {_file_kind(st.st_mode)}, not a regular file")
        chunks, size = [], 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_SECRET_BYTES:  # it grew after the stat
        raise ConfigError(f"{where}: secret file {path} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        # neither the byte nor its offset: both are part of the secret
        raise ConfigError(f"{where}: secret file {path} is not UTF-8 text") from None
    value = text.strip()
    if not value:
        raise ConfigError(f"{where}: secret file {path} is empty")
    return value
