"""Liquity v1 and v2 shared: the ABIs both read, LiquityMath._computeCR, status names and gas allowances."""

from __future__ import annotations

from watcher.abi import Contract
from watcher.model import MAX_UINT256, WAD

V1_TM = Contract("ILiquityV1TroveManager")
V1_FEED = Contract("ILiquityV1PriceFeed")
V1_SP = Contract("ILiquityV1StabilityPool")
ERC20 = Contract("IERC20Metadata")
V2_CR = Contract("ILiquityV2CollateralRegistry")
V2_TM = Contract("ILiquityV2TroveManager")
V2_BO = Contract("ILiquityV2BorrowerOperations")
V2_NFT = Contract("ILiquityV2TroveNFT")

#: the usual stand-in address for native ETH (v1's collateral is ether itself, not a token)
ETH = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"
ONE_YEAR = 365 * 24 * 3600
V1_STATUS = ("nonExistent", "active", "closedByOwner", "closedByLiquidation", "closedByRedemption")
V2_STATUS = ("nonExistent", "active", "closedByOwner", "closedByLiquidation", "zombie")
V2_LIVE = (1, 4)  #: active, zombie: the statuses batchLiquidateTroves considers
CHEAP, TROVE, PRICE = 10_000, 40_000, 250_000
#: v1 LiquityBase constants (immutable contracts): MIN_NET_DEBT 1800 LUSD + LUSD_GAS_COMPENSATION 200 LUSD, the least
#: debt a repayment may leave (BorrowerOperations._requireAtLeastMinNetDebt)
V1_MIN_DEBT = 1_800 * WAD + 200 * WAD
#: v2 Constants.MIN_DEBT (every branch): repayBold caps a repayment at entireDebt - MIN_DEBT
V2_MIN_DEBT = 2_000 * WAD


def compute_cr(coll: int, debt: int, price: int) -> int:
    """LiquityMath._computeCR: floor(coll * price / debt); 2**256-1 ("infinite") without debt."""
    return coll * price // debt if debt > 0 else MAX_UINT256


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling of a / b."""
    return -(-a // b)


def word_bool(w: int) -> bool:
    """An ABI bool word; anything but 0 or 1 is malformed."""
    if w > 1:
        raise ValueError(f"word {w} is not a bool")
    return bool(w)
