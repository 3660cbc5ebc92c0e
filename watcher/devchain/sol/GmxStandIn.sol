// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title GMX v2 stand-ins
/// @notice Test stand-ins written for Margin Watcher, NOT GMX's contracts. GmxDataStoreStandIn keeps values under the
///         same bytes32 keys as GMX's Keys.sol (keccak256(abi.encode(NAME, ...))); GmxReaderStandIn exposes the view
///         functions the watcher reads (getMarket, getAccountPositions, getAccountPositionInfoList) with GMX v2.2's
///         struct shapes, and a stand-in isPositionLiquidatable that follows v2.2 PositionUtils.isPositionLiquidatable:
///         remaining = collateral*price.min + pnl + capped impact - fees*price.min against MIN_COLLATERAL_USD, <= 0
///         and size * MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION (or MIN_COLLATERAL_FACTOR when not forLiquidation).
///         Positive pnl is capped by the pool as in GMX's PositionUtils.getPositionPnlUsd (MAX_PNL_FACTOR_FOR_TRADERS
///         of the pnl token's pool USD against the side's pool pnl from OPEN_INTEREST and OPEN_INTEREST_IN_TOKENS).
///         Pending borrowing and funding accrue since their last update as in MarketUtils, priced by the prices passed
///         in: borrowing per second = BORROWING_FACTOR * reservedUsd / poolUsd (reservedUsd: a long side's
///         OPEN_INTEREST_IN_TOKENS * index price.max, a short side's OPEN_INTEREST; poolUsd: POOL_AMOUNT of the side's
///         token * its price.min), over the seconds since CUMULATIVE_BORROWING_FACTOR_UPDATED_AT; funding per second =
///         FUNDING_FACTOR * |longOI - shortOI| / totalOI on the larger side's size since FUNDING_UPDATED_AT, split by
///         collateral and turned into collateral token amounts per size at that token's price.max (rounded up).
///         Simplifications, all on state the watcher reads rather than replays: the borrowing and funding exponents are
///         1 (GMX applies BORROWING_EXPONENT_FACTOR and FUNDING_EXPONENT_FACTOR), no kink borrowing model, no adaptive
///         funding, no SKIP_BORROWING_FEE_FOR_SMALLER_SIDE, claimable funding is not reported, positive impact is not
///         capped by the impact pool (only by MAX_POSITION_IMPACT_FACTOR), no referral storage, and the price impact
///         exponent is an exact square (GMX evaluates x^e with PRBMath pow).

struct MarketProps {
    address marketToken;
    address indexToken;
    address longToken;
    address shortToken;
}

struct PriceProps {
    uint256 min;
    uint256 max;
}

struct MarketPrices {
    PriceProps indexTokenPrice;
    PriceProps longTokenPrice;
    PriceProps shortTokenPrice;
}

struct PositionAddresses {
    address account;
    address market;
    address collateralToken;
}

struct PositionNumbers {
    uint256 sizeInUsd;
    uint256 sizeInTokens;
    uint256 collateralAmount;
    int256 pendingImpactAmount;
    uint256 borrowingFactor;
    uint256 fundingFeeAmountPerSize;
    uint256 longTokenClaimableFundingAmountPerSize;
    uint256 shortTokenClaimableFundingAmountPerSize;
    uint256 increasedAtTime;
    uint256 decreasedAtTime;
}

struct PositionFlags {
    bool isLong;
}

struct PositionProps {
    PositionAddresses addresses;
    PositionNumbers numbers;
    PositionFlags flags;
}

struct PositionReferralFees {
    bytes32 referralCode;
    address affiliate;
    address trader;
    uint256 totalRebateFactor;
    uint256 affiliateRewardFactor;
    uint256 adjustedAffiliateRewardFactor;
    uint256 traderDiscountFactor;
    uint256 totalRebateAmount;
    uint256 traderDiscountAmount;
    uint256 affiliateRewardAmount;
}

struct PositionProFees {
    uint256 traderTier;
    uint256 traderDiscountFactor;
    uint256 traderDiscountAmount;
}

struct PositionFundingFees {
    uint256 fundingFeeAmount;
    uint256 claimableLongTokenAmount;
    uint256 claimableShortTokenAmount;
    uint256 latestFundingFeeAmountPerSize;
    uint256 latestLongTokenClaimableFundingAmountPerSize;
    uint256 latestShortTokenClaimableFundingAmountPerSize;
}

