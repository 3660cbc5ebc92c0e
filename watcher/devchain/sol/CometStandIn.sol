// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title CometStandIn
/// @notice A test stand-in written for Margin Watcher, NOT Compound's Comet: it exposes the subset of Comet's view
///         ABI the watcher reads (same selectors, same return layouts) and replays Comet's integer liquidation math
///         (isLiquidatable with the stored borrow index), with admin setters so tests can place any position.
contract CometStandIn {
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

    // --- Comet's view ABI subset

    function numAssets() external view returns (uint8) {
        return uint8(assets.length);
    }

    function getAssetInfo(uint8 i) public view returns (AssetInfo memory) {
        require(i < assets.length, "stand-in: bad asset");
        return assets[i];
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
        // Stored index: this stand-in never accrues interest on its own.
        return uint256(uint104(-principal)) * totals.baseBorrowIndex / BASE_INDEX_SCALE;
    }

    function isLiquidatable(address account) external view returns (bool) {
        int104 principal = userBasic[account].principal;
        if (principal >= 0) return false;
        uint16 assetsIn = userBasic[account].assetsIn;
        // debt value = floor(debt * basePrice / baseScale), negated (Comet's signedMulPrice truncates toward 0).
        int256 liquidity = -int256(borrowBalanceOf(account) * getPrice(baseTokenPriceFeed) / baseScale);
        for (uint8 i = 0; i < assets.length; i++) {
            if (assetsIn & (uint16(1) << i) == 0) continue;
            AssetInfo memory info = assets[i];
            uint256 value = uint256(userCollateral[account][info.asset].balance) * getPrice(info.priceFeed) / info.scale;
            liquidity += int256(value * info.liquidateCollateralFactor / FACTOR_SCALE);
        }
        return liquidity < 0;
    }
}
