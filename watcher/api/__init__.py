"""The local HTTP API (aiohttp): health, positions, history, alerts, silences and Prometheus metrics over the store.

The rooms: base (keys, limits, parsing), security (who may ask), freshness (stale sources), routes (handlers),
metrics, openapi, guard (slow clients); this module builds and serves the app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from watcher.api.base import MAX_BODY, SETTINGS, STORE, parse_time, whole_number
from watcher.api.dashboard import index, position_page
from watcher.api.freshness import _bounds
from watcher.api.guard import GUARD, connections, install
from watcher.api.metrics import StoreCollector, metrics
from watcher.api.openapi import OPENAPI, openapi
from watcher.api.routes import (
    ack,
    add_silence,
    alerts,
    delete_silence,
    health,
    history,
    list_silences,
    position,
    positions,
)
from watcher.api.security import bodies, check_bind, errors, guard, is_loopback, secrets_of
from watcher.api.simulate import simulate_position
from watcher.config import Config
from watcher.store import Store

log = logging.getLogger("watcher.api")


def make_app(
    store: Store,
    cfg: Config,
    *,
    token: str | None,
    host: str,
    port: int,
    live: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The aiohttp application over a store; `port` is the bound port (what Host headers must name)."""
    # `live`: a dict the daemon in this process keeps up to date, {"storage": {"ok", "error", "since"}}.
    check_bind(host, token)
    # Outermost first: connection bookkeeping sees the final response; bodies are read before any handler.
    app = web.Application(middlewares=[connections, errors, bodies, guard], client_max_size=MAX_BODY)
    registry = CollectorRegistry(auto_describe=False)
    settings: dict[str, Any] = {
        "token": token,
        "token_for_reads": not is_loopback(host),
        "hosts": None,
        "secrets": secrets_of(cfg, token),
        "registry": registry,
        "live": live,
        "clock": clock,
        "started": clock(),
        "bounds": _bounds(cfg),
        "config": cfg,  # the dashboard draws each position's thresholds
        "limits": {
            "header_timeout": cfg.api.header_timeout,
            "body_timeout": cfg.api.body_timeout,
            "max_connections": cfg.api.max_connections,
        },
    }
    registry.register(StoreCollector(store, settings))
    app[STORE] = store
    app[SETTINGS] = settings
    app[GUARD] = {}
    set_port(app, host, port)
    app.router.add_get("/health", health)
    app.router.add_get("/positions", positions)
    app.router.add_get("/positions/{id}", position)
    app.router.add_get("/positions/{id}/history", history)
    app.router.add_get("/positions/{id}/simulate", simulate_position)
    app.router.add_get("/alerts", alerts)
    app.router.add_post("/alerts/{id}/ack", ack)
    app.router.add_get("/silences", list_silences)
    app.router.add_post("/silences", add_silence)
    app.router.add_delete("/silences/{id}", delete_silence)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/", index)
    app.router.add_get("/ui/positions/{id}", position_page)
    return app


def set_port(app: web.Application, host: str, port: int) -> None:
    """The Host values accepted: the bind address (and localhost names on loopback) with this port."""
    if host in ("0.0.0.0", "::", ""):
        # Any name may reach a wildcard bind; the token every request needs there is what protects it.
        app[SETTINGS]["hosts"] = None
        return
    names = {host, f"[{host}]" if ":" in host else host}
    if is_loopback(host):
        names |= {"localhost", "127.0.0.1", "[::1]"}
    app[SETTINGS]["hosts"] = {f"{n}:{port}".lower() for n in names}


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the app on host:port; returns the runner (call `cleanup()` to stop) and the bound port."""
    runner = web.AppRunner(app, access_log=None)  # request lines are not needed, and keep logs to JSON lines
    await runner.setup()
    install(app, runner, app[SETTINGS]["limits"])
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = server.sockets[0].getsockname()[1]
    set_port(app, host, bound)
    log.info("api listening", extra={"host": host, "port": bound})
    return runner, bound


async def start_api(store: Store, cfg: Config, live: dict[str, Any] | None = None) -> tuple[web.AppRunner, int]:
    """Build and start the API from [api]; a ConfigError for a non-loopback bind without a token."""
    # `live`: what the daemon in this process reports about itself (see make_app); None under `watcher api`.
    token = cfg.api.token.resolve("api.token") if cfg.api.token is not None else None
    app = make_app(store, cfg, token=token, host=cfg.api.host, port=cfg.api.port, live=live)
    return await serve(app, cfg.api.host, cfg.api.port)


__all__ = ["OPENAPI", "check_bind", "make_app", "parse_time", "serve", "start_api", "whole_number"]