struct PositionBorrowingFees {
    uint256 borrowingFeeUsd;
    uint256 borrowingFeeAmount;
    uint256 borrowingFeeReceiverFactor;
    uint256 borrowingFeeAmountForFeeReceiver;
}

struct PositionUiFees {
    address uiFeeReceiver;
    uint256 uiFeeReceiverFactor;
    uint256 uiFeeAmount;
}

struct PositionLiquidationFees {
    uint256 liquidationFeeUsd;
    uint256 liquidationFeeAmount;
    uint256 liquidationFeeReceiverFactor;
    uint256 liquidationFeeAmountForFeeReceiver;
}

struct PositionFees {
    PositionReferralFees referral;
    PositionProFees pro;
    PositionFundingFees funding;
    PositionBorrowingFees borrowing;
    PositionUiFees ui;
    PositionLiquidationFees liquidation;
    PriceProps collateralTokenPrice;
    uint256 positionFeeFactor;
    uint256 protocolFeeAmount;
    uint256 positionFeeReceiverFactor;
    uint256 feeReceiverAmount;
    uint256 feeAmountForPool;
    uint256 positionFeeAmountForPool;
    uint256 positionFeeAmount;
    uint256 totalCostAmountExcludingFunding;
    uint256 totalCostAmount;
    uint256 totalDiscountAmount;
}

struct ExecutionPriceResult {
    int256 priceImpactUsd;
    uint256 executionPrice;
    bool balanceWasImproved;
    int256 proportionalPendingImpactUsd;
    int256 totalImpactUsd;
    uint256 priceImpactDiffUsd;
}

struct PositionInfo {
    bytes32 positionKey;
    PositionProps position;
    PositionFees fees;
    ExecutionPriceResult executionPriceResult;
    int256 basePnlUsd;
    int256 uncappedBasePnlUsd;
    int256 pnlAfterPriceImpactUsd;
}

struct IsPositionLiquidatableInfo {
    int256 remainingCollateralUsd;
    int256 minCollateralUsd;
    int256 minCollateralUsdForLeverage;
}

/// @notice Keys as GMX's Keys.sol derives them: keccak256(abi.encode(NAME)) then keccak256(abi.encode(base, ...)).
library GmxStandInKeys {
    bytes32 internal constant MIN_COLLATERAL_USD = keccak256(abi.encode("MIN_COLLATERAL_USD"));
    bytes32 internal constant MIN_COLLATERAL_FACTOR = keccak256(abi.encode("MIN_COLLATERAL_FACTOR"));
    bytes32 internal constant MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION =
        keccak256(abi.encode("MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION"));
    bytes32 internal constant MAX_POSITION_IMPACT_FACTOR = keccak256(abi.encode("MAX_POSITION_IMPACT_FACTOR"));
    bytes32 internal constant MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS =
        keccak256(abi.encode("MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS"));
    bytes32 internal constant POSITION_IMPACT_FACTOR = keccak256(abi.encode("POSITION_IMPACT_FACTOR"));
    bytes32 internal constant POSITION_FEE_FACTOR = keccak256(abi.encode("POSITION_FEE_FACTOR"));
    bytes32 internal constant PRO_TRADER_TIER = keccak256(abi.encode("PRO_TRADER_TIER"));
    bytes32 internal constant PRO_DISCOUNT_FACTOR = keccak256(abi.encode("PRO_DISCOUNT_FACTOR"));
    bytes32 internal constant OPEN_INTEREST = keccak256(abi.encode("OPEN_INTEREST"));
    bytes32 internal constant OPEN_INTEREST_IN_TOKENS = keccak256(abi.encode("OPEN_INTEREST_IN_TOKENS"));
    bytes32 internal constant POOL_AMOUNT = keccak256(abi.encode("POOL_AMOUNT"));
    bytes32 internal constant MAX_PNL_FACTOR = keccak256(abi.encode("MAX_PNL_FACTOR"));
    bytes32 internal constant MAX_PNL_FACTOR_FOR_TRADERS = keccak256(abi.encode("MAX_PNL_FACTOR_FOR_TRADERS"));
    bytes32 internal constant CUMULATIVE_BORROWING_FACTOR = keccak256(abi.encode("CUMULATIVE_BORROWING_FACTOR"));
    bytes32 internal constant FUNDING_FEE_AMOUNT_PER_SIZE = keccak256(abi.encode("FUNDING_FEE_AMOUNT_PER_SIZE"));
    bytes32 internal constant CUMULATIVE_BORROWING_FACTOR_UPDATED_AT =
        keccak256(abi.encode("CUMULATIVE_BORROWING_FACTOR_UPDATED_AT"));
    bytes32 internal constant BORROWING_FACTOR = keccak256(abi.encode("BORROWING_FACTOR"));
    bytes32 internal constant FUNDING_UPDATED_AT = keccak256(abi.encode("FUNDING_UPDATED_AT"));
    bytes32 internal constant FUNDING_FACTOR = keccak256(abi.encode("FUNDING_FACTOR"));

    function market(bytes32 base, address m) internal pure returns (bytes32) {
        return keccak256(abi.encode(base, m));
    }

    function marketBool(bytes32 base, address m, bool b) internal pure returns (bytes32) {
        return keccak256(abi.encode(base, m, b));
    }

    function openInterest(address m, address collateral, bool isLong) internal pure returns (bytes32) {
        return keccak256(abi.encode(OPEN_INTEREST, m, collateral, isLong));
    }

    function openInterestInTokens(address m, address collateral, bool isLong) internal pure returns (bytes32) {
        return keccak256(abi.encode(OPEN_INTEREST_IN_TOKENS, m, collateral, isLong));
    }

    function poolAmount(address m, address token) internal pure returns (bytes32) {
        return keccak256(abi.encode(POOL_AMOUNT, m, token));
    }

    function maxPnlFactor(bytes32 pnlFactorType, address m, bool isLong) internal pure returns (bytes32) {
        return keccak256(abi.encode(MAX_PNL_FACTOR, pnlFactorType, m, isLong));
    }

    function fundingFeeAmountPerSize(address m, address collateral, bool isLong) internal pure returns (bytes32) {
        return keccak256(abi.encode(FUNDING_FEE_AMOUNT_PER_SIZE, m, collateral, isLong));
    }
}

