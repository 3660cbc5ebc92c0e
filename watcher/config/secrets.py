"""Every secret a command needs, checked at once: a user missing three variables hears of all three in one line."""

from __future__ import annotations

from collections.abc import Iterable

from watcher.config.errors import ConfigError
from watcher.config.models import Config
from watcher.config.values import SecretRef


def _refs(cfg: Config, chains: Iterable[str], notify: bool, api: bool) -> list[tuple[str, SecretRef]]:
    out: list[tuple[str, SecretRef]] = []
    for name in sorted(set(chains)):
        chain = cfg.chains[name]
        out += [(f"chains.{name}.rpc_urls[{i}]", u) for i, u in enumerate(chain.rpc_urls) if isinstance(u, SecretRef)]
        if isinstance(chain.ws_url, SecretRef):
            out.append((f"chains.{name}.ws_url", chain.ws_url))
    if notify:
        tg, em = cfg.notify.telegram, cfg.notify.email
        if tg is not None:
            out.append(("notify.telegram.token", tg.token))
        if em is not None and em.password is not None:
            out.append(("notify.email.password", em.password))
        out += [(f"notify.apprise[{i}].url", a.url) for i, a in enumerate(cfg.notify.apprise)]
    if api and cfg.api.token is not None:
        out.append(("api.token", cfg.api.token))
    return out


def require_secrets(cfg: Config, chains: Iterable[str] = (), *, notify: bool = False, api: bool = False) -> None:
    """Raise one ConfigError naming every secret of these chains (and notify, api) that cannot be read.

    Unset variables are grouped into one clause, so the line reads as a list to export; the values are never shown.
    """
    unset: list[str] = []
    other: list[str] = []
    for where, ref in _refs(cfg, chains, notify, api):
        try:
            ref.resolve(where)
        except ConfigError as exc:
            if ref.env is not None:
                unset.append(f"{ref.env} ({where})")
            else:
                other.append(str(exc))
    parts = []
    if unset:
        word = "variable" if len(unset) == 1 else "variables"
        parts.append(f"environment {word} not set: " + ", ".join(unset))
    if parts or other:
        raise ConfigError("; ".join(parts + other))


def secret_refs(
    cfg: Config, chains: Iterable[str] = (), *, notify: bool = False, api: bool = False
) -> list[tuple[str, SecretRef]]:
    """(key, reference) of every secret these chains (and notify, api) need, for a report that names them."""
    return _refs(cfg, chains, notify, api)
