"""CSV answers for `?format=csv` on a position's history and on the alerts: a header row, raw integers, ISO-8601 UTC."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from watcher.api.base import SETTINGS, BadRequest, _iso_of

FORMATS = ("json", "csv")
HISTORY_COLUMNS = ("at", "block", "block_hash", "health_raw", "level", "total_collateral_raw", "total_debt_raw")
ALERT_COLUMNS = (
    "id",
    "position",
    "kind",
    "level",
    "health_raw",
    "created_at",
    "acked_at",
    "silenced",
    "open",
    "deliveries",
    "subject",
    "text",
)
#: A cell a spreadsheet would run as a formula: a stored text (a label, a message) must not become one.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def wants_csv(q: dict[str, str]) -> bool:
    """Whether `?format=` asks for CSV; a 400 naming `format` for anything but json or csv."""
    value = q.get("format", "json")
    if value not in FORMATS:
        raise BadRequest(f"format: {value[:40]!r} is not one of {', '.join(FORMATS)}")
    return value == "csv"


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value  # shown as text by spreadsheets; the JSON answer keeps the exact value
    return "" if value is None else value


def _csv(request: web.Request, name: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> web.Response:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180 line ends
    w.writerow(columns)
    for row in rows:
        w.writerow([_cell(v) for v in row])
    text = buf.getvalue()
    for secret in request.app[SETTINGS]["secrets"]:
        text = text.replace(secret, "[redacted]")
    filename = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] + ".csv"
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def history_csv(request: web.Request, key: str, rows: list[tuple[Any, ...]]) -> web.Response:
    """A position's readings as CSV, oldest first: one row per reading, amounts as raw integers."""
    out = (
        (_iso_of(at), block, block_hash, None if h is None else int(h), level, int(coll), int(debt))
        for at, block, block_hash, h, level, coll, debt in rows
    )
    return _csv(request, f"history-{key}", HISTORY_COLUMNS, out)


def alerts_csv(request: web.Request, alerts: list[dict[str, Any]]) -> web.Response:
    """Alerts as CSV, newest first, as GET /alerts lists them; deliveries as `channel:status` joined by `;`."""
    out = (
        (
            a["id"],
            a["position"],
            a["kind"],
            a["level"],
            a["health_raw"],
            _iso_of(a["created_at"]),
            _iso_of(a["acked_at"]),
            str(a["silenced"]).lower(),
            str(a["open"]).lower(),
            ";".join(f"{d['channel']}:{d['status']}" for d in a["deliveries"]),
            a["subject"],
            a["text"],
        )
        for a in alerts
    )
    return _csv(request, "alerts", ALERT_COLUMNS, out)
