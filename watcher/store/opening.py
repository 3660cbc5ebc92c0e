"""Opening the store at storage.path: every reason the path cannot hold it is one ConfigError naming the key."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from watcher.config import ConfigError
from watcher.store.core import Store


def _not_a_directory(path: Path) -> Path | None:
    """The first ancestor of `path` that exists but is not a directory, if any (/etc/hostname in /etc/hostname/x.db)."""
    for parent in reversed(path.parents):
        try:
            st = os.stat(parent)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return parent
    return None


def _nearest_existing(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path("/")


def open_store(path: str) -> Store:
    """The store at storage.path, created if need be; a path that cannot hold it is one ConfigError naming the key.

    Permission bits are checked with os.access, but root ignores them and some file systems refuse what access()
    allows, so whatever SQLite or the OS then refuse is turned into the same error by Store itself.
    """
    if not path.strip():
        raise ConfigError("storage.path: is empty: give the path of the database file")
    if "\x00" in path:
        raise ConfigError("storage.path: holds a NUL character")
    p = Path(os.path.expanduser(path))
    where = f"storage.path: {p}"
    blocker = _not_a_directory(p)
    if blocker is not None:
        raise ConfigError(f"{where}: {blocker} is a file, not a directory")
    try:
        st: os.stat_result | None = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: is a directory; give a file in it, e.g. {p / 'watcher.db'}")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: is not a regular file")
        if not os.access(p, os.W_OK):
            raise ConfigError(f"{where}: the file is not writable")
        if not os.access(p, os.R_OK):
            raise ConfigError(f"{where}: the file is not readable")
    parent = p.parent
    if parent.is_dir():
        # SQLite writes its -wal and -shm files beside the database
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: its directory {parent} is not writable")
    else:
        base = _nearest_existing(p)
        if not os.access(base, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: cannot create its directory: {base} is not writable")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot create its directory {parent}: {exc.strerror}") from None
    # access() says what the permission bits allow; root passes it, but a read-only mount or an immutable file still
    # refuses the write: try for real, so the reason is the OS's own rather than SQLite's "unable to open"
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write in its directory {parent}: {exc.strerror}") from None
    try:
        os.close(os.open(p, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot create or write the file: {exc.strerror}") from None
    try:
        return Store(p)
    except ConfigError:
        if st is None:
            p.unlink(missing_ok=True)  # ours, and empty: leave nothing behind
        raise
