"""`watcher config check`: load and validate a config, resolve its deployments and secrets, without any network."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from watcher.config import Config, ConfigError, load_config, require_secrets
from watcher.config.secrets import secret_refs

EPILOG = """examples:
  watcher config check                 # config.toml, or the file MARGIN_WATCHER_CONFIG names
  watcher config check -c my.toml      # exit 0 and a summary, or exit 2 and every problem, one per line

It reads the file, resolves every deployment against protocols/, checks that every secret it names (environment
variables, files) can be read, and never connects to a node, a venue or a notification service."""


def add(sub: Any, command: Any) -> None:
    """`watcher config check`."""
    from watcher.commands.common import common

    group = sub.add_parser("config", help="work with the config file: `watcher config check`")
    common(group)  # `watcher config -c F check` as well as `watcher config check -c F`
    inner = group.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    c = command(inner, "check", "validate the config without connecting to anything", EPILOG)
    c.set_defaults(func=cmd_config_check)


def _problems(exc: ConfigError, path: str) -> list[str]:
    """A ConfigError's problems, one each (load_config joins them with "; " after the file name)."""
    text = str(exc).removeprefix(f"{path}: ")
    return [part for part in text.split("; ") if part]


def check(cfg: Config) -> tuple[list[str], list[str]]:
    """(problems, summary lines) of a parsed config: deployments, venues, secrets and URLs, all without I/O."""
    from watcher.api import check_bind
    from watcher.check import build_readers, build_venues
    from watcher.config import resolve_deployments, resolve_venues

    problems: list[str] = []
    deployments = []
    try:
        deployments = resolve_deployments(cfg)
        build_readers(cfg, deployments)
    except ConfigError as exc:
        problems.append(str(exc))
    venues = []
    try:
        build_venues(cfg)
        venues = resolve_venues(cfg)
    except ConfigError as exc:
        problems.append(str(exc))
    chains = {d.chain for d in deployments} if deployments else set(cfg.chains)
    secrets_ok = True
    try:
        require_secrets(cfg, chains, notify=True, api=True)
    except ConfigError as exc:
        problems.append(str(exc))
        secrets_ok = False
    if secrets_ok:  # with every secret readable, what they hold can be checked too (never shown)
        for name in sorted(chains):
            try:
                cfg.chains[name].urls(name)
                cfg.chains[name].websocket(name)
            except ConfigError as exc:
                problems.append(str(exc))
        try:
            check_bind(cfg.api.host, cfg.api.token.resolve("api.token") if cfg.api.token is not None else None)
        except ConfigError as exc:
            problems.append(str(exc))
    summary = _summary(cfg, deployments, venues, chains)
    return problems, summary


def _summary(cfg: Config, deployments: list[Any], venues: list[Any], chains: set[str]) -> list[str]:
    def listing(items: list[str]) -> str:
        return ", ".join(items) if items else "none"

    chain_text = [
        f"{n} (chain id {c.chain_id}, {len(c.rpc_urls)} RPC URL{'s' if len(c.rpc_urls) != 1 else ''})"
        for n, c in cfg.chains.items()
    ]
    dep_text = [
        f"{d.name} on {d.chain}" + (f" ({d.market})" if d.market else "") + f" at {d.address}" for d in deployments
    ]
    accounts = [a.label or a.address for a in cfg.accounts]
    channels = [name for name in ("telegram", "email") if getattr(cfg.notify, name) is not None]
    secrets = [
        f"{ref.env or ref.file} ({where}): {'set' if _readable(ref, where) else 'NOT SET'}"
        for where, ref in secret_refs(cfg, chains, notify=True, api=True)
    ]
    return [
        f"chains:       {listing(chain_text)}",
        f"deployments:  {listing(dep_text)}",
        f"venues:       {listing([f'{v.name} ({v.adapter}, {len(v.accounts)} accounts)' for v in venues])}",
        f"accounts:     {len(accounts)}" + (f" ({', '.join(accounts)})" if accounts else ""),
        f"channels:     {listing(channels)}" + ("" if channels else " (alerts are only stored)"),
        f"secrets:      {listing(secrets)}",
        f"storage:      {cfg.storage.path}",
        f"api:          {'http://' + cfg.api.host + ':' + str(cfg.api.port) if cfg.api.enabled else 'disabled'}",
    ]


def _readable(ref: Any, where: str) -> bool:
    try:
        ref.resolve(where)
    except ConfigError:
        return False
    return True


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate the config: exit 0 with a summary, or 2 with each problem on its own line."""
    path = str(args.config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        problems, summary = _problems(exc, path), []
    else:
        problems, summary = check(cfg)
    if problems:
        for problem in problems:
            print(f"watcher: error: {path}: {problem}", file=sys.stderr)
        return 2
    print(f"{path}: valid")
    for line in summary:
        print(f"  {line}")
    return 0
