"""Command line: the parser and dispatch; `check`, `run`, `api`, `test-notify`, `demo` here, the rest in commands/."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from watcher import __version__
from watcher.chain import ChainClient, ChainError
from watcher.check import CheckResult, build, build_venues, check_chains, check_venues
from watcher.commands.common import EXAMPLES, EXIT_CODES, Parser, command, common, output_of
from watcher.config import Config, ConfigError, load_config, require_secrets
from watcher.model import Level
from watcher.output import current
from watcher.risk import Advice, Thresholds, advise, level_of

EXIT_OK, EXIT_WARN, EXIT_USAGE, EXIT_UNKNOWN, EXIT_INTERNAL = 0, 1, 2, 3, 4


def thresholds_of(cfg: Config) -> Thresholds:
    """The risk module's thresholds from the config's."""
    t = cfg.thresholds
    return Thresholds(warn=t.warn, critical=t.critical, target=t.target)


def make_clients(cfg: Config, chains: set[str]) -> dict[str, ChainClient]:
    """A client for each chain, built from its `chains.<name>` section (the one construction path)."""
    return {name: ChainClient.from_config(name, cfg.chains[name]) for name in sorted(chains)}


async def verify_clients(clients: dict[str, ChainClient]) -> None:
    """Check every RPC's chain id (all chains at once); warn of dead fallbacks, refuse a wrong chain."""
    results = await asyncio.gather(*(c.verify() for c in clients.values()), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
        for warning in result:
            print(f"watcher: warning: {warning}", file=sys.stderr)


async def connect(cfg: Config, chains: set[str]) -> dict[str, ChainClient]:
    """Clients for these chains, their chain ids verified; closed again when verification fails."""
    clients = make_clients(cfg, chains)
    try:
        await verify_clients(clients)
    except BaseException:
        for c in clients.values():
            await c.close()
        raise
    return clients


def advise_all(result: CheckResult, thresholds: Thresholds) -> dict[str, Advice]:
    """Advice for every position that has debt."""
    return {p.key: advise(p, thresholds.target) for p in result.positions if p.has_debt}


def exit_code(result: CheckResult, thresholds: Thresholds) -> int:
    """1 if anything is at or below warn, else 3 if anything could not be read, else 0."""
    if any(level_of(p, thresholds) is not Level.OK for p in result.positions):
        return EXIT_WARN
    return EXIT_UNKNOWN if result.unreadable else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """One pass over every configured position."""
    from watcher.ens import resolve_accounts
    from watcher.outlook import Outlook
    from watcher.render import make_console, render_table, result_json

    cfg, _ = resolve_accounts(load_config(args.config))  # ENS names among [[accounts]] become addresses
    readers = build(cfg)
    venues = build_venues(cfg)
    require_secrets(cfg, {r.chain for r in readers})

    async def once() -> tuple[CheckResult, dict[str, Any]]:
        # chains and venues at once, on one loop: the same async I/O stack as the daemon's
        clients = await connect(cfg, {r.chain for r in readers})
        try:
            chains, off_chain = await asyncio.gather(check_chains(clients, readers), check_venues(venues))
            chains.merge(off_chain)
            estimates: dict[str, Any] = {}
            if cfg.probability.enabled:
                horizons = [int(h) for h in cfg.probability.horizons]
                outlook = Outlook(horizons, cfg.probability.rounds, venues={v.chain: v for v in venues})
                estimates = await outlook.estimate(chains.positions, clients)
        finally:
            for c in clients.values():
                await c.close()
        return chains, estimates

    result, estimates = asyncio.run(once())
    thresholds = thresholds_of(cfg)
    advices = advise_all(result, thresholds)
    if args.json:
        doc = result_json(result, advices, thresholds, cfg.protocol_of)
        if cfg.probability.enabled:
            for p in doc["positions"]:
                p["liquidation_probability"] = [e.as_json() for e in estimates.get(p["id"], ())]
        print(json.dumps(doc, indent=2))
    else:
        day = {k: e for k, es in estimates.items() for e in es if e.horizon_s == 86_400}
        render_table(result, advices, thresholds, make_console(), chances=day)
    return exit_code(result, thresholds)


def channels_for(cfg: Config) -> dict[str, Any]:
    """Delivery channels from [notify]; secrets are read now, from the environment or files."""
    from watcher.notify.email import EmailChannel
    from watcher.notify.telegram import TelegramChannel

    out: dict[str, Any] = {}
    tg, em = cfg.notify.telegram, cfg.notify.email
    if tg is not None:
        out["telegram"] = TelegramChannel(
            tg.token.resolve("notify.telegram.token"),
            tg.chat_id,
            base_url=tg.base_url,
            min_interval=tg.min_interval,
            timeout=tg.timeout,
        )
    if em is not None:
        password = em.password.resolve("notify.email.password") if em.password is not None else None
        out["email"] = EmailChannel(
            em.host,
            em.port,
            em.sender,
            em.recipients,
            username=em.username,
            password=password,
            security=em.security,
            timeout=em.timeout,
        )
    if cfg.notify.apprise:  # apprise is imported only when it is used: it loads ~100 plugins
        from watcher.notify.apprise_channel import apprise_channels

        out |= apprise_channels(cfg.notify)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon: scheduled checks, alerts, delivery, until SIGINT or SIGTERM."""
    from watcher.daemon import Daemon, install_signal_handlers
    from watcher.ens import resolve_accounts, start_watching
    from watcher.logs import setup_logging
    from watcher.store import Store, open_store

    cfg = load_config(args.config)
    store = open_store(cfg.storage.path)  # a bad storage.path stops `watcher run` before any RPC, with one line
    cfg, names = resolve_accounts(cfg)  # ENS names: resolved now and every ens.refresh (a change is a warning)
    readers = build(cfg)
    venues = build_venues(cfg)
    require_secrets(cfg, {r.chain for r in readers}, notify=True, api=cfg.api.enabled)
    if cfg.api.enabled:
        _api_token(cfg)  # a bad [api] section stops `watcher run` before any check, with one line
    channels = channels_for(cfg)  # a missing or unreadable notify secret, likewise
    ws_urls = {c: cfg.chains[c].websocket(c) for c in {r.chain for r in readers}}  # and a bad ws_url
    if not channels:
        print("watcher: warning: no [notify] channel is configured; alerts are only stored", file=sys.stderr)

    async def main_async() -> None:
        clients = await connect(cfg, {r.chain for r in readers})
        setup_logging()
        daemon = Daemon(cfg, clients, readers, store, channels, venues=venues, ws_urls=ws_urls)
        stop = asyncio.Event()
        install_signal_handlers(stop)
        daemon.live["ens"] = names
        ens = start_watching(cfg, names, stop)
        runner = None
        if cfg.api.enabled:
            from watcher.api import start_api

            try:
                # Its own connection: the API's writes (acks, silences) must not share the daemon's transactions.
                runner, _ = await start_api(Store(cfg.storage.path), cfg, live=daemon.live)
            except OSError as exc:
                # Alerts matter more than the API: a busy port is logged, and the daemon runs on without it.
                logging.getLogger("watcher").error("api not started", extra={"error": exc.strerror or str(exc)})
        from watcher.sdnotify import supervise

        # after the API listens, so READY=1 (once every source's first check committed) means all of it is up
        sd_notify = asyncio.create_task(supervise(daemon, stop))
        try:
            await daemon.run(stop)
        finally:
            stop.set()
            await sd_notify
            if ens is not None:
                await ens
            if runner is not None:
                await runner.cleanup()
            for ch in channels.values():
                await ch.close()
            for c in clients.values():
                await c.close()

    asyncio.run(main_async())
    return EXIT_OK


def _api_token(cfg: Config) -> str | None:
    from watcher.api import check_bind

    token = cfg.api.token.resolve("api.token") if cfg.api.token is not None else None
    check_bind(cfg.api.host, token)
    return token


def cmd_api(args: argparse.Namespace) -> int:
    """The local HTTP API alone, over the stored state, until SIGINT or SIGTERM."""
    from watcher.api import start_api
    from watcher.daemon import install_signal_handlers
    from watcher.logs import setup_logging
    from watcher.store import open_store

    cfg = load_config(args.config)
    require_secrets(cfg, api=True)
    _api_token(cfg)
    store = open_store(cfg.storage.path)
    setup_logging()

    async def main_async() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        runner, _ = await start_api(store, cfg)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
        logging.getLogger("watcher").info("stopped")

    asyncio.run(main_async())
    return EXIT_OK


def cmd_test_notify(args: argparse.Namespace) -> int:
    """Send a test message through every configured channel and report each result."""
    import time

    from watcher.notify.base import Message

    cfg = load_config(args.config)
    require_secrets(cfg, notify=True)
    channels = channels_for(cfg)
    if not channels:
        print("watcher: error: no [notify] channel is configured", file=sys.stderr)
        return EXIT_USAGE

    async def send_all() -> dict[str, str]:
        msg = Message(f"test-{int(time.time())}", "Margin Watcher test", "This is a test message from Margin Watcher.")
        results = {}
        for name, ch in channels.items():
            try:
                await ch.send(msg)
                results[name] = "ok"
            except Exception as exc:  # each channel's own failure is the report, not a crash
                results[name] = f"FAILED: {exc}"
            finally:
                await ch.close()
        return results

    results = asyncio.run(send_all())
    for name, outcome in results.items():
        print(f"{name}: {outcome}")
    return EXIT_OK if all(v == "ok" for v in results.values()) else EXIT_WARN


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the embedded demo on a local chain with real Aave v3 contracts."""
    from watcher.demo import run_demo

    return run_demo(chain=args.chain, version=args.aave, steps=args.steps, everything=not args.only_real)


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    from watcher.commands import add_commands

    p = Parser(
        prog="watcher",
        description="Warns before your DeFi positions are liquidated.",
        epilog=EXAMPLES["watcher"] + "\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"margin-watcher {__version__}")
    common(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = command(sub, "check", "check every configured position once")
    c.add_argument("--json", action="store_true", help="print JSON instead of tables")
    c.set_defaults(func=cmd_check)
    from watcher.simulate import add_parser as add_simulate

    add_simulate(sub)
    r = command(sub, "run", "run the daemon: scheduled checks, alerts by Telegram and email")
    r.set_defaults(func=cmd_run)
    a = command(sub, "api", "serve the local HTTP API over the stored state, without checking")
    a.set_defaults(func=cmd_api)
    t = command(sub, "test-notify", "send a test message through every configured channel")
    t.set_defaults(func=cmd_test_notify)
    d = command(sub, "demo", "local chain, real Aave v3, falling prices: no network or secrets needed")
    d.add_argument("--chain", choices=("anvil", "eth-tester"), default="anvil")
    d.add_argument("--aave", choices=("3.0", "3.6"), default="3.0", help="Aave version to deploy")
    d.add_argument("--steps", type=int, default=8, help="price steps to show (at most 8)")
    d.add_argument(
        "--only-real", action="store_true", help="skip the closing check of every protocol (stand-ins included)"
    )
    d.set_defaults(func=cmd_demo)
    add_commands(sub, command)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `watcher` console script."""
    args = parser().parse_args(argv)
    output_of(args)
    if current().explicit:
        from watcher.logs import setup_logging

        setup_logging()  # asked for: every command logs so (run and api set it up again, the same way)
    try:
        return int(args.func(args))
    except (ConfigError, ChainError) as exc:
        print(f"watcher: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: one line, not a traceback that could carry secrets
        if os.environ.get("MARGIN_WATCHER_DEBUG"):
            raise
        print(
            f"watcher: internal error: {type(exc).__name__}; rerun with MARGIN_WATCHER_DEBUG=1 for details",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
