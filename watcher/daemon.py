"""`watcher run`: scheduled checks per chain, alert rules, one transaction per check, and the outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher.adapters.base import Reader, VenueReader
from watcher.alerts import AlertState, Event, Observation, Rules, alert_id, evaluate, raw_level
from watcher.chain import ChainClient
from watcher.check import CheckResult, Unreadable, check_chains, check_venues
from watcher.config import Config
from watcher.heads import HeadFollower, first_done, sleep_or_stop
from watcher.messages import chain_message, position_message
from watcher.model import BPS, Position
from watcher.notify.base import Channel
from watcher.notify.relay import Relay
from watcher.render import position_json
from watcher.risk import Advice, Thresholds, advise
from watcher.store import AlertRecord, HistoryRow, Store

log = logging.getLogger("watcher")

#: Seconds a commit waits for a database another process holds locked before it fails (and is retried).
BUSY_TIMEOUT = 1.0


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
    """Checks, evaluates and notifies; every check's outcome is one SQLite transaction.

    Each source (a chain or a venue) is checked on its own schedule, on the event loop, with async I/O: one slow
    source never delays another, and delivery runs as its own task, so no check waits for a message to go out.
    A watchdog marks a source degraded when its last good read is older than its bound, whatever the cause.
    Memory follows the database: a check whose commit fails changes nothing, and its transitions come again.
    """

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
        ws_urls: dict[str, str | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clients = clients
        self.readers = list(readers)
        self.venues = {v.chain: v for v in venues}
        self._session: Any = None  #: the aiohttp session venues are read through, made in run()
        self.store = store
        # A locked database must fail a commit quickly (it is retried at the next check), not hold the loop.
        store.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        self.channels = channels
        self.clock = clock
        self.rules = rules_from(cfg)
        # Every alert goes to every channel, so a fallback copy only serves rows queued before the other channel was
        # configured (has_copy skips an alert the other channel already has).
        fallback = {"telegram": "email", "email": "telegram"} if len(channels) == 2 else {}
        n = cfg.notify
        self.relay = Relay(
            store.db,
            channels,
            fallback=fallback,
            retry_initial=n.retry_initial,
            retry_max=n.retry_max,
            clock=clock,
        )
        self.states = store.alert_states()
        self.status = store.chain_status()
        self.last_history = store.last_history()
        self.advised = store.advice_docs()  #: per position: (time, liquidation prices, advice) as last computed
        self.checks = 0
        self.commit_failures = 0
        started = clock()
        #: what the API in the same process shows beside the stored state: the database's own health
        self.live: dict[str, Any] = {
            "storage": {"ok": True, "error": "", "since": started},
            "notify": self.relay.health,
        }
        self.relay.on_storage = self._storage_report
        #: per source, when its last check completed with a good read (or the daemon started): the watchdog's clock
        #: (on the monotonic clock: a wall clock stepped back must not make a stall look young)
        self.last_good: dict[str, float] = dict.fromkeys(self.sources(), time.monotonic())
        self._stalled: set[str] = set()  #: sources the watchdog has marked degraded since their last good read
        self._relay_lock = asyncio.Lock()
        chains = sorted({r.chain for r in self.readers})
        if ws_urls is None:
            ws_urls = {c: cfg.chains[c].websocket(c) for c in chains}
        #: per chain, what wakes its checks: new heads (over ws_url or polled), or None for the interval alone
        self.heads: dict[str, HeadFollower | None] = {
            c: HeadFollower(c, clients[c], cfg.chains[c].head_poll_seconds(), ws_urls.get(c), cfg.chains[c].timeout)
            if cfg.chains[c].follow_heads
            else None
            for c in chains
        }
        self.chain_checks: dict[str, int] = dict.fromkeys(chains, 0)  #: checks run per chain (the benchmark's count)

    def _storage_report(self, error: str | None) -> None:
        """The relay's word on the database: an error it could not write past, or None once it could."""
        ok = self.live["storage"]["ok"]
        if error is not None and ok:
            self.live["storage"] = {"ok": False, "error": error, "since": self.clock()}
        elif error is None and not ok:
            self.live["storage"] = {"ok": True, "error": "", "since": self.clock()}

    def sources(self) -> list[str]:
        """Every chain with readers and every venue."""
        return sorted({r.chain for r in self.readers} | set(self.venues))

    def watchdog_after(self, source: str) -> float:
        """Seconds without a good read before the source is degraded."""
        if source in self.venues:
            v = self.cfg.venues.get(source)
            return v.watchdog_after() if v is not None else 3 * 5.0 + 10.0
        return self.cfg.chains[source].watchdog_after()

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

    # --- one check of one source

    async def read(self, chain: str) -> CheckResult:
        """Read every position on the chain (network only, no database)."""
        readers = [r for r in self.readers if r.chain == chain]
        return await check_chains({chain: self.clients[chain]}, readers)

    async def check_chain(self, chain: str) -> CheckResult:
        """Read, then process: one whole check."""
        result = await self.read(chain)
        self.process(chain, result)
        return result

    def process(self, chain: str, result: CheckResult) -> bool:
        """Evaluate every position and commit state, alerts, outbox rows and history in one transaction.

        Returns whether the commit succeeded. Nothing in memory changes before it has: a failed commit (a locked,
        full or read-only database) leaves the alert state as it was, so the next check raises the same
        transitions again and no degraded, recovered or level alert is lost or orphaned.
        """
        now = self.clock()
        alerts: list[AlertRecord] = []
        states: dict[str, AlertState] = {}
        history: list[HistoryRow] = []
        last_history: dict[str, tuple[float, int | None, str]] = {}
        advised: dict[str, tuple[float, list[Any], Any] | None] = {}
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
                row, kept = self._position_row(p, rules, advice, now)
                rows.append(row)
                advised[p.key] = kept
            except Exception:  # one position's document must not stop the others' state and alerts
                log.exception("position document failed", extra={"position": p.key})
            if self._history_due(previous, now, p.health, level):
                history.append(
                    HistoryRow(
                        p.key, now, p.block.number, p.block.hash, p.health, level, p.total_collateral, p.total_debt
                    )
                )
                last_history[p.key] = (now, p.health, level)
        status = self._chain_health(chain, result, now, alerts)
        unknown = [
            f"{u.protocol}:{u.chain}:{a.address}" for u in result.unreadable if u.chain == chain for a in u.accounts
        ]
        try:
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
        except (sqlite3.Error, OSError) as exc:
            self.commit_failures += 1
            storage = self.live["storage"]
            if storage["ok"]:
                self.live["storage"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "since": now}
            log.error(
                "commit failed: nothing changed, the check's transitions come again at the next one",
                extra={"chain": chain, "error": f"{type(exc).__name__}: {exc}", "alerts": len(alerts)},
            )
            return False
        if not self.live["storage"]["ok"]:
            log.info("storage writable again", extra={"chain": chain})
            self.live["storage"] = {"ok": True, "error": "", "since": now}
        self.states.update(states)
        self.last_history.update(last_history)
        for key, kept in advised.items():
            if kept is None:
                self.advised.pop(key, None)
            else:
                self.advised[key] = kept
        self.status[chain] = {**self.status.get(chain, {}), **status[chain]}
        self.checks += 1
        if alerts and self.channels:
            self.relay.wake()
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
        return True

    def _position_row(
        self, p: Position, rules: Rules, advice: Advice | None, now: float
    ) -> tuple[dict[str, Any], tuple[float, list[Any], Any] | None]:
        """The positions-table row (the JSON document the API serves, with its level under this position's rules),
        and the advice to remember for the position once the row is committed (None: forget it)."""
        doc = position_json(p, advice, Thresholds(rules.warn, rules.critical, self.cfg.thresholds.target))
        kept: tuple[float, list[Any], Any] | None
        if advice is not None:
            kept = (now, doc["liquidation_prices"], doc["advice"])
        elif not p.has_debt:
            kept = None
        else:
            kept = self.advised.get(p.key)
        at, lps, adv = kept if kept is not None else (None, [], None)
        doc |= {"liquidation_prices": lps, "advice": adv, "advice_at": at, "updated_at": now}
        row = {
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
        return row, kept

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
        """One "degraded" alert when a chain cannot be read (or part of it), one "recovered" when it can again.

        Pure: the row it returns is applied to memory only after the commit that stores it.
        """
        reasons = [u.reason for u in result.unreadable if u.chain == chain]
        # A failed read is in both lists; only a problem that read nothing (a URL on another chain) is in one.
        if chain in result.degraded and result.degraded[chain] not in reasons:
            reasons.append(result.degraded[chain])
        was = self.status.get(chain, {})
        degraded = bool(reasons)
        row: dict[str, Any]
        key = f"chain:{chain}"
        if degraded and not was.get("degraded"):
            episode = self._episodes(chain) + 1
            unknown = sum(len(u.accounts) for u in result.unreadable if u.chain == chain)
            read = sum(1 for p in result.positions if p.chain == chain)
            subject, text = chain_message(chain, True, reasons[0], unknown, read)
            alerts.append(
                AlertRecord(alert_id(key, episode, "degraded"), key, "degraded", "unknown", None, now, subject, text)
            )
            row = {"degraded": 1, "since": now, "reason": reasons[0]}
            log.warning("degraded", extra={"chain": chain, "reason": reasons[0]})
        elif not degraded and was.get("degraded"):
            episode = self._episodes(chain)
            subject, text = chain_message(chain, False, "")
            alerts.append(
                AlertRecord(alert_id(key, episode, "recovered"), key, "recovered", "ok", None, now, subject, text)
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
        return {chain: row}

    def _episodes(self, chain: str) -> int:
        """Degraded episodes of the chain so far (each one's alert id is distinct, and so is its recovery's)."""
        return self.store.degraded_episodes(chain)

    async def prune(self) -> None:
        """Drop history older than the retention (a coroutine: the scheduler runs it on the loop's thread)."""
        try:
            removed = self.store.prune_history(self.clock() - self.cfg.storage.retention_days * 86400)
        except (sqlite3.Error, OSError) as exc:
            log.error("prune failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        if removed:
            log.info("pruned history", extra={"rows": removed})

    # --- the asyncio side

    async def relay_now(self) -> None:
        """Deliver what is due now, once (tests and `watcher test-notify`; the daemon's relay runs on its own)."""
        async with self._relay_lock:
            await self.relay.run_once()

    def _good(self, source: str, result: CheckResult, committed: bool) -> None:
        """Feed the watchdog: a committed check that read the source counts as a good read."""
        degraded = source in result.degraded or any(u.chain == source for u in result.unreadable)
        if committed and not degraded:
            self.last_good[source] = time.monotonic()
            self._stalled.discard(source)

    async def run_chain(self, chain: str) -> None:
        """The scheduled job of a chain: read (async I/O on the loop), evaluate and commit."""
        try:
            result = await self.read(chain)
            self._good(chain, result, self.process(chain, result))
        except Exception:
            log.exception("check failed", extra={"chain": chain})

    async def follow_chain(self, chain: str, stop: asyncio.Event) -> None:
        """A chain's checks: one per new head (coalesced while a check runs), and at least one per interval."""
        interval = self.cfg.chains[chain].check_interval()
        heads = self.heads[chain]
        follower = asyncio.create_task(heads.run(stop)) if heads is not None else None
        try:
            while not stop.is_set():
                started = time.monotonic()
                await self.run_chain(chain)
                self.chain_checks[chain] += 1
                left = interval - (time.monotonic() - started)
                if heads is None:
                    await sleep_or_stop(stop, left)
                else:
                    # A head seen while the check ran wakes the next one at once; many heads, one check.
                    await first_done(stop.wait(), heads.wait(left))
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower

    async def follow_venue(self, name: str, stop: asyncio.Event) -> None:
        """A venue's checks, one every `interval` (never two at once; a late one is not made up for)."""
        interval = self.cfg.venues[name].interval if name in self.cfg.venues else 5.0
        while not stop.is_set():
            started = time.monotonic()
            await self.run_venue(name)
            await sleep_or_stop(stop, interval - (time.monotonic() - started))

    async def read_venue(self, name: str) -> CheckResult:
        """Read one off-chain venue (on the loop: its reads are aiohttp requests)."""
        return await check_venues([self.venues[name]], self._session)

    async def run_venue(self, name: str) -> None:
        """The scheduled job of an off-chain venue: read, evaluate and commit."""
        try:
            result = await self.read_venue(name)
            self._good(name, result, self.process(name, result))
        except Exception:
            log.exception("check failed", extra={"chain": name})

    def watchdog(self) -> None:
        """Mark every source whose last good read is older than its bound degraded, its positions unknown.

        Whatever stopped the reads (a hung request, a stalled scheduler, a check that keeps failing to commit),
        the user hears "degraded" and no position reads as healthy. Once per stall: a good read ends it.
        """
        now = time.monotonic()
        for source in self.sources():
            bound = self.watchdog_after(source)
            age = now - self.last_good.get(source, now)
            if age <= bound or source in self._stalled:
                continue
            reason = f"{source}: no good read for {age:.0f} s (stale_after {bound:g} s)"
            if source in self.venues:
                accounts = tuple(self.venues[source].accounts)
                unreadable = [Unreadable(self.venues[source].protocol, source, accounts, reason)]
            else:
                unreadable = [
                    Unreadable(r.protocol, source, tuple(getattr(r, "accounts", ())), reason)
                    for r in self.readers
                    if r.chain == source
                ]
            if self.process(source, CheckResult(unreadable=unreadable, degraded={source: reason})):
                self._stalled.add(source)
                log.warning("watchdog", extra={"chain": source, "reason": reason})

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
        # Checks run in loops of their own on the monotonic clock (a wall clock stepped back must not pause them);
        # the scheduler only prunes history.
        scheduler.add_job(
            self.prune, "interval", seconds=3600, coalesce=True, max_instances=1, next_run_time=datetime.now(UTC)
        )
        scheduler.start()
        chains = [asyncio.create_task(self.follow_chain(c, stop), name=f"chain:{c}") for c in self.heads]
        chains += [asyncio.create_task(self.follow_venue(v, stop), name=f"venue:{v}") for v in sorted(self.venues)]
        relay = asyncio.create_task(self.relay.run_forever(stop))
        watchdog = asyncio.create_task(self._watchdog_loop(stop))
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
        await asyncio.gather(relay, watchdog, *chains)
        log.info("stopped")

    async def _watchdog_loop(self, stop: asyncio.Event) -> None:
        # ticks at a fraction of the shortest bound, so a stall is reported within about a quarter of it
        tick = max(0.1, min([self.watchdog_after(s) for s in self.sources()] or [1.0]) / 4)
        while not stop.is_set():
            try:
                self.watchdog()
            except Exception:
                log.exception("watchdog failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)


def _now_dt() -> Any:
    from datetime import datetime

    return datetime.now(UTC)


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM stop the daemon gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


__all__ = ["Daemon", "JsonFormatter", "install_signal_handlers", "rules_from", "setup_logging"]