/// @notice Stand-in for GMX's DataStore: typed values by bytes32 key, plus the stand-in's own position and market
///         storage (GMX keeps those in the DataStore too, under PositionStoreUtils/MarketStoreUtils keys).
contract GmxDataStoreStandIn {
    address public immutable admin;
    mapping(bytes32 => uint256) internal uintValues;
    mapping(bytes32 => int256) internal intValues;
    mapping(bytes32 => address) internal addressValues;
    mapping(bytes32 => bool) internal boolValues;
    mapping(bytes32 => PositionProps) internal positions;
    mapping(address => bytes32[]) internal accountPositionKeys;
    mapping(address => MarketProps) internal markets;

    constructor() {
        admin = msg.sender;
    }

    modifier onlyAdmin() {
        require(msg.sender == admin, "stand-in: not admin");
        _;
    }

    function getUint(bytes32 key) external view returns (uint256) {
        return uintValues[key];
    }

    function getInt(bytes32 key) external view returns (int256) {
        return intValues[key];
    }

    function getAddress(bytes32 key) external view returns (address) {
        return addressValues[key];
    }

    function getBool(bytes32 key) external view returns (bool) {
        return boolValues[key];
    }

    function setUint(bytes32 key, uint256 value) external onlyAdmin {
        uintValues[key] = value;
    }

    function setInt(bytes32 key, int256 value) external onlyAdmin {
        intValues[key] = value;
    }

    function setAddress(bytes32 key, address value) external onlyAdmin {
        addressValues[key] = value;
    }

    function setBool(bytes32 key, bool value) external onlyAdmin {
        boolValues[key] = value;
    }

    // --- stand-in storage for markets and positions (tests only)

    function setMarket(MarketProps calldata m) external onlyAdmin {
        markets[m.marketToken] = m;
    }

    function standInMarket(address key) external view returns (MarketProps memory) {
        return markets[key];
    }

    function setPosition(PositionProps calldata p) external onlyAdmin {
        bytes32 key = keccak256(
            abi.encode(p.addresses.account, p.addresses.market, p.addresses.collateralToken, p.flags.isLong)
        );
        if (positions[key].addresses.account == address(0)) {
            accountPositionKeys[p.addresses.account].push(key);
        }
        positions[key] = p;
    }

    function standInPosition(bytes32 key) external view returns (PositionProps memory) {
        return positions[key];
    }

    function standInAccountPositionKeys(address account) external view returns (bytes32[] memory) {
        return accountPositionKeys[account];
    }
}

