// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title BatchReader
/// @notice Read-only batch caller exposing Multicall3's aggregate3 ABI, deployed on local chains that
///         lack Multicall3 so that the watcher reads a whole check in one eth_call there as well.
contract BatchReader {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory results) {
        uint256 n = calls.length;
        results = new Result[](n);
        for (uint256 i = 0; i < n; ++i) {
            Call3 calldata c = calls[i];
            (bool ok, bytes memory ret) = c.target.call(c.callData);
            // Same contract as Multicall3: a failing call only aborts the batch when the caller asks for it.
            require(ok || c.allowFailure, "BatchReader: call failed");
            results[i] = Result(ok, ret);
        }
    }

    function getCurrentBlockTimestamp() external view returns (uint256) {
        return block.timestamp;
    }

    function getBlockNumber() external view returns (uint256) {
        return block.number;
    }
}
