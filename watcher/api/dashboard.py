"""The dashboard: server-rendered HTML pages over the same store and rules as the JSON API, with no script at all.

`GET /` lists the positions grouped by level; `GET /ui/positions/{id}` shows one with its history charted (SVG drawn
here), its alerts and silences. Every value is escaped where it is written into the page.
"""

from __future__ import annotations

import json
from decimal import ROUND_DOWN, Decimal
from html import escape
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import quote

from aiohttp import web

from watcher.api.base import SETTINGS, STORE, _finite, _iso_of, _query, _text
from watcher.api.freshness import _freshness, _stale_doc
from watcher.api.routes import _position_doc, health_doc
from watcher.api.svg import Point, Rule, Series, line_chart
from watcher.config import Config
from watcher.engine.rules import RuleBook
from watcher.model import Position
from watcher.render import percent_text

#: The order the groups appear in: what needs action first.
GROUPS = ("liquidatable", "critical", "warn", "unknown", "ok")
WAD = 10**18
CHART_READINGS = 500  #: the newest readings a position page charts and lists
#: No script may run, nothing may be fetched from elsewhere, and no other site may frame the page.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'none';"
    " frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1b1f24;color:#fff;padding:10px 20px}header a{color:#fff;text-decoration:none}
h1{font-size:18px;margin:0}main{padding:12px 20px}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:8px}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eef0f3}
.banner{background:#b42318;color:#fff;padding:10px 20px}.banner ul{margin:4px 0 0}
.level-liquidatable h2,.lv-liquidatable{color:#b42318}.level-critical h2,.lv-critical{color:#c4320a}
.level-warn h2,.lv-warn{color:#b54708}.level-unknown h2,.lv-unknown{color:#475467}.lv-ok{color:#067647}
.muted,.empty{color:#667085}.num{font-variant-numeric:tabular-nums;overflow-wrap:anywhere}td.health{white-space:nowrap}
ul{margin:0;padding-left:18px}
.chart{background:#fff;border:1px solid #dde1e6;display:block;margin:6px 0}
.frame{fill:none;stroke:#dde1e6}.axis,.rule-label{font-size:11px;fill:#475467}
.line{fill:none;stroke-width:2}.point{stroke:#fff;stroke-width:1}
.health{stroke:#175cd3}circle.health{fill:#175cd3}.collateral{stroke:#067647}circle.collateral{fill:#067647}
.debt{stroke:#b42318}circle.debt{fill:#b42318}
.legend{font-size:12px;font-weight:600}.legend-collateral{fill:#067647}.legend-debt{fill:#b42318}
.rule{stroke-dasharray:5 4;stroke-width:1}.rule-warn{stroke:#b54708}.rule-critical{stroke:#c4320a}
.rule-liquidation{stroke:#b42318}.rule-target{stroke:#067647}
"""


def _e(value: Any) -> str:
    """Any value as escaped HTML text (quotes too, so it is safe in an attribute)."""
    return escape("" if value is None else str(value), quote=True)


def _page_link(position_id: str) -> str:
    return "/ui/positions/" + quote(position_id, safe=":")


def _health_text(raw: Any) -> str:
    """Health for a human: 4 decimals, rounded down so a value is never shown safer than it is."""
    if not isinstance(raw, int):
        return "—"
    return str((Decimal(raw) / WAD).quantize(Decimal("0.0001"), rounding=ROUND_DOWN))


def _table(table_id: str, heads: tuple[str, ...], rows: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _page(request: web.Request, title: str, body: str, status: int = 200) -> web.Response:
    text = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        '<header><h1><a href="/">Margin Watcher</a></h1></header>'
        f"{_banner(request)}<main>{body}</main></body></html>\n"
    )
    # Whatever path a secret took into a stored text (an error, a label), it never reaches the page.
    for secret in request.app[SETTINGS]["secrets"]:
        text = text.replace(secret, "[redacted]")
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)


def _banner(request: web.Request) -> str:
    """A banner naming every degraded chain, venue, channel or the storage, from the /health document."""
    doc, _ = health_doc(request)
    if doc["status"] != "degraded":
        return ""
    items = [
        f"<li>{_e(name)}: {_e(c['reason'] or 'degraded')}</li>"
        for name, c in doc.get("chains", {}).items()
        if c["degraded"]
    ]
    storage = doc.get("storage")
    if storage is not None and not storage["ok"]:
        items.append(f"<li>storage: {_e(storage['error'] or 'failing')}</li>")
    for name, h in doc.get("notify", {}).items():
        if not h.get("ok", True):
            items.append(f"<li>notify {_e(name)}: {_e(h.get('last_error') or 'failing')}</li>")
    head = '<div class="banner" role="alert" id="degraded"><strong>Watcher degraded</strong>'
    return f"{head}<ul>{''.join(items)}</ul></div>"


def _thresholds(cfg: Config, doc: dict[str, Any]) -> tuple[int, int]:
    """(warn, critical) in WAD for a position, with its [[alerts.overrides]] applied, as the daemon judged it."""
    # A Position's `protocol` is its deployment's name: a document says it as `deployment` where it has one.
    name = doc.get("deployment") or doc.get("protocol")
    who = SimpleNamespace(account=doc.get("account"), protocol=name, chain=doc.get("chain"))
    rules = RuleBook(cfg).rules_for(cast(Position, who))  # rules_for reads only these three fields
    return rules.warn, rules.critical


def _liquidation_prices(doc: dict[str, Any]) -> str:
    base = doc.get("base_currency") or ""
    items = [
        f'<li><span class="num">{_e(lp.get("symbol"))} {_e(lp.get("price"))} {_e(base)}</span>'
        f' <span class="muted">({_e(lp.get("direction"))} {_e(lp.get("move_pct"))} %)</span></li>'
        for lp in doc.get("liquidation_prices") or []
    ]
    for leg in doc.get("perps") or []:
        price = (leg.get("liquidation_price") or {}).get("value")
        if price is not None:
            move = leg.get("liquidation_move_pct")
            items.append(
                f'<li><span class="num">{_e(leg.get("market"))} {_e(leg.get("side"))} {_e(price)}</span>'
                f' <span class="muted">({_e(move)} %)</span></li>'
            )
    return f"<ul>{''.join(items)}</ul>" if items else '<span class="muted">none</span>'


def _advice(doc: dict[str, Any]) -> str:
    adv = doc.get("advice") or {}
    items = []
    for word, actions in (("add", adv.get("top_ups") or []), ("repay", adv.get("repayments") or [])):
        for a in actions:
            after = _health_text(a.get("health_after_raw"))
            note = "" if a.get("feasible", True) else ' <span class="muted">(more than held)</span>'
            items.append(f'<li class="num">{word} {_e(a.get("amount"))} {_e(a.get("symbol"))} → {after}{note}</li>')
    for u in doc.get("margin_top_ups") or []:
        items.append(f'<li class="num">add {_e(u.get("amount"))} margin ({_e(u.get("scope"))})</li>')
    return f"<ul>{''.join(items)}</ul>" if items else '<span class="muted">none</span>'


def _where(doc: dict[str, Any]) -> str:
    """Protocol (and the deployment's name where it differs) and chain."""
    protocol, deployment = doc.get("protocol"), doc.get("deployment")
    named = f" ({_e(deployment)})" if deployment and deployment != protocol else ""
    return f"{_e(protocol)}{named}<br>{_e(doc.get('chain'))}"


def _row(doc: dict[str, Any]) -> str:
    level = str(doc.get("level"))
    stale = f'<br><span class="muted">{_e(doc.get("stale_reason"))}</span>' if doc.get("stale") else ""
    return (
        f'<tr class="position" data-id="{_e(doc.get("id"))}" data-level="{_e(level)}">'
        f'<td><a href="{_e(_page_link(str(doc.get("id"))))}">{_e(doc.get("label") or doc.get("account"))}</a>'
        f'<br><span class="muted">{_e(doc.get("account"))}</span></td>'
        f"<td>{_where(doc)}</td>"
        f'<td class="num health lv-{_e(level)}" data-health-raw="{_e(doc.get("health_raw"))}">'
        f"{_health_text(doc.get('health_raw'))}{stale}</td>"
        f"<td>{_liquidation_prices(doc)}</td><td>{_advice(doc)}</td></tr>"
    )


_HEAD = "<tr><th>position</th><th>protocol / chain</th><th>health</th><th>liquidation prices</th><th>advice</th></tr>"


async def index(request: web.Request) -> web.Response:
    """GET /: every position, grouped by level, worst first; stale sources' positions count as unknown."""
    _query(request, ())  # no parameters: a token put in the query string is refused, never read
    store, settings = request.app[STORE], request.app[SETTINGS]
    stale = _freshness(settings, store.chain_status(), settings["clock"]())
    cutoffs = {name: cutoff for name, (cutoff, _) in stale.items()}
    docs = [json.loads(_stale_doc(d, chain, stale) if old else d) for d, chain, old in store.position_docs({}, cutoffs)]
    groups: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    for doc in docs:
        groups.setdefault(str(doc.get("level")), []).append(doc)
    parts = [f'<p class="muted">{len(docs)} positions.</p>']
    for level, members in groups.items():
        members.sort(key=lambda d: (d.get("health_raw") is None, d.get("health_raw") or 0, str(d.get("id"))))
        rows = "".join(_row(d) for d in members)
        table = f"<table><thead>{_HEAD}</thead><tbody>{rows}</tbody></table>" if members else ""
        parts.append(
            f'<section class="level level-{_e(level)}" id="level-{_e(level)}" data-level="{_e(level)}">'
            f"<h2>{_e(level)} ({len(members)})</h2>{table}</section>"
        )
    return _page(request, "Margin Watcher: positions", "".join(parts))


def _legs(doc: dict[str, Any]) -> str:
    rows = []
    for side in ("collateral", "debt"):
        for leg in doc.get(side) or []:
            rows.append(
                f"<tr><td>{side}</td><td>{_e(leg.get('symbol'))}</td>"
                f'<td class="num">{_e(leg.get("amount"))}</td><td class="num">{_e(leg.get("price_raw"))}</td></tr>'
            )
    for leg in doc.get("perps") or []:
        mark = (leg.get("mark_price") or {}).get("value")
        rows.append(
            f"<tr><td>perp {_e(leg.get('side'))}</td><td>{_e(leg.get('market'))}</td>"
            f'<td class="num">{_e(leg.get("size"))}</td><td class="num">{_e(mark)}</td></tr>'
        )
    if not rows:
        return '<p class="muted">No legs.</p>'
    head = "<tr><th>side</th><th>asset</th><th>amount</th><th>price (raw)</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _charts(doc: dict[str, Any], readings: list[tuple[Any, ...]], cfg: Config) -> str:
    """The health chart with its thresholds, and the value chart the stored totals allow."""
    warn, critical = _thresholds(cfg, doc)
    health = Series("health", "health")
    collateral, debt = Series("collateral", "collateral"), Series("debt", "debt")
    unit = doc.get("base_unit") if isinstance(doc.get("base_unit"), int) and doc.get("base_unit") else 1
    for at, _block, _hash, h, _level, coll, dbt in readings:
        t = _finite(at)
        if t is None:
            continue
        if h is not None:
            health.points.append(Point(t, Decimal(int(h)) / WAD, int(h)))
        collateral.points.append(Point(t, Decimal(int(coll)) / unit, int(coll)))
        debt.points.append(Point(t, Decimal(int(dbt)) / unit, int(dbt)))
    rules = [
        Rule("warn", Decimal(warn) / WAD),
        Rule("critical", Decimal(critical) / WAD),
        Rule("liquidation", Decimal(1)),
    ]
    base = doc.get("base_currency") or "base currency"
    return (
        "<h2>Health history</h2>"
        + line_chart("health", [health], rules)
        + f"<h2>Collateral and debt ({_e(base)})</h2>"
        + '<p class="muted" id="no-prices">The history stores each reading\'s health and its total collateral and'
        " debt values, not the asset prices: this chart shows those totals, valued at the oracle prices of each"
        " reading's block. The current prices are in the table above.</p>"
        + line_chart(f"collateral and debt ({base})", [collateral, debt])
    )


def _readings(readings: list[tuple[Any, ...]]) -> str:
    rows = "".join(
        f'<tr><td class="num">{_e(_iso_of(at))}</td><td class="num">{_e(block)}</td>'
        f'<td class="num">{_health_text(None if h is None else int(h))}</td><td class="lv-{_e(level)}">{_e(level)}</td>'
        f'<td class="num">{_e(coll)}</td><td class="num">{_e(dbt)}</td></tr>'
        for at, block, _hash, h, level, coll, dbt in reversed(readings)
    )
    return _table("readings", ("at (UTC)", "block", "health", "level", "collateral (raw)", "debt (raw)"), rows)


def _alerts(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">No alerts.</p>'
    out = []
    for a in rows:
        sent = ", ".join(f"{d['channel']}: {d['status']}" for d in a["deliveries"])
        state = "open" if a["open"] else ("acknowledged" if a["acked_at"] is not None else "closed")
        if a.get("silenced"):
            state += ", silenced"
        out.append(
            f'<tr class="alert" data-id="{_e(a["id"])}"><td class="num">{_e(_iso_of(a["created_at"]))}</td>'
            f'<td>{_e(a["kind"])}</td><td class="lv-{_e(a["level"])}">{_e(a["level"])}</td>'
            f"<td>{_e(a['subject'])}</td><td>{_e(state)}</td><td>{_e(sent)}</td></tr>"
        )
    return _table("alerts", ("at (UTC)", "kind", "level", "subject", "state", "deliveries"), "".join(out))


def _silences(rows: list[tuple[Any, ...]]) -> str:
    if not rows:
        return '<p class="muted">No silence in force.</p>'
    out = "".join(
        f'<tr class="silence"><td>{_e(sid)}</td><td>{_e(account or position_)}</td>'
        f'<td class="num">{_e(_iso_of(until))}</td></tr>'
        for sid, account, position_, until, _created in rows
    )
    return _table("silences", ("id", "mutes", "until (UTC)"), out)


def _next_oracle(doc: dict[str, Any]) -> str:
    """A Maker vault's OSM queued price, in the words its alerts use."""
    nxt = doc.get("next_oracle") or {}
    if not nxt.get("text"):
        return ""
    return f'<p id="next-oracle" class="lv-{_e(nxt.get("level"))}">{_e(nxt["text"])}</p>'


def _chances(doc: dict[str, Any]) -> str:
    estimates = [e for e in doc.get("liquidation_probability") or [] if isinstance(e, dict)]
    if not estimates:
        return '<p class="muted">Not estimated ([probability] is off).</p>'
    rows = []
    for e in estimates:
        p, sigma, hours = e.get("probability"), e.get("sigma_annual"), (e.get("horizon_s") or 0) / 3600
        shown = percent_text(p) if isinstance(p, float) else "unknown"
        vol = f"{sigma * 100:.0f} %" if isinstance(sigma, float) else "-"
        cells = "".join(f'<td class="num">{_e(v)}</td>' for v in (f"{hours:g} h", shown, vol, e.get("samples")))
        rows.append(f'<tr class="chance">{cells}<td>{_e(e.get("model"))}</td><td>{_e(e.get("note", ""))}</td></tr>')
    heads = ("within", "probability", "σ a year", "returns", "model", "note")
    return _table("chances", heads, "".join(rows))


async def position_page(request: web.Request) -> web.Response:
    """GET /ui/positions/{id}: one position, its charted history, its alerts and the silences that cover it."""
    _query(request, ())
    key, doc = _position_doc(request)
    store, settings = request.app[STORE], request.app[SETTINGS]
    readings = store.recent_history(key, CHART_READINGS)
    alerts = store.alert_rows("position = ?", [key], 50)
    silences = [
        s
        for s in store.silences_in_force(settings["clock"]())
        if s[2] == key or (s[1] is not None and s[1] == doc.get("account"))
    ]
    level = str(doc.get("level"))
    updated = _iso_of(doc.get("updated_at"))
    stale = f'<p class="muted">{_e(doc.get("stale_reason"))}</p>' if doc.get("stale") else ""
    raw = quote(_text(key, "id"), safe=":")
    body = (
        f'<h2 id="position" data-id="{_e(key)}" data-level="{_e(level)}">{_e(doc.get("label") or doc.get("account"))}'
        f' <span class="lv-{_e(level)}">{_e(level)}</span></h2>'
        f'<p><span class="muted">{_e(key)}</span><br>health <strong class="num">'
        f"{_health_text(doc.get('health_raw'))}</strong>, read {_e(updated)} at block"
        f" {_e((doc.get('block') or {}).get('number'))}</p>{stale}{_next_oracle(doc)}"
        f"{_legs(doc)}<h2>Liquidation prices</h2>{_liquidation_prices(doc)}<h2>Advice</h2>{_advice(doc)}"
        f"<h2>Liquidation probability</h2>{_chances(doc)}"
        f"{_charts(doc, readings, settings['config'])}"
        f'<h2>Readings ({len(readings)})</h2><p><a href="/positions/{_e(raw)}/history?format=csv">CSV</a>'
        f' · <a href="/positions/{_e(raw)}">JSON</a></p>{_readings(readings)}'
        f"<h2>Alerts</h2>{_alerts(alerts)}<h2>Silences</h2>{_silences(silences)}"
    )
    return _page(request, f"Margin Watcher: {doc.get('label') or key}", body)
