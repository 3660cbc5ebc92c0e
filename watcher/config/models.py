"""The config's tables, validated with pydantic: chains, thresholds, alerts, storage, notify, API, deployments."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from watcher.chain import DEFAULT_GAS_BUDGET, MULTICALL3_ADDRESS
from watcher.config.delivery import AppriseConfig, Delivery, check_channels
from watcher.config.values import (
    DEFAULT_MAX_RESPONSE_BYTES,
    MAX_INTERVAL,
    MAX_TIMEOUT,
    Address,
    ConfigError,
    Health,
    Name,
    SecretRef,
    Strict,
    _health,
    evm_address,
)
from watcher.ens import MAINNET_REGISTRY, is_name, normalize
from watcher.model import WAD


class Thresholds(Strict):
    """Health thresholds; a level fires at or below its threshold."""

    warn: Health = Field(default=_health("1.25"))
    critical: Health = Field(default=_health("1.1"))
    target: Health = Field(default=_health("1.5"))

    @model_validator(mode="after")
    def _order(self) -> Thresholds:
        if not WAD < self.critical < self.warn:
            raise ValueError("thresholds must satisfy 1 < critical < warn")
        if self.target <= self.critical:
            raise ValueError("thresholds.target must be above critical")
        return self


class ChainConfig(Strict):
    """One chain: its id, RPC URLs (plain or by secret reference) and batching settings."""

    chain_id: int = Field(gt=0)
    rpc_urls: list[str | SecretRef] = Field(min_length=1)
    multicall: Address = MULTICALL3_ADDRESS
    call_gas_budget: int = Field(default=DEFAULT_GAS_BUDGET, ge=1_000_000)
    #: seconds per RPC request, all of it: connecting, sending, the headers and the whole body
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)
    #: seconds between checks; default: near the block time
    interval: float | None = Field(default=None, gt=0, le=MAX_INTERVAL)
    max_block_age: float = Field(
        default=180.0, gt=0, le=MAX_INTERVAL
    )  #: a head older than this marks the chain degraded
    max_lag_blocks: int = Field(default=3, ge=0)  #: an RPC this far behind the best head sits out
    #: bytes one JSON-RPC answer may have; a larger one is refused (and a log query split) before it fills memory
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=10_000, le=1_000_000_000)
    #: seconds without a good read after which the chain is degraded and its positions unknown, whatever the cause
    #: (a hung request, a stalled scheduler); default: 3 intervals plus the timeout
    stale_after: float | None = Field(default=None, gt=0, le=MAX_INTERVAL)
    #: seconds between re-checks of every RPC URL's chain id (also done when a failed URL answers again)
    verify_every: float = Field(default=300.0, gt=0, le=MAX_INTERVAL)
    #: check on every new head (the interval is then the fallback); false: check every interval only
    follow_heads: bool = True
    #: a ws:// or wss:// URL whose eth_subscribe("newHeads") wakes the checks; without one, heads are polled
    ws_url: str | SecretRef | None = None
    #: seconds between eth_blockNumber polls for a new head (also while the WebSocket is down); default: a quarter of
    #: the interval, at most 1 s
    head_poll: float | None = Field(default=None, gt=0, le=MAX_INTERVAL)

    def check_interval(self) -> float:
        """The configured interval, or one near the chain's block time."""
        return self.interval or BLOCK_TIMES.get(self.chain_id, 12.0)

    def watchdog_after(self) -> float:
        """Seconds without a good read before the chain counts as degraded."""
        return self.stale_after or 3 * self.check_interval() + self.timeout

    @field_validator("ws_url")
    @classmethod
    def _websocket_scheme(cls, url: str | SecretRef | None) -> str | SecretRef | None:
        if isinstance(url, str) and not url.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL")
        return url

    @model_validator(mode="after")
    def _stale_after_beyond_interval(self) -> ChainConfig:
        _check_stale_after(self.stale_after, self.check_interval())
        return self

    def head_poll_seconds(self) -> float:
        """Seconds between head polls."""
        return self.head_poll or min(1.0, max(0.05, self.check_interval() / 4))

    def websocket(self, name: str) -> str | None:
        """The resolved ws_url (secret read now), or None."""
        if self.ws_url is None:
            return None
        key = f"chains.{name}.ws_url"
        url = self.ws_url.resolve(key) if isinstance(self.ws_url, SecretRef) else self.ws_url
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"{key}: must be a ws:// or wss:// URL")
        return url

    def urls(self, name: str) -> list[str]:
        """Resolved URLs (secrets read now)."""
        out = []
        for i, u in enumerate(self.rpc_urls):
            out.append(u.resolve(f"chains.{name}.rpc_urls[{i}]") if isinstance(u, SecretRef) else u)
        for i, u in enumerate(out):
            if not u.startswith(("http://", "https://")):
                raise ConfigError(f"chains.{name}.rpc_urls[{i}]: only http(s) URLs are supported")
        return out


