"""A chain's RPC endpoints: labels that never show a key, rate-limit rests, and failover from one URL to the next."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from web3 import Web3
from web3.providers import HTTPProvider

from watcher.io.rpc import ChainError, HttpTransport, RateLimited, RpcError, Transport, Web3Transport

#: Seconds a rate-limited endpoint rests when it gives no Retry-After.
RATE_LIMIT_COOLDOWN = 10.0
#: The longest rest a Retry-After can ask for: a node asking a day must not blind the chain for a day.
RATE_LIMIT_MAX_REST = 300.0


def redact_url(url: str) -> str:
    """An RPC URL fit for logs and errors: scheme and host only, since paths and queries often hold API keys."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    tail = "/..." if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def transport_for(w3: Web3) -> Transport:
    """The transport for a Web3 instance: HTTP for a node URL, in process otherwise."""
    if isinstance(w3.provider, HTTPProvider) and w3.provider.endpoint_uri:
        return HttpTransport(str(w3.provider.endpoint_uri))
    return Web3Transport(w3)


@dataclass
class _Endpoint:
    """One RPC URL and what the client knows of it."""

    label: str  #: `chains.<name>.rpc_urls[i] (scheme://host)`: never the path or query, which may hold a key
    transport: Transport
    resting_until: float = 0.0  #: monotonic time a rate-limited endpoint may be used again
    verified_at: float = float("-inf")  #: monotonic time its chain id was last confirmed
    failing: bool = False  #: its last request failed: its chain id is asked again before its answers count
    wrong_chain: int | None = None  #: the other chain id it reported: left out of reads until it reports ours


class Endpoints:
    """The endpoint set of one chain and the failover over it; ChainClient's base."""

    # set by ChainClient.__init__; declared here so each part names the state it uses
    name: str
    chain_id: int
    endpoints: list[_Endpoint]
    _active: int

    def problems(self) -> list[str]:
        """What is wrong with the endpoints even when the chain still reads: URLs serving another chain."""
        return [
            f"{ep.label} reports chain id {ep.wrong_chain}, not chains.{self.name}.chain_id {self.chain_id}: "
            "left out of reads"
            for ep in self.endpoints
            if ep.wrong_chain is not None
        ]

    def _usable(self, i: int) -> bool:
        return self.endpoints[i].wrong_chain is None

    def _rest(self, ep: _Endpoint, exc: RateLimited, now: float) -> None:
        rest = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_COOLDOWN
        ep.resting_until = now + min(rest, RATE_LIMIT_MAX_REST)

    async def _each(
        self,
        method: str,
        params: list[Any],
        only: Sequence[int] | None = None,
        extra: Sequence[tuple[str, list[Any]]] = (),
    ) -> Any:
        """Call on the active endpoint, falling over to the next on a failure.

        An endpoint that rate-limits us rests for its Retry-After (or RATE_LIMIT_COOLDOWN seconds); one that
        lags the others' head is left out of reads until it catches up; one on another chain is never asked.
        """
        errors = []
        now = time.monotonic()
        n = len(self.endpoints)
        order = [(self._active + k) % n for k in range(n) if self._usable((self._active + k) % n)]
        usable = [i for i in order if (only is None or i in only) and self.endpoints[i].resting_until <= now]
        for i in usable or order:  # when every endpoint rests, trying beats giving up
            ep = self.endpoints[i]
            try:
                # `extra` requests ride in the same HTTP request: then the answer is the list of all results
                if extra:
                    out = await ep.transport.request_many([(method, params), *extra])
                else:
                    out = await ep.transport.request(method, params)
            except RateLimited as exc:
                self._rest(ep, exc, now)
                errors.append(f"{ep.label}: {exc}")
                continue
            except RpcError as exc:  # the node answered: it is alive, the call itself failed
                errors.append(f"{ep.label}: {exc}")
                continue
            except ChainError as exc:
                ep.failing = True
                errors.append(f"{ep.label}: {exc}")
                continue
            except Exception as exc:  # transport errors of every kind: the next URL may serve
                ep.failing = True
                errors.append(f"{ep.label}: {type(exc).__name__}")
                continue
            self._active = i
            return out
        if not order:
            raise ChainError(
                f"chain {self.name}: no RPC URL serves chain id {self.chain_id}: " + "; ".join(self.problems())
            )
        raise ChainError(f"chain {self.name}: every RPC failed: " + "; ".join(errors))
