"""`watcher run`: scheduled checks per chain, alert rules, one transaction per check, and the outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher.adapters.base import Reader, VenueReader
from watcher.alerts import AlertState, Event, Observation, Rules, Severity, evaluate, raw_level
from watcher.chain import ChainClient
from watcher.check import CheckResult, check_venues, run_check
from watcher.config import Config
from watcher.messages import chain_message, position_message
from watcher.model import BPS, Position
from watcher.notify.base import Channel
from watcher.notify.relay import Relay
from watcher.render import position_json
from watcher.risk import Advice, Thresholds, advise
from watcher.store import AlertRecord, HistoryRow, Store

log = logging.getLogger("watcher")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    _skip = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON."""
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in self._skip})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, default=str)


def setup_logging(level: int = logging.INFO) -> None:
    """Structured logs on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def rules_from(cfg: Config) -> Rules:
    """The global alert rules."""
    a, t = cfg.alerts, cfg.thresholds
    return Rules(
        warn=t.warn,
        critical=t.critical,
        clear_margin=a.clear_margin,
        confirm=(a.confirm_warn, a.confirm_critical, a.confirm_liquidatable),
        repeat=(a.repeat_warn, a.repeat_critical, a.repeat_liquidatable),
        fall_drop=a.falling_drop,
        fall_window=a.falling_window,
    )


class Daemon:
    """Checks, evaluates and notifies; every check's outcome is one SQLite transaction."""

    def __init__(
        self,
        cfg: Config,
        clients: dict[str, ChainClient],
        readers: Sequence[Reader],
        store: Store,
        channels: dict[str, Channel],
        *,
        clock: Callable[[], float] = time.time,
        venues: Sequence[VenueReader] = (),
    ) -> None:
        self.cfg = cfg
        self.clients = clients
        self.readers = list(readers)
        self.venues = {v.chain: v for v in venues}
        self._session: Any = None  #: the aiohttp session venues are read through, made in run()
        self.store = store
        self.channels = channels
        self.clock = clock
        self.rules = rules_from(cfg)
        fallback = {"telegram": "email", "email": "telegram"} if len(channels) == 2 else {}
        self.relay = Relay(store.db, channels, fallback=fallback, clock=clock)
        self.states = store.alert_states()
        self.status = store.chain_status()
        self.last_history = store.last_history()
        self.advised = store.advice_docs()  #: per position: (time, liquidation prices, advice) as last computed
        self.checks = 0
        self._relay_lock = asyncio.Lock()

    def rules_for(self, p: Position) -> Rules:
        """Global rules with the most specific matching override applied."""
        best, score = None, -1
        for o in self.cfg.alerts.overrides:
            if o.account != p.account or (o.protocol not in (None, p.protocol)) or (o.chain not in (None, p.chain)):
                continue
            s = (o.protocol is not None) + (o.chain is not None)
            if s > score:
                best, score = o, s
        if best is None:
            return self.rules
        return replace(self.rules, warn=best.warn or self.rules.warn, critical=best.critical or self.rules.critical)

    # --- one check of one chain (runs in a worker thread)

    def read(self, chain: str) -> CheckResult:
        """Read every position on the chain (network only, no database: safe in a worker thread)."""
        readers = [r for r in self.readers if r.chain == chain]
        return run_check({chain: self.clients[chain]}, readers)

    def check_chain(self, chain: str) -> CheckResult:
        """Read, then process: one whole check, in the calling thread."""
        result = self.read(chain)
        self.process(chain, result)
        return result

    def process(self, chain: str, result: CheckResult) -> None:
        """Evaluate every position and commit state, alerts, outbox rows and history in one transaction."""
        now = self.clock()
        alerts: list[AlertRecord] = []
        states: dict[str, AlertState] = {}
        history: list[HistoryRow] = []
        rows: list[dict[str, Any]] = []
        muted: set[str] = set()
        silenced_accounts, silenced_positions = self.store.silenced(now)
        target = self.cfg.thresholds.target
        for p in result.positions:
            rules = self.rules_for(p)
            state = self.states.get(p.key, AlertState())
            new, events = evaluate(p.key, state, Observation(now, p.health, p.liquidatable), rules)
            if new != state:
                states[p.key] = new
            previous = self.last_history.get(p.key)
            level = raw_level(Observation(now, p.health, p.liquidatable), rules).name.lower()
            advice: Advice | None = None
            fresh = self.advised.get(p.key)
            # Advice costs milliseconds per position: compute it when it matters, else reuse the last for a while.
            if p.has_debt and (
                events or level != "ok" or not fresh or now - fresh[0] >= self.cfg.storage.history_every
            ):
                try:
                    advice = advise(p, target)
                except Exception:  # advice is a convenience: its failure must not cost the alert or the commit
                    log.exception("advice failed", extra={"position": p.key})
            if events:
                for ev in events:
                    alerts.append(self._position_alert(p, ev, advice, previous[1] if previous else None))
                    if p.key in silenced_positions or p.account in silenced_accounts:
                        muted.add(ev.alert_id)
            try:
                rows.append(self._position_row(p, rules, advice, now))
            except Exception:  # one position's document must not stop the others' state and alerts
                log.exception("position document failed", extra={"position": p.key})
            if self._history_due(previous, now, p.health, level):
                history.append(
                    HistoryRow(
                        p.key, now, p.block.number, p.block.hash, p.health, level, p.total_collateral, p.total_debt
                    )
                )
                self.last_history[p.key] = (now, p.health, level)
        status = self._chain_health(chain, result, now, alerts)
        unknown = [
            f"{u.protocol}:{u.chain}:{a.address}" for u in result.unreadable if u.chain == chain for a in u.accounts
        ]
        self.store.commit(
            now=now,
            states=states,
            alerts=alerts,
            channels=list(self.channels),
            history=history,
            chain_status=status,
            positions=rows,
            muted=muted,
            unknown=unknown,
        )
        self.states.update(states)
        self.checks += 1
        log.info(
            "check",
            extra={
                "chain": chain,
                "positions": len(result.positions),
                "unknown": sum(len(u.accounts) for u in result.unreadable),
                "alerts": len(alerts),
                "block": result.blocks[chain].number if chain in result.blocks else None,
                "seconds": round(result.seconds, 4),
            },
        )

    def _position_row(self, p: Position, rules: Rules, advice: Advice | None, now: float) -> dict[str, Any]:
        """The positions-table row: the JSON document the API serves, with its level under this position's rules."""
        doc = position_json(p, advice, Thresholds(rules.warn, rules.critical, self.cfg.thresholds.target))
        if advice is not None:
            self.advised[p.key] = (now, doc["liquidation_prices"], doc["advice"])
        elif not p.has_debt:
            self.advised.pop(p.key, None)
        at, lps, adv = self.advised.get(p.key, (None, [], None))
        doc |= {"liquidation_prices": lps, "advice": adv, "advice_at": at, "updated_at": now}
        return {
            "position": p.key,
            "protocol": p.protocol,
            "chain": p.chain,
            "account": p.account,
            "label": p.label,
            "level": doc["level"],
            "health": None if p.health is None else str(p.health),
            "doc": json.dumps(doc),
            "updated_at": now,
            "block": p.block.number,
        }

    def _position_alert(self, p: Position, ev: Event, advice: Any, previous: int | None) -> AlertRecord:
        subject, text = position_message(p, ev, advice, previous, self.cfg.thresholds.target)
        return AlertRecord(ev.alert_id, p.key, ev.kind, ev.level.name.lower(), p.health, ev.at, subject, text)

    def _history_due(
        self, previous: tuple[float, int | None, str] | None, now: float, health: int | None, level: str
    ) -> bool:
        if previous is None:
            return True
        at, old, old_level = previous
        if level != old_level or now - at >= self.cfg.storage.history_every:
            return True
        if old is None or health is None:
            return old != health
        return abs(health - old) * BPS > self.cfg.storage.history_change_bps * old

    def _chain_health(self, chain: str, result: CheckResult, now: float, alerts: list[AlertRecord]) -> dict[str, Any]:
        """One "degraded" alert when a chain cannot be read (or part of it), one "recovered" when it can again."""
        reasons = [u.reason for u in result.unreadable if u.chain == chain]
        was = self.status.get(chain, {})
        degraded = bool(reasons)
        row: dict[str, Any]
        if degraded and not was.get("degraded"):
            episode = int(was.get("episodes", 0) or 0) + 1
            unknown = sum(len(u.accounts) for u in result.unreadable if u.chain == chain)
            read = sum(1 for p in result.positions if p.chain == chain)
            subject, text = chain_message(chain, True, reasons[0], unknown, read)
            alerts.append(
                AlertRecord(
                    f"chain:{chain}#{episode}:degraded",
                    f"chain:{chain}",
                    "degraded",
                    "unknown",
                    None,
                    now,
                    subject,
                    text,
                )
            )
            row = {"degraded": 1, "since": now, "reason": reasons[0]}
            log.warning("degraded", extra={"chain": chain, "reason": reasons[0]})
        elif not degraded and was.get("degraded"):
            episode = self._episodes(chain)
            subject, text = chain_message(chain, False, "")
            alerts.append(
                AlertRecord(
                    f"chain:{chain}#{episode}:recovered", f"chain:{chain}", "recovered", "ok", None, now, subject, text
                )
            )
            row = {"degraded": 0, "since": now, "reason": ""}
            log.info("recovered", extra={"chain": chain})
        else:
            row = {"degraded": int(degraded), "since": was.get("since", now), "reason": reasons[0] if reasons else ""}
        if not degraded:
            row |= {"last_ok": now, "last_block": result.blocks[chain].number if chain in result.blocks else None}
        # Each unreadable result is a read that failed (an RPC error, a garbage answer, a reverting feed).
        errors = len(reasons)
        row |= {"last_check_seconds": result.seconds, "rpc_errors": int(was.get("rpc_errors") or 0) + errors}
        self.status[chain] = {**was, **row}
        return {chain: row}

    def _episodes(self, chain: str) -> int:
        return self.store.db.execute(
            "select count(*) from alerts where position = ? and kind = 'degraded'", [f"chain:{chain}"]
        ).fetchone()[0]

    async def prune(self) -> None:
        """Drop history older than the retention (a coroutine: the scheduler runs it on the loop's thread)."""
        removed = self.store.prune_history(self.clock() - self.cfg.storage.retention_days * 86400)
        if removed:
            log.info("pruned history", extra={"rows": removed})

    # --- the asyncio side

    async def relay_now(self) -> None:
        """Deliver what is due; one relay pass at a time."""
        async with self._relay_lock:
            await self.relay.run_once()

    async def run_chain(self, chain: str) -> None:
        """The scheduled job: one check in a thread, then an immediate relay pass."""
        try:
            # The network read runs in a thread; evaluation and the SQLite commit stay on the loop's thread.
            result = await asyncio.to_thread(self.read, chain)
            self.process(chain, result)
        except Exception:
            log.exception("check failed", extra={"chain": chain})
        await self.relay_now()

    async def read_venue(self, name: str) -> CheckResult:
        """Read one off-chain venue (on the loop: its reads are aiohttp requests)."""
        return await check_venues([self.venues[name]], self._session)

    async def run_venue(self, name: str) -> None:
        """The scheduled job of an off-chain venue: read, evaluate and commit, then an immediate relay pass."""
        try:
            self.process(name, await self.read_venue(name))
        except Exception:
            log.exception("check failed", extra={"chain": name})
        await self.relay_now()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (SIGINT/SIGTERM in `watcher run`)."""
        import aiohttp

        self._session = aiohttp.ClientSession()
        try:
            await self._run(stop)
        finally:
            await self._session.close()

    async def _run(self, stop: asyncio.Event) -> None:
        scheduler = AsyncIOScheduler()
        for chain in sorted({r.chain for r in self.readers}):
            interval = self.cfg.chains[chain].check_interval()
            scheduler.add_job(
                self.run_chain,
                "interval",
                args=[chain],
                seconds=interval,
                coalesce=True,  # a late check is run once, not once per missed tick
                max_instances=1,  # never two checks of one chain at once
                misfire_grace_time=max(1, int(interval * 2)),
                next_run_time=datetime.now(UTC),  # the first check right away
                id=f"check:{chain}",
            )
        for name in sorted(self.venues):
            interval = self.cfg.venues[name].interval if name in self.cfg.venues else 5.0
            scheduler.add_job(
                self.run_venue,
                "interval",
                args=[name],
                seconds=interval,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(1, int(interval * 2)),
                next_run_time=datetime.now(UTC),
                id=f"check:{name}",
            )
        scheduler.add_job(
            self.prune, "interval", seconds=3600, coalesce=True, max_instances=1, next_run_time=datetime.now(UTC)
        )
        scheduler.start()
        retries = asyncio.create_task(self._retry_loop(stop))
        log.info(
            "started",
            extra={
                "chains": sorted({r.chain for r in self.readers}),
                "venues": sorted(self.venues),
                "channels": list(self.channels),
            },
        )
        await stop.wait()
        scheduler.shutdown(wait=False)
        await retries
        log.info("stopped")

    async def _retry_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.relay_now()
            except Exception:
                log.exception("relay failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


def _now_dt() -> Any:
    from datetime import datetime

    return datetime.now(UTC)


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM stop the daemon gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


__all__ = ["Daemon", "JsonFormatter", "Severity", "install_signal_handlers", "rules_from", "setup_logging"]