#: Seconds per block by chain id, for the default check interval.
BLOCK_TIMES = {1: 12.0, 10: 2.0, 137: 2.0, 8453: 2.0, 42161: 1.0, 43114: 2.0, 31337: 1.0}


class Override(Strict):
    """Thresholds for one account, optionally narrowed to one deployment and chain (a position)."""

    account: Address
    protocol: str | None = None
    chain: str | None = None
    warn: Health | None = None
    critical: Health | None = None


class AlertsConfig(Strict):
    """Alert rules: hysteresis, confirmation, repeats and "falling fast"."""

    clear_margin: Health = Field(default=_health("0.02"))
    confirm_warn: int = Field(default=2, ge=1)
    confirm_critical: int = Field(default=1, ge=1)
    confirm_liquidatable: int = Field(default=1, ge=1)
    repeat_warn: float = Field(default=6 * 3600.0, gt=0, le=365 * MAX_INTERVAL)
    repeat_critical: float = Field(default=1800.0, gt=0, le=365 * MAX_INTERVAL)
    repeat_liquidatable: float = Field(default=300.0, gt=0, le=365 * MAX_INTERVAL)
    falling_drop: Health = Field(default=_health("0.1"))
    falling_window: float = Field(default=600.0, gt=0, le=365 * MAX_INTERVAL)
    #: warn when interest alone liquidates within this many days at constant prices (None: no such rule)
    warn_days_to_liquidation: float | None = Field(default=None, gt=0, le=3650)
    #: a Maker vault alerts on the OSM's queued price before the Vat sees it (false: only once a keeper can act)
    maker_next_price: bool = True
    #: warn when the probability of liquidation within 24 h reaches this (None: no such rule; needs [probability])
    warn_probability_24h: float | None = Field(default=None, gt=0, lt=1)
    overrides: list[Override] = []


class ProbabilityConfig(Strict):
    """Liquidation probability from the oracle's price history (watcher/probability.py states the model)."""

    enabled: bool = True
    #: seconds ahead to estimate for: 1 h, 24 h and 7 d unless given
    horizons: list[float] = Field(default=[3600.0, 86400.0, 604800.0], min_length=1, max_length=8)
    rounds: int = Field(default=500, ge=21, le=10_000)  #: feed rounds to walk back for the volatility
    #: seconds between two of the watcher's own price readings: the history where a feed keeps no rounds
    readings_every: float = Field(default=300.0, gt=0, le=MAX_INTERVAL)

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, v: list[float]) -> list[float]:
        for h in v:
            if not 0 < h <= 366 * 86400:
                raise ValueError(f"{h:g} is not a horizon from 1 second to 366 days")
        return sorted(set(v))


class StorageConfig(Strict):
    """Where history and alert state live, and how much history is kept."""

    path: str = "~/.local/share/margin-watcher/watcher.db"
    history_every: float = Field(default=300.0, gt=0, le=MAX_INTERVAL)  #: store each position this often (s) ...
    history_change_bps: int = Field(default=50, ge=0)  #: ... or when its health moves by this much (bps)
    retention_days: float = Field(default=90.0, gt=0, le=36_500)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        # only what needs no disk; store.open_store checks the file itself when the daemon or the API opens it
        if not v.strip():
            raise ValueError("is empty: give the path of the database file")
        if "\x00" in v:
            raise ValueError("holds a NUL character")
        return v


