"""Deploys a real Aave v3.0 or v3.6 market (npm artifacts / sources) on a local chain and opens positions.

Modules: specs (versions, reserves, positions, gas), artifacts (the contracts by role), plan (batched deployment
transactions), market (AaveMarket), deployment (deploy_aave). The names below are re-exported here.
"""

from __future__ import annotations

from watcher.devchain.aave.artifacts import Artifact, aave_artifacts
from watcher.devchain.aave.deployment import deploy_aave
from watcher.devchain.aave.market import AaveMarket
from watcher.devchain.aave.specs import EMODE_STABLECOINS, RESERVES, VERSIONS, EModeSpec, PositionSpec, ReserveSpec
from watcher.devchain.deploy import advance_time, deploy_batch_reader

__all__ = [
    "EMODE_STABLECOINS",
    "RESERVES",
    "VERSIONS",
    "AaveMarket",
    "Artifact",
    "EModeSpec",
    "PositionSpec",
    "ReserveSpec",
    "aave_artifacts",
    "advance_time",
    "deploy_aave",
    "deploy_batch_reader",
]