/// @notice Stand-in Chainlink-style feed: latestRoundData with a settable answer (what GMX registers under PRICE_FEED).
contract GmxPriceFeedStandIn {
    address public immutable admin;
    uint8 public immutable decimals;
    int256 internal answer;
    uint256 internal updatedAt;
    bool internal broken;

    constructor(uint8 decimals_, int256 answer_) {
        admin = msg.sender;
        decimals = decimals_;
        answer = answer_;
        updatedAt = block.timestamp;
    }

    function setAnswer(int256 answer_) external {
        require(msg.sender == admin, "stand-in: not admin");
        answer = answer_;
        updatedAt = block.timestamp;
    }

    function setBroken(bool broken_) external {
        require(msg.sender == admin, "stand-in: not admin");
        broken = broken_;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        require(!broken, "stand-in: feed down");
        return (1, answer, updatedAt, updatedAt, 1);
    }
}

/// @notice Stand-in for GMX's Reader: stateless views over a GmxDataStoreStandIn, v2.2 struct shapes.
contract GmxReaderStandIn {
    uint256 internal constant FLOAT_PRECISION = 1e30;
    uint256 internal constant FLOAT_PRECISION_SQRT = 1e15;

    function getMarket(GmxDataStoreStandIn dataStore, address key) public view returns (MarketProps memory) {
        return dataStore.standInMarket(key);
    }

    function getAccountPositions(GmxDataStoreStandIn dataStore, address account, uint256 start, uint256 end)
        external
        view
        returns (PositionProps[] memory out)
    {
        bytes32[] memory keys = _slice(dataStore.standInAccountPositionKeys(account), start, end);
        out = new PositionProps[](keys.length);
        for (uint256 i; i < keys.length; i++) {
            out[i] = dataStore.standInPosition(keys[i]);
        }
    }

    function getAccountPositionInfoList(
        GmxDataStoreStandIn dataStore,
        address, /* referralStorage: the stand-in has no referral program */
        address account,
        address[] memory markets,
        MarketPrices[] memory marketPrices,
        address, /* uiFeeReceiver: ui fees are zero as for address(0) */
        uint256 start,
        uint256 end
    ) external view returns (PositionInfo[] memory out) {
        bytes32[] memory keys = _slice(dataStore.standInAccountPositionKeys(account), start, end);
        out = new PositionInfo[](keys.length);
        for (uint256 i; i < keys.length; i++) {
            PositionProps memory p = dataStore.standInPosition(keys[i]);
            MarketPrices memory prices;
            bool found;
            for (uint256 j; j < markets.length; j++) {
                if (markets[j] == p.addresses.market) {
                    prices = marketPrices[j];
                    found = true;
                    break;
                }
            }
            require(found, "stand-in: EmptyMarketPrice");
            out[i] = _positionInfo(dataStore, p, getMarket(dataStore, p.addresses.market), prices);
            out[i].positionKey = keys[i];
        }
    }

    /// @notice The stand-in's liquidation check, following v2.2 PositionUtils.isPositionLiquidatable (tests compare
    ///         the watcher's replay with it). Same signature as GMX's Reader.isPositionLiquidatable.
    function isPositionLiquidatable(
        GmxDataStoreStandIn dataStore,
        address, /* referralStorage */
        bytes32 positionKey,
        MarketProps memory market,
        MarketPrices memory prices,
        bool shouldValidateMinCollateralUsd,
        bool forLiquidation
    ) external view returns (bool, string memory, IsPositionLiquidatableInfo memory info) {
        PositionProps memory p = dataStore.standInPosition(positionKey);
        PositionInfo memory pi = _positionInfo(dataStore, p, market, prices);
        PriceProps memory collateralPrice = _cachedTokenPrice(p.addresses.collateralToken, market, prices);

        int256 impact = pi.executionPriceResult.priceImpactUsd;
        impact += p.numbers.pendingImpactAmount > 0
            ? p.numbers.pendingImpactAmount * int256(prices.indexTokenPrice.min)
            : p.numbers.pendingImpactAmount * int256(prices.indexTokenPrice.max);
        if (impact >= 0) {
            impact = 0;
        } else {
            uint256 f = dataStore.getUint(
                GmxStandInKeys.market(GmxStandInKeys.MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS, market.marketToken)
            );
            int256 maxNegative = -int256(_applyFactor(p.numbers.sizeInUsd, f));
            if (impact < maxNegative) impact = maxNegative;
        }

        info.remainingCollateralUsd = int256(p.numbers.collateralAmount * collateralPrice.min) + pi.basePnlUsd + impact
            - int256(pi.fees.totalCostAmount * collateralPrice.min);

        uint256 factor = dataStore.getUint(
            GmxStandInKeys.market(
                forLiquidation
                    ? GmxStandInKeys.MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION
                    : GmxStandInKeys.MIN_COLLATERAL_FACTOR,
                market.marketToken
            )
        );
        info.minCollateralUsdForLeverage = int256(_applyFactor(p.numbers.sizeInUsd, factor));
        if (shouldValidateMinCollateralUsd) {
            info.minCollateralUsd = int256(dataStore.getUint(GmxStandInKeys.MIN_COLLATERAL_USD));
            if (info.remainingCollateralUsd < info.minCollateralUsd) return (true, "min collateral", info);
        }
        if (info.remainingCollateralUsd <= 0) return (true, "< 0", info);
        if (info.remainingCollateralUsd < info.minCollateralUsdForLeverage) {
            return (true, "min collateral for leverage", info);
        }
        return (false, "", info);
    }

    // --- internals

    function _slice(bytes32[] memory keys, uint256 start, uint256 end) internal pure returns (bytes32[] memory out) {
        if (end > keys.length) end = keys.length;
        if (start >= end) return new bytes32[](0);
        out = new bytes32[](end - start);
        for (uint256 i = start; i < end; i++) {
            out[i - start] = keys[i];
        }
    }

    function _applyFactor(uint256 value, uint256 factor) internal pure returns (uint256) {
        return value * factor / FLOAT_PRECISION;
    }

    function _cachedTokenPrice(address token, MarketProps memory market, MarketPrices memory prices)
        internal
        pure
        returns (PriceProps memory)
    {
        if (token == market.longToken) return prices.longTokenPrice;
        if (token == market.shortToken) return prices.shortTokenPrice;
        if (token == market.indexToken) return prices.indexTokenPrice;
        revert("stand-in: UnableToGetCachedTokenPrice");
    }

    function _openInterest(GmxDataStoreStandIn ds, MarketProps memory m, bool isLong) internal view returns (uint256) {
        uint256 divisor = m.longToken == m.shortToken ? 2 : 1;
        return ds.getUint(GmxStandInKeys.openInterest(m.marketToken, m.longToken, isLong)) / divisor
            + ds.getUint(GmxStandInKeys.openInterest(m.marketToken, m.shortToken, isLong)) / divisor;
    }

    function _openInterestInTokens(GmxDataStoreStandIn ds, MarketProps memory m, bool isLong)
        internal
        view
        returns (uint256)
    {
        uint256 divisor = m.longToken == m.shortToken ? 2 : 1;
        return ds.getUint(GmxStandInKeys.openInterestInTokens(m.marketToken, m.longToken, isLong)) / divisor
            + ds.getUint(GmxStandInKeys.openInterestInTokens(m.marketToken, m.shortToken, isLong)) / divisor;
    }

    /// @dev MarketUtils.getPnl(market, indexPrice, isLong, maximize = true): the side's pending pnl.
    function _poolPnl(GmxDataStoreStandIn ds, MarketProps memory m, PriceProps memory indexPrice, bool isLong)
        internal
        view
        returns (int256)
    {
        uint256 oi = _openInterest(ds, m, isLong);
        uint256 oiTokens = _openInterestInTokens(ds, m, isLong);
        if (oi == 0 || oiTokens == 0) return 0;
        uint256 price = isLong ? indexPrice.max : indexPrice.min;
        int256 value = int256(oiTokens * price);
        return isLong ? value - int256(oi) : int256(oi) - value;
    }

    /// @dev The pool cap of PositionUtils.getPositionPnlUsd for a positive total pnl: scaled by cappedPoolPnl / poolPnl
    ///      where cappedPoolPnl = min(poolPnl, poolUsd * MAX_PNL_FACTOR_FOR_TRADERS) (MarketUtils.getCappedPnl).
    function _capPositivePnl(
        GmxDataStoreStandIn ds,
        MarketProps memory m,
        MarketPrices memory prices,
        bool isLong,
        int256 pnl
    ) internal view returns (int256) {
        if (pnl <= 0) return pnl;
        address pnlToken = isLong ? m.longToken : m.shortToken;
        uint256 divisor = m.longToken == m.shortToken ? 2 : 1;
        uint256 poolAmount = ds.getUint(GmxStandInKeys.poolAmount(m.marketToken, pnlToken)) / divisor;
        uint256 poolUsd = poolAmount * (isLong ? prices.longTokenPrice.min : prices.shortTokenPrice.min);
        int256 poolPnl = _poolPnl(ds, m, prices.indexTokenPrice, isLong);
        int256 capped = poolPnl;
        if (poolPnl >= 0) {
            uint256 factor = ds.getUint(
                GmxStandInKeys.maxPnlFactor(GmxStandInKeys.MAX_PNL_FACTOR_FOR_TRADERS, m.marketToken, isLong)
            );
            int256 maxPnl = int256(_applyFactor(poolUsd, factor));
            if (poolPnl > maxPnl) capped = maxPnl;
        }
        if (capped != poolPnl && capped > 0 && poolPnl > 0) {
            // Precision.mulDiv(uint256, int256, uint256) with a positive numerator rounds down
            return int256(uint256(pnl) * uint256(capped) / uint256(poolPnl));
        }
        return pnl;
    }

    function _impactFactor(uint256 diffUsd, uint256 factor) internal pure returns (uint256) {
        // GMX: applyFactor(applyExponentFactor(diff, exponent), factor); the stand-in's exponent is an exact square.
        if (diffUsd < FLOAT_PRECISION) return 0;
        return _applyFactor(diffUsd * diffUsd / FLOAT_PRECISION, factor);
    }

    /// @dev PositionPricingUtils.getPriceImpactUsd for closing the whole position (open interest in USD).
    function _priceImpact(GmxDataStoreStandIn ds, MarketProps memory m, PositionProps memory p)
        internal
        view
        returns (int256 impact, bool improved)
    {
        uint256 longOi = _openInterest(ds, m, true);
        uint256 shortOi = _openInterest(ds, m, false);
        uint256 nextLong = longOi;
        uint256 nextShort = shortOi;
        uint256 size = p.numbers.sizeInUsd;
        if (p.flags.isLong) nextLong = size > longOi ? 0 : longOi - size;
        else nextShort = size > shortOi ? 0 : shortOi - size;
        uint256 initialDiff = longOi > shortOi ? longOi - shortOi : shortOi - longOi;
        uint256 nextDiff = nextLong > nextShort ? nextLong - nextShort : nextShort - nextLong;
        improved = nextDiff < initialDiff;
        uint256 positive = ds.getUint(GmxStandInKeys.marketBool(GmxStandInKeys.POSITION_IMPACT_FACTOR, m.marketToken, true));
        uint256 negative = ds.getUint(GmxStandInKeys.marketBool(GmxStandInKeys.POSITION_IMPACT_FACTOR, m.marketToken, false));
        if (positive > negative) positive = negative;
        if ((longOi <= shortOi) == (nextLong <= nextShort)) {
            uint256 f = improved ? positive : negative;
            uint256 a = _impactFactor(initialDiff, f);
            uint256 b = _impactFactor(nextDiff, f);
            uint256 delta = a > b ? a - b : b - a;
            impact = improved ? int256(delta) : -int256(delta);
        } else {
            uint256 pos = _impactFactor(initialDiff, positive);
            uint256 neg = _impactFactor(nextDiff, negative);
            impact = pos > neg ? int256(pos - neg) : -int256(neg - pos);
        }
        // MarketUtils.capPositiveImpactUsdByMaxPositionImpact
        if (impact > 0) {
            uint256 maxPos = ds.getUint(GmxStandInKeys.marketBool(GmxStandInKeys.MAX_POSITION_IMPACT_FACTOR, m.marketToken, true));
            uint256 maxNeg = ds.getUint(GmxStandInKeys.marketBool(GmxStandInKeys.MAX_POSITION_IMPACT_FACTOR, m.marketToken, false));
            if (maxPos > maxNeg) maxPos = maxNeg;
            int256 cap = int256(_applyFactor(size, maxPos));
            if (impact > cap) impact = cap;
        }
    }

    function _positionInfo(
        GmxDataStoreStandIn ds,
        PositionProps memory p,
        MarketProps memory m,
        MarketPrices memory prices
    ) internal view returns (PositionInfo memory info) {
        require(p.addresses.account != address(0), "stand-in: EmptyPosition");
        info.position = p;
        PriceProps memory cp = _cachedTokenPrice(p.addresses.collateralToken, m, prices);
        (info.executionPriceResult.priceImpactUsd, info.executionPriceResult.balanceWasImproved) = _priceImpact(ds, m, p);
        info.executionPriceResult.totalImpactUsd = info.executionPriceResult.priceImpactUsd;
        _fees(ds, p, m, prices, cp, info.executionPriceResult.balanceWasImproved, info.fees);
        // getPositionPnlUsd for the whole size: pickPriceForPnl(isLong, maximize = false)
        uint256 price = p.flags.isLong ? prices.indexTokenPrice.min : prices.indexTokenPrice.max;
        int256 value = int256(p.numbers.sizeInTokens * price);
        int256 pnl = p.flags.isLong ? value - int256(p.numbers.sizeInUsd) : int256(p.numbers.sizeInUsd) - value;
        info.uncappedBasePnlUsd = pnl;
        info.basePnlUsd = _capPositivePnl(ds, m, prices, p.flags.isLong, pnl);
        info.pnlAfterPriceImpactUsd = info.basePnlUsd + info.executionPriceResult.priceImpactUsd;
    }

    function _secondsSince(GmxDataStoreStandIn ds, bytes32 key) internal view returns (uint256) {
        // MarketUtils.getSecondsSince...Updated: 0 while never updated
        uint256 updatedAt = ds.getUint(key);
        return updatedAt == 0 || block.timestamp <= updatedAt ? 0 : block.timestamp - updatedAt;
    }

    /// @dev durationInSeconds * getBorrowingFactorPerSecond (exponent 1): the side's pending borrowing factor.
    function _pendingBorrowingFactor(
        GmxDataStoreStandIn ds,
        MarketProps memory m,
        MarketPrices memory prices,
        bool isLong
    ) internal view returns (uint256) {
        uint256 duration = _secondsSince(
            ds, GmxStandInKeys.marketBool(GmxStandInKeys.CUMULATIVE_BORROWING_FACTOR_UPDATED_AT, m.marketToken, isLong)
        );
        if (duration == 0) return 0;
        // MarketUtils.getReservedUsd: longs reserve their tokens at the index price, shorts their USD size
        uint256 reservedUsd = isLong
            ? _openInterestInTokens(ds, m, true) * prices.indexTokenPrice.max
            : _openInterest(ds, m, false);
        if (reservedUsd == 0) return 0;
        uint256 divisor = m.longToken == m.shortToken ? 2 : 1;
        uint256 poolUsd = ds.getUint(GmxStandInKeys.poolAmount(m.marketToken, isLong ? m.longToken : m.shortToken))
            / divisor * (isLong ? prices.longTokenPrice.min : prices.shortTokenPrice.min);
        require(poolUsd > 0, "stand-in: UnableToGetBorrowingFactorEmptyPoolUsd");
        uint256 factor = ds.getUint(GmxStandInKeys.marketBool(GmxStandInKeys.BORROWING_FACTOR, m.marketToken, isLong));
        return duration * _applyFactor(reservedUsd * FLOAT_PRECISION / poolUsd, factor);
    }

    /// @dev The pending fundingFeeAmountPerSize of (side, collateral) as Reader's getPositionInfo adds it from
    ///      MarketUtils.getNextFundingAmountPerSize (non-adaptive funding, exponent 1); 0 for the receiving side.
    function _pendingFundingPerSize(
        GmxDataStoreStandIn ds,
        MarketProps memory m,
        MarketPrices memory prices,
        bool isLong,
        address collateral
    ) internal view returns (uint256) {
        uint256 duration = _secondsSince(ds, GmxStandInKeys.market(GmxStandInKeys.FUNDING_UPDATED_AT, m.marketToken));
        if (duration == 0) return 0;
        uint256 divisor = m.longToken == m.shortToken ? 2 : 1;
        bool useLong = collateral == m.longToken;
        uint256 collOi = ds.getUint(GmxStandInKeys.openInterest(m.marketToken, useLong ? m.longToken : m.shortToken, isLong))
            / divisor;
        uint256 longOi = _openInterest(ds, m, true);
        uint256 shortOi = _openInterest(ds, m, false);
        if (longOi == 0 || shortOi == 0 || (longOi > shortOi) != isLong || collOi == 0) return 0;
        uint256 diff = longOi > shortOi ? longOi - shortOi : shortOi - longOi;
        uint256 perSecond = _applyFactor(
            diff * FLOAT_PRECISION / (longOi + shortOi),
            ds.getUint(GmxStandInKeys.market(GmxStandInKeys.FUNDING_FACTOR, m.marketToken))
        );
        uint256 side = isLong ? longOi : shortOi;
        uint256 fundingUsd = _applyFactor(side, duration * perSecond) / divisor;
        uint256 forCollateral = fundingUsd * collOi / side;
        if (forCollateral == 0) return 0;
        uint256 price = useLong ? prices.longTokenPrice.max : prices.shortTokenPrice.max;
        // getFundingAmountPerSizeDelta(roundUpMagnitude = true); the Reader doubles it in single-token markets
        uint256 perSize = _mulDivUp(forCollateral, FLOAT_PRECISION * FLOAT_PRECISION_SQRT, collOi);
        return (perSize + price - 1) / price * divisor;
    }

    /// @dev ceil(a * b / d) for b = 1e45 and a, d below 1e38, without the 512-bit product (Precision.mulDiv's job).
    function _mulDivUp(uint256 a, uint256 b, uint256 d) internal pure returns (uint256) {
        require(b == FLOAT_PRECISION * FLOAT_PRECISION_SQRT, "stand-in: mulDiv scale");
        uint256 q = a / d;
        uint256 r = a % d;
        uint256 t = r * FLOAT_PRECISION; // r < d < 1e38: fits
        uint256 u = (t % d) * FLOAT_PRECISION_SQRT;
        uint256 out = q * b + (t / d) * FLOAT_PRECISION_SQRT + u / d;
        return u % d == 0 ? out : out + 1;
    }

    function _fees(
        GmxDataStoreStandIn ds,
        PositionProps memory p,
        MarketProps memory m,
        MarketPrices memory prices,
        PriceProps memory cp,
        bool improved,
        PositionFees memory fees
    ) internal view {
        uint256 size = p.numbers.sizeInUsd;
        fees.collateralTokenPrice = cp;
        fees.referral.trader = p.addresses.account;
        fees.positionFeeFactor = ds.getUint(GmxStandInKeys.marketBool(GmxStandInKeys.POSITION_FEE_FACTOR, m.marketToken, improved));
        fees.positionFeeAmount = _applyFactor(size, fees.positionFeeFactor) / cp.min;
        fees.pro.traderTier = ds.getUint(keccak256(abi.encode(GmxStandInKeys.PRO_TRADER_TIER, p.addresses.account)));
        if (fees.pro.traderTier > 0) {
            fees.pro.traderDiscountFactor =
                ds.getUint(keccak256(abi.encode(GmxStandInKeys.PRO_DISCOUNT_FACTOR, fees.pro.traderTier)));
            if (fees.pro.traderDiscountFactor > 0) {
                fees.pro.traderDiscountAmount = _applyFactor(fees.positionFeeAmount, fees.pro.traderDiscountFactor);
            }
        }
        fees.totalDiscountAmount = fees.pro.traderDiscountAmount;
        fees.protocolFeeAmount = fees.positionFeeAmount - fees.totalDiscountAmount;

        // MarketUtils.getNextCumulativeBorrowingFactor: stored plus the pending part at these prices
        uint256 cumulative = ds.getUint(
            GmxStandInKeys.marketBool(GmxStandInKeys.CUMULATIVE_BORROWING_FACTOR, m.marketToken, p.flags.isLong)
        ) + _pendingBorrowingFactor(ds, m, prices, p.flags.isLong);
        require(cumulative >= p.numbers.borrowingFactor, "stand-in: UnexpectedBorrowingFactor");
        fees.borrowing.borrowingFeeUsd = _applyFactor(size, cumulative - p.numbers.borrowingFactor);
        fees.borrowing.borrowingFeeAmount = fees.borrowing.borrowingFeeUsd / cp.min;

        fees.funding.latestFundingFeeAmountPerSize = ds.getUint(
            GmxStandInKeys.fundingFeeAmountPerSize(m.marketToken, p.addresses.collateralToken, p.flags.isLong)
        ) + _pendingFundingPerSize(ds, m, prices, p.flags.isLong, p.addresses.collateralToken);
        // MarketUtils.getFundingAmount with roundUpMagnitude = true
        uint256 diff = fees.funding.latestFundingFeeAmountPerSize - p.numbers.fundingFeeAmountPerSize;
        uint256 denom = FLOAT_PRECISION * FLOAT_PRECISION_SQRT;
        fees.funding.fundingFeeAmount = (size * diff + denom - 1) / denom;

        fees.totalCostAmountExcludingFunding =
            fees.positionFeeAmount + fees.borrowing.borrowingFeeAmount - fees.totalDiscountAmount;
        fees.totalCostAmount = fees.totalCostAmountExcludingFunding + fees.funding.fundingFeeAmount;
    }
}
