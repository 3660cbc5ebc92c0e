"""Liquity v1 (LUSD) and v2 (BOLD) adapters: troves read in one batch, the liquidation decision replayed exactly.

v1 lives in `v1` (reader) and `v1_math` (the decision under either Stability Pool rule), v2 in `v2`, what both share
in `common`. Importing the package registers both protocols (liquity_v1, liquity_v2); the names below are the ones
`watcher.adapters.liquity` always exported.
"""

from __future__ import annotations

from watcher.adapters.liquity.common import (
    ETH,
    ONE_YEAR,
    V1_MIN_DEBT,
    V1_STATUS,
    V2_LIVE,
    V2_MIN_DEBT,
    V2_STATUS,
    compute_cr,
)
from watcher.adapters.liquity.v1 import LiquityV1Reader, make_reader_v1
from watcher.adapters.liquity.v1_math import (
    RULE_ALL_DEPOSITS,
    RULE_MAX_TO_OFFSET,
    LiquidationPath,
    LiquityV1Simulator,
)
from watcher.adapters.liquity.v2 import LiquityV2Reader, LiquityV2Simulator, V2Branch, make_reader_v2

__all__ = [
    "ETH",
    "ONE_YEAR",
    "RULE_ALL_DEPOSITS",
    "RULE_MAX_TO_OFFSET",
    "V1_MIN_DEBT",
    "V1_STATUS",
    "V2_LIVE",
    "V2_MIN_DEBT",
    "V2_STATUS",
    "LiquidationPath",
    "LiquityV1Reader",
    "LiquityV1Simulator",
    "LiquityV2Reader",
    "LiquityV2Simulator",
    "V2Branch",
    "compute_cr",
    "make_reader_v1",
    "make_reader_v2",
]
