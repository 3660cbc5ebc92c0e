"""The source-health listener: one "degraded" alert when a source cannot be read, one "recovered" when it can again."""

from __future__ import annotations

import logging
from typing import Any

from watcher.alerts import alert_id
from watcher.engine.publish import Check, Staged
from watcher.messages import chain_message
from watcher.store import AlertRecord, Store

log = logging.getLogger("watcher")


class SourceHealth:
    """Keeps each source's status row (degraded, since, last good block, errors) and raises its health alerts."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.status: dict[str, dict[str, Any]] = store.chain_status()

    def stage(self, check: Check, staged: Staged) -> None:
        """Stage the source's status row, its alert if its health changed, and the accounts it could not read."""
        source, result, now = check.source, check.result, check.now
        reasons = [u.reason for u in result.unreadable if u.chain == source]
        # A failed read is in both lists; only a problem that read nothing (a URL on another chain) is in one.
        if source in result.degraded and result.degraded[source] not in reasons:
            reasons.append(result.degraded[source])
        was = self.status.get(source, {})
        degraded = bool(reasons)
        row: dict[str, Any]
        key = f"chain:{source}"
        if degraded and not was.get("degraded"):
            # Episodes are counted in the database, so each outage's alert id (and its recovery's) is distinct.
            episode = self.store.degraded_episodes(source) + 1
            unknown = sum(len(u.accounts) for u in result.unreadable if u.chain == source)
            read = sum(1 for p in result.positions if p.chain == source)
            subject, text = chain_message(source, True, reasons[0], unknown, read)
            staged.alerts.append(
                AlertRecord(alert_id(key, episode, "degraded"), key, "degraded", "unknown", None, now, subject, text)
            )
            row = {"degraded": 1, "since": now, "reason": reasons[0]}
            log.warning("degraded", extra={"chain": source, "reason": reasons[0]})
        elif not degraded and was.get("degraded"):
            episode = self.store.degraded_episodes(source)
            subject, text = chain_message(source, False, "")
            staged.alerts.append(
                AlertRecord(alert_id(key, episode, "recovered"), key, "recovered", "ok", None, now, subject, text)
            )
            row = {"degraded": 0, "since": now, "reason": ""}
            log.info("recovered", extra={"chain": source})
        else:
            row = {"degraded": int(degraded), "since": was.get("since", now), "reason": reasons[0] if reasons else ""}
        if not degraded:
            row |= {"last_ok": now, "last_block": result.blocks[source].number if source in result.blocks else None}
        # Each unreadable result is a read that failed (an RPC error, a garbage answer, a reverting feed).
        row |= {"last_check_seconds": result.seconds, "rpc_errors": int(was.get("rpc_errors") or 0) + len(reasons)}
        staged.status[source] = row
        staged.unknown += [
            f"{u.protocol}:{u.chain}:{a.address}" for u in result.unreadable if u.chain == source for a in u.accounts
        ]

    def applied(self, staged: Staged) -> None:
        """Memory follows the committed status rows."""
        for source, row in staged.status.items():
            self.status[source] = {**self.status.get(source, {}), **row}
