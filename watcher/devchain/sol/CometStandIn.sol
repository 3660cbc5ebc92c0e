// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title StandInToken
/// @notice A stand-in ERC20 metadata token for Margin Watcher's tests (not a real token: no balances). An empty
///         symbol makes symbol() revert, as some non-standard tokens do.
contract StandInToken {
    string internal sym;
    uint8 public immutable decimals;

    constructor(string memory symbol_, uint8 decimals_) {
        sym = symbol_;
        decimals = decimals_;
    }

    function symbol() external view returns (string memory) {
        require(bytes(sym).length > 0, "stand-in: no symbol");
        return sym;
    }
}

/// @title CometStandIn
/// @notice A test stand-in written for Margin Watcher, NOT Compound's Comet: it exposes the subset of Comet's ABI
///         the watcher reads (same selectors, same return layouts) and replays Comet's integer math: isLiquidatable
///         with the stored borrow index and its early return once the liquidity is non-negative; the kinked rate model, accrual (accruedInterestIndices/accrueInternal) and
///         absorb's accrue-then-check (NotLiquidatable) as Comet does them; admin setters place any position.
///         absorb here only zeroes the account (no reserves, no events): the tests need its revert condition.
///         getPrice answers the price set by setPrice for a feed address and never calls the feed (Comet calls its
///         latestRoundData); a test that gives an asset a real round-keeping feed sets the same price here.
contract CometStandIn {
    error NotLiquidatable();
    error Paused();

    struct AssetInfo {
        uint8 offset;
        address asset;
        address priceFeed;
        uint64 scale;
        uint64 borrowCollateralFactor;
        uint64 liquidateCollateralFactor;
        uint64 liquidationFactor;
        uint128 supplyCap;
    }

    struct UserBasic {
        int104 principal;
        uint64 baseTrackingIndex;
        uint64 baseTrackingAccrued;
        uint16 assetsIn;
        uint8 _reserved;
    }

    struct UserCollateral {
        uint128 balance;
        uint128 _reserved;
    }

    struct TotalsBasic {
        uint64 baseSupplyIndex;
        uint64 baseBorrowIndex;
        uint64 trackingSupplyIndex;
        uint64 trackingBorrowIndex;
        uint104 totalSupplyBase;
        uint104 totalBorrowBase;
        uint40 lastAccrualTime;
        uint8 pauseFlags;
    }

    // Comet's fixed scales: factors in 1e18, indices in 1e15.
    uint64 internal constant FACTOR_SCALE = 1e18;
    uint64 internal constant BASE_INDEX_SCALE = 1e15;

    address public immutable admin;
    address public immutable baseToken;
    address public immutable baseTokenPriceFeed;
    uint64 public immutable baseScale;

    // The rate model, per second at 1e18 (Comet keeps these as immutables; here tests set them).
    uint256 public supplyKink;
    uint256 public supplyPerSecondInterestRateSlopeLow;
    uint256 public supplyPerSecondInterestRateSlopeHigh;
    uint256 public supplyPerSecondInterestRateBase;
    uint256 public borrowKink;
    uint256 public borrowPerSecondInterestRateSlopeLow;
    uint256 public borrowPerSecondInterestRateSlopeHigh;
    uint256 public borrowPerSecondInterestRateBase;

    AssetInfo[] internal assets;
    TotalsBasic internal totals;
    mapping(address => UserBasic) public userBasic;
    mapping(address => mapping(address => UserCollateral)) public userCollateral;
    mapping(address => uint256) internal prices;

    constructor(address baseToken_, address baseFeed_, uint64 baseScale_, uint256 basePrice_) {
        admin = msg.sender;
        baseToken = baseToken_;
        baseTokenPriceFeed = baseFeed_;
        baseScale = baseScale_;
        prices[baseFeed_] = basePrice_;
        totals.baseSupplyIndex = BASE_INDEX_SCALE;
        totals.baseBorrowIndex = BASE_INDEX_SCALE;
        totals.trackingSupplyIndex = 0;
        totals.trackingBorrowIndex = 0;
        totals.lastAccrualTime = uint40(block.timestamp);
    }

    modifier onlyAdmin() {
        require(msg.sender == admin, "stand-in: not admin");
        _;
    }

    // --- admin setters (tests only; the real Comet has no such functions)

    function addAsset(address asset, address feed, uint64 scale, uint64 bcf, uint64 lcf, uint64 lf, uint128 cap)
        external
        onlyAdmin
    {
        require(assets.length < 15, "stand-in: too many assets");
        assets.push(AssetInfo(uint8(assets.length), asset, feed, scale, bcf, lcf, lf, cap));
    }

    function setPrice(address feed, uint256 price) external onlyAdmin {
        prices[feed] = price;
    }

    function setUser(address user, int104 principal) external onlyAdmin {
        userBasic[user].principal = principal;
    }

    function setCollateral(address user, address asset, uint128 balance) external onlyAdmin {
        userCollateral[user][asset].balance = balance;
        // Keep assetsIn in step with balances, as Comet's updateAssetsIn does.
        for (uint8 i = 0; i < assets.length; i++) {
            if (assets[i].asset == asset) {
                if (balance > 0) {
                    userBasic[user].assetsIn |= uint16(1) << i;
                } else {
                    userBasic[user].assetsIn &= ~(uint16(1) << i);
                }
            }
        }
    }

    function setBaseBorrowIndex(uint64 index) external onlyAdmin {
        totals.baseBorrowIndex = index;
    }

    function setRates(uint256[8] calldata r) external onlyAdmin {
        (supplyKink, supplyPerSecondInterestRateSlopeLow, supplyPerSecondInterestRateSlopeHigh) = (r[0], r[1], r[2]);
        (supplyPerSecondInterestRateBase, borrowKink, borrowPerSecondInterestRateSlopeLow) = (r[3], r[4], r[5]);
        (borrowPerSecondInterestRateSlopeHigh, borrowPerSecondInterestRateBase) = (r[6], r[7]);
    }

    /// Overwrite the market's indexes and totals as if it had just accrued in this block.
    function setTotals(uint64 supplyIndex, uint64 borrowIndex, uint104 supplyBase, uint104 borrowBase)
        external
        onlyAdmin
    {
        totals.baseSupplyIndex = supplyIndex;
        totals.baseBorrowIndex = borrowIndex;
        totals.totalSupplyBase = supplyBase;
        totals.totalBorrowBase = borrowBase;
        totals.lastAccrualTime = uint40(block.timestamp);
    }

    function setPauseFlags(uint8 flags) external onlyAdmin {
        totals.pauseFlags = flags;
    }

    // --- Comet's math: rates and accrual

    function mulFactor(uint256 n, uint256 factor) internal pure returns (uint256) {
        return n * factor / FACTOR_SCALE;
    }

    function safe64(uint256 n) internal pure returns (uint64) {
        require(n <= type(uint64).max, "stand-in: uint64 overflow");
        return uint64(n);
    }

    function getUtilization() public view returns (uint256) {
        uint256 totalSupply_ = uint256(totals.totalSupplyBase) * totals.baseSupplyIndex / BASE_INDEX_SCALE;
        uint256 totalBorrow_ = uint256(totals.totalBorrowBase) * totals.baseBorrowIndex / BASE_INDEX_SCALE;
        if (totalSupply_ == 0) return 0;
        return totalBorrow_ * FACTOR_SCALE / totalSupply_;
    }

    function getSupplyRate(uint256 utilization) public view returns (uint64) {
        if (utilization <= supplyKink) {
            return safe64(supplyPerSecondInterestRateBase + mulFactor(supplyPerSecondInterestRateSlopeLow, utilization));
        }
        return safe64(
            supplyPerSecondInterestRateBase + mulFactor(supplyPerSecondInterestRateSlopeLow, supplyKink)
                + mulFactor(supplyPerSecondInterestRateSlopeHigh, utilization - supplyKink)
        );
    }

    function getBorrowRate(uint256 utilization) public view returns (uint64) {
        if (utilization <= borrowKink) {
            return safe64(borrowPerSecondInterestRateBase + mulFactor(borrowPerSecondInterestRateSlopeLow, utilization));
        }
        return safe64(
            borrowPerSecondInterestRateBase + mulFactor(borrowPerSecondInterestRateSlopeLow, borrowKink)
                + mulFactor(borrowPerSecondInterestRateSlopeHigh, utilization - borrowKink)
        );
    }

    function accruedInterestIndices(uint256 timeElapsed) internal view returns (uint64, uint64) {
        uint64 supplyIndex = totals.baseSupplyIndex;
        uint64 borrowIndex = totals.baseBorrowIndex;
        if (timeElapsed > 0) {
            // One utilization, from the stored totals and indexes, for the whole elapsed time.
            uint256 utilization = getUtilization();
            supplyIndex += safe64(mulFactor(supplyIndex, getSupplyRate(utilization) * timeElapsed));
            borrowIndex += safe64(mulFactor(borrowIndex, getBorrowRate(utilization) * timeElapsed));
        }
        return (supplyIndex, borrowIndex);
    }

    function accrueInternal() internal {
        uint256 timeElapsed = block.timestamp - totals.lastAccrualTime;
        if (timeElapsed > 0) {
            (totals.baseSupplyIndex, totals.baseBorrowIndex) = accruedInterestIndices(timeElapsed);
            totals.lastAccrualTime = uint40(block.timestamp);
        }
    }

    /// Comet's accrueAccount: accrue the market (the principal is unchanged, so only the indexes move).
    function accrueAccount(address) external {
        accrueInternal();
    }

    function isAbsorbPaused() public view returns (bool) {
        return totals.pauseFlags & (uint8(1) << 3) != 0;
    }

    /// Comet's absorb check: accrue, then every account must be liquidatable at the accrued index.
    function absorb(address, address[] calldata accounts) external {
        if (isAbsorbPaused()) revert Paused();
        accrueInternal();
        for (uint256 i = 0; i < accounts.length; i++) {
            if (!isLiquidatable(accounts[i])) revert NotLiquidatable();
            // Stand-in simplification: the account is cleared (Comet moves debt and collateral to reserves).
            for (uint8 j = 0; j < assets.length; j++) {
                userCollateral[accounts[i]][assets[j].asset].balance = 0;
            }
            userBasic[accounts[i]].principal = 0;
            userBasic[accounts[i]].assetsIn = 0;
        }
    }

    // --- Comet's view ABI subset

    function numAssets() external view returns (uint8) {
        return uint8(assets.length);
    }

    function getAssetInfo(uint8 i) public view returns (AssetInfo memory) {
        require(i < assets.length, "stand-in: bad asset");
        return assets[i];
    }

    /// @notice Comet's getAssetInfoByAddress: the asset's info, reverting for an asset the market does not list.
    function getAssetInfoByAddress(address asset) external view returns (AssetInfo memory) {
        for (uint8 i = 0; i < assets.length; i++) {
            if (assets[i].asset == asset) {
                return assets[i];
            }
        }
        revert("stand-in: bad asset");
    }

    function totalsBasic() external view returns (TotalsBasic memory) {
        return totals;
    }

    function getPrice(address feed) public view returns (uint256) {
        uint256 price = prices[feed];
        require(price > 0, "stand-in: bad price");
        return price;
    }

    function borrowBalanceOf(address account) public view returns (uint256) {
        int104 principal = userBasic[account].principal;
        if (principal >= 0) return 0;
        // As Comet: the balance at the index accrued to this block, though storage is not updated.
        (, uint64 borrowIndex) = accruedInterestIndices(block.timestamp - totals.lastAccrualTime);
        return uint256(uint104(-principal)) * borrowIndex / BASE_INDEX_SCALE;
    }

    function isLiquidatable(address account) public view returns (bool) {
        int104 principal = userBasic[account].principal;
        if (principal >= 0) return false;
        uint16 assetsIn = userBasic[account].assetsIn;
        // presentValue with the STORED borrow index (Comet's isLiquidatable does not accrue), then
        // debt value = floor(debt * basePrice / baseScale), negated (Comet's signedMulPrice truncates toward 0).
        uint256 debt = uint256(uint104(-principal)) * totals.baseBorrowIndex / BASE_INDEX_SCALE;
        int256 liquidity = -int256(debt * getPrice(baseTokenPriceFeed) / baseScale);
        for (uint8 i = 0; i < assets.length; i++) {
            if (assetsIn & (uint16(1) << i) == 0) continue;
            // Comet returns as soon as the collateral so far covers the debt, before reading the next price: a
            // reverting feed after that point does not stop the verdict.
            if (liquidity >= 0) return false;
            AssetInfo memory info = assets[i];
            uint256 value = uint256(userCollateral[account][info.asset].balance) * getPrice(info.priceFeed) / info.scale;
            liquidity += int256(value * info.liquidateCollateralFactor / FACTOR_SCALE);
        }
        return liquidity < 0;
    }
}
