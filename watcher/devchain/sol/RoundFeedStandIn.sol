// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title RoundFeedStandIn
/// @notice A stand-in of a Chainlink price feed proxy for Margin Watcher's tests: it keeps every round it was given,
///         so a reader can walk the history back with getRoundData from latestRoundData, as on a real feed.
/// @dev What it leaves out of the real EACAggregatorProxy + OCR aggregator: the oracle network and its report
///      signatures, deviation and heartbeat triggers (rounds are whatever the test pushes), access control on reads,
///      and aggregator upgrades: it is one phase (phase id 1) for its whole life, so round ids are
///      (1 << 64) | n for n = 1, 2, ... (FeedProxyStandIn fronts several of them as the phases of one feed, and
///      reads `latestRound`, an OCR aggregator's own round count). A round that does not exist reverts with "No data present", as the real
///      proxy does; answeredInRound equals the round id and startedAt equals updatedAt.
contract RoundFeedStandIn {
    uint8 public immutable decimals;
    string public description;
    uint256 internal constant PHASE = uint256(1) << 64;

    int256[] internal answers;
    uint256[] internal times;

    constructor(uint8 decimals_, string memory description_) {
        decimals = decimals_;
        description = description_;
    }

    /// @notice Append rounds, oldest first; each time must not precede the last one.
    function push(int256[] calldata answers_, uint256[] calldata times_) external {
        require(answers_.length == times_.length, "stand-in: lengths differ");
        for (uint256 i = 0; i < answers_.length; i++) {
            require(times.length == 0 || times_[i] >= times[times.length - 1], "stand-in: time goes back");
            answers.push(answers_[i]);
            times.push(times_[i]);
        }
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        require(answers.length > 0, "No data present");
        return _round(answers.length);
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        uint256 n = uint256(roundId) ^ PHASE;
        require(uint256(roundId) >> 64 == 1 && n >= 1 && n <= answers.length, "No data present");
        return _round(n);
    }

    function latestRound() external view returns (uint256) {
        return answers.length;
    }

    function latestAnswer() external view returns (int256) {
        return answers[answers.length - 1];
    }

    function _round(uint256 n) internal view returns (uint80, int256, uint256, uint256, uint80) {
        uint80 id = uint80(PHASE | n);
        return (id, answers[n - 1], times[n - 1], times[n - 1], id);
    }
}
