// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

// Liquity v2 (BOLD) stand-ins
// Test stand-ins written for Margin Watcher, NOT Liquity's contracts: a CollateralRegistry and, per collateral
//  branch, an AddressesRegistry (where MCR/CCR/SCR are set), a BorrowerOperations (MCR/CCR/SCR views,
//  shutdown), a TroveManager, a PriceFeed and a TroveNFT. They expose the subset of Liquity v2's view ABI the
//  watcher reads (same names, arguments and return layouts) with v2's integer math (getLatestTroveData for
//  troves outside batches: simple interest on the recorded debt, redistribution gains; for a trove in an interest
//  batch: the batch's simple interest and management fee on its recorded debt, the trove's share of each taken by
//  its debt shares; LiquityMath._computeCR) and v2's liquidation decision (batchLiquidateTroves: active or zombie,
//  ICR < MCR at fetchPrice), plus admin setters so tests can place any trove. Of batches it leaves out the batch
//  manager's registration and rate bounds, upfront fees, the rate-change cooldown and redemptions; a trove joins
//  a batch only when it is opened.

uint256 constant DECIMAL_PRECISION = 1e18;
uint256 constant ONE_YEAR = 365 days;

struct LatestBatchData {
    uint256 totalDebtShares;
    uint256 entireDebtWithoutRedistribution;
    uint256 entireCollWithoutRedistribution;
    uint256 accruedInterest;
    uint256 recordedDebt;
    uint256 annualInterestRate;
    uint256 weightedRecordedDebt;
    uint256 annualManagementFee;
    uint256 accruedManagementFee;
    uint256 weightedRecordedBatchManagementFee;
    uint256 lastDebtUpdateTime;
    uint256 lastInterestRateAdjTime;
}

struct LatestTroveData {
    uint256 entireDebt;
    uint256 entireColl;
    uint256 redistBoldDebtGain;
    uint256 redistCollGain;
    uint256 accruedInterest;
    uint256 recordedDebt;
    uint256 annualInterestRate;
    uint256 weightedRecordedDebt;
    uint256 accruedBatchManagementFee;
    uint256 lastInterestRateAdjTime;
}

/// @notice Stand-in PriceFeed: fetchPrice() -> (price, newOracleFailureDetected) stores lastGoodPrice, as v2's does.
///         With an ETH-USD aggregator set it answers that feed's latest round scaled to 18 decimals and names it in
///         ethUsdOracle() (aggregator, staleness threshold, decimals), as v2's WETHPriceFeed does. With `answered`
///         false it names the aggregator but keeps answering its own price, as an LST branch's feed names ETH-USD
///         too while it answers a composite. It leaves out the staleness check, the shutdown on an oracle failure,
///         and the LST composites' own math.
contract LiquityV2PriceFeedStandIn {
    struct Oracle {
        address aggregator;
        uint256 stalenessThreshold;
        uint8 decimals;
    }

    address public immutable admin;
    uint256 public lastGoodPrice;
    uint256 internal oracleAnswer;
    Oracle public ethUsdOracle;
    bool internal answersOracle;

    constructor(uint256 price_) {
        admin = msg.sender;
        lastGoodPrice = price_;
        oracleAnswer = price_;
    }

    function setPrice(uint256 price_) external {
        require(msg.sender == admin, "stand-in: not admin");
        oracleAnswer = price_;
    }

    /// @notice Stand-in only: read this Chainlink-style aggregator from now on (v2 sets it in its constructor).
    function setEthUsdOracle(address aggregator, uint256 stalenessThreshold, bool answered) external {
        require(msg.sender == admin, "stand-in: not admin");
        ethUsdOracle = Oracle(aggregator, stalenessThreshold, IV2AggregatorStandIn(aggregator).decimals());
        answersOracle = answered;
    }

    function fetchPrice() external returns (uint256, bool) {
        uint256 price = oracleAnswer;
        if (answersOracle) {
            (, int256 answer,,,) = IV2AggregatorStandIn(ethUsdOracle.aggregator).latestRoundData();
            require(answer > 0, "stand-in: bad answer");
            price = uint256(answer) * 10 ** (18 - ethUsdOracle.decimals);
        }
        lastGoodPrice = price;
        return (price, false);
    }
}

