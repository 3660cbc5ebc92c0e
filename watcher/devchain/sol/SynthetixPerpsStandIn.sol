// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title SynthetixPerpsStandIn
/// @notice A test stand-in written for Margin Watcher, NOT Synthetix's PerpsMarketProxy: it exposes the subset of the
///         proxy's view ABI the watcher reads (same selectors and return layouts), keeps the state the watcher reads by
///         storage slot at the real namespaced slots (PerpsMarketFactory.oracle, PerpsMarket.Data funding fields and
///         positions, InterestRate.Data), and replays the real D18 integer math of getPnl, calculateRequiredMargins,
///         the keeper liquidation reward and isEligibleForLiquidation. It also answers processWithRuntime as a stand-in
///         keeper-cost oracle node. Admin setters place any state; there are no orders, settlements or liquidations.
contract SynthetixPerpsStandIn {
    int256 internal constant UNIT = 1e18;
    uint256 internal constant UUNIT = 1e18;
    uint256 internal constant YEAR = 31557600;

    // --- mirrors of the real storage structs (same field order, so the same slots)

    struct PositionData {
        uint128 marketId;
        int128 size;
        uint128 latestInteractionPrice;
        int128 latestInteractionFunding;
        uint256 latestInterestAccrued;
    }

    struct MarketData {
        string name;
        string symbol;
        uint128 id;
        int256 skew;
        uint256 size;
        int256 lastFundingRate;
        int256 lastFundingValue;
        uint256 lastFundingTime;
        uint128 unused1;
        uint128 unused2;
        int256 debtCorrectionAccumulator;
        mapping(uint256 => uint256) asyncOrders; // the real one maps to AsyncOrder.Data: one slot either way
        mapping(uint256 => PositionData) positions;
    }

    struct InterestData {
        uint256 interestAccrued;
        uint128 interestRate;
        uint256 lastTimestamp;
    }

    struct FactoryData {
        address oracle;
    }

    struct Config {
        uint256 skewScale;
        uint256 maxFundingVelocity;
        uint256 initialMarginRatioD18;
        uint256 minimumInitialMarginRatioD18;
        uint256 maintenanceMarginScalarD18;
        uint256 flagRewardRatioD18;
        uint256 minimumPositionMargin;
        uint256 lockedOiRatioD18;
        uint256 makerFee;
        uint256 takerFee;
        uint256 maxLiquidationLimitAccumulationMultiplier;
        uint256 maxSecondsInLiquidationWindow;
        uint256 price;
    }

    struct Account {
        address owner;
        uint256 debt;
        uint256[] openMarkets;
        uint256[] collateralIds;
        mapping(uint256 => uint256) collateral;
        bool flagged;
    }

    address public immutable admin;
    mapping(uint256 => Config) internal configs;
    mapping(uint256 => Account) internal accounts;
    mapping(uint256 => uint256) internal collateralPrice; // stand-in only: D18 USD per unit of a synth collateral
    mapping(uint256 => uint256) internal collateralDiscount; // stand-in only: D18 haircut on availableMargin
    uint256[] internal flagged;
    uint256 internal minKeeperRewardUsd;
    uint256 internal minKeeperProfitRatioD18;
    uint256 internal maxKeeperRewardUsd;
    uint256 internal maxKeeperScalingRatioD18;
    uint128 internal collateralLiquidateRewardRatioD18;
    bytes32 internal keeperCostNodeId;
    uint256 internal flagCostBase; // stand-in keeper cost node: flag = base + perFeed * feeds, liquidate = fixed
    uint256 internal flagCostPerFeed;
    uint256 internal liquidateCost;

    constructor() {
        admin = msg.sender;
        _factory().oracle = address(this);
    }

    modifier onlyAdmin() {
        require(msg.sender == admin, "stand-in: not admin");
        _;
    }

    function _factory() internal pure returns (FactoryData storage f) {
        bytes32 s = keccak256(abi.encode("io.synthetix.perps-market.PerpsMarketFactory"));
        assembly {
            f.slot := s
        }
    }

    function _market(uint128 marketId) internal pure returns (MarketData storage m) {
        bytes32 s = keccak256(abi.encode("io.synthetix.perps-market.PerpsMarket", marketId));
        assembly {
            m.slot := s
        }
    }

    function _interest() internal pure returns (InterestData storage d) {
        bytes32 s = keccak256(abi.encode("io.synthetix.perps-market.InterestRate"));
        assembly {
            d.slot := s
        }
    }

    // --- admin setters (tests only; the real proxy has none of these)

    function setMarket(uint128 marketId, string calldata symbol, uint256 price, uint256[12] calldata c)
        external
        onlyAdmin
    {
        Config storage cfg = configs[marketId];
        (cfg.skewScale, cfg.maxFundingVelocity, cfg.initialMarginRatioD18, cfg.minimumInitialMarginRatioD18) =
            (c[0], c[1], c[2], c[3]);
        (cfg.maintenanceMarginScalarD18, cfg.flagRewardRatioD18, cfg.minimumPositionMargin, cfg.lockedOiRatioD18) =
            (c[4], c[5], c[6], c[7]);
        (cfg.makerFee, cfg.takerFee, cfg.maxLiquidationLimitAccumulationMultiplier, cfg.maxSecondsInLiquidationWindow)
        = (c[8], c[9], c[10], c[11]);
        cfg.price = price;
        MarketData storage m = _market(marketId);
        m.id = marketId;
        m.name = symbol;
        m.symbol = symbol;
        if (m.lastFundingTime == 0) m.lastFundingTime = block.timestamp;
    }

    function setPrice(uint128 marketId, uint256 price) external onlyAdmin {
        configs[marketId].price = price;
    }

    function setFunding(uint128 marketId, int256 skew_, int256 lastRate, int256 lastValue, uint256 lastTime)
        external
        onlyAdmin
    {
        MarketData storage m = _market(marketId);
        (m.skew, m.lastFundingRate, m.lastFundingValue, m.lastFundingTime) = (skew_, lastRate, lastValue, lastTime);
    }

    function setInterest(uint256 accrued, uint128 rate, uint256 lastTimestamp) external onlyAdmin {
        InterestData storage d = _interest();
        (d.interestAccrued, d.interestRate, d.lastTimestamp) = (accrued, rate, lastTimestamp);
    }

    function setKeeper(uint256[4] calldata guards, uint128 collRatio, bytes32 nodeId, uint256[3] calldata costs)
        external
        onlyAdmin
    {
        (minKeeperRewardUsd, minKeeperProfitRatioD18, maxKeeperRewardUsd, maxKeeperScalingRatioD18) =
            (guards[0], guards[1], guards[2], guards[3]);
        collateralLiquidateRewardRatioD18 = collRatio;
        keeperCostNodeId = nodeId;
        (flagCostBase, flagCostPerFeed, liquidateCost) = (costs[0], costs[1], costs[2]);
    }

    function setCollateralType(uint128 collateralId, uint256 price, uint256 discount) external onlyAdmin {
        (collateralPrice[collateralId], collateralDiscount[collateralId]) = (price, discount);
    }

    function createAccount(uint128 accountId, address owner) external onlyAdmin {
        accounts[accountId].owner = owner;
    }

    function setCollateral(uint128 accountId, uint128 collateralId, uint256 amount) external onlyAdmin {
        Account storage a = accounts[accountId];
        a.collateral[collateralId] = amount;
        _setMember(a.collateralIds, collateralId, amount > 0);
    }

    function setDebt(uint128 accountId, uint256 debt_) external onlyAdmin {
        accounts[accountId].debt = debt_;
    }

    function setPosition(
        uint128 accountId,
        uint128 marketId,
        int128 size,
        uint128 latestInteractionPrice,
        int128 latestInteractionFunding,
        uint256 latestInterestAccrued
    ) external onlyAdmin {
        _market(marketId).positions[accountId] =
            PositionData(marketId, size, latestInteractionPrice, latestInteractionFunding, latestInterestAccrued);
        _setMember(accounts[accountId].openMarkets, marketId, size != 0);
    }

    function flag(uint128 accountId) external onlyAdmin {
        if (!accounts[accountId].flagged) {
            accounts[accountId].flagged = true;
            flagged.push(accountId);
        }
    }

    function _setMember(uint256[] storage set, uint256 value, bool present) internal {
        for (uint256 i = 0; i < set.length; i++) {
            if (set[i] == value) {
                if (!present) {
                    set[i] = set[set.length - 1];
                    set.pop();
                }
                return;
            }
        }
        if (present) set.push(value);
    }

    // --- views with the real proxy's ABI

    function getAccountOwner(uint128 accountId) external view returns (address) {
        return accounts[accountId].owner;
    }

    function getAccountOpenPositions(uint128 accountId) external view returns (uint256[] memory) {
        return accounts[accountId].openMarkets;
    }

    function getAccountCollateralIds(uint128 accountId) external view returns (uint256[] memory) {
        return accounts[accountId].collateralIds;
    }

    function debt(uint128 accountId) external view returns (uint256) {
        return accounts[accountId].debt;
    }

    function flaggedAccounts() external view returns (uint256[] memory) {
        return flagged;
    }

    function metadata(uint128 marketId) external view returns (string memory, string memory) {
        MarketData storage m = _market(marketId);
        return (m.name, m.symbol);
    }

    function indexPrice(uint128 marketId) public view returns (uint256) {
        uint256 p = configs[marketId].price;
        require(p > 0, "stand-in: no price");
        return p;
    }

    function getLiquidationParameters(uint128 marketId)
        external
        view
        returns (uint256, uint256, uint256, uint256, uint256)
    {
        Config storage c = configs[marketId];
        return (
            c.initialMarginRatioD18,
            c.minimumInitialMarginRatioD18,
            c.maintenanceMarginScalarD18,
            c.flagRewardRatioD18,
            c.minimumPositionMargin
        );
    }

    function getFundingParameters(uint128 marketId) external view returns (uint256, uint256) {
        return (configs[marketId].skewScale, configs[marketId].maxFundingVelocity);
    }

    function getLockedOiRatio(uint128 marketId) external view returns (uint256) {
        return configs[marketId].lockedOiRatioD18;
    }

    function getOrderFees(uint128 marketId) external view returns (uint256, uint256) {
        return (configs[marketId].makerFee, configs[marketId].takerFee);
    }

    function getMaxLiquidationParameters(uint128 marketId)
        external
        view
        returns (uint256, uint256, uint256, address)
    {
        Config storage c = configs[marketId];
        return (c.maxLiquidationLimitAccumulationMultiplier, c.maxSecondsInLiquidationWindow, 0, address(0));
    }

    function getKeeperRewardGuards() external view returns (uint256, uint256, uint256, uint256) {
        return (minKeeperRewardUsd, minKeeperProfitRatioD18, maxKeeperRewardUsd, maxKeeperScalingRatioD18);
    }

    function getCollateralLiquidateRewardRatio() external view returns (uint128) {
        return collateralLiquidateRewardRatioD18;
    }

    function getKeeperCostNodeId() external view returns (bytes32) {
        return keeperCostNodeId;
    }

    /// The stand-in keeper-cost node (the real one is an oracle-manager node pricing gas): kind 1 = flag, 2 = liquidate.
    function processWithRuntime(bytes32 nodeId, bytes32[] memory keys, bytes32[] memory values)
        external
        view
        returns (int256 price, uint256 timestamp, uint256 unused1, uint256 unused2)
    {
        require(nodeId == keeperCostNodeId && keys.length >= 2 && values.length >= 2, "stand-in: bad node");
        require(keys[0] == bytes32("numberOfUpdatedFeeds") && keys[1] == bytes32("executionKind"), "stand-in: keys");
        uint256 kind = uint256(values[1]);
        uint256 cost = kind == 1 ? flagCostBase + flagCostPerFeed * uint256(values[0]) : kind == 2 ? liquidateCost : 0;
        return (int256(cost), block.timestamp, 0, 0);
    }

    function skew(uint128 marketId) external view returns (int256) {
        return _market(marketId).skew;
    }

    function currentFundingRate(uint128 marketId) public view returns (int256) {
        MarketData storage m = _market(marketId);
        return m.lastFundingRate + _velocity(marketId) * _elapsed(m) / UNIT;
    }

    function _velocity(uint128 marketId) internal view returns (int256) {
        Config storage c = configs[marketId];
        if (c.skewScale == 0) return 0;
        int256 pSkew = _market(marketId).skew * UNIT / int256(c.skewScale);
        if (pSkew > UNIT) pSkew = UNIT;
        if (pSkew < -UNIT) pSkew = -UNIT;
        return pSkew * int256(c.maxFundingVelocity) / UNIT;
    }

    function _elapsed(MarketData storage m) internal view returns (int256) {
        return int256((block.timestamp - m.lastFundingTime) * UUNIT / 1 days);
    }

    function _nextFunding(uint128 marketId, uint256 price) internal view returns (int256) {
        MarketData storage m = _market(marketId);
        int256 avgRate = -((m.lastFundingRate + currentFundingRate(marketId)) * UNIT / (2 * UNIT));
        return m.lastFundingValue + avgRate * _elapsed(m) / UNIT * int256(price) / UNIT;
    }

    function _nextInterest() internal view returns (uint256) {
        InterestData storage d = _interest();
        uint128 elapsed = uint128((block.timestamp - d.lastTimestamp) * UUNIT / YEAR);
        return d.interestAccrued + uint256(d.interestRate * elapsed / uint128(UUNIT));
    }

    function _abs(int256 x) internal pure returns (uint256) {
        return uint256(x >= 0 ? x : -x);
    }

    /// Position.getPnl at `price`: (totalPnl, accruedFunding, chargedInterest).
    function _pnl(uint128 accountId, uint128 marketId, uint256 price) internal view returns (int256, int256, uint256) {
        PositionData storage p = _market(marketId).positions[accountId];
        int256 size = int256(p.size);
        int256 accrued = size * (_nextFunding(marketId, price) - int256(p.latestInteractionFunding)) / UNIT;
        int256 pricePnl = size * (int256(price) - int256(uint256(p.latestInteractionPrice))) / UNIT;
        uint256 notional = _abs(size) * price / UUNIT;
        uint256 locked = notional * configs[marketId].lockedOiRatioD18 / UUNIT;
        uint256 interest = locked * (_nextInterest() - p.latestInterestAccrued) / UUNIT;
        return (pricePnl + accrued - int256(interest), accrued, interest);
    }

    function getOpenPosition(uint128 accountId, uint128 marketId)
        external
        view
        returns (int256 totalPnl, int256 accruedFunding, int128 positionSize, uint256 owedInterest)
    {
        (totalPnl, accruedFunding, owedInterest) = _pnl(accountId, marketId, indexPrice(marketId));
        positionSize = _market(marketId).positions[accountId].size;
    }

    function _collateralValue(uint128 accountId, bool discounted) internal view returns (uint256 total) {
        Account storage a = accounts[accountId];
        for (uint256 i = 0; i < a.collateralIds.length; i++) {
            uint256 id = a.collateralIds[i];
            uint256 amount = a.collateral[id];
            if (id == 0) {
                total += amount;
            } else {
                uint256 value = amount * collateralPrice[id] / UUNIT;
                total += discounted ? value * (UUNIT - collateralDiscount[id]) / UUNIT : value;
            }
        }
    }

    function totalCollateralValue(uint128 accountId) external view returns (uint256) {
        return _collateralValue(accountId, false);
    }

    function getAvailableMargin(uint128 accountId) public view returns (int256 available) {
        Account storage a = accounts[accountId];
        available = int256(_collateralValue(accountId, true)) - int256(a.debt);
        for (uint256 i = 0; i < a.openMarkets.length; i++) {
            uint128 m = uint128(a.openMarkets[i]);
            (int256 pnl,,) = _pnl(accountId, m, indexPrice(m));
            available += pnl;
        }
    }

    /// PerpsMarketConfiguration.calculateRequiredMargins: (initialMargin, maintenanceMargin).
    function _margins(uint128 marketId, int256 size, uint256 price) internal view returns (uint256, uint256) {
        if (size == 0) return (0, 0);
        Config storage c = configs[marketId];
        uint256 sizeAbs = _abs(size);
        uint256 impact = c.skewScale == 0 ? 0 : sizeAbs * UUNIT / c.skewScale;
        uint256 imr = impact * c.initialMarginRatioD18 / UUNIT + c.minimumInitialMarginRatioD18;
        uint256 mmr = imr * c.maintenanceMarginScalarD18 / UUNIT;
        uint256 notional = sizeAbs * price / UUNIT;
        return (notional * imr / UUNIT + c.minimumPositionMargin, notional * mmr / UUNIT + c.minimumPositionMargin);
    }

    function _keeperReward(uint256 rewards, uint256 cost, uint256 margin) internal view returns (uint256) {
        uint256 minCap = cost + minKeeperRewardUsd;
        uint256 profit = cost * (minKeeperProfitRatioD18 + UUNIT) / UUNIT;
        if (profit > minCap) minCap = profit;
        uint256 maxCap = maxKeeperRewardUsd;
        if (margin != 0 && margin * maxKeeperScalingRatioD18 / UUNIT < maxCap) {
            maxCap = margin * maxKeeperScalingRatioD18 / UUNIT;
        }
        uint256 r = rewards + cost > minCap ? rewards + cost : minCap;
        return r < maxCap ? r : maxCap;
    }

    function _windows(uint128 marketId, uint256 sizeAbs) internal view returns (uint256) {
        Config storage c = configs[marketId];
        uint256 perWindow = (c.makerFee + c.takerFee) * c.skewScale / UUNIT
            * c.maxLiquidationLimitAccumulationMultiplier / UUNIT * c.maxSecondsInLiquidationWindow;
        if (perWindow == 0) return 0;
        return sizeAbs / perWindow + (sizeAbs % perWindow == 0 ? 0 : 1);
    }

    function _flagCost(uint128 accountId) internal view returns (uint256) {
        Account storage a = accounts[accountId];
        uint256 feeds = a.collateralIds.length;
        for (uint256 i = 0; i < a.collateralIds.length; i++) {
            if (a.collateralIds[i] == 0) feeds -= 1;
        }
        return flagCostBase + flagCostPerFeed * (feeds + a.openMarkets.length);
    }

    /// PerpsAccount.getAccountRequiredMargins: (initial, maintenance, possibleLiquidationReward).
    function _required(uint128 accountId) internal view returns (uint256 im, uint256 mm, uint256 reward) {
        Account storage a = accounts[accountId];
        if (a.openMarkets.length == 0) return (0, 0, 0);
        uint256 flagReward;
        uint256 windows;
        for (uint256 i = 0; i < a.openMarkets.length; i++) {
            uint128 m = uint128(a.openMarkets[i]);
            int256 size = int256(_market(m).positions[accountId].size);
            uint256 price = indexPrice(m);
            (uint256 pim, uint256 pmm) = _margins(m, size, price);
            (im, mm) = (im + pim, mm + pmm);
            flagReward += _abs(size) * price / UUNIT * configs[m].flagRewardRatioD18 / UUNIT;
            uint256 w = _windows(m, _abs(size));
            if (w > windows) windows = w;
        }
        uint256 collateral = _collateralValue(accountId, false);
        uint256 collReward = collateral * collateralLiquidateRewardRatioD18 / UUNIT;
        uint256 accumulated = flagReward > collReward ? flagReward : collReward;
        reward = _keeperReward(accumulated, _flagCost(accountId) + liquidateCost, collateral);
        if (windows > 0) reward += _keeperReward(0, liquidateCost, 0) * (windows - 1);
    }

    function getRequiredMargins(uint128 accountId)
        external
        view
        returns (uint256 requiredInitialMargin, uint256 requiredMaintenanceMargin, uint256 maxLiquidationReward)
    {
        (uint256 im, uint256 mm, uint256 reward) = _required(accountId);
        return (im + reward, mm + reward, reward);
    }

    /// LiquidationModule.canLiquidate: flagged, or (maintenance + reward) > availableMargin.
    function canLiquidate(uint128 accountId) external view returns (bool) {
        if (accounts[accountId].flagged) return true;
        (, uint256 mm, uint256 reward) = _required(accountId);
        return int256(mm + reward) > getAvailableMargin(accountId);
    }
}
