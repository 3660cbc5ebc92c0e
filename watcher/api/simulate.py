"""GET /positions/{id}/simulate: one position after what-if price shocks, on the daemon's latest simulator."""

from __future__ import annotations

from aiohttp import web

from watcher.api.base import SETTINGS, STORE, BadRequest, _error, _json, _text
from watcher.simulate import simulation_json
from watcher.whatif import ShockError, parse_at, parse_shock, simulate

#: shocks one request may carry
MAX_SHOCKS = 16

NO_SIMULATORS = (
    "simulation needs the positions' simulators, which only `watcher run` holds in memory; "
    "`watcher api` serves the stored state alone"
)


async def simulate_position(request: web.Request) -> web.Response:
    """The position's health, verdict and advice after `?shock=WETH:-20` (repeatable) at `?at=` (default: its read)."""
    key = _text(request.match_info["id"], "id")
    for name in request.query:
        if name not in ("shock", "at"):
            raise BadRequest(f"unknown query parameter {name!r} (allowed: at, shock)")
    texts = [_text(v, "shock") for v in request.query.getall("shock", [])]
    if not texts:
        raise BadRequest("shock: required, e.g. ?shock=WETH:-20 (repeat it for more assets)")
    if len(texts) > MAX_SHOCKS:
        raise BadRequest(f"shock: at most {MAX_SHOCKS} per request")
    ats = request.query.getall("at", [])
    if len(ats) > 1:
        raise BadRequest("at: give it once")
    try:
        shocks = [parse_shock(t) for t in texts]
        at = parse_at(_text(ats[0], "at") if ats else None)
    except ShockError as exc:
        raise BadRequest(str(exc)) from None
    live = (request.app[SETTINGS]["live"] or {}).get("positions")
    if live is None:
        return _error(request, 503, NO_SIMULATORS)
    position = live.get(key)
    if position is None:
        if request.app[STORE].position_doc(key) is None:
            raise web.HTTPNotFound(reason=f"no position {key[:120]!r}")
        return _error(request, 503, f"position {key[:120]!r} has no current reading (its source is unreadable now)")
    try:
        # Symbols resolve over every live position, as `watcher simulate` resolves them over the whole config.
        outcomes = simulate([position], shocks, at, live.thresholds, known=list(live.positions.values()))
    except ShockError as exc:
        raise BadRequest(str(exc)) from None
    return _json(simulation_json(shocks, at, outcomes), request)
