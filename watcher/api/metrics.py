"""Prometheus metrics computed from the store at each scrape."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from watcher.api.base import SETTINGS, _finite, _raw_json
from watcher.api.freshness import _freshness
from watcher.store import Store

log = logging.getLogger("watcher.api")


class StoreCollector(Collector):
    """Metrics computed from the store at each scrape, so `watcher api` alone serves the same figures."""

    def __init__(self, store: Store, settings: dict[str, Any]) -> None:
        self.store = store
        self.settings = settings

    def collect(self) -> Iterable[Any]:
        """Position health, check duration and RPC errors per chain, outbox depth."""
        status = self.store.chain_status()
        stale = _freshness(self.settings, status, self.settings["clock"]())
        health = GaugeMetricFamily(
            "margin_watcher_position_health",
            "Health factor of a position (+Inf without debt); unknown and stale positions are left out",
            labels=["position", "protocol", "deployment", "chain", "account"],
        )
        for key, protocol, deployment, chain, account, level, h, updated_at in self.store.position_healths():
            too_old = chain in stale and (_finite(updated_at) or 0.0) < stale[chain][0]
            if level != "unknown" and not too_old:
                value = float("inf") if h is None else float(Decimal(int(h)).scaleb(-18))
                health.add_metric([key, protocol, deployment, chain, account], value)
        yield health
        duration = GaugeMetricFamily(
            "margin_watcher_check_duration_seconds", "Duration of the last check of a chain", labels=["chain"]
        )
        errors = CounterMetricFamily(
            "margin_watcher_rpc_errors", "Reads that failed (RPC errors, bad answers), per chain", labels=["chain"]
        )
        degraded = GaugeMetricFamily(
            "margin_watcher_chain_degraded",
            "1 when a chain cannot be read, or was not read for too long",
            labels=["chain"],
        )
        last_ok = GaugeMetricFamily(
            "margin_watcher_last_ok_timestamp_seconds", "Time of the last good read of a chain", labels=["chain"]
        )
        for chain in sorted(set(status) | set(stale)):
            row = status.get(chain, {})
            if _finite(row.get("last_check_seconds")) is not None:
                duration.add_metric([chain], row["last_check_seconds"])
            errors.add_metric([chain], float(row.get("rpc_errors") or 0))
            degraded.add_metric([chain], 1.0 if row.get("degraded") or chain in stale else 0.0)
            if _finite(row.get("last_ok")) is not None:
                last_ok.add_metric([chain], row["last_ok"])
        yield from (duration, errors, degraded, last_ok)
        yield GaugeMetricFamily(
            "margin_watcher_outbox_depth", "Messages waiting for delivery", value=self.store.outbox_depth()
        )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = generate_latest(request.app[SETTINGS]["registry"]).decode()
    resp = _raw_json(body, request)
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    return resp