interface IV2AggregatorStandIn {
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
    function decimals() external view returns (uint8);
}

/// @notice Stand-in AddressesRegistry: the branch's ratios as immutables set at construction (v2 checks the same
///         bounds), and the branch's addresses set once by its owner.
contract LiquityV2AddressesRegistryStandIn {
    address public immutable admin;
    uint256 public immutable CCR;
    uint256 public immutable SCR;
    uint256 public immutable MCR;
    uint256 public immutable BCR;

    address public collToken;
    address public borrowerOperations;
    address public troveManager;
    address public troveNFT;
    address public priceFeed;

    constructor(uint256 ccr, uint256 mcr, uint256 bcr, uint256 scr) {
        require(ccr > 1e18 && ccr < 2e18, "InvalidCCR");
        require(mcr > 1e18 && mcr < 2e18, "InvalidMCR");
        require(bcr >= 5e16 && bcr < 50e16, "InvalidBCR");
        require(scr > 1e18 && scr < 2e18, "InvalidSCR");
        admin = msg.sender;
        CCR = ccr;
        MCR = mcr;
        BCR = bcr;
        SCR = scr;
    }

    function setAddresses(address coll, address bo, address tm, address nft, address feed) external {
        require(msg.sender == admin && troveManager == address(0), "stand-in: set once by admin");
        collToken = coll;
        borrowerOperations = bo;
        troveManager = tm;
        troveNFT = nft;
        priceFeed = feed;
    }
}

interface ILiquityV2AddressesRegistryStandIn {
    function CCR() external view returns (uint256);
    function SCR() external view returns (uint256);
    function MCR() external view returns (uint256);
    function troveManager() external view returns (address);
    function troveNFT() external view returns (address);
    function priceFeed() external view returns (address);
}

interface ILiquityV2PriceFeedStandIn {
    function fetchPrice() external returns (uint256, bool);
}

interface ILiquityV2TroveManagerStandIn {
    function getTCRAt(uint256 price) external view returns (uint256);
    function shutdown() external;
}

/// @notice Stand-in TroveNFT: ownership only (ERC721's ownerOf/balanceOf), minted and burned by its TroveManager.
contract LiquityV2TroveNFTStandIn {
    error ERC721NonexistentToken(uint256 tokenId);

    address public immutable troveManager;
    mapping(uint256 => address) internal owners;
    mapping(address => uint256) public balanceOf;

    constructor(address troveManager_) {
        troveManager = troveManager_;
    }

    function ownerOf(uint256 tokenId) external view returns (address) {
        address owner = owners[tokenId];
        if (owner == address(0)) revert ERC721NonexistentToken(tokenId);
        return owner;
    }

    function mint(address owner, uint256 tokenId) external {
        require(msg.sender == troveManager, "stand-in: not trove manager");
        if (owners[tokenId] == address(0)) {
            owners[tokenId] = owner;
            balanceOf[owner] += 1;
        }
    }

    function burn(uint256 tokenId) external {
        require(msg.sender == troveManager, "stand-in: not trove manager");
        address owner = owners[tokenId];
        if (owner != address(0)) {
            balanceOf[owner] -= 1;
            delete owners[tokenId];
        }
    }
}