class TelegramConfig(Delivery):
    """Telegram Bot API delivery."""

    token: SecretRef
    chat_id: str
    base_url: str = "https://api.telegram.org"
    min_interval: float = Field(default=1.0, ge=0, le=MAX_TIMEOUT)
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds per request, the whole answer included
    #: answer /status, /position, /mute ... sent to the bot (long-polls getUpdates); off unless asked for, because a
    #: command can silence alerts and getUpdates fails while the bot has a webhook
    commands: bool = False
    #: chats besides chat_id whose commands are answered; any other chat is ignored (and logged without its text)
    command_chats: list[Annotated[str, Field(min_length=1, max_length=64)]] = []
    #: seconds one getUpdates long poll may wait for a command (Telegram allows up to 50)
    poll_timeout: int = Field(default=25, ge=1, le=50)


class EmailConfig(Delivery):
    """SMTP delivery."""

    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretRef | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds for one whole SMTP conversation


class NotifyConfig(Strict):
    """Delivery channels; where both are configured, each falls back to the other."""

    telegram: TelegramConfig | None = None
    email: EmailConfig | None = None
    #: channels through apprise ([[notify.apprise]]), one per URL (watcher/config/delivery.py)
    apprise: list[AppriseConfig] = []
    #: a failed send is retried after retry_initial seconds, doubling up to retry_max, until it is delivered or a
    #: newer alert for the same position supersedes it: a live alert is never given up
    retry_initial: float = Field(default=2.0, gt=0, le=MAX_INTERVAL)
    retry_max: float = Field(default=300.0, gt=0, le=MAX_INTERVAL)

    @model_validator(mode="after")
    def _retry_order(self) -> NotifyConfig:
        if self.retry_max < self.retry_initial:
            raise ValueError("notify.retry_max must be at least notify.retry_initial")
        check_channels(self)
        return self


