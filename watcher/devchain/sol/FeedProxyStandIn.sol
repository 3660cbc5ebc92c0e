// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

interface IRoundFeedStandIn {
    function decimals() external view returns (uint8);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80);
    function latestAnswer() external view returns (int256);
}

/// @title FeedProxyStandIn
/// @notice A stand-in of Chainlink's EACAggregatorProxy for Margin Watcher's tests: it fronts one aggregator per
///         phase, so that a feed whose aggregator was replaced keeps its older rounds under the older phase ids,
///         as the real proxy does: round id = (phaseId << 64) | the aggregator's own round.
/// @dev Its aggregators are RoundFeedStandIns (each numbers its rounds (1 << 64) | n; the proxy re-labels them with
///      the phase). What it leaves out of the real proxy: the proposed-aggregator pair and its access control (any
///      caller may confirm a new aggregator here), the owner, and the access controller on reads. A round that
///      does not exist reverts with "No data present"; answeredInRound equals the round id.
contract FeedProxyStandIn {
    uint16 public phaseId;
    mapping(uint16 => address) public phaseAggregators;

    /// @notice Make `aggregator` the current one, in a new phase.
    function confirmAggregator(address aggregator_) external {
        phaseId += 1;
        phaseAggregators[phaseId] = aggregator_;
    }

    function aggregator() external view returns (address) {
        return phaseAggregators[phaseId];
    }

    function decimals() external view returns (uint8) {
        return IRoundFeedStandIn(phaseAggregators[phaseId]).decimals();
    }

    function latestAnswer() external view returns (int256) {
        return IRoundFeedStandIn(phaseAggregators[phaseId]).latestAnswer();
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        (uint80 id, int256 answer, uint256 startedAt, uint256 updatedAt,) =
            IRoundFeedStandIn(phaseAggregators[phaseId]).latestRoundData();
        uint80 ours = _label(phaseId, uint64(id));
        return (ours, answer, startedAt, updatedAt, ours);
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        uint16 phase = uint16(roundId >> 64);
        require(phase >= 1 && phase <= phaseId, "No data present");
        uint64 n = uint64(roundId);
        (, int256 answer, uint256 startedAt, uint256 updatedAt,) =
            IRoundFeedStandIn(phaseAggregators[phase]).getRoundData(uint80((uint256(1) << 64) | n));
        return (roundId, answer, startedAt, updatedAt, roundId);
    }

    function _label(uint16 phase, uint64 n) internal pure returns (uint80) {
        return uint80((uint256(phase) << 64) | n);
    }
}
