"""Who may ask the API what: loopback binds, the bearer token, Host headers, body limits and error answers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import ipaddress
import logging
import sqlite3

from aiohttp import web

from watcher.api.base import _OWN_MESSAGES, SETTINGS, BodyTimeout, BodyTooLarge, Handler, _error
from watcher.config import Config, ConfigError

log = logging.getLogger("watcher.api")


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a bind address other than loopback without a token: anyone on the network could read the positions."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"api.host: {host} is not a loopback address; set api.token to serve the API there")


def secrets_of(cfg: Config, token: str | None) -> list[str]:
    """Every secret value the config can reach, to scrub from responses whatever path they took."""
    out = [token] if token else []
    for name, chain in cfg.chains.items():
        with contextlib.suppress(ConfigError):  # an unset variable holds no secret to leak
            out.extend(chain.urls(name))
    refs = []
    if cfg.notify.telegram is not None:
        refs.append(cfg.notify.telegram.token)
    if cfg.notify.email is not None and cfg.notify.email.password is not None:
        refs.append(cfg.notify.email.password)
    for ref in refs:
        with contextlib.suppress(ConfigError):
            out.append(ref.resolve("notify"))
    return [s for s in out if len(s) >= 6]


# --- middlewares


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as a JSON body; an unexpected exception is a bare 500, logged by type only (no traceback)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if isinstance(exc, _OWN_MESSAGES) else exc.reason
        return _error(
            request, exc.status, message or exc.reason, {k: v for k, v in exc.headers.items() if k == "Allow"}
        )
    except sqlite3.OperationalError as exc:
        # Locked, unreadable, disk I/O: the state cannot be read now, which is not a bug in the request.
        log.error("api storage failed", extra={"path": request.path, "error": str(exc)[:200]})
        return _error(request, 503, f"storage unavailable ({str(exc)[:200]})")
    except Exception as exc:
        log.error("api handler failed", extra={"path": request.path, "error": type(exc).__name__})
        return _error(request, 500, "internal error")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """DNS rebinding (Host must name the bind address) and the bearer token for writes and non-loopback binds."""
    settings = request.app[SETTINGS]
    if settings["hosts"] is not None and request.headers.get("Host", "").lower() not in settings["hosts"]:
        return _error(request, 421, "Host header does not match the API's address")
    token = settings["token"]
    if request.method not in ("GET", "HEAD") or settings["token_for_reads"]:
        if token is None:
            return _error(request, 403, "writes need api.token to be configured")
        given = request.headers.get("Authorization", "")
        # A browser's own login prompt carries the token for the dashboard (and the CSV links on its pages). Reads
        # only: a browser replays Basic credentials on its own, so they must never authorise a write.
        if request.method in ("GET", "HEAD") and (password := basic_password(given)) is not None:
            given = f"Bearer {password}"
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            challenge = 'Basic realm="Margin Watcher", charset="UTF-8"' if is_page(request) else "Bearer"
            return _error(request, 401, "missing or wrong bearer token", {"WWW-Authenticate": challenge})
    return await handler(request)


def is_page(request: web.Request) -> bool:
    """A read of a dashboard page: a 401 there asks the browser for the token by HTTP Basic auth."""
    return request.method in ("GET", "HEAD") and (request.path == "/" or request.path.startswith("/ui/"))


def basic_password(header: str) -> str | None:
    """The password of an `Authorization: Basic` header (any user name), or None for any other header."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


@web.middleware
async def bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read any request body whole, at most MAX_BODY bytes within api.body_timeout, before a handler sees it."""
    if request.can_read_body:
        limit = request.client_max_size
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(f"body: {request.content_length} bytes is more than the {limit} allowed")
        timeout = request.app[SETTINGS]["limits"]["body_timeout"]
        try:
            async with asyncio.timeout(timeout):
                await request.read()  # kept by aiohttp: request.json() parses these bytes
        except TimeoutError:
            raise BodyTimeout(f"body: not received within {timeout:g} s (api.body_timeout)") from None
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(f"body: more than the {limit} bytes allowed") from None
    return await handler(request)
