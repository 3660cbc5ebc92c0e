// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

interface IRoundFeed {
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @title MorphoChainlinkOracleStandIn
/// @notice A stand-in of Morpho's MorphoChainlinkOracleV2 for Margin Watcher's tests, NOT Morpho's contract: the same
///         BASE_FEED_1, BASE_FEED_2, QUOTE_FEED_1, QUOTE_FEED_2 and SCALE_FACTOR views and the same price():
///         SCALE_FACTOR * base1 * base2 / (quote1 * quote2), a zero feed counting as 1, each feed's latestRoundData
///         answer (a negative answer reverts, as ChainlinkDataFeedLib's does).
/// @dev Left out: the ERC-4626 vaults (BASE_VAULT, QUOTE_VAULT and their conversion samples: no vault, a sample of
///      1), and the constructor's derivation of SCALE_FACTOR from token and feed decimals: the test passes it.
contract MorphoChainlinkOracleStandIn {
    address public immutable BASE_FEED_1;
    address public immutable BASE_FEED_2;
    address public immutable QUOTE_FEED_1;
    address public immutable QUOTE_FEED_2;
    uint256 public immutable SCALE_FACTOR;

    constructor(address base1, address base2, address quote1, address quote2, uint256 scaleFactor) {
        BASE_FEED_1 = base1;
        BASE_FEED_2 = base2;
        QUOTE_FEED_1 = quote1;
        QUOTE_FEED_2 = quote2;
        SCALE_FACTOR = scaleFactor;
    }

    function price() external view returns (uint256) {
        return SCALE_FACTOR * _get(BASE_FEED_1) * _get(BASE_FEED_2) / (_get(QUOTE_FEED_1) * _get(QUOTE_FEED_2));
    }

    function _get(address feed) internal view returns (uint256) {
        if (feed == address(0)) return 1;
        (, int256 answer,,,) = IRoundFeed(feed).latestRoundData();
        require(answer >= 0, "negative answer");
        return uint256(answer);
    }
}
