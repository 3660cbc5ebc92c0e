// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title Liquity v1 stand-ins
/// @notice Test stand-ins written for Margin Watcher, NOT Liquity's contracts: a PriceFeed, a StabilityPool and a
///         TroveManager exposing the subset of Liquity v1's view ABI the watcher reads (same names, arguments and
///         return layouts) with v1's integer math (LiquityMath._computeCR, pending redistribution rewards, TCR,
///         Recovery Mode) and v1's single-trove liquidation decision and path (batchLiquidateTroves([borrower]):
///         _liquidateNormalMode, _liquidateRecoveryMode, _getOffsetAndRedistributionVals), plus admin setters so tests
///         can place any trove and system state.
///         Two Stability Pool rules, switched by setCurrentSourceRule on the pool and on the TroveManager: off (the
///         default), mainnet's 2021 revision: the TroveManager offsets up to getTotalLUSDDeposits() and may empty the
///         pool, and the pool has no getMaxAmountToOffset (calling it reverts without data, as calling a missing
///         function does); on, the current liquity/dev source: the TroveManager offsets up to getMaxAmountToOffset()
///         (deposits less MIN_LUSD_IN_SP = 1 LUSD, all of them below that, 0 when the offset would underflow
///         lastLUSDLossError_Offset) and offset() refuses to take every deposit.
///         Left out: deposits, P, S, G, epochs and scales (offset only lowers the deposit total, so mainnet's
///         `assert(newP > 0)` on a nearly emptying offset is not modelled), LQTY issuance, ETH transfers, gas
///         compensation, the collateral surplus pool, and applying a redistribution: the liquidated trove leaves the
///         system whole (its redistributed share is recorded, not added to L_ETH / L_LUSDDebt); liquidations of
///         several troves in one call (liquidateTroves, batches longer than one).

/// @notice Stand-in PriceFeed: fetchPrice() stores and returns the "oracle" answer like v1's (non-view, updates
///         lastGoodPrice); lastGoodPrice() only moves when someone calls fetchPrice, as on mainnet. priceAggregator()
///         names the Chainlink ETH/USD feed as v1's does; once one is set, fetchPrice answers its latestRoundData
///         scaled to 18 decimals, else the price set by setPrice. Left out of v1's PriceFeed: the Tellor fallback,
///         the frozen/broken/deviation checks and the status machine between the two oracles.
contract LiquityV1PriceFeedStandIn {
    address public immutable admin;
    uint256 public lastGoodPrice;
    uint256 internal oracleAnswer;
    address public priceAggregator;

    constructor(uint256 price_) {
        admin = msg.sender;
        lastGoodPrice = price_;
        oracleAnswer = price_;
    }

    /// @notice Stand-in only: what the oracle (Chainlink in v1) answers from now on.
    function setPrice(uint256 price_) external {
        require(msg.sender == admin, "stand-in: not admin");
        oracleAnswer = price_;
    }

    /// @notice Stand-in only: read this Chainlink-style aggregator from now on (v1 sets it once, in setAddresses).
    function setPriceAggregator(address aggregator) external {
        require(msg.sender == admin, "stand-in: not admin");
        priceAggregator = aggregator;
    }

    function fetchPrice() external returns (uint256) {
        uint256 price = oracleAnswer;
        if (priceAggregator != address(0)) {
            (, int256 answer,,,) = IChainlinkAggregatorStandIn(priceAggregator).latestRoundData();
            uint8 d = IChainlinkAggregatorStandIn(priceAggregator).decimals();
            require(answer > 0, "stand-in: bad answer");
            price = uint256(answer) * 10 ** (18 - d); // v1's _scaleChainlinkPriceByDigits for feeds of <= 18 digits
        }
        lastGoodPrice = price;
        return price;
    }
}

interface IChainlinkAggregatorStandIn {
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
    function decimals() external view returns (uint8);
}

