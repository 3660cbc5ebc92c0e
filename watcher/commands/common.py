"""The options every subcommand shares, the help texts' examples and exit codes, and a one-line-error parser."""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

from watcher.output import LOG_FORMATS, LOG_LEVELS, Output, configure

EXIT_CODES = """exit codes:
  0  all healthy (or the command did what it says)
  1  something at or below warn, or liquidatable
  2  a configuration, usage or connection problem: one line on stderr names the key or value
  3  some positions could not be read (reported as unknown, never as healthy)
  4  an internal error (one line; MARGIN_WATCHER_DEBUG=1 shows the traceback)"""

EXAMPLES = {
    "watcher": """examples:
  watcher init --chain ethereum --account 0xYourAddress -o my.toml
  watcher config check -c my.toml
  watcher check -c my.toml --json
  watcher run -c my.toml --log-level debug
  watcher history -c my.toml --since 7d""",
    "check": """examples:
  watcher check                      # config.toml, or the file MARGIN_WATCHER_CONFIG names
  watcher check -c my.toml --json    # the same for machines""",
    "run": """examples:
  watcher run -c my.toml                      # JSON log lines when stderr is not a terminal
  watcher run -c my.toml --log-format text    # text lines, e.g. under a terminal multiplexer""",
    "api": """examples:
  watcher api -c my.toml    # serves GET /health, /positions ... over the stored state""",
    "test-notify": """examples:
  watcher test-notify -c my.toml    # exit 0 when every channel took the message, 1 otherwise""",
    "simulate": """examples:
  watcher simulate -c my.toml --shock WETH=-20%                   # every position after ETH falls 20 %
  watcher simulate -c my.toml --shock WETH=-20% --shock WBTC=-10% --at +30d --json""",
    "demo": """examples:
  watcher demo                      # anvil, real Aave v3.0 and Morpho Blue
  watcher demo --aave 3.6 --steps 4""",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad value in one line, as every other error of the watcher is."""

    def error(self, message: str) -> NoReturn:
        """`watcher check: error: argument --log-level: invalid choice: 'loud' ...`, exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def common(p: argparse.ArgumentParser) -> None:
    """-c/--config and the output options, on every subcommand (and before it)."""
    # SUPPRESS: given before or after the subcommand, the value is the user's, and main() supplies the defaults
    g = p.add_argument_group("common options")
    g.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="the config file (default: $MARGIN_WATCHER_CONFIG, else config.toml)",
    )
    g.add_argument("--log-level", choices=tuple(LOG_LEVELS), default=argparse.SUPPRESS, help="default: info")
    g.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS,
        help="default: text when stderr is a terminal, json otherwise",
    )
    g.add_argument(
        "--no-color", action="store_true", default=argparse.SUPPRESS, help="no colour (NO_COLOR does the same)"
    )


def command(sub: Any, name: str, help: str, epilog: str = "") -> argparse.ArgumentParser:
    """A subcommand with the common options, its examples and the exit codes in its help."""
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=help[:1].upper() + help[1:] + ".",
        epilog=(epilog or EXAMPLES.get(name, "")) + "\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(p)
    return p


def output_of(args: argparse.Namespace) -> None:
    """Fill in the common options' defaults and hand the output choices to the modules that print and log."""
    if getattr(args, "config", None) is None:
        args.config = os.environ.get("MARGIN_WATCHER_CONFIG") or "config.toml"
    level = getattr(args, "log_level", None)
    fmt = getattr(args, "log_format", None)
    configure(
        Output(
            level=LOG_LEVELS[level or "info"],
            fmt=fmt,
            no_color=bool(getattr(args, "no_color", False)),
            explicit=level is not None or fmt is not None,
        )
    )
