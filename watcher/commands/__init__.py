"""Subcommands beside cli.py's: `watcher config check`, `watcher init` and `watcher history`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

MakeCommand = Callable[..., argparse.ArgumentParser]


def add_commands(sub: Any, command: MakeCommand) -> None:
    """Add this package's subcommands to the `watcher` parser; `command` makes one with the common options."""
    from watcher.commands import config_check, history, init

    config_check.add(sub, command)
    init.add(sub, command)
    history.add(sub, command)
