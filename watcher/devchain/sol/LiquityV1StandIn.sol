// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title Liquity v1 stand-ins
/// @notice Test stand-ins written for Margin Watcher, NOT Liquity's contracts: a PriceFeed, a StabilityPool and a
///         TroveManager exposing the subset of Liquity v1's view ABI the watcher reads (same names, arguments and
///         return layouts) with v1's integer math (LiquityMath._computeCR, pending redistribution rewards, TCR,
///         Recovery Mode) and v1's single-trove liquidation decision (batchLiquidateTroves as deployed on mainnet,
///         with getTotalLUSDDeposits), plus admin setters so tests can place any trove and system state.

/// @notice Stand-in PriceFeed: fetchPrice() stores and returns the "oracle" answer like v1's (non-view, updates
///         lastGoodPrice); lastGoodPrice() only moves when someone calls fetchPrice, as on mainnet.
contract LiquityV1PriceFeedStandIn {
    address public immutable admin;
    uint256 public lastGoodPrice;
    uint256 internal oracleAnswer;

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

    function fetchPrice() external returns (uint256) {
        lastGoodPrice = oracleAnswer;
        return oracleAnswer;
    }
}

/// @notice Stand-in StabilityPool: only the LUSD deposit total that the liquidation decision reads.
contract LiquityV1StabilityPoolStandIn {
    address public immutable admin;
    uint256 internal totalLUSDDeposits;

    constructor() {
        admin = msg.sender;
    }

    function setTotalLUSDDeposits(uint256 amount) external {
        require(msg.sender == admin, "stand-in: not admin");
        totalLUSDDeposits = amount;
    }

    function getTotalLUSDDeposits() external view returns (uint256) {
        return totalLUSDDeposits;
    }
}

interface ILiquityV1PriceFeedStandIn {
    function fetchPrice() external returns (uint256);
}

interface ILiquityV1StabilityPoolStandIn {
    function getTotalLUSDDeposits() external view returns (uint256);
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

    // --- liquidation: v1's decision for liquidate(borrower) = batchLiquidateTroves([borrower])

    /// @notice Reverts exactly when v1's liquidate would: trove not active, or "nothing to liquidate". On success the
    ///         trove is closed and its balances leave the active pool (the stand-in does not model the offset).
    function liquidate(address borrower) external {
        require(Troves[borrower].status == Status.active, "TroveManager: Trove does not exist or is closed");
        uint256 price = ILiquityV1PriceFeedStandIn(priceFeed).fetchPrice();
        uint256 lusdInStabPool = ILiquityV1StabilityPoolStandIn(stabilityPool).getTotalLUSDDeposits();
        uint256 icr = getCurrentICR(borrower, price);
        bool liquidated;
        if (checkRecoveryMode(price)) {
            // _getTotalFromBatchLiquidate_RecoveryMode, then _liquidateRecoveryMode for this one trove
            if (icr >= MCR && lusdInStabPool == 0) {
                liquidated = false;
            } else if (TroveOwners.length <= 1) {
                liquidated = false; // "don't liquidate if last trove"
            } else if (icr < MCR) {
                liquidated = true;
            } else {
                (uint256 debt,,,) = getEntireDebtAndColl(borrower);
                liquidated = icr < getTCR(price) && debt <= lusdInStabPool;
            }
        } else {
            liquidated = icr < MCR;
            // _closeTrove: _requireMoreThanOneTroveInSystem
            if (liquidated) require(TroveOwners.length > 1, "TroveManager: Only one trove in the system");
        }
        require(liquidated, "TroveManager: nothing to liquidate");
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