class ApiConfig(Strict):
    """The local HTTP API: loopback by default; a bearer token for writes, and for any other bind address."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, lt=65536)  #: 0 picks a free port
    enabled: bool = True  #: serve it from `watcher run` too
    token: SecretRef | None = None
    header_timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds a client has to send its headers
    body_timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds a client has to send a request body
    max_connections: int = Field(default=64, ge=1, le=10_000)  #: open connections at once; the oldest idle goes first


class DeploymentConfig(Strict):
    """A protocol deployment to watch: a protocols/ file by name, or a custom one with its addresses.

    Besides these keys, each protocol takes its own (Morpho's `markets` and `discover`, Maker's `vaults` ...): they
    are declared by the protocol's options model in the registry and checked against it (watcher/config/options.py).
    """

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    protocol: Name  #: also the deployment's name where `name` is not given
    chains: list[str] = Field(min_length=1)
    name: Name | None = None
    adapter: str | None = None
    #: any adapter: the entry contract of a deployment not in protocols/ (or give it by the protocol's own key:
    #: pool_addresses_provider, morpho, comet ...)
    address: Address | None = None
    #: other contracts of a deployment not in protocols/, by the keys its protocols/ file uses (e.g. vat, spot, jug)
    contracts: dict[str, Address] = {}


class VenueAccount(Strict):
    """An account on an off-chain venue whose addresses are not EVM addresses (e.g. dYdX's dydx1...)."""

    address: str
    label: str = ""
    subaccounts: list[Annotated[int, Field(ge=0)]] = [0]  #: dydx_v4: subaccount numbers (128 and up: isolated)


def _check_stale_after(stale_after: float | None, interval: float) -> None:
    # At or under the interval the watchdog would call the source degraded between two good checks, and the next
    # check recovered: two alerts an interval, for ever.
    if stale_after is not None and stale_after <= interval:
        raise ValueError(
            f"stale_after ({stale_after:g} s) must be more than the interval ({interval:g} s), or every wait between "
            "two good checks reads as a stall"
        )


class VenueConfig(Strict):
    """An off-chain perps venue read over its HTTP API (Hyperliquid, dYdX v4's indexer)."""

    protocol: str
    base_url: str | None = None  #: default: the one in protocols/<protocol>.toml; tests point it at 127.0.0.1
    interval: float = Field(default=5.0, gt=0, le=MAX_INTERVAL)  #: seconds between checks
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds per request, the whole answer included
    max_age: float = Field(
        default=120.0, gt=0, le=MAX_INTERVAL
    )  #: seconds: state the venue computed longer ago is stale
    max_response_bytes: int = Field(default=8_000_000, ge=10_000, le=1_000_000_000)  #: bytes one answer may have
    #: seconds without a good read after which the venue is degraded; default: 3 intervals plus the timeout
    stale_after: float | None = Field(default=None, gt=0, le=MAX_INTERVAL)

    def watchdog_after(self) -> float:
        """Seconds without a good read before the venue counts as degraded."""
        return self.stale_after or 3 * self.interval + self.timeout

    @model_validator(mode="after")
    def _stale_after_beyond_interval(self) -> VenueConfig:
        _check_stale_after(self.stale_after, self.interval)
        return self

    accounts: list[VenueAccount] = []  #: dydx_v4 needs its own; hyperliquid defaults to the [[accounts]]


def _account(value: Any) -> str:
    # an ENS name stays a name here; watcher/ens.py resolves it before any reader is built
    return normalize(value) if isinstance(value, str) and is_name(value) else evm_address(value)


class AccountConfig(Strict):
    """An account to watch."""

    address: Annotated[str, BeforeValidator(_account)]  #: a hex address or an ENS name (name.eth)
    label: str = ""
    protocols: list[str] | None = None  #: names of deployments; None watches all


class EnsConfig(Strict):
    """Where ENS names among the accounts are resolved: a chain of [chains] and its ENS registry."""

    chain: Name | None = None  #: default: the chain with chain_id 1
    registry: Address = MAINNET_REGISTRY
    refresh: float = Field(default=86_400.0, gt=0, le=MAX_INTERVAL)  #: seconds between lookups in `watcher run`


class Config(Strict):
    """The whole configuration file."""

    thresholds: Thresholds = Thresholds()
    chains: dict[Name, ChainConfig] = {}
    deployments: list[DeploymentConfig] = []
    venues: dict[Name, VenueConfig] = {}
    accounts: list[AccountConfig] = []
    alerts: AlertsConfig = AlertsConfig()
    storage: StorageConfig = StorageConfig()
    probability: ProbabilityConfig = ProbabilityConfig()
    notify: NotifyConfig = NotifyConfig()
    api: ApiConfig = ApiConfig()
    ens: EnsConfig = EnsConfig()

    def protocol_of(self, deployment: str) -> str:
        """The protocols/ file a deployment or venue was configured from (`aave_v3` for a named Aave fork)."""
        for d in self.deployments:
            if (d.name or d.protocol) == deployment:
                return d.protocol
        venue = self.venues.get(deployment)
        return venue.protocol if venue is not None else deployment

    @field_validator("accounts")
    @classmethod
    def _unique(cls, v: list[AccountConfig]) -> list[AccountConfig]:
        seen: set[str] = set()
        for i, a in enumerate(v):
            if a.address in seen:
                raise ValueError(f"accounts[{i}]: {a.address} is listed twice")
            seen.add(a.address)
        return v

    @model_validator(mode="after")
    def _something_to_watch(self) -> Config:
        if not self.venues:
            for key, val in (("chains", self.chains), ("deployments", self.deployments), ("accounts", self.accounts)):
                if not val:
                    raise ValueError(f"{key}: give at least one (or watch an off-chain venue under [venues])")
        for name in self.venues:
            if name in self.chains:
                raise ValueError(f"venues.{name}: the name is already a chain's; give the venue another")
        return self

    @model_validator(mode="after")
    def _probability_rule(self) -> Config:
        if self.alerts.warn_probability_24h is not None:
            if not self.probability.enabled:
                raise ValueError("alerts.warn_probability_24h: needs probability.enabled = true")
            if 86400.0 not in self.probability.horizons:
                raise ValueError("alerts.warn_probability_24h: needs 86400 (24 h) among probability.horizons")
        return self
