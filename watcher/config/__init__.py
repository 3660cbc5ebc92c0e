"""Configuration: TOML, validated with pydantic; every error names the key and the bad value.

values.py holds the value types and secrets by reference, models.py the tables, options.py each protocol's own
[[deployments]] keys, deployments.py their resolution against protocols/, load.py the file, errors.py the wording,
secrets.py every secret a command needs, checked at once.
"""

from watcher.config.deployments import Deployment, Venue, Where, resolve_deployments, resolve_venues
from watcher.config.errors import ConfigError, format_validation_error
from watcher.config.load import load_config, parse_config
from watcher.config.models import (
    BLOCK_TIMES,
    AccountConfig,
    AlertsConfig,
    ApiConfig,
    ChainConfig,
    Config,
    DeploymentConfig,
    EmailConfig,
    NotifyConfig,
    Override,
    StorageConfig,
    TelegramConfig,
    Thresholds,
    VenueAccount,
    VenueConfig,
)
from watcher.config.options import ProtocolOptions
from watcher.config.secrets import require_secrets
from watcher.config.values import (
    DEFAULT_MAX_RESPONSE_BYTES,
    MAX_CONFIG_BYTES,
    MAX_INTERVAL,
    MAX_SECRET_BYTES,
    MAX_TIMEOUT,
    Address,
    Health,
    MarketId,
    Name,
    SecretRef,
    read_secret_file,
)

__all__ = [
    "BLOCK_TIMES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_INTERVAL",
    "MAX_SECRET_BYTES",
    "MAX_TIMEOUT",
    "AccountConfig",
    "Address",
    "AlertsConfig",
    "ApiConfig",
    "ChainConfig",
    "Config",
    "ConfigError",
    "Deployment",
    "DeploymentConfig",
    "EmailConfig",
    "Health",
    "MarketId",
    "Name",
    "NotifyConfig",
    "Override",
    "ProtocolOptions",
    "SecretRef",
    "StorageConfig",
    "TelegramConfig",
    "Thresholds",
    "Venue",
    "VenueAccount",
    "VenueConfig",
    "Where",
    "format_validation_error",
    "load_config",
    "parse_config",
    "read_secret_file",
    "require_secrets",
    "resolve_deployments",
    "resolve_venues",
]
