"""Configuration: TOML, validated with pydantic; every error names the key and the bad value."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from eth_utils import is_checksum_address, is_hex_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from watcher.chain import DEFAULT_GAS_BUDGET, MULTICALL3_ADDRESS
from watcher.model import WAD
from watcher.resources import protocol_files


class ConfigError(Exception):
    """A configuration problem, worded for the user: it names the key and the bad value."""


def _address(value: Any) -> str:
    if isinstance(value, str) and "://" in value:
        raise ValueError("a URL is not an address")  # and it may hold an API key: do not echo it
    if not isinstance(value, str) or not is_hex_address(value):
        raise ValueError(f"{value!r} is not a 20-byte hex address")
    if value != value.lower() and value[2:] != value[2:].upper() and not is_checksum_address(value):
        raise ValueError(f"{value!r} fails its EIP-55 checksum (expected {to_checksum_address(value)})")
    return to_checksum_address(value)


def _health(value: Any) -> int:
    """A health factor written as 1.25 or "1.25", held as an exact WAD integer."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not d.is_finite() or d <= 0:
        raise ValueError(f"{value!r} must be a positive number")
    return int(d * WAD)


Address = Annotated[str, BeforeValidator(_address)]


def _market_id(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        raise ValueError(f"{value!r} is not a market id (0x and 64 hex digits)")
    return value.lower()


Health = Annotated[int, BeforeValidator(_health)]

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _shown(value: str, limit: int = 40) -> str:
    """A user's string, quoted on one line and cut short: fit for an error message."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _name(value: str) -> str:
    # chain, venue and deployment names go into alert ids and API URLs (`/positions/{key}`): keep them URL-safe
    if not _NAME.fullmatch(value) or not value.strip("."):
        raise ValueError(
            f"{_shown(value)} is not a valid name: use 1 to 64 letters, digits, '_', '.' or '-' "
            "(names go into alert ids and URLs)"
        )
    return value


Name = Annotated[str, AfterValidator(_name)]


class _Strict(BaseModel):
    # inf and nan are never meaningful here (an `interval = inf` once reached the scheduler as an internal error)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: Upper bounds for durations, so a typo like 1e308 is a config error rather than a request that never times out.
MAX_TIMEOUT = 600.0
MAX_INTERVAL = 86_400.0
#: Default cap on one JSON-RPC answer: a 50M-gas eth_call returns at most ~5 MB (memory gas), ~10 MB as hex.
DEFAULT_MAX_RESPONSE_BYTES = 16_000_000


class SecretRef(_Strict):
    """A secret given by indirection: an environment variable or a file; never written in the config."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def resolve(self, where: str) -> str:
        """The secret's value; the error names where it was asked for, never the value."""
        if self.env is not None:
            try:
                val = os.environ.get(self.env)
            except ValueError:  # a NUL in the name
                val = None
            if not val:
                raise ConfigError(f"{where}: environment variable {self.env} is not set")
            return val.strip()
        return read_secret_file(str(self.file), where)


#: A secret is a token or a password: anything larger is the wrong file.
MAX_SECRET_BYTES = 64 * 1024
#: A config file is a few kilobytes; this bounds what a wrong path (a device, a log) can make us read.
MAX_CONFIG_BYTES = 1024 * 1024


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def read_secret_file(name: str, where: str) -> str:
    """A secret file's text, stripped; every problem is one ConfigError naming `where` and the path, never the content.

    Only a regular file of at most 64 KiB is read: a FIFO, a device or a directory could block or never end.
    """
    if not name or "\x00" in name:
        raise ConfigError(f"{where}: give the path of the secret file")
    path = Path(os.path.expanduser(name))
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: secret file {path} is {_file_kind(st.st_mode)}, not a regular file")
    if st.st_size > MAX_SECRET_BYTES:
        raise ConfigError(f"{where}: secret file {path} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        # O_NONBLOCK: a FIFO swapped in after the stat above must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: secret file {path} is {_file_kind(st.st_mode)}, not a regular file")
        chunks, size = [], 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_SECRET_BYTES:  # it grew after the stat
        raise ConfigError(f"{where}: secret file {path} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        # neither the byte nor its offset: both are part of the secret
        raise ConfigError(f"{where}: secret file {path} is not UTF-8 text") from None
    value = text.strip()
    if not value:
        raise ConfigError(f"{where}: secret file {path} is empty")
    return value


class Thresholds(_Strict):
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


class ChainConfig(_Strict):
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


class Override(_Strict):
    """Thresholds for one account, optionally narrowed to one deployment and chain (a position)."""

    account: Address
    protocol: str | None = None
    chain: str | None = None
    warn: Health | None = None
    critical: Health | None = None


class AlertsConfig(_Strict):
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
    overrides: list[Override] = []


class StorageConfig(_Strict):
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


class TelegramConfig(_Strict):
    """Telegram Bot API delivery."""

    token: SecretRef
    chat_id: str
    base_url: str = "https://api.telegram.org"
    min_interval: float = Field(default=1.0, ge=0, le=MAX_TIMEOUT)
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds per request, the whole answer included


class EmailConfig(_Strict):
    """SMTP delivery."""

    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretRef | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds for one whole SMTP conversation


class NotifyConfig(_Strict):
    """Delivery channels; where both are configured, each falls back to the other."""

    telegram: TelegramConfig | None = None
    email: EmailConfig | None = None
    #: a failed send is retried after retry_initial seconds, doubling up to retry_max, until it is delivered or a
    #: newer alert for the same position supersedes it: a live alert is never given up
    retry_initial: float = Field(default=2.0, gt=0, le=MAX_INTERVAL)
    retry_max: float = Field(default=300.0, gt=0, le=MAX_INTERVAL)

    @model_validator(mode="after")
    def _retry_order(self) -> NotifyConfig:
        if self.retry_max < self.retry_initial:
            raise ValueError("notify.retry_max must be at least notify.retry_initial")
        return self


class ApiConfig(_Strict):
    """The local HTTP API: loopback by default; a bearer token for writes, and for any other bind address."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, lt=65536)  #: 0 picks a free port
    enabled: bool = True  #: serve it from `watcher run` too
    token: SecretRef | None = None
    header_timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds a client has to send its headers
    body_timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds a client has to send a request body
    max_connections: int = Field(default=64, ge=1, le=10_000)  #: open connections at once; the oldest idle goes first


class DeploymentConfig(_Strict):
    """A protocol deployment to watch: a protocols/ file by name, or a custom one with its addresses."""

    protocol: Name  #: also the deployment's name where `name` is not given
    chains: list[str] = Field(min_length=1)
    name: Name | None = None
    adapter: str | None = None
    pool_addresses_provider: Address | None = None  #: aave_v3: a deployment not in protocols/
    morpho: Address | None = None  #: morpho_blue: the Morpho contract, for a deployment not in protocols/
    comet: Address | None = None  #: compound_v3: one Comet market not in protocols/
    address: Address | None = None  #: any adapter: the entry contract of a deployment not in protocols/
    #: other contracts of a deployment not in protocols/, by the keys its protocols/ file uses (e.g. vat, spot, jug)
    contracts: dict[str, Address] = {}
    markets: list[str] = []  #: morpho_blue: market ids; compound_v3: market names from protocols/ (default all)
    #: morpho_blue: also find the markets the accounts supplied collateral to or borrowed from, scanning the
    #: Morpho's logs from its deployment block (or from `discover_from_block`)
    discover: bool = False
    discover_from_block: int | None = Field(default=None, ge=0)
    vaults: list[Annotated[int, Field(ge=0)]] = []  #: maker: vault ids besides those the accounts own
    troves: list[Annotated[int, Field(ge=0)]] = []  #: liquity_v2: trove ids besides those the accounts own
    account_ids: list[Annotated[int, Field(ge=0)]] = []  #: synthetix_perps_v3: perps account ids


class VenueAccount(_Strict):
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


class VenueConfig(_Strict):
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


class AccountConfig(_Strict):
    """An account to watch."""

    address: Address
    label: str = ""
    protocols: list[str] | None = None  #: names of deployments; None watches all


class Config(_Strict):
    """The whole configuration file."""

    thresholds: Thresholds = Thresholds()
    chains: dict[Name, ChainConfig] = {}
    deployments: list[DeploymentConfig] = []
    venues: dict[Name, VenueConfig] = {}
    accounts: list[AccountConfig] = []
    alerts: AlertsConfig = AlertsConfig()
    storage: StorageConfig = StorageConfig()
    notify: NotifyConfig = NotifyConfig()
    api: ApiConfig = ApiConfig()

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


class Deployment(BaseModel):
    """A resolved deployment: which adapter reads it, on which chain, at which address."""

    name: str
    adapter: str
    chain: str
    chain_id: int
    address: str  #: the entry contract: Aave's PoolAddressesProvider, the Morpho singleton, a Comet, ...
    markets: list[str] = []
    market: str = ""  #: the market's name in protocols/ where a protocol has one contract per market (Compound)
    vaults: list[int] = []  #: maker: vault (cdp) ids to watch besides those the accounts own
    troves: list[int] = []  #: liquity_v2: trove ids to watch besides those the accounts own
    account_ids: list[int] = []  #: synthetix_perps_v3: the perps account (NFT) ids to watch
    discover_from: int | None = None  #: morpho_blue: scan logs from this block for the accounts' markets
    extra: dict[str, str] = {}  #: other addresses from the protocols/ entry (checksummed), by key

    @property
    def pool_addresses_provider(self) -> str:
        """The Aave entry contract (the same as `address`)."""
        return self.address


_NOT_ADDRESSES = {"chain_id", "market", "title", "adapter", "note", "base_url", "deployed_at"}


def _extra(entry: dict[str, Any], key: str, where: str) -> dict[str, str]:
    """The entry's other addresses (a Maker Vat, a GMX DataStore ...), checksummed."""
    out = {}
    for k, v in entry.items():
        if k in _NOT_ADDRESSES or k == key or not isinstance(v, str):
            continue
        try:
            out[k] = _address(v)
        except ValueError as exc:
            raise ConfigError(f"{where}.{k}: {exc}") from None
    return out


def resolve_deployments(cfg: Config) -> list[Deployment]:
    """Match each [[deployments]] entry with protocols/ and the configured chains."""
    from watcher.registry import chain_protocols, venue_protocols

    files = protocol_files()
    chain_adapters, venue_adapters = chain_protocols(), venue_protocols()
    out: list[Deployment] = []
    for i, d in enumerate(cfg.deployments):
        where = f"deployments[{i}]"
        spec = files.get(d.protocol)
        adapter = d.adapter or (spec or {}).get("adapter")
        given = d.address or d.pool_addresses_provider or d.morpho or d.comet
        if spec is None and given is None:
            known = ", ".join(sorted(k for k, v in files.items() if v.get("adapter") in chain_adapters))
            raise ConfigError(f"{where}.protocol: unknown protocol {d.protocol!r} (known: {known})")
        if adapter in venue_adapters:
            raise ConfigError(f"{where}.protocol: {d.protocol} is an off-chain venue: configure it under [venues]")
        if adapter not in chain_adapters:
            raise ConfigError(f"{where}.adapter: unknown adapter {adapter!r} (known: {', '.join(chain_adapters)})")
        key = chain_adapters[adapter].entry_key
        morpho_markets: list[str] = []
        if adapter == "morpho_blue":
            for j, m in enumerate(d.markets):
                try:
                    morpho_markets.append(_market_id(m))
                except ValueError as exc:
                    raise ConfigError(f"{where}.markets[{j}]: {exc}") from None
            if not d.markets and not d.discover:
                raise ConfigError(
                    f"{where}.markets: give the ids of the Morpho Blue markets to watch, or set discover = true"
                )
        for chain in d.chains:
            if chain not in cfg.chains:
                raise ConfigError(f"{where}.chains: unknown chain {chain!r} (configured: {', '.join(cfg.chains)})")
            chain_id = cfg.chains[chain].chain_id
            entries: list[tuple[str, dict[str, Any]]]
            if given is not None:
                entries = [("custom", {key: given})]
            else:
                assert spec is not None
                entries = [
                    (n, v) for n, v in spec.get("deployments", {}).items() if v.get("chain_id") == chain_id and key in v
                ]
                if not entries:
                    raise ConfigError(
                        f"{where}: protocols/{d.protocol}.toml has no deployment on chain id {chain_id} "
                        f"(chains.{chain}); give {key} for a custom one"
                    )
                if adapter == "compound_v3" and d.markets:
                    # Compound v3 has one Comet per base asset: `markets` picks them by name (USDC, WETH ...)
                    names = {str(v.get("market", "")).upper() for _, v in entries}
                    for j, m in enumerate(d.markets):
                        if m.upper() not in names:
                            raise ConfigError(
                                f"{where}.markets[{j}]: no {d.protocol} market {m!r} on chains.{chain} "
                                f"(known: {', '.join(sorted(names))})"
                            )
                    entries = [
                        (n, v) for n, v in entries if str(v.get("market", "")).upper() in map(str.upper, d.markets)
                    ]
            for entry_name, entry in entries:
                discover_from = None
                if adapter == "morpho_blue" and d.discover:
                    discover_from = d.discover_from_block
                    if discover_from is None:
                        discover_from = entry.get("deployed_at")
                    if not isinstance(discover_from, int):
                        raise ConfigError(
                            f"{where}.discover_from_block: give the block to scan the Morpho's logs from (its "
                            "deployment block; protocols/ knows it only for the deployments it lists)"
                        )
                out.append(
                    Deployment(
                        name=d.name or d.protocol,
                        adapter=adapter,
                        chain=chain,
                        chain_id=chain_id,
                        address=to_checksum_address(entry[key]),
                        markets=morpho_markets,
                        market=str(entry.get("market", "")),
                        vaults=list(d.vaults),
                        troves=list(d.troves),
                        account_ids=list(d.account_ids),
                        discover_from=discover_from,
                        extra=_extra(entry, key, f"protocols/{d.protocol}.toml deployments.{entry_name}")
                        | dict(d.contracts),
                    )
                )
    names = {dep.name for dep in out} | set(cfg.venues)
    for i, a in enumerate(cfg.accounts):
        for p in a.protocols or []:
            if p not in names:
                raise ConfigError(
                    f"accounts[{i}].protocols: unknown deployment {p!r} (configured: {', '.join(sorted(names))})"
                )
    return out


class Venue(BaseModel):
    """A resolved off-chain venue: its adapter, base URL and accounts."""

    name: str
    adapter: str
    base_url: str
    interval: float
    timeout: float
    max_age: float
    max_response_bytes: int = 8_000_000
    accounts: list[VenueAccount]


def resolve_venues(cfg: Config) -> list[Venue]:
    """Each [venues.<name>] with its base URL (default from protocols/) and accounts, validated for its adapter."""
    from watcher.registry import venue_protocols

    files = protocol_files()
    venue_adapters = venue_protocols()
    out = []
    for name, v in cfg.venues.items():
        where = f"venues.{name}"
        spec = files.get(v.protocol, {})
        adapter = spec.get("adapter")
        if adapter not in venue_adapters:
            known = ", ".join(sorted(k for k, f in files.items() if f.get("adapter") in venue_adapters))
            raise ConfigError(f"{where}.protocol: {v.protocol!r} is not an off-chain venue (known: {known})")
        base_url = v.base_url or spec.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.base_url: give an http(s) URL")  # never echoed: it may carry a key
        accounts = list(v.accounts)
        if adapter == "hyperliquid":
            if not accounts:
                accounts = [
                    VenueAccount(address=a.address, label=a.label)
                    for a in cfg.accounts
                    if a.protocols is None or name in a.protocols
                ]
            for j, acct in enumerate(accounts):
                try:
                    accounts[j] = acct.model_copy(update={"address": _address(acct.address)})
                except ValueError as exc:
                    raise ConfigError(f"{where}.accounts[{j}].address: {exc}") from None
        elif adapter == "dydx_v4":
            from watcher.adapters.dydx_v4 import validate_address

            for j, acct in enumerate(accounts):
                try:
                    accounts[j] = acct.model_copy(update={"address": validate_address(acct.address)})
                except ValueError as exc:
                    raise ConfigError(f"{where}.accounts[{j}].address: {exc}") from None
        if not accounts:
            raise ConfigError(f"{where}.accounts: no account to watch on this venue")
        out.append(
            Venue(
                name=name,
                adapter=adapter,
                base_url=base_url,
                interval=v.interval,
                timeout=v.timeout,
                max_age=v.max_age,
                max_response_bytes=v.max_response_bytes,
                accounts=accounts,
            )
        )
    return out


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if i + 1 < len(loc) and loc[i + 1] == "[key]":
            continue  # a bad table name: the message quotes it, and it may not be printable here
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "SecretRef", "function-after[_one(), SecretRef]") or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _may_hold_secret(loc: str, value: Any) -> bool:
    """RPC URLs carry API keys: never echo them, nor anything that looks like a URL."""
    return "rpc_urls" in loc or "://" in repr(value)


#: pydantic's wording, and ours: "chains.x.timeout: must be at most 600 (got 1e+308)"
_REWORDED = (
    ("Input should be less than or equal to ", "must be at most "),
    ("Input should be greater than or equal to ", "must be at least "),
    ("Input should be ", "must be "),
)


def _reworded(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    for old, new in _REWORDED:
        if msg.startswith(old):
            return new + msg.removeprefix(old)
    return msg


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: key, message, value."""
    lines = []
    for err in exc.errors():
        loc = _fmt_loc(tuple(err["loc"]))
        msg = _reworded(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key (a typo?)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error",) and not _may_hold_secret(loc, err["input"]):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(dict.fromkeys(lines))


def parse_config(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; errors carry the file name."""
    p = Path(path)
    try:
        # bounded, so a wrong path (/dev/zero, a log) is an error rather than all of memory; pipes stay allowed
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