/// @notice Stand-in StabilityPool: the LUSD deposit total the liquidation decision reads, and offset lowering it.
contract LiquityV1StabilityPoolStandIn {
    uint256 internal constant DECIMAL_PRECISION = 1e18;
    uint256 internal constant MIN_LUSD_IN_SP = 1e18; // current source: an offset always leaves this much

    address public immutable admin;
    address public troveManager;
    bool public currentSourceRule;
    uint256 public lastLUSDLossError_Offset;
    uint256 internal totalLUSDDeposits;

    constructor() {
        admin = msg.sender;
    }

    modifier onlyAdmin() {
        require(msg.sender == admin, "stand-in: not admin");
        _;
    }

    function setTotalLUSDDeposits(uint256 amount) external onlyAdmin {
        totalLUSDDeposits = amount;
    }

    function setTroveManager(address troveManager_) external onlyAdmin {
        troveManager = troveManager_;
    }

    /// @notice Stand-in only: on, the current liquity/dev pool (getMaxAmountToOffset exists); off, mainnet's.
    function setCurrentSourceRule(bool on) external onlyAdmin {
        currentSourceRule = on;
    }

    /// @notice Stand-in only: the offset's carried rounding error (the real pool accumulates it in offset()).
    function setLastLUSDLossErrorOffset(uint256 error_) external onlyAdmin {
        lastLUSDLossError_Offset = error_;
    }

    function getTotalLUSDDeposits() external view returns (uint256) {
        return totalLUSDDeposits;
    }

    function getMaxAmountToOffset() external view returns (uint256) {
        // Mainnet's pool has no such function: a call to it reverts, with no data.
        if (!currentSourceRule) revert();
        uint256 total = totalLUSDDeposits;
        uint256 keep = total < MIN_LUSD_IN_SP ? total : MIN_LUSD_IN_SP;
        uint256 available = total - keep;
        // the current source gives nothing rather than let offset's loss numerator underflow
        if (available * DECIMAL_PRECISION <= lastLUSDLossError_Offset) return 0;
        return available;
    }

    /// @notice Cancel `debtToOffset` against the deposits (only the TroveManager may).
    function offset(uint256 debtToOffset) external {
        require(msg.sender == troveManager, "StabilityPool: Caller is not TroveManager");
        uint256 total = totalLUSDDeposits;
        if (total == 0 || debtToOffset == 0) return;
        // mainnet may take every deposit (the pool then starts a new epoch); the current source never does
        if (currentSourceRule) assert(debtToOffset < total);
        else assert(debtToOffset <= total);
        totalLUSDDeposits = total - debtToOffset;
    }
}

interface ILiquityV1PriceFeedStandIn {
    function fetchPrice() external returns (uint256);
}

interface ILiquityV1StabilityPoolStandIn {
    function getTotalLUSDDeposits() external view returns (uint256);
    function getMaxAmountToOffset() external view returns (uint256);
    function offset(uint256 debtToOffset) external;
}