/// @notice Stand-in BorrowerOperations: v2 exposes the branch's MCR/CCR/SCR as public views here (the TroveManager
///         keeps MCR internal), and shutdown() when the branch TCR is below SCR.
contract LiquityV2BorrowerOperationsStandIn {
    uint256 public immutable CCR;
    uint256 public immutable SCR;
    uint256 public immutable MCR;
    bool public hasBeenShutDown;
    ILiquityV2AddressesRegistryStandIn internal immutable registry;

    constructor(ILiquityV2AddressesRegistryStandIn registry_) {
        registry = registry_;
        CCR = registry_.CCR();
        SCR = registry_.SCR();
        MCR = registry_.MCR();
    }

    function shutdown() external {
        require(!hasBeenShutDown, "IsShutDown");
        (uint256 price,) = ILiquityV2PriceFeedStandIn(registry.priceFeed()).fetchPrice();
        ILiquityV2TroveManagerStandIn tm = ILiquityV2TroveManagerStandIn(registry.troveManager());
        require(tm.getTCRAt(price) < SCR, "TCRNotBelowSCR");
        hasBeenShutDown = true;
        tm.shutdown();
    }
}

/// @notice Stand-in TroveManager for one branch: troves by uint256 id with v2's Trove fields that the math uses.
contract LiquityV2TroveManagerStandIn {
    enum Status {
        nonExistent,
        active,
        closedByOwner,
        closedByLiquidation,
        zombie
    }

    struct Trove {
        uint256 debt;
        uint256 coll;
        uint256 stake;
        Status status;
        uint64 arrayIndex;
        uint64 lastDebtUpdateTime;
        uint64 lastInterestRateAdjTime;
        uint256 annualInterestRate;
        address interestBatchManager;
        uint256 batchDebtShares;
    }

    struct RewardSnapshot {
        uint256 coll;
        uint256 boldDebt;
    }

    struct Batch {
        uint256 debt;
        uint256 coll;
        uint64 arrayIndex;
        uint64 lastDebtUpdateTime;
        uint64 lastInterestRateAdjTime;
        uint256 annualInterestRate;
        uint256 annualManagementFee;
        uint256 totalDebtShares;
    }

    error NothingToLiquidate();
    error EmptyData();
    error OnlyOneTroveLeft();

    address public immutable admin;
    uint256 public immutable CCR;
    uint256 internal immutable MCR;
    uint256 internal immutable SCR;
    ILiquityV2AddressesRegistryStandIn internal immutable registry;

    mapping(uint256 => Trove) public Troves;
    mapping(uint256 => RewardSnapshot) public rewardSnapshots;
    mapping(address => Batch) internal batches;
    uint256[] internal TroveIds;
    uint256 internal L_coll;
    uint256 internal L_boldDebt;
    uint256 public shutdownTime;

    uint256 internal activeColl;
    uint256 internal activeDebt;
    uint256 internal defaultColl;
    uint256 internal defaultDebt;

    constructor(ILiquityV2AddressesRegistryStandIn registry_) {
        admin = msg.sender;
        registry = registry_;
        CCR = registry_.CCR();
        MCR = registry_.MCR();
        SCR = registry_.SCR();
    }

    function troveNFT() public view returns (address) {
        return registry.troveNFT();
    }

    function borrowerOperations() external view returns (address) {
        return LiquityV2AddressesRegistryStandIn(address(registry)).borrowerOperations();
    }

    // --- admin setters (tests only)

    /// @notice Open or overwrite a trove owned by `owner`; its debt is recorded now, at `annualInterestRate`.
    function setTrove(uint256 id, address owner, uint256 debt, uint256 coll, uint256 stake, uint256 annualInterestRate)
        external
    {
        require(msg.sender == admin, "stand-in: not admin");
        Trove storage t = Troves[id];
        require(t.interestBatchManager == address(0), "stand-in: the trove is in a batch");
        if (t.status != Status.active && t.status != Status.zombie) {
            t.arrayIndex = uint64(TroveIds.length);
            TroveIds.push(id);
            rewardSnapshots[id] = RewardSnapshot(L_coll, L_boldDebt);
            LiquityV2TroveNFTStandIn(troveNFT()).mint(owner, id);
        }
        t.status = Status.active;
        activeColl = activeColl - t.coll + coll;
        activeDebt = activeDebt - t.debt + debt;
        t.debt = debt;
        t.coll = coll;
        t.stake = stake;
        t.annualInterestRate = annualInterestRate;
        t.lastDebtUpdateTime = uint64(block.timestamp);
        t.lastInterestRateAdjTime = uint64(block.timestamp);
    }

    /// @notice Set an interest batch's rates from now on, its debt compounded to now first (as v2 does on a change).
    function setBatch(address manager, uint256 annualInterestRate, uint256 annualManagementFee) external {
        require(msg.sender == admin, "stand-in: not admin");
        Batch storage b = _compound(manager);
        b.annualInterestRate = annualInterestRate;
        b.annualManagementFee = annualManagementFee;
        b.lastInterestRateAdjTime = uint64(block.timestamp);
    }

    /// @notice Open a trove owned by `owner` in `manager`'s batch with `debt` now: shares in proportion to the
    ///         batch's debt (v2's _updateBatchShares, without its upfront fee).
    function setBatchTrove(uint256 id, address owner, address manager, uint256 debt, uint256 coll, uint256 stake)
        external
    {
        require(msg.sender == admin, "stand-in: not admin");
        Trove storage t = Troves[id];
        require(t.status != Status.active && t.status != Status.zombie, "stand-in: trove is open");
        require(debt > 0, "stand-in: a batch trove owes something");
        Batch storage b = _compound(manager);
        // as v2's _updateBatchShares: the first debt of an empty batch mints shares one for one
        uint256 shares = b.debt == 0 ? debt : debt * b.totalDebtShares / b.debt;
        t.arrayIndex = uint64(TroveIds.length);
        TroveIds.push(id);
        rewardSnapshots[id] = RewardSnapshot(L_coll, L_boldDebt);
        LiquityV2TroveNFTStandIn(troveNFT()).mint(owner, id);
        t.status = Status.active;
        t.coll = coll;
        t.stake = stake;
        t.debt = 0;
        t.annualInterestRate = 0;
        t.lastDebtUpdateTime = 0;
        t.lastInterestRateAdjTime = uint64(block.timestamp);
        t.interestBatchManager = manager;
        t.batchDebtShares = shares;
        b.debt += debt;
        b.coll += coll;
        b.totalDebtShares += shares;
        activeColl += coll;
        activeDebt += debt;
    }

    /// @dev The batch's accrued interest and fee made recorded debt, as v2 does whenever the batch is touched.
    function _compound(address manager) internal returns (Batch storage b) {
        b = batches[manager];
        LatestBatchData memory l = _latestBatch(manager);
        activeDebt = activeDebt - b.debt + l.entireDebtWithoutRedistribution;
        b.debt = l.entireDebtWithoutRedistribution;
        b.lastDebtUpdateTime = uint64(block.timestamp);
    }

    function setStatus(uint256 id, Status status) external {
        require(msg.sender == admin, "stand-in: not admin");
        Troves[id].status = status;
    }

    function setRedistribution(uint256 lColl, uint256 lBoldDebt, uint256 defaultColl_, uint256 defaultDebt_) external {
        require(msg.sender == admin, "stand-in: not admin");
        L_coll = lColl;
        L_boldDebt = lBoldDebt;
        defaultColl = defaultColl_;
        defaultDebt = defaultDebt_;
    }

    function shutdown() external {
        require(msg.sender == LiquityV2AddressesRegistryStandIn(address(registry)).borrowerOperations(), "not BO");
        shutdownTime = block.timestamp;
    }

    // --- views with v2's names and return layouts

    function getTroveIdsCount() external view returns (uint256) {
        return TroveIds.length;
    }

    function getTroveStatus(uint256 id) external view returns (Status) {
        return Troves[id].status;
    }

    function getEntireBranchColl() public view returns (uint256) {
        return activeColl + defaultColl;
    }

    /// @dev The stand-in's branch debt is the recorded debt only (v2's ActivePool adds pending aggregate interest).
    function getEntireBranchDebt() public view returns (uint256) {
        return activeDebt + defaultDebt;
    }

    function getTCRAt(uint256 price) public view returns (uint256) {
        return _computeCR(getEntireBranchColl(), getEntireBranchDebt(), price);
    }

    function _interestPeriod(uint256 lastDebtUpdateTime) internal view returns (uint256) {
        if (shutdownTime == 0) return block.timestamp - lastDebtUpdateTime;
        if (lastDebtUpdateTime < shutdownTime) return shutdownTime - lastDebtUpdateTime;
        return 0;
    }

    function _latestBatch(address manager) internal view returns (LatestBatchData memory batch) {
        Batch storage b = batches[manager];
        batch.totalDebtShares = b.totalDebtShares;
        batch.recordedDebt = b.debt;
        batch.annualInterestRate = b.annualInterestRate;
        batch.weightedRecordedDebt = batch.recordedDebt * batch.annualInterestRate;
        uint256 period = _interestPeriod(b.lastDebtUpdateTime);
        batch.accruedInterest = batch.weightedRecordedDebt * period / ONE_YEAR / DECIMAL_PRECISION;
        batch.annualManagementFee = b.annualManagementFee;
        batch.weightedRecordedBatchManagementFee = batch.recordedDebt * batch.annualManagementFee;
        batch.accruedManagementFee = batch.weightedRecordedBatchManagementFee * period / ONE_YEAR / DECIMAL_PRECISION;
        batch.entireDebtWithoutRedistribution = batch.recordedDebt + batch.accruedInterest + batch.accruedManagementFee;
        batch.entireCollWithoutRedistribution = b.coll;
        batch.lastDebtUpdateTime = b.lastDebtUpdateTime;
        batch.lastInterestRateAdjTime = b.lastInterestRateAdjTime;
    }

    function getLatestBatchData(address manager) external view returns (LatestBatchData memory) {
        return _latestBatch(manager);
    }

    function _latest(uint256 id) internal view returns (LatestTroveData memory trove) {
        Trove storage t = Troves[id];
        trove.redistBoldDebtGain = t.stake * (L_boldDebt - rewardSnapshots[id].boldDebt) / DECIMAL_PRECISION;
        trove.redistCollGain = t.stake * (L_coll - rewardSnapshots[id].coll) / DECIMAL_PRECISION;
        if (t.interestBatchManager != address(0)) {
            // v2's _getLatestTroveDataFromBatch: the trove's share of each part, each floored on its own
            LatestBatchData memory b = _latestBatch(t.interestBatchManager);
            uint256 shares = t.batchDebtShares;
            if (b.totalDebtShares > 0) {
                trove.recordedDebt = b.recordedDebt * shares / b.totalDebtShares;
                trove.weightedRecordedDebt = trove.recordedDebt * b.annualInterestRate;
                trove.accruedInterest = b.accruedInterest * shares / b.totalDebtShares;
                trove.accruedBatchManagementFee = b.accruedManagementFee * shares / b.totalDebtShares;
            }
            trove.annualInterestRate = b.annualInterestRate;
            trove.entireDebt = trove.recordedDebt + trove.redistBoldDebtGain + trove.accruedInterest
                + trove.accruedBatchManagementFee;
            trove.entireColl = t.coll + trove.redistCollGain;
            trove.lastInterestRateAdjTime = b.lastInterestRateAdjTime > t.lastInterestRateAdjTime
                ? b.lastInterestRateAdjTime
                : t.lastInterestRateAdjTime;
            return trove;
        }
        trove.recordedDebt = t.debt;
        trove.annualInterestRate = t.annualInterestRate;
        trove.weightedRecordedDebt = trove.recordedDebt * trove.annualInterestRate;
        uint256 period = _interestPeriod(t.lastDebtUpdateTime);
        trove.accruedInterest = trove.weightedRecordedDebt * period / ONE_YEAR / DECIMAL_PRECISION;
        trove.entireDebt = trove.recordedDebt + trove.redistBoldDebtGain + trove.accruedInterest;
        trove.entireColl = t.coll + trove.redistCollGain;
        trove.lastInterestRateAdjTime = t.lastInterestRateAdjTime;
    }

    function getLatestTroveData(uint256 id) external view returns (LatestTroveData memory) {
        return _latest(id);
    }

    function getCurrentICR(uint256 id, uint256 price) public view returns (uint256) {
        LatestTroveData memory trove = _latest(id);
        return _computeCR(trove.entireColl, trove.entireDebt, price);
    }

    function getUnbackedPortionPriceAndRedeemability() external returns (uint256, uint256, bool) {
        (uint256 price,) = ILiquityV2PriceFeedStandIn(registry.priceFeed()).fetchPrice();
        // The stand-in has no stability pool: the whole branch debt counts as unbacked.
        return (getEntireBranchDebt(), price, getTCRAt(price) >= SCR && shutdownTime == 0);
    }

    function _computeCR(uint256 coll, uint256 debt, uint256 price) internal pure returns (uint256) {
        if (debt > 0) return coll * price / debt;
        return type(uint256).max;
    }

    // --- liquidation: v2's decision in batchLiquidateTroves

    /// @notice Reverts exactly when v2's batchLiquidateTroves would for these ids (EmptyData, NothingToLiquidate,
    ///         OnlyOneTroveLeft); liquidated troves are closed (the stand-in does not model the offset).
    function batchLiquidateTroves(uint256[] memory troveArray) external {
        if (troveArray.length == 0) revert EmptyData();
        (uint256 price,) = ILiquityV2PriceFeedStandIn(registry.priceFeed()).fetchPrice();
        bool any;
        for (uint256 i = 0; i < troveArray.length; i++) {
            uint256 id = troveArray[i];
            Status s = Troves[id].status;
            if (s != Status.active && s != Status.zombie) continue;
            if (getCurrentICR(id, price) < MCR) {
                if (TroveIds.length == 1) revert OnlyOneTroveLeft();
                _close(id);
                any = true;
            }
        }
        if (!any) revert NothingToLiquidate();
    }

    function _close(uint256 id) internal {
        LatestTroveData memory trove = _latest(id);
        Trove storage t = Troves[id];
        defaultColl -= trove.redistCollGain;
        defaultDebt -= trove.redistBoldDebtGain;
        activeColl = activeColl - t.coll;
        activeDebt = activeDebt - t.debt;
        if (t.interestBatchManager != address(0)) {
            Batch storage b = _compound(t.interestBatchManager);
            uint256 part = b.totalDebtShares == 0 ? 0 : b.debt * t.batchDebtShares / b.totalDebtShares;
            b.debt -= part;
            b.coll -= t.coll;
            b.totalDebtShares -= t.batchDebtShares;
            activeDebt -= part;
        }
        uint64 index = t.arrayIndex;
        uint256 last = TroveIds[TroveIds.length - 1];
        TroveIds[index] = last;
        Troves[last].arrayIndex = index;
        TroveIds.pop();
        delete Troves[id];
        Troves[id].status = Status.closedByLiquidation;
        LiquityV2TroveNFTStandIn(troveNFT()).burn(id);
    }
}

/// @notice Stand-in CollateralRegistry: the branch list, with v2's getters (reverting "Invalid index" past the end).
contract LiquityV2CollateralRegistryStandIn {
    uint256 public immutable totalCollaterals;
    address public immutable boldToken;
    address[] internal tokens;
    address[] internal troveManagers;

    constructor(address boldToken_, address[] memory tokens_, address[] memory troveManagers_) {
        boldToken = boldToken_;
        require(tokens_.length > 0 && tokens_.length <= 10, "Collateral list length");
        require(tokens_.length == troveManagers_.length, "stand-in: lengths differ");
        totalCollaterals = tokens_.length;
        tokens = tokens_;
        troveManagers = troveManagers_;
    }

    function getToken(uint256 index) external view returns (address) {
        require(index < totalCollaterals, "Invalid index");
        return tokens[index];
    }

    function getTroveManager(uint256 index) external view returns (address) {
        require(index < totalCollaterals, "Invalid index");
        return troveManagers[index];
    }
}
