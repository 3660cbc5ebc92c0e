"""Hyperliquid info API over HTTP: the meta, the mark prices and each account's state in one snapshot."""

from __future__ import annotations

import time
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import aiohttp

from watcher.adapters.base import ReadError
from watcher.adapters.http import DEFAULT_MAX_BYTES, all_answers, request_json
from watcher.adapters.hyperliquid.parse import (
    PROTOCOL,
    HyperliquidSnapshot,
    Market,
    _dec,
    _field,
    _tables,
    parse_account,
    parse_market,
)


async def _post(
    session: aiohttp.ClientSession, url: str, body: Mapping[str, Any], timeout: float, max_bytes: int
) -> Any:
    """One info request; any transport, status or JSON problem becomes a ReadError."""
    what = str(body.get("type"))
    return await request_json(
        session, "POST", url, venue=PROTOCOL, what=what, timeout=timeout, body=body, max_bytes=max_bytes
    )


async def fetch_state(
    session: aiohttp.ClientSession,
    base_url: str,
    users: list[str],
    timeout: float = 10.0,
    max_age: float = 120.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> HyperliquidSnapshot:
    """Read meta with the asset contexts (mark prices) and each user's clearinghouse state; ReadError on anything odd.

    Liquidations use the MARK price (Hyperliquid docs, Liquidations), which metaAndAssetCtxs serves as markPx, one
    context per meta.universe entry in the same order. allMids serves order-book mids: not what the venue margins at.
    """
    url = base_url.rstrip("/") + "/info"
    both, *states = await all_answers(
        _post(session, url, {"type": "metaAndAssetCtxs"}, timeout, max_bytes),
        *(_post(session, url, {"type": "clearinghouseState", "user": u}, timeout, max_bytes) for u in users),
    )
    if not (isinstance(both, list) and len(both) == 2):
        raise ReadError("hyperliquid: metaAndAssetCtxs is not a [meta, assetCtxs] pair")
    meta, ctxs = both
    universe = _field(meta, "universe", "meta")
    if not isinstance(universe, list) or not isinstance(ctxs, list) or len(ctxs) != len(universe):
        raise ReadError("hyperliquid: meta.universe or assetCtxs has the wrong shape")
    by_name = {a.get("name"): (a, c) for a, c in zip(universe, ctxs, strict=True) if isinstance(a, Mapping)}
    tables = _tables(meta)
    now = time.time()
    for u, st in zip(users, states, strict=True):
        # clearinghouseState carries the time it was computed (ms): a venue serving old state is unknown, not healthy
        stamp = st.get("time") if isinstance(st, Mapping) else None
        if stamp is not None:
            if not isinstance(stamp, int) or isinstance(stamp, bool):
                raise ReadError(f"hyperliquid: clearinghouseState({u}).time is not milliseconds: {str(stamp)[:40]!r}")
            if now - stamp / 1000 > max_age:
                raise ReadError(
                    f"hyperliquid: clearinghouseState({u}) is {now - stamp / 1000:.0f} s old (max {max_age:.0f} s): "
                    "its state is stale"
                )
    accounts = {u: parse_account(u, s) for u, s in zip(users, states, strict=True)}
    markets: dict[str, Market] = {}
    marks: dict[str, Fraction] = {}
    funding: dict[str, Fraction] = {}
    oracles: dict[str, Fraction] = {}
    for acct in accounts.values():
        for pos in acct.positions:
            if pos.coin in markets:
                continue
            if pos.coin not in by_name:
                raise ReadError(f"hyperliquid: unknown coin {pos.coin!r} (not in meta.universe)")
            asset, ctx = by_name[pos.coin]
            markets[pos.coin] = parse_market(asset, tables)
            mark = _dec(ctx, "markPx", f"assetCtxs[{pos.coin}]")
            if mark <= 0:
                raise ReadError(f"hyperliquid: assetCtxs: non-positive mark for {pos.coin}: {mark}")
            marks[pos.coin] = mark
            # funding and oraclePx only feed the time to liquidation: absent is "not known", malformed is an error
            if ctx.get("funding") is not None:
                funding[pos.coin] = _dec(ctx, "funding", f"assetCtxs[{pos.coin}]")
            if ctx.get("oraclePx") is not None:
                oracles[pos.coin] = _dec(ctx, "oraclePx", f"assetCtxs[{pos.coin}]")
    return HyperliquidSnapshot(markets, marks, accounts, int(time.time()), funding, oracles)