/// @notice Stand-in TroveManager: troves, stakes and the L_ETH / L_LUSDDebt redistribution sums as in v1; the active
///         and default pool balances live here (v1 keeps them in ActivePool/DefaultPool) and setTrove moves the
///         active ones by the trove's change, so the TCR always matches the troves placed.
contract LiquityV1TroveManagerStandIn {
    enum Status {
        nonExistent,
        active,
        closedByOwner,
        closedByLiquidation,
        closedByRedemption
    }

    struct Trove {
        uint256 debt;
        uint256 coll;
        uint256 stake;
        Status status;
        uint128 arrayIndex;
    }

    struct RewardSnapshot {
        uint256 ETH;
        uint256 LUSDDebt;
    }

    uint256 internal constant DECIMAL_PRECISION = 1e18;
    uint256 public constant _100pct = 1e18;
    uint256 public constant MCR = 1100000000000000000; // 110%, LiquityBase
    uint256 public constant CCR = 1500000000000000000; // 150%, LiquityBase

    address public immutable admin;
    address public priceFeed;
    address public stabilityPool;
    address public lusdToken;

    mapping(address => Trove) public Troves;
    mapping(address => RewardSnapshot) public rewardSnapshots;
    address[] public TroveOwners;
    uint256 public L_ETH;
    uint256 public L_LUSDDebt;

    enum Route {
        none,
        normal,
        recoveryBelow100pct,
        recoveryBelowMCR,
        recoveryCapped
    }

    bool public currentSourceRule;
    Route public lastRoute;
    uint256 public lastDebtToOffset;
    uint256 public lastDebtToRedistribute;

    uint256 internal activeETH;
    uint256 internal activeLUSDDebt;
    uint256 internal defaultETH;
    uint256 internal defaultLUSDDebt;

    constructor(address priceFeed_, address stabilityPool_, address lusdToken_) {
        admin = msg.sender;
        priceFeed = priceFeed_;
        stabilityPool = stabilityPool_;
        lusdToken = lusdToken_;
    }

    modifier onlyAdmin() {
        require(msg.sender == admin, "stand-in: not admin");
        _;
    }

    // --- admin setters (tests only; the real TroveManager has no such functions)

    /// @notice Open or overwrite an active trove; the active pool moves by the change in recorded debt and coll.
    function setTrove(address borrower, uint256 debt, uint256 coll, uint256 stake) external onlyAdmin {
        Trove storage t = Troves[borrower];
        if (t.status != Status.active) {
            t.status = Status.active;
            t.arrayIndex = uint128(TroveOwners.length);
            TroveOwners.push(borrower);
            rewardSnapshots[borrower] = RewardSnapshot(L_ETH, L_LUSDDebt);
        }
        activeETH = activeETH - t.coll + coll;
        activeLUSDDebt = activeLUSDDebt - t.debt + debt;
        t.debt = debt;
        t.coll = coll;
        t.stake = stake;
    }

    /// @notice Redistribute (coll, debt) per unit staked, as a liquidation by redistribution would: the default pool
    ///         holds them until troves apply their pending rewards.
    function setRedistribution(uint256 lETH, uint256 lLUSDDebt, uint256 defaultETH_, uint256 defaultDebt_)
        external
        onlyAdmin
    {
        L_ETH = lETH;
        L_LUSDDebt = lLUSDDebt;
        defaultETH = defaultETH_;
        defaultLUSDDebt = defaultDebt_;
    }

    // --- views with v1's names and return layouts

    function getTroveOwnersCount() external view returns (uint256) {
        return TroveOwners.length;
    }

    function getTroveStatus(address borrower) external view returns (uint256) {
        return uint256(Troves[borrower].status);
    }

    function getEntireSystemColl() public view returns (uint256) {
        return activeETH + defaultETH;
    }

    function getEntireSystemDebt() public view returns (uint256) {
        return activeLUSDDebt + defaultLUSDDebt;
    }

    function getPendingETHReward(address borrower) public view returns (uint256) {
        uint256 rewardPerUnitStaked = L_ETH - rewardSnapshots[borrower].ETH;
        if (rewardPerUnitStaked == 0 || Troves[borrower].status != Status.active) return 0;
        return Troves[borrower].stake * rewardPerUnitStaked / DECIMAL_PRECISION;
    }

    function getPendingLUSDDebtReward(address borrower) public view returns (uint256) {
        uint256 rewardPerUnitStaked = L_LUSDDebt - rewardSnapshots[borrower].LUSDDebt;
        if (rewardPerUnitStaked == 0 || Troves[borrower].status != Status.active) return 0;
        return Troves[borrower].stake * rewardPerUnitStaked / DECIMAL_PRECISION;
    }

    function getEntireDebtAndColl(address borrower)
        public
        view
        returns (uint256 debt, uint256 coll, uint256 pendingLUSDDebtReward, uint256 pendingETHReward)
    {
        pendingLUSDDebtReward = getPendingLUSDDebtReward(borrower);
        pendingETHReward = getPendingETHReward(borrower);
        debt = Troves[borrower].debt + pendingLUSDDebtReward;
        coll = Troves[borrower].coll + pendingETHReward;
    }

    function getCurrentICR(address borrower, uint256 price) public view returns (uint256) {
        (uint256 debt, uint256 coll,,) = getEntireDebtAndColl(borrower);
        return _computeCR(coll, debt, price);
    }

    function getTCR(uint256 price) public view returns (uint256) {
        return _computeCR(getEntireSystemColl(), getEntireSystemDebt(), price);
    }

    function checkRecoveryMode(uint256 price) public view returns (bool) {
        return getTCR(price) < CCR;
    }

    /// @dev LiquityMath._computeCR: floor(coll * price / debt), "infinite" (2**256-1) without debt.
    function _computeCR(uint256 coll, uint256 debt, uint256 price) internal pure returns (uint256) {
        if (debt > 0) return coll * price / debt;
        return type(uint256).max;
    }

    // --- liquidation: v1's decision and path for liquidate(borrower) = batchLiquidateTroves([borrower])

    /// @notice Stand-in only: on, offset up to getMaxAmountToOffset() (current liquity/dev); off, up to all deposits.
    function setCurrentSourceRule(bool on) external onlyAdmin {
        currentSourceRule = on;
    }

    /// @notice Reverts exactly when v1's liquidate would: trove not active, the last trove in Normal Mode, or
    ///         "nothing to liquidate". On success the offset debt leaves the pool's deposits, the route and the split
    ///         between offset and redistribution are recorded (lastRoute, lastDebtToOffset, lastDebtToRedistribute)
    ///         and the trove is closed.
    function liquidate(address borrower) external {
        require(Troves[borrower].status == Status.active, "TroveManager: Trove does not exist or is closed");
        uint256 price = ILiquityV1PriceFeedStandIn(priceFeed).fetchPrice();
        ILiquityV1StabilityPoolStandIn sp = ILiquityV1StabilityPoolStandIn(stabilityPool);
        uint256 offsetable = currentSourceRule ? sp.getMaxAmountToOffset() : sp.getTotalLUSDDeposits();
        uint256 icr = getCurrentICR(borrower, price);
        (uint256 debt,,,) = getEntireDebtAndColl(borrower);
        Route route = Route.none;
        uint256 toOffset;
        if (checkRecoveryMode(price)) {
            // _getTotalFromBatchLiquidate_RecoveryMode skips the trove when ICR >= MCR and nothing can be offset
            if (!(icr >= MCR && offsetable == 0) && TroveOwners.length > 1) {
                if (icr <= _100pct) {
                    route = Route.recoveryBelow100pct; // all of it redistributed
                } else if (icr < MCR) {
                    route = Route.recoveryBelowMCR;
                    toOffset = debt < offsetable ? debt : offsetable;
                } else if (icr < getTCR(price) && debt <= offsetable) {
                    route = Route.recoveryCapped; // the whole debt offset, collateral capped at MCR
                    toOffset = debt;
                }
            }
        } else if (icr < MCR) {
            // _closeTrove: _requireMoreThanOneTroveInSystem
            require(TroveOwners.length > 1, "TroveManager: Only one trove in the system");
            route = Route.normal;
            toOffset = debt < offsetable ? debt : offsetable;
        }
        require(route != Route.none, "TroveManager: nothing to liquidate");
        lastRoute = route;
        lastDebtToOffset = toOffset;
        lastDebtToRedistribute = debt - toOffset;
        sp.offset(toOffset);
        _close(borrower);
    }

    function _close(address borrower) internal {
        (uint256 debt, uint256 coll, uint256 pendingDebt, uint256 pendingColl) = getEntireDebtAndColl(borrower);
        defaultETH -= pendingColl;
        defaultLUSDDebt -= pendingDebt;
        activeETH = activeETH + pendingColl - coll;
        activeLUSDDebt = activeLUSDDebt + pendingDebt - debt;
        Trove storage t = Troves[borrower];
        uint128 index = t.arrayIndex;
        address last = TroveOwners[TroveOwners.length - 1];
        TroveOwners[index] = last;
        Troves[last].arrayIndex = index;
        TroveOwners.pop();
        t.status = Status.closedByLiquidation;
        t.debt = 0;
        t.coll = 0;
        t.stake = 0;
    }
}
